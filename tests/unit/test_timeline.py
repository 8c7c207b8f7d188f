"""The timeline service on a real SQLite workspace: bucket counts against a brute-force count,
keyset pages against the full order (equal dates, inserts between pages), jumps, the No date
group, hidden photos, hostile cursors and dates, and the places job for earlier photos."""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from factories import insert_photos
from vistudio.db import Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.db.library import LibraryFile, LibraryRoot
from vistudio.db.samples import TimelinePending
from vistudio.errors import InvalidInput
from vistudio.jobs.worker import Worker
from vistudio.services import places, projects, timeline
from vistudio.studio import Studio

_names = itertools.count()


def new_project(studio: Studio) -> str:
    name = f"tl-{next(_names)}"
    projects.create_project(studio, name=name, task="library")
    return name


def add(
    studio: Studio, project: str, photos: list[tuple[datetime | None, datetime | None]], **extra: Any
) -> list[int]:
    """Insert photos given as (taken_at, file_time); returns their ids in order."""
    return insert_photos(studio, project, ({"taken_at": t, "file_time": f, **extra} for t, f in photos))


def expected_order(rows: dict[int, datetime | None]) -> list[int]:
    dated = sorted((t, i) for i, t in rows.items() if t is not None)
    return [i for _, i in reversed(dated)] + sorted((i for i, t in rows.items() if t is None), reverse=True)


def walk(studio: Studio, project: str, limit: int, **start: Any) -> list[int]:
    ids: list[int] = []
    page = timeline.photos(studio, project=project, limit=limit, **start)
    while True:
        ids += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return ids
        page = timeline.photos(studio, project=project, limit=limit, cursor=page["next_cursor"])


