"""YOLO reader (Ultralytics layout): ``data.yaml`` + ``images/`` + ``labels/``.

The source is a folder holding ``data.yaml`` (or ``dataset.yaml``), or the YAML file itself.
``names`` is a list or an ``{id: name}`` mapping; ``train``/``val``/``test`` name folders of
images or ``.txt`` lists of image paths, relative to ``path`` when ``path`` points inside the
source (an absolute ``path`` from the author's machine is ignored: the dataset has moved, and
the folder holding the YAML is where it lives now). Without a YAML, the source needs
``images/``, ``labels/`` and a ``classes.txt`` (in the root or in ``labels/``).

The label of ``.../images/a/b.jpg`` is ``.../labels/a/b.txt`` (last ``images`` folder swapped
for ``labels``), or ``b.txt`` next to the image when there is no ``images`` folder. One object
per line, class id then normalised coordinates:

- 4 numbers ``cx cy w h`` → ``box`` (converted to top-left corner);
- 8 numbers with ``task: obb`` in the YAML → ``rotated_box`` (4 corners);
- any other even count >= 6 → ``polygon``.

Bad lines are reported one by one; the image keeps its valid annotations. A missing label
file means an image without objects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from vistudio.ingest.geometry import ring_problem
from vistudio.ingest.readers._common import Collector, short
from vistudio.ingest.readers._registry import register_reader
from vistudio.ingest.safepath import is_image_name, normalise_join, resolve_inside, walk_images
from vistudio.ingest.types import Annotation, IngestError, ItemError, ParsedSource, SourceError

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
# Exporters round to a few decimals and sometimes overshoot the border slightly.
COORD_EPSILON = 0.01
# A data.yaml is a few lines; anything this big is not one (and PyYAML would take ages on it).
YAML_MAX_BYTES = 4 * 2**20
_SPLITS = ("train", "val", "test")


def parse_yolo_labels(
    text: str, *, names: Mapping[int, str], obb: bool = False, source: str = "labels"
) -> tuple[list[Annotation], list[ItemError]]:
    """Parse the text of one YOLO label file; bad lines become ``ItemError`` ``source:line``."""
    annotations: list[Annotation] = []
    errors: list[ItemError] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            annotations.append(_parse_line(stripped.split(), names, obb))
        except IngestError as exc:
            errors.append(ItemError(f"{source}:{lineno}", exc.reason))
    return annotations, errors


def _parse_line(tokens: list[str], names: Mapping[int, str], obb: bool) -> Annotation:
    try:
        raw_cls = float(tokens[0])
    except ValueError:
        raise IngestError(f"class id is not a number: {short(tokens[0], 40)!r}") from None
    if not raw_cls.is_integer():
        raise IngestError(f"class id is not an integer: {short(tokens[0], 40)!r}")
    cls = int(raw_cls)
    if cls not in names:
        raise IngestError(f"unknown class id {cls}")
    coords: list[float] = []
    for token in tokens[1:]:
        try:
            value = float(token)
        except ValueError:
            raise IngestError(f"not a number: {short(token, 40)!r}") from None
        if not math.isfinite(value):
            raise IngestError(f"not a finite number: {short(token, 40)!r}")
        coords.append(value)
    if any(v < -COORD_EPSILON or v > 1 + COORD_EPSILON for v in coords):
        raise IngestError("coordinates outside [0, 1] (labels must be normalised)")
    clipped = [min(1.0, max(0.0, v)) for v in coords]
    class_name = names[cls]
    count = len(coords)
    if count == 4:
        cx, cy, w, h = coords
        if w <= 0 or h <= 0:
            raise IngestError("box width and height must be positive")
        x0, y0 = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
        x1, y1 = min(1.0, cx + w / 2), min(1.0, cy + h / 2)
        if x1 <= x0 or y1 <= y0:
            raise IngestError("box lies outside the image")
        return Annotation(
            kind="box", class_name=class_name, geometry={"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0}
        )
    if count >= 6 and count % 2 == 0:
        points = [[clipped[i], clipped[i + 1]] for i in range(0, count, 2)]
        problem = ring_problem(points)
        if problem:
            raise IngestError(problem)
        if count == 8 and obb:
            return Annotation(kind="rotated_box", class_name=class_name, geometry={"points": points})
        return Annotation(kind="polygon", class_name=class_name, geometry={"polygons": [points]})
    raise IngestError(f"expected 4 numbers (box) or an even count >= 6 (polygon), got {count}")


@register_reader("yolo")
def read_yolo(path: Path) -> ParsedSource:
    """Read a YOLO dataset folder (or its YAML file) into items with boxes/polygons/rotated boxes."""
    root = path.parent if path.is_file() else path
    if not root.is_dir():
        raise SourceError(f"not a folder: {path}")
    out = Collector("yolo", root)
    real_root = out.root
    yaml_path = path if path.is_file() else next((root / n for n in YAML_NAMES if (root / n).is_file()), None)
    sources: list[str]
    base = ""
    obb = False
    if yaml_path is not None:
        cfg = _load_yaml(yaml_path)
        names = _names(cfg.get("names"))
        task = cfg.get("task")
        obb = isinstance(task, str) and task.strip().lower() == "obb"
        if isinstance(cfg.get("path"), str):
            try:
                candidate = resolve_inside(real_root, cfg["path"])
                if candidate.is_dir():
                    base = candidate.relative_to(real_root).as_posix()
            except (IngestError, ValueError):
                pass  # see module docstring: a foreign absolute `path` is ignored
        sources = []
        for split in _SPLITS:
            value = cfg.get(split)
            if isinstance(value, str):
                sources.append(value)
            elif isinstance(value, list):
                sources.extend(v for v in value if isinstance(v, str))
            elif value is not None:
                out.error(f"{yaml_path.name}:{split}", "split must be a path or a list of paths")
    else:
        names = _classes_txt(real_root)
        sources = []
    if not sources:
        if not (real_root / "images").is_dir() and yaml_path is None:
            raise SourceError("YOLO source needs data.yaml/dataset.yaml, or images/, labels/ and classes.txt")
        sources = ["images"] if (real_root / "images").is_dir() else ["."]
    out.parsed.classes = [names[k] for k in sorted(names)]

    for image in _list_images(out, base, sources):
        item = out.add(image)
        if item is None:
            continue
        label_rel = _label_for(PurePosixPath(item.name))
        try:
            label_path = resolve_inside(real_root, label_rel)
        except IngestError as exc:
            out.error(label_rel, exc.reason)
            continue
        if not label_path.is_file():
            continue
        try:
            text = label_path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            out.error(label_rel, "label file is not UTF-8 text")
            continue
        except OSError as exc:
            out.error(label_rel, f"cannot read label file: {exc.strerror or exc}")
            continue
        anns, errs = parse_yolo_labels(text, names=names, obb=obb, source=label_rel)
        item.annotations.extend(anns)
        out.parsed.errors.extend(errs)
    _report_orphan_labels(out, {_label_for(PurePosixPath(i.name)) for i in out.parsed.items})
    return out.parsed


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > YAML_MAX_BYTES:
            raise SourceError(
                f"{path.name} is larger than {YAML_MAX_BYTES // 2**20} MB: not a YOLO data.yaml"
            )
        cfg = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise SourceError(f"malformed YAML in {path.name}: {short(str(exc), 300)}") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if not isinstance(cfg, dict):
        raise SourceError(f"{path.name} must be a mapping with 'names'")
    return cfg


def _class_name(value: Any) -> str:
    # Only scalars: str() of a list or mapping built from YAML aliases (a "billion laughs"
    # document) expands every alias and exhausts memory.
    if isinstance(value, (str, int, float)):
        return str(value)
    raise SourceError(f"YOLO class names must be text, got a {type(value).__name__}")


def _names(value: Any) -> dict[int, str]:
    if isinstance(value, list) and value:
        return {i: _class_name(v) for i, v in enumerate(value)}
    if isinstance(value, dict) and value:
        names: dict[int, str] = {}
        for key, name in value.items():
            if not isinstance(key, (int, str)):
                raise SourceError(f"YOLO class id in 'names' is not an integer: a {type(key).__name__}")
            try:
                names[int(key)] = _class_name(name)
            except (TypeError, ValueError):
                raise SourceError(
                    f"YOLO class id {short(str(key), 40)!r} in 'names' is not an integer"
                ) from None
        return names
    raise SourceError("YOLO YAML needs 'names' as a list or an {id: name} mapping")


def _classes_txt(root: Path) -> dict[int, str]:
    for candidate in (root / "classes.txt", root / "labels" / "classes.txt"):
        if candidate.is_file():
            try:
                text = candidate.read_bytes().decode("utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"cannot read {candidate.name}: {exc}") from exc
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if not lines:
                raise SourceError("classes.txt is empty")
            return dict(enumerate(lines))
    raise SourceError("YOLO source needs data.yaml/dataset.yaml, or images/, labels/ and classes.txt")


def _list_images(out: Collector, base: str, sources: list[str]) -> list[Path]:
    real_root = out.root
    images: list[Path] = []
    for source in sources:
        rel = normalise_join(base, source)
        try:
            target = resolve_inside(real_root, rel) if rel else real_root
        except IngestError as exc:
            out.error(source, exc.reason)
            continue
        if target.is_dir():
            found, errors = walk_images(target)
            prefix = out.name(target)
            out.parsed.errors.extend(
                ItemError(f"{prefix}/{e.path}" if prefix != "." else e.path, e.reason) for e in errors
            )
            images.extend(found)
        elif target.is_file() and target.suffix.lower() == ".txt":
            images.extend(_read_list(out, target))
        elif target.is_file() and is_image_name(target.name):
            images.append(target)
        else:
            out.error(source, "split folder or list not found")
    return images


def _read_list(out: Collector, list_path: Path) -> list[Path]:
    try:
        text = list_path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        out.error(out.name(list_path), f"cannot read image list: {exc}")
        return []
    parent = out.name(list_path.parent)
    images: list[Path] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            image = resolve_inside(out.root, normalise_join(parent, entry))
        except IngestError as exc:
            out.error(f"{out.name(list_path)}:{lineno}", exc.reason)
            continue
        if not image.is_file():
            out.error(f"{out.name(list_path)}:{lineno}", f"file not found: {short(entry)}")
            continue
        images.append(image)
    return images


def _label_for(image: PurePosixPath) -> str:
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return PurePosixPath(*parts).with_suffix(".txt").as_posix()


def _report_orphan_labels(out: Collector, used: set[str]) -> None:
    """Report label files under a ``labels`` folder that have no image next door."""
    real_root = out.root
    stems: dict[Path, set[str]] = {}
    for folder, dirnames, filenames in os.walk(real_root):  # does not follow symlinked folders
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_folder = PurePosixPath(Path(folder).relative_to(real_root).as_posix())
        if "labels" not in rel_folder.parts:
            continue
        for filename in sorted(filenames):
            if not filename.lower().endswith(".txt") or filename == "classes.txt" or filename.startswith("."):
                continue
            rel = (rel_folder / filename).as_posix()
            if rel in used:
                continue
            parts = list(rel_folder.parts)
            index = len(parts) - 1 - parts[::-1].index("labels")
            parts[index] = "images"
            image_folder = real_root.joinpath(*parts)
            if image_folder not in stems:
                stems[image_folder] = (
                    {p.stem for p in image_folder.iterdir() if is_image_name(p.name)}
                    if image_folder.is_dir()
                    else set()
                )
            if Path(filename).stem not in stems[image_folder]:
                out.error(rel, "label file has no matching image")
