"""The training CLI contract: with --json exactly one JSON document; train waits and reports the
experiment and its checkpoints; experiments, experiment show/metrics/compare/stop/delete, models."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from training_helpers import tiny_project
from vistudio.cli.main import main
from vistudio.cli.training import _live_line
from vistudio.config import ImportSettings, Settings
from vistudio.studio import open_studio


def cli(capsys: pytest.CaptureFixture[str], ws: Path, *args: str) -> tuple[int, Any]:
    code = main(["--workspace", str(ws), "--json", *args])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out  # exactly one JSON document
    return code, json.loads(lines[0])


TINY_ARGS = (
    "--model",
    "resnet18",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--image-size",
    "16",
    "--lr",
    "0.01",
    "--seed",
    "3",
    "--no-augment",
)


@pytest.mark.slow
def test_train_and_experiment_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    studio = open_studio(Settings(home=ws, imports=ImportSettings(workers=1)))
    tiny_project(studio, tmp_path, split=False)
    studio.close()

    code, out = cli(capsys, ws, "train", "shapes", *TINY_ARGS)
    assert code == 1 and out["error"]["code"] == "bad_request"
    assert "no split yet" in out["error"]["message"] and "vistudio split create" in out["error"]["message"]
    assert cli(capsys, ws, "split", "create", "shapes", "--ratios", "0.6,0.2,0.2", "--seed", "7")[0] == 0

    code, out = cli(
        capsys, ws, "train", "shapes", *TINY_ARGS, "--name", "first", "--class-weights", "balanced"
    )
    assert code == 0, out
    exp = out["experiment"]
    assert {"id", "name", "status", "best_metrics", "checkpoints"} <= set(exp)
    assert exp["name"] == "first" and exp["status"] == "succeeded" and exp["split"] == "default"
    assert 0 <= exp["best_metrics"]["val_accuracy"] <= 1 and exp["best_metrics"]["epoch"] == 1
    assert {c["kind"] for c in exp["checkpoints"]} == {"best", "last"}
    assert all(Path(c["path"]).is_file() and c["path"].startswith(str(ws)) for c in exp["checkpoints"])

    code, out = cli(
        capsys, ws, "train", "shapes", *TINY_ARGS, "--epochs", "50", "--name", "later", "--no-wait"
    )
    assert code == 0 and out["job"]["status"] == "queued" and out["experiment"]["status"] == "queued"
    assert (
        out["experiment"]["config"]["epochs"] == 50
        and out["experiment"]["config"]["augment"]["crop"] is False
    )

    code, out = cli(capsys, ws, "experiments", "shapes")
    assert out["total"] == 2 and [e["name"] for e in out["items"]] == ["later", "first"]
    code, out = cli(capsys, ws, "experiment", "show", "shapes", "first")
    assert out["experiment"]["config"]["class_weights"] == "balanced" and out["experiment"]["classes"] == [
        "circle",
        "square",
        "stripes",
    ]
    code, out = cli(capsys, ws, "experiment", "metrics", "shapes", "first", "--name", "val_accuracy")
    assert list(out["series"]) == ["val_accuracy"] and out["series"]["val_accuracy"]["epoch"] == [1]
    code, out = cli(capsys, ws, "experiment", "delete", "shapes", "later", "--yes")
    assert code == 1 and out["error"]["code"] == "conflict"
    code, out = cli(capsys, ws, "experiment", "stop", "shapes", "later")
    assert code == 0 and out["experiment"]["status"] == "stopped"
    code, out = cli(capsys, ws, "experiment", "compare", "shapes", "first", "later")
    assert [r["experiment"] for r in out["table"]] == ["first", "later"] and "val_accuracy" in out["series"]
    code, out = cli(capsys, ws, "experiment", "delete", "shapes", "later")
    assert code == 1 and "--yes" in out["error"]["message"]
    code, out = cli(capsys, ws, "experiment", "delete", "shapes", "later", "--yes")
    assert code == 0 and out["deleted"] == "later"
    code, out = cli(capsys, ws, "experiment", "show", "shapes", "later")
    assert code == 1 and out["error"]["code"] == "not_found"

    # without --json: the finished run's numbers, and a warning before a doomed run starts
    assert main(["--workspace", str(ws), "experiment", "show", "shapes", "first"]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"step (\d+)/\1 · epoch 1/1 · [\d,.]+ img/s · took \d+:\d\d", shown), shown
    small = ("--model", "mobilenet_v3_small", "--image-size", "32", "--name", "small", "--no-wait")
    assert main(["--workspace", str(ws), "train", "shapes", *TINY_ARGS, *small]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "small for mobilenet_v3_small" in err and "96 px" in err
    code, out = cli(capsys, ws, "experiment", "stop", "shapes", "small")
    assert code == 0 and out["experiment"]["warnings"][0]["key"] == "image_size"

    code, out = cli(capsys, ws, "models")
    assert code == 0 and {"resnet18", "resnet50", "mobilenet_v3_small"} <= {m["name"] for m in out["items"]}
    code, out = cli(capsys, ws, "train", "shapes", "--epochs", "0")
    assert (
        code == 1
        and "epochs" in out["error"]["message"]
        and out["error"]["details"]["errors"][0]["key"] == "epochs"
    )
    code, out = cli(capsys, ws, "train", "shapes", "--device", "quantum")
    assert code == 1 and out["error"]["details"]["errors"][0]["key"] == "device"
    (tmp_path / "cfg.yaml").write_text("epochs: 2\nlr: 0.5\nwho: me\n")
    code, out = cli(capsys, ws, "train", "shapes", "--config", str(tmp_path / "cfg.yaml"))
    assert code == 1 and out["error"]["details"]["errors"][0] == {"key": "who", "message": "unknown key"}
    code, out = cli(capsys, ws, "train", "shapes", "--bogus")
    assert code == 2 and out["error"]["code"] == "usage"


def test_live_line_shows_steps_epoch_speed_and_time_left() -> None:
    live = {"step": 120, "total_steps": 800, "epoch": 2, "epochs": 10, "images_per_s": 85.2}
    assert (
        _live_line({**live, "eta_s": 83.4}, finished=False)
        == "step 120/800 · epoch 2/10 · 85 img/s · ETA 1:23"
    )
    assert _live_line({**live, "elapsed_s": 3723}, finished=True).endswith("· took 1:02:03")  # type: ignore[union-attr]
    assert (
        _live_line({**live, "images_per_s": None, "eta_s": None}, finished=False)
        == "step 120/800 · epoch 2/10"
    )
    assert _live_line(None, finished=True) is None
    assert "· 0.4 img/s ·" in (_live_line({**live, "images_per_s": 0.42, "eta_s": 5}, finished=False) or "")
