"""Usage: sessions and server, CPU and memory hours by site, handler and month."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from extensions.contracts.events import KERNEL_START, SERVER_START, SERVER_STOP
from hub.report.blocks import fmt_num, fmt_quota, heading, para, table
from hub.report.query import Figures
from hub.report.request import Window
from hub.report.tally import ApprovalTally, QuotaHistory, Session
from hub.report.texts import t
from hub.store.registry import ApprovalView

GIB = 1024**3


def session_where(aid: str) -> dict:
    return {"schema": SERVER_START, "approval_id": aid}


def hours_where(aid: str) -> dict:
    """The records the server-hours rule pairs."""
    return {"schema": [SERVER_START, SERVER_STOP], "approval_id": aid}


@dataclass
class Hours:
    """Sessions by the pairing rule and their hours inside the window."""

    sessions: list[Session]
    unpaired: int  # stops that closed no session
    site: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    user: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # core-hours
    memory: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # GiB-hours
    month: dict[str, list[float]] = field(default_factory=dict)  # per site, per month
    quotas: dict[str, set[tuple]] = field(default_factory=lambda: defaultdict(set))


def server_hours(
    tally: ApprovalTally,
    view: ApprovalView,
    window: Window,
    bound: datetime,
    months: list[datetime],
    quotas: QuotaHistory,
) -> Hours:
    """Each session cut to the window, its hours per site, handler and Japan-time month,
    and the CPU and memory hours of the quota it started with."""
    h = Hours(*tally.sessions_in(window.since, bound))
    h.month = defaultdict(lambda: [0.0] * (len(months) - 1))
    for s in h.sessions:
        start, end = max(s.start, window.since), min(s.end, window.until)
        if end <= start:
            continue
        hours = (end - start).total_seconds() / 3600
        quota = quotas.at(view, s.site, s.started)
        h.site[s.site] += hours
        h.user[s.user] += hours
        h.cpu[s.site] += hours * (quota.cpu or 0)
        h.memory[s.site] += hours * (quota.memory or 0) / GIB
        h.quotas[s.site].add((quota.cpu, quota.memory))
        i = bisect.bisect_right(months, start) - 1
        while start < end:
            piece_end = min(end, months[i + 1])
            h.month[s.site][i] += (piece_end - start).total_seconds() / 3600
            start, i = piece_end, i + 1
    return h


@dataclass
class Usage:
    """The usage section as made: its hours, its rows and its totals."""

    hours: Hours
    by_site: list[dict]
    by_user: list[dict]
    sessions: int
    server_hours: float

    def document(self) -> dict[str, Any]:
        """The section's part of the approval's `usage`, in the document's order."""
        h = self.hours
        return {
            "sessions": self.sessions,
            "server_hours": self.server_hours,
            "cpu_hours": round(sum(h.cpu.values()), 3),
            "memory_gib_hours": round(sum(h.memory.values()), 3),
            "by_site": self.by_site,
            "by_user": self.by_user,
            "sessions_without_stop": sum(
                1 for s in h.sessions if s.ended_by in ("bound", "next-start")
            ),
            "stops_without_start": h.unpaired,
        }

    def session_list(self) -> list[dict[str, Any]]:
        return [
            {
                "user": s.user,
                "site": s.site,
                "start": s.start.isoformat(),
                "end": s.end.isoformat(),
                "ended_by": s.ended_by,
                "carried_in": s.carried_in,
            }
            for s in self.hours.sessions
        ]


def build(F: Figures, tally: ApprovalTally, h: Hours) -> Usage:
    """Sessions and server, CPU and memory hours by site, then in all, then by handler."""
    by_site = _by_site(F, tally, h)
    total_sessions = sum(tally.sessions.values())
    total_hours = round(sum(h.site.values()), 3)
    _totals(F, total_sessions, total_hours, h)
    by_user = _by_user(F, tally, h)
    return Usage(h, by_site, by_user, total_sessions, total_hours)


