"""Run an exported semantic segmentation model with ONNX Runtime, and write its label maps.

An exported segmenter (``vistudio export`` of a ``semantic_segmentation`` experiment, see
:mod:`vistudio.ml.export.segmentation`) takes the preprocessed batch ``input`` ``(N, 3, S, S)``
float32 — the shared evaluation preprocessing of :mod:`vistudio.ml.preprocess`, whose parameters
the file's metadata holds — and returns ``logits`` ``(N, K, S, S)``. Turning logits into an image's
label map happens **after** the session, with the very function the evaluation and the training's
validation use, ``ml.tasks.semantic_segmentation.predict_label_map`` (bilinear upsampling to the
image's own size, ``align_corners=False``, then the argmax, the lowest class on a tie): predict, the
``segment_onnx`` stage and the evaluation give the same label map for the same logits, and the
export's parity check measures how far the exported logits are from PyTorch's. Torch is imported
for that function only.

An image is decoded as evaluation decodes it (:func:`segmentation_input`): upright, RGB, a JPEG
drafted down to the input size at the least, then stretched to ``S``×``S`` and normalised; its
label map has the upright image's full size (the size a sample of it has in a project).

Label maps are saved as **palette PNGs** (:func:`label_map_png`) exactly as the evaluation saves its
``predictions/`` PNGs (``ml/inference/label_images``): pixel value = class index (0 the background;
255, never predicted, is kept for ignored pixels), the palette the classes' colours on the
project's pages — recorded in the exported file (``class_colours``) —, the background black. Any
tool reads the values back (a VOC ``SegmentationClass``-style mask: ``vistudio import`` reads it
as class indices).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from vistudio.errors import InvalidInput
from vistudio.ml.inference.onnx import parse_metadata, task_spec
from vistudio.ml.preprocess import eval_array, open_rgb

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BACKGROUND_INDEX = 0
IGNORE_INDEX = 255  # never predicted; the value of ignored pixels in ground-truth masks
OVERLAY_ALPHA = 0.5  # how much of a class's colour covers its pixels in an overlay
RGB = tuple[int, int, int]


def is_segmenter_task(task: str) -> bool:
    """Whether a model of ``task`` labels every pixel (a ``dense`` task: semantic segmentation)."""
    spec = task_spec(task)
    return spec is not None and spec.dense


# --- decoding ------------------------------------------------------------------------------------


def upright_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of the image shown upright (EXIF orientation applied), from its header."""
    with Image.open(path) as header:
        width, height = header.size
        if header.getexif().get(0x0112) in (5, 6, 7, 8):  # orientations that turn it sideways
            width, height = height, width
    return int(width), int(height)


def segmentation_input(
    source: str | Path | Image.Image, preprocess: dict[str, Any]
) -> tuple[npt.NDArray[np.float32], tuple[int, int]]:
    """One image for a segmenter: ``((3, S, S) float32 preprocessed, (width, height))`` — the size
    its label map gets. A file is decoded as evaluation decodes it (``open_rgb`` with the input
    size as JPEG draft size; the size read from its header, upright); a PIL image (an earlier
    pipeline stage's) is used as it is, at its own size. Pillow's errors propagate."""
    if isinstance(source, Image.Image):
        img = source.convert("RGB") if source.mode != "RGB" else source
        return eval_array(img, preprocess), img.size
    size = upright_size(source)
    img = open_rgb(source, draft_size=max(int(v) for v in preprocess["input_size"]))
    return eval_array(img, preprocess), size


# --- label maps ------------------------------------------------------------------------------------


def colours_of(classes: Sequence[str], props: dict[str, str] | None = None) -> list[RGB]:
    """The colour of each model class: the ones the export recorded (``class_colours``, the
    project's page colours, as the evaluation's PNGs use), else those of the classes in the model's
    order after the background (what a project of those classes would draw)."""
    import json

    from vistudio.ml.inference.label_images import class_colours

    raw = (props or {}).get("class_colours")
    if raw:
        try:
            parsed = json.loads(raw)
            colours = [(int(c[0]), int(c[1]), int(c[2])) for c in parsed]
        except (ValueError, TypeError, IndexError, KeyError):
            colours = []
        if len(colours) == len(classes) and all(0 <= v <= 255 for c in colours for v in c):
            return colours
    return class_colours(list(classes), list(classes[1:]))


