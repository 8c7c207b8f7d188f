"""The timeline benchmark keeps working: a toy size prints its JSON document, in which the keyset
page equals the OFFSET page and the bucket counts equal the GROUP BY's (checked inside it).
(Speed is measured by running it for real, never asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_timeline_benchmark_runs() -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/timeline.py", "--n", "3000", "--repeat", "1", "--points", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["photos"] == 3000
    assert result["deep_page"]["depth"] == 2700 and result["deep_page"]["keyset_ms"] > 0
    assert set(result["buckets_ms"]) == {"year", "month", "day"}
    assert result["buckets_ms"]["year"]["groups"] == 25
    assert result["geocoding"]["places"] > 100_000 and 0 < result["geocoding"]["named_share"] <= 1
