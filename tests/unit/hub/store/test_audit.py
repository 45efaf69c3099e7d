"""The audit store: append, idempotent event ids, whole-batch refusal, tamper detection,
export between Japan-time dates, and the `visiting audit` commands.

Every store has a fixed clock and runs twice: on a SQLite file in tmp_path and on a
database of a throwaway PostgreSQL server (the `database_url` fixture, tests/conftest.py).
Tampering is raw SQL on the same database, through a connection of its own.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from extensions.contracts.clock import JST, FixedClock
from hub.cli.main import main
from hub.store.audit import FIELDS, GENESIS, AuditError, AuditStore, canonical_json, record_hash

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=JST)
SCHEMA = "https://visiting.example/events/download-check"


def make_event(n: int, **fields) -> dict:
    """Event n happens n minutes after 09:00 JST on 1 April 2026."""
    event = {
        "event_id": f"ev-{n:04d}",
        "schema": SCHEMA,
        "version": 1,
        "time": (datetime(2026, 4, 1, 9, 0, tzinfo=JST) + timedelta(minutes=n)).isoformat(),
        "user": "tanaka",
        "site": "nig",
        "approval_id": "J-DU000101",
        "actor": None,
        "data": {"n": n, "path": "/data/JGAD000101/cohort.vcf.gz"},
    }
    return event | fields


@pytest.fixture
def store(database_url):
    s = AuditStore(database_url, clock=FixedClock(NOW))
    yield s
    s.close()


@pytest.fixture
def filled(store):
    """Six records, seq 1 to 6."""
    store.append([make_event(n) for n in range(1, 7)])
    return store


def execute(url, *statements: str | tuple[str, dict]) -> None:
    """Raw SQL beside the store, in one transaction: what someone with database access can do.

    A statement is SQL text, or SQL text with :name parameters and a dict of their values.
    """
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for s in statements:
                sql, params = (s, {}) if isinstance(s, str) else s
                conn.execute(text(sql), params)
    finally:
        engine.dispose()


def dialect(url) -> str:
    return "sqlite" if str(url).startswith("sqlite") else "postgresql"


def state(url) -> tuple:
    """Every stored row, the head and the seq counter."""
    counter = {
        "sqlite": "SELECT * FROM sqlite_sequence WHERE name = 'audit_events'",
        # the store numbers rows itself; the column's own sequence must stay untouched too
        "postgresql": "SELECT last_value, is_called FROM audit_events_seq_seq",
    }[dialect(url)]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(
                [tuple(row) for row in conn.execute(text(q))]
                for q in (
                    "SELECT * FROM audit_events ORDER BY seq",
                    "SELECT * FROM audit_head",
                    counter,
                )
            )
    finally:
        engine.dispose()


def stored_time(iso: str) -> str:
    """An ISO instant as the store's columns spell it (naive UTC), as SQL text."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert_record(url, record: dict) -> None:
    values = record | {
        "time": stored_time(record["time"]),
        "received": stored_time(record["received"]),
        "data": canonical_json(record["data"]),
    }
    columns = ", ".join(f'"{name}"' for name in FIELDS)
    marks = ", ".join(f":{name}" for name in FIELDS)
    execute(
        url,
        (
            f"INSERT INTO audit_events ({columns}) VALUES ({marks})",
            {n: values[n] for n in FIELDS},
        ),
    )


# ---------------------------------------------------------------------------
# append and read back


def test_append_and_read_back(store):
    result = store.append([make_event(1), make_event(2, actor="admin-nig", site=None)])
    assert (result.stored, result.duplicates, result.last_seq) == (2, 0, 2)

    first, second = store.events()
    assert list(first) == list(FIELDS)
    assert first == {
        "seq": 1,
        "event_id": "ev-0001",
        "time": "2026-04-01T00:01:00.000000+00:00",
        "received": "2026-04-01T03:00:00.000000+00:00",
        "schema": SCHEMA,
        "version": 1,
        "user": "tanaka",
        "site": "nig",
        "approval_id": "J-DU000101",
        "actor": None,
        "data": {"n": 1, "path": "/data/JGAD000101/cohort.vcf.gz"},
        "prev_hash": GENESIS,
        "hash": record_hash(first),
    }
    assert (second["seq"], second["site"], second["actor"]) == (2, None, "admin-nig")
    assert second["prev_hash"] == first["hash"] and second["hash"] == record_hash(second)
    assert store.count() == 2


def test_optional_fields_may_be_left_out_and_time_may_be_a_datetime(store):
    event = make_event(1, time=datetime(2026, 4, 1, 9, 30, 15, 250, tzinfo=JST))
    for name in ("site", "approval_id", "actor"):
        del event[name]
    store.append([event])
    (record,) = store.events()
    assert (record["site"], record["approval_id"], record["actor"]) == (None, None, None)
    assert record["time"] == "2026-04-01T00:30:15.000250+00:00"


