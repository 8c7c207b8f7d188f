"""Task registry: every project has one task, looked up here by name.

Each task says which annotation kinds it uses and whether it can be trained. Training-specific
parts (models, losses, metrics, transforms) live in one module per task, ``ml/tasks/<name>.py``,
which registers a ``vistudio.ml.training.task.TrainingTask`` subclass with
``@register_training(name)``. That module is imported on first use, so listing tasks never
imports torch: whether a task can be trained today is known from that module being there.

Each task also says which sections of a project it offers (the tabs of a project's page): a
photo library is browsed, searched and deduplicated; a task that can be split but not trained
yet has no Train, Evaluate or Export.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from vistudio.errors import BadRequest
from vistudio.registry import Registry

if TYPE_CHECKING:
    from vistudio.ml.training.task import TrainingTask


# Every section a project page can have, in tab order, with its title; the Dataset section is
# the project's own URL, the others ``/projects/<name>/<section>``.
SECTIONS: dict[str, str] = {
    "dataset": "Dataset",
    "split": "Split",
    "train": "Train",
    "evaluate": "Evaluate",
    "export": "Export",
    "search": "Search",
    "duplicates": "Duplicates",
    "people": "People",
    "events": "Events",
    "albums": "Albums",
}
TRAINING_SECTIONS = ("train", "evaluate", "export")
LIBRARY_SECTIONS = ("people", "events", "albums")  # sections only photo libraries offer
# what a user does in each section, for the sentence that describes a task
_VERBS = {
    "dataset": "browse",
    "split": "split",
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "search": "search",
    "duplicates": "find duplicates",
    "people": "find people",
    "events": "revisit events",
    "albums": "make albums",
}


@cache
def _has_training_module(name: str) -> bool:
    # find_spec looks for the file without importing it (and so without importing torch)
    return importlib.util.find_spec(f"{__name__}.{name}") is not None


# How pages and the CLI write a metric value: percent 0.873 → "87.3%", decimal → "0.873",
# loss → "0.8731"
METRIC_FORMATS = ("percent", "decimal", "loss")


@dataclass(frozen=True)
class MetricView:
    """One metric as the pages and the CLI show it: its key, its title and how its value is written."""

    key: str
    title: str
    format: str = "percent"  # one of METRIC_FORMATS

    def text(self, value: float | None) -> str:
        return format_metric(value, self.format)


def format_metric(value: float | None, fmt: str) -> str:
    """``value`` written as ``fmt`` (a ``METRIC_FORMATS`` name); None or a non-number is ``—``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    if fmt == "percent":
        return f"{value * 100:.1f}%"
    return f"{value:.3f}" if fmt == "decimal" else f"{value:.4f}"


def lower_is_better(metric: str) -> bool:
    """Losses (``val_loss``, ``train_loss_box_reg``…) and errors (``val_mae``, ``val_rmse``,
    ``val_mse``: regression's, in the targets' units) improve downwards, scores upwards."""
    return metric.endswith(("loss", "error", "_mae", "_mse", "_rmse")) or "_loss_" in metric


# how the titles given by the displays write the abbreviations in metric keys, so that a metric
# without a title of its own reads like its neighbours ("val F1 micro" beside "val F1 macro")
METRIC_WORDS = {
    "ap": "AP",
    "auroc": "AUROC",
    "dice": "Dice",
    "f1": "F1",
    "fpr": "FPR",
    "iou": "IoU",
    "lr": "learning rate",
    "mae": "MAE",
    "map": "mAP",
    "miou": "mIoU",
    "mse": "MSE",
    "r2": "R²",
    "rmse": "RMSE",
    "rpn": "RPN",
    "tpr": "TPR",
}


def metric_words(key: str) -> str:
    """A metric key in words, abbreviations written as the displays' titles write them:
    ``val_f1_micro`` → ``val F1 micro``, ``val_map50`` → ``val mAP50``, ``val_loss`` → ``val loss``."""
    words = []
    for word in key.split("_"):
        stem = word.rstrip("0123456789")  # map50 → mAP50, but f1 and r2 are words of their own
        if word in METRIC_WORDS:
            word = METRIC_WORDS[word]
        elif stem in METRIC_WORDS:
            word = METRIC_WORDS[stem] + word[len(stem) :]
        words.append(word)
    return " ".join(w for w in words if w)


