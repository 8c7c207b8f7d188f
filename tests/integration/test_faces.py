"""Faces on real photos (portraits fetched into a cache, see tests/face_photos.py) with dlib's models."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance, ImageOps
from sqlalchemy import func, select

from face_photos import face_photos
from factories import draw_image, run_import
from vistudio.api.app import create_app
from vistudio.config import FaceSettings, Settings
from vistudio.db import Sample
from vistudio.db.faces import Face, FaceScan
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.ml.faces import DlibFaces
from vistudio.services import faces, projects
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos() -> Path:
    return face_photos()


@pytest.fixture(scope="module")
def provider() -> DlibFaces:
    return DlibFaces()


def _one_face(provider: DlibFaces, image: Image.Image) -> Any:
    found = provider.detect(image)
    assert len(found) == 1, f"{len(found)} faces"
    return found[0]


def test_each_portrait_has_one_face_and_identities_stay_apart(photos: Path, provider: DlibFaces) -> None:
    vectors = {}
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        with Image.open(photos / name) as im:
            face = _one_face(provider, ImageOps.exif_transpose(im))
        assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
        assert len(face.landmarks) == 5 and all(0 <= v <= 1 for p in face.landmarks for v in p)
        x, y, w, h = face.box
        assert 0 <= x < x + w <= 1 and 0 <= y < y + h <= 1 and face.score > 0
        with Image.open(io.BytesIO(face.crop)) as crop:
            assert crop.format == "WEBP" and max(crop.size) <= 160
        vectors[name] = face.embedding
    same = [
        np.linalg.norm(vectors[a] - vectors[b])
        for a, b in (("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama3.jpg"), ("obama2.jpg", "obama3.jpg"))
    ]
    other = [
        np.linalg.norm(vectors["biden.jpg"] - vectors[o]) for o in ("obama.jpg", "obama2.jpg", "obama3.jpg")
    ]
    assert max(same) < 0.5 < 0.6 < min(other), (same, other)


def test_edited_copies_stay_near_their_original(photos: Path, provider: DlibFaces) -> None:
    with Image.open(photos / "obama.jpg") as im:
        original = ImageOps.exif_transpose(im).convert("RGB")
    base = _one_face(provider, original).embedding
    edits = {
        "flipped": ImageOps.mirror(original),
        "half size": original.resize((original.width // 2, original.height // 2)),
        "darker": ImageEnhance.Brightness(original).enhance(0.6),
        "greyscale": ImageOps.grayscale(original).convert("RGB"),
        "turned 10°": original.rotate(10, expand=True, fillcolor=(255, 255, 255)),
    }
    for what, image in edits.items():
        distance = float(np.linalg.norm(_one_face(provider, image).embedding - base))
        assert distance <= 0.3, (what, distance)


def test_huge_photos_are_searched_on_a_bounded_draft(photos: Path) -> None:
    """A 6,000-px panorama costs what its draft does: the face is found, its box in the panorama's terms."""
    with Image.open(photos / "biden.jpg") as im:
        portrait = ImageOps.exif_transpose(im).convert("RGB")
    portrait.thumbnail((1000, 1000))
    pano = Image.new("RGB", (6000, 1000), (200, 200, 200))
    pano.paste(portrait, (4000, 0))
    (face,) = DlibFaces(max_side=1600).detect(pano)
    assert 4000 / 6000 <= face.box[0] <= (4000 + portrait.width) / 6000


def _settings(tmp_path: Path, **faces_cfg: Any) -> Settings:
    return Settings(
        home=tmp_path / "ws", offline=True, import_roots=[tmp_path], faces=FaceSettings(**faces_cfg)
    )


def _run(studio: Studio, project: str) -> dict[str, Any]:
    job = faces.start_faces(studio, project=project)
    return job_dict(Worker(studio).run_to_end(job["id"]))


