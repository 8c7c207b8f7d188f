"""What the experiment pages and the CLI show of each task (``TaskSpec.display``): every key shown is
a metric the task reports (or its per-step variant), classification shows what it always did, a
detector shows mAP and its loss components, values are written as the pages' script writes them,
and reading a display imports no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vistudio.ml.tasks import (
    CLASSIFICATION_DISPLAY,
    GENERIC_DISPLAY,
    METRIC_FORMATS,
    TASKS,
    format_metric,
    get_task,
    get_training,
    lower_is_better,
)

TRAINABLE = [name for name, spec in TASKS.entries.items() if spec.can_train]
TRAIN_JS = Path(__file__).resolve().parents[2] / "src/vistudio/web/static/train.js"


def test_the_trained_tasks_include_both_box_tasks() -> None:
    assert {"classification", "detection", "instance_segmentation"} <= set(TRAINABLE)


@pytest.mark.parametrize("task", TRAINABLE)
def test_every_key_shown_is_a_metric_the_task_reports(task: str) -> None:
    training = get_training(task)
    display = training.display()
    assert display is get_task(task).display
    reported = set(training.metric_names())
    allowed = reported | {f"{n}_step" for n in reported}
    assert display.keys() <= allowed, sorted(display.keys() - allowed)
    # the headline, the list's columns and the CLI's summary are epoch values (a best epoch has them)
    for key in [m.key for m in (*display.headline, *display.columns)] + list(display.summary):
        assert key in reported, key
    assert display.headline and display.columns and display.summary and display.loss_series
    assert all(m.format in METRIC_FORMATS for m in (*display.headline, *display.columns))
    # losses are written as losses, scores not
    for m in (*display.headline, *display.columns):
        assert (m.format == "loss") == lower_is_better(m.key), m
    # early stopping watches a metric the pages title and the task reports
    assert training.default_monitor in reported and display.title(training.default_monitor)
    keys = [k for k, _ in (*display.loss_series, *display.metric_series)]
    assert len(keys) == len(set(keys))


def test_classification_shows_what_it_always_did() -> None:
    d = get_task("classification").display
    assert d is CLASSIFICATION_DISPLAY
    assert [(m.key, m.title, m.format) for m in d.headline] == [
        ("val_accuracy", "val accuracy", "percent"),
        ("val_f1_macro", "val F1 macro", "percent"),
        ("val_loss", "val loss", "loss"),
        ("train_accuracy", "train accuracy", "percent"),
    ]
    assert [(m.key, m.title, m.format) for m in d.columns] == [
        ("val_accuracy", "Val acc.", "percent"),
        ("val_f1_macro", "Val F1", "decimal"),
        ("val_loss", "Val loss", "loss"),
    ]
    assert d.summary == ("val_accuracy", "val_f1_macro", "val_loss", "train_loss")
    assert d.metric_chart == "Accuracy and F1" and d.loss_chart == "Loss"
    # the script's own series (used when a page gives none) are the classification ones
    js = TRAIN_JS.read_text(encoding="utf-8")
    for const, series in (("TRAIN_LOSS_SERIES", d.loss_series), ("TRAIN_METRIC_SERIES", d.metric_series)):
        found = re.search(rf"const {const} = (\[.*?\]);\n", js)
        assert found, const
        assert [tuple(s) for s in json.loads(found.group(1))] == list(series)


def test_detectors_show_map_and_each_loss_component() -> None:
    det = get_task("detection").display
    assert [m.key for m in det.headline] == ["val_map", "val_map50", "val_map75", "train_loss"]
    assert [m.title for m in det.headline][:2] == ["val mAP", "val mAP50"]
    assert det.summary == ("val_map", "val_map50", "val_map75", "train_loss")
    loss_keys = [k for k, _ in det.loss_series]
    for component in ("classifier", "box_reg", "objectness", "rpn_box_reg", "centerness"):
        assert f"train_loss_{component}_step" in loss_keys
    assert "train_loss_mask_step" not in loss_keys and "val_loss" not in loss_keys
    assert [k for k, _ in det.metric_series] == ["val_map", "val_map50", "val_map75"]
    assert det.title("train_loss_box_reg") == "train loss: box regression"
    assert det.title("val_map75") == "val mAP75"

    seg = get_task("instance_segmentation").display
    assert [m.key for m in seg.headline] == [
        "val_mask_map",
        "val_mask_map50",
        "val_map",
        "val_map50",
        "train_loss",
    ]  # mask mAP first
    assert seg.headline[2].title == "val box mAP" and seg.columns[0].key == "val_mask_map"
    assert "train_loss_mask_step" in [k for k, _ in seg.loss_series]
    assert seg.title("val_mask_map75") == "val mask mAP75"
    # a task without a display of its own shows its loss
    assert GENERIC_DISPLAY.summary == ("train_loss",)
    obb = get_task("oriented_detection").display
    assert obb.summary[0] == "val_map50" and obb.title("train_loss_angle") == "train loss: angle"


def test_formats_and_which_way_is_better() -> None:
    assert format_metric(0.87346, "percent") == "87.3%"
    assert format_metric(0.87346, "decimal") == "0.873"
    assert format_metric(0.87346, "loss") == "0.8735"
    assert format_metric(1, "percent") == "100.0%"
    assert format_metric(-1.0, "decimal") == "-1.000"  # COCO's "no ground truth"
    for missing in (None, "0.5", True, [0.5]):
        assert format_metric(missing, "decimal") == "—"  # type: ignore[arg-type]
    assert lower_is_better("val_loss") and lower_is_better("train_loss_box_reg")
    assert lower_is_better("train_loss_step") and lower_is_better("val_error")
    assert not lower_is_better("val_map") and not lower_is_better("val_accuracy")
    assert not lower_is_better("val_f1_macro")


def test_reading_a_display_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from vistudio.ml.tasks import get_task\n"
        "for t in ('classification', 'detection', 'instance_segmentation'):\n"
        "    d = get_task(t).display\n"
        "    d.charts(); d.formats(); d.title('val_map')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
