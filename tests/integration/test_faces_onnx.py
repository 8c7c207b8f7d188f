"""Faces with an ONNX ArcFace-style embedder (``faces.embedder``) on real portraits.

No weights can be downloaded, so the model is a small convolutional net the tests build and export
themselves (seeded, untrained: what it computes is not a face identity, but it goes through the very
code path a real ArcFace model does — loading, alignment, batching, normalising, naming, storage).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageOps
from sqlalchemy import select

from face_photos import face_photos
from factories import run_import
from vistudio.config import FaceSettings, Settings
from vistudio.db import Sample
from vistudio.db.faces import Face, FaceRejection, FaceScan, Person
from vistudio.errors import InvalidInput, ModelUnavailable
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.ml import faces as ml_faces
from vistudio.services import faces, people, projects
from vistudio.services import settings as settings_service
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.slow

DIM = 64


def _export(module: Any, example: Any, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated, and offline
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
        )
    return path


def _embedder(path: Path, *, seed: int) -> Path:
    """A tiny seeded embedder: N×3×112×112 → N×64."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=4, padding=2),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(7),  # 14 → 7: exportable
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, DIM),
    )
    return _export(net, torch.zeros(1, 3, 112, 112), path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two embedders of one shape (seeds 0 and 1), a model with a 3-d input, and random bytes."""
    import torch
    from torch import nn

    class Flat(nn.Module):  # N×112×112 in: not N×3×H×W
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(112, DIM)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x.mean(dim=1))

    root = tmp_path_factory.mktemp("onnx-faces")
    torch.manual_seed(0)
    out = {
        "a": _embedder(root / "a.onnx", seed=0),
        "b": _embedder(root / "b.onnx", seed=1),
        "flat": _export(Flat(), torch.zeros(1, 112, 112), root / "flat.onnx"),
        "junk": root / "junk.onnx",
    }
    out["junk"].write_bytes(np.random.default_rng(0).bytes(4096))
    return out


def _portrait(name: str) -> Image.Image:
    """A portrait, small: HOG's time grows with the pixels, and the faces stay > 100 px."""
    with Image.open(face_photos() / name) as im:
        out = ImageOps.exif_transpose(im).convert("RGB")
    out.thumbnail((450, 450))
    return out


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("onnx-album")
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        _portrait(name).save(root / name, quality=92)
    return root


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _studio(home: Path, roots: list[Path], **faces_cfg: Any) -> Studio:
    return open_studio(
        Settings(
            home=home,
            offline=True,
            import_roots=roots,
            faces=FaceSettings(workers=1, max_side=800, **faces_cfg),
        )
    )


def _run(studio: Studio) -> dict[str, Any]:
    job = faces.start_faces(studio, project="family")
    return job_dict(Worker(studio).run_to_end(job["id"]))


def test_the_chip_puts_the_eyes_where_arcface_wants_them() -> None:
    """Two bright spots at a turned face's eye centres land on InsightFace's template eye points
    (within half a chip pixel: dlib shrinks through an image pyramid, which moves them a little)."""
    ys, xs = np.mgrid[:600, :600]
    left, right = (220, 280), (380, 250)
    spots = sum(255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 32) for x, y in (left, right))
    pixels = np.repeat(np.clip(spots, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    # dlib's 5 points: the corners of the eye on the image's right (outer, inner), the other's, the nose
    corners = [(390, 248), (370, 252), (210, 282), (230, 278), (300, 340)]
    shape = dlib.full_object_detection(
        dlib.rectangle(160, 180, 440, 460), [dlib.point(x, y) for x, y in corners]
    )
    for size in (112, 128):
        chip = ml_faces.arcface_chip(pixels, shape, size).astype(np.float64)[..., 0]
        assert chip.shape == (size, size)
        cy, cx = np.mgrid[:size, :size]
        ratio, shift = (1.0, 0.0) if size == 112 else (size / 128, 8 * size / 128)
        for half, (tx, ty) in zip((cx < size / 2, cx >= size / 2), ml_faces.ARCFACE_EYES, strict=True):
            w = chip * half
            x, y = (w * cx).sum() / w.sum(), (w * cy).sum() / w.sum()
            assert abs(x - (tx * ratio + shift)) < 0.5 and abs(y - ty * ratio) < 0.5, (size, x, y)


def test_embeddings_are_the_models_own_on_the_aligned_chips_in_one_run(models: dict[str, Path]) -> None:
    obama, biden = _portrait("obama.jpg"), _portrait("biden.jpg")
    photo = Image.new("RGB", (obama.width + biden.width, max(obama.height, biden.height)), (255, 255, 255))
    photo.paste(obama, (0, 0))
    photo.paste(biden, (obama.width, 0))
    provider = ml_faces.provider_from({"detector": "hog", "max_side": 1600, "embedder": str(models["a"])})
    assert isinstance(provider, ml_faces.OnnxFaces)
    assert provider.name == f"onnx-{_sha(models['a'])[:12]}-hog"
    assert provider.default_max_distance == 1.0
    assert provider._session is None  # nothing loads before the first photo
    session, spec = provider._onnx()
    assert (spec.size, spec.dim, spec.batch) == (112, DIM, None)
    runs = []

    class Counting:
        def run(self, *args: Any) -> Any:
            runs.append(args[1]["input"].shape)
            return session.run(*args)

    provider._session = (Counting(), spec)
    found = sorted(provider.detect(photo), key=lambda f: f.box[0])
    assert len(found) == 2 and runs == [(2, 3, 112, 112)]  # both faces of the photo in one run
    for f in found:
        assert f.embedding.shape == (DIM,) and f.embedding.dtype == np.float32
        assert abs(float(np.linalg.norm(f.embedding)) - 1) < 1e-5

    # the same faces through dlib and onnxruntime by hand, one chip at a time
    folder = ml_faces.models_dir()
    detect = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    pixels = np.ascontiguousarray(np.asarray(photo))
    rects, _, _ = detect.run(pixels, 1, 0.0)
    own = ort.InferenceSession(str(models["a"]), providers=["CPUExecutionProvider"])
    for f, rect in zip(found, sorted(rects, key=lambda r: r.left()), strict=True):
        chip = ml_faces.arcface_chip(pixels, landmarks(pixels, rect), 112)
        x = ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        (vector,) = own.run(None, {"input": np.ascontiguousarray(x)})[0]
        np.testing.assert_allclose(f.embedding, vector / np.linalg.norm(vector), atol=1e-5)


def test_a_new_embedder_or_file_reads_every_photo_again_and_people_keep_their_faces(
    models: dict[str, Path], album: Path, tmp_path: Path
) -> None:
    home = tmp_path / "ws"
    live = tmp_path / "models" / "face.onnx"
    live.parent.mkdir()
    shutil.copy(models["a"], live)

    studio = _studio(home, [album, tmp_path], max_distance=0.5)
    try:
        projects.create_project(studio, name="family", task="library")
        run_import(studio, "family", album)
        assert _run(studio)["result"]["report"]["faces"] == 4
        with studio.sessions() as s:
            by_photo = dict(
                s.execute(select(Sample.name, Face.id).join(Face, Face.sample_id == Sample.id)).all()
            )
        obamas = [by_photo[n] for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")]
        pid = people.move_faces(studio, project="family", faces=obamas, to=None)["person"]["id"]
        people.rename(studio, project="family", person=pid, name="Barack")
        people.answer(studio, project="family", face=by_photo["biden.jpg"], person="Barack", yes=False)
    finally:
        studio.close()

    for model in ("a", "b"):
        shutil.copyfile(models[model], live)  # "b": a new file at the same path (same size)
        studio = _studio(home, [album, tmp_path], embedder=str(live), max_distance=1.0)
        try:
            name = faces.model_name(studio)
            assert name == f"onnx-{_sha(models[model])[:12]}-hog"
            report = _run(studio)["result"]["report"]
            assert (report["photos"], report["faces"], report["model"]) == (4, 4, name)
            with studio.sessions() as s:
                rows = s.execute(
                    select(
                        Sample.name, Face.model, Face.embedding, Face.person_id, Face.assigned, Face.id
                    ).join(Sample, Sample.id == Face.sample_id)
                ).all()
                scans = set(s.scalars(select(FaceScan.model)))
                rejected = s.execute(select(FaceRejection.face_id, FaceRejection.person_id)).all()
                barack = s.scalar(select(Person).where(Person.name == "Barack"))
                assert barack is not None
                cover = barack.cover_face_id
            # a photo has one model's faces: the old ones were replaced, never compared with the new
            assert {r.model for r in rows} == {name} and scans == {name} and len(rows) == 4
            for r in rows:
                vector = np.frombuffer(r.embedding, dtype="<f4")
                assert vector.shape == (DIM,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
            # who each face is carried over by place: Barack keeps his faces (placed by hand), and
            # Biden's new face is still "not Barack"
            mine = {r.name for r in rows if r.person_id == pid}
            assert mine == {"obama.jpg", "obama2.jpg", "obama3.jpg"}
            assert all(r.assigned == "manual" for r in rows if r.person_id == pid)
            biden = next(r for r in rows if r.name == "biden.jpg")
            assert rejected == [(biden.id, pid)] and biden.person_id != pid
            assert cover in {r.id for r in rows if r.person_id == pid}
            _, vectors = faces.face_vectors(studio, 1, name)
            assert vectors.shape == (4, DIM)
            people.cluster_project(studio, 1, full=True)  # grouping reads 64-d vectors only
            assert _run(studio)["result"]["report"]["photos"] == 0  # read once per file version
        finally:
            studio.close()


def test_pool_processes_embed_as_this_process_does(
    models: dict[str, Path], album: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faces, "POOL_MIN_PHOTOS", 2)
    results = {}
    for workers in (1, 2):
        studio = open_studio(
            Settings(
                home=tmp_path / f"w{workers}",
                offline=True,
                import_roots=[album],
                faces=FaceSettings(
                    workers=workers, max_side=800, embedder=str(models["a"]), max_distance=1.0
                ),
            )
        )
        try:
            projects.create_project(studio, name="family", task="library")
            run_import(studio, "family", album)
            final = _run(studio)
            assert final["status"] == "succeeded", final["error"]
            assert (final["result"]["report"]["photos"], final["result"]["report"]["faces"]) == (4, 4)
            with studio.sessions() as s:
                rows = s.execute(
                    select(Sample.name, Face.embedding).join(Sample, Sample.id == Face.sample_id)
                ).all()
            results[workers] = {n: np.frombuffer(e, dtype="<f4") for n, e in rows}
        finally:
            studio.close()
    assert results[1].keys() == results[2].keys()
    for n in results[1]:
        np.testing.assert_allclose(results[1][n], results[2][n], atol=1e-5)


def test_unfit_models_are_refused_with_a_clear_reason(
    models: dict[str, Path], album: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="not a loadable ONNX model"):
        ml_faces.check_embedder(models["junk"])
    with pytest.raises(InvalidInput, match=r"N×3×H×W .*this one takes \?×112×112"):
        ml_faces.check_embedder(models["flat"])
    with pytest.raises(ModelUnavailable, match="not found"):
        ml_faces.provider_from({"detector": "hog", "max_side": 800, "embedder": str(tmp_path / "none.onnx")})
    assert ml_faces.check_embedder("dlib") is None

    roots = [album, tmp_path, models["a"].parent]
    studio = _studio(tmp_path / "ws", roots, max_distance=1.0)
    try:
        projects.create_project(studio, name="family", task="library")
        run_import(studio, "family", album)
        # when saved: the setting is named, and nothing is saved
        for model, error in (("junk", InvalidInput), ("flat", InvalidInput)):
            with pytest.raises(error) as caught:
                settings_service.update_settings(studio, values={"faces.embedder": str(models[model])})
            assert caught.value.details["setting"] == "faces.embedder"
        with pytest.raises(InvalidInput, match="not found"):
            settings_service.update_settings(studio, values={"faces.embedder": str(tmp_path / "none.onnx")})
        assert studio.settings.faces.embedder == "dlib"

        # when the job is asked for: no job is queued
        live = tmp_path / "live.onnx"
        shutil.copy(models["junk"], live)
        studio.settings = studio.settings.model_copy(
            update={"faces": studio.settings.faces.model_copy(update={"embedder": str(live)})}
        )
        with pytest.raises(InvalidInput, match=r"live\.onnx is not a loadable ONNX model"):
            faces.start_faces(studio, project="family")
        assert studio.queue.list(kind=faces.KIND)[1] == 0

        # a file broken after the job was queued: the job fails, saying why
        shutil.copyfile(models["a"], live)
        job = faces.start_faces(studio, project="family")
        shutil.copyfile(models["flat"], live)
        final = job_dict(Worker(studio).run_to_end(job["id"]))
        assert final["status"] in ("failed", "dead"), final["status"]
        assert "a face embedder takes N×3×H×W" in final["error"]["message"]
        os.unlink(live)
        with pytest.raises(ModelUnavailable, match="not found"):
            faces.start_faces(studio, project="family")
    finally:
        studio.close()


def test_the_same_person_distance_is_the_embedders_own_unless_set(
    models: dict[str, Path], tmp_path: Path
) -> None:
    embedder = str(models["a"])
    assert faces.max_distance(FaceSettings()) == 0.5
    assert faces.max_distance(FaceSettings(embedder=embedder)) == 1.0
    assert faces.max_distance(FaceSettings(embedder=embedder, max_distance=0.8)) == 0.8
    assert FaceSettings(max_distance="auto").max_distance is None

    studio = open_studio(Settings(home=tmp_path / "ws", offline=True, import_roots=[models["a"].parent]))
    try:

        def shown() -> dict[str, Any]:
            items = settings_service.list_settings(studio)["items"]
            return {i["key"]: i for i in items if i["key"].startswith("faces.")}

        assert shown()["faces.max_distance"]["value"] == "auto (0.5 for dlib)"
        assert shown()["faces.embedder"]["value"] == "dlib"
        settings_service.update_settings(studio, values={"faces.embedder": embedder})
        assert studio.settings.faces.embedder == str(models["a"].resolve())
        assert shown()["faces.max_distance"]["value"] == "auto (1.0 for the ONNX embedder)"
        settings_service.update_settings(studio, values={"faces.max_distance": "0.9"})
        assert shown()["faces.max_distance"]["value"] == 0.9
        # what the page shows for auto is taken back as auto
        settings_service.update_settings(
            studio, values={"faces.max_distance": "auto (1.0 for the ONNX embedder)"}
        )
        assert studio.settings.faces.max_distance is None
        settings_service.update_settings(studio, values={"faces.embedder": ""})
        assert studio.settings.faces.embedder == "dlib"
    finally:
        studio.close()