def _by_site(F: Figures, tally: ApprovalTally, h: Hours) -> list[dict]:
    aid, lang, q = F.aid, F.lang, F.q
    sites = sorted(tally.sites | set(tally.sessions) | {s.site for s in h.sessions})
    rows = []
    for site in sites:
        row = {
            "site": site,
            "sessions": tally.sessions.get(site, 0),
            "server_hours": round(h.site.get(site, 0.0), 3),
            "cpu_hours": round(h.cpu.get(site, 0.0), 3),
            "memory_gib_hours": round(h.memory.get(site, 0.0), 3),
            "kernel_starts": tally.kernel_starts.get(site, 0),
            "quotas": [{"cpu": c, "memory": m} for c, m in sorted(h.quotas.get(site, ()), key=str)],
        }
        rows.append(row)
        at = {"site": site}
        hours_at = hours_where(aid) | at
        kernels_at = {"schema": KERNEL_START, "approval_id": aid} | at
        for name, label, unit, query in (  # the figures of one site, in the report's order
            ("sessions", "sessions", "sessions", q(session_where(aid) | at)),
            ("server_hours", "server_hours", "h", q(hours_at, "server-hours", "server-hours")),
            ("cpu_hours", "cpu_hours", "core-h", q(hours_at, "server-hours", "cpu-hours")),
            ("memory_gib_hours", "memory_hours", "GiB-h", q(hours_at, "server-hours", "cpu-hours")),
            ("kernel_starts", "kernel_starts", "kernels", q(kernels_at)),
        ):
            F.fig(f"{name}/{site}", f"{t(label, lang)} {site}", row[name], unit, query)
    return rows


def _totals(F: Figures, sessions: int, hours: float, h: Hours) -> None:
    aid, lang, q = F.aid, F.lang, F.q
    F.fig("sessions/total", t("sessions", lang), sessions, "sessions", q(session_where(aid)))
    for name, label, value, unit, rule in (
        ("server_hours", "server_hours", hours, "h", "server-hours"),
        ("cpu_hours", "cpu_hours", round(sum(h.cpu.values()), 3), "core-h", "cpu-hours"),
        ("memory_gib_hours", "memory_hours", round(sum(h.memory.values()), 3), "GiB-h", "cpu-hours"),
    ):  # fmt: skip
        F.fig(
            f"{name}/total", t(label, lang), value, unit, q(hours_where(aid), "server-hours", rule)
        )


def _by_user(F: Figures, tally: ApprovalTally, h: Hours) -> list[dict]:
    aid, lang, q = F.aid, F.lang, F.q
    rows = []
    for user in sorted(tally.handlers | set(tally.sessions_by_user) | set(h.user)):
        row = {
            "user": user,
            "sessions": tally.sessions_by_user.get(user, 0),
            "server_hours": round(h.user.get(user, 0.0), 3),
        }
        rows.append(row)
        at = {"user": user}
        F.fig(
            f"sessions/user/{user}",
            f"{t('sessions', lang)} {user}",
            row["sessions"],
            "sessions",
            q(session_where(aid) | at),
        )
        F.fig(
            f"server_hours/user/{user}",
            f"{t('server_hours', lang)} {user}",
            row["server_hours"],
            "h",
            q(hours_where(aid) | at, "server-hours", "server-hours"),
        )
    return rows


def blocks(a: dict, lang: str) -> list[tuple]:
    """The usage in all, per site and per handler."""
    u = a["usage"]
    out = [heading(1, f"{t('sec_usage', lang)} ({a['approval_id']})")]
    if not a["activity"]:
        out.append(para(t("no_activity", lang), "alert"))
    total_kernels = sum(s["kernel_starts"] for s in u["by_site"])
    out.append(
        (
            "kv",
            [
                (t("sessions", lang), fmt_num(u["sessions"])),
                (t("server_hours", lang), fmt_num(float(u["server_hours"]))),
                (t("cpu_hours", lang), fmt_num(float(u["cpu_hours"]))),
                (t("memory_hours", lang), fmt_num(float(u["memory_gib_hours"]))),
                (t("kernel_starts", lang), fmt_num(total_kernels)),
            ],
        )
    )
    columns = ("site", "sessions", "server_hours", "cpu_hours", "memory_hours", "kernel_starts")
    site_rows = [
        [
            s["site"],
            fmt_num(s["sessions"]),
            fmt_num(float(s["server_hours"])),
            fmt_num(float(s["cpu_hours"])),
            fmt_num(float(s["memory_gib_hours"])),
            fmt_num(s["kernel_starts"]),
            fmt_quota(s["quotas"]),
        ]
        for s in u["by_site"]
    ]
    out.append(heading(2, t("usage_by_site", lang)))
    out.append(
        table(
            [t(c, lang) for c in (*columns, "quota")],
            site_rows,
            [0.1, 0.12, 0.15, 0.15, 0.17, 0.13, 0.18],
        )
    )
    user_rows = [
        [s["user"], fmt_num(s["sessions"]), fmt_num(float(s["server_hours"]))] for s in u["by_user"]
    ]
    out.append(heading(2, t("usage_by_user", lang)))
    out.append(
        table(
            [t(c, lang) for c in ("user", "sessions", "server_hours")], user_rows, [0.4, 0.3, 0.3]
        )
    )
    return out
