"""Downloads: those allowed (and their volume) and those blocked, by reason."""

from __future__ import annotations

from typing import Any

from extensions.contracts.events import DOWNLOAD_ALLOWED, DOWNLOAD_BLOCKED
from hub.report.blocks import fmt_bytes, fmt_num, heading, table
from hub.report.query import Figures
from hub.report.tally import ApprovalTally
from hub.report.texts import block_reason, t


def blocked_where(aid: str) -> dict:
    return {"schema": DOWNLOAD_BLOCKED, "approval_id": aid}


def build(F: Figures, tally: ApprovalTally) -> dict[str, Any]:
    """The section's part of the approval's `usage`."""
    aid, lang, q = F.aid, F.lang, F.q
    allowed_where = {"schema": DOWNLOAD_ALLOWED, "approval_id": aid}
    F.fig(
        "downloads/allowed",
        t("downloads_allowed", lang),
        tally.allowed,
        "downloads",
        q(allowed_where),
    )
    F.fig(
        "downloads/allowed_bytes",
        t("downloads_allowed_bytes", lang),
        tally.allowed_bytes,
        "bytes",
        q(allowed_where, "sum:data.size"),
    )
    blocked = blocked_where(aid)
    for reason, n in sorted(tally.blocked.items()):
        F.fig(
            f"downloads/blocked/{reason}",
            f"{t('downloads_blocked', lang)} {reason}",
            n,
            "downloads",
            q(blocked | {"data.reason": reason}),
        )
    total = sum(tally.blocked.values())
    F.fig("downloads/blocked/total", t("downloads_blocked", lang), total, "downloads", q(blocked))
    return {
        "downloads_allowed": {"count": tally.allowed, "bytes": tally.allowed_bytes},
        "downloads_blocked": dict(sorted(tally.blocked.items())),
        "downloads_blocked_total": total,
    }


def blocks(a: dict, lang: str) -> list[tuple]:
    u = a["usage"]
    allowed = u["downloads_allowed"]
    out = [
        heading(2, t("downloads", lang)),
        (
            "kv",
            [
                (t("downloads_allowed", lang), fmt_num(allowed["count"])),
                (t("downloads_allowed_bytes", lang), fmt_bytes(allowed["bytes"])),
                (t("downloads_blocked", lang), fmt_num(u["downloads_blocked_total"])),
            ],
        ),
    ]
    if u["downloads_blocked"]:
        rows = [[block_reason(k, lang), fmt_num(v)] for k, v in u["downloads_blocked"].items()]
        out.append(table([t("reason", lang), t("count", lang)], rows, [0.7, 0.3]))
    return out
