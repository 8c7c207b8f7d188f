"""The scan benchmark keeps working: it runs at a toy size and prints its JSON document.
(Speed is measured by running it for real, never asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scan_benchmark_runs(tmp_path: Path) -> None:
    args = ["--images", "6", "--megapixels", "0.1", "--workers", "1", "--gen-processes", "1"]
    out = subprocess.run(
        [sys.executable, "benchmarks/scan.py", *args, "--cache", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["benchmark"] == "scan" and result["images"] == 6
    assert result["baseline_ips"] > 0 and result["scan_ips"] > 0 and result["ratio"] > 0
    assert result["samples_in_db"] == 6 and result["failed"] == 0
    assert all(result["goals"].values()), result["goals"]
    assert result["rescan_files_read"] == 0 and result["rescan_s"] > 0
