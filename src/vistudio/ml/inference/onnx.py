"""Run an exported vistudio classifier with ONNX Runtime alone (no torch import, ever).

An exported model carries everything needed to use it in its ONNX ``metadata_props``
(:data:`METADATA_FORMAT` under the key ``vistudio``): class names, the model name and the exact
evaluation preprocessing of :mod:`vistudio.ml.preprocess` as a JSON dict. ``input_size`` ("H,W"),
``mean`` and ``std`` ("r,g,b") and ``class_names`` (a JSON list) are also written in the flat form
that the ``classify_onnx`` pipeline stage reads. Prediction applies exactly that preprocessing, so
``vistudio predict`` gives the evaluation's predictions for the same images.
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

METADATA_FORMAT = "vistudio-model/1"
FORMAT_KEY = "vistudio"


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


class OnnxClassifier:
    """An exported vistudio classifier in an ONNX Runtime session (CPU unless told otherwise)."""

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise NotFound(f"model file not found: {self.path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types: not protobuf, bad graph…
            raise InvalidInput(f"not a loadable ONNX model: {self.path.name}: {exc}") from None
        self.props: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
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
