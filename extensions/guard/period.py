"""The usage period: the banner's text, the warning window, and the end.

An approval's period is calendar days in Japan time; the last day counts
to 23:59:59 JST. The spawner passes the first instant after the period
(VISITING_APPROVAL_END, UTC) and the last day (VISITING_APPROVAL_END_DATE).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .context import JST, Clock, ServerContext


@dataclass(frozen=True)
class PeriodStatus:
    """What the banner shows at one instant."""

    approval_id: str
    site: str
    end_date: str | None
    days_left: int | None  # days including today, Japan time; 0 once ended
    level: str  # info, warning, ended
    text_en: str
    text_ja: str

    def to_json(self, refresh_seconds: int) -> dict:
        return {
            "approval_id": self.approval_id,
            "site": self.site,
            "end_date": self.end_date,
            "days_left": self.days_left,
            "level": self.level,
            "text_en": self.text_en,
            "text_ja": self.text_ja,
            "refresh_seconds": refresh_seconds,
        }


class UsagePeriod:
    """The approval period of this server, read against an injectable clock."""

    def __init__(self, context: ServerContext, clock: Clock):
        self.context = context
        self.clock = clock

    @property
    def warning_days(self) -> int:
        return self.context.rules.period_warning_days

    def ended(self, now: datetime | None = None) -> bool:
        end = self.context.approval_end
        return end is not None and (now or self.clock.now()) >= end

    def days_left(self, now: datetime | None = None) -> int | None:
        """Days of the period left, today included (Japan time); 0 when it has ended."""
        if self.context.end_date is None:
            return None
        if self.ended(now):
            return 0
        today = (now or self.clock.now()).astimezone(JST).date()
        return (self.context.end_date - today).days + 1

    def status(self, now: datetime | None = None) -> PeriodStatus:
        now = now or self.clock.now()
        c = self.context
        end = c.end_date.isoformat() if c.end_date else None
        left = self.days_left(now)
        if c.approval_end is None:
            level = "info"
            en = f"Site {c.site}: no approval period is known to this server."
            ja = f"サイト {c.site}: このサーバーには承認期間の情報がありません。"
        elif self.ended(now):
            level = "ended"
            en = (
                f"Approval {c.approval_id} ended on {end} (JST). Kernels are shut down and "
                "this server stops; ask the secretariat for an extension."
            )
            ja = (
                f"承認 {c.approval_id} の利用期間は {end} に終了しました。カーネルを停止し、"
                "このサーバーは停止します。延長は事務局に申請してください。"
            )
        else:
            level = "warning" if left <= self.warning_days else "info"
            if left == 1:
                en = (
                    f"Approval {c.approval_id} at site {c.site}: the period ends today ({end} JST)."
                )
                ja = f"承認 {c.approval_id}（サイト {c.site}）: 利用期間は本日 {end} で終了します。"
            else:
                en = (
                    f"Approval {c.approval_id} at site {c.site}: {left} days left "
                    f"(until {end} JST)."
                )
                ja = f"承認 {c.approval_id}（サイト {c.site}）: 残り {left} 日（{end} まで）。"
            if level == "warning":
                en += " Ask the secretariat now if you need an extension."
                ja += "延長が必要な場合は至急事務局へ申請してください。"
        return PeriodStatus(c.approval_id, c.site, end, left, level, en, ja)

    def ended_message(self) -> str:
        s = self.status()
        return f"{s.text_ja}\n{s.text_en}"
