"""Albums' pure parts: which days "On this day" shows in an earlier year (29 February on 28
February in years without one), against a day-by-day brute force; names; dates."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vistudio.errors import InvalidInput
from vistudio.services.albums import check_name, day_range, parse_day, years_ago_text


def _days_shown(on: date, year: int) -> list[date]:
    """Every day of ``year`` whose photos show on ``on``: same month and day; 29 February also
    on 28 February of a year without one."""
    out = []
    d = date(year, 1, 1)
    while d.year == year:
        same = (d.month, d.day) == (on.month, on.day)
        leap_day = (
            (d.month, d.day) == (2, 29) and (on.month, on.day) == (2, 28) and not calendar.isleap(on.year)
        )
        if same or leap_day:
            out.append(d)
        d += timedelta(days=1)
    return out


@given(on=st.dates(min_value=date(1901, 1, 1), max_value=date(2100, 12, 31)), back=st.integers(1, 40))
def test_day_range_equals_a_day_by_day_brute_force(on: date, back: int) -> None:
    year = on.year - back
    days = _days_shown(on, year)
    span = day_range(on, year)
    if not days:
        assert span is None
        return
    assert span is not None
    start, end = span
    assert start == datetime.combine(days[0], datetime.min.time())
    assert end == datetime.combine(days[-1] + timedelta(days=1), datetime.min.time())
    assert (end - start).days == len(days)  # one contiguous range


def test_leap_days_and_year_ends() -> None:
    assert day_range(date(2025, 2, 28), 2024) == (datetime(2024, 2, 28), datetime(2024, 3, 1))
    assert day_range(date(2025, 2, 28), 2023) == (datetime(2023, 2, 28), datetime(2023, 3, 1))
    assert day_range(date(2024, 2, 28), 2020) == (datetime(2020, 2, 28), datetime(2020, 2, 29))
    assert day_range(date(2024, 2, 29), 2020) == (datetime(2020, 2, 29), datetime(2020, 3, 1))
    assert day_range(date(2024, 2, 29), 2021) is None
    assert day_range(date(2025, 12, 31), 2019) == (datetime(2019, 12, 31), datetime(2020, 1, 1))
    assert day_range(date(2025, 1, 1), 2019) == (datetime(2019, 1, 1), datetime(2019, 1, 2))
    assert years_ago_text(1) == "1 year ago" and years_ago_text(3) == "3 years ago"


@pytest.mark.parametrize(
    "bad", ["2024-13-01", "2023-02-29", "2024-1-1", "yesterday", "2024-01-01T00", "x" * 50]
)
def test_bad_dates(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_day(bad)


def test_names() -> None:
    assert parse_day("2024-02-29") == date(2024, 2, 29)
    assert parse_day(None) == date.today()
    assert check_name("  Été à Lisbon  ") == "Été à Lisbon"
    assert check_name("x" * 200) == "x" * 200
    for bad in ("", " ", "x" * 201, "a\nb", "a\x7fb"):
        with pytest.raises(InvalidInput):
            check_name(bad)