def label_map_image(label_map: npt.NDArray[np.uint8], colours: Sequence[RGB]) -> Image.Image:
    """A ``(H, W)`` uint8 label map as a palette image (mode ``P``; values unchanged) with the
    evaluation's palette of ``colours`` (``ml/inference/label_images.label_palette``)."""
    from vistudio.ml.inference.label_images import label_palette

    arr = np.ascontiguousarray(label_map, dtype=np.uint8)
    if arr.ndim != 2:
        raise ValueError(f"a label map is (H, W), got shape {arr.shape}")
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())  # the values as palette indices
    img.putpalette(label_palette(colours))
    return img


def label_map_png(label_map: npt.NDArray[np.uint8], colours: Sequence[RGB]) -> bytes:
    """The palette PNG of a label map, written as the evaluation writes its ``predictions/`` PNGs
    (``ml/inference/label_images.encode_label_png``): equal maps and colours give equal bytes."""
    from vistudio.ml.inference.label_images import encode_label_png, label_palette

    return encode_label_png(label_map, label_palette(colours))


def class_pixels(label_map: npt.NDArray[np.uint8], num_classes: int) -> npt.NDArray[np.int64]:
    """Pixels of each class ``0..num_classes-1`` in a label map."""
    counts = np.bincount(np.asarray(label_map, np.uint8).reshape(-1), minlength=256)
    return counts[:num_classes].astype(np.int64)


def class_shares(label_map: npt.NDArray[np.uint8], classes: Sequence[str]) -> dict[str, float]:
    """The share of the image's pixels of each class (all classes, in class order; they sum to 1)."""
    counts = class_pixels(label_map, len(classes))
    total = max(1, int(np.asarray(label_map).size))
    return {name: float(n) / total for name, n in zip(classes, counts.tolist(), strict=True)}


def shares_summary(shares: dict[str, float], background: str | None = None) -> str:
    """``"rectangle 21%, ellipse 9%"``: the classes present besides the background, largest first;
    ``"background"`` (the background's name) when nothing else is there."""
    found = [(n, s) for n, s in shares.items() if s > 0 and n != background]
    if not found:
        return background or "nothing"
    found.sort(key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {s:.0%}" if s >= 0.005 else f"{n} <1%" for n, s in found)


def draw_label_map(img: Image.Image, label_map: npt.NDArray[np.uint8], colours: Sequence[RGB]) -> Image.Image:
    """A copy of ``img`` (RGB) with every pixel that is not background tinted with its class's
    colour. ``img`` is resized (bilinear) to the map's size if it differs."""
    rgb = img.convert("RGB")
    height, width = label_map.shape
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    base = np.asarray(rgb, dtype=np.float32).copy()
    lut = np.zeros((256, 3), np.float32)
    lut[: len(colours)] = np.asarray(colours, np.float32).reshape(-1, 3)[:256]
    on = ((label_map != BACKGROUND_INDEX) & (label_map < len(colours)))[..., None]
    out = np.where(on, base * (1 - OVERLAY_ALPHA) + lut[label_map] * OVERLAY_ALPHA, base)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def label_maps(
    logits: npt.NDArray[np.float32], sizes: Sequence[tuple[int, int]]
) -> list[npt.NDArray[np.uint8]]:
    """THE post-processing: each image's logits ``(K, S, S)`` of ``logits`` ``(N, K, S, S)`` →
    its ``(height, width)`` uint8 label map at ``sizes[i]`` ``(width, height)``, with the
    evaluation's own ``predict_label_map``."""
    from vistudio.ml.tasks.semantic_segmentation import predict_label_map

    if logits.ndim != 4 or len(logits) != len(sizes):
        raise ValueError(f"expected (N, K, S, S) logits for {len(sizes)} images, got {logits.shape}")
    return [predict_label_map(logits[i], int(w), int(h)) for i, (w, h) in enumerate(sizes)]


# --- the session ---------------------------------------------------------------------------------


@dataclass
class SegmentationPrediction:
    """One image's label map (``(height, width)`` uint8 class indices) and where it came from."""

    path: str
    width: int
    height: int
    label_map: npt.NDArray[np.uint8]

    def shares(self, classes: Sequence[str]) -> dict[str, float]:
        return class_shares(self.label_map, classes)

    def to_dict(self, classes: Sequence[str], *, label_map_path: str | None = None) -> dict[str, Any]:
        """The JSON of ``vistudio predict``: size, class shares, the classes present, the PNG's path."""
        shares = self.shares(classes)
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "label_map": label_map_path,
            "class_shares": shares,
            "classes_present": [n for n, s in shares.items() if s > 0],
        }


