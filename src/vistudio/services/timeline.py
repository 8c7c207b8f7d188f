"""The timeline of a project: its photos by date, newest first, in year / month / day groups.

A photo's date is its EXIF date (``taken_at``), else its file's modification time (``file_time``,
recorded at import and scan; ``time_source`` says which). Photos with neither come last, in a
"No date" group of their own, newest import first.

Both reads follow the index ``(project_id, sort_time, id)`` (``sort_time``: ``taken_at``, else
``file_time``, set with them):

- :func:`buckets` counts photos per year, month or day by range counts over that index (the
  years found by a skip scan: one index seek each);
- :func:`photos` is one page in time order, from a keyset cursor (the last photo's date and id:
  the page starts just after it) or from a date (``at="2019-06"``: the first photo at or before
  the end of June 2019). Never ``OFFSET``: a page deep in a million photos costs what the first
  page costs (benchmarks/timeline.py).

Photos hidden by a duplicates review are left out, as the grid leaves them out.
"""

from __future__ import annotations

import calendar
import json
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from vistudio.db import Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.errors import InvalidInput
from vistudio.services.places import ensure_backfill, place_dict
from vistudio.services.projects import find_project
from vistudio.studio import Studio

BYS = ("year", "month", "day")
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
NO_DATE = "nodate"  # the "No date" group: as a cursor's time, and as ``at``
MAX_ID = 2**63 - 1
_KEY_LENGTH = {"year": 4, "month": 7, "day": 10}
_AT_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_CURSOR_RE = re.compile(r"^(nodate|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)~(\d{1,19})$")


def photo_time() -> InstrumentedAttribute[datetime | None]:
    """A photo's timeline date, ``coalesce(taken_at, file_time)`` kept in ``samples.sort_time``
    (indexed with the project and the id)."""
    return Sample.sort_time


def time_source(taken_at: datetime | None, file_time: datetime | None) -> str | None:
    """Where a photo's date comes from: ``exif``, ``file`` (the file's modification time) or None."""
    if taken_at is not None:
        return "exif"
    return "file" if file_time is not None else None


def _visible(project_id: int) -> list[ColumnElement[bool]]:
    hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)
    return [Sample.project_id == project_id, Sample.id.not_in(hidden)]


_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def group_label(key: str) -> str:
    """A group key as people read it: "2019", "June 2019", "Saturday 15 June 2019" (English, as
    the rest of the interface; not the locale's, which would make labels differ by machine)."""
    parts = [int(p) for p in key.split("-")]
    if len(parts) == 1:
        return key
    if len(parts) == 2:
        return f"{_MONTHS[parts[1] - 1]} {parts[0]}"
    day = datetime(parts[0], parts[1], parts[2])
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _period(when: datetime, by: str) -> tuple[datetime, datetime | None]:
    """The year, month or day holding ``when``: its start and the next one's (None after 9999)."""
    if by == "year":
        start = datetime(when.year, 1, 1)
    elif by == "month":
        start = datetime(when.year, when.month, 1)
    else:
        start = datetime(when.year, when.month, when.day)
    try:
        if by == "year":
            return start, start.replace(year=start.year + 1)
        if by == "month":
            return start, (
                start.replace(month=start.month + 1)
                if start.month < 12
                else start.replace(year=start.year + 1, month=1)
            )
        return start, start + timedelta(days=1)
    except (ValueError, OverflowError):
        return start, None


def _key(start: datetime, by: str) -> str:
    return start.isoformat()[: _KEY_LENGTH[by]]


# One statement counts every range: the ranges come as one JSON parameter, and for each a count
# over the timeline index ix_samples_project_time.
# SQLite compares its ISO datetime text with the bounds' text; "9999-12-31T99" sorts after any time.
_RANGE_COUNTS = {
    "sqlite": (
        "WITH b(lo, hi) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
        "FROM json_each(:bounds)) "
        "SELECT (SELECT count(*) FROM samples WHERE project_id = :project "
        "AND sort_time >= b.lo AND sort_time < b.hi) FROM b"
    ),
    "postgresql": (
        "SELECT (SELECT count(*) FROM samples WHERE project_id = :project "
        "AND sort_time >= b.lo AND sort_time < b.hi) "
        "FROM json_to_recordset(CAST(:bounds AS json)) AS b(i integer, lo timestamp, hi timestamp) "
        "ORDER BY b.i"
    ),
}


def _bound(when: datetime | None, dialect: str) -> str:
    if when is None:
        return "infinity" if dialect == "postgresql" else "9999-12-31T99"
    return when.isoformat(sep=" ") if dialect == "postgresql" else when.date().isoformat()


