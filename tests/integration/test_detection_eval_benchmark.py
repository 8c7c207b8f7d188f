"""The detection evaluation benchmark keeps working: a toy run prints its JSON with equal numbers.
(Speed is measured by running it for real, never asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_detection_eval_benchmark_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/detection_eval.py",
            "--images",
            "30",
            "--detections",
            "20",
            "--classes",
            "4",
            "--out",
            str(tmp_path / "result.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result == json.loads((tmp_path / "result.json").read_text())
    assert result["images"] == 30 and result["detections_per_image"] == 20
    assert result["equal"] is True and result["max_abs_diff"] <= 1e-6
    assert result["pycocotools_s"] > 0 and result["vistudio_s"] > 0 and result["matching_s"] > 0
    assert 0 < result["stats"]["ap50"] <= 1
