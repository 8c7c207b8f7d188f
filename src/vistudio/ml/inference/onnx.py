"""Run an exported vistudio classifier with ONNX Runtime alone (no torch import, ever).

An exported model carries everything needed to use it in its ONNX ``metadata_props``
(:data:`METADATA_FORMAT` under the key ``vistudio``): class names, the model name and the exact
evaluation preprocessing of :mod:`vistudio.ml.preprocess` as a JSON dict. ``input_size`` ("H,W"),
``mean`` and ``std`` ("r,g,b") and ``class_names`` (a JSON list) are also written in the flat form
that the ``classify_onnx`` pipeline stage reads. Prediction applies exactly that preprocessing, so
``vistudio predict`` gives the evaluation's predictions for the same images.

Detectors (models of a task whose targets are objects — ``TaskSpec.is_detector`` of the task in
the file's metadata —, see :mod:`vistudio.ml.export.detection`) are run by :class:`OnnxDetector`, one image per call, with the decode of PyTorch evaluation: the
image upright in RGB (a JPEG drafted down to the model's image size at the least), scaled to 0..1
at its decoded size (the model resizes and normalises inside); its outputs become
:class:`~vistudio.ml.inference.detections.Detections` in the image's own pixels. Torch is imported
only to resize the masks of a JPEG that was decoded smaller than it is. A detector's file records
the score threshold to use with it (``score_threshold``, see :mod:`vistudio.services.exports`);
its graph keeps detections down to ``graph_score_threshold`` (lower or equal), and
:meth:`OnnxDetector.predict_files` keeps those that score at least the recorded threshold unless
given another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vistudio.errors import InvalidInput, NotFound
from vistudio.ml.inference.metrics import softmax, top_k
from vistudio.ml.preprocess import eval_array, open_rgb
from vistudio.ml.tasks import TaskSpec, get_task

METADATA_FORMAT = "vistudio-model/1"
FORMAT_KEY = "vistudio"


def task_spec(task: str) -> TaskSpec | None:
    """The registered task of this name, None when this version does not know it."""
    try:
        return get_task(task)
    except (KeyError, TypeError):  # a name the registry does not hold
        return None


def is_detector_task(task: str) -> bool:
    """Whether a model of ``task`` is a detector (the task's targets are objects)."""
    spec = task_spec(task)
    return spec is not None and spec.is_detector


def metadata_props(
    *,
    model: str,
    classes: list[str],
    preprocess: dict[str, Any],
    task: str = "classification",
    extra: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The string→string metadata embedded in exported models (ONNX metadata_props, TorchScript
    extra files). ``extra`` values that are not strings are JSON-encoded."""
    size = preprocess["input_size"]
    props = {
        FORMAT_KEY: METADATA_FORMAT,
        "task": task,
        "model": model,
        "class_names": json.dumps(list(classes)),
        "num_classes": str(len(classes)),
        "preprocess": json.dumps(preprocess, sort_keys=True),
        "input_size": f"{int(size[0])},{int(size[1])}",
        "mean": ",".join(repr(float(v)) for v in preprocess["mean"]),
        "std": ",".join(repr(float(v)) for v in preprocess["std"]),
        "input_name": "input",
        "output_name": "logits",
    }
    for key, value in (extra or {}).items():
        props[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return props


def parse_metadata(props: dict[str, str], *, source: str) -> tuple[list[str], dict[str, Any]]:
    """``(class names, preprocess dict)`` from embedded metadata; a clear 422 when it is missing."""
    if props.get(FORMAT_KEY) != METADATA_FORMAT:
        raise InvalidInput(
            f"{source} has no vistudio metadata (class names and preprocessing); "
            "export the model with `vistudio export` so that it carries them",
            details={"found_keys": sorted(props)[:20]},
        )
    try:
        classes = json.loads(props["class_names"])
        preprocess = json.loads(props["preprocess"])
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"{source}: damaged vistudio metadata ({exc})") from None
    if not isinstance(classes, list) or not classes or not isinstance(preprocess, dict):
        raise InvalidInput(f"{source}: damaged vistudio metadata (class_names or preprocess)")
    for key in ("input_size", "mean", "std", "scale"):
        if key not in preprocess:
            raise InvalidInput(f"{source}: the preprocessing metadata lacks {key!r}")
    return [str(c) for c in classes], preprocess


@dataclass
class Prediction:
    path: str
    label: str
    index: int
    confidence: float
    top_k: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": self.label,
            "index": self.index,
            "confidence": self.confidence,
            "top_k": self.top_k,
        }


def open_model(path: str | Path, providers: list[str] | None) -> tuple[Path, Any, dict[str, str]]:
    """An exported vistudio model's file in an ONNX Runtime session (CPU unless ``providers`` say
    otherwise): its path, the session and the metadata the export wrote; a missing file is a 404,
    a file ONNX Runtime cannot load a clear 400."""
    import onnxruntime as ort

    file = Path(path)
    if not file.is_file():
        raise NotFound(f"model file not found: {file}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    try:
        session = ort.InferenceSession(
            str(file), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's own error types: not protobuf, bad graph…
        raise InvalidInput(f"not a loadable ONNX model: {file.name}: {exc}") from None
    return file, session, dict(session.get_modelmeta().custom_metadata_map)


class OnnxClassifier:
    """An exported vistudio classifier in an ONNX Runtime session (CPU unless told otherwise)."""

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        self.path, self.session, self.props = open_model(path, providers)
        self.classes, self.preprocess = parse_metadata(self.props, source=self.path.name)
        self.input_name = self.session.get_inputs()[0].name
        self.model = self.props.get("model", "")

    def logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """N×C×H×W float32 → N×num_classes logits."""
        out = np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != len(self.classes):
            raise InvalidInput(
                f"{self.path.name}: outputs of shape {out.shape} do not match {len(self.classes)} classes"
            )
        return out

    def predict_files(
        self, paths: list[Path], *, k: int = 5, batch_size: int = 32
    ) -> tuple[list[Prediction], list[dict[str, str]]]:
        """Predictions for readable images, and ``{"path", "reason"}`` for the others (in order)."""
        predictions: list[Prediction] = []
        errors: list[dict[str, str]] = []
        size = max(self.preprocess["input_size"])
        pending: list[tuple[str, npt.NDArray[np.float32]]] = []

        def flush() -> None:
            if not pending:
                return
            batch = np.stack([a for _, a in pending])
            probs = softmax(self.logits(batch))
            idx, p = top_k(probs, k)
            for row, (name, _) in enumerate(pending):
                ranked: list[dict[str, Any]] = [
                    {"label": self.classes[int(c)], "index": int(c), "probability": float(v)}
                    for c, v in zip(idx[row], p[row], strict=True)
                ]
                best = int(idx[row, 0])
                predictions.append(
                    Prediction(
                        path=name,
                        label=self.classes[best],
                        index=best,
                        confidence=float(p[row, 0]),
                        top_k=ranked,
                    )
                )
            pending.clear()

        for path in paths:
            try:
                arr = eval_array(open_rgb(path, draft_size=size), self.preprocess)
            except FileNotFoundError:
                errors.append({"path": str(path), "reason": "file not found"})
                continue
            except Exception as exc:  # Pillow raises many kinds for bad files (bombs are not OSError)
                errors.append({"path": str(path), "reason": f"not a readable image: {exc}"[:300]})
                continue
            pending.append((str(path), arr))
            if len(pending) >= batch_size:
                flush()
        flush()
        return predictions, errors


def collect_images(inputs: list[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files as given, folders walked recursively for image files (by extension), in order."""
    from vistudio.ingest.safepath import walk_images

    files: list[Path] = []
    errors: list[dict[str, str]] = []
    for item in inputs:
        if item.is_dir():
            found, errs = walk_images(item)
            files.extend(found)
            errors.extend({"path": str(item / e.path), "reason": e.reason} for e in errs)
        elif item.exists():
            files.append(item)
        else:
            errors.append({"path": str(item), "reason": "file not found"})
    return files, errors


# --- detectors -------------------------------------------------------------------------------------


def model_task(path: str | Path) -> str:
    """The task an exported ONNX file was trained for (``classification`` when it does not say),
    read from its metadata without building a session."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise NotFound(f"model file not found: {p}")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # not protobuf, truncated, a folder…
        raise InvalidInput(f"not a loadable ONNX model: {p.name}: {exc}") from None
    props = {e.key: e.value for e in proto.metadata_props}
    return props.get("task", "classification")


def detection_input(
    path: str | Path, size: int, *, original: tuple[int, int] | None = None
) -> tuple[npt.NDArray[np.float32], tuple[int, int], tuple[int, int]]:
    """One image for a detector: ``(3×h×w float32 in 0..1, (w, h) decoded, (W, H) original)`` —
    the one decode of every detector's input (evaluation, export check, predict, pipelines).

    Decoded with ``open_rgb(path, draft_size=size)``: upright, RGB, a JPEG drafted down to
    ``size`` at the least; the original size (given, e.g. a sample's stored size, or else read
    from the file) is the upright image's full size, which the detections are scaled back to.
    Torch-free; Pillow's errors (and ``FileNotFoundError``) propagate."""
    from PIL import Image

    if original is None:
        with Image.open(path) as header:
            width, height = header.size
            if header.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that turn it sideways
                width, height = height, width
    else:
        width, height = int(original[0]), int(original[1])
    img = open_rgb(path, draft_size=size)
    arr = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)), img.size, (width, height)


