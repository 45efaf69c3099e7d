"""The approval registry: sites, datasets, approvals, their handlers and changes, roles.

SQLAlchemy over SQLite by default (a PostgreSQL URL works the same way).
Instants are stored as naive UTC and handed out timezone-aware. Importing a
validated policy directory is idempotent: an unchanged approval is left
alone, a changed one is updated and the change recorded with what changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from extensions.contracts.clock import Clock, Period, as_utc, jst_date
from hub.platform.policy import Platform, PolicyBundle, Quota

# ---------------------------------------------------------------------------
# schema


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC (SQLite keeps no offsets)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    pass


class SiteRow(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_ja: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(100), default="")
    docker_endpoint: Mapped[str] = mapped_column(String(300))
    network: Mapped[str] = mapped_column(String(100))
    images: Mapped[list] = mapped_column(JSON)
    default_image: Mapped[str] = mapped_column(String(300))
    quota: Mapped[dict] = mapped_column(JSON)


class DatasetRow(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300), default="")
    files: Mapped[list] = mapped_column(JSON)


class ApprovalRow(Base):
    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution: Mapped[str] = mapped_column(String(300), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_before: Mapped[datetime] = mapped_column(UTCDateTime)
    quota: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    content: Mapped[dict] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    handlers: Mapped[list[ApprovalHandlerRow]] = relationship(
        cascade="all, delete-orphan", order_by="ApprovalHandlerRow.username"
    )
    datasets: Mapped[list[ApprovalDatasetRow]] = relationship(
        cascade="all, delete-orphan", order_by="ApprovalDatasetRow.dataset_id"
    )
    change_log: Mapped[list[ApprovalChangeRow]] = relationship(
        cascade="all, delete-orphan", order_by="ApprovalChangeRow.id"
    )


class ApprovalHandlerRow(Base):
    __tablename__ = "approval_handlers"
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class ApprovalDatasetRow(Base):
    __tablename__ = "approval_datasets"
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)


class ApprovalChangeRow(Base):
    """What changed in an approval, and when: the record the platform rules ask for."""

    __tablename__ = "approval_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))  # created | updated
    changes: Mapped[dict] = mapped_column(JSON)  # field -> [old, new]
    source: Mapped[str] = mapped_column(String(500), default="")


class RoleGrantRow(Base):
    __tablename__ = "role_grants"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(64), primary_key=True)


# What the secretariat and site admins decide after an application was approved lives in
# tables of its own: importing the policy directory again never undoes it.


class SuspensionRow(Base):
    """A data handler suspended by the secretariat, from `suspended_at` until lifted."""

    __tablename__ = "suspensions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    institution: Mapped[str | None] = mapped_column(String(300), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    suspended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    suspended_by: Mapped[str] = mapped_column(String(64))
    ban_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    ban_indefinite: Mapped[bool] = mapped_column(Boolean, default=False)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lift_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class ApprovalOverrideRow(Base):
    """An approval's end as the secretariat set it: extended, or revoked at an instant."""

    __tablename__ = "approval_overrides"
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), primary_key=True)
    end_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


class QueryAuditResetRow(Base):
    """A reset of an approval's query-set audit, decided by the secretariat with a reason.

    The sites' gateways keep the audit (the sets of people an approval's answers summed
    over); they learn of the latest reset with the approval and start a fresh history,
    archiving the old one. Every reset is kept: the annual report lists them.
    """

    __tablename__ = "query_audit_resets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), index=True)
    reset_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reset_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class SiteSettingRow(Base):
    """A site's image allow-list and default quota as its site admins set them."""

    __tablename__ = "site_settings"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    images: Mapped[list | None] = mapped_column(JSON, nullable=True)
    quota: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


class ApprovalQuotaRow(Base):
    """The quota of one approval's servers at one site, set by that site's admins."""

    __tablename__ = "approval_quotas"
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    quota: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


# ---------------------------------------------------------------------------
# views handed to the rest of the system


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


# ---------------------------------------------------------------------------
# the registry


def _content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine


