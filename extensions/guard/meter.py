"""The egress meter: what one researcher's server sent to clients today, and when that is enough.

The gate (extensions/guard/gate) calls `EgressMeter.count` for everything it is
about to send to a client, by channel, with a digest that identifies the content
and digests of the cohort people the content shows. The meter answers with the
day's totals and a level:

- `ok`;
- `alert` once the day's bytes reach `alert_bytes` or the distinct people shown
  reach `alert_people`: the banner says so and an `egress-alert` event reaches
  the secretariat;
- `cap` once they reach `cap_bytes` or `cap_people`: the gate withholds outputs
  and downloads for the rest of the Japan-time day (429) and an `egress-cap`
  event tells the secretariat.

The day is the Japan-time calendar day of the injectable clock; at JST midnight
everything starts again from zero. The same content counted twice on one day
adds nothing (re-opening a notebook is not new egress); the people are distinct
over the day, so a table shown ten rows at a time still adds up. Each level is
reported once per day (`Reading.crossed`), and the ledger is handed out as
cumulative `Tally` lines (`EgressMeter.tallies`): the last tally of a day and
channel is that day's figure.

Persistence (so that a restart of the gate keeps the day's counts): a snapshot
at `state_path`, written atomically (a temporary file, fsync, rename), and a
journal beside it (`<state_path>.journal`, one JSON line per count since the
snapshot). A count appends one short line; crossings, tallies, a new day and
every `COMPACT_EVERY` counts write a new snapshot. Each snapshot has a
generation and each journal line names it, so lines already folded into a
snapshot are never counted twice; a line cut short by a crash is ignored.

Memory and the file are bounded: content digests are kept as 16 bytes, at most
`MAX_CONTENTS` a day, the least recently seen forgotten first (a forgotten
content shown again is counted again: the meter may count more, never less);
people digests are kept only until the cap (`cap_people` of them at most), since
at the cap nothing more leaves that day. The meter stores digests only, never
content or ids; the gate passes keyed digests of the people (see
extensions/guard/recognise/cohort.py), so that the file cannot be turned back into ids.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..contracts.clock import JST, Clock
from ..contracts.egress import EgressRules

CHANNELS = ("download", "kernel", "terminal", "other")
LEVELS = ("ok", "alert", "cap")

#: content digests remembered per day (16 bytes each, least recently seen forgotten first)
MAX_CONTENTS = 20_000
#: counts appended to the journal before a new snapshot is written
COMPACT_EVERY = 1_000
#: a person or a content is kept as a digest of this many bytes
DIGEST_BYTES = 16
STATE_VERSION = 1


class EgressStateError(RuntimeError):
    """The meter's state file cannot be read back; the gate does not start without its counts."""


@dataclass(frozen=True)
class Reading:
    """The day's totals of one server, and its level."""

    day: date  # Japan time
    level: str  # ok | alert | cap
    channel_bytes: Mapping[str, int]
    channel_contents: Mapping[str, int]  # distinct contents counted per channel
    people: int  # distinct cohort people shown today, every channel together
    channel_people: Mapping[str, int]
    # the levels this count reached for the first time today ("alert", "cap", or both when
    # one count jumps over both); each is in exactly one reading a day: emit its event then
    crossed: tuple[str, ...] = ()
    # False when the count added nothing: content already counted today, or the day is
    # at the cap (nothing more is counted; the gate withholds it)
    counted: bool = False
    rules: EgressRules = field(default_factory=EgressRules)

    @property
    def total_bytes(self) -> int:
        return sum(self.channel_bytes.values())

    @property
    def withheld(self) -> bool:
        """At the cap: the gate withholds outputs and downloads for the rest of the day."""
        return self.level == "cap"

    def event_data(self, level: str) -> dict[str, Any]:
        """The data of the `egress-alert` (level "alert") or `egress-cap` event."""
        r = self.rules
        alert = level == "alert"
        return {
            "day": self.day.isoformat(),
            "level": level,
            "bytes": self.total_bytes,
            "people": self.people,
            "channel_bytes": dict(self.channel_bytes),
            "reached_by": list(r.reached_by(level, self.total_bytes, self.people)),
            "limit_bytes": r.alert_bytes if alert else r.cap_bytes,
            "limit_people": r.alert_people if alert else r.cap_people,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "level": self.level,
            "bytes": self.total_bytes,
            "channel_bytes": dict(self.channel_bytes),
            "channel_contents": dict(self.channel_contents),
            "people": self.people,
            "alert_bytes": self.rules.alert_bytes,
            "cap_bytes": self.rules.cap_bytes,
            "alert_people": self.rules.alert_people,
            "cap_people": self.rules.cap_people,
        }


