"""Evaluation of an experiment's checkpoint (see :mod:`.core`); one evaluator per task.

The task modules (classification, detection and instance segmentation, oriented detection, semantic
segmentation, regression, anomaly detection) register their evaluator in :data:`EVALUATORS` when imported here:
the ``evaluate`` job, the queries and the reset pick it by the experiment's task.
"""

from vistudio.services.evaluation import (
    anomaly,
    classification,
    detection,
    oriented,
    regression,
    segmentation,
)
from vistudio.services.evaluation.classification import SORTS, result_dict
from vistudio.services.evaluation.core import (
    ACTIVE,
    DEFAULT_IOU,
    DEVICES,
    EVALUATORS,
    FOLDER,
    MAX_BATCH,
    SUBSETS,
    THRESHOLD_BY,
    TOP_K,
    Evaluator,
    check_thresholds,
    confusion_png,
    eval_dir,
    evaluation_dict,
    evaluation_summaries,
    evaluator_for,
    find_evaluation,
    get_evaluation,
    get_result,
    list_results,
    parse_subsets,
    reset_evaluation,
    run_evaluation,
    start_evaluation,
)

__all__ = [
    "ACTIVE",
    "DEFAULT_IOU",
    "DEVICES",
    "EVALUATORS",
    "FOLDER",
    "MAX_BATCH",
    "SORTS",
    "SUBSETS",
    "THRESHOLD_BY",
    "TOP_K",
    "Evaluator",
    "anomaly",
    "check_thresholds",
    "classification",
    "confusion_png",
    "detection",
    "eval_dir",
    "evaluation_dict",
    "evaluation_summaries",
    "evaluator_for",
    "find_evaluation",
    "get_evaluation",
    "get_result",
    "list_results",
    "oriented",
    "parse_subsets",
    "regression",
    "reset_evaluation",
    "result_dict",
    "run_evaluation",
    "segmentation",
    "start_evaluation",
]