def test_the_face_job_reads_each_photo_once_per_model(photos: Path, tmp_path: Path) -> None:
    src = tmp_path / "album"
    src.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        shutil.copy(photos / name, src / name)
    draw_image(src / "no-face.png", seed=1, size=(320, 240))
    # stored sideways, shown upright by its EXIF orientation (6: turn 90° clockwise to display)
    with Image.open(photos / "obama2.jpg") as im:
        exif = Image.Exif()
        exif[0x0112] = 6
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(src / "sideways.jpg", exif=exif)
    studio = open_studio(_settings(tmp_path, workers=1, max_side=1000))
    try:
        projects.create_project(studio, name="family", task="library")
        assert run_import(studio, "family", src, mode="reference")["status"] == "succeeded"
        (src / "biden.jpg").write_bytes(b"not a photo any more")  # broken after the import
        first = _run(studio, "family")
        assert first["status"] == "succeeded", first["error"]
        report = first["result"]["report"]
        assert (report["photos"], report["faces"], report["failed_count"]) == (4, 2, 1)
        assert (
            report["failed"][0]["path"].endswith("biden.jpg")
            and "unreadable" in report["failed"][0]["reason"]
        )
        listed = faces.list_faces(studio, project="family")
        assert (listed["total"], listed["photos_with_faces"], listed["photos_scanned"]) == (2, 2, 3)
        by_name = {}
        with studio.sessions() as s:
            for f, name in s.execute(select(Face, Sample.name).join_from(Face, Sample)).all():
                by_name[name] = f
        sideways = by_name["sideways.jpg"]
        assert sideways.h > 0 and sideways.y < 0.5  # found upright: the box is in the displayed photo

        again = _run(studio, "family")["result"]["report"]
        assert (again["photos"], again["faces"]) == (1, 0)  # only the photo that failed is read again
        shutil.copy(photos / "biden.jpg", src / "biden.jpg")  # the photo is back: read it then
        assert _run(studio, "family")["result"]["report"]["faces"] == 1
        assert _run(studio, "family")["result"]["report"]["photos"] == 0
        # the project has faces now: photos imported later are read on their own
        more = tmp_path / "more"
        shutil.copy(photos / "obama3.jpg", (more.mkdir(), more / "obama3.jpg")[1])
        queued = run_import(studio, "family", more)["result"]["report"]["faces"]
        final = job_dict(Worker(studio).run_to_end(queued["job"]))
        assert (final["result"]["report"]["photos"], final["result"]["report"]["faces"]) == (1, 1)
    finally:
        studio.close()

    # the draft size is not the model: nothing to read again
    studio = open_studio(_settings(tmp_path, workers=1, max_side=800))
    try:
        assert faces.model_name(studio) == "dlib-hog-resnet128"
        assert _run(studio, "family")["result"]["report"]["photos"] == 0
    finally:
        studio.close()


def test_a_pool_of_processes_finds_the_same_faces(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faces, "POOL_MIN_PHOTOS", 2)
    src = tmp_path / "many"
    src.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        with Image.open(photos / name) as im:
            small = ImageOps.exif_transpose(im).convert("RGB")
            small.thumbnail((500, 500))
            small.save(src / name)
    results = {}
    for workers in (1, 2):
        studio = open_studio(_settings(tmp_path / f"w{workers}", workers=workers))
        try:
            projects.create_project(studio, name="p", task="library")
            run_import(studio, "p", src)
            report = _run(studio, "p")["result"]["report"]
            assert (report["photos"], report["faces"], report["failed_count"]) == (4, 4, 0)
            with studio.sessions() as s:
                results[workers] = sorted((f.x, f.y, f.w, f.h, f.embedding) for f in s.scalars(select(Face)))
        finally:
            studio.close()
    assert results[1] == results[2]


