"""The audit store: an append-only, hash-chained record of activity events.

Events live in the registry database (table `audit_events`), one row per
event, numbered by `seq`. Each row carries the hash of the row before it
(`prev_hash`) and its own `hash`:

    hash = sha256(prev_hash + "\\n" + canonical JSON of the record without `hash`)

where the record is exactly what `events()` and `export()` hand out (times as
ISO 8601 in UTC with microseconds, `data` as an object), so anyone holding an
export can recompute the chain. A second table, `audit_head`, remembers the
last seq and hash, written in the same transaction as each append, so that
removing the newest records is noticed too.

Appends take the database's write lock before reading the chain's end
(`BEGIN IMMEDIATE` on SQLite, an advisory transaction lock on PostgreSQL), so
several processes may append at once. Reads stream in seq order and never hold
the whole table in memory.

The chain proves that nobody changed, removed, reordered or slipped in
records *without recomputing every hash after the change*; someone with write
access to the database who rewrites the chain from the change onwards and the
head is not caught by the chain alone (anchor `audit_head` elsewhere for that).

The record, its hash and the checks of an arriving event are in
hub.store.audit_records, the walk that verifies the chain in hub.store.audit_verify
and the tables in hub.store.db; this module is the store over them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TextIO

from sqlalchemy import Connection, event, func, insert, select, text, update

from extensions.contracts.clock import Clock
from hub.store.audit_records import (
    FIELDS,
    GENESIS,
    MAX_LENGTH,
    MAX_VERSION,
    OPTIONAL,
    REQUIRED,
    AuditError,
    bound,
    canonical_json,
    parse_instant,
    record_hash,
    stored_record,
    validate_event,
)
from hub.store.audit_verify import VerifyResult, record_columns, verify_columns, walk_chain
from hub.store.db import AuditBase, AuditEventRow, AuditHeadRow, create_tables, make_engine

# what other modules import from here: the record's definitions live in audit_records
__all__ = [
    "FIELDS",
    "GENESIS",
    "MAX_LENGTH",
    "MAX_VERSION",
    "OPTIONAL",
    "REQUIRED",
    "AppendResult",
    "AuditError",
    "AuditStore",
    "VerifyResult",
    "canonical_json",
    "parse_instant",
    "record_hash",
]

#: Key of the PostgreSQL advisory lock that serialises appends ("visiaudt").
PG_LOCK_KEY = 0x7669736961756474

_ROWS_PER_FETCH = 2000
_IDS_PER_QUERY = 500

EVENTS = AuditEventRow.__table__
HEAD = AuditHeadRow.__table__
_COLUMNS = record_columns()


@dataclass(frozen=True)
class AppendResult:
    stored: int
    duplicates: int
    last_seq: int | None  # seq of the last record this call stored; None if it stored none


# ---------------------------------------------------------------------------
# the store


class AuditStore:
    """Append events, verify the chain, and read events back in seq order."""

    def __init__(self, database_url: str, clock: Clock | None = None):
        self.database_url = database_url
        self.clock = clock or Clock()
        # an engine of its own: the SQLite begin-mode listeners below must not reach
        # the registry's sessions
        self.engine = make_engine(database_url)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            _sqlite_explicit_begin(self.engine)
        self._writer = self.engine.execution_options(audit_write=True)
        self._reader = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.dialect == "postgresql"
            else self.engine
        )
        self._create_tables()

    @classmethod
    def for_platform(cls, platform, clock: Clock | None = None) -> AuditStore:
        return cls(platform.database_url, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def _create_tables(self) -> None:
        create_tables(self.engine, AuditBase.metadata)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read transaction: a consistent snapshot of the chain and its head."""
        with self._reader.connect() as conn, conn.begin():
            yield conn

    # -- append -----------------------------------------------------------

    def append(self, events: Iterable[dict]) -> AppendResult:
        """Store a batch of events in one transaction, chained after the newest record.

        Every event is validated before anything is written; one bad event refuses the
        whole batch (AuditError naming the event and field). An event whose event_id is
        already stored, or came earlier in the same batch, is skipped as a duplicate.
        """
        batch = [validate_event(e, i) for i, e in enumerate(events)]
        if not batch:
            return AppendResult(stored=0, duplicates=0, last_seq=None)
        received = self.clock.now()
        with self._writer.connect() as conn, conn.begin():
            self._lock(conn)
            known = self._stored_ids(conn, {v["event_id"] for v in batch})
            seq, prev_hash = self._chain_end(conn)
            rows = _chained(batch, known, seq, prev_hash, received)
            if rows:
                conn.execute(insert(EVENTS), rows)
                self._move_head(conn, rows[-1]["seq"], rows[-1]["hash"])
        return AppendResult(
            stored=len(rows),
            duplicates=len(batch) - len(rows),
            last_seq=rows[-1]["seq"] if rows else None,
        )

    def _chain_end(self, conn: Connection) -> tuple[int, str]:
        """The seq and hash the next record chains onto (under the write lock)."""
        head = conn.execute(
            self._locked(select(HEAD.c.last_seq, HEAD.c.hash).where(HEAD.c.id == 1))
        ).first()
        tail_seq = conn.scalar(select(func.max(EVENTS.c.seq))) or 0
        # carry on from the head even when the chain's end disagrees with it, so that
        # records removed from the end stay visible as a gap
        seq = max(tail_seq, head.last_seq if head else 0)
        if head is not None:
            return seq, head.hash
        if tail_seq:
            return seq, conn.scalar(select(EVENTS.c.hash).where(EVENTS.c.seq == tail_seq))
        return seq, GENESIS

    @staticmethod
    def _move_head(conn: Connection, seq: int, hash_: str) -> None:
        moved = conn.execute(update(HEAD).where(HEAD.c.id == 1).values(last_seq=seq, hash=hash_))
        if moved.rowcount == 0:
            conn.execute(insert(HEAD).values(id=1, last_seq=seq, hash=hash_))

    def _lock(self, conn: Connection) -> None:
        # SQLite: the transaction began with BEGIN IMMEDIATE (see _sqlite_explicit_begin)
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})

    def _locked(self, stmt):
        return stmt if self.dialect == "sqlite" else stmt.with_for_update()

    @staticmethod
    def _stored_ids(conn: Connection, ids: set[str]) -> set[str]:
        found: set[str] = set()
        ordered = sorted(ids)
        for i in range(0, len(ordered), _IDS_PER_QUERY):
            chunk = ordered[i : i + _IDS_PER_QUERY]
            found.update(
                conn.scalars(select(EVENTS.c.event_id).where(EVENTS.c.event_id.in_(chunk)))
            )
        return found

    # -- verify -----------------------------------------------------------

    def verify(
        self, since: datetime | date | None = None, until: datetime | date | None = None
    ) -> VerifyResult:
        """Walk the chain from seq 1 and report its first broken link.

        `since`/`until` (event time; since inclusive, until exclusive) choose which
        records are counted; the walk still starts at seq 1 and goes on to the last
        record whose time is before `until`. Without `until` the walk reaches the end
        and the end is compared with `audit_head`, so removing the newest records shows.
        """
        since, until = bound(since), bound(until)
        with self._read() as conn:
            head = conn.execute(select(HEAD.c.last_seq, HEAD.c.hash).where(HEAD.c.id == 1)).first()
            stmt = select(*verify_columns(self.dialect)).order_by(EVENTS.c.seq)
            if until is not None:
                end = conn.scalar(select(func.max(EVENTS.c.seq)).where(EVENTS.c.time < until))
                if end is None:
                    return VerifyResult(ok=True, records=0, first_bad_seq=None, reason=None)
                stmt = stmt.where(EVENTS.c.seq <= end)
            rows = conn.execution_options(yield_per=_ROWS_PER_FETCH).execute(stmt)
            return walk_chain(rows, head, since, until, check_head=until is None)

    # -- read -------------------------------------------------------------

    def _where(self, stmt, since, until, user, approval_id, site, schema):
        since, until = bound(since), bound(until)
        if since is not None:
            stmt = stmt.where(EVENTS.c.time >= since)
        if until is not None:
            stmt = stmt.where(EVENTS.c.time < until)
        for column, value in (
            (EVENTS.c.user, user),
            (EVENTS.c.approval_id, approval_id),
            (EVENTS.c.site, site),
            (EVENTS.c.schema, schema),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        return stmt

    def events(
        self,
        *,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        user: str | None = None,
        approval_id: str | None = None,
        site: str | None = None,
        schema: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stored records in seq order (since inclusive, until exclusive, on event time).

        Each record has every field of FIELDS; times are ISO 8601 strings in UTC and
        `data` is an object, as hashed.
        """
        stmt = self._where(
            select(*_COLUMNS).order_by(EVENTS.c.seq),
            since,
            until,
            user,
            approval_id,
            site,
            schema,
        )
        with self._read() as conn:
            for row in conn.execution_options(yield_per=_ROWS_PER_FETCH).execute(stmt):
                yield stored_record(tuple(row))

    def count(
        self,
        *,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        user: str | None = None,
        approval_id: str | None = None,
        site: str | None = None,
        schema: str | None = None,
    ) -> int:
        stmt = self._where(
            select(func.count()).select_from(EVENTS), since, until, user, approval_id, site, schema
        )
        with self._read() as conn:
            return conn.scalar(stmt) or 0

    def export(
        self,
        out: TextIO,
        *,
        since: datetime | date | None = None,
        until: datetime | date | None = None,
        format: str = "jsonl",
    ) -> int:
        """Write the records of [since, until) to `out`; returns how many.

        jsonl: one canonical JSON object per line with every field. csv: a header row
        of FIELDS, then one row per record, data as JSON text and null as an empty cell.
        """
        if format not in ("jsonl", "csv"):
            raise AuditError(f"unknown export format {format!r} (jsonl or csv)")
        n = 0
        if format == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(FIELDS)
            for record in self.events(since=since, until=until):
                record["data"] = canonical_json(record["data"])
                writer.writerow(record[name] for name in FIELDS)
                n += 1
        else:
            for record in self.events(since=since, until=until):
                out.write(canonical_json(record) + "\n")
                n += 1
        return n


def _chained(
    batch: list[dict[str, Any]], known: set[str], seq: int, prev_hash: str, received: datetime
) -> list[dict[str, Any]]:
    """The rows to insert: the batch less events already stored (`known`, which grows),
    each numbered and hashed after the one before it."""
    rows = []
    for values in batch:
        if values["event_id"] in known:
            continue
        known.add(values["event_id"])
        seq += 1
        row = values | {"seq": seq, "received": received, "prev_hash": prev_hash}
        record = stored_record(tuple(row.get(name) for name in FIELDS))
        row["hash"] = prev_hash = record_hash(record)
        rows.append(row)
    return rows


def _sqlite_explicit_begin(engine) -> None:
    """Let SQLAlchemy, not pysqlite, begin transactions: BEGIN IMMEDIATE for appends.

    pysqlite would otherwise begin lazily at the first INSERT, after the chain's end
    was read, and two writers could chain onto the same record.
    """

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn):
        write = conn.get_execution_options().get("audit_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
