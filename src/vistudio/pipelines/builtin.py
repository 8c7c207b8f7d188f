"""Built-in pipeline stages: load, resize, crop, grayscale, blur, edges, normalise, classify_onnx,
detect_onnx, and segment_onnx and regress_onnx (in ``pipelines/segmentation`` and
``pipelines/regression``, imported at the end of this module).

Images travel between stages as numpy arrays: ``uint8`` H×W×3 (RGB) or H×W (grey); ``normalise``
turns them into a ``float32`` C×H×W tensor. Stages only read (the input image, an ONNX model); they
never write files: what they return is saved by the runner.

``load_custom`` resolves a user's own stage function by import path; the runner wraps it.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter, ImageOps

from vistudio.pipelines.stage import (
    ANY,
    ARRAY,
    FILE,
    IMAGE,
    LABEL,
    Item,
    StageError,
    StageFn,
    StepOutput,
    stage,
)

U8Image = npt.NDArray[np.uint8]
F32Array = npt.NDArray[np.float32]

BUILTIN_STAGES: tuple[str, ...] = (
    "load",
    "resize",
    "crop",
    "grayscale",
    "blur",
    "edges",
    "normalise",
    "classify_onnx",
    "detect_onnx",
    "segment_onnx",
    "regress_onnx",
)

LOAD_MODES: tuple[str, ...] = ("RGB", "L")
# item.meta key of the crops applied to the item's image since it was loaded, in order:
# ``{"box": [x0, y0, x1, y1], "size": [w, h]}`` (pixels of the image the crop received), so that a
# later stage can map ground truth given in the file's pixels onto the cropped image
CROPS_KEY = "_crops"

# Errors Pillow raises for unreadable, truncated, hostile or non-image files. DecompressionBombError
# is not an OSError, and some plugins raise SyntaxError/EOFError on malformed headers.
_PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


# --- parameter and input validation -------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(stage_name: str, name: str, value: Any) -> int:
    """An integer ≥ 1; integral floats (YAML/JSON ``64.0``) are accepted."""
    if _is_number(value) and float(value).is_integer() and value >= 1:
        return int(value)
    raise StageError(f"{stage_name}: {name} must be a positive integer, got {value!r}")


def _image(stage_name: str, data: Any) -> U8Image:
    """The previous stage's data as a uint8 H×W or H×W×3 array (PIL images are converted)."""
    if isinstance(data, Image.Image):
        data = np.asarray(data.convert("L" if data.mode in ("L", "1", "I;16") else "RGB"))
    if not isinstance(data, np.ndarray):
        raise StageError(
            f"{stage_name}: expected an image array from the previous stage, got {type(data).__name__}"
        )
    if data.dtype != np.uint8:
        raise StageError(f"{stage_name}: expected a uint8 image, got dtype {data.dtype}")
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)):
        raise StageError(f"{stage_name}: expected an H×W or H×W×3 image, got shape {data.shape}")
    if data.size == 0:
        raise StageError(f"{stage_name}: the image is empty (shape {data.shape})")
    return data


def _to_pil(arr: U8Image) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(arr))


def _to_array(img: Image.Image) -> U8Image:
    return np.asarray(img, dtype=np.uint8).copy()


def _to_grey(arr: U8Image) -> U8Image:
    return arr if arr.ndim == 2 else _to_array(_to_pil(arr).convert("L"))


def _size_metrics(arr: npt.NDArray[Any]) -> dict[str, float]:
    return {"width": float(arr.shape[1]), "height": float(arr.shape[0])}


# --- stages --------------------------------------------------------------------------------------


def read_image(path: Path, *, mode: str = "RGB") -> U8Image:
    """Read an image file as a uint8 array (H×W×3 for ``RGB``, H×W for ``L``).

    EXIF orientation is applied, animated files give their first frame, and Pillow's
    decompression-bomb limit stays on. Raises ``StageError`` with the reason on any failure.
    """
    if mode not in LOAD_MODES:
        raise StageError(f"load: unknown mode {mode!r}; use one of {', '.join(LOAD_MODES)}")
    try:
        with Image.open(path) as img:
            img.seek(0)
            oriented = ImageOps.exif_transpose(img)
            return _to_array(oriented.convert(mode))
    except FileNotFoundError:
        raise StageError(f"load: file not found: {path}") from None
    except Image.DecompressionBombError as exc:
        raise StageError(f"load: refusing {path.name}: {exc}") from exc
    except _PIL_ERRORS as exc:
        raise StageError(f"load: cannot read {path.name} as an image: {exc}") from exc


