"""The index build benchmark keeps working: at a toy size it prints its JSON document with both
configurations and the filtered comparison (speed is measured by running it, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_index_build_benchmark_runs() -> None:
    args = ["--n", "3000", "--dim", "16", "--queries", "20", "--hnsw-threshold", "1000"]
    out = subprocess.run(
        [sys.executable, "benchmarks/index_build.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["benchmark"] == "index_build" and doc["params"]["n"] == 3000
    assert doc["new"]["kind"] == "hnsw" and doc["new"]["build_error"] is None
    assert doc["new"]["ef_construction"] == 32 and doc["old"]["ef_construction"] == 200
    assert doc["new"]["probes_exact"] == doc["new"]["probes_during_build"]
    assert 0.9 <= doc["new"]["recall_at_10"] <= 1.0 and doc["ratio_build_old_over_new"] > 0
    for f in doc["filtered"].values():
        assert f["vistudio"]["recall_at_10"] == 1.0 and f["ratio_p95_old_over_new"] > 0
