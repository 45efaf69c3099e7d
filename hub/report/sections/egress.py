"""Egress: the ledger per handler, site and channel (the sum over Japan-time days of each
day's last egress-tally line), the days at the alert and at the cap, and the outputs
withheld and downloads blocked per handler and site."""

from __future__ import annotations

from typing import Any

from extensions.contracts.events import (
    DOWNLOAD_BLOCKED,
    EGRESS_ALERT,
    EGRESS_CAP,
    EGRESS_TALLY,
    OUTPUT_WITHHELD,
)
from hub.report.blocks import fmt_bytes, fmt_num, heading, para, table
from hub.report.query import Figures
from hub.report.tally import EGRESS_CHANNELS, EGRESS_MEASURES, ApprovalTally
from hub.report.texts import t


def build(F: Figures, tally: ApprovalTally) -> dict[str, Any]:
    """The approval's `egress`."""
    ledger = _ledger(F, tally)
    by_user_site = _by_user_site(F, tally, ledger)
    total = sum(r["bytes"] for r in ledger)
    F.fig(
        "egress/bytes/total",
        t("egress_bytes", F.lang),
        total,
        "bytes",
        F.q(
            {"schema": EGRESS_TALLY, "approval_id": F.aid},
            "sum-daily-last:data.bytes",
            "egress-ledger",
        ),
    )
    return {
        "ledger": ledger,
        "by_user_site": by_user_site,
        "bytes_total": total,
        "days_alert": sum(r["days_alert"] for r in by_user_site),
        "days_cap": sum(r["days_cap"] for r in by_user_site),
        "outputs_withheld": sum(tally.withheld.values()),
    }


def _ledger(F: Figures, tally: ApprovalTally) -> list[dict]:
    """One row per handler, site and channel (in the meter's order of channels)."""
    aid, lang, q = F.aid, F.lang, F.q
    sums: dict[tuple[str, str, str], dict[str, int]] = {}
    for (user, site, channel, _day), (_order, *values) in sorted(tally.egress_last.items()):
        row = sums.setdefault((user, site, channel), dict.fromkeys((*EGRESS_MEASURES, "days"), 0))
        for name, value in zip(EGRESS_MEASURES, values, strict=True):
            row[name] += value
        row["days"] += 1
    order = {c: i for i, c in enumerate(EGRESS_CHANNELS)}
    rows = []
    for (user, site, channel), row in sorted(
        sums.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 99), kv[0][2])
    ):
        rows.append({"user": user, "site": site, "channel": channel} | row)
        where = {
            "schema": EGRESS_TALLY,
            "approval_id": aid,
            "user": user,
            "site": site,
            "data.channel": channel,
        }
        key, who = f"egress/{user}/{site}/{channel}", f"{user} {site} {channel}"
        for name in EGRESS_MEASURES:
            F.fig(
                f"{key}/{name}",
                f"{t('egress_' + name, lang)} {who}",
                row[name],
                name,
                q(where, f"sum-daily-last:data.{name}", "egress-ledger"),
            )
        F.fig(
            f"{key}/days",
            f"{t('egress_days', lang)} {who}",
            row["days"],
            "days",
            q(where, "distinct:data.day"),
        )
    return rows


def _by_user_site(F: Figures, tally: ApprovalTally, ledger: list[dict]) -> list[dict]:
    """One row per handler and site: bytes, days at the alert and the cap, outputs
    withheld and downloads blocked."""
    aid, lang, q = F.aid, F.lang, F.q
    pairs = sorted(
        {(r["user"], r["site"]) for r in ledger}
        | {(u, s) for (u, s, _level) in tally.egress_days}
        | set(tally.withheld)
        | set(tally.blocked_at)
    )
    rows = []
    for user, site in pairs:
        at = {"approval_id": aid, "user": user, "site": site}
        row = {
            "user": user,
            "site": site,
            "bytes": sum(r["bytes"] for r in ledger if (r["user"], r["site"]) == (user, site)),
            "days_alert": len(tally.egress_days.get((user, site, "alert"), ())),
            "days_cap": len(tally.egress_days.get((user, site, "cap"), ())),
            "outputs_withheld": tally.withheld.get((user, site), 0),
            "downloads_blocked": tally.blocked_at.get((user, site), 0),
        }
        rows.append(row)
        for name, label, unit, query in (
            ("days_alert", "egress_days_alert", "days", q({"schema": EGRESS_ALERT} | at, "distinct:data.day")),
            ("days_cap", "egress_days_cap", "days", q({"schema": EGRESS_CAP} | at, "distinct:data.day")),
            ("outputs_withheld", "outputs_withheld", "outputs", q({"schema": OUTPUT_WITHHELD} | at)),
            ("downloads_blocked", "downloads_blocked", "downloads", q({"schema": DOWNLOAD_BLOCKED} | at)),
        ):  # fmt: skip
            F.fig(
                f"egress/{user}/{site}/{name}",
                f"{t(label, lang)} {user} {site}",
                row[name],
                unit,
                query,
            )
    return rows


def blocks(a: dict, lang: str) -> list[tuple]:
    """The ledger, then the alerts, caps and blocks per handler and site."""
    e = a.get("egress")
    out = [
        heading(1, f"{t('sec_egress', lang)} ({a['approval_id']})"),
        para(t("egress_intro", lang), "muted"),
    ]
    if not e or not (e["ledger"] or e["by_user_site"]):
        return out + [para(t("none", lang), "muted")]
    ledger = [
        [r["user"], r["site"], r["channel"], fmt_bytes(r["bytes"])]
        + [fmt_num(r[k]) for k in ("contents", "people", "days")]
        for r in e["ledger"]
    ]
    columns = ("user", "site", "channel", "egress_bytes", "egress_contents", "egress_people")
    out.append(heading(2, t("egress_ledger", lang)))
    out.append(
        table(
            [t(c, lang) for c in (*columns, "egress_days")],
            ledger,
            [0.12, 0.1, 0.1, 0.32, 0.12, 0.12, 0.12],
        )
    )
    counts = ("days_alert", "days_cap", "outputs_withheld", "downloads_blocked")
    levels = [
        [r["user"], r["site"], fmt_bytes(r["bytes"])] + [fmt_num(r[k]) for k in counts]
        for r in e["by_user_site"]
    ]
    columns = ("user", "site", "egress_bytes", "egress_days_alert", "egress_days_cap")
    out.append(heading(2, t("egress_levels", lang)))
    out.append(
        table(
            [t(c, lang) for c in (*columns, "outputs_withheld", "downloads_blocked")],
            levels,
            [0.12, 0.1, 0.3, 0.12, 0.12, 0.12, 0.12],
        )
    )
    return out
