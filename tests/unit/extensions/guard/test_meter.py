"""The egress meter (extensions/guard/meter.py): bytes and people per Japan-time day, each
content once, the alert and the cap reported once a day, counts kept across a restart.

Rule checked: "No disclosure" and "Security" (POLICY.md): what no recogniser sees is
bounded per person, site and day, and the secretariat hears of it. Time moves by a clock
(a FileClock, as the test set-ups move it), never by sleeping.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from extensions.contracts.clock import JST, FileClock
from extensions.contracts.egress import EgressRules, EgressRulesError
from extensions.guard.context import terminals_from_env
from extensions.guard.meter import CHANNELS, EgressMeter, EgressStateError

KIB = 1024
RULES = EgressRules(
    alert_bytes=100 * KIB,
    cap_bytes=400 * KIB,
    alert_people=5,
    cap_people=12,
    max_people_per_output=3,
)


class Clock:
    """A clock the test moves by writing the instant into a file, as the test set-ups do."""

    def __init__(self, path, start: datetime):
        self.file = FileClock(path)
        self.move_to(start)

    def move_to(self, instant: datetime) -> None:
        self.file.path.write_text(instant.isoformat())

    def advance(self, **delta) -> None:
        self.move_to(self.now() + timedelta(**delta))

    def now(self) -> datetime:
        return self.file.now()


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def people(*names: str) -> list[bytes]:
    return [digest("person:" + n) for n in names]


@pytest.fixture
def clock(tmp_path):
    return Clock(tmp_path / "clock", datetime(2026, 6, 1, 10, 0, tzinfo=JST))


@pytest.fixture
def state(tmp_path):
    return tmp_path / "gate" / "meter.json"


# ---------------------------------------------------------------------------
# counting


def test_the_same_content_twice_on_one_day_counts_once(clock):
    meter = EgressMeter(RULES, clock, None)
    first = meter.count("kernel", digest("notebook v1"), 10 * KIB)
    again = meter.count("download", digest("notebook v1"), 10 * KIB)
    assert first.counted and not again.counted
    assert again.total_bytes == 10 * KIB
    assert again.channel_contents == {"download": 0, "kernel": 1, "terminal": 0, "other": 0}
    changed = meter.count("kernel", digest("notebook v2"), 11 * KIB)
    assert changed.counted and changed.channel_bytes["kernel"] == 21 * KIB


def test_bytes_are_kept_per_channel(clock):
    meter = EgressMeter(RULES, clock, None)
    for i, channel in enumerate(CHANNELS):
        meter.count(channel, digest(f"c{i}"), (i + 1) * 1000)
    r = meter.reading()
    assert r.channel_bytes == {"download": 1000, "kernel": 2000, "terminal": 3000, "other": 4000}
    assert r.total_bytes == 10_000 and r.level == "ok" and r.day.isoformat() == "2026-06-01"


def test_people_are_distinct_over_the_day(clock):
    """A table shown a few rows at a time still adds up; the same rows again add nobody."""
    meter = EgressMeter(RULES, clock, None)
    meter.count("kernel", digest("rows 1-3"), 300, people("a", "b", "c"))
    r = meter.count("kernel", digest("rows 1-3 again, other markup"), 300, people("a", "b", "c"))
    assert r.people == 3
    r = meter.count("terminal", digest("rows 3-4"), 300, people("c", "d"))
    assert r.people == 4
    assert r.channel_people == {"download": 0, "kernel": 3, "terminal": 2, "other": 0}
    # the same person's digest twice in one output is one person
    r = meter.count("kernel", digest("rows 5"), 100, people("e", "e"))
    assert r.people == 5 and r.level == "alert"


def test_alert_and_cap_are_each_reported_once(clock):
    meter = EgressMeter(RULES, clock, None)
    crossings = []
    for i in range(60):
        r = meter.count("download", digest(f"block {i}"), 10 * KIB)
        crossings += [(i, level) for level in r.crossed]
    # 100 KiB reached by the 10th block, 400 KiB by the 40th; after that nothing is counted
    assert crossings == [(9, "alert"), (39, "cap")]
    r = meter.reading()
    assert r.level == "cap" and r.withheld and meter.withheld()
    assert r.total_bytes == 400 * KIB
    late = meter.count("kernel", digest("one more"), 1)
    assert not late.counted and late.withheld and late.crossed == ()


def test_one_count_over_both_levels_reports_both(clock):
    meter = EgressMeter(RULES, clock, None)
    r = meter.count("download", digest("bulk"), 5 * 1024 * KIB)
    assert r.crossed == ("alert", "cap") and r.withheld
    assert r.event_data("cap") == {
        "day": "2026-06-01",
        "level": "cap",
        "bytes": 5 * 1024 * KIB,
        "people": 0,
        "channel_bytes": {"download": 5 * 1024 * KIB, "kernel": 0, "terminal": 0, "other": 0},
        "reached_by": ["bytes"],
        "limit_bytes": 400 * KIB,
        "limit_people": 12,
    }
    assert r.event_data("alert")["limit_bytes"] == 100 * KIB


def test_people_reach_the_cap_and_are_kept_no_further(clock):
    meter = EgressMeter(RULES, clock, None)
    seen = []
    for i in range(10):
        r = meter.count("kernel", digest(f"view {i}"), 50, people(f"p{3 * i}", f"p{3 * i + 1}"))
        seen += list(r.crossed)
    assert seen == ["alert", "cap"]
    r = meter.reading()
    assert r.level == "cap" and r.people == 12  # no digest is kept beyond the cap
    assert r.event_data("cap")["reached_by"] == ["people"]


def test_a_clock_moved_across_jst_midnight_starts_a_new_day(clock):
    meter = EgressMeter(RULES, clock, None)
    clock.move_to(datetime(2026, 6, 1, 23, 59, 59, tzinfo=JST))
    meter.count("download", digest("bulk"), 500 * KIB, people("a"))
    assert meter.withheld()
    # 15:00 UTC is midnight in Japan; before it is still the same JST day
    clock.move_to(datetime(2026, 6, 1, 14, 59, 59, 999999, tzinfo=UTC))
    assert meter.withheld()
    clock.move_to(datetime(2026, 6, 1, 15, 0, tzinfo=UTC))
    r = meter.reading()
    assert (r.day.isoformat(), r.level, r.total_bytes, r.people) == ("2026-06-02", "ok", 0, 0)
    assert not meter.withheld()
    # yesterday's content is new egress today, and the levels are reported again
    again = meter.count("download", digest("bulk"), 500 * KIB)
    assert again.counted and again.crossed == ("alert", "cap")


def test_bad_counts_are_refused(clock):
    meter = EgressMeter(RULES, clock, None)
    with pytest.raises(ValueError, match="channel must be one of"):
        meter.count("screen", digest("x"), 1)
    with pytest.raises(ValueError, match="nbytes"):
        meter.count("kernel", digest("x"), -1)
    with pytest.raises(ValueError, match="digest"):
        meter.count("kernel", b"", 1)


def test_forgotten_contents_are_counted_again_never_less(clock):
    meter = EgressMeter(RULES, clock, None, max_contents=3)
    for name in ("a", "b", "c", "d"):  # "a" is forgotten
        meter.count("kernel", digest(name), 100)
    assert not meter.count("kernel", digest("d"), 100).counted
    assert meter.count("kernel", digest("a"), 100).counted
    assert meter.reading().total_bytes == 500


# ---------------------------------------------------------------------------
# the ledger


def test_tallies_are_cumulative_and_the_day_ends_with_its_last_lines(clock):
    meter = EgressMeter(RULES, clock, None, tally_seconds=300)
    meter.count("kernel", digest("out 1"), 1000, people("a"))
    first = meter.tallies()
    assert [t.event_data() for t in first] == [
        {"day": "2026-06-01", "channel": "kernel", "bytes": 1000, "contents": 1, "people": 1}
    ]
    meter.count("kernel", digest("out 2"), 500)
    meter.count("download", digest("file"), 2000)
    assert meter.tallies() == []  # not yet five minutes
    clock.advance(minutes=5)
    lines = {t.channel: t.event_data() for t in meter.tallies()}
    assert lines["kernel"]["bytes"] == 1500 and lines["kernel"]["contents"] == 2
    assert lines["download"]["bytes"] == 2000
    clock.advance(minutes=5)
    assert meter.tallies() == []  # nothing changed
    meter.count("terminal", digest("ls"), 70)
    at = clock.now()
    clock.move_to(datetime(2026, 6, 2, 0, 0, 1, tzinfo=JST))
    closing = meter.tallies()
    assert [(t.day.isoformat(), t.channel, t.bytes) for t in closing] == [
        ("2026-06-01", "terminal", 70)
    ]
    assert closing[0].at == at  # emitted at its last count, inside its own day
    assert meter.tallies() == []


def test_forced_tallies_when_the_gate_stops(clock):
    meter = EgressMeter(RULES, clock, None)
    meter.count("kernel", digest("a"), 1)
    meter.tallies()
    meter.count("kernel", digest("b"), 2)
    assert meter.tallies() == []
    assert [t.bytes for t in meter.tallies(force=True)] == [3]


# ---------------------------------------------------------------------------
# a restart keeps the day


def test_a_new_meter_on_the_same_file_keeps_the_day(clock, state):
    meter = EgressMeter(RULES, clock, state)
    meter.count("kernel", digest("a"), 30 * KIB, people("x", "y"))
    meter.count("download", digest("b"), 80 * KIB)  # crosses the alert
    meter.count("terminal", digest("c"), 5 * KIB)  # only in the journal
    # a restart without close(): what was counted is read back from the snapshot and journal
    again = EgressMeter(RULES, clock, state)
    r = again.reading()
    assert r.channel_bytes == {"download": 80 * KIB, "kernel": 30 * KIB, "terminal": 5 * KIB,
                               "other": 0}  # fmt: skip
    assert r.people == 2 and r.level == "alert"
    assert not again.count("kernel", digest("a"), 30 * KIB).counted
    # the alert was reported before the restart; the cap is still to come, once
    r = again.count("download", digest("d"), 300 * KIB)
    assert r.crossed == ("cap",)
    third = EgressMeter(RULES, clock, state)
    assert third.withheld()
    assert third.count("other", digest("e"), 1).crossed == ()


def test_journal_lines_in_a_snapshot_are_not_counted_twice(clock, state):
    meter = EgressMeter(RULES, clock, state)
    meter.count("kernel", digest("a"), 1000)
    journal = state.with_name(state.name + ".journal")
    old_lines = journal.read_text()
    meter.close()  # a snapshot; the journal starts again
    # a crash between the snapshot and the journal's truncation leaves the old lines
    journal.write_text(old_lines + '{"g": 999, "c": "kernel", "d": "ff", "n"')
    assert EgressMeter(RULES, clock, state).reading().total_bytes == 1000


def test_the_state_file_holds_digests_and_counts_only(clock, state):
    meter = EgressMeter(RULES, clock, state)
    meter.count("kernel", digest("NIG-000001 40-49 F"), 100, people("NIG-000001"))
    meter.close()
    text = state.read_text() + state.with_name(state.name + ".journal").read_text()
    assert "NIG-000001" not in text
    doc = json.loads(state.read_text())
    assert doc["today"]["day"] == "2026-06-01"
    assert doc["today"]["bytes"]["kernel"] == 100
    assert all(len(k) == 32 for k in doc["today"]["seen"])


def test_a_restart_on_the_next_day_hands_out_yesterdays_last_lines(clock, state):
    meter = EgressMeter(RULES, clock, state)
    meter.count("download", digest("a"), 4000)
    meter.close()
    clock.move_to(datetime(2026, 6, 2, 8, 0, tzinfo=JST))
    again = EgressMeter(RULES, clock, state)
    assert again.reading().total_bytes == 0
    assert [(t.day.isoformat(), t.bytes) for t in again.tallies()] == [("2026-06-01", 4000)]
    assert EgressMeter(RULES, clock, state).tallies() == []


def test_an_unreadable_state_file_stops_the_meter(clock, state):
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    with pytest.raises(EgressStateError, match="not readable"):
        EgressMeter(RULES, clock, state)


# ---------------------------------------------------------------------------
# the rules


def test_defaults_and_round_trip_through_the_environment():
    rules = EgressRules()
    assert rules.alert_bytes == 64 * 1024**2 and rules.cap_bytes == 256 * 1024**2
    assert (rules.alert_people, rules.cap_people, rules.max_people_per_output) == (30, 100, 10)
    assert EgressRules.from_env(None) == rules
    assert EgressRules.from_env("") == rules
    assert EgressRules.from_env(RULES.to_env()) == RULES
    assert EgressRules.from_env('{"cap_people": 40}') == EgressRules(cap_people=40)


@pytest.mark.parametrize(
    "value,message",
    [
        pytest.param("{", "VISITING_EGRESS_RULES is not JSON", id="not-json"),
        pytest.param("[1]", "must be a JSON object", id="not-an-object"),
        pytest.param('{"cap_byte": 1}', r"\.cap_byte: is not an egress rule", id="unknown"),
        pytest.param('{"alert_bytes": "64M"}', r"\.alert_bytes: must be a whole", id="string"),
        pytest.param('{"cap_people": true}', r"\.cap_people: must be a whole", id="bool"),
        pytest.param('{"alert_bytes": 0}', r"\.alert_bytes: must be at least 1", id="zero"),
        pytest.param(
            '{"max_people_per_output": -1}',
            r"max_people_per_output: must be at "
            "least 0",
            id="negative",
        ),  # fmt: skip
        pytest.param(
            '{"alert_bytes": 10, "cap_bytes": 5}',
            r"alert_bytes: the alert .* above",
            id="alert-over-cap",
        ),  # fmt: skip
        pytest.param(
            '{"alert_people": 200}',
            r"alert_people: the alert \(200 people\)",
            id="people-alert-over-cap",
        ),  # fmt: skip
        pytest.param('{"cap_people": 1000000}', r"cap_people: must be at most", id="huge"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(value, message):
    with pytest.raises(ValueError, match=message):
        EgressRules.from_env(value)


def test_a_bad_rule_carries_its_field():
    with pytest.raises(EgressRulesError) as info:
        EgressRules(alert_people=0)
    assert info.value.field == "alert_people"


def test_terminal_mode_from_the_environment():
    assert terminals_from_env({}) == "guarded"
    assert terminals_from_env({"VISITING_TERMINALS": "off"}) == "off"
    with pytest.raises(ValueError, match="VISITING_TERMINALS must be one of guarded, off"):
        terminals_from_env({"VISITING_TERMINALS": "open"})
