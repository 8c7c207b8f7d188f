"""Videos in a library: a scan turns their keyframes into samples (video_id, video_time, a poster),
a rescan does nothing, a changed video is replaced, a removed one leaves, hostile files are
per-file errors; keyframes are embedded and found by search; the API and CLI list them and serve
the file with Range requests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from embed_factories import run_embedding, with_embed
from factories import draw_image
from video_factories import pattern, scenes_video, solid, write_video
from vistudio.api.app import create_app
from vistudio.config import Settings
from vistudio.db import Artifact, Sample
from vistudio.db.videos import Video
from vistudio.jobs.worker import Worker
from vistudio.services import library, projects, samples, search, videos
from vistudio.studio import Studio, open_studio


def scan(studio: Studio, project: str = "lib") -> dict[str, Any]:
    job = library.start_scan(studio, project=project)
    Worker(studio).run_one(job_id=job["id"])
    out = library.scan_report(studio, job["id"])
    assert out["job"]["status"] == "succeeded", out["job"]
    return out["report"]  # type: ignore[no-any-return]


def keyframes(studio: Studio) -> dict[str, list[tuple[float, int]]]:
    """``{video path: [(time, sample id)]}`` from the samples table."""
    out: dict[str, list[tuple[float, int]]] = {}
    with studio.sessions() as s:
        rows = s.execute(
            select(Video.path, Sample.video_time, Sample.id)
            .join(Sample, Sample.video_id == Video.id)
            .order_by(Video.path, Sample.video_time)
        )
        for path, t, sid in rows:
            out.setdefault(path, []).append((t, sid))
    return out


def n(studio: Studio, model: Any) -> int:
    with studio.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def blobs(studio: Studio) -> set[tuple[str, str]]:
    with studio.sessions() as s:
        return {(a.kind, a.sha256) for a in s.scalars(select(Artifact))}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    scenes_video(root / "clip.mp4")  # keyframes at 0, 2.0, 4.5, 10.0 (11.0 is too close to 10.0)
    (root / "trip").mkdir()
    write_video(root / "trip" / "beach.webm", solid((20, 90, 200), 25) + pattern(5, 15), codec="libvpx-vp9")
    draw_image(root / "photo.png", seed=3)
    return root


@pytest.fixture
def lib(studio: Studio, folder: Path) -> Path:
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(folder)])
    return folder


def test_scan_makes_keyframe_samples_with_a_poster(studio: Studio, lib: Path) -> None:
    report = scan(studio)
    assert report["added"] == 3 and report["failed_count"] == 0  # the photo and 2 videos
    frames = keyframes(studio)
    assert {p: [t for t, _ in v] for p, v in frames.items()} == {
        "clip.mp4": [0.0, 2.0, 4.5, 10.0],
        "trip/beach.webm": [0.0, 2.5],
    }
    assert report["samples_added"] == 7
    listed = videos.list_videos(studio, project="lib")
    assert listed["total"] == 2
    clip = next(v for v in listed["items"] if v["path"] == "clip.mp4")
    assert clip["duration"] == pytest.approx(12.0, abs=0.15) and clip["fps"] == 10 and clip["frames"] == 120
    assert (clip["width"], clip["height"], clip["keyframes"], clip["cuts"]) == (64, 48, 4, 4)
    assert clip["created_source"] == "file" and clip["size"] == (lib / "clip.mp4").stat().st_size
    assert clip["poster_sample_id"] == frames["clip.mp4"][0][1]
    with studio.sessions() as s:
        first = s.get(Sample, frames["clip.mp4"][1][1])
        assert first is not None
        assert (first.name, first.storage, first.format, first.video_time) == (
            "clip.mp4 @ 00:02.0",
            "copy",
            "JPEG",
            2.0,
        )
        assert (studio.home / first.path).is_file()
        # on the timeline like any photo: its date is the video's (no container date: the file's)
        assert first.sort_time is not None and first.sort_time == (first.taken_at or first.file_time)
    # the grid: the photo and one tile per video (its poster); the keyframes are in its filmstrip
    grid = samples.list_samples(studio, project="lib", limit=100)
    assert grid["total"] == 3
    assert {it["video_id"] for it in grid["items"]} == {
        None,
        clip["id"],
        next(v["id"] for v in listed["items"] if v["path"] != "clip.mp4"),
    }
    detail = videos.get_video(studio, clip["id"])
    assert [k["label"] for k in detail["keyframe_items"]] == ["00:00.0", "00:02.0", "00:04.5", "00:10.0"]
    assert detail["keyframe_items"][0]["poster"]


def test_rescan_changed_removed_and_copied_videos(studio: Studio, lib: Path) -> None:
    scan(studio)
    before = keyframes(studio)
    kept_blobs = blobs(studio)
    again = scan(studio)
    assert again["samples_added"] == again["samples_removed"] == 0 and again["unchanged"] == 3
    assert keyframes(studio) == before

    # changed bytes: the old keyframes leave (their blobs too), the new ones come
    write_video(lib / "clip.mp4", solid((250, 250, 0), 30) + solid((0, 0, 0), 30))
    report = scan(studio)
    assert report["updated"] == 1 and report["samples_removed"] == 4 and report["samples_added"] == 2
    after = keyframes(studio)
    assert [t for t, _ in after["clip.mp4"]] == [0.0, 3.0]
    assert not {sid for _, sid in before["clip.mp4"]} & {sid for _, sid in after["clip.mp4"]}
    assert after["trip/beach.webm"] == before["trip/beach.webm"]
    assert report["blobs_removed"] == 8  # 4 JPEGs and their thumbnails
    assert len(blobs(studio) - kept_blobs) == 4
    # the poster is not the black frame when there is another
    clip = next(v for v in videos.list_videos(studio, project="lib")["items"] if v["path"] == "clip.mp4")
    assert clip["poster_sample_id"] == after["clip.mp4"][0][1]

    # a copy shares the keyframes of its original; when the original goes, the copy keeps them
    shutil.copy(lib / "trip" / "beach.webm", lib / "beach-copy.webm")
    report = scan(studio)
    assert report["added"] == 1 and report["samples_added"] == 0
    copy = next(
        v for v in videos.list_videos(studio, project="lib")["items"] if v["path"] == "beach-copy.webm"
    )
    assert copy["poster_sample_id"] == before["trip/beach.webm"][0][1] and copy["keyframes"] == 2
    (lib / "trip" / "beach.webm").unlink()
    report = scan(studio)
    assert report["removed"] == 1 and report["samples_removed"] == 0
    assert keyframes(studio) == {"beach-copy.webm": before["trip/beach.webm"], "clip.mp4": after["clip.mp4"]}
    (lib / "beach-copy.webm").unlink()
    report = scan(studio)
    assert report["removed"] == 1 and report["samples_removed"] == 2
    assert set(keyframes(studio)) == {"clip.mp4"}

    # unregistering the folder takes its videos and keyframes with it
    out = library.remove_root(studio, project="lib", root=str(lib))
    assert out["samples_removed"] == 3  # the photo and the 2 keyframes
    assert n(studio, Video) == 0 and n(studio, Sample) == 0


def test_hostile_videos_are_per_file_errors_and_the_scan_goes_on(studio: Studio, lib: Path) -> None:
    (lib / "empty.mov").write_bytes(b"")
    (lib / "photo-really.mp4").write_bytes((lib / "photo.png").read_bytes())
    (lib / "notes.mkv").write_text("not a video\n")
    (lib / "cut.mp4").write_bytes((lib / "clip.mp4").read_bytes()[:3000])
    (lib / ".hidden.mp4").write_bytes((lib / "clip.mp4").read_bytes())
    outside = lib.parent / "outside.mp4"
    shutil.copy(lib / "clip.mp4", outside)
    (lib / "link.mp4").symlink_to(outside)
    report = scan(studio)
    reasons = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert reasons == {
        "empty.mov": "empty file (0 bytes)",
        "photo-really.mp4": "not a video: the file is a PNG image",
        "notes.mkv": "not a video: the file is a text file",
        "cut.mp4": reasons["cut.mp4"],
        "link.mp4": "symlink points outside the library folder or nowhere",
    }
    assert reasons["cut.mp4"].startswith("cannot read video")
    assert set(keyframes(studio)) == {"clip.mp4", "trip/beach.webm"}
    failed = videos.list_videos(studio, project="lib", failed=True)
    assert {v["path"] for v in failed["items"]} == {"empty.mov", "photo-really.mp4", "notes.mkv", "cut.mp4"}
    # an unchanged bad file is not read again, and is still reported
    again = scan(studio)
    assert again["failed_count"] == 5 and again["samples_added"] == 0


def test_limits_from_settings(settings: Settings, folder: Path) -> None:
    limited = settings.model_copy(update={"videos": settings.videos.model_copy(update={"max_duration": 5.0})})
    studio = open_studio(limited)
    try:
        projects.create_project(studio, name="lib", task="library")
        library.add_roots(studio, project="lib", paths=[str(folder)])
        report = scan(studio)
        reasons = {Path(f["path"]).name: f["error"] for f in report["failed"]}
        assert reasons["clip.mp4"].startswith("video too long (12 s, limit 5 s")
        assert set(keyframes(studio)) == {"trip/beach.webm"}
    finally:
        studio.close()


def test_an_unmounted_folder_of_videos_removes_nothing(studio: Studio, tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    root.mkdir()
    scenes_video(root / "clip.mp4")
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(root)])
    scan(studio)
    (root / "clip.mp4").rename(tmp_path / "away.mp4")  # the mount point is left empty
    report = scan(studio)
    assert "none removed" in report["failed"][0]["error"]
    assert set(keyframes(studio)) == {"clip.mp4"}


@pytest.fixture
def embedded(settings: Settings, folder: Path) -> Iterator[Studio]:
    import torch

    torch.set_num_threads(1)
    studio = open_studio(with_embed(settings))
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(folder)])
    scan(studio)
    job = run_embedding(studio, "lib")
    assert job["status"] == "succeeded", job
    yield studio
    studio.close()


def test_keyframes_are_embedded_and_found_by_search(embedded: Studio) -> None:
    frames = keyframes(embedded)
    _, green_id = frames["clip.mp4"][2]  # the green scene at 4.5 s
    result = search.search(embedded, project="lib", sample_id=green_id, k=20)
    assert result["embedded"] == 7 and result["pending"] == 0  # 6 keyframes and the photo
    hits = {it["sample_id"]: it for it in result["items"]}
    # every keyframe is searchable, not only the posters the grid shows
    assert {sid for v in frames.values() for _, sid in v} - {green_id} <= set(hits)
    hit = hits[frames["clip.mp4"][3][1]]
    assert hit["video_id"] is not None and hit["video_time"] == 10.0
    assert hit["name"] == "clip.mp4 @ 00:10.0"
    info = videos.keyframe_info(embedded, [hit["sample_id"]])[hit["sample_id"]]
    assert (info["name"], info["label"], info["poster"]) == ("clip.mp4", "00:10.0", False)


def test_search_page_says_which_video_and_when(embedded: Studio) -> None:
    frames = keyframes(embedded)
    with TestClient(create_app(embedded)) as c:
        r = c.get("/projects/lib/search", params={"sample": frames["clip.mp4"][2][1], "k": 20})
    assert r.status_code == 200
    assert r.text.count('data-testid="result-video"') == 5  # the 6 keyframes but the query
    assert "video clip.mp4 at 00:10" in r.text and "video beach.webm at 00:02" in r.text


def test_new_keyframes_are_embedded_after_a_scan(embedded: Studio, folder: Path) -> None:
    write_video(folder / "new.mp4", solid((250, 250, 0), 30) + solid((10, 200, 10), 30))
    report = scan(embedded)
    assert report["samples_added"] == 2 and report["embedding"] and "job" in report["embedding"]
    Worker(embedded).run_one(job_id=report["embedding"]["job"])
    result = search.search(embedded, project="lib", sample_id=keyframes(embedded)["new.mp4"][1][1], k=50)
    assert result["embedded"] == 9 and result["pending"] == 0


@pytest.fixture
def client(studio: Studio, lib: Path) -> Iterator[TestClient]:
    scan(studio)
    with TestClient(create_app(studio)) as c:
        yield c


def test_api_lists_videos_and_serves_ranges(client: TestClient, studio: Studio, lib: Path) -> None:
    r = client.get("/api/v1/projects/lib/videos", params={"limit": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2 and len(body["items"]) == 1 and body["items"][0]["path"] == "clip.mp4"
    vid = body["items"][0]["id"]
    assert client.get("/api/v1/projects/lib/videos", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/projects/nope/videos").status_code == 404
    detail = client.get(f"/api/v1/videos/{vid}").json()
    assert [k["time"] for k in detail["keyframe_items"]] == [0.0, 2.0, 4.5, 10.0]
    assert client.get("/api/v1/videos/999999").status_code == 404
    assert client.get("/api/v1/videos/abc").status_code == 422

    data = (lib / "clip.mp4").read_bytes()
    whole = client.get(f"/api/v1/videos/{vid}/file")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/v1/videos/{vid}/file", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(f"/api/v1/videos/{vid}/file", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    bad = client.get(f"/api/v1/videos/{vid}/file", headers={"Range": f"bytes={len(data) + 5}-"})
    assert bad.status_code == 416
    assert client.get("/api/v1/videos/999999/file").status_code == 404


def test_the_file_route_never_leaves_the_root(
    client: TestClient, studio: Studio, lib: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"TOP-SECRET-BYTES")
    vid = videos.list_videos(studio, project="lib")["items"][0]["id"]
    for hostile in ("../secret.mp4", "/etc/passwd", "trip/../../secret.mp4"):
        with studio.sessions.begin() as s:
            s.get(Video, vid).path = hostile  # type: ignore[union-attr]
        r = client.get(f"/api/v1/videos/{vid}/file")
        assert r.status_code == 404 and b"TOP-SECRET-BYTES" not in r.content, hostile
    # a symlink swapped in after the scan, pointing outside
    with studio.sessions.begin() as s:
        s.get(Video, vid).path = "clip.mp4"  # type: ignore[union-attr]
    (lib / "clip.mp4").unlink()
    (lib / "clip.mp4").symlink_to(secret)
    assert client.get(f"/api/v1/videos/{vid}/file").status_code == 404
    (lib / "clip.mp4").unlink()
    assert client.get(f"/api/v1/videos/{vid}/file").status_code == 404


def test_cli_lists_videos(studio: Studio, lib: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vistudio.cli.main import main

    scan(studio)
    ws = str(studio.home)
    capsys.readouterr()
    assert main(["--workspace", ws, "--json", "videos", "lib"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == 2 and {v["path"] for v in doc["items"]} == {"clip.mp4", "trip/beach.webm"}
    assert main(["--workspace", ws, "--wide", "videos", "lib", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "clip.mp4" in out and "00:12" in out and "64×48" in out and "next page: --offset 1" in out
    assert main(["--workspace", ws, "--json", "videos", "nope"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "not_found"
