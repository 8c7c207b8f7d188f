"""Manual albums through the service, the API and the CLI: adding and removing are idempotent,
moves and full orders give the order asked for (renumbering when the gaps run out), the cover
falls back to the first photo, a deleted photo leaves its albums, a deleted album comes back with
its photos; hostile input is a clear 4xx."""

from __future__ import annotations

import itertools
import json
import random
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select, update

from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.db import Sample
from vistudio.db.albums import Album, AlbumPhoto
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services import albums, projects
from vistudio.studio import Studio

_n = itertools.count()


def add_photos(studio: Studio, project: str, n: int, *, start: datetime = datetime(2024, 5, 1)) -> list[int]:
    with studio.sessions.begin() as s:
        pid = projects.find_project(s, project).id
        rows = [
            {
                "project_id": pid,
                "sha256": f"{next(_n):064x}",
                "name": f"p{i}.jpg",
                "storage": "copy",
                "path": "media/x.jpg",
                "width": 4,
                "height": 3,
                "format": "JPEG",
                "bytes": 1,
                "phash": "0" * 16,
                "exif": {},
                "taken_at": start + timedelta(hours=i),
                "sort_time": start + timedelta(hours=i),
            }
            for i in range(n)
        ]
        return list(s.scalars(insert(Sample).returning(Sample.id, sort_by_parameter_order=True), rows))


@pytest.fixture
def lib(studio: Studio) -> tuple[Studio, list[int]]:
    projects.create_project(studio, name="lib", task="library")
    return studio, add_photos(studio, "lib", 8)


def _ids(studio: Studio, album: int) -> list[int]:
    return albums.album_photo_ids(studio, project="lib", album=album)


def test_adding_and_removing_are_idempotent(lib: tuple[Studio, list[int]]) -> None:
    studio, ids = lib
    a = albums.create_album(studio, project="lib", name="Trip")["album"]
    assert a["kind"] == "manual" and a["photos"] == 0 and a["cover_sample_id"] is None
    out = albums.add_photos(studio, project="lib", album=a["id"], sample_ids=[ids[3], ids[1], ids[3]])
    assert (out["added"], out["already"]) == (2, 0)
    again = albums.add_photos(studio, project="lib", album=a["id"], sample_ids=[ids[1], ids[5]])
    assert (again["added"], again["already"]) == (1, 1)
    assert _ids(studio, a["id"]) == [ids[3], ids[1], ids[5]]  # the order they were added in
    assert (
        albums.remove_photos(studio, project="lib", album=a["id"], sample_ids=[ids[1], ids[7]])["removed"]
        == 1
    )
    assert albums.remove_photos(studio, project="lib", album=a["id"], sample_ids=[ids[1]])["removed"] == 0
    assert _ids(studio, a["id"]) == [ids[3], ids[5]]
    with studio.sessions() as s:  # the photos themselves stay
        assert s.get(Sample, ids[1]) is not None


def test_moves_and_full_orders(lib: tuple[Studio, list[int]]) -> None:
    studio, ids = lib
    a = albums.create_album(studio, project="lib", name="Order")["album"]["id"]
    albums.add_photos(studio, project="lib", album=a, sample_ids=ids)
    expected = list(ids)
    rng = random.Random(7)
    for _ in range(60):  # random moves, against a list doing the same
        who = rng.choice(expected)
        before = rng.choice([None, *[i for i in expected if i != who]])
        albums.move_photo(studio, project="lib", album=a, sample_id=who, before=before)
        expected.remove(who)
        expected.insert(len(expected) if before is None else expected.index(before), who)
        assert _ids(studio, a) == expected
    # squeezing one photo before the same neighbour again and again runs out of room: renumbered
    renumbered = False
    for k in range(14):
        who, target = expected[-1 - k % 2], expected[1]
        out = albums.move_photo(studio, project="lib", album=a, sample_id=who, before=target)
        expected.remove(who)
        expected.insert(expected.index(target), who)
        renumbered |= out["renumbered"]
        assert _ids(studio, a) == expected
    assert renumbered
    order = list(reversed(ids))
    albums.set_order(studio, project="lib", album=a, order=order)
    assert _ids(studio, a) == order
    with pytest.raises(InvalidInput) as bad:
        albums.set_order(studio, project="lib", album=a, order=order[:-1])
    assert bad.value.details["missing"] == [order[-1]]
    with pytest.raises(InvalidInput):
        albums.set_order(studio, project="lib", album=a, order=[*order, order[0]])
    with pytest.raises(InvalidInput):
        albums.move_photo(studio, project="lib", album=a, sample_id=ids[0], before=ids[0])