@dataclass
class UnreadableImage:
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


class OnnxSegmenter:
    """An exported vistudio semantic segmentation model in an ONNX Runtime session (CPU unless told)."""

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        from vistudio.ml.inference.onnx import open_model

        self.path, self.session, self.props = open_model(path, providers)
        self.classes, self.preprocess = parse_metadata(self.props, source=self.path.name)
        self.task = self.props.get("task", "classification")
        if not is_segmenter_task(self.task):
            raise InvalidInput(
                f"{self.path.name} is a {self.task[:60].replace('_', ' ')} model, not a semantic "
                "segmentation model",
                details={"task": self.task[:60]},
            )
        self.model = self.props.get("model", "")
        self.colours = colours_of(self.classes, self.props)
        self.input_size = (int(self.preprocess["input_size"][0]), int(self.preprocess["input_size"][1]))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) < 1 or len(outputs[0].shape) != 4:
            raise InvalidInput(
                f"{self.path.name}: expected one (N, 3, H, W) input and (N, K, H, W) logits",
                details={"inputs": [i.name for i in inputs], "outputs": [o.name for o in outputs]},
            )
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name

    def logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(N, 3, S, S)`` preprocessed float32 → ``(N, K, S, S)`` logits."""
        try:
            raw = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch)})[0]
        except Exception as exc:  # onnxruntime's own error types: shape or type mismatch
            raise InvalidInput(f"{self.path.name}: running the model failed: {exc}") from None
        out = np.asarray(raw, dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != batch.shape[0] or out.shape[1] != len(self.classes):
            raise InvalidInput(
                f"{self.path.name}: outputs of shape {out.shape} do not match {len(self.classes)} classes"
            )
        return out

    def segment(
        self, batch: npt.NDArray[np.float32], sizes: Sequence[tuple[int, int]]
    ) -> list[npt.NDArray[np.uint8]]:
        """The label maps of a preprocessed batch, each at its image's ``(width, height)``."""
        return label_maps(self.logits(batch), sizes)

    def predict_files(
        self, paths: Sequence[Path], *, batch_size: int = 8
    ) -> Iterator[SegmentationPrediction | UnreadableImage]:
        """Each file's label map, or why it could not be read, in the order given (lazily: a few
        images' maps in memory at a time)."""
        pending: list[tuple[str, npt.NDArray[np.float32], tuple[int, int]]] = []
        for path in paths:
            try:
                arr, size = segmentation_input(path, self.preprocess)
            except FileNotFoundError:
                yield from self._flush(pending)
                yield UnreadableImage(str(path), "file not found")
                continue
            except Exception as exc:  # Pillow raises many kinds for bad files (bombs are not OSError)
                yield from self._flush(pending)
                yield UnreadableImage(str(path), f"not a readable image: {exc}"[:300])
                continue
            pending.append((str(path), arr, size))
            if len(pending) >= batch_size:
                yield from self._flush(pending)
        yield from self._flush(pending)

    def _flush(
        self, pending: list[tuple[str, npt.NDArray[np.float32], tuple[int, int]]]
    ) -> Iterator[SegmentationPrediction]:
        if not pending:
            return
        batch = np.stack([a for _, a, _ in pending])
        maps = self.segment(batch, [s for _, _, s in pending])
        done = [
            SegmentationPrediction(name, size[0], size[1], m)
            for (name, _, size), m in zip(pending, maps, strict=True)
        ]
        pending.clear()
        yield from done
