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
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TextIO

from sqlalchemy import (
    Connection,
    Integer,
    String,
    Text,
    event,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from extensions.contracts.clock import Clock, as_utc, period_start
from hub.store.registry import UTCDateTime, create_tables, make_engine

#: prev_hash of the first record.
GENESIS = "0" * 64

#: Key of the PostgreSQL advisory lock that serialises appends ("visiaudt").
PG_LOCK_KEY = 0x7669736961756474

#: Fields of a record, in the order exports list them.
FIELDS = (
    "seq",
    "event_id",
    "time",
    "received",
    "schema",
    "version",
    "user",
    "site",
    "approval_id",
    "actor",
    "data",
    "prev_hash",
    "hash",
)

#: Fields an arriving event may carry: required ones, then optional ones (default None).
REQUIRED = ("event_id", "schema", "version", "time", "user", "data")
OPTIONAL = ("site", "approval_id", "actor")

#: Longest text each column takes (PostgreSQL enforces these; SQLite does not).
MAX_LENGTH = {
    "event_id": 128,
    "schema": 500,
    "user": 200,
    "site": 64,
    "approval_id": 64,
    "actor": 200,
}

#: Largest event schema version (the column is a 32-bit integer on PostgreSQL).
MAX_VERSION = 2**31 - 1

_ROWS_PER_FETCH = 2000
_IDS_PER_QUERY = 500
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class AuditError(Exception):
    """An audit request refused; the message is for the person or service that asked."""


# ---------------------------------------------------------------------------
# schema


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


class _ReadableInstant(UTCDateTime):
    """UTCDateTime that hands back a stored value it cannot parse as it is, so that
    verify reports the record as altered instead of failing on it."""

    cache_ok = True

    def result_processor(self, dialect, coltype):
        process = super().result_processor(dialect, coltype)
        if process is None:
            return None

        def read(value):
            try:
                if dialect.name == "postgresql" and isinstance(value, str):
                    value = datetime.fromisoformat(value)  # ISO text, see _verify_columns
                return process(value)
            except ValueError:
                return value

        return read


EVENTS = AuditEventRow.__table__
HEAD = AuditHeadRow.__table__
_COLUMNS = [EVENTS.c[name] for name in FIELDS]


def _verify_columns(dialect: str) -> list:
    """_COLUMNS with the instants read by _ReadableInstant. On PostgreSQL they are read
    as ISO 8601 text (to_json, whatever the DateStyle): the driver cannot turn a stored
    'infinity' or a year BC or after 9999 into a datetime and would fail the whole read."""

    def readable(c):
        expr = func.to_json(c) if dialect == "postgresql" else c
        return type_coerce(expr, _ReadableInstant()).label(c.name)

    return [readable(c) if c.name in ("time", "received") else c for c in _COLUMNS]


# ---------------------------------------------------------------------------
# records and hashes


def canonical_json(value: Any) -> str:
    """The one JSON spelling hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _iso(instant: datetime) -> str:
    return as_utc(instant).isoformat(timespec="microseconds")


def _record(row: tuple) -> dict[str, Any]:
    """A stored row (columns in FIELDS order) as the record that is hashed and exported."""
    record = dict(zip(FIELDS, row, strict=True))
    record["time"] = _iso(record["time"])
    record["received"] = _iso(record["received"])
    record["data"] = json.loads(record["data"])
    return record


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of prev_hash, a newline and the canonical JSON of the record less its hash."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(f"{record['prev_hash']}\n{canonical_json(body)}".encode()).hexdigest()


def parse_instant(value: str | datetime | date) -> datetime:
    """An instant in UTC from a datetime with an offset, an ISO 8601 string with an offset,
    or a calendar date (`YYYY-MM-DD`), which means the start of that day in Japan time."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} needs a UTC offset")
        return as_utc(value)
    if isinstance(value, date):
        return period_start(value)
    text_value = str(value).strip()
    try:
        if _DATE_ONLY.fullmatch(text_value):
            return period_start(date.fromisoformat(text_value))
        instant = datetime.fromisoformat(text_value)
    except ValueError:
        raise ValueError(
            f"{text_value!r} is neither a date (YYYY-MM-DD, Japan time) "
            "nor an ISO 8601 instant with an offset"
        ) from None
    if instant.tzinfo is None:
        raise ValueError(f"{text_value!r} needs a UTC offset, e.g. {text_value}+09:00")
    return as_utc(instant)


def _bound(value: datetime | date | None) -> datetime | None:
    return None if value is None else parse_instant(value)