@dataclass(frozen=True)
class TaskDisplay:
    """What the experiment pages, the comparison and the CLI show of a task's training metrics,
    torch-free so that pages know it without importing a training module. Every key is one of the
    task's ``TrainingTask.metric_names()`` or its per-step variant (``<name>_step``)."""

    # the "Best" figures of an experiment's page, in order
    headline: tuple[MetricView, ...]
    # the metric columns of the experiment list (short titles)
    columns: tuple[MetricView, ...]
    # the metrics CLI tables and the comparison page lead with (the comparison adds the others)
    summary: tuple[str, ...]
    # the live charts: (series key, legend) of the loss chart (log scale) and of the metric chart
    # (0-100 %); ``_step`` series are the per-step points
    loss_series: tuple[tuple[str, str], ...]
    metric_series: tuple[tuple[str, str], ...]
    metric_chart: str = "Metrics"  # the metric chart's caption
    loss_chart: str = "Loss"  # the loss chart's caption
    loss_label: str = "Training loss by step"  # what the loss chart draws, for screen readers
    metric_noun: str = "metric"  # "its loss and <noun> curves"
    # titles of the other metrics the task reports (loss components…), for tables and legends
    titles: tuple[tuple[str, str], ...] = ()

    def keys(self) -> set[str]:
        """Every metric key this display shows."""
        shown = [m.key for m in (*self.headline, *self.columns)] + list(self.summary)
        shown += [k for k, _ in (*self.loss_series, *self.metric_series, *self.titles)]
        return set(shown)

    def title(self, key: str) -> str:
        """A metric's title: the one given here, else :func:`metric_words` of its key."""
        for m in self.headline:
            if m.key == key:
                return m.title
        return dict(self.titles).get(key) or metric_words(key)

    def formats(self) -> dict[str, str]:
        """The format of every headline metric, for the page's script."""
        return {m.key: m.format for m in self.headline}

    def charts(self) -> dict[str, Any]:
        """The live charts' series for the page's script: ``{"loss": [[key, legend]…], "metric": …}``."""
        return {
            "loss": [list(s) for s in self.loss_series],
            "metric": [list(s) for s in self.metric_series],
        }


# a task with training but no display of its own: its losses
GENERIC_DISPLAY = TaskDisplay(
    headline=(MetricView("train_loss", "train loss", "loss"),),
    columns=(MetricView("train_loss", "Train loss", "loss"),),
    summary=("train_loss",),
    loss_series=(("train_loss_step", "train loss (per step)"), ("train_loss", "train loss (epoch)")),
    metric_series=(),
    metric_noun="loss",
)

CLASSIFICATION_DISPLAY = TaskDisplay(
    headline=(
        MetricView("val_accuracy", "val accuracy"),
        MetricView("val_f1_macro", "val F1 macro"),
        MetricView("val_loss", "val loss", "loss"),
        MetricView("train_accuracy", "train accuracy"),
    ),
    columns=(
        MetricView("val_accuracy", "Val acc."),
        MetricView("val_f1_macro", "Val F1", "decimal"),
        MetricView("val_loss", "Val loss", "loss"),
    ),
    summary=("val_accuracy", "val_f1_macro", "val_loss", "train_loss"),
    loss_series=(
        ("train_loss_step", "train loss (per step)"),
        ("train_loss", "train loss (epoch)"),
        ("val_loss", "val loss"),
    ),
    metric_series=(
        ("train_accuracy_step", "train accuracy (running)"),
        ("val_accuracy", "val accuracy"),
        ("train_accuracy", "train accuracy"),
        ("val_f1_macro", "val F1 (macro)"),
    ),
    metric_chart="Accuracy and F1",
    metric_noun="accuracy",
    loss_label="Training and validation loss by step",
)

# regression: errors in the targets' own units (lower is better, written as losses), R² as a decimal;
# the loss chart draws the loss on z-scored targets, the metric chart R² (1 = perfect, 0 = the mean)
REGRESSION_DISPLAY = TaskDisplay(
    headline=(
        MetricView("val_rmse", "val RMSE", "loss"),
        MetricView("val_mae", "val MAE", "loss"),
        MetricView("val_r2", "val R²", "decimal"),
        MetricView("val_loss", "val loss", "loss"),
    ),
    columns=(
        MetricView("val_rmse", "Val RMSE", "loss"),
        MetricView("val_r2", "Val R²", "decimal"),
        MetricView("val_loss", "Val loss", "loss"),
    ),
    summary=("val_rmse", "val_mae", "val_r2", "val_loss", "train_loss"),
    loss_series=(
        ("train_loss_step", "train loss (per step)"),
        ("train_loss", "train loss (epoch)"),
        ("val_loss", "val loss"),
    ),
    metric_series=(("val_r2", "val R²"), ("train_r2", "train R²")),
    metric_chart="R² (coefficient of determination)",
    metric_noun="R²",
    loss_chart="Loss (on z-scored targets)",
    loss_label="Training and validation loss by step, on z-scored targets",
    titles=(
        ("val_mse", "val MSE"),
        ("train_mae", "train MAE"),
        ("train_mse", "train MSE"),
        ("train_rmse", "train RMSE"),
        ("train_r2", "train R²"),
    ),
)