@dataclass
class DetectionPrediction:
    path: str
    width: int
    height: int
    detections: Any  # vistudio.ml.inference.detections.Detections

    def to_dict(self, classes: list[str]) -> dict[str, Any]:
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "detections": self.detections.to_list(classes),
        }


class OnnxDetector:
    """An exported vistudio detector (boxes, or boxes and masks) in an ONNX Runtime session."""

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        self.path, self.session, self.props = open_model(path, providers)
        self.classes, self.preprocess = parse_metadata(self.props, source=self.path.name)
        self.task = self.props.get("task", "classification")
        spec = task_spec(self.task)
        if spec is None or not spec.is_detector:
            raise InvalidInput(f"{self.path.name} is a {self.task[:60]} model, not a detector")
        self.masks = spec.masks
        self.model = self.props.get("model", "")
        self.image_size = int(max(self.preprocess["input_size"]))
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        wanted = ["boxes", "labels", "scores"] + (["masks"] if self.masks else [])
        if len(inputs) != 1 or len(inputs[0].shape) != 3 or any(n not in outputs for n in wanted):
            raise InvalidInput(
                f"{self.path.name}: expected one [3, H, W] input and outputs {', '.join(wanted)}",
                details={"inputs": [i.name for i in inputs], "outputs": outputs},
            )
        self.input_name = inputs[0].name
        self.output_names = wanted
        # what predict keeps by default (see the module's docstring), and where it comes from
        self.score_threshold = min(max(_float_prop(self.props.get("score_threshold"), 0.0), 0.0), 1.0)
        self.score_threshold_source = self.props.get("score_threshold_source", "training")

    def raw(self, image: npt.NDArray[np.float32]) -> list[npt.NDArray[Any]]:
        """The model's outputs (boxes, labels, scores[, masks]) for one ``3×H×W`` image in 0..1."""
        try:
            out = self.session.run(self.output_names, {self.input_name: image})
        except Exception as exc:  # onnxruntime's own error types
            raise InvalidInput(f"{self.path.name}: running the model failed: {exc}") from None
        return [np.asarray(o) for o in out]

    def detect(
        self,
        image: npt.NDArray[np.float32],
        *,
        original_size: tuple[int, int] | None = None,
    ) -> Any:
        """:class:`~vistudio.ml.inference.detections.Detections` of one ``3×h×w`` image in 0..1, in
        the pixels of ``original_size`` (width, height; the image's own size when None)."""
        from vistudio.ml.inference.detections import from_arrays

        outs = self.raw(image)
        size = (int(image.shape[2]), int(image.shape[1]))
        return from_arrays(
            outs[0],
            outs[1],
            outs[2],
            outs[3] if self.masks else None,
            input_size=size,
            original_size=original_size or size,
        )

    def predict_files(
        self, paths: list[Path], *, score_threshold: float | None = None
    ) -> tuple[list[DetectionPrediction], list[dict[str, str]]]:
        """Detections of readable images scoring at least ``score_threshold`` (the file's recorded
        threshold when None), and ``{"path", "reason"}`` for the others (in order)."""
        if score_threshold is None:
            score_threshold = self.score_threshold
        predictions: list[DetectionPrediction] = []
        errors: list[dict[str, str]] = []
        for path in paths:
            try:
                image, _, original = detection_input(path, self.image_size)
            except FileNotFoundError:
                errors.append({"path": str(path), "reason": "file not found"})
                continue
            except Exception as exc:  # Pillow raises many kinds for bad files (bombs are not OSError)
                errors.append({"path": str(path), "reason": f"not a readable image: {exc}"[:300]})
                continue
            dets = self.detect(image, original_size=original).above(score_threshold)
            predictions.append(DetectionPrediction(str(path), original[0], original[1], dets))
        return predictions, errors


def _float_prop(text: str | None, default: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return value if value == value else default  # NaN: the default
