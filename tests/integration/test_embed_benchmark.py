"""The embedding benchmark keeps working: a toy run (tiny model, a few small JPEGs) prints its JSON.
(Speed is measured by running it for real, never asserted here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embed_factories import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_embed_benchmark_runs(tmp_path: Path) -> None:
    config = tmp_path / "bench-tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/embed.py",
            "--images",
            "5",
            "--megapixels",
            "0.05",
            "--model",
            "bench-tiny",
            "--model-config",
            str(config),
            "--workers",
            "0",
            "--batch-size",
            "4",
            "--cache",
            str(tmp_path / "images"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["images"] == 5 and result["model"] == "bench-tiny" and result["pretrained"] == "none"
    assert result["vistudio"]["vectors_in_db"] == 5 and result["vistudio"]["failed"] == 0
    assert result["baseline_ips"] > 0 and result["vistudio_ips"] > 0 and result["ratio"] > 0
    # the same model on the same pictures: shrink-on-load changes pixels, not the embedding
    assert result["cosine_baseline_vs_vistudio"]["min"] > 0.95
