"""What a finished pipeline run left, for people to look at: its errors grouped by cause, and the
images it saved (validation's side-by-sides first) with the size to show each at."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from vistudio.db import RunOutput
from vistudio.pipelines.report import readable_width
from vistudio.studio import Studio

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# validation keeps, per mistake, the final output, a side-by-side ("compare") and a difference image
SHOWN_FIRST = ("compare", "diff")


def run_errors(studio: Studio, run: dict[str, Any], *, limit: int = 5) -> list[dict[str, Any]]:
    """The run's item failures grouped by stage and message, most frequent first:
    ``[{"stage", "message", "count", "items": [first three item keys]}]`` (from its audit)."""
    if not run.get("failed") or not run.get("audit_path"):
        return []
    try:
        audit = json.loads((studio.home / run["audit_path"]).read_text())
    except (OSError, ValueError):
        return []
    counts: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], str] = {}
    examples: dict[tuple[str, str], list[str]] = {}
    for item in audit.get("per_item", []):
        failed = next((s for s in item.get("stages", []) if s.get("status") == "failed"), None)
        if failed is None:
            continue
        name, message = str(item.get("item")), str(failed.get("error") or "failed")
        # "cannot read t2.png" and "cannot read t3.png" are one cause: the item's own name is
        # left out of the grouping, and the first message is shown as it was
        key = (str(failed.get("stage")), _without(name, message))
        counts[key] += 1
        first.setdefault(key, message)
        examples.setdefault(key, [])
        if len(examples[key]) < 3:
            examples[key].append(name)
    return [
        {"stage": key[0], "message": first[key], "count": n, "items": examples[key]}
        for key, n in counts.most_common(limit)
    ]


def _without(name: str, message: str) -> str:
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", "…", message) if name else message


def run_images(studio: Studio, run_id: str, *, limit: int = 24) -> dict[str, Any]:
    """Images the run saved as files: ``{"items": [{"item", "stage", "name", "path", "width",
    "height", "shown"}], "total"}``; side-by-sides and differences first, then in saved order.
    ``shown`` is the width to display at (small images scaled up by a whole factor)."""
    image = func.lower(RunOutput.path)
    where = (
        RunOutput.run_id == run_id,
        RunOutput.kind == "file",
        image.like("%.png") | image.like("%.jpg") | image.like("%.jpeg"),
    )
    first = RunOutput.name.in_(SHOWN_FIRST)
    with studio.sessions() as s:
        total = s.scalar(select(func.count()).select_from(RunOutput).where(*where)) or 0
        rows = list(
            s.scalars(select(RunOutput).where(*where).order_by(first.desc(), RunOutput.id).limit(limit))
        )
    items = []
    for r in rows:
        assert r.path is not None
        size = _size(studio.home / r.path)
        if size is None:  # removed by hand since the run: nothing to show
            continue
        items.append(
            {
                "item": r.item,
                "stage": r.stage,
                "name": PurePosixPath(r.path).name,
                "path": r.path,
                "width": size[0],
                "height": size[1],
                "shown": readable_width(*size),
            }
        )
    return {"items": items, "total": int(total)}


def _size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:  # reads the header only
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
