"""Likely label errors: rank a classification project's labelled images by how likely their given
label is wrong, with confident learning (cleanlab) on out-of-sample predicted probabilities.

How the probabilities are made out of sample: the experiment's model turns every labelled image of
its split into features (the input of its last linear layer); a logistic regression is then fitted
on k-1 folds and predicts the held-out fold, k times (scikit-learn's ``cross_val_predict``), so no
image is scored by a classifier that saw its label. cleanlab's ``get_label_quality_scores`` gives
each image's label quality (self-confidence) — the score shown is 1 - quality — and
``find_label_issues`` which images it counts as issues. The labels checked are the current ones
(a label fixed since is no longer suspect); the run is a job, its results replace the previous run
of that experiment, and each suggestion can be accepted (a relabel in the edit history) or rejected.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select

from vistudio.db import Project, Sample
from vistudio.db.label_issues import LabelIssue
from vistudio.db.training import Experiment
from vistudio.errors import BadRequest, Conflict, InvalidInput, NotFound
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services.experiments import experiment_items
from vistudio.services.exports import checkpoint_file, ready_checkpoint, resolve
from vistudio.studio import Studio

KIND = "label_errors"
FOLDS = 5


def start_label_errors(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    checkpoint: str = "best",
    folds: int = FOLDS,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Queue the search for likely label errors with an experiment's model → ``{"job"}``."""
    if not 2 <= folds <= 20:
        raise BadRequest(f"folds must be between 2 and 20, got {folds}")
    if not 1 <= batch_size <= 1024:
        raise BadRequest(f"batch size must be between 1 and 1024, got {batch_size}")
    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        if exp.task != "classification":
            raise InvalidInput(
                "likely label errors are found for classification experiments (an image label each)"
            )
        checkpoint_file(studio, ready_checkpoint(s, exp, checkpoint))
        if exp.split_id is None:
            raise Conflict(f"the split of experiment {exp.name!r} was deleted: there are no images to check")
        params = {"experiment_id": exp.id, "checkpoint": checkpoint, "folds": folds, "batch_size": batch_size}
        project_id = p.id
    job = studio.queue.enqueue(KIND, params, project_id=project_id, max_attempts=2)
    return {"job": job_dict(job)}


def _last_linear(model: Any) -> Any:
    import torch.nn as nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PermanentJobError("the model has no linear classification layer to take features from")
    return linears[-1]


