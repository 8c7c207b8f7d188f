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

A stronger embedder plugs in by configuration (``faces.embedder``: the path of an ONNX model in
the ArcFace / InsightFace convention, as Immich uses — ``OnnxFaces``): detection and the 5 landmarks
stay dlib's; each face is aligned as InsightFace aligns it (its eye centres — the middle of dlib's two
corners of each eye — moved onto the ArcFace template's, on an H × H chip; ``dlib.get_face_chip`` cannot
do that at any padding: its template puts the eyes at a third of the chip's height, ArcFace's at
0.46), the chips of a photo run as one batch (RGB, N×3×H×W, ``(x − 127.5) / 127.5``) and each N×D
embedding is L2-normalised: distances are Euclidean between unit vectors (0..2; the default
same-person distance, 1.0, is a cosine similarity of 0.5 — Immich's default).

A library module: plain inputs and outputs, no database, no web. ``FaceProvider`` is the protocol a
stronger model plugs into; ``name`` identifies the model version faces were made with, so a photo is
processed again only when it changes (an ONNX model's name holds its file's sha256: a new file, new
faces). Faces of two models are never compared.
"""

from __future__ import annotations

import importlib.util
import io
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
from PIL import Image

from vistudio.errors import InvalidInput, ModelUnavailable

DETECTORS = ("hog", "cnn")
CHIP_SIZE = 150  # the aligned chip the descriptor expects
CROP_SIZE = 160  # the stored face thumbnail's longest side
MODELS_PACKAGE = "face_recognition_models"
DLIB = "dlib"  # faces.embedder's default: dlib's ResNet descriptor
# The same-person distance when faces.max_distance is not set, per embedder
DLIB_MAX_DISTANCE = 0.5  # dlib's 128-d descriptor: one person 0.23–0.44 apart, others ≥ 0.63
ONNX_MAX_DISTANCE = 1.0  # unit ArcFace vectors: cosine similarity 0.5 (same person ≈ 0.8–1.2 apart)
# InsightFace's ArcFace template for a 112-px chip (``arcface_dst``): the two eye centres
ARCFACE_EYES = ((38.2946, 51.6963), (73.5318, 51.5014))


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


def default_max_distance(embedder: str) -> float:
    """The same-person distance of an embedder (``faces.embedder``) when ``faces.max_distance`` is
    not set: dlib's 0.5, an ONNX (ArcFace) model's 1.0."""
    return DLIB_MAX_DISTANCE if embedder == DLIB else ONNX_MAX_DISTANCE


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

    default_max_distance = DLIB_MAX_DISTANCE
    _describes = True  # loads dlib's descriptor (a subclass with its own embedder does not)

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
                needed = {"landmarks", "descriptor" if self._describes else "", self.detector}
                missing = [str(p) for k, p in files.items() if k in needed and not p.is_file()]
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
                    dlib.face_recognition_model_v1(str(files["descriptor"])) if self._describes else None,
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
        detect, landmarks, _ = self._load()
        draft = image.convert("RGB")
        if max(draft.size) > self.max_side:
            draft.thumbnail((self.max_side, self.max_side), Image.Resampling.BILINEAR)
        pixels = np.ascontiguousarray(np.asarray(draft))
        w, h = draft.size
        found = []
        for rect, score in self._find(detect, pixels):
            # the detector may reach past the border: clip to the image
            left, top = max(0, rect.left()), max(0, rect.top())
            right, bottom = min(w, rect.right() + 1), min(h, rect.bottom() + 1)
            if right - left < 2 or bottom - top < 2:
                continue
            found.append(((left, top, right, bottom), score, landmarks(pixels, rect)))
        vectors = self._describe(pixels, [shape for _, _, shape in found]) if found else []
        return [
            Face(
                box=(left / w, top / h, (right - left) / w, (bottom - top) / h),
                landmarks=tuple((p.x / w, p.y / h) for p in shape.parts()),
                score=score,
                embedding=vector,
                crop=face_crop(draft, (left, top, right, bottom)),
            )
            for ((left, top, right, bottom), score, shape), vector in zip(found, vectors, strict=True)
        ]

    def _describe(self, pixels: np.ndarray, shapes: list[Any]) -> list[np.ndarray]:
        """One embedding per face (its 5 landmarks ``shapes``) of the draft ``pixels``."""
        dlib = _dlib()
        descriptor = self._load()[2]
        vectors = []
        for shape in shapes:
            chip = dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=0.25)
            vectors.append(
                np.asarray(descriptor.compute_face_descriptor(chip, self.jitters), dtype=np.float32)
            )
        return vectors


# --- an ONNX face-recognition model (ArcFace / InsightFace convention) ----------------------------


@dataclass(frozen=True)
class EmbedderSpec:
    """What an ONNX face embedder takes and gives, read from its graph."""

    input_name: str
    output_name: str
    size: int  # the chip's side: input N×3×size×size
    dim: int | None  # D of the N×D output, when the graph fixes it
    batch: int | None  # a batch size the graph fixes (None: any)
    half: bool  # float16 input


_DIGESTS: dict[tuple[str, int, int, int], tuple[str, int]] = {}  # file identity → (sha256, when hashed)
_CHECKED: dict[str, EmbedderSpec] = {}  # sha256 → the file's checked signature
_CACHE_LOCK = threading.Lock()
# a file changed this little before it was hashed may change again within its time stamp's
# granularity (a few ms) and keep its identity: hashed again until then ("racily clean", as git says)
RACY_NS = 2_000_000_000


def _setting_hint() -> str:
    return 'setting faces.embedder: "dlib", or the path of an ONNX face-recognition model'


def _identity(path: Path) -> tuple[str, int, int, int]:
    """(path, size, mtime, inode) of the model file, or ``ModelUnavailable`` when there is none."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        raise ModelUnavailable(
            f"face embedder model not found: {str(path)[:300]} ({_setting_hint()})",
            details={"setting": "faces.embedder"},
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelUnavailable(
            f"face embedder model is not a file: {str(path)[:300]} ({_setting_hint()})",
            details={"setting": "faces.embedder"},
        )
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def model_digest(path: str | Path) -> str:
    """The sha256 of a model file, hashed once per version of the file (its size, modification
    time and inode; a file modified less than 2 s before it was hashed is hashed again)."""
    from vistudio.storage.blobs import sha256_file

    path = Path(path).expanduser()
    key = _identity(path)
    with _CACHE_LOCK:
        hit = _DIGESTS.get(key)
    if hit is not None and key[2] < hit[1] - RACY_NS:
        return hit[0]
    started = time.time_ns()
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise ModelUnavailable(
            f"cannot read the face embedder model {str(path)[:300]}: {exc.strerror or exc}",
            details={"setting": "faces.embedder"},
        ) from None
    with _CACHE_LOCK:
        _DIGESTS[key] = (digest, started)
    return digest


def _shape_text(shape: list[Any]) -> str:
    return "×".join(str(d) if isinstance(d, int) else "?" for d in shape) or "a scalar"


def _spec(session: Any, path: Path) -> EmbedderSpec:
    """The signature of a face embedder, or ``InvalidInput`` saying what is wrong with it."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    details = {"setting": "faces.embedder", "path": str(path)[:300]}
    if len(inputs) != 1:
        raise InvalidInput(
            f"{path.name}: a face embedder takes one input (N×3×H×W images), this one takes {len(inputs)}",
            details=details,
        )
    shape = list(inputs[0].shape)
    if (
        len(shape) != 4
        or shape[1] != 3
        or not isinstance(shape[2], int)
        or shape[2] != shape[3]
        or not 16 <= shape[2] <= 1024
    ):
        raise InvalidInput(
            f"{path.name}: a face embedder takes N×3×H×W images with a fixed square H = W (e.g. "
            f"N×3×112×112); this one takes {_shape_text(shape)}",
            details=details,
        )
    if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
        raise InvalidInput(
            f"{path.name}: a face embedder takes float pixels; this one takes {inputs[0].type}",
            details=details,
        )
    if not outputs or len(outputs[0].shape) != 2:
        out = _shape_text(list(outputs[0].shape)) if outputs else "nothing"
        raise InvalidInput(
            f"{path.name}: a face embedder gives N×D embeddings; this one gives {out}", details=details
        )
    batch, dim = shape[0], outputs[0].shape[1]
    return EmbedderSpec(
        input_name=inputs[0].name,
        output_name=outputs[0].name,
        size=int(shape[2]),
        dim=dim if isinstance(dim, int) and dim > 0 else None,
        batch=batch if isinstance(batch, int) and batch > 0 else None,
        half=inputs[0].type == "tensor(float16)",
    )


def open_embedder(path: str | Path, *, threads: int = 0, cuda: bool = False) -> tuple[Any, EmbedderSpec]:
    """An onnxruntime session of the face embedder at ``path`` (CUDA when asked and available, else
    CPU; ``threads`` > 0 bounds its threads) and its checked signature."""
    path = Path(path).expanduser()
    _identity(path)
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelUnavailable(
            "an ONNX face embedder needs onnxruntime: pip install onnxruntime",
            details={"setting": "faces.embedder"},
        ) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider") if cuda else ("CPUExecutionProvider",)
    providers = [p for p in wanted if p in ort.get_available_providers()] or None
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's own error types: not protobuf, bad graph, unknown op…
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(
            f"{path.name} is not a loadable ONNX model ({_setting_hint()}): {reason}",
            details={"setting": "faces.embedder", "path": str(path)[:300]},
        ) from None
    return session, _spec(session, path)


def check_embedder(embedder: str | Path) -> EmbedderSpec | None:
    """Check ``faces.embedder``: ``None`` for dlib, else the ONNX model's signature —
    ``ModelUnavailable`` (no such file) or ``InvalidInput`` (not a face embedder) otherwise. Each
    version of a file is loaded once to be checked."""
    if str(embedder) == DLIB:
        return None
    path = Path(embedder).expanduser()
    digest = model_digest(path)
    with _CACHE_LOCK:
        spec = _CHECKED.get(digest)
    if spec is None:
        _, spec = open_embedder(path)
        with _CACHE_LOCK:
            _CHECKED[digest] = spec
    return spec


def arcface_chip(pixels: np.ndarray, shape: Any, size: int) -> np.ndarray:
    """The ``size`` × ``size`` RGB chip of a face aligned as InsightFace aligns it for ArcFace: a
    similarity transform that puts the face's eye centres (the middle of dlib's two corners of each
    eye) on the template's (``ARCFACE_EYES``, scaled like InsightFace's ``estimate_norm``), chip
    pixel centres at integer coordinates as in ``cv2.warpAffine``."""
    dlib = _dlib()
    p = shape.parts()
    # dlib's 5 points: 0, 1 the corners of the eye on the image's right, 2, 3 the other's, 4 the nose
    left = complex((p[2].x + p[3].x) / 2, (p[2].y + p[3].y) / 2)
    right = complex((p[0].x + p[1].x) / 2, (p[0].y + p[1].y) / 2)
    if size % 112 == 0:
        ratio, shift = size / 112, 0.0
    else:  # InsightFace's 128-px variant: the 112 template, centred
        ratio, shift = size / 128, 8 * size / 128
    (lx, ly), (rx, ry) = ARCFACE_EYES
    chip_left, chip_right = complex(lx * ratio + shift, ly * ratio), complex(rx * ratio + shift, ry * ratio)
    # chip point c → image point a·(c − chip_left) + left (rotation and scale in one complex number)
    a = (right - left) / (chip_right - chip_left)
    if abs(a) < 1e-6:  # both eyes on one point: nothing to align to
        a = complex(1e-6, 0)
    centre = a * (complex((size - 1) / 2, (size - 1) / 2) - chip_left) + left
    # dlib maps the corners of ``rect``, turned by ``angle`` about its centre, to chip pixels 0 and
    # size − 1: half its side is the scale times (size − 1) / 2
    half = abs(a) * (size - 1) / 2
    rect = dlib.drectangle(centre.real - half, centre.imag - half, centre.real + half, centre.imag + half)
    details = dlib.chip_details(rect, dlib.chip_dims(size, size), float(np.angle(a)))
    return np.asarray(dlib.extract_image_chip(pixels, details))


def embed_chips(
    session: Any, spec: EmbedderSpec, chips: list[np.ndarray], *, name: str = "model"
) -> np.ndarray:
    """The L2-normalised float32 embeddings (N×D) of RGB uint8 chips (N of size × size × 3), in one
    run (in runs of the graph's fixed batch size, if it has one)."""
    x = (np.stack(chips).astype(np.float32) - 127.5) / 127.5
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if spec.half:
        x = x.astype(np.float16)
    step = spec.batch or len(x)
    parts = []
    for lo in range(0, len(x), step):
        part = x[lo : lo + step]
        n = len(part)
        if n < step:  # a graph with a fixed batch size: fill the last run
            part = np.concatenate([part, np.zeros((step - n, *part.shape[1:]), part.dtype)])
        try:
            out = session.run([spec.output_name], {spec.input_name: part})[0]
        except Exception as exc:  # onnxruntime's own error types: shape or type mismatch
            raise InvalidInput(
                f"{name}: running the face embedder failed: {str(exc).strip()[:300]}",
                details={"setting": "faces.embedder"},
            ) from None
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(part):
            raise InvalidInput(
                f"{name}: a face embedder gives N×D embeddings; this one gave {_shape_text(list(out.shape))} "
                f"for {len(part)} faces",
                details={"setting": "faces.embedder"},
            )
        parts.append(out[:n])
    vectors = np.concatenate(parts)
    if not np.isfinite(vectors).all():
        raise InvalidInput(
            f"{name}: the face embedder gave non-finite embeddings", details={"setting": "faces.embedder"}
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class OnnxFaces(DlibFaces):
    """dlib's detector and 5 landmarks, an ONNX ArcFace-style model's embeddings (see the module's
    docstring). ``name`` is ``onnx-<sha256 of the file, 12 hex>-<detector>``: a changed file is a new
    model. The session loads on first use (CUDA when ``cuda`` and available; ``threads`` > 0 bounds
    its CPU threads: 1 in each process of a pool)."""

    default_max_distance = ONNX_MAX_DISTANCE
    _describes = False

    def __init__(
        self,
        path: str | Path,
        *,
        detector: str = "hog",
        max_side: int = 1600,
        upsample: int = 1,
        threads: int = 0,
        cuda: bool = True,
    ) -> None:
        super().__init__(detector=detector, max_side=max_side, upsample=upsample)
        self.path = Path(path).expanduser()
        self.digest = model_digest(self.path)
        self.name = f"onnx-{self.digest[:12]}-{detector}"
        self.threads = threads
        self.cuda = cuda
        self._session: tuple[Any, EmbedderSpec] | None = None

    def _onnx(self) -> tuple[Any, EmbedderSpec]:
        with self._lock:
            if self._session is None:
                if model_digest(self.path) != self.digest:
                    raise ModelUnavailable(
                        f"the face embedder model {self.path.name} changed since this job began: run it again",
                        details={"setting": "faces.embedder"},
                    )
                self._session = open_embedder(self.path, threads=self.threads, cuda=self.cuda)
            return self._session

    def _describe(self, pixels: np.ndarray, shapes: list[Any]) -> list[np.ndarray]:
        session, spec = self._onnx()
        chips = [arcface_chip(pixels, shape, spec.size) for shape in shapes]
        return list(embed_chips(session, spec, chips, name=self.path.name))


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
    """The provider the face settings name (``detector``, ``max_side``, ``embedder``: ``"dlib"`` or
    the path of an ONNX model; a pool process adds ``threads`` 1 and ``cuda`` False)."""
    embedder = str(options.get("embedder") or DLIB)
    if embedder == DLIB:
        return DlibFaces(detector=options["detector"], max_side=options["max_side"])
    return OnnxFaces(
        embedder,
        detector=options["detector"],
        max_side=options["max_side"],
        threads=int(options.get("threads", 0)),
        cuda=bool(options.get("cuda", True)),
    )


def read_faces(provider: FaceProvider, path: str | IO[bytes], *, max_pixels: int) -> dict[str, Any]:
    """One photo's faces as plain data — ``{"status": "ok", "faces": [{"box", "landmarks",
    "score", "embedding" (float32 bytes), "crop"}]}`` — or ``{"status": "error", "reason"}``.
    The photo (a path, or its bytes in a file object) is decoded as displayed (EXIF orientation),
    JPEGs shrunk on load to the draft size."""
    from vistudio.ml.embed.batch import _reason, open_image

    side = getattr(provider, "max_side", 1600)
    try:
        source = Path(path) if isinstance(path, str) else path
        image = open_image(source, min_side=side // 2, max_pixels=max_pixels)
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
