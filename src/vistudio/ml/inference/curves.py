"""Line charts drawn as PNG with Pillow (no plotting library needed): the precision–recall curves
per class and the F1-vs-confidence curve of a detection evaluation.

Both axes run 0..1 with a grid every 0.2; each series gets a colour of a fixed palette (cycling)
and a legend line with its name and a number (its AP, or the best F1); an optional marker shows a
chosen point (the best-F1 confidence).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

PALETTE = (
    (37, 99, 235),
    (220, 38, 38),
    (22, 163, 74),
    (217, 119, 6),
    (147, 51, 234),
    (8, 145, 178),
    (219, 39, 119),
    (101, 163, 13),
    (71, 85, 105),
    (234, 88, 12),
)
MAX_LEGEND = 20
MAX_NAME = 28


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


def render_curves_png(
    series: Sequence[dict[str, Any]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    marker: tuple[float, float] | None = None,
    size: tuple[int, int] = (760, 520),
) -> bytes:
    """``series``: ``[{"name", "x": [...], "y": [...], "note"?: str}]`` with values in 0..1."""
    width, height = size
    left, right, top, bottom = 60, 230, 40, 50
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(14), _font(11)
    pw, ph = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        x = min(1.0, max(0.0, float(x)))
        y = min(1.0, max(0.0, float(y)))
        return left + x * pw, top + (1 - y) * ph

    d.text((left, 12), title[:90], fill=(15, 23, 42), font=font)
    for k in range(6):
        v = k / 5
        x0, y0 = at(v, 0)
        d.line([at(v, 0), at(v, 1)], fill=(226, 232, 240))
        d.line([at(0, v), at(1, v)], fill=(226, 232, 240))
        d.text((x0 - 8, y0 + 6), f"{v:.1f}", fill=(71, 85, 105), font=small)
        xa, ya = at(0, v)
        d.text((xa - 28, ya - 6), f"{v:.1f}", fill=(71, 85, 105), font=small)
    d.rectangle([at(0, 1), at(1, 0)], outline=(100, 116, 139))
    d.text((left + pw / 2 - 30, height - 22), x_label, fill=(15, 23, 42), font=small)
    d.text((6, top - 20), y_label, fill=(15, 23, 42), font=small)
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        points = [at(x, y) for x, y in zip(s["x"], s["y"], strict=True)]
        if len(points) > 1:
            d.line(points, fill=colour, width=2)
        elif points:
            x, y = points[0]
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        if n < MAX_LEGEND:
            ly = top + 4 + n * 18
            d.line([(width - right + 14, ly + 7), (width - right + 34, ly + 7)], fill=colour, width=3)
            name = str(s["name"])
            name = name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"
            note = f" {s['note']}" if s.get("note") else ""
            d.text((width - right + 40, ly), f"{name}{note}", fill=(15, 23, 42), font=small)
    if len(series) > MAX_LEGEND:
        d.text(
            (width - right + 14, top + 4 + MAX_LEGEND * 18),
            f"… {len(series) - MAX_LEGEND} more",
            fill=(71, 85, 105),
            font=small,
        )
    if marker is not None:
        x, y = at(*marker)
        d.ellipse([x - 5, y - 5, x + 5, y + 5], outline=(15, 23, 42), width=2)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()
