"""Metric keys in words: the titles of the metrics a task's display does not title itself (the
comparison table's columns, legends, the early-stopping setting) write abbreviations as the
titled ones do."""

from __future__ import annotations

import pytest

from vistudio.ml.tasks import CLASSIFICATION_DISPLAY, metric_words


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("val_f1_micro", "val F1 micro"),
        ("val_f1_macro", "val F1 macro"),
        ("val_precision_macro", "val precision macro"),
        ("val_loss", "val loss"),
        ("val_map", "val mAP"),
        ("val_map50", "val mAP50"),
        ("val_mask_map75", "val mask mAP75"),
        ("val_map_small", "val mAP small"),
        ("train_miou", "train mIoU"),
        ("val_r2", "val R²"),
        ("val_rmse", "val RMSE"),
        ("train_auroc", "train AUROC"),
        ("train_loss_rpn_box_reg", "train loss RPN box reg"),
        ("lr", "learning rate"),
        ("val_top5", "val top5"),
        ("custom__metric_", "custom metric"),
    ],
)
def test_metric_keys_in_words(key: str, words: str) -> None:
    assert metric_words(key) == words


def test_untitled_metrics_read_like_their_titled_neighbours() -> None:
    """The comparison table's columns: "val F1 macro" (the display's title) beside "val F1 micro"
    (no title of its own) — the same case for the same abbreviation."""
    d = CLASSIFICATION_DISPLAY
    assert d.title("val_f1_macro") == "val F1 macro"
    assert d.title("val_f1_micro") == "val F1 micro"
    assert d.title("val_recall_micro") == "val recall micro"
    for key in ("val_accuracy", "val_loss"):  # titled ones keep their title
        assert d.title(key) == next(m.title for m in d.headline if m.key == key)
