"""Walking the audit chain: the first broken link, in words a person can act on.

The walk reads every record from seq 1 in order, recomputes each hash and
compares the chain's end with `audit_head`, so that a record changed, removed,
reordered or slipped in without recomputing every hash after it is reported
with its seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, type_coerce

from hub.store.audit_records import FIELDS, GENESIS, canonical_json, record_hash, stored_record
from hub.store.db import AuditEventRow, UTCDateTime


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
                    value = datetime.fromisoformat(value)  # ISO text, see verify_columns
                return process(value)
            except ValueError:
                return value

        return read


def verify_columns(dialect: str) -> list:
    """The record's columns with the instants read by _ReadableInstant. On PostgreSQL they
    are read as ISO 8601 text (to_json, whatever the DateStyle): the driver cannot turn a
    stored 'infinity' or a year BC or after 9999 into a datetime and would fail the whole
    read."""

    def readable(c):
        expr = func.to_json(c) if dialect == "postgresql" else c
        return type_coerce(expr, _ReadableInstant()).label(c.name)

    return [readable(c) if c.name in ("time", "received") else c for c in record_columns()]


def record_columns() -> list:
    """The columns of audit_events in FIELDS order (a record's order)."""
    events = AuditEventRow.__table__
    return [events.c[name] for name in FIELDS]


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


def walk_chain(rows, head, since, until, check_head: bool) -> VerifyResult:
    """Check `rows` (the records from seq 1, columns as `verify_columns`) link by link;
    count those whose time is in [since, until); with `check_head`, compare the end
    with the head row (`head`: last_seq and hash, or None)."""
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
        record, fault = _read_link(row, expected_prev)
        if fault is not None:
            return broken(seq, fault)
        instant = row.time
        if (since is None or instant >= since) and (until is None or instant < until):
            counted += 1
            first_seq = seq if first_seq is None else first_seq
            last_seq = seq
        last, expected_seq, expected_prev = seq, seq + 1, record["hash"]
    if check_head:
        fault = _head_fault(head, last, expected_prev)
        if fault is not None:
            return broken(*fault)
    return VerifyResult(True, counted, None, None, first_seq, last_seq)


def _read_link(row, expected_prev: str) -> tuple[dict[str, Any] | None, str | None]:
    """The record of `row` when it is intact and follows `expected_prev`, else what is wrong."""
    seq = row.seq
    try:
        record = stored_record(tuple(row))
    except (AttributeError, TypeError, ValueError):
        # a time that is not a time, data that is not JSON: edited outside the store
        return None, f"record {seq} was altered: its content cannot be read"
    if record["prev_hash"] != expected_prev:
        if seq == 1:
            return None, "records are out of order at 1: prev_hash is not the start of the chain"
        return None, (
            f"records are out of order at {seq}: "
            f"prev_hash does not match the hash of record {seq - 1}"
        )
    if record_hash(record) != record["hash"] or canonical_json(record["data"]) != row.data:
        return None, f"record {seq} was altered: its hash does not match its content"
    return record, None


def _head_fault(head, last: int | None, last_hash: str) -> tuple[int | None, str] | None:
    """(first bad seq, reason) when the chain's end disagrees with the head, else None."""
    if head is None:
        if last is not None:
            return None, f"the head (audit_head) is missing; the chain ends at {last}"
        return None
    end = last or 0
    if head.last_seq > end:
        return end + 1, _removed_at_end(head.last_seq - end, last, head.last_seq)
    if head.last_seq < end:
        added = (
            f"record {last} was"
            if last == head.last_seq + 1
            else f"records {head.last_seq + 1} to {last} were"
        )
        return (
            head.last_seq + 1,
            f"{added} added outside the store (the head ends at {head.last_seq})",
        )
    if head.hash != last_hash:
        return last, f"the head does not match: record {last} is not the one it recorded"
    return None
