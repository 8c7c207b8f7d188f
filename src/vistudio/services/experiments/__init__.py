"""Experiments: configure, train in the background (a job), list, compare, stop, delete.

The helpers in ``lookup`` (finding an experiment, its checkpoints and the labelled items of a
split) are shared with ``services.evaluation`` and ``services.exports``, which also register
cleanup hooks (``register_cleanup``) to release what they keep per experiment.

Training runs in a child process (``ml/training/process.py``); the ``train`` job handler is its
parent: it records what the child reports (metric rows, job events, checkpoints into the artifact
store), heartbeats through the worker, and turns a cancel into a graceful stop. ``resume``
continues a stopped, failed or finished experiment from its last checkpoint (which holds the whole
training state); a retried job (its worker died) resumes the same way, or restarts from epoch 0
with the same seed when the interrupted attempt left no checkpoint. Metric rows recorded after the
checkpoint resumed from are removed first, so no step is ever recorded twice.

Modules by concern: ``lookup`` (finding experiments and checkpoints, split items), ``cleanup``
(cleanup hooks, releasing checkpoints), ``config`` (names, config validation, warnings, the model
catalog), ``live`` (live progress, speed and ETA text), ``views`` (experiment dicts, reconciling
with finished jobs), ``queries`` (list, get, metrics, compare), ``lifecycle`` (start, rename, stop,
delete), ``resume`` (continue from the last checkpoint) and ``job`` (the ``train`` job handler).
"""

from vistudio.services.experiments.cleanup import (
    CLEANUP,
    CleanupHook,
    cleanup_hooks,
    register_cleanup,
    release_project_experiments,
)
from vistudio.services.experiments.config import (
    NAME_RE,
    check_name,
    experiment_warnings,
    model_catalog,
    validate_experiment_config,
)
from vistudio.services.experiments.job import (
    ERROR_CHARS,
    MAX_CONFUSION_CLASSES,
    POLL_SECONDS,
    STOP_GRACE_SECONDS,
    run_training,
)
from vistudio.services.experiments.job import _Recorder as _Recorder  # tests drive it directly
from vistudio.services.experiments.lifecycle import (
    delete_experiment,
    start_experiment,
    stop_experiment,
    update_experiment,
)
from vistudio.services.experiments.live import clock_text, live_text, speed_text
from vistudio.services.experiments.lookup import (
    CHECKPOINT_EXT,
    CHECKPOINT_KIND,
    LabelledItem,
    checkpoint_path,
    experiment_items,
    find_checkpoint,
    find_experiment,
    split_items,
    update_row,
)
from vistudio.services.experiments.queries import (
    compare_experiments,
    experiment_metrics,
    get_experiment,
    list_experiments,
)
from vistudio.services.experiments.resume import resume_experiment
from vistudio.services.experiments.views import ACTIVE, checkpoint_dict, experiment_dict

__all__ = [
    "ACTIVE",
    "CHECKPOINT_EXT",
    "CHECKPOINT_KIND",
    "CLEANUP",
    "ERROR_CHARS",
    "MAX_CONFUSION_CLASSES",
    "NAME_RE",
    "POLL_SECONDS",
    "STOP_GRACE_SECONDS",
    "CleanupHook",
    "LabelledItem",
    "check_name",
    "checkpoint_dict",
    "checkpoint_path",
    "cleanup_hooks",
    "clock_text",
    "compare_experiments",
    "delete_experiment",
    "experiment_dict",
    "experiment_items",
    "experiment_metrics",
    "experiment_warnings",
    "find_checkpoint",
    "find_experiment",
    "get_experiment",
    "list_experiments",
    "live_text",
    "model_catalog",
    "register_cleanup",
    "release_project_experiments",
    "resume_experiment",
    "run_training",
    "speed_text",
    "split_items",
    "start_experiment",
    "stop_experiment",
    "update_experiment",
    "update_row",
    "validate_experiment_config",
]