# anomaly detection: AUROC, average precision and the best F1 on the validation images' scores
ANOMALY_DISPLAY = TaskDisplay(
    headline=(
        MetricView("val_auroc", "val AUROC", "decimal"),
        MetricView("val_ap", "val AP", "decimal"),
        MetricView("val_f1", "val F1", "decimal"),
        MetricView("val_loss", "val loss", "loss"),
    ),
    columns=(
        MetricView("val_auroc", "Val AUROC", "decimal"),
        MetricView("val_ap", "Val AP", "decimal"),
        MetricView("val_loss", "Val loss", "loss"),
    ),
    summary=("val_auroc", "val_ap", "val_f1", "val_loss", "train_loss"),
    loss_series=(
        ("train_loss_step", "train loss (per step)"),
        ("train_loss", "train loss (epoch)"),
        ("val_loss", "val loss"),
    ),
    metric_series=(("val_auroc", "val AUROC"), ("val_ap", "val AP"), ("val_f1", "val F1")),
    metric_chart="AUROC, AP and F1",
    metric_noun="AUROC",
    loss_label="Training and validation loss by step",
    titles=(("train_auroc", "train AUROC"), ("train_ap", "train AP"), ("train_f1", "train F1")),
)

# the loss components of the detectors (each family reports its own: a chart draws those it gets),
# as running means of the epoch so far
_DETECTION_LOSSES = (
    ("train_loss_classifier", "classification"),
    ("train_loss_box_reg", "box regression"),
    ("train_loss_objectness", "objectness"),
    ("train_loss_rpn_box_reg", "RPN box regression"),
    ("train_loss_centerness", "centerness"),
)
_MASK_LOSSES = (("train_loss_mask", "mask"),)


def _detector_display(*, masks: bool) -> TaskDisplay:
    """Detection: box mAP; instance segmentation: mask mAP first, then box mAP. Both: the total
    training loss and each component of the model's family in the loss chart."""
    losses = _DETECTION_LOSSES + (_MASK_LOSSES if masks else ())
    loss_series = (
        ("train_loss_step", "train loss (per step)"),
        ("train_loss", "train loss (epoch)"),
        *((f"{key}_step", title) for key, title in losses),
    )
    titles = tuple((key, f"train loss: {title}") for key, title in losses)
    train_loss = MetricView("train_loss", "train loss", "loss")
    loss_chart = "Loss and its components"
    loss_label = "Training loss and each of its components by step"
    box = "box " if masks else ""  # instance segmentation has two kinds of mAP
    box_maps = [MetricView(f"val_map{iou}", f"val {box}mAP{iou}", "decimal") for iou in ("", "50", "75")]
    box_series = tuple((m.key, f"{box}mAP{iou}") for m, iou in zip(box_maps, ("", "50", "75"), strict=True))
    if not masks:
        return TaskDisplay(
            headline=(*box_maps, train_loss),
            columns=(
                MetricView("val_map", "Val mAP", "decimal"),
                MetricView("val_map50", "Val mAP50", "decimal"),
                MetricView("train_loss", "Train loss", "loss"),
            ),
            summary=("val_map", "val_map50", "val_map75", "train_loss"),
            loss_series=loss_series,
            metric_series=box_series,
            metric_chart="Validation mAP",
            metric_noun="mAP",
            loss_chart=loss_chart,
            loss_label=loss_label,
            titles=titles,
        )
    mask_maps = [
        MetricView(f"val_mask_map{iou}", f"val mask mAP{iou}", "decimal") for iou in ("", "50", "75")
    ]
    return TaskDisplay(
        headline=(mask_maps[0], mask_maps[1], box_maps[0], box_maps[1], train_loss),
        columns=(
            MetricView("val_mask_map", "Mask mAP", "decimal"),
            MetricView("val_map", "Box mAP", "decimal"),
            MetricView("train_loss", "Train loss", "loss"),
        ),
        summary=("val_mask_map", "val_mask_map50", "val_map", "val_map50", "train_loss"),
        loss_series=loss_series,
        # the headline's four: six lines would crowd the chart
        metric_series=(
            (mask_maps[0].key, "mask mAP"),
            (mask_maps[1].key, "mask mAP50"),
            *box_series[:2],
        ),
        metric_chart="Validation mAP (masks and boxes)",
        metric_noun="mAP",
        loss_chart=loss_chart,
        loss_label=loss_label,
        titles=(*titles, (mask_maps[2].key, mask_maps[2].title), (box_maps[2].key, box_maps[2].title)),
    )