# few distinct instants, so that equal dates are common; years far apart and month/day edges
_INSTANTS = [
    datetime(1999, 12, 31, 23, 59, 59),
    datetime(2000, 1, 1),
    datetime(2019, 6, 1),
    datetime(2019, 6, 30, 23, 59, 59, 999999),
    datetime(2019, 7, 1),
    datetime(2020, 2, 29, 12),
    datetime(2024, 12, 31, 8),
]
_photo = st.tuples(st.sampled_from([None, *_INSTANTS]), st.sampled_from([None, *_INSTANTS]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(photos=st.lists(_photo, max_size=40), limit=st.integers(1, 7))
def test_buckets_and_pages_match_brute_force(
    studio: Studio, photos: list[tuple[datetime | None, datetime | None]], limit: int
) -> None:
    project = new_project(studio)
    ids = add(studio, project, photos)
    when = {i: taken or file for i, (taken, file) in zip(ids, photos, strict=True)}
    for by, n in (("year", 4), ("month", 7), ("day", 10)):
        got = timeline.buckets(studio, project=project, by=by)
        brute = Counter(t.isoformat()[:n] for t in when.values() if t is not None)
        assert {g["key"]: g["count"] for g in got["groups"]} == brute
        assert [g["key"] for g in got["groups"]] == sorted(brute, reverse=True)
        assert got["no_date"] == sum(t is None for t in when.values())
        assert got["total"] == len(photos)
    order = expected_order(when)
    assert walk(studio, project, limit) == order  # every photo once, in order, undated last
    sources = {
        item["id"]: item["time_source"]
        for item in timeline.photos(studio, project=project, limit=500)["items"]
    }
    for i, (taken, file) in zip(ids, photos, strict=True):
        assert sources[i] == ("exif" if taken else "file" if file else None)


def test_equal_dates_and_inserts_between_pages(studio: Studio) -> None:
    project = new_project(studio)
    same = datetime(2021, 5, 5, 12)
    ids = add(studio, project, [(same, None)] * 7 + [(datetime(2021, 1, 1), None)] * 3 + [(None, None)] * 2)
    first = timeline.photos(studio, project=project, limit=4)
    seen = [item["id"] for item in first["items"]]
    assert seen == sorted(ids[:7], reverse=True)[:4]
    # photos arrive meanwhile: newer than the cursor (on pages already read), at the cursor's very
    # date (ids above the cursor's: before it too), older, and undated
    newer = add(studio, project, [(datetime(2022, 1, 1), None), (same, None)])
    older = add(studio, project, [(datetime(2020, 1, 1), None), (None, None)])
    rest = walk(studio, project, 3, cursor=first["next_cursor"])
    assert not set(rest) & set(seen) and len(rest) == len(set(rest))
    assert not set(rest) & set(newer)
    assert rest == sorted(ids[:7], reverse=True)[4:] + sorted(ids[7:10], reverse=True) + [
        older[0],
        older[1],
    ] + sorted(ids[10:], reverse=True)


def test_jump_lands_at_the_first_photo_at_or_before_the_date(studio: Studio) -> None:
    project = new_project(studio)
    rng = random.Random(3)
    stamps = [datetime(2015, 1, 1) + timedelta(hours=rng.randrange(24 * 365 * 8)) for _ in range(120)]
    ids = add(studio, project, [(t, None) for t in stamps] + [(None, None)] * 3)
    when: dict[int, datetime | None] = dict(zip(ids, [*stamps, None, None, None], strict=True))
    order = expected_order(when)
    for at, end in (
        ("2019-06", datetime(2019, 7, 1)),
        ("2019", datetime(2020, 1, 1)),
        ("2019-06-15", datetime(2019, 6, 16)),
        ("2016-12", datetime(2017, 1, 1)),
        ("2030", datetime(2031, 1, 1)),  # after every photo: the newest
    ):
        page = timeline.photos(studio, project=project, at=at, limit=5)
        want = next(i for i in order if when[i] is not None and when[i] < end)  # type: ignore[operator]
        assert page["items"][0]["id"] == want, at
        assert [item["id"] for item in page["items"]] == order[order.index(want) : order.index(want) + 5]
    before_all = timeline.photos(studio, project=project, at="1990", limit=5)
    assert [item["id"] for item in before_all["items"]] == order[-3:]  # only the undated are left
    undated = timeline.photos(studio, project=project, at="nodate", limit=2)
    assert [item["id"] for item in undated["items"]] == order[-3:-1]
    assert walk(studio, project, 2, at="nodate") == order[-3:]


def test_no_date_last_and_hidden_photos_left_out(studio: Studio) -> None:
    project = new_project(studio)
    ids = add(
        studio,
        project,
        [(None, None), (datetime(2001, 1, 1), None), (None, datetime(2002, 2, 2)), (None, None)],
    )
    with studio.sessions.begin() as s:
        pid = projects.find_project(s, project).id
        s.add(
            HiddenSample(project_id=pid, sample_id=ids[1], decision_id=None, hidden_at=datetime(2025, 1, 1))
        )
        s.add(
            HiddenSample(project_id=pid, sample_id=ids[3], decision_id=None, hidden_at=datetime(2025, 1, 1))
        )
    assert walk(studio, project, 1) == [ids[2], ids[0]]
    got = timeline.buckets(studio, project=project, by="year")
    assert got["groups"] == [{"key": "2002", "label": "2002", "count": 1}] and got["no_date"] == 1


def test_labels() -> None:
    assert timeline.group_label("2019") == "2019"
    assert timeline.group_label("2019-06") == "June 2019"
    assert timeline.group_label("2019-06-15") == "Saturday 15 June 2019"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "2019-06-01~",
        "~5",
        "2019-13-01T00:00:00~1",
        "2019-06-01T25:00:00~1",
        "nodate~-1",
        "nodate~99999999999999999999",
        "nodate~9223372036854775808",
        "2019-06-01T00:00:00~1~2",
        "NODATE~1",
        "2019-06-01 00:00:00~1",
        "2019-06-01T00:00:00.1234567~1",
        "nodate~1\n",
        "\x00",
    ],
)
def test_bad_cursors(studio: Studio, bad: str) -> None:
    project = new_project(studio)
    with pytest.raises(InvalidInput, match="cursor"):
        timeline.photos(studio, project=project, cursor=bad)


@pytest.mark.parametrize(
    "bad", ["", "19", "2019-6", "2019-13", "2019-02-30", "0000", "2019-06-01T00", "june", "-2019"]
)
def test_bad_dates(studio: Studio, bad: str) -> None:
    project = new_project(studio)
    with pytest.raises(InvalidInput, match="at"):
        timeline.photos(studio, project=project, at=bad)


