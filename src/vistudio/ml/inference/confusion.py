"""A confusion matrix drawn as a PNG heatmap with Pillow (no plotting library needed).

Rows are true classes, columns predicted classes; each cell shows its count and is shaded by the
share of its row (so a rare class's mistakes are as visible as a common one's); the diagonal is
blue, mistakes are red. Long class names are shortened with an ellipsis; with many classes the
cells shrink down to a readable minimum and the counts get a smaller font. Above ``MAX_DRAWN``
classes (a 1,000-class heatmap would be a 22,000-pixel square nobody can read) only the
``MAX_DRAWN`` classes with the most mistakes, made or received, are drawn, and the title says so;
the full matrix stays in ``metrics.json`` and the API.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_LABEL_CHARS = 24
MAX_DRAWN = 60


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


def _shorten(text: str, font: Any, width: int) -> str:
    text = text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"
    while text and font.getlength(text) > width:
        text = text[:-2] + "…" if len(text) > 2 else text[:-1]
    return text


def _shade(frac: float, diagonal: bool) -> tuple[int, int, int]:
    """White → blue (correct) or white → red (mistakes), by ``frac`` in [0, 1]."""
    top = (37, 99, 235) if diagonal else (220, 38, 38)
    # any non-zero cell gets a visible tint: a few mistakes among many must still stand out
    f = 0.12 + 0.88 * max(0.0, min(1.0, frac)) ** 0.5 if frac > 0 else 0.0
    r, g, b = (round(255 + (c - 255) * f) for c in top)
    return r, g, b


def render_confusion_png(cm: Any, classes: list[str], *, title: str = "Confusion matrix") -> bytes:
    """PNG bytes of the heatmap of ``cm`` (N×N counts, rows = true classes)."""
    counts = np.asarray(cm, dtype=np.int64)
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {n} classes")
    if n > MAX_DRAWN:
        mistakes = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
        keep = np.sort(np.argsort(-mistakes, kind="stable")[:MAX_DRAWN])
        counts = counts[np.ix_(keep, keep)]
        classes = [classes[i] for i in keep]
        title = f"{title} · the {MAX_DRAWN} most confused of {n} classes"
        n = MAX_DRAWN
    cell = 56 if n <= 8 else 40 if n <= 16 else 30 if n <= 40 else 22
    label_font = _font(13 if n <= 16 else 11)
    count_font = _font(14 if cell >= 40 else 11 if cell >= 30 else 9)
    small_font = _font(8)
    title_font = _font(16)
    label_w = int(min(190, max(label_font.getlength(_shorten(c, label_font, 190)) for c in classes) + 14))
    top_label_h = label_w  # column names are drawn rotated, as tall as the row names are wide
    margin, title_h, axis_h = 16, 30, 20
    grid_x = margin + axis_h + label_w
    grid_y = margin + title_h + axis_h + top_label_h
    width = grid_x + n * cell + margin
    height = grid_y + n * cell + margin
    img = Image.new("RGB", (max(width, 320), height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((margin, margin), title, fill=(31, 36, 48), font=title_font)
    axis_font = _font(12)
    draw.text((grid_x, margin + title_h), "predicted class", fill=(102, 112, 133), font=axis_font)
    # the "true" axis label, rotated along the rows
    tag = Image.new("RGBA", (int(axis_font.getlength("true class")) + 4, 16), (255, 255, 255, 0))
    ImageDraw.Draw(tag).text((0, 0), "true class", fill=(102, 112, 133), font=axis_font)
    tag = tag.rotate(270, expand=True)
    img.paste(tag, (margin, grid_y), tag)
    row_sums = counts.sum(axis=1)
    for i, name in enumerate(classes):
        short = _shorten(name, label_font, label_w - 10)
        y = grid_y + i * cell + cell // 2
        draw.text((grid_x - 6, y), short, fill=(31, 36, 48), font=label_font, anchor="rm")
        # column label: drawn on its own strip, rotated to read bottom-up
        strip = Image.new("RGBA", (label_w, cell), (255, 255, 255, 0))
        ImageDraw.Draw(strip).text((4, cell // 2), short, fill=(31, 36, 48), font=label_font, anchor="lm")
        strip = strip.rotate(90, expand=True)
        img.paste(strip, (grid_x + i * cell, grid_y - label_w - 4), strip)
    for i in range(n):
        for j in range(n):
            value = int(counts[i, j])
            frac = value / row_sums[i] if row_sums[i] else 0.0
            colour = _shade(frac, i == j)
            x0, y0 = grid_x + j * cell, grid_y + i * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=colour, outline=(228, 231, 238))
            if value:
                dark = sum(colour) / 3 < 150
                text = str(value)
                font = count_font if count_font.getlength(text) <= cell - 4 else small_font
                draw.text(
                    (x0 + cell / 2, y0 + cell / 2),
                    text,
                    fill="white" if dark else (31, 36, 48),
                    font=font,
                    anchor="mm",
                )
    draw.rectangle((grid_x - 1, grid_y - 1, grid_x + n * cell, grid_y + n * cell), outline=(152, 162, 179))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()
