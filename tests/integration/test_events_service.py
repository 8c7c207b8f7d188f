"""Events of a project through the service, the job, the API and the CLI: a synthetic year of
photos grouped as ``ml/events`` groups them, named from places and dates; merge, split and
rename kept by a recomputation (a merge undoes a split); new photos queue a recomputation; bad
input is a clear error."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from event_factories import year_of_photos
from factories import insert_photos
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.db.duplicates import HiddenSample
from vistudio.jobs.worker import Worker
from vistudio.ml.events import boundary_f1
from vistudio.services import events, projects
from vistudio.studio import Studio


def _add(
    studio: Studio, project: str, photos: list[tuple[float, float | None, float | None, str | None]]
) -> list[int]:
    """Photos given as (epoch seconds, lat, lon, city) → their ids, in order."""
    return insert_photos(
        studio,
        project,
        (
            {
                "taken_at": datetime.fromtimestamp(t, UTC).replace(tzinfo=None),
                "gps_lat": lat,
                "gps_lon": lon,
                "place_city": city,
            }
            for t, lat, lon, city in photos
        ),
    )


def _year(studio: Studio, project: str) -> list[list[int]]:
    """The synthetic year of tests/unit/test_events.py stored as photos; Lisbon's and Porto's
    photos carry their city. Returns the true events as sample ids."""
    truth = year_of_photos(3)
    cities = {(38.72, -9.14): "Lisbon", (41.15, -8.61): "Porto"}

    def city(lat: float | None, lon: float | None) -> str | None:
        if lat is None or lon is None:
            return None
        return next((c for (a, b), c in cities.items() if abs(lat - a) < 0.5 and abs(lon - b) < 0.5), None)

    flat = [p for e in truth for p in e]
    ids = _add(studio, project, [(p.time, p.lat, p.lon, city(p.lat, p.lon)) for p in flat])
    by_photo = dict(zip((p.id for p in flat), ids, strict=True))
    return [[by_photo[p.id] for p in e] for e in truth]


def _groups(studio: Studio, project: str) -> list[list[int]]:
    listed = events.list_events(studio, project=project, limit=500, refresh_if_stale=False)["items"]
    out = []
    for e in sorted(listed, key=lambda e: (e["start"], e["id"])):
        photos = events.get_event(studio, project=project, event=e["id"], limit=500)["photos"]
        out.append([p["sample_id"] for p in photos])
    return out


def test_events_found_named_edited_and_kept(studio: Studio) -> None:
    projects.create_project(studio, name="life", task="library")
    truth = _year(studio, "life")
    listed = events.list_events(studio, project="life")
    assert listed["stale"] and listed["job"]["kind"] == "events" and listed["items"] == []
    assert events.list_events(studio, project="life")["job"]["id"] == listed["job"]["id"]  # queued once
    Worker(studio).run_to_end(listed["job"]["id"])
    found = _groups(studio, "life")
    assert boundary_f1(found, truth) >= 0.95
    after = events.list_events(studio, project="life", limit=500)
    assert not after["stale"] and after["job"] is None and after["total"] == len(found)
    lisbon = [e for e in after["items"] if e["place"] == "Lisbon"]
    assert lisbon and all(e["name"].startswith("Lisbon, ") for e in lisbon)
    assert all(
        e["photos"] == len(g)
        for e, g in zip(sorted(after["items"], key=lambda e: e["start"]), found, strict=False)
    )

    # split the largest event in two, rename the second part, merge two neighbours
    big = max(after["items"], key=lambda e: e["photos"])
    photos = events.get_event(studio, project="life", event=big["id"], limit=500)["photos"]
    at = photos[len(photos) // 2]["sample_id"]
    split = events.split_event(studio, project="life", event=big["id"], at=at)
    assert split["event"]["photos"] + split["new_event"]["photos"] == big["photos"]
    new_id = split["new_event"]["id"]
    events.rename_event(studio, project="life", event=new_id, name="  Second half  ")
    detail = events.get_event(studio, project="life", event=new_id)
    first, second = detail["previous"], detail["next"]
    assert first == big["id"] and second is not None
    small = sorted(after["items"], key=lambda e: e["start"])[:2]
    merged = events.merge_events(studio, project="life", events=[small[0]["id"], small[1]["id"]])
    assert merged["event"]["photos"] == small[0]["photos"] + small[1]["photos"]
    edited = _groups(studio, "life")

    # a recomputation keeps all of it: the split, the merge, the name and the events' ids
    events.compute(studio, projects.get_project(studio, "life")["id"])
    assert _groups(studio, "life") == edited
    assert events.get_event(studio, project="life", event=new_id)["event"]["name"] == "Second half"

    # a merge where there was a split undoes the split; renaming to nothing gives the name back
    events.merge_events(studio, project="life", events=[big["id"], new_id])
    events.compute(studio, projects.get_project(studio, "life")["id"])
    regrouped = {tuple(g) for g in _groups(studio, "life")}
    assert tuple(next(g for g in found if at in g)) in regrouped
    back = events.rename_event(studio, project="life", event=big["id"], name="")["event"]
    assert not back["named"]

    # a photo hidden as a duplicate (the project's photos are as many as before): stale, and
    # after the recomputation in no event
    pid = projects.get_project(studio, "life")["id"]
    gone = edited[0][0]
    with studio.sessions.begin() as s:
        s.add(HiddenSample(project_id=pid, sample_id=gone, decision_id=None))
    assert events.list_events(studio, project="life", refresh_if_stale=False)["stale"]
    events.compute(studio, pid)
    assert gone not in {i for g in _groups(studio, "life") for i in g}
    assert not events.list_events(studio, project="life", refresh_if_stale=False)["stale"]

    # new photos: the list says stale and queues the job
    _add(studio, "life", [(datetime(2024, 6, 1, 12, tzinfo=UTC).timestamp(), None, None, None)])
    assert events.list_events(studio, project="life")["stale"]


def test_bad_requests(studio: Studio) -> None:
    projects.create_project(studio, name="p", task="library")
    t = datetime(2024, 5, 3, 10, tzinfo=UTC).timestamp()
    _add(studio, "p", [(t, None, None, None), (t + 60, None, None, None), (t + 86400 * 3, None, None, None)])
    events.compute(studio, projects.get_project(studio, "p")["id"])
    a, b = sorted(events.list_events(studio, project="p")["items"], key=lambda e: e["start"])
    with pytest.raises(Exception, match="at least two"):
        events.merge_events(studio, project="p", events=[a["id"]])
    with pytest.raises(Exception, match="not found"):
        events.get_event(studio, project="p", event=10**9)
    first = events.get_event(studio, project="p", event=a["id"])["photos"][0]["sample_id"]
    with pytest.raises(Exception, match="already starts"):
        events.split_event(studio, project="p", event=a["id"], at=first)
    with pytest.raises(Exception, match="not in event"):
        events.split_event(studio, project="p", event=b["id"], at=first)
    with pytest.raises(Exception, match="at most"):
        events.rename_event(studio, project="p", event=a["id"], name="x" * 301)
    with pytest.raises(Exception, match="control"):
        events.rename_event(studio, project="p", event=a["id"], name="a\x00b")
    with pytest.raises(Exception, match="limit"):
        events.list_events(studio, project="p", limit=0)


def test_api_and_cli(studio: Studio, capsys: pytest.CaptureFixture[str]) -> None:
    projects.create_project(studio, name="trip", task="library")
    t = datetime(2024, 5, 3, 10, tzinfo=UTC).timestamp()
    _add(
        studio,
        "trip",
        [(t + i * 600, 38.72, -9.14, "Lisbon") for i in range(5)]
        + [(t + 3 * 86400 + i * 600, 52.52, 13.40, "Berlin") for i in range(5)],
    )
    with TestClient(create_app(studio)) as client:
        listed = client.get("/api/v1/projects/trip/events")
        assert listed.status_code == 200 and listed.json()["stale"]
        Worker(studio).run_to_end(listed.json()["job"]["id"])
        items = client.get("/api/v1/projects/trip/events").json()["items"]
        assert [e["name"] for e in items] == ["Berlin, 6 May 2024", "Lisbon, 3 May 2024"]
        one = client.get(f"/api/v1/projects/trip/events/{items[1]['id']}")
        assert one.status_code == 200 and len(one.json()["photos"]) == 5
        renamed = client.patch(f"/api/v1/projects/trip/events/{items[1]['id']}", json={"name": "Alfama"})
        assert renamed.status_code == 200 and renamed.json()["event"]["name"] == "Alfama"
        merged = client.post("/api/v1/projects/trip/events/merge", json={"events": [e["id"] for e in items]})
        assert merged.status_code == 200 and merged.json()["event"]["photos"] == 10
        eid = merged.json()["event"]["id"]
        at = client.get(f"/api/v1/projects/trip/events/{eid}").json()["photos"][5]["sample_id"]
        split = client.post(f"/api/v1/projects/trip/events/{eid}/split", json={"at": at})
        assert split.status_code == 200 and split.json()["new_event"]["photos"] == 5
        assert client.get("/api/v1/projects/trip/events/999999").status_code == 404
        assert client.get("/api/v1/projects/nope/events").status_code == 404
        assert client.get("/api/v1/projects/trip/events", params={"limit": 0}).status_code in (400, 422)
        assert client.post("/api/v1/projects/trip/events/merge", json={"events": "x"}).status_code == 422
        assert client.post(f"/api/v1/projects/trip/events/{eid}/split", json={}).status_code == 422
        assert client.post("/api/v1/projects/trip/events/refresh").status_code == 202

    ws = str(studio.settings.home)
    assert main(["--workspace", ws, "--json", "events", "trip"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["total"] == 2 and {e["name"] for e in out["items"]} == {"Alfama", "Berlin, 6 May 2024"}
    assert main(["--workspace", ws, "events", "trip"]) == 0
    assert "Alfama" in capsys.readouterr().out
    assert main(["--workspace", ws, "--json", "events", "nope"]) != 0
    capsys.readouterr()


def test_the_largest_event_keeps_its_cover(studio: Studio) -> None:
    """An event's cover is one of its photos after every change."""
    projects.create_project(studio, name="c", task="library")
    t = datetime(2024, 1, 1, 9, tzinfo=UTC).timestamp()
    ids = _add(studio, "c", [(t + i * 60, None, None, None) for i in range(6)])
    events.compute(studio, projects.get_project(studio, "c")["id"])
    (e,) = events.list_events(studio, project="c")["items"]
    assert e["cover_sample_id"] in ids
    split = events.split_event(studio, project="c", event=e["id"], at=ids[3])
    for part, members in ((split["event"], ids[:3]), (split["new_event"], ids[3:])):
        assert part["cover_sample_id"] in members
