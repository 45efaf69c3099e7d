"""The database: its engine, and the tables of the approval registry and the audit chain.

SQLAlchemy over SQLite by default (a PostgreSQL URL works the same way).
Instants are stored as naive UTC and handed out timezone-aware. The registry's
tables, the audit chain's and the export airlock's have separate metadata: each store
creates its own.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from extensions.contracts.clock import as_utc
from hub.store.audit_records import MAX_LENGTH

# ---------------------------------------------------------------------------
# engine


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


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC (SQLite keeps no offsets)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else as_utc(value)


# ---------------------------------------------------------------------------
# the approval registry's tables


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
# the audit chain's tables


class AuditBase(DeclarativeBase):
    pass


class AuditEventRow(AuditBase):
    __tablename__ = "audit_events"
    # AUTOINCREMENT on SQLite: a seq once used is never handed out again
    __table_args__ = {"sqlite_autoincrement": True}

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(MAX_LENGTH["event_id"]), unique=True, index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    received: Mapped[datetime] = mapped_column(UTCDateTime)
    schema: Mapped[str] = mapped_column(String(MAX_LENGTH["schema"]))
    version: Mapped[int] = mapped_column(Integer)
    user: Mapped[str] = mapped_column(String(MAX_LENGTH["user"]), index=True)
    site: Mapped[str | None] = mapped_column(String(MAX_LENGTH["site"]), nullable=True)
    approval_id: Mapped[str | None] = mapped_column(
        String(MAX_LENGTH["approval_id"]), nullable=True, index=True
    )
    actor: Mapped[str | None] = mapped_column(String(MAX_LENGTH["actor"]), nullable=True)
    data: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(AuditBase):
    """One row (id 1): the seq and hash of the newest record, moved with every append."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


# ---------------------------------------------------------------------------
# the export airlock's tables


class ExportBase(DeclarativeBase):
    pass


class ExportRequestRow(ExportBase):
    """A researcher's request to take files out of their home at a site (hub.store.exports)."""

    __tablename__ = "export_requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requester: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(16), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    paths: Mapped[list] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(32), index=True)
    #: the review round (a new round starts when changed files are frozen again)
    round: Mapped[int] = mapped_column(Integer, default=1)
    #: moved with every change of the row: a change made from a stale read is refused
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the site's manifest as it printed it (extensions.contracts.export.Manifest)
    manifest: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    files: Mapped[list[ExportFileRow]] = relationship(
        cascade="all, delete-orphan", order_by="ExportFileRow.position"
    )
    reviews: Mapped[list[ExportReviewRow]] = relationship(
        cascade="all, delete-orphan", order_by="ExportReviewRow.id"
    )


class ExportFileRow(ExportBase):
    """One frozen file of a request: its name, size, hash, media type and check results."""

    __tablename__ = "export_files"
    request_id: Mapped[str] = mapped_column(ForeignKey("export_requests.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(200))
    ok: Mapped[bool] = mapped_column(Boolean)
    checks: Mapped[list] = mapped_column(JSON)


class ExportReviewRow(ExportBase):
    """One reviewer's decision on one round of a request."""

    __tablename__ = "export_reviews"
    __table_args__ = (UniqueConstraint("request_id", "round", "reviewer"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("export_requests.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    reviewer: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    override: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
