"""What the approval registry hands to the rest of the system: views of approvals,
suspensions and query-audit resets, the report of a policy import, and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from extensions.contracts.clock import Period, as_utc
from hub.platform.policy_models import Quota
from hub.store.db import QueryAuditResetRow, SuspensionRow


@dataclass(frozen=True)
class ApprovalView:
    """An approval as the rest of the system sees it."""

    approval_id: str
    institution: str
    purpose: str
    handlers: tuple[str, ...]
    datasets: tuple[str, ...]
    period: Period
    quota: Quota | None
    dataset_sites: dict[str, str] = field(default_factory=dict)  # dataset -> site
    # set by the secretariat: revoked from this instant on; `period` then holds the
    # approved dates (with any extension) and `ends_before` the instant it really ended
    revoked_at: datetime | None = None
    approved_end: date | None = None  # the end in the application, when extended

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.dataset_sites.values())))

    @property
    def ends_before(self) -> datetime:
        """The first instant (UTC) at which the approval no longer holds."""
        end = self.period.ends_before
        return min(end, self.revoked_at) if self.revoked_at else end

    def datasets_at(self, site: str) -> tuple[str, ...]:
        return tuple(d for d in self.datasets if self.dataset_sites.get(d) == site)

    def status_at(self, instant: datetime) -> str:
        """'not-started', 'active', 'ended' or 'revoked' at `instant`."""
        if self.revoked_at is not None and as_utc(instant) >= self.revoked_at:
            return "revoked"
        return self.period.status_at(instant)

    def to_json(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "institution": self.institution,
            "purpose": self.purpose,
            "handlers": list(self.handlers),
            "datasets": list(self.datasets),
            "sites": {s: list(self.datasets_at(s)) for s in self.sites},
            "start": self.period.start.isoformat(),
            "end": self.period.end.isoformat(),
            "ends_before": self.ends_before.isoformat(),
            "approved_end": (self.approved_end or self.period.end).isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "quota": self.quota.to_dict() if self.quota else None,
        }


@dataclass(frozen=True)
class SuspensionView:
    """A suspension as the rest of the system sees it."""

    id: int
    username: str
    institution: str | None
    reason: str
    suspended_at: datetime
    suspended_by: str
    ban_until: date | None
    ban_indefinite: bool
    lifted_at: datetime | None = None
    lifted_by: str | None = None
    lift_reason: str | None = None

    def active_at(self, instant: datetime) -> bool:
        instant = as_utc(instant)
        return self.suspended_at <= instant and (self.lifted_at is None or instant < self.lifted_at)

    def banned_on(self, day: date) -> bool:
        """Whether new applications naming this person are refused on `day`."""
        if self.ban_indefinite:
            return True
        return self.ban_until is not None and day <= self.ban_until

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "institution": self.institution,
            "reason": self.reason,
            "suspended_at": self.suspended_at.isoformat(),
            "suspended_by": self.suspended_by,
            "ban_until": self.ban_until.isoformat() if self.ban_until else None,
            "ban_indefinite": self.ban_indefinite,
            "lifted_at": self.lifted_at.isoformat() if self.lifted_at else None,
            "lifted_by": self.lifted_by,
            "lift_reason": self.lift_reason,
        }

    @classmethod
    def from_row(cls, r: SuspensionRow) -> SuspensionView:
        return cls(
            id=r.id,
            username=r.username,
            institution=r.institution,
            reason=r.reason,
            suspended_at=r.suspended_at,
            suspended_by=r.suspended_by,
            ban_until=r.ban_until,
            ban_indefinite=bool(r.ban_indefinite),
            lifted_at=r.lifted_at,
            lifted_by=r.lifted_by,
            lift_reason=r.lift_reason,
        )


@dataclass(frozen=True)
class QueryAuditResetView:
    """A reset of an approval's query-set audit as the rest of the system sees it."""

    id: int
    approval_id: str
    at: datetime
    by: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "approval_id": self.approval_id,
            "at": self.at.isoformat(),
            "by": self.by,
            "reason": self.reason,
        }

    @classmethod
    def from_row(cls, r: QueryAuditResetRow) -> QueryAuditResetView:
        return cls(
            id=r.id, approval_id=r.approval_id, at=r.reset_at, by=r.reset_by, reason=r.reason
        )


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    not_in_directory: list[str] = field(default_factory=list)
    sites_changed: list[str] = field(default_factory=list)
    roles_changed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.sites_changed or self.roles_changed)


class RegistryError(Exception):
    """A registry operation refused; the message is for the person who asked."""
