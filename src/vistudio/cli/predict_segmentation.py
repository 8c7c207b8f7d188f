"""``vistudio predict`` with an exported semantic segmentation model (the command is in
``cli/evaluation``; this is its segmentation half): each image's label map written as a palette
PNG, its class shares and the classes present.

Paths in the JSON are absolute, as in the rest of the command's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from vistudio.cli.output import common_folder, console, emit, key_column, table
from vistudio.errors import InvalidInput

DEFAULT_LABEL_MAPS = Path("label-maps")


def _folder(option: str, path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"{option}: {path} exists and is not a folder")
    return path.absolute()


def predict_segmentation(
    ctx: typer.Context,
    model: Path,
    images: list[Path],
    *,
    label_maps: Path | None,
    overlays: Path | None,
    batch_size: int,
) -> None:
    """Segment ``images`` with the exported ``model``: ``label_maps/<image stem>.png`` for each
    (``-2``, ``-3``… when stems repeat), the image with its map drawn in ``overlays`` on request."""
    from vistudio.cli.evaluation import _overlay_name
    from vistudio.ml.inference.onnx import collect_images
    from vistudio.ml.inference.onnx_segmentation import (
        OnnxSegmenter,
        UnreadableImage,
        draw_label_map,
        label_map_png,
    )
    from vistudio.ml.preprocess import open_rgb
    from vistudio.storage.atomic import atomic_write_bytes

    seg = OnnxSegmenter(model)
    maps_dir = _folder("--label-maps", label_maps or DEFAULT_LABEL_MAPS)
    overlay_dir = _folder("--save-overlays", overlays) if overlays is not None else None
    if overlay_dir is not None and overlay_dir.resolve() == maps_dir.resolve():
        raise InvalidInput("--save-overlays needs another folder than --label-maps (the files share names)")
    files, errors = collect_images(images)
    rows: list[dict[str, Any]] = []
    taken: set[str] = set()
    for outcome in seg.predict_files(files, batch_size=batch_size):
        if isinstance(outcome, UnreadableImage):
            errors.append(outcome.to_dict())
            continue
        name = _overlay_name(outcome.path, taken)
        dest = maps_dir / name
        maps_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, label_map_png(outcome.label_map, seg.colours))
        row = outcome.to_dict(seg.classes, label_map_path=str(dest))
        if overlay_dir is not None:
            import io

            overlay_dir.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            draw_label_map(open_rgb(outcome.path), outcome.label_map, seg.colours).save(buf, "PNG")
            atomic_write_bytes(overlay_dir / name, buf.getvalue())
            row["overlay"] = str(overlay_dir / name)
        rows.append(row)
    if not rows:
        raise InvalidInput(
            "no image could be read" + (f": {errors[0]['path']}: {errors[0]['reason']}" if errors else ""),
            details={"errors": errors[:100]},
        )
    out = {
        "model": {
            "path": str(model),
            "name": seg.model,
            "task": seg.task,
            "classes": seg.classes,
            "input_size": list(seg.input_size),
        },
        "label_maps": str(maps_dir),
        "predictions": rows,
        "errors": errors,
    }

    def render(d: dict[str, Any]) -> None:
        folder, names = common_folder([p["path"] for p in d["predictions"]])
        if folder:
            console.print(f"images in {escape(folder)}")
        t = table(key_column("image"), "size", "classes (share of the pixels)")
        for p, name in zip(d["predictions"], names, strict=True):
            present = sorted(p["classes_present"], key=lambda c: -p["class_shares"][c])
            shares = ", ".join(f"{c} {p['class_shares'][c]:.1%}" for c in present)
            t.add_row(escape(name), f"{p['width']}×{p['height']}", escape(shares))
        console.print(t)
        console.print(f"label maps (palette PNGs, pixel = class index) in {escape(d['label_maps'])}")
        if overlay_dir is not None:
            console.print(f"overlays in {escape(str(overlay_dir))}")
        for e in d["errors"]:
            console.print(f"[red]skipped[/] {escape(e['path'])}: {escape(e['reason'])}")

    emit(ctx, out, render)