def test_api_and_cli(photos: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vistudio.cli.main import app

    src = tmp_path / "album"
    src.mkdir()
    shutil.copy(photos / "obama.jpg", src / "obama.jpg")
    settings = _settings(tmp_path, workers=1, max_side=800)
    settings = settings.model_copy(update={"allowed_hosts": ["testserver"]})
    studio = open_studio(settings)
    try:
        client = TestClient(create_app(studio, workers=0))
        projects.create_project(studio, name="album", task="library")
        run_import(studio, "album", src)
        r = client.post("/api/v1/projects/album/faces")
        assert r.status_code == 202
        Worker(studio).run_to_end(r.json()["job"]["id"])
        page = client.get("/api/v1/projects/album/faces").json()
        assert page["total"] == 1 and page["model"] == "dlib-hog-resnet128"
        face = page["items"][0]
        crop = client.get(face["crop_url"])
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/webp"
        one = client.get(f"/api/v1/projects/album/faces?sample_id={face['sample_id']}").json()
        assert one["total"] == 1
        assert client.get("/api/v1/faces/999999/crop").status_code == 404
        assert client.get("/api/v1/projects/album/faces?limit=0").status_code == 422
        assert client.get("/api/v1/projects/nope/faces").status_code == 404
    finally:
        studio.close()

    runner = CliRunner()
    out = runner.invoke(app, ["--workspace", str(tmp_path / "ws"), "--json", "faces", "album"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["report"]["photos"] == 0 and doc["job"]["status"] == "succeeded"


def test_turned_off_no_face_job_runs(tmp_path: Path) -> None:
    studio = open_studio(_settings(tmp_path, enabled=False))
    try:
        projects.create_project(studio, name="album", task="library")
        with pytest.raises(Exception, match="turned off"):
            faces.start_faces(studio, project="album")
        with studio.sessions() as s:
            assert s.scalar(select(func.count()).select_from(FaceScan)) == 0
    finally:
        studio.close()


def test_crowds_cmyk_and_tiny_faces(photos: Path, tmp_path: Path) -> None:
    """200 faces in one photo, a CMYK JPEG, a face too small to group: each photo has its outcome."""
    from vistudio.services import people

    with Image.open(photos / "obama.jpg") as im:
        portrait = ImageOps.exif_transpose(im).convert("RGB")
    (face,) = DlibFaces().detect(portrait)
    x, y, w, h = face.box
    pw, ph = portrait.size
    head = portrait.crop(
        (int((x - w * 0.4) * pw), int((y - h * 0.5) * ph), int((x + w * 1.4) * pw), int((y + h * 1.5) * ph))
    )
    head = head.resize((64, int(64 * head.height / head.width)))
    src = tmp_path / "hard"
    src.mkdir()
    crowd = Image.new("RGB", (20 * head.width, 10 * head.height), (230, 230, 230))
    for i in range(200):
        crowd.paste(
            ImageOps.mirror(head) if i % 2 else head, ((i % 20) * head.width, (i // 20) * head.height)
        )
    crowd.save(src / "crowd.jpg", quality=90)
    portrait.convert("CMYK").save(src / "cmyk.jpg", quality=90)
    tiny = Image.new("RGB", (800, 600), (200, 200, 200))
    tiny.paste(portrait.resize((portrait.width // 10, portrait.height // 10)), (350, 250))
    tiny.save(src / "tiny.jpg", quality=92)
    studio = open_studio(_settings(tmp_path, workers=1, max_side=1300, min_size=40))
    try:
        projects.create_project(studio, name="hard", task="library")
        run_import(studio, "hard", src)
        report = _run(studio, "hard")["result"]["report"]
        assert report["failed_count"] == 0 and report["photos"] == 3
        per_photo = {}
        with studio.sessions() as s:
            for name, n in s.execute(
                select(Sample.name, func.count(Face.id))
                .join(Face, Face.sample_id == Sample.id)
                .group_by(Sample.name)
            ).all():
                per_photo[name] = n
        assert per_photo["crowd.jpg"] >= 150  # HOG finds most 64-px faces
        assert per_photo["cmyk.jpg"] == 1
        # 200 faces of one photo are 200 people or none: never grouped together
        assert people.list_people(studio, project="hard")["total"] == 0
        with studio.sessions() as s:
            small = s.scalars(select(Face).join(Sample).where(Sample.name == "tiny.jpg")).all()
        assert all(f.person_id is None for f in small)  # found or not, too small to be grouped
    finally:
        studio.close()


def test_the_cnn_detector_and_a_false_hog_face(tmp_path: Path) -> None:
    """scikit-image's astronaut photo: HOG finds her face and a weak false one (kept, but below
    ``faces.min_score`` so never grouped); the CNN detector finds her face only."""
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut())
    hog = DlibFaces(max_side=800).detect(photo)
    cnn = DlibFaces(detector="cnn", max_side=400).detect(photo)
    assert len(cnn) == 1 and cnn[0].embedding.shape == (128,)
    real = max(hog, key=lambda f: f.score)
    assert float(np.linalg.norm(real.embedding - cnn[0].embedding)) < 0.3  # the same face
    weak = [f for f in hog if f is not real]
    assert all(f.score < FaceSettings().min_score < real.score for f in weak)
