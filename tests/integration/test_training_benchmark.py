"""The training benchmark keeps working: a toy run prints its JSON with both sides and the ratio.
(Speed is measured by running it for real, never asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_benchmark_runs(tmp_path: Path) -> None:
    args = [
        "--images",
        "48",
        "--image-size",
        "16",
        "--source-size",
        "48",
        "--batch-size",
        "8",
        "--warmup",
        "1",
    ]
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/train.py",
            *args,
            "--cache",
            str(tmp_path),
            "--out",
            str(tmp_path / "r.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result == json.loads((tmp_path / "r.json").read_text())
    assert result["model"] == "resnet18" and result["device"] == "cpu" and result["images"] == 48
    assert result["baseline_ips"] > 0 and result["vistudio_ips"] > 0 and result["loader_only_ips"] > 0
    assert result["ratio"] == pytest.approx(result["vistudio_ips"] / result["baseline_ips"], rel=1e-2)
    assert len(list(tmp_path.rglob("*.jpg"))) == 48


@pytest.mark.slow
def test_train_benchmark_has_a_segmentation_case(tmp_path: Path) -> None:
    args = ["--task", "semantic_segmentation", "--images", "8", "--image-size", "64", "--source-size", "64"]
    args += ["--batch-size", "2", "--warmup", "1", "--cache", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, "benchmarks/train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["task"] == "semantic_segmentation" and result["model"] == "lraspp_mobilenet_v3_small"
    assert result["baseline_ips"] > 0 and result["vistudio_ips"] > 0 and result["loader_only_ips"] > 0
    assert result["ratio"] == pytest.approx(result["vistudio_ips"] / result["baseline_ips"], rel=1e-2)
    # every image went through the data path, its label map painted from the stored polygons
    assert result["loader_only"]["images"] == 8 and result["vistudio"]["steps"] == 4
