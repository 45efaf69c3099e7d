"""Who may log in, and the reason a refused person reads.

Pure logic over registry views: the authenticator, the spawner and the
services all ask the same question and must give the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from extensions.contracts.clock import jst_date
from hub.platform.messages import Message, message
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
    #: why not, in both languages (from the message table), for a refusal
    text: Message | None = None
    approvals: tuple[ApprovalView, ...] = ()
    roles: tuple[str, ...] = ()
    related: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """Both languages, Japanese first, as a person in Japan reads them."""
        return str(self.text) if self.text else ""

    @property
    def message_en(self) -> str:
        return self.text.en if self.text else ""

    @property
    def message_ja(self) -> str:
        return self.text.ja if self.text else ""

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
    if suspension is not None and suspension.active_at(now):
        return _suspended(suspension, contact)
    active = tuple(a for a in approvals if a.status_at(now) == "active")
    if active:
        return AccessDecision(True, "active", approvals=active, roles=roles)
    if roles:
        return AccessDecision(True, "role", roles=roles)
    return _refused(username, approvals, now, contact)


def _refused(
    username: str, approvals: Sequence[ApprovalView], now: datetime, contact: str
) -> AccessDecision:
    """The most useful reason for a person with no active approval and no role."""
    upcoming = sorted(
        (a for a in approvals if a.status_at(now) == "not-started"), key=lambda a: a.period.start
    )
    if upcoming:
        return _not_started(upcoming[0], contact)
    ended = sorted(
        (a for a in approvals if a.status_at(now) in ("ended", "revoked")),
        key=lambda a: a.ends_before,
    )
    if ended and ended[-1].status_at(now) == "revoked":
        return _revoked(ended[-1], contact)
    if ended:
        return _ended(ended[-1], contact)
    return _no_approval(username, contact)


def _refusal(reason: str, key: str, contact: str, related=None, **fields) -> AccessDecision:
    """A refusal with its text from the message table, and whom to ask when there is a contact."""
    text = message(key, **fields)
    if contact:
        ask = message("access.contact", contact=contact)
        text = Message(key, text.ja + ask.ja, text.en + ask.en)
    return AccessDecision(False, reason, text=text, related=related or {})


def _suspended(suspension: SuspensionView, contact: str) -> AccessDecision:
    day = jst_date(suspension.suspended_at).isoformat()
    related = {"suspension_id": str(suspension.id), "date": day}
    return _refusal("suspended", "access.suspended", contact, related, day=day)


def _not_started(a: ApprovalView, contact: str) -> AccessDecision:
    day = a.period.start.isoformat()
    related = {"approval_id": a.approval_id, "date": day}
    return _refusal(
        "not-started", "access.not_started", contact, related, approval=a.approval_id, day=day
    )


def _revoked(a: ApprovalView, contact: str) -> AccessDecision:
    day = jst_date(a.revoked_at).isoformat()
    related = {"approval_id": a.approval_id, "date": day}
    return _refusal("revoked", "access.revoked", contact, related, approval=a.approval_id, day=day)


def _ended(a: ApprovalView, contact: str) -> AccessDecision:
    day = a.period.end.isoformat()
    related = {"approval_id": a.approval_id, "date": day}
    return _refusal("ended", "access.ended", contact, related, approval=a.approval_id, day=day)


def _no_approval(username: str, contact: str) -> AccessDecision:
    return _refusal("no-approval", "access.no_approval", contact, username=username)