@dataclass(frozen=True)
class Tally:
    """One line of the ledger: a channel's totals so far on a Japan-time day (cumulative)."""

    day: date
    channel: str
    bytes: int
    contents: int
    people: int
    at: datetime  # the last count it includes: emit the event at this instant

    def event_data(self) -> dict[str, Any]:
        """The data of the `egress-tally` event."""
        return {
            "day": self.day.isoformat(),
            "channel": self.channel,
            "bytes": self.bytes,
            "contents": self.contents,
            "people": self.people,
        }


def jst_day(instant: datetime) -> date:
    return instant.astimezone(JST).date()


def _key(digest: bytes) -> str:
    if not isinstance(digest, bytes | bytearray) or not digest:
        raise ValueError("a digest is a non-empty bytes value")
    return bytes(digest[:DIGEST_BYTES]).hex()


class _Day:
    """The counts of one day, in memory; what a snapshot holds."""

    def __init__(self, day: date):
        self.day = day
        self.bytes = dict.fromkeys(CHANNELS, 0)
        self.contents = dict.fromkeys(CHANNELS, 0)
        self.channel_people = dict.fromkeys(CHANNELS, 0)
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.people: dict[str, set[str]] = {}  # person digest -> channels it was shown on
        self.last_at: dict[str, str] = {}  # channel -> ISO instant of its last count
        self.reported: list[str] = []  # levels whose event the gate was given
        self.tallied: dict[str, list[int]] = {}  # channel -> [bytes, contents, people] told
        self.last_tally: str | None = None

    def figures(self, channel: str) -> list[int]:
        return [self.bytes[channel], self.contents[channel], self.channel_people[channel]]

    def untallied(self) -> list[str]:
        return [c for c in CHANNELS if c in self.last_at and self.tallied.get(c) != self.figures(c)]

    def tally(self, channel: str) -> Tally:
        b, n, p = self.figures(channel)
        return Tally(self.day, channel, b, n, p, datetime.fromisoformat(self.last_at[channel]))

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "bytes": self.bytes,
            "contents": self.contents,
            "seen": list(self.seen),
            "people": {k: sorted(v) for k, v in self.people.items()},
            "last_at": self.last_at,
            "reported": self.reported,
            "tallied": self.tallied,
            "last_tally": self.last_tally,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> _Day:
        d = cls(date.fromisoformat(doc["day"]))
        for c in CHANNELS:
            d.bytes[c] = int(doc["bytes"].get(c, 0))
            d.contents[c] = int(doc["contents"].get(c, 0))
        d.seen = OrderedDict.fromkeys(doc["seen"])
        d.people = {k: set(v) for k, v in doc["people"].items()}
        for channels in d.people.values():
            for c in channels:
                d.channel_people[c] += 1
        d.last_at = dict(doc["last_at"])
        d.reported = list(doc["reported"])
        d.tallied = {c: list(v) for c, v in doc["tallied"].items()}
        d.last_tally = doc.get("last_tally")
        return d


