"""Oriented (rotated-box) detectors: the candidate selection shared by PyTorch and ONNX Runtime,
and the runner of exported files (ONNX Runtime and NumPy alone: no torch import, ever).

Rotated NMS is not an ONNX operator, so an oriented detector is exported up to its decoded
candidates (:mod:`vistudio.ml.export.oriented`):

- input ``images``: ``(B, 3, S, S)`` float32, the batch ``OrientedDetector._batch`` builds — each RGB
  image in 0..1 resized bilinearly (``align_corners=False``, no antialias) to fit ``S`` × ``S``
  keeping its aspect ratio, normalised with ImageNet's mean and std, zero-padded at the bottom and
  right; ``B`` is dynamic, ``S`` (the experiment's image size) fixed;
- outputs ``boxes`` ``(B, L, 5)`` (cx, cy, w, h, θ) in the input square's pixels for every location
  (FCOS-style) or anchor (RetinaNet-style) of every pyramid level, ``scores`` ``(B, L, K)`` (FCOS:
  sqrt(sigmoid(class) · sigmoid(centre-ness)); RetinaNet: sigmoid(class)), and ``levels`` ``(L,)``
  int64, the pyramid level of each (constant for a fixed ``S``).

:func:`select_detections` then does what the PyTorch model's post-processing does — **the same
function**, which ``OrientedDetector`` calls on its own tensors' arrays —: per level the candidates
scoring above the score threshold, the best ``PRE_NMS_TOP_N``; over the image the best
``NMS_CANDIDATES``; per-class greedy rotated NMS (:func:`~vistudio.ml.inference.rotated.rotated_nms`)
and the best ``detections_per_image``; boxes divided by the image's resize factor.

:func:`prepare` reproduces ``_batch`` in NumPy bit for bit: the resized size is computed as
PyTorch computes it (Python's ``round``), and the bilinear resize uses PyTorch's arithmetic
(:func:`vistudio.ml.inference.detections._linear_weights`, float32 with one rounding per
multiply-add), so the ONNX file sees exactly the tensor eager PyTorch sees; what differs between
the two runtimes is only the network's own float arithmetic.

Images are decoded as evaluation decodes them (:func:`~vistudio.ml.inference.onnx.detection_input`:
upright, RGB, a JPEG drafted down to ``S`` at the least); detections come back in the pixels of the
image's full size, through its corners (:func:`to_original`, as evaluation's ``to_sample_pixels``).
JSON (:meth:`OrientedDetections.to_list`) uses the keys of the predictions evaluation stores:
``{"label", "class_index", "score", "points" [[x, y] × 4] (DOTA order), "rbox" [cx, cy, w, h, θ]
(θ in radians, the convention of ``ml/inference/rotated``), "box" [x1, y1, x2, y2] (the bounds)}``.

Score threshold: the file records the one predict keeps by default (``score_threshold``) and the
one the export was checked at (``selection_score_threshold``: the lower of it and the training
configuration's, as a detector's graph threshold). Since the selection runs here, a threshold under
both can be asked for: the selection then runs at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vistudio.errors import InvalidInput
from vistudio.ml.inference.rotated import corners_from_cxcywha, cxcywha_from_corners, rotated_nms

TASK = "oriented_detection"
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "levels")
PRE_NMS_TOP_N = 1000  # candidates per level
NMS_CANDIDATES = 300  # candidates per image that reach the (quadratic, NumPy) rotated NMS
BATCH = 8  # images per ONNX Runtime call in predict_files


def is_oriented_task(task: str) -> bool:
    """Whether models of ``task`` find rotated boxes (and so are run by this module)."""
    return task == TASK


# --- the selection -----------------------------------------------------------------------------------


@dataclass
class Selection:
    """One image's detections as the selection leaves them: ``boxes`` ``(N, 5)`` float64 (cx, cy,
    w, h, θ) in the pixels of the image before resizing, ``scores`` ``(N,)`` float32 best first,
    ``labels`` ``(N,)`` int64 class indices; ``cut``, the best score a count limit
    (``PRE_NMS_TOP_N``, ``NMS_CANDIDATES``, ``detections_per_image``) dropped, 0 when none did:
    under it (and at the score threshold) two runtimes may keep different nearly tied candidates."""

    boxes: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    cut: float = 0.0


def _best(values: npt.NDArray[np.float32], n: int) -> tuple[npt.NDArray[np.int64], float]:
    """Indices of the ``n`` best ``values`` (best first; ties keep their order), and the best
    value left out (0 when none is)."""
    order = np.argsort(-values, kind="stable")
    cut = float(values[order[n]]) if len(order) > n else 0.0
    return order[:n], cut


def select_detections(
    boxes: npt.ArrayLike,
    scores: npt.ArrayLike,
    levels: npt.ArrayLike,
    *,
    score_threshold: float,
    nms_iou: float,
    detections_per_image: int,
    scale: float = 1.0,
    pre_nms_top_n: int = PRE_NMS_TOP_N,
    nms_candidates: int = NMS_CANDIDATES,
) -> Selection:
    """One image's detections from its decoded candidates: ``boxes`` ``(L, 5)`` in the input
    square's pixels, ``scores`` ``(L, K)``, ``levels`` ``(L,)`` (see the module's docstring for the
    rule); boxes are divided by ``scale`` (the image's resize factor) into the image's pixels."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
    s = np.asarray(scores, dtype=np.float32)
    s = s.reshape(len(b), -1)
    lv = np.asarray(levels, dtype=np.int64).reshape(-1)
    k = s.shape[1]
    cut = 0.0
    locs, labels, kept = [], [], []
    for level in range(int(lv.max()) + 1 if len(lv) else 0):
        on = np.flatnonzero(lv == level)
        flat = s[on].reshape(-1)  # location-major: index = location · K + class
        idx = np.flatnonzero(flat > score_threshold)
        if len(idx) > pre_nms_top_n:
            best, dropped = _best(flat[idx], pre_nms_top_n)
            idx, cut = idx[best], max(cut, dropped)
        locs.append(on[idx // k])
        labels.append(idx % k)
        kept.append(flat[idx])
    loc = np.concatenate(locs) if locs else np.zeros(0, np.int64)
    lab = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
    sc = np.concatenate(kept).astype(np.float32) if kept else np.zeros(0, np.float32)
    if len(sc) > nms_candidates:
        best, dropped = _best(sc, nms_candidates)
        loc, lab, sc, cut = loc[best], lab[best], sc[best], max(cut, dropped)
    out = b[loc].astype(np.float64)
    if len(out):
        keep = rotated_nms(corners_from_cxcywha(out), sc, nms_iou, lab)
        if len(keep) > detections_per_image:
            cut = max(cut, float(sc[keep[detections_per_image]]))
        keep = keep[:detections_per_image]
        out, sc, lab = out[keep], sc[keep], lab[keep]
    out[:, :4] /= scale
    return Selection(out.reshape(-1, 5), sc.reshape(-1), lab.reshape(-1), cut)


# --- preprocessing -----------------------------------------------------------------------------------


def resize_bilinear(image: npt.NDArray[np.float32], height: int, width: int) -> npt.NDArray[np.float32]:
    """``(C, h, w)`` float32 resized to ``(C, height, width)`` as PyTorch's ``F.interpolate(...,
    mode="bilinear", align_corners=False)`` resizes it on the CPU (the same float32 values)."""
    from vistudio.ml.inference.detections import _fma, _linear_weights

    img = np.asarray(image, dtype=np.float32)
    r0, r1, a0, a1 = _linear_weights(img.shape[1], height)
    c0, c1, b0, b1 = _linear_weights(img.shape[2], width)
    top, bottom = img[:, r0], img[:, r1]
    upper = _fma(top[:, :, c0], b0, top[:, :, c1] * b1)
    lower = _fma(bottom[:, :, c0], b0, bottom[:, :, c1] * b1)
    return _fma(upper, a0[:, None], lower * a1[:, None])


def prepare(
    image: npt.NDArray[np.float32], side: int, mean: npt.ArrayLike, std: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], float]:
    """One ``(3, h, w)`` RGB image in 0..1 → its ``(3, side, side)`` slot of the model's batch and
    its resize factor, exactly as ``OrientedDetector._batch`` makes them."""
    h, w = int(image.shape[1]), int(image.shape[2])
    scale = side / max(h, w)
    nh, nw = max(1, min(side, round(h * scale))), max(1, min(side, round(w * scale)))
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    sd = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    out = np.zeros((3, side, side), np.float32)
    out[:, :nh, :nw] = (resize_bilinear(image, nh, nw) - m) / sd
    return out, scale


def to_original(
    boxes: npt.ArrayLike, *, input_size: tuple[int, int], original_size: tuple[int, int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(N, 5)`` boxes in the pixels of a decoded image (``input_size`` (w, h)) → ``(boxes,
    corners)`` in the pixels of its full size (``original_size`` (w, h)): the corners are scaled
    (a decode of another aspect ratio moves them) and the boxes derived again from them."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    corners = corners_from_cxcywha(b)
    sx, sy = original_size[0] / input_size[0], original_size[1] / input_size[1]
    corners = corners * np.array([sx, sy])
    return (cxcywha_from_corners(corners) if len(corners) else b), corners


# --- detections --------------------------------------------------------------------------------------


@dataclass
class OrientedDetections:
    """One image's rotated detections: ``boxes`` ``(N, 5)`` float64 (cx, cy, w, h, θ), ``corners``
    ``(N, 4, 2)`` (DOTA order) in the image's pixels, ``labels`` ``(N,)`` class indices, ``scores``
    ``(N,)`` float32 best first; ``cut`` as :class:`Selection`'s. ``masks`` is always None (the
    attribute the box detectors' :class:`~vistudio.ml.inference.detections.Detections` has)."""

    boxes: npt.NDArray[np.float64]
    corners: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    cut: float = 0.0
    masks: None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_selection(
        cls, sel: Selection, *, input_size: tuple[int, int], original_size: tuple[int, int] | None = None
    ) -> OrientedDetections:
        """A selection in the pixels of the decoded image (``input_size`` (w, h)) → detections in
        those of ``original_size`` (the decoded image's own when None)."""
        boxes, corners = to_original(
            sel.boxes, input_size=input_size, original_size=original_size or input_size
        )
        return cls(boxes, corners, sel.labels.astype(np.int64), sel.scores.astype(np.float32), sel.cut)

    def above(self, score_threshold: float) -> OrientedDetections:
        """Only the detections scoring at least ``score_threshold``."""
        keep = np.flatnonzero(self.scores >= score_threshold)
        return OrientedDetections(
            self.boxes[keep], self.corners[keep], self.labels[keep], self.scores[keep], self.cut
        )

    def to_list(self, classes: list[str] | None = None) -> list[dict[str, Any]]:
        """JSON: ``[{"label", "class_index", "score", "points", "rbox", "box"}]`` (see the module's
        docstring), the keys of evaluation's stored predictions."""
        out = []
        for i in range(len(self)):
            k = int(self.labels[i])
            c = self.corners[i]
            out.append(
                {
                    "label": classes[k] if classes is not None and 0 <= k < len(classes) else str(k),
                    "class_index": k,
                    "score": float(self.scores[i]),
                    "points": [[float(x), float(y)] for x, y in c],
                    "rbox": [float(v) for v in cxcywha_from_corners(c[None])[0]],
                    "box": [
                        float(c[:, 0].min()),
                        float(c[:, 1].min()),
                        float(c[:, 0].max()),
                        float(c[:, 1].max()),
                    ],
                }
            )
        return out


def draw_oriented(img: Any, detections: OrientedDetections, classes: list[str]) -> Any:
    """A copy of ``img`` (a PIL image, RGB) with the rotated boxes drawn and labelled, in the class
    colours of every other overlay."""
    from PIL import ImageDraw

    from vistudio.ml.inference.overlays import _font, _label, _line_width, class_colour

    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    font, width = _font(out), _line_width(out)
    per_class: dict[int, int] = {}
    for c, k, score in zip(detections.corners, detections.labels, detections.scores, strict=True):
        n = per_class.get(int(k), 0)
        per_class[int(k)] = n + 1
        colour = class_colour(int(k), n)
        pts = [(float(x), float(y)) for x, y in c]
        draw.line([*pts, pts[0]], fill=colour, width=width, joint="curve")
        name = classes[int(k)] if 0 <= int(k) < len(classes) else str(int(k))
        top = min(pts, key=lambda p: (p[1], p[0]))  # the label sits on the highest corner
        _label(draw, top, f"{name} {float(score):.2f}", colour, font)
    return out


def _dashed_polygon(draw: Any, points: list[tuple[float, float]], colour: Any, width: int, dash: int) -> None:
    for (ax, ay), (bx, by) in zip(points, [*points[1:], points[0]], strict=True):
        steps = max(1, int(max(abs(bx - ax), abs(by - ay)) // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min(1.0, (i + 1) / steps)
            draw.line(
                [(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                fill=colour,
                width=width,
            )


def draw_oriented_outcomes(
    img: Any,
    detections: OrientedDetections,
    outcomes: list[str],
    truth_corners: npt.ArrayLike,
    truth_outcomes: list[str],
    classes: list[str],
) -> Any:
    """A copy of ``img`` (a PIL image, RGB) with the rotated boxes coloured by their matching's
    ``outcomes`` (``tp`` green, ``fp`` red, ``ignored`` — on a difficult object — grey) and the
    missed objects (``truth_outcomes`` ``fn``; ``truth_corners`` ``(M, 4, 2)``) dashed orange: the
    colours of ``overlays.draw_outcomes`` and of the evaluation pages. True positives are drawn
    over the others."""
    from PIL import ImageDraw

    from vistudio.ml.inference.overlays import FN_COLOUR, FP_COLOUR, TP_COLOUR, _font, _label, _line_width

    if len(outcomes) != len(detections):
        raise ValueError(f"{len(detections)} detections but {len(outcomes)} outcomes")
    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    font, width = _font(out), _line_width(out)
    corners = np.asarray(truth_corners, dtype=np.float64).reshape(-1, 4, 2)
    for c, outcome in zip(corners, truth_outcomes, strict=True):
        if outcome == "fn":
            pts = [(float(x), float(y)) for x, y in c]
            _dashed_polygon(draw, pts, FN_COLOUR, width + 1, max(4, min(out.size) // 40))
    colours = {"tp": TP_COLOUR, "fp": FP_COLOUR}
    shapes = []
    # the true positives drawn last, then the better scores: on a crowded image they stay on top
    order = sorted(range(len(outcomes)), key=lambda i: (outcomes[i] == "tp", float(detections.scores[i])))
    for i in order:
        c, k, score, outcome = detections.corners[i], detections.labels[i], detections.scores[i], outcomes[i]
        colour = colours.get(outcome, (150, 150, 150))
        pts = [(float(x), float(y)) for x, y in c]
        draw.line([*pts, pts[0]], fill=colour, width=width, joint="curve")
        name = classes[int(k)] if 0 <= int(k) < len(classes) else str(int(k))
        shapes.append((min(pts, key=lambda p: (p[1], p[0])), f"{name} {float(score):.2f}", colour))
    for top, text, colour in shapes:  # labels over every box
        _label(draw, top, text, colour, font)
    return out


# --- the runner --------------------------------------------------------------------------------------


def _float_prop(props: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(props[key]) if key in props else default
    except ValueError:
        return default
    return value if value == value else default  # NaN: the default


class OnnxOrientedDetector:
    """An exported vistudio oriented detector in an ONNX Runtime session (CPU unless told otherwise)."""

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        from vistudio.ml.inference.onnx import open_model, parse_metadata

        self.path, self.session, self.props = open_model(path, providers)
        self.classes, self.preprocess = parse_metadata(self.props, source=self.path.name)
        self.task = self.props.get("task", "classification")
        if not is_oriented_task(self.task):
            raise InvalidInput(
                f"{self.path.name} is a {self.task[:60].replace('_', ' ')} model, not an oriented detector",
                details={"task": self.task[:60]},
            )
        self.model = self.props.get("model", "")
        self.image_size = int(max(self.preprocess["input_size"]))
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        shape = inputs[0].shape if len(inputs) == 1 else []
        if (
            len(inputs) != 1
            or len(shape) != 4
            or shape[1:] != [3, self.image_size, self.image_size]
            or any(n not in outputs for n in OUTPUT_NAMES)
        ):
            raise InvalidInput(
                f"{self.path.name}: expected one [B, 3, {self.image_size}, {self.image_size}] input and "
                f"outputs {', '.join(OUTPUT_NAMES)}",
                details={"inputs": [i.name for i in inputs], "outputs": outputs},
            )
        self.input_name = inputs[0].name
        self.mean = [float(v) for v in self.preprocess["mean"]]
        self.std = [float(v) for v in self.preprocess["std"]]
        clamp = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731 - a one-line helper
        # what predict keeps by default, and the threshold the export was checked at
        self.score_threshold = clamp(_float_prop(self.props, "score_threshold", 0.05))
        self.score_threshold_source = self.props.get("score_threshold_source", "training")
        self.selection_score_threshold = clamp(
            _float_prop(self.props, "selection_score_threshold", self.score_threshold)
        )
        self.nms_iou = _float_prop(self.props, "nms_iou", 0.3)
        self.detections_per_image = int(_float_prop(self.props, "detections_per_image", 100))
        self.pre_nms_top_n = int(_float_prop(self.props, "pre_nms_top_n", PRE_NMS_TOP_N))
        self.nms_candidates = int(_float_prop(self.props, "nms_candidates", NMS_CANDIDATES))

    def raw(self, batch: npt.NDArray[np.float32]) -> tuple[npt.NDArray[Any], ...]:
        """The file's outputs (boxes ``(B, L, 5)``, scores ``(B, L, K)``, levels ``(L,)``) for a
        prepared ``(B, 3, S, S)`` batch."""
        try:
            out = self.session.run(list(OUTPUT_NAMES), {self.input_name: batch})
        except Exception as exc:  # onnxruntime's own error types
            raise InvalidInput(f"{self.path.name}: running the model failed: {exc}") from None
        boxes, scores, levels = (np.asarray(o) for o in out)
        if boxes.shape[:2] != scores.shape[:2] or scores.shape[2] != len(self.classes):
            raise InvalidInput(
                f"{self.path.name}: outputs of shapes {boxes.shape} and {scores.shape} do not match "
                f"{len(self.classes)} classes"
            )
        return boxes, scores, levels

    def detect_many(
        self,
        images: list[npt.NDArray[np.float32]],
        *,
        original_sizes: list[tuple[int, int]] | None = None,
        score_threshold: float | None = None,
    ) -> list[OrientedDetections]:
        """Detections of ``(3, h, w)`` images in 0..1 scoring at least ``score_threshold`` (the
        file's recorded threshold when None), in the pixels of ``original_sizes`` ((w, h) each;
        the images' own sizes when None); one ONNX Runtime call for them all."""
        if not images:
            return []
        keep = self.score_threshold if score_threshold is None else float(score_threshold)
        selection = min(self.selection_score_threshold, keep)
        prepared = [prepare(img, self.image_size, self.mean, self.std) for img in images]
        boxes, scores, levels = self.raw(np.stack([p for p, _ in prepared]))
        out = []
        for i, (img, (_, scale)) in enumerate(zip(images, prepared, strict=True)):
            sel = select_detections(
                boxes[i],
                scores[i],
                levels,
                score_threshold=selection,
                nms_iou=self.nms_iou,
                detections_per_image=self.detections_per_image,
                scale=scale,
                pre_nms_top_n=self.pre_nms_top_n,
                nms_candidates=self.nms_candidates,
            )
            size = (int(img.shape[2]), int(img.shape[1]))
            original = original_sizes[i] if original_sizes is not None else size
            out.append(
                OrientedDetections.from_selection(sel, input_size=size, original_size=original).above(keep)
            )
        return out

    def detect(
        self,
        image: npt.NDArray[np.float32],
        *,
        original_size: tuple[int, int] | None = None,
        score_threshold: float | None = None,
    ) -> OrientedDetections:
        """:meth:`detect_many` of one image."""
        sizes = [original_size] if original_size is not None else None
        return self.detect_many([image], original_sizes=sizes, score_threshold=score_threshold)[0]

    def predict_files(
        self, paths: list[Path], *, score_threshold: float | None = None, batch_size: int = BATCH
    ) -> tuple[list[Any], list[dict[str, str]]]:
        """``DetectionPrediction``s (their ``detections`` :class:`OrientedDetections`) of readable
        images, and ``{"path", "reason"}`` for the others (in order)."""
        from vistudio.ml.inference.onnx import DetectionPrediction, detection_input

        predictions: list[DetectionPrediction] = []
        errors: list[dict[str, str]] = []
        pending: list[tuple[Path, npt.NDArray[np.float32], tuple[int, int]]] = []

        def flush() -> None:
            found = self.detect_many(
                [a for _, a, _ in pending],
                original_sizes=[o for _, _, o in pending],
                score_threshold=score_threshold,
            )
            for (path, _, original), dets in zip(pending, found, strict=True):
                predictions.append(DetectionPrediction(str(path), original[0], original[1], dets))
            pending.clear()

        for path in paths:
            try:
                image, _, original = detection_input(path, self.image_size)
            except FileNotFoundError:
                errors.append({"path": str(path), "reason": "file not found"})
                continue
            except Exception as exc:  # Pillow raises many kinds for bad files (bombs are not OSError)
                errors.append({"path": str(path), "reason": f"not a readable image: {exc}"[:300]})
                continue
            pending.append((path, image, original))
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
        return predictions, errors
