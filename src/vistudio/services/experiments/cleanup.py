"""Releasing what an experiment holds when it (or its project) is deleted: its checkpoints, and
the blobs of the features that registered a cleanup hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db.training import Checkpoint, Experiment
from vistudio.registry import Registry
from vistudio.services.experiments.lookup import CHECKPOINT_KIND

if TYPE_CHECKING:
    from vistudio.studio import Studio

# Features that keep blobs per experiment (evaluation results, exported models) register a
# function here; deleting an experiment (or its project) calls each one inside the deleting
# transaction so that they release their references: fn(studio, session, experiment).
CleanupHook = Callable[["Studio", Session, Experiment], None]
CLEANUP: Registry[CleanupHook] = Registry("experiment cleanup hook")
register_cleanup = CLEANUP.register


def cleanup_hooks() -> list[CleanupHook]:
    """Every registered cleanup hook, after importing the modules that register one: a process
    that deletes a project (the CLI) need not have imported them for anything else."""
    import vistudio.services.exports  # noqa: F401

    return list(CLEANUP.entries.values())


def _release_checkpoints(studio: Studio, s: Session, experiment_id: int) -> int:
    rows = list(s.scalars(select(Checkpoint).where(Checkpoint.experiment_id == experiment_id)))
    for row in rows:
        studio.store.release(s, CHECKPOINT_KIND, row.sha256)
        s.delete(row)
    return len(rows)


def release_project_experiments(studio: Studio, session: Session, project_id: int) -> None:
    """Release every blob the project's experiments hold (called before a project is deleted)."""
    for exp in session.scalars(select(Experiment).where(Experiment.project_id == project_id)):
        _release_checkpoints(studio, session, exp.id)
        for hook in cleanup_hooks():
            hook(studio, session, exp)