def test_received_comes_from_the_clock(store):
    store.append([make_event(1)])
    store.clock.advance(timedelta(hours=5))
    store.append([make_event(2)])
    assert [r["received"] for r in store.events()] == [
        "2026-04-01T03:00:00.000000+00:00",
        "2026-04-01T08:00:00.000000+00:00",
    ]


def test_events_and_count_filter(store):
    store.append(
        [
            make_event(1),
            make_event(2, user="yamada"),
            make_event(3, site="ncc", approval_id="J-DU000102"),
            make_event(4, schema="https://visiting.example/events/login"),
        ]
    )

    def seqs(**kw):
        found = [r["seq"] for r in store.events(**kw)]
        assert store.count(**kw) == len(found)
        return found

    assert seqs(user="yamada") == [2]
    assert seqs(site="ncc") == [3] and seqs(approval_id="J-DU000102") == [3]
    assert seqs(schema=SCHEMA) == [1, 2, 3]
    assert seqs(since="2026-04-01T09:02:00+09:00", until="2026-04-01T09:04:00+09:00") == [2, 3]
    assert seqs(user="nobody") == []


def test_same_event_id_twice_in_one_batch_is_stored_once(store):
    result = store.append([make_event(1), make_event(1, data={"other": True}), make_event(2)])
    assert (result.stored, result.duplicates, result.last_seq) == (2, 1, 2)
    assert [(r["event_id"], r["data"]) for r in store.events()] == [
        ("ev-0001", make_event(1)["data"]),
        ("ev-0002", make_event(2)["data"]),
    ]


def test_same_event_id_across_batches_is_stored_once(store):
    store.append([make_event(1), make_event(2)])
    before = list(store.events())

    again = store.append([make_event(1), make_event(2)])
    assert (again.stored, again.duplicates, again.last_seq) == (0, 2, None)
    assert list(store.events()) == before

    mixed = store.append([make_event(2, data={"resent": True}), make_event(3)])
    assert (mixed.stored, mixed.duplicates, mixed.last_seq) == (1, 1, 3)
    records = list(store.events())
    assert records[:2] == before and [r["event_id"] for r in records] == [
        "ev-0001",
        "ev-0002",
        "ev-0003",
    ]
    assert store.verify().ok


def test_empty_batch_stores_nothing(store):
    assert store.append([]) == store.append(iter([]))
    assert store.append([]).stored == 0 and store.count() == 0


def test_two_stores_appending_at_once_keep_one_chain(database_url):
    # each thread sends its own events and the same shared ones: every id lands once,
    # and the seqs and links stay unbroken however the two interleave
    stores = [AuditStore(database_url, clock=FixedClock(NOW)) for _ in range(2)]
    batches, start = 25, threading.Barrier(2)
    results = {0: [], 1: []}
    errors = []

    def work(k):
        try:
            start.wait()
            for b in range(batches):
                events = [make_event(1000 * (k + 1) + 2 * b + i) for i in range(2)]
                events.append(make_event(9000 + b))
                results[k].append(stores[k].append(events))
        except Exception as e:  # reported below; a thread's exception is lost otherwise
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors
        done = results[0] + results[1]
        total = 2 * batches * 2 + batches
        assert sum(r.stored for r in done) == total
        assert sum(r.duplicates for r in done) == batches
        records = list(stores[0].events())
        assert [r["seq"] for r in records] == list(range(1, total + 1))
        assert len({r["event_id"] for r in records}) == total
        result = stores[1].verify()
        assert result.ok and result.records == total, result.message()
    finally:
        for s in stores:
            s.close()


# One appending process: reads its batches (a JSON line) from stdin, opens the store,
# says "ready", waits for "go", appends the first batch, waits until the other process
# has stored something (so the two surely overlap), appends the rest, and prints the
# results as JSON.
APPENDER = """
import json, sys, time
from datetime import datetime
from hub.store.audit import AuditStore
from extensions.contracts.clock import FixedClock

url, other = sys.argv[1], sys.argv[2]
batches = json.loads(sys.stdin.readline())
store = AuditStore(url, clock=FixedClock(datetime.fromisoformat(sys.argv[3])))
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
results = [store.append(batches[0])]
deadline = time.monotonic() + 60
while not store.count(user=other):
    if time.monotonic() > deadline:
        sys.exit(f"the other process ({other}) stored nothing in 60 s")
    time.sleep(0.005)
results += [store.append(batch) for batch in batches[1:]]
store.close()
print(json.dumps([[r.stored, r.duplicates, r.last_seq] for r in results]), flush=True)
"""