def test_limits_and_arguments(studio: Studio) -> None:
    project = new_project(studio)
    for limit in (0, -1, timeline.MAX_LIMIT + 1, 10**9):
        with pytest.raises(InvalidInput, match="limit"):
            timeline.photos(studio, project=project, limit=limit)
    with pytest.raises(InvalidInput, match="not both"):
        timeline.photos(studio, project=project, at="2019", cursor="nodate~5")
    with pytest.raises(InvalidInput, match="by"):
        timeline.buckets(studio, project=project, by="week")
    assert timeline.parse_at("9999") is None and timeline.parse_at("9999-12-31") is None
    assert timeline.parse_at("9999-11") == datetime(9999, 12, 1)
    empty = timeline.buckets(studio, project=project)
    assert empty["groups"] == [] and empty["total"] == 0
    assert timeline.photos(studio, project=project)["items"] == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_cursor_text_parses_or_is_refused(text: str) -> None:
    try:
        when, sample_id = timeline.parse_cursor(text)
    except InvalidInput:
        return
    assert 0 <= sample_id <= 2**63 - 1
    assert timeline.make_cursor(when, sample_id) == text or when is not None


def test_cursor_round_trip() -> None:
    for when in (datetime(2019, 6, 1, 12, 0, 1, 5), datetime(2019, 6, 1), None):
        assert timeline.parse_cursor(timeline.make_cursor(when, 42)) == (when, 42)


def test_places_job_fills_earlier_photos(studio: Studio, tmp_path: Path) -> None:
    """Photos from before migration 0020: their file dates come from the library's files or the
    referenced file, their places from GPS; the first timeline view queues the job."""
    project = new_project(studio)
    ref = tmp_path / "ref.jpg"
    ref.write_bytes(b"x")
    stamp = datetime(2018, 3, 4, 5, 6, 7)
    os.utime(ref, (stamp.timestamp(), stamp.timestamp()))
    lib_id, ref_id, copy_id, exif_id = add(
        studio, project, [(None, None)] * 3 + [(datetime(2010, 1, 1), None)]
    )
    lisbon = add(studio, project, [(None, None)], gps_lat=38.72, gps_lon=-9.14)[0]
    # written by a path that did not set the timeline's date
    stray = add(studio, project, [(datetime(2011, 1, 1), None)], sort_time=None)[0]
    with studio.sessions.begin() as s:
        pid = projects.find_project(s, project).id
        s.get(Sample, ref_id).storage = "reference"  # type: ignore[union-attr]
        s.get(Sample, ref_id).path = str(ref)  # type: ignore[union-attr]
        root = LibraryRoot(project_id=pid, path=str(tmp_path))
        s.add(root)
        s.flush()
        s.add(
            LibraryFile(
                root_id=root.id,
                path="a.jpg",
                size=1,
                mtime=datetime(2017, 1, 2).timestamp(),
                sha256="0",
                sample_id=lib_id,
            )
        )
        s.add(TimelinePending(project_id=pid))
    got = timeline.buckets(studio, project=project)
    assert got["no_date"] == 5 and got["backfill"]["kind"] == "places"
    assert timeline.buckets(studio, project=project)["backfill"]["id"] == got["backfill"]["id"]  # queued once
    Worker(studio).run_one(job_id=got["backfill"]["id"])
    job = studio.queue.get(got["backfill"]["id"])
    assert job.status == "succeeded", job.error
    assert job.result["report"]["file_dates"] == 2 and job.result["report"]["named"] == 1
    with studio.sessions() as s:
        rows = {r.id: r for r in s.scalars(select(Sample).where(Sample.project_id == pid))}
        assert s.get(TimelinePending, pid) is None
    assert rows[lib_id].file_time == datetime(2017, 1, 2)
    assert rows[ref_id].file_time == stamp
    assert rows[copy_id].file_time is None  # a copy's original time is not known
    assert rows[exif_id].file_time is None  # has its EXIF date
    assert rows[lisbon].place_city == "Lisbon" and rows[lisbon].place_lookup == places.gazetteer_name()
    assert rows[stray].sort_time == datetime(2011, 1, 1) and rows[lib_id].sort_time == datetime(2017, 1, 2)
    after = timeline.buckets(studio, project=project)
    assert after["backfill"] is None and after["no_date"] == 2
    # a rerun has nothing left to do
    job2 = places.start_places(studio, project=project)
    Worker(studio).run_one(job_id=job2["id"])
    assert studio.queue.get(job2["id"]).result["report"]["looked_up"] == 0  # type: ignore[index]
