"""The query syntax's filters select exactly what a brute-force Python filter over the same
synthetic samples selects (Hypothesis over random samples with tags, labels, dates, cameras, lenses,
names and people, and random queries over them), in the listing's order (taken desc, then id)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vistudio.config import Settings
from vistudio.db import Annotation, LabelClass, Sample, SampleTag
from vistudio.db.faces import Face, Person
from vistudio.query_syntax import Filter, Query, date_range
from vistudio.services import projects, search, text_index
from vistudio.studio import Studio, open_studio

TAGS = ["keep", "hidden", "Beach", "two words"]
LABELS = ["cat", "dog"]
PEOPLE = ["Alice", "Bob", "Zoë Ålander"]
MAKES = ["FUJIFILM", "Canon", None]
MODELS = ["X100V", "EOS R5", None]
LENSES = ["XF23mmF2", "RF 50mm", None]
NAMES = ["img_0001.jpg", "trip/IMG_0042.JPG", "Lisbon 2023/beach.png", "x.png"]


@dataclass
class Fake:
    name: str
    taken_at: datetime | None
    make: str | None
    model: str | None
    lens: str | None
    tags: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)


_fake = st.builds(
    Fake,
    name=st.sampled_from(NAMES),
    taken_at=st.none() | st.datetimes(min_value=datetime(2022, 1, 1), max_value=datetime(2024, 12, 31)),
    make=st.sampled_from(MAKES),
    model=st.sampled_from(MODELS),
    lens=st.sampled_from(LENSES),
    tags=st.sets(st.sampled_from(TAGS)),
    labels=st.sets(st.sampled_from(LABELS)),
    people=st.sets(st.sampled_from(PEOPLE)),
)
_months = st.sampled_from(
    ["2022", "2023", "2024", "2023-05", "2023-09", "2024-02", "2023-05-14", "2022-12-31"]
)
_filter = st.one_of(
    st.builds(Filter, st.just("tag"), st.sampled_from(TAGS), st.booleans()),
    st.builds(Filter, st.just("label"), st.sampled_from(LABELS), st.booleans()),
    st.builds(Filter, st.just("person"), st.sampled_from(PEOPLE), st.booleans()),
    st.builds(
        Filter, st.just("camera"), st.sampled_from(["x100", "EOS", "fuji", "canon r", "V"]), st.booleans()
    ),
    st.builds(Filter, st.just("lens"), st.sampled_from(["xf", "50MM", "mm"]), st.booleans()),
    st.builds(
        Filter,
        st.just("name"),
        st.sampled_from(["img", "TRIP/", "lisbon 2023", "_0", "%", "x"]),
        st.booleans(),
    ),
    st.builds(Filter, st.sampled_from(["after", "before", "on"]), _months, st.just(False)),
)


def _has(haystacks: list[str | None], needle: str) -> bool:
    """Contains, ignoring the case of ASCII letters (what SQL lower() does on both databases)."""
    return any(needle.lower() in (h or "").lower() for h in haystacks)


def _passes(x: Fake, q: Query) -> bool:
    for f in q.filters:
        if f.key in ("after", "before", "on"):
            continue
        hit = {
            "tag": lambda f=f: f.value in x.tags,
            "label": lambda f=f: f.value in x.labels,
            "person": lambda f=f: f.value in x.people,
            "camera": lambda f=f: _has([x.make, x.model], f.value),
            "lens": lambda f=f: _has([x.lens], f.value),
            "name": lambda f=f: _has([x.name], f.value),
        }[f.key]()
        if hit == f.negated:
            return False
    start, end = date_range(q)
    if start is not None or end is not None:
        if x.taken_at is None:
            return False
        if start is not None and x.taken_at < start:
            return False
        if end is not None and x.taken_at >= end:
            return False
    return True


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    home = tmp_path_factory.mktemp("filters")
    s = open_studio(Settings(home=Path(home) / "ws", offline=True))
    yield s
    s.close()


_counter = itertools.count()


def _make(studio: Studio, fakes: list[Fake]) -> tuple[str, list[int]]:
    name = f"p{next(_counter)}"
    project_id = projects.create_project(studio, name=name, task="classification")["id"]
    ids = []
    with studio.sessions.begin() as s:
        classes = {c: LabelClass(project_id=project_id, name=c, ordinal=i) for i, c in enumerate(LABELS)}
        people = {p: Person(project_id=project_id, name=p) for p in PEOPLE}
        s.add_all([*classes.values(), *people.values()])
        s.flush()
        for n, x in enumerate(fakes):
            row = Sample(
                project_id=project_id,
                sha256=f"{n:064x}",
                name=x.name,
                storage="copy",
                path=f"media/{n}.png",
                width=8,
                height=8,
                format="png",
                bytes=1,
                taken_at=x.taken_at,
                camera_make=x.make,
                camera_model=x.model,
                lens=x.lens,
                phash="0" * 16,
                exif={},
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
            s.add_all(SampleTag(sample_id=row.id, tag=t) for t in x.tags)
            s.add_all(Annotation(sample_id=row.id, kind="label", class_id=classes[c].id) for c in x.labels)
            s.add_all(
                Face(
                    project_id=project_id,
                    sample_id=row.id,
                    model="test",
                    x=0.1,
                    y=0.1,
                    w=0.2,
                    h=0.2,
                    score=0.9,
                    embedding=b"",
                    crop=b"",
                    person_id=people[p].id,
                )
                for p in x.people
            )
        text_index.sync(s, ids)
    return name, ids


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(_fake, max_size=25), st.lists(st.lists(_filter, min_size=1, max_size=4), min_size=1, max_size=5)
)
def test_filters_select_what_a_brute_force_filter_selects(
    shared: Studio, fakes: list[Fake], queries: list[list[Filter]]
) -> None:
    name, ids = _make(shared, fakes)
    for filters in queries:
        q = Query((), tuple(filters))
        out = search.search(shared, project=name, query=str(q), k=500)
        expected = [i for i, x in zip(ids, fakes, strict=True) if _passes(x, q)]
        # the listing's order: newest taken first, undated last, then by id
        taken = {i: x.taken_at for i, x in zip(ids, fakes, strict=True)}
        expected.sort(key=lambda i: (taken[i] is None, -(taken[i] or datetime(2000, 1, 1)).timestamp(), i))
        assert out["mode"] == "filters" and out["matched"] == len(expected), str(q)
        assert [i["sample_id"] for i in out["items"]] == expected, str(q)


def test_words_with_filters_search_only_the_filtered_photos(shared: Studio) -> None:
    fakes = [
        Fake("beach.png", datetime(2023, 6, 1), None, None, None, tags={"keep"}),
        Fake("beach2.png", datetime(2023, 6, 2), None, None, None, tags={"hidden"}),
        Fake("city.png", datetime(2023, 6, 3), None, None, None, tags={"keep"}),
    ]
    name, ids = _make(shared, fakes)
    out = search.search(shared, project=name, query="beach* tag:keep -tag:hidden after:2023-06")
    assert [i["sample_id"] for i in out["items"]] == [ids[0]]
    match = out["items"][0]["match"]
    assert match["words"] == {"beach*": ["name"]} and match["text_rank"] == 1
    assert match["filters"] == ["tag=keep", "not tag=hidden", "taken after 2023-06"]
    assert "beach* in name" in out["items"][0]["why"] and "not tag=hidden" in out["items"][0]["why"]


def test_places_are_words_and_a_filter(shared: Studio) -> None:
    name, ids = _make(shared, [Fake(f"{n}.jpg", None, None, None, None) for n in range(3)])
    with shared.sessions.begin() as s:
        for sid, (city, country) in zip(
            ids, [("Lisboa", "Portugal"), ("Porto", "Portugal"), ("Málaga", "Spain")], strict=True
        ):
            row = s.get_one(Sample, sid)
            row.place_city, row.place_country = city, country
        s.flush()
        text_index.sync(s, ids)

    def found(query: str) -> list[int]:
        return sorted(i["sample_id"] for i in search.search(shared, project=name, query=query)["items"])

    assert found("place:portugal") == found("portugal") == ids[:2]
    assert found("place:LISBOA") == found("lisboa") == [ids[0]]
    assert found("malaga") == [ids[2]]  # the words fold diacritics
    assert found("-place:Portugal") == [ids[2]]
    assert found("place:Lis") == []  # the filter is the whole name
