"""The anomaly detection half of the Evaluate page: the scores' metrics, the ROC curve and the
score histogram of normal and anomalous images (drawn as inline SVG on the server, so they need
no script), the defect types; the per-image grid, its tiles showing each image's anomaly score
against the threshold, sorted by default with the highest score first (the images most likely
defective), filtered by result, truth (normal, anomalous or a defect type) and decision."""

from __future__ import annotations

from typing import Any

from vistudio.errors import InvalidInput

W, H, PAD = 320, 220, 28  # the charts' SVG view box and margin, in its own units


KEYS = ("subset", "correct", "true", "pred", "sort")
# the grid's sort choices: the empty value (the URL without ``sort``) is the default, highest score
# first; "image" orders by image as the results were listed before any sort
SORTS = {"": "highest score", "score": "lowest score", "image": "by image"}
DEFAULT_SORT = "-score"
# the results API's own names for the same orders, kept working in the page's URLs
_ALIASES = {"-score": "", "-confidence": "", "confidence": "score"}


def sort_choice(sort: str) -> str:
    """The grid's sort choice (a key of :data:`SORTS`) for a ``sort`` query value."""
    choice = _ALIASES.get(sort, sort)
    if choice not in SORTS:
        raise InvalidInput(f"sort by {', '.join(repr(k) for k in SORTS if k)} or leave it empty")
    return choice


def service_sort(sort: str) -> str | None:
    """The results API's sort for a ``sort`` query value: by default the highest score first."""
    choice = sort_choice(sort)
    return {"": DEFAULT_SORT, "score": "score", "image": None}[choice]


def filters(params: dict[str, str]) -> dict[str, Any]:
    """The results API's filters of the grid's query (``sort`` apart: :func:`service_sort`)."""
    other = [k for k, v in params.items() if v and k not in KEYS]
    if other:
        raise InvalidInput(f"the {', '.join(other)} filters do not apply to anomaly detection results")
    if params["correct"] not in ("", "yes", "no"):
        raise InvalidInput("the correctness filter is 'yes', 'no' or empty")
    sort_choice(params["sort"])
    return {
        "correct": None if not params["correct"] else params["correct"] == "yes",
        "true": params["true"] or None,
        "pred": params["pred"] or None,
    }


def _x(v: float) -> float:
    return round(PAD + v * (W - 2 * PAD), 2)


def _y(v: float) -> float:
    return round(H - PAD - v * (H - 2 * PAD), 2)


def panel(ev: dict[str, Any]) -> dict[str, Any]:
    """What the panel draws: the ROC polyline and the chosen threshold's point, the histogram's
    bars (normal and anomalous side by side in each bin, heights relative to the tallest bin)."""
    m = ev.get("metrics") or {}
    roc = m.get("roc") or {}
    points = " ".join(
        f"{_x(f)},{_y(t)}" for f, t in zip(roc.get("fpr", []), roc.get("tpr", []), strict=False)
    )
    chosen = None
    if m.get("fpr") is not None and m.get("tpr") is not None:
        chosen = {"x": _x(m["fpr"]), "y": _y(m["tpr"])}
    hist = m.get("histogram") or {}
    normal, anomalous = hist.get("normal") or [], hist.get("anomalous") or []
    tallest = max([1, *normal, *anomalous])
    bins = len(normal)
    bars = []
    width = (W - 2 * PAD) / max(1, bins)
    for i in range(bins):
        left = PAD + i * width
        for j, (count, kind) in enumerate(((normal[i], "normal"), (anomalous[i], "anomalous"))):
            h = count / tallest * (H - 2 * PAD)
            bars.append(
                {
                    "x": round(left + j * width / 2, 2),
                    "y": round(H - PAD - h, 2),
                    "w": round(width / 2 - 0.5, 2),
                    "h": round(h, 2),
                    "kind": kind,
                    "count": count,
                    "range": f"{hist['edges'][i]:.2f}–{hist['edges'][i + 1]:.2f}",
                }
            )
    threshold = m.get("threshold")
    return {
        "w": W,
        "h": H,
        "pad": PAD,
        "roc": points,
        "chosen": chosen,
        "bars": bars,
        "threshold_x": _x(min(1.0, max(0.0, threshold))) if isinstance(threshold, int | float) else None,
        "per_defect": m.get("per_defect") or {},
    }
