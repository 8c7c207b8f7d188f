"""The demo's photo project is a real library: a folder registered and scanned in place, with EXIF
dates and positions, and true duplicates that the Duplicates page groups (and nothing else)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vistudio.config import Settings
from vistudio.errors import InvalidInput, VistudioError
from vistudio.ingest.probe import probe_image
from vistudio.services import demo, duplicates, library, projects, samples
from vistudio.studio import Studio, open_studio


@pytest.fixture
def photo_demo(studio: Studio) -> dict[str, Any]:
    # The digits project is there already, so the demo builds only what is missing: the photos
    # (importing 1,797 digits would only slow this test down).
    projects.create_project(studio, name=demo.DIGITS, task="classification")
    return demo.create_demo(studio)


def _paths_by_sample(studio: Studio) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for f in library.list_files(studio, project=demo.PHOTOS, limit=500)["items"]:
        out.setdefault(f["sample_id"], set()).add(f["path"])
    return out


def test_the_photo_project_is_a_library_scanned_in_place(studio: Studio, photo_demo: dict[str, Any]) -> None:
    assert photo_demo["created"] is True and list(photo_demo["reports"]) == [demo.PHOTOS]
    project = projects.get_project(studio, demo.PHOTOS)
    assert project["task"] == "library"
    roots = library.list_roots(studio, project=demo.PHOTOS)["items"]
    folder = studio.home / demo.PHOTO_FOLDER
    assert [r["path"] for r in roots] == [str(folder)] and roots[0]["problem"] is None
    files = library.list_files(studio, project=demo.PHOTOS, limit=500)["items"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")}
    assert {f["path"] for f in files} == on_disk and len(on_disk) >= 20
    assert all(f["error"] is None for f in files)
    listed = samples.list_samples(studio, project=demo.PHOTOS, limit=500)["items"]
    assert len(listed) == len(on_disk) - 1  # the backup copy has the same bytes as its source
    assert {s["storage"] for s in listed} == {"reference"}  # nothing copied into the workspace


def test_exif_dates_and_positions_read_back_as_written(studio: Studio, tmp_path: Path) -> None:
    written = demo.write_photos(tmp_path / "photos")
    dated = {p: m for p, m in written["photos"].items() if m["taken_at"] is not None}
    located = {p: m for p, m in written["photos"].items() if m["gps"] is not None}
    assert len(dated) > len(written["photos"]) / 2 and 0 < len(located) < len(dated)
    for rel, meta in written["photos"].items():
        probe = probe_image(tmp_path / "photos" / rel)
        assert probe.taken_at == meta["taken_at"], rel
        if meta["gps"] is None:
            assert probe.gps_lat is None and probe.gps_lon is None, rel
        else:
            assert probe.gps_lat == pytest.approx(meta["gps"][0], abs=1e-5), rel
            assert probe.gps_lon == pytest.approx(meta["gps"][1], abs=1e-5), rel
    # the Lisbon trip is west of Greenwich, Kyoto east of it: both signs come back
    assert any(m["gps"][1] < 0 for m in located.values()) and any(m["gps"][1] > 0 for m in located.values())


def test_the_samples_carry_the_dates_and_positions(studio: Studio, photo_demo: dict[str, Any]) -> None:
    by_path = {path: sid for sid, paths in _paths_by_sample(studio).items() for path in paths}
    astronaut = samples.get_sample(studio, by_path["2019-08 Lisbon/astronaut.jpg"])
    assert astronaut["taken_at"].startswith("2019-08-14T10:32:05")
    assert astronaut["gps"] == pytest.approx({"lat": 38.7139, "lon": -9.1394}, abs=1e-5)
    scan = samples.get_sample(studio, by_path["Scans/text.jpg"])
    assert scan["taken_at"] is None and scan["gps"] is None


@pytest.mark.parametrize("bits", [4, 6, 8, 10])
def test_duplicates_finds_the_true_duplicates_and_only_them(
    studio: Studio, photo_demo: dict[str, Any], bits: int
) -> None:
    paths = _paths_by_sample(studio)
    out = duplicates.list_groups(studio, project=demo.PHOTOS, level="perceptual", threshold=bits, limit=None)
    assert all(g["size"] == len(g["samples"]) for g in out["items"])  # small groups: all listed
    found = {frozenset(p for e in g["samples"] for p in paths[e["id"]]) for g in out["items"]}
    assert found == {
        frozenset({"2019-08 Lisbon/coffee.jpg", "Edited/coffee-small.jpg"}),
        frozenset({"2019-08 Lisbon/chelsea.jpg", "Edited/chelsea-rotated.jpg"}),
        frozenset({"2019-08 Lisbon/astronaut.jpg", "Edited/astronaut-web.jpg"}),
        frozenset({"2019-08 Lisbon/rocket.jpg", "Edited/rocket-mirrored.jpg"}),
    }
    # the original, larger photo is the suggested keeper of its resized copy
    resized = next(g for g in out["items"] if any("coffee-small" in e["path"] for e in g["samples"]))
    assert paths[resized["keeper"]] == {"2019-08 Lisbon/coffee.jpg"}
    # the backup has the same bytes as its source: one sample, two files, the one exact group
    exact = duplicates.list_groups(studio, project=demo.PHOTOS, level="exact", limit=None)
    assert exact["total"] == 1
    assert {Path(e["path"]).name for e in exact["items"][0]["samples"]} == {"camera.jpg", "IMG_0412.jpg"}


def test_the_demo_is_idempotent_and_rebuilds_an_older_photo_project(
    studio: Studio, photo_demo: dict[str, Any]
) -> None:
    before = projects.list_projects(studio)["items"]
    again = demo.create_demo(studio)
    assert again["created"] is False
    assert projects.list_projects(studio)["items"] == before
    # an older demo imported copies of the photos, with no folder: the next run makes it a library
    projects.delete_project(studio, demo.PHOTOS)
    projects.create_project(studio, name=demo.PHOTOS, task="library")
    rebuilt = demo.create_demo(studio)
    assert rebuilt["created"] is True and list(rebuilt["reports"]) == [demo.PHOTOS]
    assert library.list_roots(studio, project=demo.PHOTOS)["total"] == 1
    assert [p["name"] for p in projects.list_projects(studio)["items"]] == [demo.DIGITS, demo.PHOTOS]
    # a folder the user added to the demo library is the user's: the demo leaves the project alone
    mine = studio.home.parent / "my-photos"
    mine.mkdir()
    library.add_roots(studio, project=demo.PHOTOS, paths=[mine])
    assert demo.create_demo(studio)["created"] is False
    assert library.list_roots(studio, project=demo.PHOTOS)["total"] == 2


def test_a_rebuild_never_deletes_a_folder_another_project_scans(
    studio: Studio, photo_demo: dict[str, Any]
) -> None:
    folder = Path(photo_demo["folder"])
    projects.create_project(studio, name="mine", task="library")
    library.add_roots(studio, project="mine", paths=[folder])
    with pytest.raises(VistudioError, match="library folder of mine"):
        demo.create_demo(studio, force=True)
    assert any(folder.iterdir())  # the photos are still there


def test_only_vistudio_folders_of_the_workspace_are_refused_as_library_folders(tmp_path: Path) -> None:
    studio = open_studio(Settings(home=tmp_path / "ws"))
    try:
        projects.create_project(studio, name="lib", task="library")
        for own in (studio.home, studio.home / "thumbs", studio.home / "media"):
            with pytest.raises(InvalidInput, match="workspace"):
                library.add_roots(studio, project="lib", paths=[own])
        photos = studio.home / "my-photos"
        photos.mkdir()
        assert library.add_roots(studio, project="lib", paths=[photos])["added"][0]["path"] == str(photos)
    finally:
        studio.close()