@stage("load", takes=(ANY,), gives=IMAGE)  # reads the file whatever came before
def load(item: Item, data: Any, *, mode: str = "RGB") -> StepOutput:
    """Open ``item.path`` → uint8 H×W×3 (``mode="RGB"``) or H×W (``mode="L"``)."""
    if item.path is None:
        raise StageError(f"load: item {item.key!r} has no file path")
    arr = read_image(Path(item.path), mode=mode)
    item.meta.pop(CROPS_KEY, None)  # the whole file again: no crop applies any more
    return StepOutput(data=arr, metrics=_size_metrics(arr))


def _target_size(
    src_w: int,
    src_h: int,
    *,
    width: int | None,
    height: int | None,
    max_side: int | None,
    keep_aspect: bool,
) -> tuple[int, int]:
    if max_side is not None:
        scale = max_side / max(src_w, src_h)
    elif width is not None and height is not None:
        if not keep_aspect:
            return width, height
        scale = min(width / src_w, height / src_h)  # fit inside the box
    elif width is not None:
        if not keep_aspect:
            return width, src_h
        scale = width / src_w
    else:
        assert height is not None
        if not keep_aspect:
            return src_w, height
        scale = height / src_h
    return max(1, round(src_w * scale)), max(1, round(src_h * scale))


@stage("resize", takes=(IMAGE,), gives=IMAGE)
def resize(
    item: Item,
    data: Any,
    *,
    width: int | None = None,
    height: int | None = None,
    max_side: int | None = None,
    keep_aspect: bool = True,
) -> StepOutput:
    """Resize with Lanczos. Give ``width`` and/or ``height``, or ``max_side`` (the longer side).

    With ``keep_aspect`` a single side scales the other; both sides fit the image inside the box.
    Without it, the given sides are used as they are. Same layout in and out (H×W or H×W×3).
    """
    img = _image("resize", data)
    w = None if width is None else _positive_int("resize", "width", width)
    h = None if height is None else _positive_int("resize", "height", height)
    m = None if max_side is None else _positive_int("resize", "max_side", max_side)
    if not isinstance(keep_aspect, bool):
        raise StageError(f"resize: keep_aspect must be true or false, got {keep_aspect!r}")
    by_sides = w is not None or h is not None
    if by_sides == (m is not None):
        raise StageError(
            "resize: give exactly one way of sizing: width and/or height, or max_side"
            + (" (not both)" if by_sides else "")
        )
    src_h, src_w = img.shape[:2]
    new_w, new_h = _target_size(src_w, src_h, width=w, height=h, max_side=m, keep_aspect=keep_aspect)
    if (new_w, new_h) == (src_w, src_h):
        out = img.copy()
    else:
        out = _to_array(_to_pil(img).resize((new_w, new_h), Image.Resampling.LANCZOS))
    metrics = _size_metrics(out) | {"scale_x": new_w / src_w, "scale_y": new_h / src_h}
    return StepOutput(data=out, outputs=[(out, "resized", "")], metrics=metrics)


@stage("crop", takes=(IMAGE,), gives=IMAGE)
def crop(item: Item, data: Any, *, box: Sequence[float], normalised: bool = False) -> StepOutput:
    """Crop ``box = [x, y, w, h]``: pixels, or fractions of the image in [0, 1] with ``normalised``.

    The box must lie inside the image; a normalised box is rounded to whole pixels (at least one).
    """
    img = _image("crop", data)
    if not isinstance(normalised, bool):
        raise StageError(f"crop: normalised must be true or false, got {normalised!r}")
    if (
        isinstance(box, str | bytes)
        or not isinstance(box, Sequence)
        or len(box) != 4
        or not all(_is_number(v) for v in box)
    ):
        raise StageError(f"crop: box must be four numbers [x, y, w, h], got {box!r}")
    img_h, img_w = img.shape[:2]
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise StageError(f"crop: box {list(box)} needs x, y ≥ 0 and w, h > 0")
    if normalised:
        if x + w > 1 or y + h > 1:
            raise StageError(f"crop: normalised box {list(box)} is outside the image (x + w and y + h ≤ 1)")
        x0, y0 = min(round(x * img_w), img_w - 1), min(round(y * img_h), img_h - 1)
        x1, y1 = max(round((x + w) * img_w), x0 + 1), max(round((y + h) * img_h), y0 + 1)
    else:
        if not all(float(v).is_integer() for v in box):
            raise StageError(f"crop: pixel box {list(box)} must be whole numbers (or set normalised: true)")
        x0, y0, x1, y1 = int(x), int(y), int(x + w), int(y + h)
        if x1 > img_w or y1 > img_h:
            raise StageError(f"crop: box {list(box)} is outside the {img_w}×{img_h} image")
    out = img[y0:y1, x0:x1].copy()
    item.meta.setdefault(CROPS_KEY, []).append({"box": [x0, y0, x1, y1], "size": [img_w, img_h]})
    return StepOutput(data=out, metrics=_size_metrics(out) | {"x": float(x0), "y": float(y0)})


