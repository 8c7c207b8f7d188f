"""The experiment tables of the CLI lead with each task's own metrics (its display's summary):
``experiments``, ``experiment show``, ``experiment metrics`` and ``experiment compare`` show mAP for
a detection project, mask mAP first for instance segmentation, accuracy and F1 for classification.
Experiments are made of database rows (tests/experiment_rows.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiment_rows import experiment_with_metrics
from vistudio.cli import output
from vistudio.cli.main import main
from vistudio.config import ImportSettings, Settings
from vistudio.services import projects
from vistudio.studio import open_studio


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal wide enough for every column on one line (the console is built once, at import)."""
    monkeypatch.setattr(output.console, "_width", 240)


def run(capsys: pytest.CaptureFixture[str], ws: Path, *args: str) -> str:
    code = main(["--workspace", str(ws), *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def header(text: str) -> list[str]:
    """The column titles of the first table in ``text``."""
    line = next(line for line in text.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


def test_tables_lead_with_the_tasks_metrics(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, wide: None
) -> None:
    ws = tmp_path / "ws"
    studio = open_studio(Settings(home=ws, imports=ImportSettings(workers=1)))
    projects.create_project(studio, name="boxes", task="detection")
    projects.create_project(studio, name="masks", task="instance_segmentation")
    projects.create_project(studio, name="labels", task="classification")
    projects.create_project(studio, name="nothing-yet", task="detection")
    good = experiment_with_metrics(studio, project="boxes", name="frcnn")
    experiment_with_metrics(studio, project="boxes", name="fcos", model="fcos_resnet50_fpn", shift=0.4)
    experiment_with_metrics(
        studio, project="masks", name="mrcnn", task="instance_segmentation", model="maskrcnn_resnet50_fpn"
    )
    for name in ("clf", "clf-2"):
        experiment_with_metrics(studio, project="labels", name=name, task="classification", model="resnet18")
    studio.close()

    listed = run(capsys, ws, "experiments", "boxes")
    assert header(listed)[-4:] == ["val_map", "val_map50", "val_map75", "train_loss"]
    assert f"{good['best']['val_map']:.4f}" in listed and "val_accuracy" not in listed
    assert header(run(capsys, ws, "experiments", "masks"))[4:6] == ["val_mask_map", "val_mask_map50"]
    assert header(run(capsys, ws, "experiments", "labels"))[4:] == [
        "val_accuracy",
        "val_f1_macro",
        "val_loss",
        "train_loss",
    ]
    assert header(run(capsys, ws, "experiments", "nothing-yet"))[4:6] == ["val_map", "val_map50"]

    # show: the best metrics, the task's summary first, every other one after
    shown = run(capsys, ws, "experiment", "show", "boxes", "frcnn")
    metric_rows = [line.split("│")[1].strip() for line in shown.splitlines() if line.startswith("│")]
    assert metric_rows[:4] == ["val_map", "val_map50", "val_map75", "train_loss"]
    assert {"train_loss_classifier", "train_loss_rpn_box_reg"} <= set(metric_rows[4:])
    masks = run(capsys, ws, "experiment", "show", "masks", "mrcnn")
    assert [line.split("│")[1].strip() for line in masks.splitlines() if line.startswith("│")][:2] == [
        "val_mask_map",
        "val_mask_map50",
    ]

    # metrics: per epoch, the summary's columns
    per_epoch = run(capsys, ws, "experiment", "metrics", "boxes", "frcnn")
    assert header(per_epoch) == ["epoch", "val_map", "val_map50", "val_map75", "train_loss"]
    assert sum(line.startswith("│") for line in per_epoch.splitlines()) == 3

    # compare: the summary's columns, for the metrics the experiments have
    cmp = run(capsys, ws, "experiment", "compare", "boxes", "frcnn", "fcos")
    assert header(cmp)[4:] == ["val_map", "val_map50", "val_map75", "train_loss"]
    clf = run(capsys, ws, "experiment", "compare", "labels", "clf", "clf-2")
    assert header(clf)[4:] == ["val_accuracy", "val_f1_macro", "val_loss", "train_loss"]
