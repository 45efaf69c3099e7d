"""Time rules (DESIGN.md): JST calendar dates, end inclusive to 23:59:59 JST, fiscal years April-March."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from extensions.contracts.clock import (
    JST,
    FileClock,
    FixedClock,
    Period,
    clock_from_env,
    fiscal_year_bounds,
    fiscal_year_of,
    jst_date,
)

PERIOD = Period(date(2026, 4, 1), date(2027, 3, 31))


@pytest.mark.parametrize(
    "instant,status",
    [
        pytest.param(
            datetime(2026, 3, 31, 23, 59, 59, tzinfo=JST),
            "not-started",
            id="day-before-23:59:59-jst",
        ),
        pytest.param(datetime(2026, 4, 1, 0, 0, 0, tzinfo=JST), "active", id="first-day-00:00-jst"),
        pytest.param(datetime(2026, 3, 31, 15, 0, 0, tzinfo=UTC), "active", id="first-day-as-utc"),
        pytest.param(
            datetime(2027, 3, 31, 23, 59, 59, 999999, tzinfo=JST),
            "active",
            id="last-day-23:59:59-jst",
        ),
        pytest.param(datetime(2027, 4, 1, 0, 0, 0, tzinfo=JST), "ended", id="next-day-00:00-jst"),
        pytest.param(
            datetime(2027, 3, 31, 14, 59, 59, tzinfo=UTC), "active", id="last-second-as-utc"
        ),
        pytest.param(datetime(2027, 3, 31, 15, 0, 0, tzinfo=UTC), "ended", id="end-as-utc"),
    ],
)
def test_period_status(instant, status):
    assert PERIOD.status_at(instant) == status


def test_stored_bounds_are_utc():
    assert PERIOD.starts_at == datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
    assert PERIOD.ends_before == datetime(2027, 3, 31, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "instant,days",
    [
        pytest.param(datetime(2027, 3, 31, 12, 0, tzinfo=JST), 1, id="last-day"),
        pytest.param(datetime(2027, 3, 18, 0, 0, tzinfo=JST), 14, id="fourteen-days"),
        pytest.param(datetime(2027, 4, 1, 0, 0, tzinfo=JST), 0, id="ended"),
        pytest.param(datetime(2025, 1, 1, tzinfo=JST), 365, id="before-start-counts-whole-period"),
    ],
)
def test_days_left(instant, days):
    assert PERIOD.days_left(instant) == days


@pytest.mark.parametrize(
    "instant,fy",
    [
        pytest.param(datetime(2027, 3, 31, 23, 59, 59, tzinfo=JST), 2026, id="31-march-23:59:59"),
        pytest.param(datetime(2027, 4, 1, 0, 0, 0, tzinfo=JST), 2027, id="1-april-00:00"),
        pytest.param(
            datetime(2027, 3, 31, 15, 0, 0, tzinfo=UTC), 2027, id="utc-afternoon-is-next-jst-day"
        ),
        pytest.param(datetime(2026, 11, 23, tzinfo=JST), 2026, id="november"),
    ],
)
def test_fiscal_year(instant, fy):
    assert fiscal_year_of(instant) == fy


def test_fiscal_year_bounds():
    start, end = fiscal_year_bounds(2026)
    assert start.astimezone(JST) == datetime(2026, 4, 1, tzinfo=JST)
    assert end.astimezone(JST) == datetime(2027, 4, 1, tzinfo=JST)
    assert jst_date(end - timedelta(microseconds=1)) == date(2027, 3, 31)


def test_fixed_clock_moves():
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=JST))
    clock.advance(timedelta(days=1))
    assert jst_date(clock.now()) == date(2026, 1, 2)


def test_file_clock(tmp_path):
    path = tmp_path / "now"
    clock = FileClock(path)
    before = datetime.now(UTC)
    assert clock.now() >= before  # missing file: the real time
    clock.set(datetime(2040, 4, 1, tzinfo=JST))
    assert clock.now() == datetime(2040, 3, 31, 15, 0, tzinfo=UTC)
    path.write_text("2040-04-01T00:00:00")
    with pytest.raises(ValueError, match="needs a UTC offset"):
        clock.now()


def test_clock_from_env(tmp_path):
    assert type(clock_from_env({})).__name__ == "Clock"
    assert isinstance(clock_from_env({"VISITING_CLOCK_FILE": str(tmp_path / "x")}), FileClock)
