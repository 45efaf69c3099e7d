"""Who may log in, and the reason a refused person reads.

Pure logic over registry views: the authenticator, the spawner and the
services all ask the same question and must give the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from extensions.contracts.clock import jst_date
from hub.store.views import ApprovalView, SuspensionView

SECRETARIAT = "secretariat"
SITE_ADMIN_PREFIX = "site-admin:"


def approvals_at_site(approvals: Sequence[ApprovalView], site_id: str) -> list[ApprovalView]:
    """The approvals covering a dataset held at `site_id`, latest end first (the one a server uses)."""
    covering = [a for a in approvals if a.datasets_at(site_id)]
    return sorted(covering, key=lambda a: a.period.end, reverse=True)


def role_group(role: str) -> str:
    """The JupyterHub group that carries a platform role ('site-admin:nig' -> 'site-admin-nig')."""
    return role.replace(":", "-")


@dataclass(frozen=True)
class AccessDecision:
    """The answer to "may this person use the platform now?"."""

    allowed: bool
    reason: str  # active | role | suspended | no-approval | not-started | ended | revoked
    message_en: str = ""
    message_ja: str = ""
    approvals: tuple[ApprovalView, ...] = ()
    roles: tuple[str, ...] = ()
    related: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """Both languages, Japanese first, as a person in Japan reads them."""
        return f"{self.message_ja} / {self.message_en}" if self.message_en else ""

    def auth_state(self, checked_at: datetime) -> dict:
        """What goes into JupyterHub's auth_state for later checks and the home page."""
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "checked_at": checked_at.isoformat(),
            "roles": list(self.roles),
            "approvals": [a.to_json() for a in self.approvals],
        }


def decide_access(
    username: str,
    approvals: Sequence[ApprovalView],
    roles: Sequence[str],
    now: datetime,
    contact: str = "",
    suspension: SuspensionView | None = None,
) -> AccessDecision:
    """May `username` log in at `now`, given every approval naming them, their roles and
    the suspension in force, if any?

    A suspended person is refused whatever else holds. A data handler needs an
    approval whose period holds `now` and that is not revoked. Platform roles
    (secretariat, site admin) log in without one. A refused person is told the
    most useful reason: a suspension, else when an approval will start, else
    when the last one ended or was revoked, else that there is none.
    """
    roles = tuple(roles)
    ask = _Ask(contact)
    if suspension is not None and suspension.active_at(now):
        return _suspended(suspension, ask)
    active = tuple(a for a in approvals if a.status_at(now) == "active")
    if active:
        return AccessDecision(True, "active", approvals=active, roles=roles)
    if roles:
        return AccessDecision(True, "role", roles=roles)
    return _refused(username, approvals, now, ask)


def _refused(
    username: str, approvals: Sequence[ApprovalView], now: datetime, ask: _Ask
) -> AccessDecision:
    """The most useful reason for a person with no active approval and no role."""
    upcoming = sorted(
        (a for a in approvals if a.status_at(now) == "not-started"), key=lambda a: a.period.start
    )
    if upcoming:
        return _not_started(upcoming[0], ask)
    ended = sorted(
        (a for a in approvals if a.status_at(now) in ("ended", "revoked")),
        key=lambda a: a.ends_before,
    )
    if ended and ended[-1].status_at(now) == "revoked":
        return _revoked(ended[-1], ask)
    if ended:
        return _ended(ended[-1], ask)
    return _no_approval(username, ask)


@dataclass(frozen=True)
class _Ask:
    """Whom a refused person may ask, as the last sentence of each language's message."""

    contact: str

    @property
    def en(self) -> str:
        return f" Contact: {self.contact}" if self.contact else ""

    @property
    def ja(self) -> str:
        return f" 問い合わせ先: {self.contact}" if self.contact else ""


def _suspended(suspension: SuspensionView, ask: _Ask) -> AccessDecision:
    day = jst_date(suspension.suspended_at).isoformat()
    return AccessDecision(
        False,
        "suspended",
        message_en=(
            f"Your access to the platform is suspended (since {day}). You cannot log in, "
            f"start servers or query sites until the secretariat lifts the suspension; "
            f"please contact the secretariat.{ask.en}"
        ),
        message_ja=(
            f"プラットフォームの利用は停止されています（{day} から）。事務局が停止を解除するまで、"
            f"ログイン、サーバーの起動、サイトへの問い合わせはできません。事務局にご連絡ください。{ask.ja}"
        ),
        related={"suspension_id": str(suspension.id), "date": day},
    )


def _not_started(a: ApprovalView, ask: _Ask) -> AccessDecision:
    day = a.period.start.isoformat()
    return AccessDecision(
        False,
        "not-started",
        message_en=f"Your approval {a.approval_id} starts on {day}; you can log in from that day (Japan time).{ask.en}",
        message_ja=f"利用承認 {a.approval_id} の利用期間は {day} に始まります。その日（日本時間）からログインできます。{ask.ja}",
        related={"approval_id": a.approval_id, "date": day},
    )


def _revoked(a: ApprovalView, ask: _Ask) -> AccessDecision:
    day = jst_date(a.revoked_at).isoformat()
    return AccessDecision(
        False,
        "revoked",
        message_en=(
            f"Your approval {a.approval_id} was revoked by the secretariat on {day}. "
            f"The data may no longer be used under it.{ask.en}"
        ),
        message_ja=(
            f"利用承認 {a.approval_id} は {day} に事務局により取り消されました。"
            f"この承認によるデータの利用はできません。{ask.ja}"
        ),
        related={"approval_id": a.approval_id, "date": day},
    )


def _ended(a: ApprovalView, ask: _Ask) -> AccessDecision:
    day = a.period.end.isoformat()
    return AccessDecision(
        False,
        "ended",
        message_en=(
            f"Your approval {a.approval_id} ended on {day}. Using the data after the approved "
            f"period is not allowed; ask the secretariat about an extension or a new application.{ask.en}"
        ),
        message_ja=(
            f"利用承認 {a.approval_id} の利用期間は {day} に終了しました。承認期間外の利用はできません。"
            f"延長または新規申請については事務局にお問い合わせください。{ask.ja}"
        ),
        related={"approval_id": a.approval_id, "date": day},
    )


def _no_approval(username: str, ask: _Ask) -> AccessDecision:
    return AccessDecision(
        False,
        "no-approval",
        message_en=(
            f"User {username} has no approved application for data use. Only data handlers named in an "
            f"approved application may use this platform.{ask.en}"
        ),
        message_ja=(
            f"ユーザー {username} には承認された利用申請がありません。承認された申請に記載された"
            f"データ取扱者のみが利用できます。{ask.ja}"
        ),
    )
