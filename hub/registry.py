"""The approval registry: sites, datasets, approvals, their handlers and changes, roles.

SQLAlchemy over SQLite by default (a PostgreSQL URL works the same way).
Instants are stored as naive UTC and handed out timezone-aware. Importing a
validated policy directory is idempotent: an unchanged approval is left
alone, a changed one is updated and the change recorded with what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .periods import Clock, Period, as_utc
from .policy import Platform, PolicyBundle, Quota

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

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.dataset_sites.values())))

    def datasets_at(self, site: str) -> tuple[str, ...]:
        return tuple(d for d in self.datasets if self.dataset_sites.get(d) == site)

    def status_at(self, instant: datetime) -> str:
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
            "ends_before": self.period.ends_before.isoformat(),
            "quota": self.quota.to_dict() if self.quota else None,
        }


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


class ApprovalRegistry:
    """Approvals, handlers, datasets and roles, with the queries the platform needs."""

    def __init__(self, database_url: str, clock: Clock | None = None):
        self.database_url = database_url
        self.clock = clock or Clock()
        self.engine = make_engine(database_url)
        Base.metadata.create_all(self.engine)

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
        return ApprovalView(
            approval_id=row.id,
            institution=row.institution,
            purpose=row.purpose,
            handlers=tuple(h.username for h in row.handlers),
            datasets=tuple(dataset_ids),
            period=Period(row.start_date, row.end_date),
            quota=Quota(**row.quota) if row.quota else None,
            dataset_sites=sites,
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
        """The approvals of `username` whose period holds the instant `at` (default: now)."""
        at = as_utc(at or self.clock.now())
        with self.session() as s:
            rows = s.scalars(
                select(ApprovalRow)
                .join(ApprovalHandlerRow)
                .where(
                    ApprovalHandlerRow.username == username,
                    ApprovalRow.starts_at <= at.replace(tzinfo=None),
                    ApprovalRow.ends_before > at.replace(tzinfo=None),
                )
                .order_by(ApprovalRow.id)
            )
            return [self._view(s, r) for r in rows]

    def usage_period_ends(self, approval_id: str) -> datetime:
        """The first instant (UTC) at which the approval no longer holds."""
        return self.approval(approval_id).period.ends_before

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
