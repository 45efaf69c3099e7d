"""The monthly series the charts draw: server hours per site, federated queries and
blocked downloads, per Japan-time month."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from extensions.contracts.clock import JST
from extensions.contracts.events import FEDERATION_QUERY
from hub.report.blocks import heading
from hub.report.query import Figures
from hub.report.request import Window, iso
from hub.report.sections.downloads import blocked_where
from hub.report.sections.usage import hours_where
from hub.report.tally import ApprovalTally
from hub.report.texts import t

#: the charts of an approval with activity (hub/report/charts.py), in the report's order
CHARTS = ("server_hours", "federation", "blocked")


def build(
    F: Figures,
    tally: ApprovalTally,
    window: Window,
    months: list[datetime],
    hours_month: dict[str, list[float]],
) -> dict[str, Any]:
    """The series, and a figure for each month's point (its query over that month)."""
    aid, lang, q = F.aid, F.lang, F.q
    month_names = [m.astimezone(JST).strftime("%Y-%m") for m in months[:-1]]
    monthly = {
        "months": month_names,
        "server_hours": {
            site: [round(h, 3) for h in hours_month[site]] for site in sorted(hours_month)
        },
        "federation_queries": list(tally.federation_month),
        "downloads_blocked": list(tally.blocked_month),
    }
    for i, name in enumerate(month_names):
        span = (iso(max(months[i], window.since)), iso(min(months[i + 1], window.until)))
        F.fig(
            f"monthly/{name}/federation",
            f"{t('federation', lang)} {name}",
            tally.federation_month[i],
            "queries",
            q({"schema": FEDERATION_QUERY, "approval_id": aid}, span=span),
        )
        F.fig(
            f"monthly/{name}/blocked",
            f"{t('downloads_blocked', lang)} {name}",
            tally.blocked_month[i],
            "downloads",
            q(blocked_where(aid), span=span),
        )
        for site in sorted(hours_month):
            F.fig(
                f"monthly/{name}/server_hours/{site}",
                f"{t('server_hours', lang)} {site} {name}",
                round(hours_month[site][i], 3),
                "h",
                q(hours_where(aid) | {"site": site}, "server-hours", "server-hours", span=span),
            )
    return monthly


def blocks(a: dict, lang: str) -> list[tuple]:
    """The charts, when the approval had activity."""
    if not a["activity"]:
        return []
    monthly = a["usage"]["monthly"]
    return [heading(2, t("sec_charts", lang))] + [("chart", key, monthly) for key in CHARTS]
