"""Smart albums equal a brute-force filter: random synthetic photos (names, tags, dates, cameras,
places, people through faces, hidden duplicates) and random queries in the search syntax; the
album's photos (every page, in order) are what a plain Python filter of the same photos keeps,
newest first — and still are after new photos arrive."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from vistudio.db import Sample, SampleTag
from vistudio.db.duplicates import HiddenSample
from vistudio.db.faces import Face, Person
from vistudio.services import albums, projects, text_index
from vistudio.studio import Studio

WORDS = ["beach", "sunset", "harbor", "snow", "alpha"]
TAGS = ["keep", "trip", "family"]
CAMERAS = [(None, None), ("Fujifilm", "X100V"), ("Canon", "EOS R5"), ("Canon", None)]
PLACES = [
    (None, None, None),
    ("Lisbon", "Portugal", "PT"),
    ("Porto", "Portugal", "PT"),
    ("Oslo", "Norway", "NO"),
]
PEOPLE = ["Alice", "Bob"]
_n = itertools.count()


def _start(d: str) -> tuple[datetime, datetime]:
    parts = [int(p) for p in d.split("-")]
    if len(parts) == 1:
        return datetime(parts[0], 1, 1), datetime(parts[0] + 1, 1, 1)
    if len(parts) == 2:
        y, m = parts
        return datetime(y, m, 1), datetime(y + (m == 12), m % 12 + 1, 1)
    start = datetime(*parts)
    return start, start + timedelta(days=1)


@dataclass
class Photo:
    name: str
    tags: set[str]
    taken: datetime | None
    file_time: datetime | None
    camera: tuple[str | None, str | None]
    place: tuple[str | None, str | None, str | None]
    people: set[str]
    hidden: bool
    id: int = 0
    sort_time: datetime | None = field(init=False)

    def __post_init__(self) -> None:
        self.sort_time = self.taken or self.file_time


DATES = ["2021", "2022-02", "2023-07-01", "2024-12"]
# the edges of the dates the queries name: their first second and the second before
EDGES = [e for d in DATES for e in (_start(d)[0], _start(d)[0] - timedelta(seconds=1))]
moments = (
    st.sampled_from(EDGES)
    | st.sampled_from(EDGES)
    | st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2024, 12, 31, 23, 59, 59)).map(
        lambda d: d.replace(microsecond=0)
    )
)
photos = st.builds(
    Photo,
    name=st.tuples(st.sampled_from(WORDS), st.sampled_from(WORDS)).map(
        lambda w: f"{w[0]}_{w[1]}_{next(_n)}.jpg"
    ),
    tags=st.sets(st.sampled_from(TAGS)),
    taken=st.none() | moments,
    file_time=st.none() | moments,
    camera=st.sampled_from(CAMERAS),
    place=st.sampled_from(PLACES),
    people=st.sets(st.sampled_from(PEOPLE)),
    hidden=st.booleans().map(lambda b: b and next(_n) % 3 == 0),
)
dates = st.sampled_from(DATES)
clauses = st.one_of(
    st.tuples(st.sampled_from(["tag", "-tag"]), st.sampled_from([*TAGS, "nope"])),
    st.tuples(
        st.sampled_from(["camera", "-camera"]), st.sampled_from(["fuji", "X100", "canon", "r5", "nikon"])
    ),
    st.tuples(
        st.sampled_from(["place", "-place"]), st.sampled_from(["lisbon", "Portugal", "NO", "oslo", "madrid"])
    ),
    st.tuples(st.sampled_from(["name", "-name"]), st.sampled_from(["beach", "SUN", "_1", "alpha_a"])),
    st.tuples(st.sampled_from(["after", "before", "on"]), dates),
    st.tuples(st.sampled_from(["person", "-person"]), st.sampled_from(PEOPLE)),
    st.tuples(
        st.just(""),
        st.sampled_from(["beach", "sun*", "trip", "lisbon", "alice", "fujifilm", "portugal", "zzz"]),
    ),
)
queries = st.lists(clauses, min_size=1, max_size=4).map(
    lambda cs: " ".join(f"{k}:{v}" if k else v for k, v in cs)
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _holds(p: Photo, key: str, value: str) -> bool:
    v = value.lower()
    if key == "tag":
        return value in p.tags
    if key == "camera":
        return any(c is not None and v in c.lower() for c in p.camera)
    if key == "place":
        return any(c is not None and c.lower() == v for c in p.place)
    if key == "name":
        return v in p.name.lower()
    if key == "person":
        return value in p.people
    lo, hi = _start(value)
    if p.taken is None:
        return False
    if key == "after":
        return p.taken >= lo
    if key == "before":
        return p.taken < lo
    return lo <= p.taken < hi  # on


def _has_word(p: Photo, word: str) -> bool:
    fields = [p.name, " ".join(p.tags), " ".join(c for c in p.camera if c), " ".join(c for c in p.place if c)]
    fields.append(" ".join(p.people))
    prefix = word.endswith("*")
    w = word.rstrip("*")
    return any((t.startswith(w) if prefix else t == w) for f in fields for t in _words(f))


def brute_force(photos: list[Photo], query: str) -> list[int]:
    """The photos a query keeps, newest first (undated last), by plain Python."""
    kept = []
    for p in photos:
        if p.hidden:
            continue
        ok = True
        for item in query.split(" "):
            if ":" in item:
                key, value = item.split(":", 1)
                neg = key.startswith("-")
                ok = ok and (_holds(p, key.lstrip("-"), value) != neg)
            else:
                ok = ok and _has_word(p, item)
        if ok:
            kept.append(p)
    dated = sorted((p for p in kept if p.sort_time), key=lambda p: (p.sort_time, p.id), reverse=True)
    undated = sorted((p.id for p in kept if not p.sort_time), reverse=True)
    return [p.id for p in dated] + undated


def store(studio: Studio, project: str, batch: list[Photo]) -> None:
    """Insert the photos (tags, faces of their people, hidden marks) and index their text."""
    with studio.sessions.begin() as s:
        pid = projects.find_project(s, project).id
        people = {n: i for i, n in s.execute(select(Person.id, Person.name).where(Person.project_id == pid))}
        for name in PEOPLE:
            if name not in people:
                people[name] = s.execute(
                    insert(Person).values(project_id=pid, name=name).returning(Person.id)
                ).scalar_one()
        for p in batch:
            p.id = s.execute(
                insert(Sample)
                .values(
                    project_id=pid,
                    sha256=f"{next(_n):064x}",
                    name=p.name,
                    storage="copy",
                    path="media/x.jpg",
                    width=4,
                    height=3,
                    format="JPEG",
                    bytes=1,
                    phash="0" * 16,
                    exif={},
                    taken_at=p.taken,
                    file_time=p.file_time,
                    sort_time=p.sort_time,
                    camera_make=p.camera[0],
                    camera_model=p.camera[1],
                    place_city=p.place[0],
                    place_country=p.place[1],
                    place_country_code=p.place[2],
                )
                .returning(Sample.id)
            ).scalar_one()
            for t in p.tags:
                s.add(SampleTag(sample_id=p.id, tag=t))
            for name in p.people:
                s.add(
                    Face(
                        project_id=pid,
                        sample_id=p.id,
                        model="test",
                        x=0,
                        y=0,
                        w=1,
                        h=1,
                        score=1.0,
                        embedding=b"",
                        crop=b"",
                        person_id=people[name],
                        assigned="manual",
                    )
                )
            if p.hidden:
                s.add(HiddenSample(sample_id=p.id, project_id=pid))
        s.flush()
        text_index.sync(s, [p.id for p in batch])


def _album_ids(studio: Studio, project: str, album: int) -> list[int]:
    out, cursor = [], None
    while True:  # small pages: the keyset cursor is walked too
        page = albums.get_album(studio, project=project, album=album, cursor=cursor, limit=3)
        out += [i["id"] for i in page["items"]]
        if page["next_cursor"] is None:
            return out
        cursor = page["next_cursor"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.lists(photos, max_size=14),
    later=st.lists(photos, min_size=1, max_size=6),
    qs=st.lists(queries, min_size=1, max_size=3),
)
def test_smart_albums_equal_a_brute_force_filter(
    studio: Studio, first: list[Photo], later: list[Photo], qs: list[str]
) -> None:
    project = f"lib{next(_n)}"
    projects.create_project(studio, name=project, task="library")
    store(studio, project, first)
    made = [
        albums.create_album(studio, project=project, name=f"q{i}", kind="smart", query=q)["album"]
        for i, q in enumerate(qs)
    ]
    for a, q in zip(made, qs, strict=True):
        expected = brute_force(first, q)
        assert _album_ids(studio, project, a["id"]) == expected, q
        assert albums.get_album(studio, project=project, album=a["id"])["album"]["photos"] == len(expected)
    store(studio, project, later)  # photos arrive: the albums follow without being touched
    everyone = first + later
    listed = {a["id"]: a for a in albums.list_albums(studio, project=project)["items"]}
    for a, q in zip(made, qs, strict=True):
        expected = brute_force(everyone, q)
        assert _album_ids(studio, project, a["id"]) == expected, q
        assert listed[a["id"]]["photos"] == len(expected)
        assert listed[a["id"]]["cover_sample_id"] == (expected[0] if expected else None)