@stage("grayscale", takes=(IMAGE,), gives=IMAGE)
def grayscale(item: Item, data: Any) -> StepOutput:
    """RGB → grey (ITU-R 601-2 luma), uint8 H×W; a grey image passes through unchanged."""
    out = _to_grey(_image("grayscale", data)).copy()
    return StepOutput(
        data=out,
        metrics={"mean_intensity": float(out.mean()), "std_intensity": float(out.std())},
    )


@stage("blur", takes=(IMAGE,), gives=IMAGE)
def blur(item: Item, data: Any, *, radius: float = 2.0) -> StepOutput:
    """Gaussian blur with ``radius`` (pixels, ≥ 0; 0 leaves the image unchanged). Same layout out."""
    img = _image("blur", data)
    if not _is_number(radius) or radius < 0:
        raise StageError(f"blur: radius must be a number ≥ 0, got {radius!r}")
    if radius == 0:
        out = img.copy()
    else:
        out = _to_array(_to_pil(img).filter(ImageFilter.GaussianBlur(radius=float(radius))))
    change = np.abs(out.astype(np.int16) - img.astype(np.int16)).mean()
    return StepOutput(data=out, metrics={"radius": float(radius), "mean_abs_change": float(change)})


def sobel_magnitude(grey: U8Image) -> F32Array:
    """Sobel gradient magnitude of an H×W image, float32 H×W, borders replicated.

    A full black-to-white step gives 1020 on each side of the edge.
    """
    p = np.pad(grey.astype(np.float32), 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy).astype(np.float32)


@stage("edges", takes=(IMAGE,), gives=IMAGE)
def edges(item: Item, data: Any, *, threshold: float | None = None) -> StepOutput:
    """Edge strength as uint8 H×W (Sobel magnitude / 4, clipped: a black/white step → 255).

    With ``threshold`` (0–255) the result is a binary mask (0 or 255) of strength ≥ threshold.
    Metrics: ``edge_fraction`` (share of pixels in the mask, or with any edge response without a
    threshold) and ``mean_edge`` (mean strength in [0, 1]).
    """
    grey = _to_grey(_image("edges", data))
    if threshold is not None and (not _is_number(threshold) or not 0 <= threshold <= 255):
        raise StageError(f"edges: threshold must be a number in [0, 255], got {threshold!r}")
    # Sobel rather than Pillow's FIND_EDGES: Pillow copies the border pixels through unfiltered,
    # which reads as a frame of false edges around every image.
    strength = np.clip(sobel_magnitude(grey) / 4.0, 0, 255).round().astype(np.uint8)
    if threshold is None:
        out = strength
        fraction = float((strength > 0).mean())
    else:
        mask = strength >= threshold
        out = np.where(mask, 255, 0).astype(np.uint8)
        fraction = float(mask.mean())
    return StepOutput(
        data=out, metrics={"edge_fraction": fraction, "mean_edge": float(strength.mean()) / 255.0}
    )


def _per_channel(stage_name: str, name: str, value: Any, channels: int) -> F32Array:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or not all(_is_number(v) for v in value)
    ):
        raise StageError(f"{stage_name}: {name} must be a number or a list of numbers, got {value!r}")
    if len(value) not in (1, channels):
        raise StageError(
            f"{stage_name}: {name} has {len(value)} values but the image has {channels} channel(s)"
        )
    arr = np.asarray(value, dtype=np.float32)
    return np.broadcast_to(arr, (channels,)).reshape(channels, 1, 1)