def test_two_processes_appending_at_once_keep_one_chain(database_url):
    # two OS processes, each with its own events and the same shared ones, in batches
    # of six: every event lands exactly once, in one unbroken chain
    batches, own = 60, 5
    shared = [make_event(9000 + b, user="shared") for b in range(batches)]
    work = {
        k: [
            [make_event(1000 * (k + 1) + own * b + i, user=f"proc{k}") for i in range(own)]
            + [shared[b]]
            for b in range(batches)
        ]
        for k in (0, 1)
    }
    store = AuditStore(database_url, clock=FixedClock(NOW))  # the tables exist before the race
    procs = {
        k: subprocess.Popen(
            [sys.executable, "-c", APPENDER, database_url, f"proc{1 - k}", NOW.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (0, 1)
    }
    try:
        for k, p in procs.items():
            p.stdin.write(json.dumps(work[k]) + "\n")
            p.stdin.flush()
        for p in procs.values():
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs.values():
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = {k: p.communicate(timeout=120) for k, p in procs.items()}
        for k, p in procs.items():
            assert p.returncode == 0, outputs[k][1]
        results = {k: json.loads(out) for k, (out, _) in outputs.items()}

        total = 2 * batches * own + batches
        done = results[0] + results[1]
        assert sum(stored for stored, _, _ in done) == total
        assert sum(duplicates for _, duplicates, _ in done) == batches
        records = list(store.events())
        assert [r["seq"] for r in records] == list(range(1, total + 1))
        sent = {e["event_id"]: e for k in (0, 1) for batch in work[k] for e in batch}
        assert len(sent) == total
        assert sorted(r["event_id"] for r in records) == sorted(sent)
        for r in records:
            assert {k: r[k] for k in ("user", "data")} == {
                k: sent[r["event_id"]][k] for k in ("user", "data")
            }
        # the two really interleaved: each stored records after the other's first ones
        seqs = {k: [r["seq"] for r in records if r["user"] == f"proc{k}"] for k in (0, 1)}
        assert min(seqs[0]) < max(seqs[1]) and min(seqs[1]) < max(seqs[0])
        result = store.verify()
        assert result.ok and result.records == total, result.message()
        assert store.count() == total
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        store.close()


# ---------------------------------------------------------------------------
# bad input refuses the whole batch


def _without(name):
    def change(event):
        return {k: v for k, v in event.items() if k != name}

    return change


def _with(**fields):
    def change(event):
        return event | fields

    return change


BAD_EVENTS = [
    *(
        pytest.param(_without(name), f"{name}: missing", id=f"missing-{name}")
        for name in ("event_id", "schema", "version", "time", "user", "data")
    ),
    pytest.param(_with(event_id=42), "event_id: must be a non-empty string", id="event_id-int"),
    pytest.param(_with(event_id=""), "event_id: must be a non-empty string", id="event_id-empty"),
    pytest.param(
        _with(event_id="e" * 129), "event_id: longer than 128 characters", id="event_id-too-long"
    ),
    pytest.param(_with(user=None), "user: must be a non-empty string", id="user-null"),
    pytest.param(_with(schema=["s"]), "schema: must be a non-empty string", id="schema-list"),
    pytest.param(_with(site=5), "site: must be a non-empty string or null", id="site-int"),
    pytest.param(_with(user="x" * 201), "user: longer than 200 characters", id="user-too-long"),
    pytest.param(_with(user="tana\x00ka"), "user: contains a NUL character", id="user-nul"),
    pytest.param(_with(actor="\ud800"), "actor: not valid Unicode text", id="actor-surrogate"),
    pytest.param(_with(version="1"), "version: must be", id="version-string"),
    pytest.param(_with(version=True), "version: must be", id="version-bool"),
    pytest.param(_with(version=0), "version: must be", id="version-zero"),
    pytest.param(_with(version=2**63), "version: must be", id="version-huge"),
    pytest.param(_with(data=[1, 2]), "data: must be an object, not list", id="data-list"),
    pytest.param(_with(data="{}"), "data: must be an object, not str", id="data-string"),
    pytest.param(_with(data={"x": object()}), "data: not representable as JSON", id="data-object"),
    pytest.param(_with(data={"x": {1, 2}}), "data: not representable as JSON", id="data-set"),
    pytest.param(_with(data={"x": b"raw"}), "data: not representable as JSON", id="data-bytes"),
    pytest.param(_with(data={"x": float("nan")}), "data: not representable as JSON", id="data-nan"),
    pytest.param(
        _with(data={1: "a", "b": 2}), "data: not representable as JSON", id="data-mixed-keys"
    ),
    pytest.param(
        _with(data={"x": "\udc80"}), "data: not representable as JSON", id="data-surrogate"
    ),
    pytest.param(_with(time=1775001600), "time: must be an ISO 8601 instant", id="time-number"),
    pytest.param(_with(time=None), "time: must be an ISO 8601 instant", id="time-null"),
    pytest.param(_with(time="yesterday"), "time: 'yesterday' is neither a date", id="time-words"),
    pytest.param(
        _with(time="2026-04-01"), "time: '2026-04-01' is a date, not an instant", id="time-date"
    ),
    pytest.param(
        _with(time="2026-04-01T09:00:00"),
        "time: '2026-04-01T09:00:00' needs a UTC offset",
        id="time-naive",
    ),
    pytest.param(
        _with(time="2026-13-01T09:00:00+09:00"),
        "time: '2026-13-01T09:00:00+09:00' is neither",
        id="time-month-13",
    ),
    pytest.param(
        _with(time=datetime(2026, 4, 1, 9, 0)),
        "time: 2026-04-01T09:00:00 needs a UTC offset",
        id="time-naive-datetime",
    ),
    pytest.param(_with(extra=1), "extra: unknown field", id="unknown-field"),
]


@pytest.mark.parametrize("change,message", BAD_EVENTS)
def test_bad_event_refuses_the_whole_batch(filled, database_url, change, message):
    before = state(database_url)
    batch = [make_event(10), change(make_event(11)), make_event(12)]
    with pytest.raises(AuditError) as refused:
        filled.append(batch)
    text = str(refused.value)
    where = "event 1 (ev-0011)" if batch[1].get("event_id") == "ev-0011" else "event 1"
    assert text.startswith(f"{where}: "), text
    assert message in text
    assert state(database_url) == before
    # the seq counter did not move either: the next good batch carries straight on
    assert filled.append([make_event(10)]).last_seq == 7
    assert filled.verify().ok


def test_event_that_is_not_an_object(filled, database_url):
    before = state(database_url)
    with pytest.raises(AuditError, match=r"^event 2: must be a JSON object, not list$"):
        filled.append([make_event(10), make_event(11), ["not", "an", "object"]])
    assert state(database_url) == before


def test_first_bad_event_is_named(filled):
    batch = [make_event(10), make_event(11, version=0), make_event(12, user="")]
    with pytest.raises(AuditError, match=r"^event 1 \(ev-0011\): version"):
        filled.append(batch)


# ---------------------------------------------------------------------------
# verify


def test_verify_intact(filled):
    result = filled.verify()
    assert result.ok and result.records == 6 and result.first_bad_seq is None
    assert result.message() == "audit chain verified: 6 records (1 .. 6)"


def test_verify_empty_store(store):
    assert store.verify().ok
    assert store.verify().message() == "audit chain verified: 0 records"


def test_verify_counts_the_asked_range(filled):
    result = filled.verify(since="2026-04-01T09:03:00+09:00", until="2026-04-01T09:05:00+09:00")
    assert result.ok and (result.records, result.first_seq, result.last_seq) == (2, 3, 4)
    assert filled.verify(since=date(2026, 4, 2)).message() == "audit chain verified: 0 records"


def test_verify_until_stops_before_later_damage(filled, database_url):
    execute(database_url, "UPDATE audit_events SET \"user\" = 'yamada' WHERE seq = 5")
    assert filled.verify(until="2026-04-01T09:05:00+09:00").ok
    assert filled.verify(until="2026-04-01T09:06:00+09:00").first_bad_seq == 5


def _update(seq, column, value):
    """value, or {dialect: value} where the two databases need different ones."""

    def tamper(url, store):
        v = value[dialect(url)] if isinstance(value, dict) else value
        execute(
            url,
            (
                f'UPDATE audit_events SET "{column}" = :value WHERE seq = :seq',
                {"value": v, "seq": seq},
            ),
        )

    return tamper


def _delete(*seqs):
    def tamper(url, store):
        execute(url, *(f"DELETE FROM audit_events WHERE seq = {s}" for s in seqs))

    return tamper


def _sql(*statements):
    def tamper(url, store):
        execute(url, *statements)

    return tamper


def _swap_seqs(a, b):
    return _sql(
        f"UPDATE audit_events SET seq = -1 WHERE seq = {a}",
        f"UPDATE audit_events SET seq = {a} WHERE seq = {b}",
        f"UPDATE audit_events SET seq = {b} WHERE seq = -1",
    )


def _swap_contents(a, b):
    # every column but seq changes places; event_id goes by way of a placeholder (unique)
    def tamper(url, store):
        records = {r["seq"]: r for r in store.events()}
        columns = [n for n in FIELDS if n != "seq"]

        def row(seq):
            r = records[seq]
            return r | {
                "time": stored_time(r["time"]),
                "received": stored_time(r["received"]),
                "data": canonical_json(r["data"]),
            }

        assign = ", ".join(f'"{n}" = :{n}' for n in columns)
        execute(
            url,
            f"UPDATE audit_events SET event_id = 'placeholder' WHERE seq = {a}",
            (
                f"UPDATE audit_events SET {assign} WHERE seq = :seq",
                {n: row(a)[n] for n in columns} | {"seq": b},
            ),
            (
                f"UPDATE audit_events SET {assign} WHERE seq = :seq",
                {n: row(b)[n] for n in columns} | {"seq": a},
            ),
        )

    return tamper


def _forge_at_end(rehash: bool, move_head: bool = False):
    def tamper(url, store):
        *_, last = store.events()
        forged = last | {
            "seq": 7,
            "event_id": "forged",
            "data": {"n": 7, "path": "/elsewhere"},
            "prev_hash": last["hash"],
            "hash": last["hash"],
        }
        if rehash:
            forged["hash"] = record_hash(forged)
        insert_record(url, forged)
        if move_head:
            execute(url, "UPDATE audit_head SET last_seq = 7, hash = 'f' || substr(hash, 2)")

    return tamper


def _forge_in_middle(url, store):
    # make room at 4 by moving 4..6 up one, then slip in a record that links onto 3
    # with a correct hash of its own; the break shows at the record after it
    records = list(store.events())
    execute(url, *(f"UPDATE audit_events SET seq = {s + 1} WHERE seq = {s}" for s in (6, 5, 4)))
    forged = records[3] | {
        "seq": 4,
        "event_id": "forged",
        "data": {"n": 4, "path": "/elsewhere"},
        "prev_hash": records[2]["hash"],
    }
    forged["hash"] = record_hash(forged)
    insert_record(url, forged)


def _rehashed_edit(url, store):
    # change record 3 and recompute its hash: 3 checks out, 4 no longer links to it
    record = list(store.events())[2]
    record["data"] = {"n": 3, "path": "/elsewhere"}
    execute(
        url,
        (
            "UPDATE audit_events SET data = :data, hash = :hash WHERE seq = 3",
            {"data": canonical_json(record["data"]), "hash": record_hash(record)},
        ),
    )


ALTERED_3 = "record 3 was altered: its hash does not match its content"

TAMPERING = [
    # one field of one record, changed in place
    pytest.param(
        _update(3, "data", '{"n":99,"path":"/data/JGAD000101/cohort.vcf.gz"}'),
        3,
        ALTERED_3,
        id="alter-data",
    ),
    pytest.param(
        _update(3, "data", '{"n": 3, "path": "/data/JGAD000101/cohort.vcf.gz"}'),
        3,
        ALTERED_3,
        id="alter-data-spelling",
    ),
    pytest.param(
        _update(3, "data", "{not json"),
        3,
        "record 3 was altered: its content cannot be read",
        id="alter-data-not-json",
    ),
    pytest.param(_update(3, "user", "yamada"), 3, ALTERED_3, id="alter-user"),
    pytest.param(_update(3, "time", "2026-04-01 00:30:00.000000"), 3, ALTERED_3, id="alter-time"),
    pytest.param(
        # PostgreSQL refuses text that is no timestamp; its timestamp that Python cannot
        # read (psycopg has no datetime for it) is 'infinity'
        _update(3, "time", {"sqlite": "last tuesday", "postgresql": "infinity"}),
        3,
        "record 3 was altered: its content cannot be read",
        id="alter-time-unreadable",
    ),
    pytest.param(
        _update(3, "received", "10000-04-01 03:00:00.000000"),
        3,
        "record 3 was altered: its content cannot be read",
        id="alter-received-after-9999",
    ),
    pytest.param(
        _update(3, "received", "2026-04-02 00:00:00.000000"), 3, ALTERED_3, id="alter-received"
    ),
    pytest.param(
        _update(3, "schema", "https://visiting.example/events/login"),
        3,
        ALTERED_3,
        id="alter-schema",
    ),
    pytest.param(_update(3, "version", 2), 3, ALTERED_3, id="alter-version"),
    pytest.param(_update(3, "event_id", "ev-9999"), 3, ALTERED_3, id="alter-event_id"),
    pytest.param(_update(3, "site", None), 3, ALTERED_3, id="alter-site"),
    pytest.param(_update(3, "approval_id", "J-DU000102"), 3, ALTERED_3, id="alter-approval_id"),
    pytest.param(_update(3, "actor", "admin-nig"), 3, ALTERED_3, id="alter-actor"),
    pytest.param(_update(3, "hash", "0" * 64), 3, ALTERED_3, id="alter-hash"),
    pytest.param(
        _update(3, "prev_hash", GENESIS),
        3,
        "records are out of order at 3: prev_hash does not match the hash of record 2",
        id="alter-prev_hash",
    ),
    pytest.param(
        _update(1, "user", "yamada"),
        1,
        "record 1 was altered: its hash does not match its content",
        id="alter-first",
    ),
    pytest.param(
        _update(1, "prev_hash", "1" * 64),
        1,
        "records are out of order at 1: prev_hash is not the start of the chain",
        id="alter-first-prev_hash",
    ),
    pytest.param(
        _update(6, "data", "{}"),
        6,
        "record 6 was altered: its hash does not match its content",
        id="alter-last",
    ),
    pytest.param(
        _rehashed_edit,
        4,
        "records are out of order at 4: prev_hash does not match the hash of record 3",
        id="alter-and-rehash",
    ),
    # records removed
    pytest.param(_delete(3), 3, "record 3 is missing (seq jumps from 2 to 4)", id="delete-middle"),
    pytest.param(
        _delete(3, 4),
        3,
        "records 3 to 4 are missing (seq jumps from 2 to 5)",
        id="delete-two-in-middle",
    ),
    pytest.param(_delete(1), 1, "record 1 is missing (the chain starts at 2)", id="delete-first"),
    pytest.param(
        _delete(6),
        6,
        "the last record was removed (the chain ends at 5, the head at 6)",
        id="delete-last",
    ),
    pytest.param(
        _delete(5, 6),
        5,
        "the last 2 records were removed (the chain ends at 4, the head at 6)",
        id="delete-last-two",
    ),
    pytest.param(
        _sql("DELETE FROM audit_events"),
        1,
        "all 6 records were removed (the head records seq 6)",
        id="delete-all",
    ),
    pytest.param(
        _update(6, "seq", 7), 6, "record 6 is missing (seq jumps from 5 to 7)", id="renumber-last"
    ),
    # records reordered
    pytest.param(
        _swap_seqs(2, 4),
        2,
        "records are out of order at 2: prev_hash does not match the hash of record 1",
        id="swap-seqs",
    ),
    pytest.param(
        _swap_seqs(3, 4),
        3,
        "records are out of order at 3: prev_hash does not match the hash of record 2",
        id="swap-seqs-adjacent",
    ),
    pytest.param(
        _swap_contents(2, 5),
        2,
        "records are out of order at 2: prev_hash does not match the hash of record 1",
        id="swap-contents",
    ),
    # records slipped in
    pytest.param(
        _forge_in_middle,
        5,
        "records are out of order at 5: prev_hash does not match the hash of record 4",
        id="forge-middle",
    ),
    pytest.param(
        _forge_at_end(rehash=False),
        7,
        "record 7 was altered: its hash does not match its content",
        id="forge-end-bad-hash",
    ),
    pytest.param(
        _forge_at_end(rehash=True),
        7,
        "record 7 was added outside the store (the head ends at 6)",
        id="forge-end-head-untouched",
    ),
    pytest.param(
        _forge_at_end(rehash=True, move_head=True),
        7,
        "the head does not match: record 7 is not the one it recorded",
        id="forge-end-head-moved",
    ),
    # the head
    pytest.param(
        _sql("UPDATE audit_head SET hash = 'f' || substr(hash, 2)"),
        6,
        "the head does not match: record 6 is not the one it recorded",
        id="head-hash",
    ),
    pytest.param(
        _sql("UPDATE audit_head SET last_seq = 5"),
        6,
        "record 6 was added outside the store (the head ends at 5)",
        id="head-rewound",
    ),
    pytest.param(
        _sql("DELETE FROM audit_head"),
        None,
        "the head (audit_head) is missing; the chain ends at 6",
        id="head-deleted",
    ),
]


@pytest.mark.parametrize("tamper,first_bad,reason", TAMPERING)
def test_verify_finds_the_first_broken_link(filled, database_url, tamper, first_bad, reason):
    tamper(database_url, filled)
    result = filled.verify()
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.message() == f"audit chain broken: {reason}"


def test_verify_counts_the_good_records_before_the_break(filled, database_url):
    execute(database_url, "UPDATE audit_events SET \"user\" = 'yamada' WHERE seq = 4")
    result = filled.verify()
    assert (result.records, result.first_seq, result.last_seq) == (3, 1, 3)


def test_removed_end_stays_visible_after_later_appends(filled, database_url):
    execute(database_url, "DELETE FROM audit_events WHERE seq = 6")
    result = filled.append([make_event(20)])
    assert result.last_seq == 7
    assert filled.verify().message() == (
        "audit chain broken: record 6 is missing (seq jumps from 5 to 7)"
    )


# ---------------------------------------------------------------------------
# export


@pytest.fixture
def around_a_day(store):
    """Events on both sides of 1 April 2026 in Japan time."""
    store.append(
        [
            make_event(1, time="2026-03-31T23:59:59.999999+09:00"),
            make_event(
                2, time="2026-04-01T00:00:00+09:00", data={"note": 'a,b "c"\nd', "名": "田中"}
            ),
            make_event(3, time="2026-04-01T23:59:59.999999+09:00", site=None),
            make_event(4, time="2026-04-02T00:00:00+09:00"),
        ]
    )
    return store


DAY_BOUNDS = [
    pytest.param("2026-04-01", "2026-04-02", id="jst-dates"),
    pytest.param(date(2026, 4, 1), date(2026, 4, 2), id="date-objects"),
    pytest.param("2026-03-31T15:00:00Z", "2026-04-01T15:00:00+00:00", id="iso-utc"),
    pytest.param("2026-04-01T00:00:00+09:00", "2026-04-02T00:00:00+09:00", id="iso-jst"),
    pytest.param(
        datetime(2026, 4, 1, tzinfo=JST), datetime(2026, 4, 2, tzinfo=JST), id="datetimes"
    ),
]


@pytest.mark.parametrize("since,until", DAY_BOUNDS)
def test_export_jsonl_between_bounds(around_a_day, since, until):
    out = io.StringIO()
    assert around_a_day.export(out, since=since, until=until) == 2
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event_id"] for r in records] == ["ev-0002", "ev-0003"]
    assert records == list(around_a_day.events(since=since, until=until))
    # one canonical line per record, and anyone holding the export can recompute the hashes
    assert lines == [canonical_json(r) for r in records]
    assert all(record_hash(r) == r["hash"] for r in records)
    assert records[0]["data"] == {"note": 'a,b "c"\nd', "名": "田中"}


@pytest.mark.parametrize("since,until", DAY_BOUNDS)
def test_export_csv_between_bounds(around_a_day, since, until):
    out = io.StringIO()
    assert around_a_day.export(out, since=since, until=until, format="csv") == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == list(FIELDS)
    assert [_from_csv(row) for row in rows[1:]] == list(
        around_a_day.events(since=since, until=until)
    )


def _from_csv(row: list[str]) -> dict:
    record = {
        name: (value if value != "" else None) for name, value in zip(FIELDS, row, strict=True)
    }
    record["seq"], record["version"] = int(record["seq"]), int(record["version"])
    record["data"] = json.loads(record["data"])
    return record


def test_export_everything_and_nothing(around_a_day):
    out = io.StringIO()
    assert around_a_day.export(out) == 4
    assert around_a_day.export(io.StringIO(), since="2027-01-01") == 0
    empty = io.StringIO()
    assert around_a_day.export(empty, since="2027-01-01", format="csv") == 0
    assert empty.getvalue() == ",".join(FIELDS) + "\n"


def test_export_unknown_format(around_a_day):
    out = io.StringIO()
    with pytest.raises(AuditError, match="unknown export format 'xml'"):
        around_a_day.export(out, format="xml")
    assert out.getvalue() == ""


# ---------------------------------------------------------------------------
# the `visiting audit` commands


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse refusing a flag
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_db(policy_copy, database_url):
    """A store with records 1..6, its URL and the arguments that name it to the command."""
    store = AuditStore(database_url, clock=FixedClock(NOW))
    store.append([make_event(n) for n in range(1, 7)])
    store.close()
    return database_url, [str(policy_copy), "--database", database_url]


def test_cli_verify_ok_then_broken(capsys, cli_db):
    url, where = cli_db
    code, out, _ = run(capsys, "audit", "verify", *where)
    assert code == 0 and out.strip() == "audit chain verified: 6 records (1 .. 6)"

    code, out, _ = run(capsys, "audit", "verify", *where, "--since", "2026-04-01T09:05:00+09:00")
    assert code == 0 and out.strip() == "audit chain verified: 2 records (5 .. 6)"

    execute(url, "UPDATE audit_events SET data = '{}' WHERE seq = 4")
    code, out, _ = run(capsys, "audit", "verify", *where)
    assert code == 1
    assert (
        out.strip()
        == "audit chain broken: record 4 was altered: its hash does not match its content"
    )
    code, out, _ = run(capsys, "audit", "verify", *where, "--until", "2026-04-01T09:04:00+09:00")
    assert code == 0 and out.strip() == "audit chain verified: 3 records (1 .. 3)"


def test_cli_verify_uses_the_platform_database(
    capsys, policy_copy, tmp_path, database_url, monkeypatch
):
    if dialect(database_url) == "sqlite":
        # policy_copy puts the platform's state, and so its registry database, in tmp_path
        url = f"sqlite:///{tmp_path / 'state' / 'registry.sqlite'}"
    else:
        # a PostgreSQL registry is named by VISITING_DATABASE_URL (policy_copy clears it)
        url = database_url
        monkeypatch.setenv("VISITING_DATABASE_URL", url)
    store = AuditStore(url, FixedClock(NOW))
    store.append([make_event(1)])
    store.close()
    code, out, _ = run(capsys, "audit", "verify", str(policy_copy))
    assert code == 0 and out.strip() == "audit chain verified: 1 record (1 .. 1)"


def test_cli_verify_of_a_missing_database_is_an_error_not_a_new_store(
    capsys, policy_copy, tmp_path
):
    # SQLite only: a SQLite URL creates its file on first use, a PostgreSQL one cannot
    # create a database, so only SQLite could turn a typo into a new, empty store
    missing = tmp_path / "typo.sqlite"
    code, out, err = run(
        capsys, "audit", "verify", str(policy_copy), "--database", f"sqlite:///{missing}"
    )
    assert code != 0 and out == ""
    assert f"no audit store at {missing}" in err
    assert not missing.exists()


def test_cli_export_jsonl_to_stdout(capsys, cli_db):
    _, where = cli_db
    code, out, err = run(
        capsys, "audit", "export", *where, "--since", "2026-04-01", "--until", "2026-04-02"
    )
    assert code == 0 and err == ""
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(record_hash(r) == r["hash"] for r in records)


def test_cli_export_csv_to_file(capsys, cli_db, tmp_path):
    _, where = cli_db
    target = tmp_path / "out" / "audit.csv"
    target.parent.mkdir()
    code, out, _ = run(
        capsys,
        "audit",
        "export",
        *where,
        "--since",
        "2026-04-01T09:02:00+09:00",
        "--until",
        "2026-04-01T00:05:00Z",
        "--format",
        "csv",
        "--output",
        str(target),
    )
    assert code == 0 and out.strip() == f"wrote 3 events to {target}"
    rows = list(csv.reader(target.open(encoding="utf-8", newline="")))
    assert rows[0] == list(FIELDS)
    assert [_from_csv(r)["seq"] for r in rows[1:]] == [2, 3, 4]


@pytest.mark.parametrize(
    "argv,message",
    [
        pytest.param(
            ["export", "--since", "2026-04-02", "--until", "2026-04-01"],
            "visiting: --until: must be after --since",
            id="export-until-before-since",
        ),
        pytest.param(
            ["export", "--since", "2026-04-01", "--until", "2026-04-01"],
            "visiting: --until: must be after --since",
            id="export-empty-period",
        ),
        pytest.param(
            ["export", "--since", "2026-04-31", "--until", "2026-05-01"],
            "argument --since: '2026-04-31' is neither a date (YYYY-MM-DD, Japan time) "
            "nor an ISO 8601 instant with an offset",
            id="export-no-such-day",
        ),
        pytest.param(
            ["export", "--since", "2026-04-01", "--until", "soon"],
            "argument --until: 'soon' is neither a date",
            id="export-malformed-until",
        ),
        pytest.param(
            ["export", "--since", "2026-04-01T09:00", "--until", "2026-04-02"],
            "argument --since: '2026-04-01T09:00' needs a UTC offset, e.g. 2026-04-01T09:00+09:00",
            id="export-naive-instant",
        ),
        pytest.param(
            ["export", "--since", "2026-04-01", "--until", "2026-04-02", "--format", "xml"],
            "argument --format: invalid choice: 'xml'",
            id="export-unknown-format",
        ),
        pytest.param(
            ["export", "--until", "2026-04-02"],
            "the following arguments are required: --since",
            id="export-no-since",
        ),
        pytest.param(
            ["verify", "--since", "2026-04-02", "--until", "2026-04-01"],
            "visiting: --until: must be after --since",
            id="verify-until-before-since",
        ),
        pytest.param(
            ["verify", "--since", "1 April"],
            "argument --since: '1 April' is neither a date",
            id="verify-malformed-since",
        ),
    ],
)
def test_cli_bad_flags_write_nothing(capsys, policy_copy, tmp_path, argv, message):
    # SQLite only: the flags are refused before any database is opened, and the
    # proof that nothing was written is that no database file appears
    database = tmp_path / "never.sqlite"
    target = tmp_path / "never.jsonl"
    action, *flags = argv
    extra = ["--output", str(target)] if action == "export" else []
    code, out, err = run(
        capsys,
        "audit",
        action,
        str(policy_copy),
        "--database",
        f"sqlite:///{database}",
        *flags,
        *extra,
    )
    assert code == 2
    assert message in err
    assert out == ""
    assert not target.exists() and not database.exists()