def feature_net(model: Any) -> Any:
    """The classifier wrapped to return the input of its last linear layer (its features)."""
    import torch.nn as nn

    class Features(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.seen: list[Any] = []
            _last_linear(inner).register_forward_hook(lambda _m, args, _out: self.seen.append(args[0]))

        def forward(self, x: Any) -> Any:
            self.seen.clear()
            self.inner(x)
            return self.seen[-1].flatten(1)

    return Features(model)


@job_handler(KIND)
def run_label_errors(ctx: JobContext) -> dict[str, Any]:
    import numpy as np
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.ml.inference.pytorch import predict_batches, resolve_device

    studio = ctx.studio
    params = ctx.params
    with studio.sessions() as s:
        exp = s.get(Experiment, params.get("experiment_id"))
        if exp is None:
            raise PermanentJobError("the experiment was deleted")
        ckpt = ready_checkpoint(s, exp, str(params.get("checkpoint", "best")))
        items = experiment_items(studio, s, exp, ["train", "val", "test"], current_labels=True)
        classes = list(exp.classes)
        exp_id = exp.id
        s.expunge_all()
    if len(items) < 10:
        raise PermanentJobError(f"only {len(items)} labelled images: too few to find label errors")
    device = resolve_device("auto")
    ctx.progress(0, len(items), "loading the checkpoint", force=True)
    model, meta = load_checkpoint(checkpoint_file(studio, ckpt), device=device)
    features: dict[int, Any] = {}
    skipped: list[dict[str, Any]] = []
    net = feature_net(model)
    done = 0
    for batch in predict_batches(
        net,
        [(it, it.path) for it in items],
        meta["preprocess"],
        batch_size=int(params.get("batch_size", 64)),
        device=device,
        on_error=lambda it, reason: skipped.append({"sample_id": it.sample_id, "reason": reason}),
    ):
        for it, row in zip(batch.items, batch.logits, strict=True):
            features[it.sample_id] = row
        done += len(batch.items)
        ctx.progress(done, len(items), "computing features")
        ctx.check_cancelled()
    scored = [it for it in items if it.sample_id in features]
    labels = np.array([int(it.target) for it in scored])
    counts = np.bincount(labels, minlength=len(classes))
    present = counts[counts > 0]
    folds = min(int(params.get("folds", FOLDS)), int(present.min()))
    if folds < 2 or len(present) < 2:
        raise PermanentJobError(
            "each class needs at least two labelled images (and two classes) to cross-validate"
        )
    ctx.progress(done, len(items), f"cross-validating ({folds} folds)", force=True)
    # classes with no image are left out of the fit and given probability 0
    used = np.flatnonzero(counts > 0)
    remap = {int(c): i for i, c in enumerate(used)}
    y = np.array([remap[int(v)] for v in labels])
    x = np.stack([features[it.sample_id] for it in scored]).astype(np.float64)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    probs = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")
    quality = get_label_quality_scores(y, probs)
    issues = find_label_issues(y, probs)
    suggested = used[probs.argmax(axis=1)]
    accuracy = float((probs.argmax(axis=1) == y).mean())
    rows = [
        {
            "experiment_id": exp_id,
            "sample_id": it.sample_id,
            "given": classes[int(labels[i])],
            "suggested": classes[int(suggested[i])],
            "score": float(1.0 - quality[i]),
            "flagged": bool(issues[i]),
        }
        for i, it in enumerate(scored)
    ]
    with studio.sessions.begin() as s:
        s.execute(delete(LabelIssue).where(LabelIssue.experiment_id == exp_id))
        s.execute(insert(LabelIssue), rows)
    return {
        "scored": len(rows),
        "flagged": int(issues.sum()),
        "folds": folds,
        "cross_validated_accuracy": accuracy,
        "skipped": skipped[:100],
    }


def _undone(s: Any, project_id: int) -> set[int]:
    """The project's changes taken back (an accepted suggestion whose relabel was undone is open
    again)."""
    from vistudio.services.edits import _project_changes, _undone

    p = s.get(Project, project_id)
    return _undone(_project_changes(s, p)) if p is not None else set()


def _decision(row: LabelIssue, undone: set[int]) -> str | None:
    if row.decision == "accepted" and row.change_id is not None and row.change_id in undone:
        return None
    return row.decision


def _issue_dict(row: LabelIssue, name: str, undone: set[int]) -> dict[str, Any]:
    return {
        "sample_id": row.sample_id,
        "name": name,
        "given": row.given,
        "suggested": row.suggested,
        "score": row.score,
        "flagged": row.flagged,
        "decision": _decision(row, undone),
        "change_id": row.change_id,
    }


def list_label_errors(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    flagged_only: bool = True,
    undecided_only: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """The scored images, most likely wrong first (by default only cleanlab's issues that nobody
    decided on yet) → ``{"items": [{"sample_id", "name", "given", "suggested", "score", …}], "total"}``."""
    if not 0 <= offset <= 2**62 or not 1 <= limit <= 500:
        raise BadRequest("offset must be >= 0 and limit between 1 and 500")
    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        base = select(LabelIssue).where(LabelIssue.experiment_id == exp.id)
        scored = s.scalar(select(func.count()).select_from(base.subquery())) or 0
        if flagged_only:
            base = base.where(LabelIssue.flagged.is_(True))
        undone = _undone(s, p.id)
        if undecided_only:
            reopened = and_(LabelIssue.decision == "accepted", LabelIssue.change_id.in_(sorted(undone)))
            base = base.where(or_(LabelIssue.decision.is_(None), reopened))
        total = s.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = s.execute(
            base.add_columns(Sample.name)
            .join(Sample, Sample.id == LabelIssue.sample_id)
            .order_by(LabelIssue.score.desc(), LabelIssue.sample_id)
            .offset(offset)
            .limit(limit)
        ).all()
        return {
            "items": [_issue_dict(r, name, undone) for r, name in rows],
            "total": total,
            "scored": scored,
            "offset": offset,
            "limit": limit,
            "experiment": exp.name,
            "project": p.name,
        }


def decide(
    studio: Studio,
    *,
    project: str | int,
    experiment: str | int,
    sample_id: int,
    accept: bool | None,
    actor: str = "api",
) -> dict[str, Any]:
    """Accept a suggestion (the image is relabelled to it, one change in the history), reject it,
    or (``accept`` None) take a rejection back. An accepted suggestion whose relabel was undone is
    open again."""
    from vistudio.services import edits

    with studio.sessions() as s:
        p, exp = resolve(s, project, experiment)
        row = s.scalar(
            select(LabelIssue).where(LabelIssue.experiment_id == exp.id, LabelIssue.sample_id == sample_id)
        )
        if row is None:
            raise NotFound(f"sample {sample_id} has no label-error result for experiment {exp.name!r}")
        undone = _undone(s, p.id)
        current = _decision(row, undone)
        if accept is None and current != "rejected":
            raise Conflict(f"sample {sample_id} was not rejected: nothing to take back")
        if accept is not None and current is not None:
            raise Conflict(f"sample {sample_id} was already {current}")
        project_id, exp_id, given, suggested = p.id, exp.id, row.given, row.suggested
    change_id = None
    if accept:
        change = edits.edit_labels(
            studio,
            project=project_id,
            selection={"sample_ids": [sample_id]},
            set_to=[suggested],
            expected=[given],
            actor=actor,
        )
        change_id = change["change_id"]
    with studio.sessions.begin() as s:
        row = s.scalar(
            select(LabelIssue).where(LabelIssue.experiment_id == exp_id, LabelIssue.sample_id == sample_id)
        )
        assert row is not None
        row.decision = None if accept is None else "accepted" if accept else "rejected"
        row.change_id = change_id
        name = s.get(Sample, sample_id)
        return _issue_dict(row, name.name if name is not None else "", set())
