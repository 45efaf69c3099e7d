"""Federation: the federated queries by task and site, refused, and what was suppressed."""

from __future__ import annotations

from typing import Any

from extensions.contracts.events import FEDERATION_QUERY
from hub.report.blocks import fmt_num, heading, para, table
from hub.report.query import Figures
from hub.report.tally import ApprovalTally
from hub.report.texts import t

MEASURES = ("queries", "refused", "suppressions", "suppressed_items")


def build(F: Figures, tally: ApprovalTally) -> dict[str, Any]:
    """The section's part of the approval's `usage`: `federation` and `federation_total`."""
    aid, lang, q = F.aid, F.lang, F.q
    rows = []
    for (task, site), c in sorted(tally.federation.items()):
        where = {"schema": FEDERATION_QUERY, "approval_id": aid, "site": site, "data.task": task}
        row = {"task": task, "site": site} | {k: c.get(k, 0) for k in MEASURES}
        rows.append(row)
        for name, unit, query in (
            ("queries", "queries", q(where)),
            ("refused", "queries", q(where | {"data.outcome": "refused"})),
            ("suppressions", "suppressions", q(where, "sum-len:data.suppressions")),
            ("suppressed_items", "items", q(where, "sum-each:data.suppressions.count")),
        ):
            F.fig(
                f"federation/{task}/{site}/{name}",
                f"{t(name, lang)} {task} {site}",
                row[name],
                unit,
                query,
            )
    total = sum(r["queries"] for r in rows)
    F.fig(
        "federation/total",
        t("federation", lang),
        total,
        "queries",
        q({"schema": FEDERATION_QUERY, "approval_id": aid}),
    )
    return {"federation": rows, "federation_total": total}


def blocks(a: dict, lang: str) -> list[tuple]:
    u = a["usage"]
    out = [heading(2, t("federation", lang))]
    if not u["federation"]:
        return out + [para(t("none", lang), "muted")]
    rows = [[f["task"], f["site"], *(fmt_num(f[k]) for k in MEASURES)] for f in u["federation"]]
    headers = [t(c, lang) for c in ("task", "site", *MEASURES)]
    return out + [table(headers, rows, [0.22, 0.14, 0.14, 0.14, 0.18, 0.18])]