def test_cover_falls_back_to_the_first_photo(lib: tuple[Studio, list[int]]) -> None:
    studio, ids = lib
    a = albums.create_album(studio, project="lib", name="Cover")["album"]["id"]
    albums.add_photos(studio, project="lib", album=a, sample_ids=ids[:4])
    assert albums.get_album(studio, project="lib", album=a)["album"]["cover_sample_id"] == ids[0]
    got = albums.update_album(studio, project="lib", album=a, cover_sample_id=ids[2])["album"]
    assert got["cover_sample_id"] == ids[2] and got["cover_chosen"]
    with pytest.raises(InvalidInput):  # not one of its photos
        albums.update_album(studio, project="lib", album=a, cover_sample_id=ids[6])
    albums.remove_photos(studio, project="lib", album=a, sample_ids=[ids[2]])
    assert albums.get_album(studio, project="lib", album=a)["album"]["cover_sample_id"] == ids[0]
    albums.update_album(studio, project="lib", album=a, cover_sample_id=ids[3])
    with studio.sessions.begin() as s:  # deleting the photo: out of the album, cover back to the first
        s.execute(delete(Sample).where(Sample.id.in_([ids[3], ids[0]])))
    got = albums.get_album(studio, project="lib", album=a)
    assert [i["id"] for i in got["items"]] == [ids[1]] and got["album"]["cover_sample_id"] == ids[1]
    albums.update_album(studio, project="lib", album=a, cover_sample_id=ids[1])
    assert (
        albums.update_album(studio, project="lib", album=a, reset_cover=True)["album"]["cover_chosen"]
        is False
    )


def test_delete_and_restore(lib: tuple[Studio, list[int]]) -> None:
    studio, ids = lib
    a = albums.create_album(studio, project="lib", name="Keep")["album"]["id"]
    albums.add_photos(studio, project="lib", album=a, sample_ids=ids[:3])
    out = albums.delete_album(studio, project="lib", album=a)
    assert out["undo"] == {"restore": a}
    assert albums.list_albums(studio, project="lib")["total"] == 0
    with pytest.raises(NotFound):
        albums.get_album(studio, project="lib", album=a)
    albums.create_album(studio, project="lib", name="Keep")  # its name is free meanwhile
    back = albums.restore_album(studio, project="lib", album=a)
    assert back["renamed"] and back["album"]["name"] == "Keep (restored)"
    assert _ids(studio, a) == ids[:3]
    with pytest.raises(NotFound):  # not deleted any more
        albums.restore_album(studio, project="lib", album=a)
    # albums deleted long ago are purged by the next delete
    albums.delete_album(studio, project="lib", album=a)
    with studio.sessions.begin() as s:
        s.execute(update(Album).where(Album.id == a).values(deleted_at=datetime(2000, 1, 1)))
    other = albums.create_album(studio, project="lib", name="Other")["album"]["id"]
    albums.delete_album(studio, project="lib", album=other)
    with studio.sessions() as s:
        assert (
            s.get(Album, a) is None and s.scalar(select(AlbumPhoto).where(AlbumPhoto.album_id == a)) is None
        )