class EgressMeter:
    """Bytes and people a server sent to clients today, by channel; see the module's text.

    `clock` is extensions.guard.context.Clock (tests move a FileClock or their own);
    `state_path` None keeps the counts in memory only (tests, benchmarks);
    `tally_seconds` is how often `tallies()` hands out a changed channel's line.
    """

    def __init__(
        self,
        rules: EgressRules,
        clock: Clock,
        state_path: str | os.PathLike | None,
        *,
        tally_seconds: float = 300.0,
        max_contents: int = MAX_CONTENTS,
    ):
        self.rules = rules
        self.clock = clock
        self.state_path = Path(state_path) if state_path is not None else None
        self.tally_seconds = tally_seconds
        self.max_contents = max_contents
        self._lock = threading.Lock()
        self._closing: list[Tally] = []  # a past day's last lines, not yet handed out
        self._generation = 0
        self._journal_lines = 0
        self._journal = None
        self._today = _Day(jst_day(clock.now()))
        if self.state_path is not None and not self._load():
            self._save()  # from the first count on, the journal has a snapshot to belong to

    # -- the gate's questions -------------------------------------------------------------

    def count(
        self, channel: str, digest: bytes, nbytes: int, people: Iterable[bytes] = ()
    ) -> Reading:
        """Count `nbytes` of the content `digest` about to go out on `channel`, showing
        `people` (digests of cohort people). Returns the day's reading after it; its
        `crossed` names the levels reached for the first time today."""
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
            raise ValueError(f"nbytes must be a whole number of bytes, got {nbytes!r}")
        key = _key(digest)
        person_keys = sorted({_key(p) for p in people})
        with self._lock:
            now = self.clock.now()
            self._roll(jst_day(now))
            day = self._today
            counted = False
            if key in day.seen:
                day.seen.move_to_end(key)  # shown again: adds nothing
            elif self.rules.level(self._total(), len(day.people)) != "cap":
                self._apply(channel, key, nbytes, person_keys, now.isoformat())
                self._journal_count(channel, key, nbytes, person_keys, now.isoformat())
                counted = True
            crossed = self._crossings()
            if crossed or self._journal_lines >= COMPACT_EVERY:
                self._save()
            return self._reading(crossed, counted)

    def reading(self) -> Reading:
        """The day's totals and level now (a new Japan-time day reads as zero)."""
        with self._lock:
            self._roll(jst_day(self.clock.now()))
            return self._reading(())

    def withheld(self) -> bool:
        """At the cap: the gate withholds outputs and downloads for the rest of the JST day."""
        return self.reading().withheld

    def tallies(self, force: bool = False) -> list[Tally]:
        """The ledger lines due now, each to be emitted as an `egress-tally` event: a past
        day's last lines (its final figures) as soon as the day is over, and today's
        changed channels once `tally_seconds` have passed since the last lines (or at once
        with `force`, as the gate does when it stops). Each line is handed out once."""
        with self._lock:
            now = self.clock.now()
            self._roll(jst_day(now))
            day = self._today
            out, self._closing = self._closing, []
            last = datetime.fromisoformat(day.last_tally) if day.last_tally else None
            due = force or last is None or now - last >= timedelta(seconds=self.tally_seconds)
            if due and day.untallied():
                for c in day.untallied():
                    out.append(day.tally(c))
                    day.tallied[c] = day.figures(c)
                day.last_tally = now.isoformat()
            if out:
                self._save()
            return out

    def close(self) -> None:
        """Write the snapshot and close the journal (the gate's shutdown)."""
        with self._lock:
            self._save()
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    # -- counting -------------------------------------------------------------------------

    def _total(self) -> int:
        return sum(self._today.bytes.values())

    def _apply(self, channel: str, key: str, nbytes: int, person_keys: list[str], at: str):
        day = self._today
        day.seen[key] = None
        while len(day.seen) > self.max_contents:
            day.seen.popitem(last=False)
        day.bytes[channel] += nbytes
        day.contents[channel] += 1
        day.last_at[channel] = at
        for p in person_keys:
            if len(day.people) >= self.rules.cap_people and p not in day.people:
                break  # at the cap: nothing more leaves today, so nobody more need be kept
            shown = day.people.setdefault(p, set())
            if channel not in shown:
                shown.add(channel)
                day.channel_people[channel] += 1

    def _crossings(self) -> tuple[str, ...]:
        """Levels reached and not yet reported today; they are reported by this call."""
        day = self._today
        level = self.rules.level(self._total(), len(day.people))
        reached = LEVELS[1 : LEVELS.index(level) + 1]
        new = tuple(x for x in reached if x not in day.reported)
        day.reported.extend(new)
        return new

    def _reading(self, crossed: tuple[str, ...], counted: bool = False) -> Reading:
        day = self._today
        return Reading(
            day=day.day,
            level=self.rules.level(self._total(), len(day.people)),
            channel_bytes=dict(day.bytes),
            channel_contents=dict(day.contents),
            people=len(day.people),
            channel_people=dict(day.channel_people),
            crossed=crossed,
            counted=counted,
            rules=self.rules,
        )

    def _roll(self, today: date) -> None:
        """A new Japan-time day: the old day's untold lines wait in `_closing`; all is zero."""
        if self._today.day == today:
            return
        old = self._today
        self._closing += [old.tally(c) for c in old.untallied()]
        self._today = _Day(today)
        self._save()

    # -- persistence ----------------------------------------------------------------------

    @property
    def _journal_path(self) -> Path:
        return self.state_path.with_name(self.state_path.name + ".journal")

    def _journal_count(self, channel, key, nbytes, person_keys, at) -> None:
        if self.state_path is None:
            return
        if self._journal is None:
            self._journal = open(self._journal_path, "a", encoding="utf-8")  # noqa: SIM115
        line = {"g": self._generation, "c": channel, "d": key, "n": nbytes, "t": at}
        if person_keys:
            line["p"] = person_keys
        self._journal.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._journal.flush()
        self._journal_lines += 1

    def _save(self) -> None:
        """A new snapshot (atomically), then an empty journal for its generation."""
        if self.state_path is None:
            return
        self._generation += 1
        doc = {
            "version": STATE_VERSION,
            "generation": self._generation,
            "today": self._today.to_json(),
            "closing": [t.event_data() | {"at": t.at.isoformat()} for t in self._closing],
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".meter-", dir=self.state_path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self._journal is not None:
            self._journal.close()
        # lines of older generations are skipped on loading, so a crash before this
        # truncation counts nothing twice
        self._journal = open(self._journal_path, "w", encoding="utf-8")  # noqa: SIM115
        self._journal_lines = 0

    def _load(self) -> bool:
        """The day, closing lines and journal from `state_path`; False when there is none."""
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        except OSError as e:
            raise EgressStateError(f"{self.state_path}: cannot read the meter's state: {e}") from e
        try:
            doc = json.loads(text)
            if doc.get("version") != STATE_VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {STATE_VERSION}")
            self._generation = int(doc["generation"])
            today = _Day.from_json(doc["today"])
            self._closing = [
                Tally(
                    date.fromisoformat(t["day"]),
                    t["channel"],
                    int(t["bytes"]),
                    int(t["contents"]),
                    int(t["people"]),
                    datetime.fromisoformat(t["at"]),
                )
                for t in doc["closing"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise EgressStateError(
                f"{self.state_path}: the meter's state is not readable ({e}); "
                "the gate keeps outputs and downloads closed rather than count from zero"
            ) from e
        self._today = today
        self._replay()
        return True

    def _replay(self) -> None:
        try:
            lines = self._journal_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for text in lines:
            try:
                line = json.loads(text)
                if line.get("g") != self._generation:
                    continue  # already in the snapshot
                channel, key, nbytes = line["c"], line["d"], int(line["n"])
                at, person_keys = line["t"], list(line.get("p", ()))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by a crash
            if channel in CHANNELS and key not in self._today.seen:
                self._apply(channel, key, nbytes, person_keys, at)
                self._journal_lines += 1
