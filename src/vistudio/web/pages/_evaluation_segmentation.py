"""What the Evaluate page shows of a semantic segmentation evaluation (no routes: the page's routes
are ``web/pages/evaluation.py``'s, which pick these through its ``SEGMENTATION_VIEW``).

- the headline scores: mIoU (the dataset-wide one), pixel accuracy, mean class accuracy, Dice;
- per-class IoU bars in the class colours of the dataset overlays (``absent`` for a class that is
  neither labelled nor predicted), with Dice, accuracy and the pixel counts;
- the pixel confusion matrix (the page's shaded table), each row as shares of the class's
  labelled pixels;
- the grid of images, worst IoU first, each with its predicted mask over it; its detail with the
  prediction, ground truth and error layers and their opacity (``static/evaluation_seg.js``).
"""

from __future__ import annotations

from typing import Any

from vistudio.errors import InvalidInput

KEYS = ("subset", "present", "sort")
SORTS = {
    "iou": "worst IoU first",
    "-iou": "best IoU first",
    "pixel_accuracy": "lowest pixel accuracy first",
    "-pixel_accuracy": "highest pixel accuracy first",
}
# the tiles' predicted masks are asked for at about their own size (CSS pixels × 2 for sharp screens)
TILE_LAYER_SIZE = 320
BACKGROUND_SWATCH = "#94a3b8"  # the background is never drawn over an image: a neutral swatch


def filters(params: dict[str, str]) -> dict[str, Any]:
    """The grid's query → ``list_results`` filters (the sort is passed on by the page)."""
    other = [k for k, v in params.items() if v and k not in KEYS]
    if other:
        raise InvalidInput(f"the {', '.join(other)} filters do not apply to semantic segmentation results")
    if params["sort"] not in ("", *SORTS):
        raise InvalidInput(f"sort by one of {', '.join(SORTS)}")
    return {"present": params["present"] or None}


def colours(ev: dict[str, Any]) -> dict[str, str]:
    """Class name → CSS colour (the background's a neutral swatch)."""
    hexes = list(ev.get("class_colours") or [])
    out = {}
    for k, name in enumerate(ev.get("classes") or []):
        out[name] = BACKGROUND_SWATCH if k == 0 or k >= len(hexes) else hexes[k]
    return out


def _share(n: int, total: int) -> float:
    return n / total if total else 0.0


def panel(ev: dict[str, Any]) -> dict[str, Any]:
    """The results area's figures: one bar per class, the colours, the scores of each subset."""
    m = ev.get("metrics") or {}
    classes = list(ev.get("classes") or [])
    palette = colours(ev)
    labelled = int(m.get("pixels") or 0)
    bars = []
    for k, name in enumerate(classes):
        iou = (m.get("per_class_iou") or {}).get(name)
        pixels = int((m.get("per_class_pixels") or {}).get(name) or 0)
        bars.append(
            {
                "name": name,
                "background": k == 0,
                "colour": palette[name],
                "iou": iou,
                "width": 0.0 if iou is None else round(100 * iou, 2),
                "dice": (m.get("per_class_dice") or {}).get(name),
                "accuracy": (m.get("per_class_accuracy") or {}).get(name),
                "pixels": pixels,
                "predicted": int((m.get("per_class_predicted") or {}).get(name) or 0),
                "share": _share(pixels, labelled),
            }
        )
    return {
        "bars": bars,
        "colours": palette,
        "by_subset": m.get("by_subset") or {},
        "tile_size": TILE_LAYER_SIZE,
    }