@stage("normalise", takes=(IMAGE,), gives=ARRAY)
def normalise(
    item: Item,
    data: Any,
    *,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> StepOutput:
    """uint8 H×W×3 (or H×W) → float32 C×H×W tensor ``(x / 255 - mean) / std``.

    ``mean``/``std`` give one value per channel (or one for all); a grey image has one channel,
    so it needs one-value ``mean``/``std``. The tensor is also returned as artifact ``tensor``.
    """
    img = _image("normalise", data)
    chw = img[np.newaxis] if img.ndim == 2 else img.transpose(2, 0, 1)
    channels = chw.shape[0]
    m = _per_channel("normalise", "mean", mean, channels)
    s = _per_channel("normalise", "std", std, channels)
    if np.any(s <= 0):
        raise StageError(f"normalise: std values must be > 0, got {list(std)}")
    tensor = np.ascontiguousarray((chw.astype(np.float32) / 255.0 - m) / s, dtype=np.float32)
    return StepOutput(
        data=tensor,
        artifacts={"tensor": tensor},
        metrics={"mean": float(tensor.mean()), "std": float(tensor.std())},
    )


# --- custom stages -------------------------------------------------------------------------------


def load_custom(import_path: str) -> StageFn:
    """Resolve ``"package.module:function"`` (or ``"package.module.function"``) to a callable.

    Only the named module is imported (running its top-level code, as any import does); the
    function is not called. Raises ``StageError`` for a malformed path, a module that cannot be
    imported, a missing attribute or one that is not callable.
    """
    if not isinstance(import_path, str) or not import_path.strip():
        raise StageError(f"custom: expected 'package.module:function', got {import_path!r}")
    text = import_path.strip()
    if text.count(":") > 1:
        raise StageError(f"custom: {text!r} has more than one ':'; use 'package.module:function'")
    module_name, sep, attr = text.partition(":")
    if not sep:
        module_name, _, attr = text.rpartition(".")
    parts = module_name.split(".") if module_name else []
    if not parts or not all(p.isidentifier() for p in parts) or not attr.isidentifier():
        raise StageError(f"custom: {text!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise StageError(f"custom: cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module's own import-time failure, reported with its reason
        raise StageError(f"custom: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise StageError(f"custom: module {module_name!r} has no attribute {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise StageError(f"custom: {text!r} is a {type(fn).__name__}, not a callable")
    result: StageFn = fn
    return result


# --- ONNX classification -------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxClassifier:
    """A loaded ONNX classifier and the preprocessing read from its metadata props."""

    session: Any  # onnxruntime.InferenceSession
    input_name: str
    input_dtype: type[np.floating[Any]]
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...] | None
    # vistudio's own exports embed their exact preprocessing (ml/preprocess) as JSON: used when present
    preprocess: dict[str, Any] | None = None


def _import_onnxruntime() -> Any:
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise StageError("onnxruntime is not installed: pip install onnxruntime") from None


def _floats3(path: Path, key: str, text: str | None) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in (text or "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise StageError(f"classify_onnx: {path.name}: metadata {key!r} must be 'r,g,b', got {text!r}")
    return values[0], values[1], values[2]


def _open_classifier(path: Path) -> OnnxClassifier:
    ort = _import_onnxruntime()
    wanted = ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()] or None
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime's own exception types (bad protobuf, unsupported op…)
        raise StageError(f"classify_onnx: cannot load model {path.name}: {exc}") from exc
    props: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
    size_text = props.get("input_size")
    try:
        hw = tuple(int(v) for v in (size_text or "").split(","))
    except ValueError:
        hw = ()
    if len(hw) != 2 or min(hw) < 1:
        raise StageError(
            f"classify_onnx: {path.name}: metadata 'input_size' must be 'H,W', got {size_text!r}"
        )
    names: tuple[str, ...] | None = None
    if "class_names" in props:
        try:
            parsed = json.loads(props["class_names"])
        except json.JSONDecodeError as exc:
            raise StageError(f"classify_onnx: {path.name}: metadata 'class_names' is not JSON") from exc
        if not isinstance(parsed, list) or not parsed:
            raise StageError(f"classify_onnx: {path.name}: metadata 'class_names' must be a JSON list")
        names = tuple(str(n) for n in parsed)
    preprocess: dict[str, Any] | None = None
    if "preprocess" in props:
        try:
            preprocess = json.loads(props["preprocess"])
        except json.JSONDecodeError as exc:
            raise StageError(f"classify_onnx: {path.name}: metadata 'preprocess' is not JSON") from exc
        if not isinstance(preprocess, dict) or not {"input_size", "mean", "std", "scale"} <= set(preprocess):
            raise StageError(
                f"classify_onnx: {path.name}: metadata 'preprocess' lacks input_size/mean/std/scale"
            )
    model_input = session.get_inputs()[0]
    dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
    return OnnxClassifier(
        session=session,
        input_name=model_input.name,
        input_dtype=dtype,
        input_size=(hw[0], hw[1]),
        mean=_floats3(path, "mean", props.get("mean")),
        std=_floats3(path, "std", props.get("std")),
        class_names=names,
        preprocess=preprocess,
    )


class OnnxSessionCache:
    """Loaded ONNX models by ``(resolved path, mtime_ns)``, least recently used dropped first.

    This class-level cache is the one piece of process-wide mutable state in the stages: loading
    an ONNX session costs far more than running one image, and a pipeline calls the stage once per
    item. It is bounded (``maxsize`` entries), keyed by modification time so a re-exported model
    is picked up, and guarded by a lock because the runner may call stages from several threads.
    """

    maxsize: ClassVar[int] = 4
    _entries: ClassVar[OrderedDict[tuple[str, int, str], Any]] = OrderedDict()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def get(cls, model: str | Path) -> OnnxClassifier:
        classifier: OnnxClassifier = cls.load(model, "classify_onnx", _open_classifier)
        return classifier

    @classmethod
    def load(cls, model: str | Path, stage_name: str, opener: Any) -> Any:
        """``opener(resolved path)`` cached by file and version and by what opened it."""
        path = Path(model).expanduser()
        try:
            resolved = path.resolve(strict=True)
            mtime = resolved.stat().st_mtime_ns
        except OSError:
            raise StageError(f"{stage_name}: model file not found: {model}") from None
        if not resolved.is_file():
            raise StageError(f"{stage_name}: model is not a file: {model}")
        key = (str(resolved), mtime, stage_name)
        with cls._lock:
            hit = cls._entries.get(key)
            if hit is not None:
                cls._entries.move_to_end(key)
                return hit
        # Loaded outside the lock so one slow model does not hold up other threads; two threads
        # loading the same new model at once both succeed and the second simply replaces the first.
        loaded = opener(resolved)
        with cls._lock:
            for old in [k for k in cls._entries if k[0] == key[0] and k[2] == key[2]]:
                del cls._entries[old]  # an older version of the same file
            cls._entries[key] = loaded
            while len(cls._entries) > cls.maxsize:
                cls._entries.popitem(last=False)
        return loaded

    @classmethod
    def clear(cls) -> None:
        with cls._lock:
            cls._entries.clear()

    @classmethod
    def size(cls) -> int:
        with cls._lock:
            return len(cls._entries)


def _softmax(logits: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    result: npt.NDArray[np.float64] = e / e.sum()
    return result


@stage("classify_onnx", takes=(IMAGE, FILE), gives=LABEL)
def classify_onnx(item: Item, data: Any, *, model: str, top_k: int = 5) -> StepOutput:
    """Classify the image with an exported ONNX classifier (onnxruntime, imported on first use).

    Preprocessing comes from the model's metadata props (``input_size`` "H,W", ``mean`` and ``std``
    "r,g,b", ``class_names`` JSON list): bilinear resize to H×W, /255, (x - mean) / std, 1×3×H×W.
    Models exported by vistudio also carry ``preprocess`` (JSON), applied through
    ``vistudio.ml.preprocess`` exactly as evaluation and ``vistudio predict`` apply it.
    With no previous data the image is read from ``item.path``. Returns ``{"label", "confidence",
    "top_k": [[name, p], ...]}``; metrics ``confidence`` (and ``correct`` when the item has a
    ground truth).
    """
    k = _positive_int("classify_onnx", "top_k", top_k)
    if not isinstance(model, str | Path) or not str(model).strip():
        raise StageError(f"classify_onnx: model must be a path to an .onnx file, got {model!r}")
    if data is None:
        if item.path is None:
            raise StageError(f"classify_onnx: item {item.key!r} has no image data and no file path")
        data = read_image(Path(item.path))
    img = _image("classify_onnx", data)
    clf = OnnxSessionCache.get(model)
    rgb = np.repeat(img[:, :, np.newaxis], 3, axis=2) if img.ndim == 2 else img
    if clf.preprocess is not None:  # exactly what vistudio's evaluation and `vistudio predict` do
        from vistudio.ml.preprocess import eval_array

        batch = eval_array(_to_pil(rgb), clf.preprocess)[np.newaxis].astype(clf.input_dtype)
    else:
        h, w = clf.input_size
        # Bilinear (antialiased in Pillow) matches torchvision's default Resize used at training time.
        resized = _to_array(_to_pil(rgb).resize((w, h), Image.Resampling.BILINEAR))
        x = (resized.astype(np.float32) / 255.0 - np.asarray(clf.mean, np.float32)) / np.asarray(
            clf.std, np.float32
        )
        batch = x.transpose(2, 0, 1)[np.newaxis].astype(clf.input_dtype)
    try:
        logits = np.asarray(clf.session.run(None, {clf.input_name: batch})[0])
    except Exception as exc:  # onnxruntime's own error types: shape or type mismatch
        raise StageError(f"classify_onnx: running {Path(model).name} failed: {exc}") from exc
    if logits.ndim != 2 or logits.shape[0] != 1 or logits.shape[1] < 1:
        raise StageError(f"classify_onnx: expected logits of shape (1, classes), got {logits.shape}")
    probs = _softmax(logits[0])
    names = clf.class_names
    if names is not None and len(names) != probs.shape[0]:
        raise StageError(
            f"classify_onnx: the model has {probs.shape[0]} outputs but {len(names)} class_names"
        )
    labels = names if names is not None else tuple(str(i) for i in range(probs.shape[0]))
    order = np.argsort(-probs, kind="stable")[: min(k, probs.shape[0])]
    ranked = [(labels[i], float(probs[i])) for i in order]
    label, confidence = ranked[0]
    metrics = {"confidence": confidence}
    if item.ground_truth is not None:
        metrics["correct"] = float(label == item.ground_truth)
    return StepOutput(
        data={"label": label, "confidence": confidence, "top_k": [[n, p] for n, p in ranked]},
        metrics=metrics,
    )


# --- ONNX detection --------------------------------------------------------------------------------


def _open_detector(path: Path) -> Any:
    """The detector of an exported file: an ``OnnxDetector``, or an ``OnnxOrientedDetector`` for an
    oriented detection model (its task read from the file's metadata)."""
    _import_onnxruntime()
    from vistudio.errors import VistudioError
    from vistudio.ml.inference.onnx import OnnxDetector, model_task
    from vistudio.ml.inference.onnx_oriented import OnnxOrientedDetector, is_oriented_task

    try:
        if is_oriented_task(model_task(path)):
            return OnnxOrientedDetector(path)
        return OnnxDetector(path)
    except VistudioError as exc:  # not ONNX, no vistudio metadata, a classifier, wrong outputs
        raise StageError(f"detect_onnx: {exc.message}") from None


def _summary(names: list[str]) -> str:
    """``"2 rectangle, 1 ellipse"`` (most frequent first), ``"nothing"`` for no object."""
    if not names:
        return "nothing"
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return ", ".join(f"{c} {n}" for n, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _to_image(
    item: Item, size: tuple[int, int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], bool]:
    """The map from the pixels of the item's file (``item.meta["width"]``×``["height"]``; ``size``
    when unknown) to those of the ``size`` (w, h) image a stage received: ``(scale, offset,
    cropped)``, a point ``p`` going to ``p · scale + offset``. Image stages before it are
    followed: resizes scale, and each ``crop`` (recorded under :data:`CROPS_KEY`) moves the
    origin to its corner; ``cropped`` says whether any did, so that ground truth is cut to the
    image (what lies outside it was cut away)."""
    scale, offset = np.ones(2), np.zeros(2)
    # the frame the points are in: the file's pixels, then each crop's output
    frame = np.array([float(item.meta.get("width") or size[0]), float(item.meta.get("height") or size[1])])
    crops = item.meta.get(CROPS_KEY)
    crops = crops if isinstance(crops, list) else []
    for crop in crops:
        (x0, y0, x1, y1), (w, h) = crop["box"], crop["size"]
        step = np.array([w, h], dtype=np.float64) / np.maximum(frame, 1.0)  # to the crop's input image
        scale, offset = scale * step, offset * step - [x0, y0]
        frame = np.array([x1 - x0, y1 - y0], dtype=np.float64)
    step = np.array(size, dtype=np.float64) / np.maximum(frame, 1.0)
    return scale * step, offset * step, bool(crops)


def _truths(item: Item, classes: list[str], size: tuple[int, int]) -> Any | None:
    """The item's ground-truth objects (``item.meta["objects"]``: ``{"class", "box" [x1, y1, x2,
    y2] in the pixels of ``item.meta["width"]``×``["height"]``, "iscrowd"}``) in the pixels of the
    image the detector saw, as the evaluation's :class:`Truths`; None when the item has none.

    Image stages before the detector are followed (:func:`_to_image`): resizes scale the boxes,
    and after a ``crop`` each box is clipped to the kept region and left out when nothing of it is
    left, as the crop left its object out of the image."""
    objects = item.meta.get("objects")
    if not isinstance(objects, list):
        return None
    from vistudio.ml.inference.detection_matching import Truths

    index = {name: i for i, name in enumerate(classes)}
    rows, raw, ignored = [], [], []
    for obj in objects:
        box = obj.get("box") if isinstance(obj, dict) else None
        if not (isinstance(box, list | tuple) and len(box) == 4 and all(_is_number(v) for v in box)):
            continue
        rows.append(index.get(str(obj.get("class")), -1))  # a class the model does not know: missed
        raw.append([float(v) for v in box])
        ignored.append(bool(obj.get("iscrowd")))
    scale, offset, cropped = _to_image(item, size)
    boxes = np.asarray(raw, dtype=np.float64).reshape(-1, 4) * np.tile(scale, 2) + np.tile(offset, 2)
    keep = np.ones(len(boxes), dtype=bool)
    if cropped:
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, size[0])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, size[1])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Truths.from_lists(
        [r for r, k in zip(rows, keep, strict=True) if k],
        boxes[keep].tolist(),
        [g for g, k in zip(ignored, keep, strict=True) if k],
    )


@stage("detect_onnx", takes=(IMAGE, FILE), gives=LABEL)
def detect_onnx(
    item: Item,
    data: Any,
    *,
    model: str,
    score_threshold: float | None = None,
    iou: float = 0.5,
) -> StepOutput:
    """Find objects with a detector exported by vistudio (``vistudio export``; onnxruntime).

    With no previous data the image is read from ``item.path`` exactly as ``vistudio predict``
    and the evaluation read it (detections in the image's own pixels); after an image stage the
    detector runs on that image. ``score_threshold`` keeps the detections scoring at least it
    (default: the one the exported file records, see ``vistudio export``). Returns ``{"label": "2 rectangle, 1 ellipse", "count",
    "detections": [{"label", "class_index", "score", "box" [x1, y1, x2, y2], "mask"?}]}`` and
    saves the image with its detections drawn (``overlay``) and the detections (``detections``
    JSON). An oriented detector's detections are rotated boxes, ``{"label", "class_index",
    "score", "points" (4 corners), "rbox" [cx, cy, w, h, θ radians], "box" (their bounds)}`` as
    ``vistudio predict`` and the evaluation give them.

    When the item has ground-truth objects (a detection, instance segmentation or oriented
    detection project's images), detections are matched to them by the evaluation's matching —
    boxes at IoU ≥ ``iou``, crowd regions ignored, after a ``crop`` stage the objects cut to the
    kept region; rotated boxes by the oriented evaluation's (the DOTA devkit's rule: predictions
    in decreasing score, each to the object of its class with the largest rotated IoU, a match
    above ``iou``; difficult objects ignored; see ``pipelines/oriented``) —: the result's
    ``truth`` (the objects, as ``label`` says the detections), ``tp``, ``fp``, ``fn``,
    ``outcomes`` (each detection's: ``tp``, ``fp`` or ``ignored``) and ``mistaken``; metrics
    ``tp``, ``fp``, ``fn``. The item counts as a mistake when any prediction is a false positive
    or any object is missed, and the saved image shows true positives green, false positives red
    and missed objects dashed orange.
    """
    if not isinstance(model, str | Path) or not str(model).strip():
        raise StageError(f"detect_onnx: model must be a path to an .onnx file, got {model!r}")
    if score_threshold is not None and (not _is_number(score_threshold) or not 0 <= score_threshold <= 1):
        raise StageError(f"detect_onnx: score_threshold must be a number in [0, 1], got {score_threshold!r}")
    if not _is_number(iou) or not 0 < iou < 1:
        raise StageError(f"detect_onnx: iou must be a number between 0 and 1 (exclusive), got {iou!r}")
    det = OnnxSessionCache.load(model, "detect_onnx", _open_detector)
    if data is None:
        if item.path is None:
            raise StageError(f"detect_onnx: item {item.key!r} has no image data and no file path")
        from vistudio.ml.inference.onnx import detection_input

        try:
            chw, _, original = detection_input(item.path, det.image_size)
        except FileNotFoundError:
            raise StageError(f"detect_onnx: file not found: {item.path}") from None
        except _PIL_ERRORS as exc:
            raise StageError(f"detect_onnx: cannot read {Path(item.path).name} as an image: {exc}") from exc
        from vistudio.ml.preprocess import open_rgb

        picture = open_rgb(item.path)
    else:
        img = _image("detect_onnx", data)
        rgb = np.repeat(img[:, :, np.newaxis], 3, axis=2) if img.ndim == 2 else img
        chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)
        original = (rgb.shape[1], rgb.shape[0])
        picture = _to_pil(rgb)
    from vistudio.ml.inference.onnx_oriented import OnnxOrientedDetector

    if isinstance(det, OnnxOrientedDetector):  # rotated boxes
        from vistudio.pipelines.oriented import detect_oriented

        return detect_oriented(
            item, det, chw, original, picture, score_threshold=score_threshold, iou=float(iou)
        )
    try:
        found = det.detect(chw, original_size=original)
    except Exception as exc:  # onnxruntime's failure on this input, reported with its reason
        raise StageError(f"detect_onnx: {getattr(exc, 'message', exc)}") from exc
    found = found.above(float(score_threshold) if score_threshold is not None else det.score_threshold)
    classes = list(det.classes)
    names = [classes[int(k)] if 0 <= int(k) < len(classes) else str(int(k)) for k in found.labels]
    result: dict[str, Any] = {
        "label": _summary(names),
        "count": len(found),
        "detections": found.to_list(classes),
    }
    metrics: dict[str, float] = {"detections": float(len(found))}
    if len(found):
        metrics["max_score"] = float(found.scores.max())
    truths = _truths(item, classes, original)
    if truths is None:
        from vistudio.ml.inference.overlays import draw_detections

        overlay = draw_detections(picture, found, classes)
    else:
        from vistudio.ml.inference.detection_matching import match_image
        from vistudio.ml.inference.overlays import draw_outcomes

        matched = match_image(truths, found, iou_threshold=float(iou))
        tp = sum(o == "tp" for o in matched.pred_outcome)
        fp = sum(o == "fp" for o in matched.pred_outcome)
        fn = sum(o == "fn" for o in matched.truth_outcome)
        metrics |= {"tp": float(tp), "fp": float(fp), "fn": float(fn)}
        truth_names = [classes[int(k)] if 0 <= int(k) < len(classes) else "?" for k in truths.classes]
        result |= {
            "truth": _summary([n for n, ig in zip(truth_names, truths.ignored, strict=True) if not ig]),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "outcomes": list(matched.pred_outcome),
            "mistaken": bool(fp or fn),
        }
        overlay = draw_outcomes(
            picture, found, matched.pred_outcome, truths.boxes, matched.truth_outcome, classes
        )
    return StepOutput(
        data=result,
        outputs=[(_to_array(overlay), "overlay", "png"), (result, "detections", "json")],
        metrics=metrics,
    )


# registers ``regress_onnx`` and ``segment_onnx``; imported last because it borrows this module's helpers when it runs
from vistudio.pipelines.regression import regress_onnx  # noqa: E402, F401 - a stage of this module
from vistudio.pipelines.segmentation import segment_onnx  # noqa: E402, F401 - a stage of this module