def test_names_kinds_and_other_projects(lib: tuple[Studio, list[int]]) -> None:
    studio, ids = lib
    projects.create_project(studio, name="other", task="library")
    theirs = add_photos(studio, "other", 2)
    a = albums.create_album(studio, project="lib", name="  Mine  ")["album"]
    assert a["name"] == "Mine"
    with pytest.raises(Conflict):
        albums.create_album(studio, project="lib", name="Mine")
    albums.create_album(studio, project="other", name="Mine")  # per project
    for bad in ("", "   ", "x" * 201, "a\x00b", "tab\there"):
        with pytest.raises(InvalidInput):
            albums.create_album(studio, project="lib", name=bad)
    with pytest.raises(InvalidInput) as refused:
        albums.add_photos(studio, project="lib", album=a["id"], sample_ids=[ids[0], theirs[0]])
    assert refused.value.details["missing"] == [theirs[0]]
    assert _ids(studio, a["id"]) == []  # all or nothing
    with pytest.raises(NotFound):  # another project's album
        albums.get_album(studio, project="other", album=a["id"])
    smart = albums.create_album(studio, project="lib", name="S", kind="smart", query="tag:x")["album"]["id"]
    with pytest.raises(Conflict):
        albums.add_photos(studio, project="lib", album=smart, sample_ids=[ids[0]])
    with pytest.raises(Conflict):
        albums.update_album(studio, project="lib", album=a["id"], query="tag:x")
    with pytest.raises(InvalidInput) as syntax:
        albums.create_album(studio, project="lib", name="T", kind="smart", query='tag:x "open')
    assert syntax.value.details["column"] == 7
    with pytest.raises(InvalidInput):  # an unknown person
        albums.create_album(studio, project="lib", name="T", kind="smart", query="person:Nobody")
    with pytest.raises(InvalidInput):
        albums.create_album(studio, project="lib", name="T", kind="manual", query="tag:x")


def test_smart_query_change_moves_the_cover(lib: tuple[Studio, list[int]]) -> None:
    studio, ids = lib
    a = albums.create_album(studio, project="lib", name="All of May", kind="smart", query="on:2024-05")[
        "album"
    ]
    assert a["photos"] == 8 and a["cover_sample_id"] == ids[-1]  # newest first
    albums.update_album(studio, project="lib", album=a["id"], cover_sample_id=ids[2])
    assert albums.get_album(studio, project="lib", album=a["id"])["album"]["cover_sample_id"] == ids[2]
    with pytest.raises(InvalidInput):
        albums.update_album(studio, project="lib", album=a["id"], query="after:2024-05-01T")
    got = albums.update_album(studio, project="lib", album=a["id"], query="-name:p2.jpg")["album"]
    assert got["photos"] == 7 and got["cover_sample_id"] == ids[-1] and not got["cover_chosen"]


# --- API and CLI ----------------------------------------------------------------------------------


