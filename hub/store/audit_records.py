"""What an audit record is: its fields, the one JSON spelling its hash is computed over,
and the checks an arriving event passes before it is stored.

No database here: the store (hub.store.audit) and the chain's walk
(hub.store.audit_verify) both build on these definitions, and anyone holding an
export can recompute a hash with `record_hash`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from typing import Any

from extensions.contracts.clock import as_utc, period_start

#: prev_hash of the first record.
GENESIS = "0" * 64

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

DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class AuditError(Exception):
    """An audit request refused; the message is for the person or service that asked."""


# ---------------------------------------------------------------------------
# records and hashes


def canonical_json(value: Any) -> str:
    """The one JSON spelling hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _iso(instant: datetime) -> str:
    return as_utc(instant).isoformat(timespec="microseconds")


def stored_record(row: tuple) -> dict[str, Any]:
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
        if DATE_ONLY.fullmatch(text_value):
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


def bound(value: datetime | date | None) -> datetime | None:
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


def validate_event(event: Any, index: int) -> dict[str, Any]:
    """The column values of one arriving event (less seq, received and the hashes)."""
    where = _where(event, index)
    _check_field_names(event, where)
    values: dict[str, Any] = {}
    for name in ("event_id", "schema", "user"):
        values[name] = _text_field(event, name, where, optional=False)
    for name in OPTIONAL:
        values[name] = _text_field(event, name, where, optional=True)
    values["version"] = _version(event["version"], where)
    values["time"] = _event_time(event["time"], where)
    values["data"] = _event_data(event["data"], where)
    return values


def _where(event: Any, index: int) -> str:
    """How messages name the event: its place in the batch, and its id when it has one."""
    where = f"event {index}"
    if not isinstance(event, dict):
        raise AuditError(f"{where}: must be a JSON object, not {type(event).__name__}")
    event_id = event.get("event_id")
    # name the event by its id only when that id is one (an empty or huge one would not help)
    if isinstance(event_id, str) and 0 < len(event_id) <= MAX_LENGTH["event_id"]:
        where = f"event {index} ({event_id})"
    return where


def _check_field_names(event: dict, where: str) -> None:
    for name in REQUIRED:
        if name not in event:
            raise AuditError(f"{where}: {name}: missing")
    unknown = sorted(set(event) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise AuditError(
            f"{where}: {unknown[0]}: unknown field (put the event's own fields in data)"
        )


def _version(version: Any, where: str) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise AuditError(
            f"{where}: version: must be an integer from 1 to {MAX_VERSION}, not {version!r}"
        )
    return version


def _event_time(raw_time: Any, where: str) -> datetime:
    if not isinstance(raw_time, str | datetime) or isinstance(raw_time, bool):
        raise AuditError(f"{where}: time: must be an ISO 8601 instant, not {raw_time!r}")
    try:
        if isinstance(raw_time, str) and DATE_ONLY.fullmatch(raw_time.strip()):
            raise ValueError(f"{raw_time!r} is a date, not an instant with an offset")
        return parse_instant(raw_time)
    except ValueError as e:
        raise AuditError(f"{where}: time: {e}") from None


def _event_data(data: Any, where: str) -> str:
    """The event's own fields as canonical JSON text (as stored and hashed)."""
    if not isinstance(data, dict):
        raise AuditError(f"{where}: data: must be an object, not {type(data).__name__}")
    try:
        data_text = canonical_json(data)
        data_text.encode()
    except (TypeError, ValueError) as e:
        raise AuditError(f"{where}: data: not representable as JSON ({e})") from None
    return data_text
