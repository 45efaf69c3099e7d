"""Time rules of the platform, one definition for the hub and the containers.

Periods are calendar dates in Japan time; the end date is inclusive to
23:59:59 JST. Instants are stored and compared in UTC. Fiscal years run from
1 April to 31 March. Every function that needs "now" takes a clock, so tests
move time instead of sleeping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")

#: Environment variable naming a file that holds the instant a test wants "now" to be.
CLOCK_FILE_ENV = "VISITING_CLOCK_FILE"


def utcnow() -> datetime:
    """The real time, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(instant: datetime) -> datetime:
    """An aware datetime in UTC; naive values are taken to be UTC already (as stored)."""
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def period_start(start: date) -> datetime:
    """The first instant (UTC) of a period that starts on `start` in Japan time."""
    return datetime.combine(start, time.min, tzinfo=JST).astimezone(UTC)


def period_end_exclusive(end: date) -> datetime:
    """The first instant (UTC) *after* a period whose inclusive end date is `end` in Japan time."""
    return datetime.combine(end + timedelta(days=1), time.min, tzinfo=JST).astimezone(UTC)


def jst_date(instant: datetime) -> date:
    """The calendar date in Japan at `instant`."""
    return as_utc(instant).astimezone(JST).date()


@dataclass(frozen=True)
class Period:
    """An approved usage period: Japan-time dates, both inclusive."""

    start: date
    end: date

    @property
    def starts_at(self) -> datetime:
        return period_start(self.start)

    @property
    def ends_before(self) -> datetime:
        return period_end_exclusive(self.end)

    def status_at(self, instant: datetime) -> str:
        """'not-started', 'active' or 'ended' at `instant`."""
        instant = as_utc(instant)
        if instant < self.starts_at:
            return "not-started"
        if instant >= self.ends_before:
            return "ended"
        return "active"

    def contains(self, instant: datetime) -> bool:
        return self.status_at(instant) == "active"

    def days_left(self, instant: datetime) -> int:
        """Calendar days left including today (JST); 0 once the period has ended."""
        if self.status_at(instant) == "ended":
            return 0
        today = max(jst_date(instant), self.start)
        return (self.end - today).days + 1


def fiscal_year_of(instant: datetime) -> int:
    """The fiscal year (named by the calendar year it starts in) that holds `instant` in Japan time."""
    d = jst_date(instant)
    return d.year if d.month >= 4 else d.year - 1


def fiscal_year_bounds(fiscal_year: int) -> tuple[datetime, datetime]:
    """[start, end) of a fiscal year as UTC instants: 1 April 00:00 JST to the next 1 April."""
    return period_start(date(fiscal_year, 4, 1)), period_start(date(fiscal_year + 1, 4, 1))


class Clock:
    """Where "now" comes from. The default is the real time."""

    def now(self) -> datetime:
        return utcnow()


class FixedClock(Clock):
    """A clock that stays where a test puts it."""

    def __init__(self, instant: datetime):
        self.instant = as_utc(instant)

    def now(self) -> datetime:
        return self.instant

    def move_to(self, instant: datetime) -> None:
        self.instant = as_utc(instant)

    def advance(self, delta: timedelta) -> None:
        self.instant = self.instant + delta


class FileClock(Clock):
    """Reads "now" from a file on each call, so a test can move the clock of a running hub.

    The file holds one ISO 8601 instant with an offset. While the file is
    missing or empty, the real time is used. Only test set-ups point
    `VISITING_CLOCK_FILE` at such a file; production leaves it unset.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def now(self) -> datetime:
        try:
            text = self.path.read_text().strip()
        except OSError:  # missing, or not readable where it is mounted
            return utcnow()
        if not text:
            return utcnow()
        instant = datetime.fromisoformat(text)
        if instant.tzinfo is None:
            raise ValueError(f"{self.path}: the instant {text!r} needs a UTC offset")
        return as_utc(instant)

    def set(self, instant: datetime) -> None:
        self.path.write_text(as_utc(instant).isoformat())


def clock_from_env(environ: dict[str, str] | None = None) -> Clock:
    """The real clock, or a FileClock when VISITING_CLOCK_FILE is set."""
    environ = os.environ if environ is None else environ
    path = environ.get(CLOCK_FILE_ENV)
    return FileClock(path) if path else Clock()
