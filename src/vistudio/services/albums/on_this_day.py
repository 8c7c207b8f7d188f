"""On this day: the photos taken on a date's month and day in earlier years (see the package's docstring)."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vistudio.db import Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.errors import InvalidInput
from vistudio.services.albums.read import _COLUMNS, photo_dict
from vistudio.services.projects import find_project
from vistudio.studio import Studio

MAX_PER_YEAR = 200


# --- on this day ----------------------------------------------------------------------------------


def parse_day(value: str | None) -> date:
    """``YYYY-MM-DD`` → a date; None or empty → today (the server's local date)."""
    if value is None or not value.strip():
        return date.today()
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("date: YYYY-MM-DD", details={"date": value[:40]}) from None


def day_range(day: date, year: int) -> tuple[datetime, datetime] | None:
    """The ``[start, end)`` of ``day``'s month and day in ``year``: 29 February is shown on 28
    February in years without it, so 28 February of a non-leap year also takes 29 February of a
    leap ``year``; 29 February itself takes only 29 February (None in a year without it)."""
    if (day.month, day.day) == (2, 29):
        if not calendar.isleap(year):
            return None
        start = datetime(year, 2, 29)
        return start, start + timedelta(days=1)
    start = datetime(year, day.month, day.day)
    end = start + timedelta(days=1)
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year) and calendar.isleap(year):
        end += timedelta(days=1)
    return start, end


def _years_before(s: Session, project_id: int, year: int) -> list[int]:
    """The years before ``year`` that have photos, newest first: one index seek each."""
    t = Sample.sort_time
    out: list[int] = []
    bound = datetime(year, 1, 1)
    while True:
        newest = s.scalar(select(func.max(t)).where(Sample.project_id == project_id, t < bound))
        if newest is None:
            return out
        out.append(newest.year)
        bound = datetime(newest.year, 1, 1)


def years_ago_text(n: int) -> str:
    return "1 year ago" if n == 1 else f"{n} years ago"


def on_this_day(
    studio: Studio, *, project: str | int, day: date | str | None = None, per_year: int = 24
) -> dict[str, Any]:
    """The photos taken on ``day``'s month and day (default today) in earlier years, newest year
    first; in each year the first ``per_year`` photos in time order and how many there are →
    ``{"date", "years": [{"year", "years_ago", "label", "date", "count", "photos"}], "total"}``.
    Hidden duplicates are left out."""
    on = day if isinstance(day, date) else parse_day(day)
    if not 1 <= per_year <= MAX_PER_YEAR:
        raise InvalidInput(f"per_year must be between 1 and {MAX_PER_YEAR}", details={"per_year": per_year})
    years: list[dict[str, Any]] = []
    with studio.sessions() as s:
        p = find_project(s, project)
        hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == p.id)
        t = Sample.sort_time
        for year in _years_before(s, p.id, on.year):
            span = day_range(on, year)
            if span is None:
                continue
            lo, hi = span
            where = [Sample.project_id == p.id, t >= lo, t < hi, Sample.id.not_in(hidden)]
            count = int(s.scalar(select(func.count()).select_from(Sample).where(*where)) or 0)
            if not count:
                continue
            rows = s.execute(select(*_COLUMNS).where(*where).order_by(t, Sample.id).limit(per_year)).all()
            years.append(
                {
                    "year": year,
                    "years_ago": on.year - year,
                    "label": years_ago_text(on.year - year),
                    "date": lo.date().isoformat(),
                    "count": count,
                    "photos": [photo_dict(r) for r in rows],
                }
            )
        project_d = {"id": p.id, "name": p.name}
    return {
        "project": project_d,
        "date": on.isoformat(),
        "years": years,
        "total": sum(y["count"] for y in years),
    }
