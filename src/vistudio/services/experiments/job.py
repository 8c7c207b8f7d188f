"""The ``train`` job: trains one experiment in a child process (``ml/training/process.py``).

The handler is the child's parent: it records what the child reports (metric rows, job events,
checkpoints into the artifact store), heartbeats through the worker, and turns a cancel into a
graceful stop.

Resume: a job queued by ``resume_experiment`` (``params["resume"]``) continues the experiment
from its ``last`` checkpoint, which holds the whole training state (``ml/training/resume``). A
retried job (its worker died) does the same when the interrupted attempt left a ``last``
checkpoint, and restarts from epoch 0 with the same seed when it left none. Either way the metric
rows recorded after the checkpoint's step are deleted first, so no step is ever recorded twice.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vistudio.db import Job, Project, utcnow
from vistudio.db.training import Checkpoint, EpochMetric, Experiment
from vistudio.jobs.queue import LeaseLost
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobCancelled, JobContext, PermanentJobError
from vistudio.services.experiments.cleanup import _release_checkpoints
from vistudio.services.experiments.live import live_text
from vistudio.services.experiments.lookup import (
    CHECKPOINT_EXT,
    CHECKPOINT_KIND,
    checkpoint_path,
    experiment_items,
)
from vistudio.services.experiments.views import experiment_dict

if TYPE_CHECKING:
    from vistudio.studio import Studio

POLL_SECONDS = 0.25
STOP_GRACE_SECONDS = 300.0  # a stop waits this long for the batch in flight and the last checkpoint
MAX_CONFUSION_CLASSES = 100  # a larger per-epoch confusion matrix is not stored in the metrics row


def starting_epoch(resumed_from_step: int | None, steps_per_epoch: int, epochs: int) -> int:
    """The epoch (1-based) a training starts in: the first, or for a resumed one the epoch of the
    step after its checkpoint's (a checkpoint at the end of epoch N resumes in epoch N + 1)."""
    if not resumed_from_step or steps_per_epoch <= 0:
        return 1
    return max(1, min(epochs, resumed_from_step // steps_per_epoch + 1))


def _resume_point(studio: Studio, exp_id: int) -> Checkpoint | None:
    """The experiment's ``last`` checkpoint when its file is there and holds a training state."""
    from vistudio.errors import InvalidInput
    from vistudio.ml.training.resume import check_training_state

    with studio.sessions() as s:
        row = s.scalar(
            select(Checkpoint).where(Checkpoint.experiment_id == exp_id, Checkpoint.kind == "last")
        )
        if row is not None:
            s.expunge(row)
    if row is None:
        return None
    try:
        check_training_state(checkpoint_path(studio, row.sha256))
    except InvalidInput:
        return None
    return row


def _trim_after(studio: Studio, exp_id: int, last: Checkpoint) -> None:
    """Before resuming from ``last``: forget the metric rows recorded after its step (an
    interrupted attempt's), and put the experiment's epoch count back to the checkpoint's."""
    with studio.sessions.begin() as s:
        s.execute(
            delete(EpochMetric).where(EpochMetric.experiment_id == exp_id, EpochMetric.step > last.step)
        )
        exp = s.get(Experiment, exp_id)
        if exp is not None:
            exp.epochs_done = last.epoch


def _reset_attempt(studio: Studio, exp_id: int) -> None:
    """Forget an interrupted attempt: its metric rows and checkpoints (blobs released)."""
    with studio.sessions.begin() as s:
        s.execute(delete(EpochMetric).where(EpochMetric.experiment_id == exp_id))
        released = _release_checkpoints(studio, s, exp_id)
    if released:
        with studio.sessions.begin() as s:
            studio.store.gc(s)


class _Recorder:
    """The parent's side: writes what the child reports into the database and the job's events."""

    def __init__(self, ctx: JobContext, exp_id: int, epochs: int, monitor: str) -> None:
        self.ctx = ctx
        self.studio = ctx.studio
        self.exp_id = exp_id
        self.epochs = epochs
        self.monitor = monitor
        self.total_steps: int | None = None
        self.live: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.pid: int | None = None

    def _event(self, data: dict[str, Any]) -> None:
        self.ctx.queue.event(
            self.ctx.job_id, "metrics", {"experiment_id": self.exp_id, "attempt": self.ctx.attempt, **data}
        )

    def _own(self, s: Session) -> None:
        """Inside a write transaction: this worker still holds the job. A worker whose lease
        expired must not write beside the retry that restarted the experiment."""
        held = s.scalar(
            select(Job.id).where(
                Job.id == self.ctx.job_id, Job.worker == self.ctx.worker, Job.status == "running"
            )
        )
        if held is None:
            self.ctx.lease_lost.set()
            raise LeaseLost(f"job {self.ctx.job_id} is no longer held by {self.ctx.worker}")

    def _rows(self, s: Session, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self._own(s)
        now = utcnow()
        s.add_all(
            EpochMetric(
                experiment_id=self.exp_id, epoch=epoch, step=step, name=k[:64], value=float(v), created_at=now
            )
            for k, v in metrics.items()
            if isinstance(v, int | float)
        )

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "start":
            info = msg["info"]
            self.pid = msg["pid"]
            self.total_steps = info["total_steps"]
            self.ctx.log(
                f"training process {msg['pid']} started",
                pid=msg["pid"],
                **{k: v for k, v in info.items() if k != "preprocess"},
            )
            self._event(
                {
                    "scope": "start",
                    "total_steps": info["total_steps"],
                    "steps_per_epoch": info["steps_per_epoch"],
                    "epochs": info["epochs"],
                    # a resumed run: the page keeps the curves up to this step
                    "resumed_from_step": info.get("resumed_from_step"),
                }
            )
            resumed = info.get("resumed_from_step")
            if resumed is not None:
                self.ctx.log(f"resumed from the last checkpoint at step {resumed}", step=resumed)
            epoch = starting_epoch(resumed, info["steps_per_epoch"], self.epochs)
            self.ctx.progress(resumed or 0, self.total_steps, f"epoch {epoch}/{self.epochs}", force=True)
        elif kind == "step":
            with self.studio.sessions.begin() as s:
                self._rows(s, msg["epoch"], msg["step"], msg["metrics"])
            self._event(
                {"scope": "step", "epoch": msg["epoch"], "step": msg["step"], "metrics": msg["metrics"]}
            )
        elif kind == "progress":
            self.live = msg["live"]
            self._event({"scope": "progress", "live": self.live})
            self.ctx.progress(self.live["step"], self.total_steps, live_text(self.live))
        elif kind == "epoch":
            self._epoch(msg)
        elif kind == "checkpoint":
            self._checkpoint(msg)
        elif kind == "done":
            self.result = msg["result"]
        elif kind == "error":
            self.error = msg["error"]

    def _epoch(self, msg: dict[str, Any]) -> None:
        epoch, step, metrics = msg["epoch"], msg["step"], msg["metrics"]
        details = dict(msg["details"])
        if len(details.get("confusion") or ()) > MAX_CONFUSION_CLASSES:
            details.pop("confusion")  # n² numbers: kept in the checkpoint file, not in every row update
        summary = {**metrics, "epoch": epoch, "step": step, **details}
        with self.studio.sessions.begin() as s:
            self._rows(s, epoch, step, metrics)
            exp = s.get(Experiment, self.exp_id)
            if exp is not None:
                exp.epochs_done = epoch
                exp.final_metrics = summary
                if msg["best"]:
                    exp.best_metrics = summary
        self._event({"scope": "epoch", "epoch": epoch, "step": step, "metrics": metrics, "best": msg["best"]})
        value = metrics.get(self.monitor)
        text = f"epoch {epoch}/{self.epochs}" + (
            f" · {self.monitor} {value:.3f}" if value is not None else ""
        )
        self.ctx.progress(step, self.total_steps, text, force=True)

    def _checkpoint(self, msg: dict[str, Any]) -> None:
        src = Path(msg["path"])
        store = self.studio.store
        sha = store.write_file(CHECKPOINT_KIND, src, ext=CHECKPOINT_EXT)
        size = src.stat().st_size
        released = False
        with self.studio.sessions.begin() as s:
            self._own(s)
            row = s.scalar(
                select(Checkpoint).where(
                    Checkpoint.experiment_id == self.exp_id, Checkpoint.kind == msg["kind"]
                )
            )
            if row is None:
                row = Checkpoint(
                    experiment_id=self.exp_id, kind=msg["kind"], sha256=sha, size=size, epoch=0, step=0
                )
                s.add(row)
                store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
            elif row.sha256 != sha:
                store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
                store.release(s, CHECKPOINT_KIND, row.sha256)
                released = True
            row.sha256, row.size = sha, size
            row.epoch, row.step, row.metrics = msg["epoch"], msg["step"], msg["metrics"]
            row.created_at = utcnow()
        if released:  # the replaced checkpoint's blob goes unless something else holds it
            with self.studio.sessions.begin() as s:
                store.gc(s)
        src.unlink(missing_ok=True)
        self._event({"scope": "checkpoint", "kind": msg["kind"], "epoch": msg["epoch"], "step": msg["step"]})


def _finish(studio: Studio, exp_id: int, status: str, *, error: str | None = None) -> dict[str, Any]:
    with studio.sessions.begin() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise PermanentJobError("the experiment was deleted while it trained")
        exp.status = status
        exp.error = error
        exp.finished_at = utcnow()
        checkpoints = list(s.scalars(select(Checkpoint).where(Checkpoint.experiment_id == exp_id)))
        project = s.get(Project, exp.project_id)
        return experiment_dict(
            studio, exp, project=project.name if project else None, checkpoints=checkpoints
        )


ERROR_CHARS = 4000


def _error_text(error: dict[str, Any]) -> str:
    """The error's message (its start) and the tail of its traceback, within ERROR_CHARS."""
    message = str(error.get("message") or "")[:1000]
    tail = (error.get("traceback") or "")[-(ERROR_CHARS - len(message) - 2) :]
    return f"{message}\n\n{tail}".strip()


@job_handler("train")
def run_training(ctx: JobContext) -> dict[str, Any]:
    """Train one experiment in a child process; see the module docstring."""
    from vistudio.ml.training.process import TrainingProcess
    from vistudio.ml.training.trainer import TrainSpec

    studio = ctx.studio
    exp_id = int(ctx.params["experiment_id"])
    for stale in studio.tmp.glob(f"train-{exp_id}-*"):  # an earlier attempt's working files
        shutil.rmtree(stale, ignore_errors=True)
    if ctx.cancel_requested.is_set():
        # stopped before its worker died: a retry would start over; keep what was saved instead
        _finish(studio, exp_id, "stopped")
        raise JobCancelled()
    # a resume asked for, or a retry of an attempt that left a last checkpoint: continue from it
    asked = ctx.params.get("resume")
    last = _resume_point(studio, exp_id) if asked or ctx.attempt > 1 else None
    if asked and last is None:
        message = "its last checkpoint (with the training state to resume from) is gone or damaged"
        _finish(
            studio, exp_id, ctx.params.get("previous_status") or "failed", error=f"cannot resume: {message}"
        )
        raise PermanentJobError(f"cannot resume: {message}")
    if last is None:
        _reset_attempt(studio, exp_id)
    else:
        _trim_after(studio, exp_id, last)
    with studio.sessions.begin() as s:
        exp = s.get(Experiment, exp_id)
        if exp is None:
            raise PermanentJobError("the experiment of this training job was deleted")
        if exp.split_id is None:
            exp.status, exp.error, exp.finished_at = "failed", "its split was deleted", utcnow()
            raise PermanentJobError("the experiment's split was deleted")
        exp.status = "running"
        exp.error = None
        exp.finished_at = None
        if last is None or exp.started_at is None:
            exp.started_at = utcnow()
        if last is None:
            exp.epochs_done = 0
            exp.best_metrics = {}
            exp.final_metrics = {}
        project = s.get(Project, exp.project_id)
        items = experiment_items(studio, s, exp, ["train", "val"])
        config, classes, name, task = dict(exp.config), list(exp.classes), exp.name, exp.task
    workdir = studio.tmp / f"train-{exp_id}-job{ctx.job_id}-a{ctx.attempt}"
    spec = TrainSpec(
        task=task,
        config=config,
        classes=classes,
        train=[(it.path, it.target) for it in items if it.subset == "train"],
        val=[(it.path, it.target) for it in items if it.subset == "val"],
        workdir=str(workdir),
        meta={"experiment": name, "experiment_id": exp_id, "project": project.name if project else None},
    )
    if last is not None:
        # a copy: the store's blob is released as soon as the resumed run saves its next checkpoint
        workdir.mkdir(parents=True, exist_ok=True)
        spec.resume_from = str(
            shutil.copyfile(checkpoint_path(studio, last.sha256), workdir / "resume-from.pt")
        )
        # the user's resume (more epochs…) starts early stopping's patience over; a retry, or a
        # retry of that resume once it has saved a newer checkpoint, continues exactly
        spec.resume_mode = "extend" if asked and last.step == ctx.params.get("from_step") else "retry"
    rec = _Recorder(ctx, exp_id, int(config.get("epochs", 0)), str(config.get("monitor") or ""))
    proc = TrainingProcess(spec)
    stopping_since: float | None = None
    try:
        ctx.progress(0, None, "starting the training process", force=True)
        proc.start()
        while not proc.finished():
            for msg in proc.poll(POLL_SECONDS):
                rec.handle(msg)
            try:
                ctx.check_cancelled()
            except JobCancelled:
                if stopping_since is None:
                    stopping_since = time.monotonic()
                    proc.request_stop()
                    ctx.progress(0, None, "stopping: saving the last checkpoint", force=True)
                elif time.monotonic() - stopping_since > STOP_GRACE_SECONDS:
                    proc.kill()
    except LeaseLost:
        proc.kill()  # another worker owns the job now; it restarts the experiment
        raise
    except Exception as exc:
        proc.kill()
        _finish(studio, exp_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise PermanentJobError(f"training failed: {exc}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if rec.error is not None:
        _finish(studio, exp_id, "failed", error=_error_text(rec.error))
        raise PermanentJobError(f"training failed: {rec.error['message']}")
    if rec.result is None:
        code = proc.exitcode
        if stopping_since is not None:
            reason = "stopped, but the training process did not finish saving in time"
            _finish(studio, exp_id, "stopped", error=reason)
            raise JobCancelled()
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        hint = " (out of memory?)" if code == -9 else ""
        message = f"the training process died ({why}){hint}"
        _finish(studio, exp_id, "failed", error=message)
        raise PermanentJobError(message)
    # a stop asked for just as the training ended on its own still ends it "stopped": the user
    # sees the outcome they asked for, and the checkpoints are the same either way
    if (
        rec.result["status"] == "stopped"
        or stopping_since is not None
        or studio.queue.get(ctx.job_id).cancel_requested
    ):
        _finish(studio, exp_id, "stopped")
        raise JobCancelled()
    out = _finish(studio, exp_id, "succeeded")
    return {
        "experiment": out,
        "training": {k: rec.result[k] for k in ("status", "epochs", "step", "seconds")},
        "live": rec.live,
    }
