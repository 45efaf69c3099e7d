"""The approval: who holds it, for what and when, its handlers and their changes in the
window, and its datasets and sites (used or not)."""

from __future__ import annotations

from typing import Any

from hub.report.blocks import fmt_time, heading, para, table
from hub.report.request import Window, iso, parse
from hub.report.sections.usage import Usage
from hub.report.tally import ApprovalTally
from hub.report.texts import t
from hub.store.registry import ApprovalRegistry, ApprovalView


def handler_history(
    registry: ApprovalRegistry, view: ApprovalView, window: Window
) -> tuple[set[str], set[str], list[dict]]:
    """Handlers at some instant in the window, datasets likewise, and the changes in it."""
    changes = registry.changes(view.approval_id)
    since, until = iso(window.since), iso(window.until)
    handlers, datasets = set(view.handlers), set(view.datasets)
    # undo what changed after the window, to get the state at its end
    for c in reversed(changes):
        if iso(parse(c["at"])) < until:
            break
        diff = c["changes"]
        if "handlers" in diff and c["kind"] == "updated":
            handlers = set(diff["handlers"][0] or [])
        if "datasets" in diff and c["kind"] == "updated":
            datasets = set(diff["datasets"][0] or [])
    in_window = []
    for c in changes:
        at = iso(parse(c["at"]))
        if not since <= at < until:
            continue
        diff = c["changes"]
        entry = {"at": c["at"], "kind": c["kind"], "changes": diff, "source": c["source"]}
        if "handlers" in diff:
            old, new = set(diff["handlers"][0] or []), set(diff["handlers"][1] or [])
            handlers |= old
            entry["handlers_added"] = sorted(new - old)
            entry["handlers_removed"] = sorted(old - new)
        if "datasets" in diff:
            datasets |= set(diff["datasets"][0] or [])
        in_window.append(entry)
    return handlers, datasets, in_window


def build(
    view: ApprovalView,
    tally: ApprovalTally,
    changes: list[dict],
    window: Window,
    dataset_site: dict[str, str],
    usage: Usage,
) -> dict[str, Any]:
    """The head of the approval's section, up to whether it had any activity."""
    overlap = window.overlap(view)
    datasets_used = {d for d in tally.files if d} | tally.federation_datasets
    sites_used = (
        {s for s, n in tally.sessions.items() if n}
        | set(usage.hours.site)
        | {site for (_task, site) in tally.federation}
    )
    return {
        "approval_id": view.approval_id,
        "institution": view.institution,
        "purpose": view.purpose,
        "period": {
            "start": view.period.start.isoformat(),
            "end": view.period.end.isoformat(),
            "approved_end": (view.approved_end or view.period.end).isoformat(),
            "extended": view.approved_end is not None,
            "revoked_at": view.revoked_at.isoformat() if view.revoked_at else None,
            "ends_before": view.ends_before.isoformat(),
        },
        "in_window": (
            {"from": overlap[0].isoformat(), "until": overlap[1].isoformat()} if overlap else None
        ),
        "handlers": list(view.handlers),
        "handlers_in_window": sorted(tally.handlers),
        "changes": changes,
        "datasets": [
            {
                "dataset": d,
                "site": view.dataset_sites.get(d) or dataset_site.get(d),
                "used": d in datasets_used,
            }
            for d in view.datasets
        ],
        "sites": list(view.sites),
        "sites_used": sorted(sites_used),
        "activity": tally.active or bool(usage.hours.sessions),
    }


def blocks(a: dict, lang: str) -> list[tuple]:
    """The approval's details, the changes in the window, and its datasets."""
    p = a["period"]
    period = f"{p['start']} .. {p['end']}"
    if p["extended"]:
        period += t("extended_from", lang, end=p["approved_end"])
    kv = [
        (t("institution", lang), a["institution"]),
        (t("purpose", lang), a["purpose"]),
        (t("approval_id", lang), a["approval_id"]),
        (t("period", lang), period),
    ]
    if p["revoked_at"]:
        kv.append((t("revoked_at", lang), fmt_time(p["revoked_at"])))
    w = a["in_window"]
    within = f"{fmt_time(w['from'])} .. {fmt_time(w['until'])}" if w else t("none", lang)
    kv.append((t("period_in_window", lang), within))
    kv.append((t("handlers", lang), ", ".join(a["handlers_in_window"]) or t("none", lang)))
    out = [heading(1, f"{t('approval_id', lang)} {a['approval_id']}"), ("kv", kv)]
    out.append(heading(2, t("handler_changes", lang)))
    if a["changes"]:
        rows = [[fmt_time(c["at"]), c["kind"], _change_text(c, lang)] for c in a["changes"]]
        out.append(table(["", "", ""], rows, [0.25, 0.12, 0.63]))
    else:
        out.append(para(t("no_changes", lang), "muted"))
    used = {True: t("yes", lang), False: t("no", lang)}
    rows = [[d["dataset"], d["site"] or "-", used[d["used"]]] for d in a["datasets"]]
    headers = [t("dataset", lang), t("site", lang), t("used", lang)]
    out.append(heading(2, t("datasets_sites", lang)))
    out.append(table(headers, rows, [0.4, 0.4, 0.2]))
    return out


def _change_text(c: dict, lang: str) -> str:
    """What one change did: handlers added and removed, then each other field's old → new."""
    what = []
    handlers = t("handlers", lang)
    if c.get("handlers_added"):
        what.append(f"{handlers} {t('added', lang)}: {', '.join(c['handlers_added'])}")
    if c.get("handlers_removed"):
        what.append(f"{handlers} {t('removed', lang)}: {', '.join(c['handlers_removed'])}")
    for name, (old, new) in c["changes"].items():
        if name != "handlers":
            what.append(f"{name}: {old} → {new}")
    return "; ".join(what) or "-"
