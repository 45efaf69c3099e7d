"""The usage period: the banner's text, the warning window, and the end.

An approval's period is calendar days in Japan time; the last day counts
to 23:59:59 JST. The spawner passes the first instant after the period
(VISITING_APPROVAL_END, UTC) and the last day (VISITING_APPROVAL_END_DATE).
While the server runs, the secretariat may extend the approval, revoke it or
suspend the person: at each period check the guard asks the hub's audit
service (GET <audit url>/api/period) and takes its answer (`HubPeriod`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from ..contracts.clock import JST, Clock
from .context import ServerContext

#: what the hub may say of the approval; see hub.services.audit.handlers.PeriodHandler
HUB_STATUSES = ("active", "not-started", "ended", "revoked", "suspended")
#: the answers after which the period is over now, whatever the dates say
HALTING = ("ended", "revoked", "suspended")


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
        if self.context.halted is not None:
            return True
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
        if c.halted == "revoked":
            level = "ended"
            day = c.approval_end.astimezone(JST).date().isoformat() if c.approval_end else end
            en = (
                f"Approval {c.approval_id} was revoked by the secretariat on {day} (JST). "
                "Kernels are shut down and this server stops; ask the secretariat for details."
            )
            ja = (
                f"承認 {c.approval_id} は {day} に事務局により取り消されました。カーネルを停止し、"
                "このサーバーは停止します。詳細は事務局にお問い合わせください。"
            )
        elif c.halted == "suspended":
            level = "ended"
            en = (
                f"Your use of the platform is suspended by the secretariat; approval "
                f"{c.approval_id} may not be used. Kernels are shut down and this server stops; "
                "please contact the secretariat."
            )
            ja = (
                f"事務局によりプラットフォームの利用が停止されました。承認 {c.approval_id} による"
                "利用はできません。カーネルを停止し、このサーバーは停止します。事務局にご連絡ください。"
            )
        elif c.approval_end is None:
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


# ---------------------------------------------------------------------------
# the hub's word on the approval, while the server runs


class HubAnswerError(ValueError):
    """The hub's answer about the period could not be used; the guard keeps what it knows."""


@dataclass(frozen=True)
class HubPeriod:
    """The hub's answer to GET <audit url>/api/period?approval_id=<id>."""

    approval_id: str
    end_date: date  # the last day, Japan time, with any extension
    ends_before: datetime  # the first instant it no longer holds (the revocation, if revoked)
    status: str  # one of HUB_STATUSES
    suspended: bool

    @classmethod
    def from_json(cls, body: str | bytes | dict, approval_id: str) -> HubPeriod:
        """Parse and check an answer about `approval_id`; HubAnswerError when it is unusable."""
        try:
            raw = json.loads(body) if isinstance(body, str | bytes) else body
        except ValueError as e:
            raise HubAnswerError(f"the answer is not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise HubAnswerError("the answer is not a JSON object")
        missing = [k for k in cls.__dataclass_fields__ if k not in raw]
        if missing:
            raise HubAnswerError(f"the answer lacks {', '.join(missing)}")
        if raw["approval_id"] != approval_id:
            raise HubAnswerError(
                f"the answer is about approval {raw['approval_id']!r}, not {approval_id!r}"
            )
        if raw["status"] not in HUB_STATUSES:
            raise HubAnswerError(f"unknown status {raw['status']!r}")
        if not isinstance(raw["suspended"], bool):
            raise HubAnswerError("'suspended' must be true or false")
        if raw["suspended"] != (raw["status"] == "suspended"):
            raise HubAnswerError(
                f"status {raw['status']!r} and suspended={raw['suspended']} disagree"
            )
        try:
            end_date = date.fromisoformat(raw["end_date"])
            ends_before = datetime.fromisoformat(raw["ends_before"])
        except (TypeError, ValueError) as e:
            raise HubAnswerError(f"end_date or ends_before is not ISO 8601: {e}") from None
        if ends_before.tzinfo is None:
            raise HubAnswerError("ends_before needs a UTC offset")
        return cls(
            approval_id, end_date, ends_before.astimezone(UTC), raw["status"], raw["suspended"]
        )

    def apply_to(self, context: ServerContext) -> ServerContext:
        """`context` as the hub says it stands now: a new end, or halted (a new object)."""
        return replace(
            context,
            approval_end=self.ends_before,
            end_date=self.end_date,
            halted=self.status if self.status in HALTING else None,
        )


def period_url(audit_url: str, approval_id: str) -> str:
    """Where the hub's audit service answers about `approval_id`."""
    return audit_url.rstrip("/") + "/api/period?" + urlencode({"approval_id": approval_id})


class HubPeriodSource:
    """Asks the hub's audit service about the approval, with the server's own token."""

    def __init__(self, audit_url: str, token: str, timeout: float = 10.0):
        self.audit_url = audit_url
        self.token = token
        self.timeout = timeout

    async def fetch(self, approval_id: str) -> HubPeriod:
        """The hub's answer; raises (HubAnswerError, an HTTP or network error) when there is none."""
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest

        req = HTTPRequest(
            period_url(self.audit_url, approval_id),
            headers={"Authorization": f"token {self.token}"},
            request_timeout=self.timeout,
            connect_timeout=min(self.timeout, 5.0),
        )
        response = await AsyncHTTPClient().fetch(req)
        return HubPeriod.from_json(response.body, approval_id)
