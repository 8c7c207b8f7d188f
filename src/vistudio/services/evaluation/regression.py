"""Evaluation of regression experiments: one ``RegressionResult`` per image (its true and predicted
values, one per target, in the targets' units, and ``abs_error``: the mean absolute error over its
targets); MAE, MSE, RMSE and R², averaged over the targets and per target, with the definitions
of ``ml/inference/regression`` (scikit-learn's); files ``results.parquet``, ``results.csv`` and
``metrics.json``.

The checkpoint's model undoes the training z-score itself (``ml/tasks/regression.Regressor``), so
its outputs are the predictions: the values ``vistudio predict`` gives with the exported file.
Images without a usable value (none, several value annotations, another number of values, a value
that is not a finite number) are not evaluated; the metrics count them (``left_out``) and an
evaluation with nothing to evaluate says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from vistudio.db import Project, Sample, utcnow
from vistudio.db.training import Evaluation, Experiment, RegressionResult
from vistudio.errors import BadRequest, NotFound
from vistudio.jobs.worker import JobCancelled, JobContext
from vistudio.services.evaluation.core import EVALUATORS, _find, eval_dir, get_evaluation, open_run
from vistudio.services.evaluation.tables import ColumnType, write_csv, write_parquet
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

SORTS = ("abs_error", "-abs_error")  # smallest error first, largest first
FILTERS = ("subset", "sort")
MAX_POINTS = 20_000  # the points the predicted-vs-actual chart gets at most


def evaluate(ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
    from vistudio.ml.inference.pytorch import predict_batches
    from vistudio.services.experiments.values import census_text, value_census

    studio = ctx.studio
    names = list(exp.classes)
    census: dict[str, int] = {}
    if exp.split_id is not None:  # else open_run says the split was deleted
        with studio.sessions() as s:
            census = value_census(s, exp.split_id, list(ev.subsets), len(names))

    def empty() -> str:
        why = census_text(census)
        text = f"subsets {', '.join(ev.subsets)} of the split hold no image with {len(names)} usable value(s)"
        return f"{text} ({why})" if why else text

    run = open_run(
        ctx,
        ev,
        exp,
        row_model=RegressionResult,
        empty=empty,
        requires=("target_mean",),
        mismatch="the checkpoint's targets differ from the experiment's",
    )
    items, device = run.items, run.device
    todo = [(it, it.path) for it in items if it.sample_id not in run.done]
    count = len(run.done)
    for batch in predict_batches(
        run.model,
        todo,
        run.meta["preprocess"],
        batch_size=run.batch_size,
        device=device,
        on_error=run.on_error,
    ):
        rows = []
        for r, it in enumerate(batch.items):
            predicted = [float(v) for v in batch.logits[r]]
            truth = [float(v) for v in it.target]
            error = sum(abs(p - t) for p, t in zip(predicted, truth, strict=True)) / len(truth)
            rows.append(
                {
                    "evaluation_id": ev.id,
                    "sample_id": it.sample_id,
                    "subset": it.subset,
                    "truth": truth,
                    "prediction": predicted,
                    # an overflowing error (values near the float limit) sorts last rather than
                    # failing the row: inf is not a number the database keeps
                    "abs_error": error if error == error and error != float("inf") else 1e308,
                }
            )
        with studio.sessions.begin() as s:
            if s.get(Evaluation, ev.id) is None:  # reset while running
                raise JobCancelled()
            s.execute(insert(RegressionResult), rows)
        count += len(rows)
        ctx.progress(count, len(items), f"evaluating on {device.type}")
        ctx.check_cancelled()
    ctx.progress(count, len(items), "computing metrics", force=True)
    return _finish(studio, ev, exp, project, names, run.skipped, census)


def _finish(
    studio: Studio,
    ev: Evaluation,
    exp: Experiment,
    project: Project,
    names: list[str],
    skipped: list[dict[str, Any]],
    census: dict[str, int],
) -> dict[str, Any]:
    from vistudio.ml.inference.regression import regression_metrics

    with studio.sessions() as s:
        pairs = s.execute(
            select(RegressionResult.truth, RegressionResult.prediction)
            .where(RegressionResult.evaluation_id == ev.id)
            .order_by(RegressionResult.sample_id)
        ).all()
    metrics = regression_metrics([t for t, _ in pairs], [p for _, p in pairs], names)
    metrics["targets"] = names
    metrics["left_out"] = {k: v for k, v in census.items() if k != "usable"}
    metrics["skipped"] = len(skipped)
    metrics["skipped_items"] = [{k: v for k, v in x.items() if k != "path"} for x in skipped[:100]]
    folder = eval_dir(studio, ev, project, exp)
    folder.mkdir(parents=True, exist_ok=True)
    table = _result_table(studio, ev.id)
    write_parquet(folder / "results.parquet", table, RESULT_COLUMNS)
    write_csv(folder / "results.csv", _csv_header(names), _csv_rows(table))
    atomic_write_bytes(
        folder / "metrics.json",
        json.dumps({"metrics": metrics, "targets": names, "subsets": ev.subsets}, indent=2).encode(),
    )
    with studio.sessions.begin() as s:
        row = s.get(Evaluation, ev.id)
        if row is None:
            raise JobCancelled()
        row.metrics = metrics
        row.confusion = []
        row.classes = names
        row.results_path = (
            row.results_path or (folder / "results.parquet").relative_to(studio.home).as_posix()
        )
        row.status, row.error, row.finished_at = "succeeded", None, utcnow()
    return get_evaluation(studio, project=project.id, experiment=exp.id)


def _result_table(studio: Studio, eval_id: int) -> list[dict[str, Any]]:
    with studio.sessions() as s:
        rows = s.execute(
            select(RegressionResult, Sample.name, Sample.storage, Sample.path)
            .join(Sample, Sample.id == RegressionResult.sample_id)
            .where(RegressionResult.evaluation_id == eval_id)
            .order_by(RegressionResult.sample_id)
        ).all()
    return [
        {
            "sample_id": r.sample_id,
            "name": name,
            "path": str(studio.photo_file(storage, path)),
            "subset": r.subset,
            "truth": list(r.truth),
            "prediction": list(r.prediction),
            "abs_error": r.abs_error,
        }
        for r, name, storage, path in rows
    ]


RESULT_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("sample_id", "int64"),
    ("name", "string"),
    ("path", "string"),
    ("subset", "string"),
    ("truth", lambda pa: pa.list_(pa.float64())),
    ("prediction", lambda pa: pa.list_(pa.float64())),
    ("abs_error", "float64"),
)


def _csv_header(names: list[str]) -> list[str]:
    return [
        "sample_id",
        "name",
        "path",
        "subset",
        *(f"true_{n}" for n in names),
        *(f"predicted_{n}" for n in names),
        "abs_error",
    ]


def _csv_rows(table: list[dict[str, Any]]) -> Iterator[list[Any]]:
    for r in table:
        yield [
            r["sample_id"],
            r["name"],
            r["path"],
            r["subset"],
            *(repr(float(v)) for v in r["truth"]),
            *(repr(float(v)) for v in r["prediction"]),
            repr(float(r["abs_error"])),
        ]


def result_dict(r: RegressionResult, name: str, names: list[str]) -> dict[str, Any]:
    return {
        "sample_id": r.sample_id,
        "name": name,
        "subset": r.subset,
        "truth": list(r.truth),
        "prediction": list(r.prediction),
        "residuals": [float(p) - float(t) for p, t in zip(r.prediction, r.truth, strict=True)],
        "abs_error": r.abs_error,
        "targets": names,
        "thumbnail_url": f"/api/v1/samples/{r.sample_id}/thumbnail",
    }


def prediction_points(
    studio: Studio, *, project: str | int, experiment: str | int, limit: int = MAX_POINTS
) -> dict[str, Any]:
    """Every evaluated image as ``[sample_id, subset, truth, prediction]`` (at most ``limit``, by
    sample id), for the predicted-vs-actual chart: ``{"targets", "points", "total", "truncated"}``."""
    with studio.sessions() as s:
        _, exp, ev = _find(s, project, experiment)
        names = list(ev.classes or exp.classes)
        total = s.scalar(select(func.count()).where(RegressionResult.evaluation_id == ev.id)) or 0
        rows = s.execute(
            select(
                RegressionResult.sample_id,
                RegressionResult.subset,
                RegressionResult.truth,
                RegressionResult.prediction,
            )
            .where(RegressionResult.evaluation_id == ev.id)
            .order_by(RegressionResult.sample_id)
            .limit(limit)
        ).all()
    points = [[sid, subset, list(t), list(p)] for sid, subset, t, p in rows]
    return {"targets": names, "points": points, "total": total, "truncated": total > len(points)}


class RegressionEvaluator:
    row_model = RegressionResult
    thresholds = False
    default_batch_size = 64

    def run(self, ctx: JobContext, ev: Evaluation, exp: Experiment, project: Project) -> dict[str, Any]:
        return evaluate(ctx, ev, exp, project)

    def extra(self, ev: Evaluation, folder: str, done: bool) -> dict[str, Any]:
        # no confusion matrix: its picture is not there
        return {
            "confusion_png_path": None,
            "metrics_path": f"{folder}/metrics.json" if done else None,
            "targets": list(ev.classes or []),
        }

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        m = ev.metrics or {}
        return {"r2": m.get("r2"), "rmse": m.get("rmse")}

    def list_results(
        self, s: Session, ev: Evaluation, classes: list[str], filters: dict[str, Any], offset: int, limit: int
    ) -> dict[str, Any]:
        """Filtered by subset; sorted by the image's mean absolute error (``abs_error`` smallest
        first, ``-abs_error`` largest first) or by sample."""
        unknown = sorted(set(filters) - set(FILTERS))
        if unknown:
            raise BadRequest(f"{', '.join(unknown)} filters do not apply to regression evaluations")
        subset, sort = filters.get("subset"), filters.get("sort")
        if sort and sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {str(sort)[:20]!r}")
        q = select(RegressionResult, Sample.name).join(Sample, Sample.id == RegressionResult.sample_id)
        q = q.where(RegressionResult.evaluation_id == ev.id)
        if subset:
            q = q.where(RegressionResult.subset == subset)
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        order = {
            "abs_error": (RegressionResult.abs_error.asc(), RegressionResult.sample_id),
            "-abs_error": (RegressionResult.abs_error.desc(), RegressionResult.sample_id),
        }.get(sort or "", (RegressionResult.sample_id,))
        rows = s.execute(q.order_by(*order).offset(offset).limit(limit)).all()
        return {
            "items": [result_dict(r, name, classes) for r, name in rows],
            "total": total,
            "offset": offset,
            "limit": limit,
        }

    def get_result(self, s: Session, ev: Evaluation, classes: list[str], sample_id: int) -> dict[str, Any]:
        row = s.execute(
            select(RegressionResult, Sample.name)
            .join(Sample, Sample.id == RegressionResult.sample_id)
            .where(RegressionResult.evaluation_id == ev.id, RegressionResult.sample_id == sample_id)
        ).first()
        if row is None:
            raise NotFound(f"sample {sample_id} has no result in this evaluation")
        return result_dict(row[0], row[1], classes)


EVALUATORS.add("regression", RegressionEvaluator())