def _range_counts(s: Session, project_id: int, ranges: list[tuple[datetime, datetime | None]]) -> list[int]:
    """How many of the project's photos are dated within each ``[start, end)`` (period starts and
    ends are midnights): range counts read from the timeline index alone, in one statement."""
    if not ranges:
        return []
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        bounds = json.dumps(
            [{"i": i, "lo": _bound(a, dialect), "hi": _bound(b, dialect)} for i, (a, b) in enumerate(ranges)]
        )
    else:
        bounds = json.dumps([[_bound(a, dialect), _bound(b, dialect)] for a, b in ranges])
    rows = s.execute(
        text(_RANGE_COUNTS.get(dialect, _RANGE_COUNTS["sqlite"])), {"bounds": bounds, "project": project_id}
    )
    return [int(n) for (n,) in rows]


def _years(s: Session, project_id: int) -> list[int]:
    """The years that have photos, newest first: one index seek per year (a skip scan), whatever
    the number of photos."""
    t = photo_time()
    years: list[int] = []
    newest = s.scalar(select(func.max(t)).where(Sample.project_id == project_id))
    while newest is not None:
        years.append(newest.year)
        newest = s.scalar(
            select(func.max(t)).where(Sample.project_id == project_id, t < datetime(newest.year, 1, 1))
        )
    return years


def _counts(s: Session, project_id: int, by: str) -> dict[str, int]:
    """Photo counts per group key (newest first), hidden photos included: the years by skip scan,
    then range counts of their months (and of the days of the months that have photos)."""
    months = [
        _period(datetime(year, month, 1), "month")
        for year in _years(s, project_id)
        for month in range(12, 0, -1)
    ]
    by_month = {
        start: n for (start, _), n in zip(months, _range_counts(s, project_id, months), strict=True) if n
    }
    if by != "day":
        out: dict[str, int] = {}
        for start, n in by_month.items():
            key = _key(start, by)
            out[key] = out.get(key, 0) + n
        return out
    days = [
        _period(start + timedelta(days=d), "day")
        for start in by_month
        for d in reversed(range(calendar.monthrange(start.year, start.month)[1]))
    ]
    return {
        _key(start, "day"): n
        for (start, _), n in zip(days, _range_counts(s, project_id, days), strict=True)
        if n
    }


def buckets(studio: Studio, *, project: str | int, by: str = "month") -> dict[str, Any]:
    """How many photos the project has per year, month or day (newest first), how many have no
    date, and the job filling file dates and places of earlier photos when one is under way.

    Not a ``GROUP BY`` over a million rows (a key computed per row): the counts are range counts
    over the timeline index (benchmarks/timeline.py)."""
    if by not in BYS:
        raise InvalidInput(f"by is one of {', '.join(BYS)}, not {by!r}")
    t = photo_time()
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, project_ref = p.id, {"id": p.id, "name": p.name}
        counts = _counts(s, p.id, by)
        no_date = int(s.scalar(select(func.count()).where(Sample.project_id == p.id, t.is_(None))) or 0)
        # photos hidden by a duplicates review (few) come off their groups
        hidden = s.scalars(
            select(t)
            .join(HiddenSample, HiddenSample.sample_id == Sample.id)
            .where(HiddenSample.project_id == p.id, Sample.project_id == p.id)
        ).all()
    for when in hidden:
        if when is None:
            no_date -= 1
        else:
            key = _key(when, by)
            counts[key] = counts.get(key, 0) - 1
    groups = [(k, n) for k, n in sorted(counts.items(), reverse=True) if n > 0]
    dated = sum(n for _, n in groups)
    return {
        "project": project_ref,
        "by": by,
        "groups": [{"key": k, "label": group_label(k), "count": n} for k, n in groups],
        "dated": dated,
        "no_date": no_date,
        "total": dated + no_date,
        "backfill": ensure_backfill(studio, project_id),
    }


def parse_at(at: str) -> datetime | None:
    """The end (exclusive) of the period ``at`` names (``2019``, ``2019-06``, ``2019-06-15``):
    a jump to it starts at the first photo before that instant. None for the last year (9999)."""
    m = _AT_RE.fullmatch(at.strip())
    if m is None:
        raise InvalidInput(
            f"at must be a year, month or day (2019, 2019-06, 2019-06-15) or {NO_DATE!r}, not {at[:40]!r}",
            details={"at": at[:40]},
        )
    year, month, day = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    try:
        if not year:
            raise ValueError("year 0")
        if day:
            start = datetime(year, month, day)
            return start + timedelta(days=1) if start < datetime(9999, 12, 31) else None
        if month:
            start = datetime(year, month, 1)
            if month == 12:
                return datetime(year + 1, 1, 1) if year < 9999 else None
            return datetime(year, month + 1, 1)
        return datetime(year + 1, 1, 1) if year < 9999 else None
    except ValueError as exc:
        raise InvalidInput(f"at {at[:40]!r} is not a date: {exc}", details={"at": at[:40]}) from exc


