"""Results taken out: the export airlock's requests, decisions and releases.

The export service records each change of a request in the audit chain without an
approval id, with the requester as `user` and the request's site as `site`; a record
counts for each approval the requester handles in the window at that site (as the
enforcer's stops do). The part is left out of the report when there were none.
"""

from __future__ import annotations

import statistics
from typing import Any

from extensions.contracts.events import (
    EXPORT_CHECKED,
    EXPORT_RELEASE,
    EXPORT_REQUEST,
    EXPORT_REVIEW,
    EXPORT_WITHDRAW,
)
from hub.report.blocks import fmt_num, fmt_time, heading, para, table
from hub.report.query import Figures
from hub.report.request import Window, parse
from hub.report.tally import EXPORT_SETTLED, ApprovalTally
from hub.report.texts import t

#: the reviewers' decisions (extensions.contracts.export.DECISIONS), in the report's order
DECISIONS = ("approve", "reject", "changes")


def median_hours(tally: ApprovalTally) -> float | None:
    """The median of the hours from each request to the first review that settled it
    (approved or rejected), over the requests made and settled in the window."""
    hours = [
        (parse(tally.export_settled_at[rid]) - parse(at)).total_seconds() / 3600
        for rid, at in tally.export_requested_at.items()
        if rid in tally.export_settled_at
    ]
    return round(statistics.median(hours), 2) if hours else None


def build(F: Figures, tally: ApprovalTally, window: Window) -> dict[str, Any]:
    """The approval's `exports`, or nothing when its handlers made no export request."""
    if not tally.has_exports:
        return {}
    lang, q = F.lang, F.q
    by = {"approval_id": None, "user": sorted(tally.handlers), "site": sorted(tally.sites)}
    review = {"schema": EXPORT_REVIEW} | by
    decisions = {d: tally.export_decisions.get(d, 0) for d in DECISIONS}
    decisions |= {d: n for d, n in sorted(tally.export_decisions.items()) if d not in decisions}
    F.fig("exports/requests", t("export_requests", lang), tally.export_requests, "requests",
          q({"schema": EXPORT_REQUEST} | by))  # fmt: skip
    F.fig("exports/files", t("export_files", lang), tally.export_files, "files",
          q({"schema": EXPORT_CHECKED} | by, "sum:data.files"))  # fmt: skip
    F.fig("exports/bytes", t("export_bytes", lang), tally.export_bytes, "bytes",
          q({"schema": EXPORT_CHECKED} | by, "sum:data.bytes"))  # fmt: skip
    for d, n in decisions.items():
        F.fig(f"exports/decisions/{d}", f"{t('export_decisions', lang)} {d}", n, "reviews",
              q(review | {"data.decision": d}))  # fmt: skip
    F.fig("exports/released", t("export_released", lang), tally.export_released, "requests",
          q({"schema": EXPORT_RELEASE} | by | {"data.first": True}))  # fmt: skip
    F.fig("exports/rejected", t("export_rejected", lang), tally.export_rejected, "requests",
          q(review | {"data.state": "rejected"}))  # fmt: skip
    F.fig("exports/withdrawn", t("export_withdrawn", lang), tally.export_withdrawn, "requests",
          q({"schema": EXPORT_WITHDRAW} | by))  # fmt: skip
    median = median_hours(tally)
    F.fig(
        "exports/median_decision_hours",
        t("export_median_hours", lang),
        median if median is not None else 0,
        "hours",
        q(
            {"schema": [EXPORT_REQUEST, EXPORT_REVIEW]} | by,
            "median-hours",
            rule="export-decision",
        ),
        note=t("export_median_note", lang, states=", ".join(EXPORT_SETTLED)),
    )
    out: dict[str, Any] = {
        "requests": tally.export_requests,
        "files": tally.export_files,
        "bytes": tally.export_bytes,
        "decisions": decisions,
        "released": tally.export_released,
        "rejected": tally.export_rejected,
        "withdrawn": tally.export_withdrawn,
        "median_decision_hours": median,
    }
    if window.kind == "final":
        released = sorted(
            tally.export_files_released.items(), key=lambda x: (x[1]["released_at"], x[0])
        )
        out["released_files"] = [
            {"request_id": rid, "name": name} | what for (rid, name), what in released
        ]
    return {"exports": out}


def blocks(a: dict, lang: str) -> list[tuple]:
    e = a.get("exports")
    if e is None:
        return []
    median = e["median_decision_hours"]
    rows = [
        (t("export_requests", lang), fmt_num(e["requests"])),
        (t("export_files", lang), fmt_num(e["files"])),
        (t("export_bytes", lang), fmt_num(e["bytes"])),
    ]
    rows += [(f"{t('export_decisions', lang)} {d}", fmt_num(n)) for d, n in e["decisions"].items()]
    rows += [
        (t("export_released", lang), fmt_num(e["released"])),
        (t("export_rejected", lang), fmt_num(e["rejected"])),
        (t("export_withdrawn", lang), fmt_num(e["withdrawn"])),
        (t("export_median_hours", lang), "-" if median is None else fmt_num(float(median))),
    ]
    out = [heading(1, f"{t('sec_exports', lang)} ({a['approval_id']})"), ("kv", rows)]
    out.append(para(t("export_median_note", lang, states=", ".join(EXPORT_SETTLED)), "muted"))
    if "released_files" in e:
        out.append(heading(2, t("export_released_files", lang)))
        if e["released_files"]:
            columns = ("export_request", "export_file", "export_file_bytes", "export_sha256",
                       "export_released_at")  # fmt: skip
            headers = [t(c, lang) for c in columns]
            files = [[f["request_id"], f["name"], _bytes(f["bytes"]), f["sha256"] or "-",
                      fmt_time(f["released_at"])] for f in e["released_files"]]  # fmt: skip
            out.append(table(headers, files, [0.15, 0.3, 0.1, 0.3, 0.15]))
        else:
            out.append(para(t("none", lang), "muted"))
    return out


def _bytes(n) -> str:
    return fmt_num(n) if isinstance(n, int) else "-"
