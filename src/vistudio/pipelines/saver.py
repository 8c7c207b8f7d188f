"""The OutputSaver: what a run keeps, where, under which names.

Layouts under the workspace (``run_dir`` holds the audit, report and metrics of the run):

- sample:     ``runs/{run_id}/stages/{stage}/{item}_{stage}_{name}.{ext}`` for the first
              ``max_samples`` items, every selected stage;
- validation: ``validation/{run_id}/errors/{item}_{stage}_{name}.{ext}`` for the items that
              failed or disagree with their ground truth (final stage, plus a side-by-side
              image), and ``error_table.csv`` / ``confusion.json`` in ``validation/{run_id}/``;
- production: ``production/{run_id}/final/{item}_{stage}_{name}.{ext}``, the last stage of every
              item.

Artifacts (``StepOutput.artifacts``) go to the content-addressed store for the same items and
stages, named by their content, so identical artifacts of two runs are stored once.
A dry run saves nothing.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vistudio.pipelines.spec import PipelineSpec
from vistudio.pipelines.stage import Item, StepOutput
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.storage.blobs import BlobFiles

IMAGE_TOLERANCE = 1.0  # mean absolute difference, in 0-255 steps, still counted as equal
MODE_ROOTS = {"sample": "runs", "validation": "validation", "production": "production"}
SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str, limit: int = 80) -> str:
    return SAFE.sub("-", text).strip("-.")[:limit] or "x"


@dataclass
class Saved:
    """One thing written: a readable file (path relative to the workspace) or a blob."""

    item: str
    stage: str
    name: str
    kind: str  # file | artifact
    path: str | None = None
    sha256: str | None = None
    bytes: int = 0


@dataclass
class ItemResult:
    item: Item
    index: int
    steps: list[tuple[str, StepOutput]] = field(default_factory=list)
    failed_stage: str | None = None
    error: str | None = None
    prediction: Any = None

    _difference: float | None = field(default=None, repr=False)

    @property
    def mistaken(self) -> bool:
        """Failed, or its prediction disagrees with its ground truth (validation): a label, or an
        expected image (``item.meta["expected_image"]``) compared pixel by pixel."""
        if self.error is not None:
            return True
        if isinstance(self.prediction, dict) and isinstance(self.prediction.get("mistaken"), bool):
            return bool(self.prediction["mistaken"])  # the stage compared with the truth itself (detections)
        if self.item.meta.get("expected_image"):
            return self.image_difference() > IMAGE_TOLERANCE
        if self.item.ground_truth is None:
            return False
        return label_of(self.prediction) != self.item.ground_truth

    def image_difference(self) -> float:
        """Mean absolute difference (0-255) between the final image and the expected one;
        infinite when they cannot be compared (not an image, other size)."""
        if self._difference is None:
            self._difference = float("inf")
            expected = _expected_array(self.item.meta["expected_image"])
            got = self.prediction
            if isinstance(got, np.ndarray) and expected is not None and got.shape[:2] == expected.shape[:2]:
                self._difference = float(np.abs(_grey(got) - _grey(expected)).mean())
        return self._difference


def label_of(prediction: Any) -> str | None:
    if isinstance(prediction, dict) and "label" in prediction:
        return str(prediction["label"])
    if isinstance(prediction, str | int | np.integer):
        return str(prediction)
    return None


class OutputSaver:
    def __init__(
        self, *, spec: PipelineSpec, home: Path, run_id: str, blobs: BlobFiles, dry_run: bool = False
    ):
        self.spec = spec
        self.mode = spec.output_mode
        self.home = home
        self.run_id = run_id
        self.blobs = blobs
        self.dry_run = dry_run
        self.run_dir = home / MODE_ROOTS[self.mode] / run_id
        stages = spec.save_outputs.stages
        self.selected = {s.name for s in spec.stages} if "all" in stages else set(stages)
        self.last = spec.stages[-1].name

    # --- what is kept --------------------------------------------------------------------
    def wanted(self, result: ItemResult) -> list[tuple[str, StepOutput, Path]]:
        """(stage, output, folder) for everything this mode keeps of one item."""
        if self.dry_run or (not self.spec.save_outputs.enabled and not self.spec.save_artifacts):
            return []
        if self.mode == "sample":
            if result.index >= self.spec.save_outputs.max_samples:
                return []
            return [
                (name, out, self.run_dir / "stages" / name)
                for name, out in result.steps
                if name in self.selected
            ]
        if self.mode == "validation":
            if not result.mistaken:
                return []
            return [(name, out, self.run_dir / "errors") for name, out in result.steps if name == self.last]
        return [(name, out, self.run_dir / "final") for name, out in result.steps if name == self.last]

    # --- writing -------------------------------------------------------------------------
    def save(self, result: ItemResult) -> list[Saved]:
        saved: list[Saved] = []
        key = safe_name(result.item.key)
        for stage_name, out, folder in self.wanted(result):
            if self.spec.save_outputs.enabled:
                # a stage that names no outputs is seen through its data (the image it passes on)
                outputs = out.outputs or ([(out.data, "data", "")] if out.data is not None else [])
                for i, (obj, hint, ext) in enumerate(outputs):
                    name = safe_name(hint or f"out{i}", 40)
                    saved.extend(self._write_output(folder, key, stage_name, name, obj, ext))
            if self.spec.save_artifacts:
                for name, obj in out.artifacts.items():
                    data, ext = encode_artifact(obj)
                    sha = self.blobs.write_bytes("pipeline_artifact", data)
                    saved.append(
                        Saved(
                            result.item.key,
                            stage_name,
                            f"{safe_name(name, 40)}.{ext}",
                            "artifact",
                            None,
                            sha,
                            len(data),
                        )
                    )
        if self.mode == "validation" and result.mistaken and not self.dry_run:
            errors = self.run_dir / "errors"
            for name, png in (("compare", self._side_by_side(result)), ("diff", difference_image(result))):
                if png is not None:
                    saved.append(
                        self._file(errors / f"{key}_{name}.png", png, result.item.key, self.last, name)
                    )
        return saved

    def _write_output(self, folder: Path, key: str, stage: str, name: str, obj: Any, ext: str) -> list[Saved]:
        ext = ext.lower().lstrip(".") or self._default_ext(obj)
        base = folder / f"{key}_{stage}_{name}"
        if ext in ("png", "jpg", "jpeg"):
            data = encode_image(obj, ext)
            return [self._file(base.with_suffix(f".{ext}"), data, key, stage, name)]
        if ext == "npy":
            return [self._file(base.with_suffix(".npy"), encode_npy(obj), key, stage, name)]
        if ext == "json":
            data = json.dumps(obj, indent=2, default=_json_default).encode()
            return [self._file(base.with_suffix(".json"), data, key, stage, name)]
        if ext in ("ply", "pcd", "xyz"):
            points = as_points(obj)
            return [
                self._file(base.with_suffix(f".{ext}"), encode_points(points, ext), key, stage, name),
                self._file(
                    base.with_name(base.name + "_preview.png"),
                    render_points(points),
                    key,
                    stage,
                    f"{name}_preview",
                ),
            ]
        raise ValueError(f"unknown output format {ext!r} for {name!r} (png, jpg, npy, json, ply, pcd, xyz)")

    def _default_ext(self, obj: Any) -> str:
        fmt = self.spec.save_outputs.formats
        if isinstance(obj, Image.Image) or (isinstance(obj, np.ndarray) and is_image_array(obj)):
            return fmt.images
        if isinstance(obj, np.ndarray) and obj.ndim == 2 and obj.shape[1] in (3, 6) and obj.dtype.kind == "f":
            return fmt.point_clouds
        if isinstance(obj, np.ndarray):
            return fmt.arrays
        if hasattr(obj, "points") and hasattr(obj, "has_colors"):  # an Open3D point cloud
            return fmt.point_clouds
        return "json"

    def _file(self, path: Path, data: bytes, item: str, stage: str, name: str) -> Saved:
        atomic_write_bytes(path, data)
        return Saved(item, stage, name, "file", path.relative_to(self.home).as_posix(), None, len(data))

    def _side_by_side(self, result: ItemResult) -> bytes | None:
        """The first image of the item and its last image output, captioned prediction vs truth."""
        images = [
            o.data for _, o in result.steps if isinstance(o.data, np.ndarray) and is_image_array(o.data)
        ]
        if not images:
            return None
        left = _readable(to_pil(images[0]))
        right = _readable(to_pil(images[-1])) if len(images) > 1 else None
        truth, pred = result.item.ground_truth, label_of(result.prediction)
        h = max(left.height, right.height if right else 0)
        w = left.width + (right.width + 8 if right else 0)
        caption = (
            f"truth: {truth}   prediction: {pred}"
            if result.error is None
            else f"error in {result.failed_stage}: {result.error}"
        )[:120]
        font = ImageFont.load_default(size=14)
        text_w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(caption, font=font))
        canvas = Image.new("RGB", (max(w, min(text_w + 12, 1200)), h + 40), "white")
        canvas.paste(left, (0, 40))
        if right is not None:
            canvas.paste(right, (left.width + 8, 40))
        ImageDraw.Draw(canvas).text((6, 12), caption, fill=(180, 0, 0), font=font)
        buf = io.BytesIO()
        canvas.save(buf, "PNG")
        return buf.getvalue()

    def write_run_files(self, name: str, data: bytes) -> str:
        path = self.run_dir / name
        atomic_write_bytes(path, data)
        return path.relative_to(self.home).as_posix()


# --- encoders ------------------------------------------------------------------------------

READABLE_SIDE = 160  # a side-by-side panel is scaled up (whole pixels) until its shorter side reaches this


def _readable(im: Image.Image) -> Image.Image:
    """Small images (an 8×8 or 32×32 digit) scaled up by a whole factor with nearest-neighbour, so
    the side-by-side shows their pixels at a size a person can judge instead of a speck."""
    short = min(im.size)
    factor = -(-READABLE_SIDE // short) if 0 < short < READABLE_SIDE else 1
    factor = min(factor, max(1, 2048 // max(im.size)))  # a thin strip does not become huge
    if factor == 1:
        return im
    return im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.mean(axis=2) if a.ndim == 3 else a


def _expected_array(path: str) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def difference_image(result: ItemResult) -> bytes | None:
    """Colour-coded difference with the expected image: grey where equal, red where the output
    is brighter, blue where it is darker (the stronger the colour, the larger the difference)."""
    path = result.item.meta.get("expected_image")
    if not path or not isinstance(result.prediction, np.ndarray):
        return None
    expected = _expected_array(path)
    if expected is None or expected.shape[:2] != result.prediction.shape[:2]:
        return None
    want = _grey(expected)
    delta = _grey(result.prediction) - want
    base = (want * 0.5 + 64).clip(0, 255)
    strength = np.maximum(base, np.clip(np.abs(delta) * 3, 0, 255))
    rgb = np.stack([base, base, base], axis=-1)
    rgb[..., 0] = np.where(delta > IMAGE_TOLERANCE, strength, rgb[..., 0])
    rgb[..., 2] = np.where(delta < -IMAGE_TOLERANCE, strength, rgb[..., 2])
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def is_image_array(a: np.ndarray) -> bool:
    return a.dtype == np.uint8 and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)))


def to_pil(obj: Any) -> Image.Image:
    if isinstance(obj, Image.Image):
        return obj
    a = np.asarray(obj)
    if a.dtype != np.uint8:
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = ((a - lo) / (hi - lo or 1.0) * 255).clip(0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3, 4):  # CHW
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(a)


def encode_image(obj: Any, ext: str) -> bytes:
    im = to_pil(obj)
    buf = io.BytesIO()
    if ext in ("jpg", "jpeg"):
        im.convert("RGB").save(buf, "JPEG", quality=92)
    else:
        # zlib level 1: a third of the default's time for ~10 % more bytes (benchmarks/pipeline.py)
        im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def encode_npy(obj: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(obj), allow_pickle=False)
    return buf.getvalue()


def encode_artifact(obj: Any) -> tuple[bytes, str]:
    """Deterministic bytes for an artifact, so equal content gives one blob."""
    if isinstance(obj, bytes | bytearray):
        return bytes(obj), "bin"
    if isinstance(obj, Image.Image):
        return encode_image(obj, "png"), "png"
    if isinstance(obj, np.ndarray):
        return encode_npy(obj), "npy"
    return json.dumps(obj, sort_keys=True, default=_json_default).encode(), "json"


def as_points(obj: Any) -> np.ndarray:
    if hasattr(obj, "points") and hasattr(obj, "has_colors"):  # Open3D geometry, without importing it
        pts = np.asarray(obj.points, dtype=np.float64)
        if obj.has_colors():
            pts = np.hstack([pts, np.asarray(obj.colors, dtype=np.float64)])
        return pts
    pts = np.asarray(obj, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (3, 6):
        raise ValueError(f"a point cloud is N×3 or N×6, got shape {pts.shape}")
    return pts


def encode_points(pts: np.ndarray, ext: str) -> bytes:
    n, cols = pts.shape
    colour = cols == 6
    rgb = (
        (pts[:, 3:6] * 255 if colour and pts[:, 3:6].max(initial=0) <= 1 else pts[:, 3:6]) if colour else None
    )
    lines: list[str] = []
    if ext == "ply":
        lines += [
            "ply",
            "format ascii 1.0",
            f"element vertex {n}",
            "property float x",
            "property float y",
            "property float z",
        ]
        if colour:
            lines += ["property uchar red", "property uchar green", "property uchar blue"]
        lines.append("end_header")
    elif ext == "pcd":
        fields = "x y z rgb" if colour else "x y z"
        lines += [
            "# .PCD v0.7",
            "VERSION 0.7",
            f"FIELDS {fields}",
            "SIZE " + " ".join(["4"] * (4 if colour else 3)),
            "TYPE " + " ".join(["F"] * 3 + (["U"] if colour else [])),
            "COUNT " + " ".join(["1"] * (4 if colour else 3)),
            f"WIDTH {n}",
            "HEIGHT 1",
            "VIEWPOINT 0 0 0 1 0 0 0",
            f"POINTS {n}",
            "DATA ascii",
        ]
    for i in range(n):
        x, y, z = pts[i, :3]
        if rgb is not None:
            r, g, b = (int(v) for v in rgb[i].clip(0, 255))
            last = f" {(r << 16) | (g << 8) | b}" if ext == "pcd" else f" {r} {g} {b}"
        else:
            last = ""
        lines.append(f"{x:.6g} {y:.6g} {z:.6g}{last}")
    return ("\n".join(lines) + "\n").encode()


def render_points(pts: np.ndarray, size: int = 256) -> bytes:
    """A top-down (x, y) scatter, coloured by z or by the points' colours."""
    im = Image.new("RGB", (size, size), (250, 250, 252))
    if len(pts):
        xy = pts[:, :2]
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        pix = ((xy - lo) / span * (size - 9) + 4).astype(int)
        z = pts[:, 2]
        zn = (z - z.min()) / ((z.max() - z.min()) or 1.0)
        px = im.load()
        assert px is not None
        for i, (x, y) in enumerate(pix):
            if pts.shape[1] == 6:
                c = pts[i, 3:6]
                colour = tuple(int(v * 255 if c.max() <= 1 else v) for v in c)
            else:
                colour = (int(40 + 200 * zn[i]), 80, int(240 - 200 * zn[i]))
            px[int(x), size - 1 - int(y)] = colour
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)