# ---------------------------------------------------------------------------
# validation at the door


def _text_field(event: dict, name: str, where: str, optional: bool) -> str | None:
    value = event.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        wanted = "a non-empty string or null" if optional else "a non-empty string"
        raise AuditError(f"{where}: {name}: must be {wanted}, not {value!r}")
    if len(value) > MAX_LENGTH[name]:
        raise AuditError(f"{where}: {name}: longer than {MAX_LENGTH[name]} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise AuditError(f"{where}: {name}: not valid Unicode text") from None
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the insert
        raise AuditError(f"{where}: {name}: contains a NUL character")
    return value


def _validate(event: Any, index: int) -> dict[str, Any]:
    """The column values of one arriving event (less seq, received and the hashes)."""
    where = f"event {index}"
    if not isinstance(event, dict):
        raise AuditError(f"{where}: must be a JSON object, not {type(event).__name__}")
    event_id = event.get("event_id")
    # name the event by its id only when that id is one (an empty or huge one would not help)
    if isinstance(event_id, str) and 0 < len(event_id) <= MAX_LENGTH["event_id"]:
        where = f"event {index} ({event_id})"
    for name in REQUIRED:
        if name not in event:
            raise AuditError(f"{where}: {name}: missing")
    unknown = sorted(set(event) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise AuditError(
            f"{where}: {unknown[0]}: unknown field (put the event's own fields in data)"
        )
    values: dict[str, Any] = {}
    for name in ("event_id", "schema", "user"):
        values[name] = _text_field(event, name, where, optional=False)
    for name in OPTIONAL:
        values[name] = _text_field(event, name, where, optional=True)
    version = event["version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise AuditError(
            f"{where}: version: must be an integer from 1 to {MAX_VERSION}, not {version!r}"
        )
    values["version"] = version
    raw_time = event["time"]
    if not isinstance(raw_time, str | datetime) or isinstance(raw_time, bool):
        raise AuditError(f"{where}: time: must be an ISO 8601 instant, not {raw_time!r}")
    try:
        if isinstance(raw_time, str) and _DATE_ONLY.fullmatch(raw_time.strip()):
            raise ValueError(f"{raw_time!r} is a date, not an instant with an offset")
        values["time"] = parse_instant(raw_time)
    except ValueError as e:
        raise AuditError(f"{where}: time: {e}") from None
    data = event["data"]
    if not isinstance(data, dict):
        raise AuditError(f"{where}: data: must be an object, not {type(data).__name__}")
    try:
        data_text = canonical_json(data)
        data_text.encode()
    except (TypeError, ValueError) as e:
        raise AuditError(f"{where}: data: not representable as JSON ({e})") from None
    values["data"] = data_text
    return values


# ---------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class AppendResult:
    stored: int
    duplicates: int
    last_seq: int | None  # seq of the last record this call stored; None if it stored none


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # records in the asked range found good (before the first break, if any)
    first_bad_seq: int | None
    reason: str | None
    first_seq: int | None = None  # of the records counted
    last_seq: int | None = None

    def message(self) -> str:
        if not self.ok:
            return f"audit chain broken: {self.reason}"
        if not self.records:
            return "audit chain verified: 0 records"
        counted = "1 record" if self.records == 1 else f"{self.records} records"
        return f"audit chain verified: {counted} ({self.first_seq} .. {self.last_seq})"


def _missing(expected: int, seq: int, prev: int | None) -> str:
    which = (
        f"record {expected} is" if seq - expected == 1 else f"records {expected} to {seq - 1} are"
    )
    if prev is None:
        return f"{which} missing (the chain starts at {seq})"
    return f"{which} missing (seq jumps from {prev} to {seq})"


def _removed_at_end(count: int, last: int | None, head_seq: int) -> str:
    if last is None:
        return f"all {count} records were removed (the head records seq {head_seq})"
    what = "the last record was" if count == 1 else f"the last {count} records were"
    return f"{what} removed (the chain ends at {last}, the head at {head_seq})"


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
        batch = [_validate(e, i) for i, e in enumerate(events)]
        if not batch:
            return AppendResult(stored=0, duplicates=0, last_seq=None)
        received = self.clock.now()
        with self._writer.connect() as conn, conn.begin():
            self._lock(conn)
            known = self._stored_ids(conn, {v["event_id"] for v in batch})
            head = conn.execute(
                self._locked(select(HEAD.c.last_seq, HEAD.c.hash).where(HEAD.c.id == 1))
            ).first()
            tail_seq = conn.scalar(select(func.max(EVENTS.c.seq))) or 0
            # carry on from the head even when the chain's end disagrees with it, so that
            # records removed from the end stay visible as a gap
            seq = max(tail_seq, head.last_seq if head else 0)
            if head is not None:
                prev_hash = head.hash
            elif tail_seq:
                prev_hash = conn.scalar(select(EVENTS.c.hash).where(EVENTS.c.seq == tail_seq))
            else:
                prev_hash = GENESIS
            rows = []
            for values in batch:
                if values["event_id"] in known:
                    continue
                known.add(values["event_id"])
                seq += 1
                row = values | {"seq": seq, "received": received, "prev_hash": prev_hash}
                record = _record(tuple(row.get(name) for name in FIELDS))
                row["hash"] = prev_hash = record_hash(record)
                rows.append(row)
            if rows:
                conn.execute(insert(EVENTS), rows)
                moved = conn.execute(
                    update(HEAD).where(HEAD.c.id == 1).values(last_seq=seq, hash=prev_hash)
                )
                if moved.rowcount == 0:
                    conn.execute(insert(HEAD).values(id=1, last_seq=seq, hash=prev_hash))
        return AppendResult(
            stored=len(rows),
            duplicates=len(batch) - len(rows),
            last_seq=rows[-1]["seq"] if rows else None,
        )

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
        since, until = _bound(since), _bound(until)
        with self._read() as conn:
            head = conn.execute(select(HEAD.c.last_seq, HEAD.c.hash).where(HEAD.c.id == 1)).first()
            stmt = select(*_verify_columns(self.dialect)).order_by(EVENTS.c.seq)
            if until is not None:
                end = conn.scalar(select(func.max(EVENTS.c.seq)).where(EVENTS.c.time < until))
                if end is None:
                    return VerifyResult(ok=True, records=0, first_bad_seq=None, reason=None)
                stmt = stmt.where(EVENTS.c.seq <= end)
            rows = conn.execution_options(yield_per=_ROWS_PER_FETCH).execute(stmt)
            return _walk(rows, head, since, until, check_head=until is None)

    # -- read -------------------------------------------------------------

    def _where(self, stmt, since, until, user, approval_id, site, schema):
        since, until = _bound(since), _bound(until)
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
                yield _record(tuple(row))

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


def _walk(rows, head, since, until, check_head: bool) -> VerifyResult:
    counted = 0
    first_seq = last_seq = None
    expected_seq, expected_prev = 1, GENESIS
    last = None

    def broken(seq: int | None, reason: str) -> VerifyResult:
        return VerifyResult(False, counted, seq, reason, first_seq, last_seq)

    for row in rows:
        seq = row.seq
        if seq != expected_seq:
            return broken(expected_seq, _missing(expected_seq, seq, last))
        try:
            record = _record(tuple(row))
        except (AttributeError, TypeError, ValueError):
            # a time that is not a time, data that is not JSON: edited outside the store
            return broken(seq, f"record {seq} was altered: its content cannot be read")
        if record["prev_hash"] != expected_prev:
            if seq == 1:
                reason = "records are out of order at 1: prev_hash is not the start of the chain"
            else:
                reason = (
                    f"records are out of order at {seq}: "
                    f"prev_hash does not match the hash of record {seq - 1}"
                )
            return broken(seq, reason)
        if record_hash(record) != record["hash"] or canonical_json(record["data"]) != row.data:
            return broken(seq, f"record {seq} was altered: its hash does not match its content")
        instant = row.time
        if (since is None or instant >= since) and (until is None or instant < until):
            counted += 1
            first_seq = seq if first_seq is None else first_seq
            last_seq = seq
        last, expected_seq, expected_prev = seq, seq + 1, record["hash"]
    if check_head:
        if head is None:
            if last is not None:
                return broken(None, f"the head (audit_head) is missing; the chain ends at {last}")
        elif head.last_seq > (last or 0):
            return broken(
                (last or 0) + 1, _removed_at_end(head.last_seq - (last or 0), last, head.last_seq)
            )
        elif head.last_seq < (last or 0):
            added = (
                f"record {last} was"
                if last == head.last_seq + 1
                else f"records {head.last_seq + 1} to {last} were"
            )
            return broken(
                head.last_seq + 1,
                f"{added} added outside the store (the head ends at {head.last_seq})",
            )
        elif head.hash != expected_prev:
            return broken(
                last, f"the head does not match: record {last} is not the one it recorded"
            )
    return VerifyResult(True, counted, None, None, first_seq, last_seq)


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