# oriented detection: the DOTA mAP at IoU 0.5 (11-point, the devkit's default; and the area under
# the curve), the training loss and its four components
ORIENTED_DISPLAY = TaskDisplay(
    headline=(
        MetricView("val_map50", "val mAP50 (DOTA)", "decimal"),
        MetricView("val_map50_area", "val mAP50 (area)", "decimal"),
        MetricView("train_loss", "train loss", "loss"),
    ),
    columns=(
        MetricView("val_map50", "Val mAP50", "decimal"),
        MetricView("train_loss", "Train loss", "loss"),
    ),
    summary=("val_map50", "val_map50_area", "train_loss"),
    loss_series=(
        ("train_loss_step", "train loss (per step)"),
        ("train_loss", "train loss (epoch)"),
        ("train_loss_classifier_step", "classification"),
        ("train_loss_box_reg_step", "box regression"),
        ("train_loss_angle_step", "angle"),
        ("train_loss_centerness_step", "centerness"),
    ),
    metric_series=(("val_map50", "mAP50 (11-point)"), ("val_map50_area", "mAP50 (area)")),
    metric_chart="Validation mAP50 (DOTA)",
    metric_noun="mAP",
    loss_chart="Loss and its components",
    loss_label="Training loss and each of its components by step",
    titles=(
        ("train_loss_classifier", "train loss: classification"),
        ("train_loss_box_reg", "train loss: box regression"),
        ("train_loss_angle", "train loss: angle"),
        ("train_loss_centerness", "train loss: centerness"),
    ),
)

SEGMENTATION_DISPLAY = TaskDisplay(
    headline=(
        MetricView("val_miou", "val mIoU"),
        MetricView("val_pixel_accuracy", "val pixel accuracy"),
        MetricView("val_loss", "val loss", "loss"),
    ),
    columns=(
        MetricView("val_miou", "Val mIoU"),
        MetricView("val_pixel_accuracy", "Pixel acc."),
        MetricView("val_loss", "Val loss", "loss"),
    ),
    summary=(
        "val_miou",
        "val_pixel_accuracy",
        "val_mean_class_accuracy",
        "val_dice",
        "val_loss",
        "train_loss",
    ),
    loss_series=(
        ("train_loss_step", "train loss (per step)"),
        ("train_loss", "train loss (epoch)"),
        ("val_loss", "val loss"),
    ),
    metric_series=(
        ("train_miou_step", "train mIoU (running)"),
        ("val_miou", "val mIoU"),
        ("train_miou", "train mIoU"),
    ),
    metric_chart="Mean IoU",
    metric_noun="mIoU",
    loss_label="Training and validation loss by step",
    titles=(
        ("val_mean_class_accuracy", "val mean class accuracy"),
        ("val_dice", "val Dice"),
        ("train_miou", "train mIoU"),
        ("train_pixel_accuracy", "train pixel accuracy"),
    ),
)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    annotation_kinds: tuple[str, ...]
    # False: the task is never trained (a photo library); True: it is meant to be, see can_train
    trainable: bool = True
    # the annotation kinds that are the task's objects (what object counts, sizes, training targets
    # and evaluation count); an instance segmentation object is its mask, its imported box the same
    # object. Empty: the task has no objects (labels, values)
    object_kinds: tuple[str, ...] = ()
    masks: bool = False  # a detector's objects are masks (instance segmentation), not boxes alone
    # the objects are painted into one label map per image (semantic segmentation): the model labels
    # pixels and lists no objects, so it is not a detector (``is_detector``) although the task has
    # objects; class-less ignored regions (an imported PNG mask's 255 pixels) are training objects too
    dense: bool = False
    # what the experiment pages and the CLI show of its training metrics
    display: TaskDisplay = GENERIC_DISPLAY

    @property
    def has_objects(self) -> bool:
        return bool(self.object_kinds)

    @property
    def is_detector(self) -> bool:
        """Whether the task's models are detectors: they list the objects they find (boxes, masks)
        and are evaluated, exported and rebuilt as such; a segmenter (``dense``) is not one."""
        return self.has_objects and not self.dense

    @property
    def can_train(self) -> bool:
        """Whether projects of this task can be trained today (its training module exists)."""
        return self.trainable and _has_training_module(self.name)

    @property
    def sections(self) -> tuple[str, ...]:
        """The sections (``SECTIONS`` keys) a project of this task offers, in tab order."""
        if not self.trainable:  # nothing to split for: a library is browsed, searched, deduplicated
            return ("dataset", "search", "duplicates", "people", "events", "albums")
        return tuple(
            s
            for s in SECTIONS
            if (self.can_train or s not in TRAINING_SECTIONS) and s not in LIBRARY_SECTIONS
        )

    @property
    def label(self) -> str:
        """The task's name in a list of tasks, with a word when it cannot be trained yet."""
        return (
            f"{self.title} (training not yet available)"
            if self.trainable and not self.can_train
            else self.title
        )

    @property
    def summary(self) -> str:
        """What projects of this task can do, in a sentence: "Detection — browse, split, search and
        find duplicates; training not yet available"."""
        verbs = [_VERBS[s] for s in self.sections]
        text = f"{self.title} — {', '.join(verbs[:-1])} and {verbs[-1]}"
        if not self.trainable:
            return f"{text}; no training"
        return text if self.can_train else f"{text}; training not yet available"


TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    return TASKS.add(spec.name, spec)


def get_task(name: str) -> TaskSpec:
    return TASKS.get(name)


def task_names() -> list[str]:
    """Task names in the order they were registered (the order users see them in)."""
    return list(TASKS.entries)


for _spec in (
    TaskSpec("classification", "Classification", ("label",), display=CLASSIFICATION_DISPLAY),
    TaskSpec(
        "detection", "Detection", ("box",), object_kinds=("box",), display=_detector_display(masks=False)
    ),
    # masks stays False: every reader of ``masks`` means a detector's instance masks (its export's
    # outputs, its evaluation's drawing); a segmenter's objects being masks is said by object_kinds
    TaskSpec(
        "semantic_segmentation",
        "Semantic segmentation",
        ("polygon", "mask_rle"),
        object_kinds=("polygon", "mask_rle"),
        dense=True,
        display=SEGMENTATION_DISPLAY,
    ),
    TaskSpec(
        "instance_segmentation",
        "Instance segmentation",
        ("polygon", "mask_rle", "box"),
        object_kinds=("polygon", "mask_rle"),
        masks=True,
        display=_detector_display(masks=True),
    ),
    TaskSpec("anomaly_detection", "Anomaly detection", ("label",), display=ANOMALY_DISPLAY),
    TaskSpec("regression", "Regression", ("value",), display=REGRESSION_DISPLAY),
    TaskSpec(
        "oriented_detection",
        "Oriented detection",
        ("rotated_box",),
        object_kinds=("rotated_box",),
        display=ORIENTED_DISPLAY,
    ),
    TaskSpec("library", "Photo library", (), trainable=False),
):
    register_task(_spec)


TRAINING: Registry[Any] = Registry("training task")


def register_training(name: str) -> Any:
    """Class decorator: the training parts of task ``name`` (a ``TrainingTask`` subclass)."""
    get_task(name)  # only known tasks get training parts
    return TRAINING.register(name)


def get_training(name: str) -> type[TrainingTask]:
    """The training parts of a task, importing ``vistudio.ml.tasks.<name>`` on first use.

    A task that exists but has no training module yet is a 400 that says so."""
    try:
        spec = get_task(name)
    except KeyError as exc:
        raise BadRequest(str(exc.args[0])) from None
    if name not in TRAINING.entries and spec.trainable:
        module = f"vistudio.ml.tasks.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    if name not in TRAINING.entries:
        raise BadRequest(
            f"training is not available for {spec.title.lower()} projects yet",
            details={"task": name, "trainable": sorted(TRAINING.entries)},
        )
    cls: type[TrainingTask] = TRAINING.get(name)
    return cls