def make_cursor(when: datetime | None, sample_id: int) -> str:
    """The cursor just after a photo: ``<ISO date>~<id>``, or ``nodate~<id>`` in the No date group."""
    return f"{when.isoformat() if when is not None else NO_DATE}~{sample_id}"


def parse_cursor(cursor: str) -> tuple[datetime | None, int]:
    """A cursor's (date or None for the No date group, id); InvalidInput for anything else."""
    m = _CURSOR_RE.fullmatch(cursor)
    bad = InvalidInput(
        "cursor is not one this API gave out (expected <ISO date>~<id> or nodate~<id>, as in next_cursor)",
        details={"cursor": cursor[:80]},
    )
    if m is None or int(m[2]) > MAX_ID:
        raise bad
    if m[1] == NO_DATE:
        return None, int(m[2])
    try:
        return datetime.fromisoformat(m[1]), int(m[2])
    except ValueError as exc:
        raise bad from exc


def _item(r: Any) -> dict[str, Any]:
    when = r.taken_at or r.file_time
    return {
        "id": r.id,
        "name": r.name,
        "width": r.width,
        "height": r.height,
        "time": when.isoformat() if when else None,
        "time_source": time_source(r.taken_at, r.file_time),
        "place": place_dict(r),
        "thumbnail_url": f"/api/v1/samples/{r.id}/thumbnail",
    }


_Page = Select[*tuple[Any, ...]]  # a page's rows: the columns of _COLUMNS
_COLUMNS = (
    Sample.id,
    Sample.name,
    Sample.width,
    Sample.height,
    Sample.taken_at,
    Sample.file_time,
    Sample.place_city,
    Sample.place_region,
    Sample.place_country,
    Sample.place_country_code,
)


def _dated_page(
    visible: list[ColumnElement[bool]],
    after: tuple[datetime, int] | None,
    before: datetime | None,
    limit: int,
) -> _Page:
    t = photo_time()
    stmt: _Page = select(*_COLUMNS).where(*visible, t.is_not(None))
    if after is not None:
        when, sid = after
        # "t <= when" bounds the index range; the OR only skips the equal dates already shown
        stmt = stmt.where(t <= when, or_(t < when, and_(t == when, Sample.id < sid)))
    elif before is not None:
        stmt = stmt.where(t < before)
    return stmt.order_by(t.desc(), Sample.id.desc()).limit(limit)


def _undated_page(visible: list[ColumnElement[bool]], after_id: int | None, limit: int) -> _Page:
    stmt: _Page = select(*_COLUMNS).where(*visible, photo_time().is_(None))
    if after_id is not None:
        stmt = stmt.where(Sample.id < after_id)
    return stmt.order_by(Sample.id.desc()).limit(limit)


def photos(
    studio: Studio,
    *,
    project: str | int,
    cursor: str | None = None,
    at: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """One page of the project's photos, newest first and the undated last: after ``cursor`` (a
    ``next_cursor`` of an earlier page), or from ``at`` (a year, month or day: its last photo
    first; ``nodate``: the No date group), or from the newest. ``next_cursor`` is None at the end.
    Each item has its ``time``, ``time_source`` (exif, file or None) and ``place``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", details={"limit": limit})
    if cursor is not None and at is not None:
        raise InvalidInput("give cursor (the next page) or at (a jump to a date), not both")
    after: tuple[datetime | None, int] | None = parse_cursor(cursor) if cursor is not None else None
    undated_only = (after is not None and after[0] is None) or (at is not None and at.strip() == NO_DATE)
    before = parse_at(at) if at is not None and not undated_only else None
    with studio.sessions() as s:
        p = find_project(s, project)
        visible = _visible(p.id)
        rows: list[Any] = []
        if not undated_only:
            dated_after = (after[0], after[1]) if after is not None and after[0] is not None else None
            rows = list(s.execute(_dated_page(visible, dated_after, before, limit + 1)).all())
        if len(rows) <= limit:
            after_id = after[1] if undated_only and after is not None else None
            rows += s.execute(_undated_page(visible, after_id, limit + 1 - len(rows))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_item(r) for r in rows]
    last = rows[-1] if rows else None
    next_cursor = make_cursor(last.taken_at or last.file_time, last.id) if more and last is not None else None
    return {
        "project": {"id": p.id, "name": p.name},
        "items": items,
        "next_cursor": next_cursor,
        "limit": limit,
    }
