"""What the Evaluate page shows of a regression evaluation (no routes: the page's routes are
``web/pages/evaluation.py``'s, which pick these through its ``REGRESSION_VIEW``).

- the headline errors in the targets' units (MAE, RMSE, MSE) and R², averaged over the targets,
  and a row per target when there are several;
- predicted vs actual, one point per image (colour: its subset), with the y = x line: a click on
  a point opens the image's result; the residuals' histogram (predicted − true) beside it; one
  target at a time (``static/regression.js`` draws both on canvases, by hand);
- the grid of images, largest error first by default, each tile with its true and predicted values.

Numbers are written with four significant digits (``%.4g``: exponents for the very large and the
very small), so that a target in millions and one in thousandths both read well.
"""

from __future__ import annotations

from typing import Any

from vistudio.errors import InvalidInput
from vistudio.studio import Studio

KEYS = ("subset", "sort")
SORTS = {
    "-abs_error": "largest error first",
    "abs_error": "smallest error first",
}
DEFAULT_SORT = "-abs_error"
METRICS = (("mae", "MAE"), ("rmse", "RMSE"), ("mse", "MSE"), ("r2", "R²"))


def filters(params: dict[str, str]) -> dict[str, Any]:
    """The grid's query → ``list_results`` filters (the sort is passed on by the page)."""
    other = [k for k, v in params.items() if v and k not in KEYS]
    if other:
        raise InvalidInput(f"the {', '.join(other)} filters do not apply to regression results")
    if params["sort"] not in ("", *SORTS):
        raise InvalidInput(f"sort by one of {', '.join(SORTS)} or by image")
    return {}


def panel(
    studio: Studio, project: dict[str, Any], experiment: dict[str, Any], ev: dict[str, Any]
) -> dict[str, Any]:
    """The results area's figures: the metrics per target and the points of the charts."""
    from vistudio.services.evaluation.regression import prediction_points

    m = ev.get("metrics") or {}
    targets = list(ev.get("classes") or [])
    per = m.get("per_target") or {}
    rows = [{"name": name, **{k: per.get(name, {}).get(k) for k, _ in METRICS}} for name in targets]
    points = prediction_points(studio, project=project["id"], experiment=experiment["id"])
    return {
        "targets": targets,
        "rows": rows,
        "metrics": METRICS,
        "left_out": sum((m.get("left_out") or {}).values()),
        "points": points,
        "sorts": SORTS,
    }
