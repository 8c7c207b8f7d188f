"""Folder reader: every image under a folder, with class labels taken from class folders.

Labelling rule: images get a ``label`` annotation (class = the folder name) only when
*every* image sits exactly one level deep, as in ``root/<class>/<image>``. If any image lies
directly in the root or deeper than one folder (a photo library such as
``2023/06/x.jpg``), nothing is labelled: folder names there are dates or albums, not classes,
and labelling only part of a source would be worse than labelling none of it.
"""

from __future__ import annotations

from pathlib import Path

from vistudio.ingest.readers._common import Collector
from vistudio.ingest.readers._registry import register_reader
from vistudio.ingest.safepath import walk_images
from vistudio.ingest.types import Annotation, ParsedSource, SourceError


@register_reader("folder")
def read_folder(path: Path) -> ParsedSource:
    """Read a folder of images (see the module docstring for when folders become labels)."""
    if not path.is_dir():
        raise SourceError(f"not a folder: {path}")
    out = Collector("folder", path)
    paths, errors = walk_images(out.root)
    out.parsed.errors.extend(errors)
    rel_parts = [p.relative_to(out.root).parts for p in paths]
    labelled = bool(paths) and all(len(parts) == 2 for parts in rel_parts)
    classes: set[str] = set()
    for p, parts in zip(paths, rel_parts, strict=True):
        if labelled:
            classes.add(parts[0])
            out.add(p, [Annotation(kind="label", class_name=parts[0])])
        else:
            out.add(p)
    out.parsed.classes = sorted(classes)
    return out.parsed
