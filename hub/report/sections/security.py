"""Security: the enforcer's stops, suspensions and reinstatements, kernels refused
outside the period and period-end shutdowns; the suspensions that overlap the window."""

from __future__ import annotations

from typing import Any

from extensions.contracts.events import (
    ENFORCEMENT_STOP,
    KERNEL_REFUSED,
    PERIOD_END,
    SECRETARIAT_ACTION,
)
from hub.report.blocks import fmt_num, fmt_time, heading, para, table
from hub.report.query import Figures
from hub.report.request import Window
from hub.report.tally import ApprovalTally
from hub.report.texts import t
from hub.store.registry import ApprovalRegistry


def build(
    F: Figures, tally: ApprovalTally, registry: ApprovalRegistry, window: Window
) -> dict[str, Any]:
    """The approval's `security`: its figures are counted from records that carry no
    approval id, by the handlers (and at the sites) of the approval."""
    aid, lang, q = F.aid, F.lang, F.q
    handlers = sorted(tally.handlers)
    sites = sorted(tally.sites)
    stops = {"schema": ENFORCEMENT_STOP, "approval_id": None, "user": handlers, "site": sites}
    actions = {
        "schema": SECRETARIAT_ACTION,
        "approval_id": None,
        "user": handlers,
        "data.changed": True,
    }
    for fid, label, value, unit, query in (
        ("enforcement_stops", "enforcement_stops", sum(tally.enforcement_stops.values()), "stops", q(stops)),
        ("suspensions", "suspension_actions", tally.suspend_actions, "actions", q(actions | {"data.action": "suspend"})),
        ("reinstatements", "reinstatements", tally.reinstate_actions, "actions", q(actions | {"data.action": "reinstate"})),
        ("kernel_refused", "kernel_refused", tally.kernel_refused, "kernels", q({"schema": KERNEL_REFUSED, "approval_id": aid})),
        ("period_end", "period_end_events", tally.period_end, "events", q({"schema": PERIOD_END, "approval_id": aid})),
    ):  # fmt: skip
        F.fig(f"security/{fid}", t(label, lang), value, unit, query)
    return {
        "suspensions": _suspensions(registry, handlers, window),
        "suspension_actions": tally.suspend_actions,
        "reinstatements": tally.reinstate_actions,
        "enforcement_stops": dict(sorted(tally.enforcement_stops.items())),
        "enforcement_stops_total": sum(tally.enforcement_stops.values()),
        "kernel_refused": tally.kernel_refused,
        "period_end": tally.period_end,
    }


def _suspensions(registry: ApprovalRegistry, handlers: list[str], window: Window) -> list[dict]:
    """The handlers' suspensions in force at some instant of the window, oldest first."""
    out = []
    for h in handlers:
        for s in registry.suspensions(h):
            if s.suspended_at < window.until and (
                s.lifted_at is None or s.lifted_at > window.since
            ):
                out.append(s.to_json())
    out.sort(key=lambda s: s["suspended_at"])
    return out


def blocks(a: dict, lang: str) -> list[tuple]:
    s = a["security"]
    out = [
        heading(1, f"{t('sec_security', lang)} ({a['approval_id']})"),
        heading(2, t("suspensions", lang)),
    ]
    if s["suspensions"]:
        rows = [
            [
                x["username"],
                fmt_time(x["suspended_at"]),
                fmt_time(x["lifted_at"]) if x["lifted_at"] else t("still_suspended", lang),
                x["reason"],
            ]
            for x in s["suspensions"]
        ]
        headers = [t(c, lang) for c in ("user", "suspended_from", "suspended_until", "reason")]
        out.append(table(headers, rows, [0.15, 0.25, 0.25, 0.35]))
    else:
        out.append(para(t("none", lang), "muted"))
    out.append(
        (
            "kv",
            [
                (t("suspension_actions", lang), fmt_num(s["suspension_actions"])),
                (t("reinstatements", lang), fmt_num(s["reinstatements"])),
                (t("enforcement_stops", lang), fmt_num(s["enforcement_stops_total"])),
                (t("kernel_refused", lang), fmt_num(s["kernel_refused"])),
                (t("period_end_events", lang), fmt_num(s["period_end"])),
            ],
        )
    )
    return out