def test_api_round_trip_and_hostile_input(lib: tuple[Studio, list[int]]) -> None:
    studio, ids = lib
    projects.create_project(studio, name="other", task="library")
    theirs = add_photos(studio, "other", 1)
    c = TestClient(create_app(studio))
    base = "/api/v1/projects/lib/albums"
    r = c.post(base, json={"name": "Summer"})
    assert r.status_code == 201
    aid = r.json()["album"]["id"]
    assert c.post(base, json={"name": "Summer"}).status_code == 409
    big = c.post(base, json={"name": "x" * 10_000})
    assert big.status_code == 422 and big.json()["error"]["code"]
    bad = c.post(base, json={"name": "S", "kind": "smart", "query": "tag:a (column"})
    assert bad.status_code == 201  # "(column" is a word
    bad = c.post(base, json={"name": "S2", "kind": "smart", "query": "colour:red"})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["column"] == 1
    assert c.post(base, json={"name": "S3", "kind": "weird"}).status_code == 422
    assert c.get(f"{base}/999999").status_code == 404
    assert c.get(f"{base}/0").status_code == 422
    assert c.get(f"{base}/{2**70}").status_code == 422
    assert c.get("/api/v1/projects/nope/albums").status_code == 404
    r = c.post(f"{base}/{aid}/photos", json={"add": ids[:3]})
    assert r.status_code == 200 and r.json()["added"] == 3
    r = c.post(f"{base}/{aid}/photos", json={"add": [theirs[0]]})
    assert r.status_code == 422 and r.json()["error"]["details"]["missing"] == theirs
    assert c.post(f"{base}/{aid}/photos", json={"add": [1], "remove": [2]}).status_code == 422
    assert c.post(f"{base}/{aid}/photos", json={}).status_code == 422
    assert c.post(f"{base}/{aid}/photos", json={"add": [-1]}).status_code == 422
    assert c.post(f"{base}/{aid}/photos", json={"add": list(range(1, 10_002))}).status_code == 422
    r = c.post(f"{base}/{aid}/order", json={"sample_id": ids[2], "before": ids[0]})
    assert r.status_code == 200
    page = c.get(f"{base}/{aid}", params={"limit": 2}).json()
    assert [i["id"] for i in page["items"]] == [ids[2], ids[0]] and page["next_cursor"]
    rest = c.get(f"{base}/{aid}", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [i["id"] for i in rest["items"]] == [ids[1]] and rest["next_cursor"] is None
    assert c.get(f"{base}/{aid}", params={"cursor": "garbage"}).status_code == 422
    assert c.post(f"{base}/{aid}/order", json={"order": [ids[0]]}).status_code == 422
    assert c.post(f"{base}/{aid}/order", json={}).status_code == 422
    r = c.patch(f"{base}/{aid}", json={"cover_sample_id": ids[1], "name": "Summer 24"})
    assert r.json()["album"]["cover_sample_id"] == ids[1] and r.json()["album"]["name"] == "Summer 24"
    r = c.patch(f"{base}/{aid}", json={"cover_sample_id": None})
    assert r.json()["album"]["cover_sample_id"] == ids[2]  # the first again
    assert c.patch(f"{base}/{aid}", json={"name": "S"}).status_code == 409
    listed = c.get(base).json()
    assert [a["name"] for a in listed["items"]] == ["S", "Summer 24"] and listed["total"] == 2
    r = c.delete(f"{base}/{aid}")
    assert r.status_code == 200 and r.json()["undo"] == {"restore": aid}
    assert c.delete(f"{base}/{aid}").status_code == 404
    r = c.post(f"{base}/restore", json={"id": aid})
    assert r.status_code == 200 and r.json()["album"]["photos"] == 3
    assert c.post(f"{base}/restore", json={"id": aid}).status_code == 404
    # another project's album is not found through this project
    other = c.post("/api/v1/projects/other/albums", json={"name": "Theirs"}).json()["album"]["id"]
    assert c.get(f"{base}/{other}").status_code == 404
    assert c.post(f"{base}/{other}/photos", json={"add": [ids[0]]}).status_code == 404


def test_cli(lib: tuple[Studio, list[int]], capsys: pytest.CaptureFixture[str]) -> None:
    studio, ids = lib
    ws = ["--workspace", str(studio.settings.home)]

    def run(*args: str) -> tuple[int, dict]:
        code = main([*ws, "--json", *args])
        out = capsys.readouterr().out
        return code, json.loads(out)

    code, made = run("albums", "lib", "--create", "Best")
    assert code == 0 and made["album"]["kind"] == "manual"
    aid = str(made["album"]["id"])
    code, out = run("albums", "lib", "--add", aid, "--photos", f"{ids[0]},{ids[1]}")
    assert code == 0 and out["added"] == 2
    code, out = run("albums", "lib", "--move", aid, "--photo", str(ids[1]), "--before", str(ids[0]))
    assert code == 0
    code, out = run("albums", "lib", "--show", aid)
    assert [i["id"] for i in out["items"]] == [ids[1], ids[0]]
    code, out = run("albums", "lib", "--create", "May", "--query", "on:2024-05 -name:p0")
    assert code == 0 and out["album"]["photos"] == 7
    code, out = run("albums", "lib", "--create", "Bad", "--query", 'tag:"x')
    assert code == 1 and out["error"]["details"]["column"] == 5
    code, out = run("albums", "lib", "--add", aid, "--photos", "1,x")
    assert code != 0 and "error" in out
    code, out = run("albums", "lib", "--delete", aid)
    assert out["undo"]["restore"] == int(aid)
    code, out = run("albums", "lib", "--restore", aid)
    assert code == 0 and out["album"]["photos"] == 2
    code, out = run("albums", "lib")
    assert [a["name"] for a in out["items"]] == ["Best", "May"]
    code, out = run("albums", "lib", "--show", "424242")
    assert code == 1 and out["error"]["code"] == "not_found"
    assert main([*ws, "albums", "lib", "--show", aid]) == 0  # the table
    assert "Best" in capsys.readouterr().out