def create_tables(engine: Engine, metadata) -> None:
    """Create the tables that are missing; safe when several processes open a new database.

    Two processes (or threads) opening a new database at once both see no tables and
    both create them: the one that loses gets "already exists" (PostgreSQL and SQLite
    alike) while the other may still be half-way through. It waits a little and checks
    again, until every table is there.
    """
    attempts = 20
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


class ApprovalRegistry:
    """Approvals, handlers, datasets and roles, with the queries the platform needs."""

    def __init__(self, database_url: str, clock: Clock | None = None):
        self.database_url = database_url
        self.clock = clock or Clock()
        self.engine = make_engine(database_url)
        create_tables(self.engine, Base.metadata)

    @classmethod
    def for_platform(cls, platform: Platform, clock: Clock | None = None) -> ApprovalRegistry:
        return cls(platform.database_url, clock=clock)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            with s.begin():
                yield s

    def close(self) -> None:
        self.engine.dispose()

    # -- import -----------------------------------------------------------

    def import_policy(self, bundle: PolicyBundle) -> ImportReport:
        """Bring the registry in line with a validated policy directory, in one transaction."""
        report = ImportReport()
        now = self.clock.now()
        with self.session() as s:
            self._sync_sites(s, bundle.platform, report)
            s.flush()
            existing = {row.id: row for row in s.scalars(select(ApprovalRow))}
            for approval in bundle.approvals.values():
                content = approval.content()
                digest = _content_hash(content)
                row = existing.get(approval.approval_id)
                if row is None:
                    self._refuse_banned(s, approval, now)
                    row = ApprovalRow(id=approval.approval_id, created_at=now)
                    s.add(row)
                    self._fill(row, approval, content, digest, now)
                    row.change_log.append(
                        ApprovalChangeRow(
                            at=now,
                            kind="created",
                            changes={},
                            source=approval.source,
                        )
                    )
                    report.created.append(approval.approval_id)
                elif row.content_hash == digest:
                    report.unchanged.append(approval.approval_id)
                else:
                    changes = _diff(row.content, content)
                    self._fill(row, approval, content, digest, now)
                    row.change_log.append(
                        ApprovalChangeRow(
                            at=now,
                            kind="updated",
                            changes=changes,
                            source=approval.source,
                        )
                    )
                    report.updated[approval.approval_id] = changes
            report.not_in_directory = sorted(set(existing) - set(bundle.approvals))
            if bundle.accounts:
                self._sync_roles(s, bundle, report)
        return report

    @staticmethod
    def _refuse_banned(s: Session, approval, now: datetime) -> None:
        """A new application may not name a person banned from applying (nothing is imported)."""
        today = jst_date(now)
        for handler in sorted(set(approval.handlers)):
            for r in s.scalars(select(SuspensionRow).where(SuspensionRow.username == handler)):
                if SuspensionView.from_row(r).banned_on(today):
                    until = "indefinitely" if r.ban_indefinite else f"until {r.ban_until}"
                    raise RegistryError(
                        f"{approval.source or approval.approval_id}: {handler} is banned from "
                        f"new applications {until} (suspended {r.suspended_at:%Y-%m-%d}: "
                        f"{r.reason}); nothing was imported"
                    )

    @staticmethod
    def _fill(row: ApprovalRow, approval, content: dict, digest: str, now: datetime) -> None:
        row.institution = approval.institution
        row.purpose = approval.purpose
        row.start_date = approval.period.start
        row.end_date = approval.period.end
        row.starts_at = approval.period.starts_at
        row.ends_before = approval.period.ends_before
        row.quota = approval.quota.to_dict() if approval.quota else None
        row.content = content
        row.content_hash = digest
        row.source = approval.source
        row.updated_at = now
        row.handlers = [ApprovalHandlerRow(username=h) for h in sorted(set(approval.handlers))]
        row.datasets = [ApprovalDatasetRow(dataset_id=d) for d in sorted(set(approval.datasets))]

    @staticmethod
    def _sync_sites(s: Session, platform: Platform, report: ImportReport) -> None:
        sites = {r.id: r for r in s.scalars(select(SiteRow))}
        datasets = {r.id: r for r in s.scalars(select(DatasetRow))}
        for site in platform.sites.values():
            values = {
                "name": site.name,
                "name_ja": site.name_ja,
                "region": site.region,
                "docker_endpoint": site.docker_endpoint,
                "network": site.network,
                "images": list(site.images),
                "default_image": site.default_image,
                "quota": site.quota.to_dict(),
            }
            row = sites.get(site.id)
            if row is None:
                s.add(SiteRow(id=site.id, **values))
                report.sites_changed.append(site.id)
            elif any(getattr(row, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(row, k, v)
                report.sites_changed.append(site.id)
        # datasets refer to sites, and the two tables have no ORM relationship to order inserts
        s.flush()
        for site in platform.sites.values():
            for d in site.datasets:
                dvalues = {
                    "site_id": site.id,
                    "kind": d.kind,
                    "title": d.title,
                    "files": list(d.files),
                }
                drow = datasets.get(d.id)
                if drow is None:
                    s.add(DatasetRow(id=d.id, **dvalues))
                elif any(getattr(drow, k) != v for k, v in dvalues.items()):
                    for k, v in dvalues.items():
                        setattr(drow, k, v)

    @staticmethod
    def _sync_roles(s: Session, bundle: PolicyBundle, report: ImportReport) -> None:
        current: dict[str, set[str]] = {}
        for g in s.scalars(select(RoleGrantRow)):
            current.setdefault(g.username, set()).add(g.role)
        for username, account in bundle.accounts.items():
            wanted = set(account.roles)
            have = current.get(username, set())
            if wanted == have:
                continue
            for role in have - wanted:
                s.delete(s.get(RoleGrantRow, (username, role)))
            for role in wanted - have:
                s.add(RoleGrantRow(username=username, role=role))
            report.roles_changed.append(username)

    # -- queries ----------------------------------------------------------

    def _view(self, s: Session, row: ApprovalRow) -> ApprovalView:
        dataset_ids = [d.dataset_id for d in row.datasets]
        sites = dict(
            s.execute(
                select(DatasetRow.id, DatasetRow.site_id).where(DatasetRow.id.in_(dataset_ids))
            ).all()
        )
        override = s.get(ApprovalOverrideRow, row.id)
        end = row.end_date
        if override is not None and override.end_date is not None:
            end = override.end_date
        return ApprovalView(
            approval_id=row.id,
            institution=row.institution,
            purpose=row.purpose,
            handlers=tuple(h.username for h in row.handlers),
            datasets=tuple(dataset_ids),
            period=Period(row.start_date, end),
            quota=Quota(**row.quota) if row.quota else None,
            dataset_sites=sites,
            revoked_at=override.revoked_at if override is not None else None,
            approved_end=row.end_date if end != row.end_date else None,
        )

    def approval(self, approval_id: str) -> ApprovalView:
        with self.session() as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None:
                raise RegistryError(f"unknown approval {approval_id!r}")
            return self._view(s, row)

    def approvals(self) -> list[ApprovalView]:
        with self.session() as s:
            return [
                self._view(s, r) for r in s.scalars(select(ApprovalRow).order_by(ApprovalRow.id))
            ]

    def approvals_of(self, username: str) -> list[ApprovalView]:
        """Every approval naming `username` as a data handler, whatever its period."""
        with self.session() as s:
            rows = s.scalars(
                select(ApprovalRow)
                .join(ApprovalHandlerRow)
                .where(ApprovalHandlerRow.username == username)
                .order_by(ApprovalRow.start_date, ApprovalRow.id)
            )
            return [self._view(s, r) for r in rows]

    def active_approvals(self, username: str, at: datetime | None = None) -> list[ApprovalView]:
        """The approvals of `username` that hold at the instant `at` (default: now): the period
        (with any extension) holds it, the approval is not revoked, and the person is not
        suspended. Every check of the platform (login, spawn, enforcer, gateways) asks this."""
        at = as_utc(at or self.clock.now())
        if self.suspension_of(username, at) is not None:
            return []
        return sorted(
            (a for a in self.approvals_of(username) if a.status_at(at) == "active"),
            key=lambda a: a.approval_id,
        )

    def usage_period_ends(self, approval_id: str) -> datetime:
        """The first instant (UTC) at which the approval no longer holds."""
        return self.approval(approval_id).ends_before

    # -- people --------------------------------------------------------------

    def is_known(self, username: str) -> bool:
        """Whether `username` is a data handler of any approval or holds a platform role."""
        with self.session() as s:
            return (
                s.scalar(
                    select(ApprovalHandlerRow.username).where(
                        ApprovalHandlerRow.username == username
                    )
                )
                is not None
                or s.scalar(select(RoleGrantRow.username).where(RoleGrantRow.username == username))
                is not None
            )

    def handlers_of_institution(self, institution: str) -> list[str]:
        """Every data handler of the approvals held by `institution`."""
        with self.session() as s:
            return sorted(
                set(
                    s.scalars(
                        select(ApprovalHandlerRow.username)
                        .join(ApprovalRow)
                        .where(ApprovalRow.institution == institution)
                    )
                )
            )

    def institutions(self) -> list[str]:
        with self.session() as s:
            return sorted(set(s.scalars(select(ApprovalRow.institution))))

    # -- suspensions ----------------------------------------------------------

    def suspension_of(self, username: str, at: datetime | None = None) -> SuspensionView | None:
        """The suspension of `username` in force at `at` (default: now), if any."""
        at = as_utc(at or self.clock.now())
        for v in self.suspensions(username):
            if v.active_at(at):
                return v
        return None

    def suspensions(self, username: str | None = None) -> list[SuspensionView]:
        """Suspensions, lifted ones included, oldest first."""
        with self.session() as s:
            q = select(SuspensionRow).order_by(SuspensionRow.id)
            if username is not None:
                q = q.where(SuspensionRow.username == username)
            return [SuspensionView.from_row(r) for r in s.scalars(q)]

    def banned(self, username: str, day: date) -> SuspensionView | None:
        """The suspension whose ban on new applications holds on `day`, if any."""
        for v in self.suspensions(username):
            if v.banned_on(day):
                return v
        return None

    def suspend(
        self,
        username: str,
        *,
        reason: str,
        by: str,
        ban_until: date | None = None,
        ban_indefinite: bool = False,
        institution: str | None = None,
    ) -> tuple[SuspensionView, bool]:
        """Suspend `username` now. Returns the suspension in force and whether it is new: a
        person already suspended keeps the suspension they have (the call is idempotent)."""
        if not self.is_known(username):
            raise RegistryError(f"unknown person {username!r}: not a data handler of any approval")
        now = self.clock.now()
        current = self.suspension_of(username, now)
        if current is not None:
            return current, False
        with self.session() as s:
            row = SuspensionRow(
                username=username,
                institution=institution,
                reason=reason,
                suspended_at=now,
                suspended_by=by,
                ban_until=ban_until,
                ban_indefinite=ban_indefinite,
            )
            s.add(row)
            s.flush()
            return SuspensionView.from_row(row), True

    def reinstate(self, username: str, *, reason: str, by: str) -> SuspensionView | None:
        """Lift the suspension of `username` now; None when they were not suspended. A ban on
        new applications stays as it was decided."""
        if not self.is_known(username):
            raise RegistryError(f"unknown person {username!r}: not a data handler of any approval")
        now = self.clock.now()
        current = self.suspension_of(username, now)
        if current is None:
            return None
        with self.session() as s:
            row = s.get(SuspensionRow, current.id)
            row.lifted_at = now
            row.lifted_by = by
            row.lift_reason = reason
            s.flush()
            return SuspensionView.from_row(row)

    # -- the secretariat's changes to an approval -------------------------------

    def _override(self, s: Session, approval_id: str, by: str) -> ApprovalOverrideRow:
        row = s.get(ApprovalOverrideRow, approval_id)
        if row is None:
            row = ApprovalOverrideRow(approval_id=approval_id, updated_at=self.clock.now())
            s.add(row)
        row.updated_at = self.clock.now()
        row.updated_by = by
        return row

    def extend(
        self, approval_id: str, end: date, *, reason: str, by: str
    ) -> tuple[ApprovalView, bool]:
        """Move an approval's last day to `end` (later than its current last day). Returns the
        approval and whether it changed: extending to the current end again changes nothing."""
        view = self.approval(approval_id)
        if view.revoked_at is not None:
            raise RegistryError(f"approval {approval_id} was revoked; it cannot be extended")
        if end == view.period.end:
            return view, False
        if end < view.period.end:
            raise RegistryError(
                f"the new end {end} is before the current end {view.period.end} of "
                f"{approval_id}; an extension moves the end later (revoke ends it early)"
            )
        with self.session() as s:
            row = self._override(s, approval_id, by)
            row.end_date = end
            s.add(
                ApprovalChangeRow(
                    approval_id=approval_id,
                    at=self.clock.now(),
                    kind="extended",
                    changes={"end": [view.period.end.isoformat(), end.isoformat()]},
                    source=f"{by}: {reason}",
                )
            )
        return self.approval(approval_id), True

    def revoke(self, approval_id: str, *, reason: str, by: str) -> tuple[ApprovalView, bool]:
        """End an approval now. Returns the approval and whether it changed (a second revoke,
        or revoking one that has ended, changes nothing)."""
        view = self.approval(approval_id)
        now = self.clock.now()
        if view.revoked_at is not None or view.status_at(now) == "ended":
            return view, False
        with self.session() as s:
            row = self._override(s, approval_id, by)
            row.revoked_at = now
            s.add(
                ApprovalChangeRow(
                    approval_id=approval_id,
                    at=now,
                    kind="revoked",
                    changes={"revoked_at": [None, now.isoformat()]},
                    source=f"{by}: {reason}",
                )
            )
        return self.approval(approval_id), True

    # -- the query-set audit's resets ---------------------------------------------

    def reset_query_audit(self, approval_id: str, *, reason: str, by: str) -> QueryAuditResetView:
        """Record, now, that the approval's query-set audit starts afresh at every site.
        Each call is a new reset (the gateways archive what was answered up to it)."""
        with self.session() as s:
            if s.get(ApprovalRow, approval_id) is None:
                raise RegistryError(f"unknown approval {approval_id!r}")
            row = QueryAuditResetRow(
                approval_id=approval_id, reset_at=self.clock.now(), reset_by=by, reason=reason
            )
            s.add(row)
            s.flush()
            return QueryAuditResetView.from_row(row)

    def query_audit_resets(self, approval_id: str | None = None) -> list[QueryAuditResetView]:
        """Resets of one approval's query-set audit (default: every approval's), oldest first."""
        with self.session() as s:
            q = select(QueryAuditResetRow).order_by(
                QueryAuditResetRow.reset_at, QueryAuditResetRow.id
            )
            if approval_id is not None:
                q = q.where(QueryAuditResetRow.approval_id == approval_id)
            return [QueryAuditResetView.from_row(r) for r in s.scalars(q)]

    def latest_query_audit_resets(
        self, approval_ids: Iterable[str] | None = None
    ) -> dict[str, datetime]:
        """approval id -> the time of its latest query-audit reset, for the approvals that
        have one (of `approval_ids`, default every approval)."""
        q = select(QueryAuditResetRow.approval_id, func.max(QueryAuditResetRow.reset_at))
        if approval_ids is not None:
            q = q.where(QueryAuditResetRow.approval_id.in_(list(approval_ids)))
        q = q.group_by(QueryAuditResetRow.approval_id)
        with self.session() as s:
            return {aid: as_utc(at) for aid, at in s.execute(q).all()}

    # -- what site admins set ---------------------------------------------------

    def site_settings(self, site_id: str) -> dict[str, Any]:
        """A site's image allow-list, default image and default quota now: what its admins
        set, else what the platform file says."""
        with self.session() as s:
            site = s.get(SiteRow, site_id)
            if site is None:
                raise RegistryError(f"unknown site {site_id!r}")
            setting = s.get(SiteSettingRow, site_id)
            images = list(site.images)
            quota = dict(site.quota)
            if setting is not None and setting.images is not None:
                images = list(setting.images)
            if setting is not None and setting.quota is not None:
                quota = dict(setting.quota)
            default = site.default_image if site.default_image in images else None
            return {
                "site": site_id,
                "images": images,
                "default_image": default or (images[0] if images else None),
                "quota": quota,
                "platform_images": list(site.images),
                "platform_quota": dict(site.quota),
                "updated_by": setting.updated_by if setting else None,
                "updated_at": setting.updated_at.isoformat() if setting else None,
            }

    def _setting(self, s: Session, site_id: str, by: str) -> SiteSettingRow:
        if s.get(SiteRow, site_id) is None:
            raise RegistryError(f"unknown site {site_id!r}")
        row = s.get(SiteSettingRow, site_id)
        if row is None:
            row = SiteSettingRow(site_id=site_id, updated_at=self.clock.now(), updated_by=by)
            s.add(row)
        row.updated_at = self.clock.now()
        row.updated_by = by
        return row

    def set_site_images(self, site_id: str, images: list[str], *, by: str) -> bool:
        """Replace a site's image allow-list; False when it already was that list."""
        if list(images) == self.site_settings(site_id)["images"]:
            return False
        with self.session() as s:
            self._setting(s, site_id, by).images = list(images)
        return True

    def set_site_quota(self, site_id: str, quota: Quota, *, by: str) -> bool:
        """Replace a site's default quota; False when it already was that quota."""
        if quota.to_dict() == self.site_settings(site_id)["quota"]:
            return False
        with self.session() as s:
            self._setting(s, site_id, by).quota = quota.to_dict()
        return True

    def approval_quota(self, approval_id: str, site_id: str) -> Quota | None:
        """The quota a site's admins set for one approval's servers there, if any."""
        with self.session() as s:
            row = s.get(ApprovalQuotaRow, (approval_id, site_id))
            return Quota(**row.quota) if row is not None else None

    def approval_quotas(self, site_id: str) -> dict[str, dict]:
        with self.session() as s:
            rows = s.scalars(select(ApprovalQuotaRow).where(ApprovalQuotaRow.site_id == site_id))
            return {r.approval_id: dict(r.quota) for r in rows}

    def set_approval_quota(self, approval_id: str, site_id: str, quota: Quota, *, by: str) -> bool:
        """Set the quota of one approval's servers at a site; False when unchanged."""
        view = self.approval(approval_id)
        if site_id not in view.sites:
            raise RegistryError(f"approval {approval_id} covers no dataset at site {site_id}")
        if self.approval_quota(approval_id, site_id) == quota:
            return False
        with self.session() as s:
            row = s.get(ApprovalQuotaRow, (approval_id, site_id))
            if row is None:
                row = ApprovalQuotaRow(approval_id=approval_id, site_id=site_id)
                s.add(row)
            row.quota = quota.to_dict()
            row.updated_at = self.clock.now()
            row.updated_by = by
        return True

    def changes(self, approval_id: str) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(
                select(ApprovalChangeRow)
                .where(ApprovalChangeRow.approval_id == approval_id)
                .order_by(ApprovalChangeRow.id)
            )
            return [
                {"at": r.at.isoformat(), "kind": r.kind, "changes": r.changes, "source": r.source}
                for r in rows
            ]

    def roles_of(self, username: str) -> list[str]:
        with self.session() as s:
            return sorted(
                s.scalars(select(RoleGrantRow.role).where(RoleGrantRow.username == username))
            )

    def sites(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [
                {
                    "id": r.id,
                    "name": r.name,
                    "name_ja": r.name_ja,
                    "datasets": sorted(
                        s.scalars(select(DatasetRow.id).where(DatasetRow.site_id == r.id))
                    ),
                }
                for r in s.scalars(select(SiteRow).order_by(SiteRow.id))
            ]

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table, for tests that prove a refused action changed nothing."""
        out: dict[str, list[tuple]] = {}
        with self.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows = conn.execute(table.select()).all()
                out[table.name] = sorted(tuple(map(repr, r)) for r in rows)
        return out
