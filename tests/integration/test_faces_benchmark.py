"""The faces benchmark keeps working: a toy run (small photos of the real portraits, a few thousand
synthetic descriptors, a tiny workspace) prints its JSON. (Speed is measured by running it for
real, never asserted here.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from face_photos import face_photos

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_faces", ROOT / "benchmarks" / "faces.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pairwise_scores_from_the_contingency_table() -> None:
    bench = _bench()
    pairwise_scores, labels_of = bench.pairwise_scores, bench.labels_of
    truth = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([5, 5, 7, 7, 7, 9])
    s = pairwise_scores(truth, pred)
    # predicted pairs: (0,1) + (2,3), (2,4), (3,4) = 4; true pairs: 3 + 1 = 4; both: (0,1), (3,4)
    assert (s["predicted_pairs"], s["true_pairs"]) == (4, 4)
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["f1"] == 0.5
    assert pairwise_scores(truth, truth)["f1"] == 1.0
    # faces in no group count as singletons, not as one big group
    assert labels_of(4, [[0, 2]]).tolist() == [0, 5, 0, 7]


def test_faces_benchmark_runs(tmp_path: Path) -> None:
    face_photos()  # fetched once into .cache/ (the benchmark reads them from there)
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/faces.py",
            "--photos",
            "8",  # the pool reads 8 photos or more
            "--size",
            "480x320",
            "--workers",
            "2",
            "--rounds",
            "1",
            "--faces",
            "1000",
            "--existing",
            "2000",
            "--batch",
            "100",
            "--db-faces",
            "300",
            "--db-batch",
            "30",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    d = result["detect"]
    assert d["path"] == "pool" and d["photos"] == 8
    assert d["baseline_faces"] > 0 and d["vistudio_faces"] == d["baseline_faces"]
    assert d["same_faces_per_photo"] and d["max_descriptor_diff"] < 1e-4
    assert d["baseline_faces_per_s"] > 0 and d["vistudio_faces_per_s"] > 0 and d["ratio"] > 0
    c = result["cluster"]
    assert c["faces"] == 1000 and c["vistudio"]["f1"] >= 0.99 and c["brute_force"]["f1"] >= 0.99
    assert c["distances"]["same_person_p99"] < c["threshold"] < c["distances"]["nearest_other_person_min"]
    inc = result["incremental"]
    assert inc["new_faces"] == 100 and inc["vistudio"]["returning_assigned_right"] >= 0.99
    assert inc["vistudio"]["assigned_wrong"] == 0 and inc["vistudio"]["ms_per_new_face"] > 0
    db = result["db"]
    assert db["first_run"]["report"]["faces"] == 300
    assert db["incremental_run"]["report"]["grouped"] == 30
    assert db["nothing_new_run"]["report"]["assigned"] == 0
    assert db["pairwise_all_faces"]["f1"] >= 0.99
