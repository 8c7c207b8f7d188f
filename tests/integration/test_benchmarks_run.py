"""The benchmarks keep working: each runs at a toy size and prints its JSON document.
(Speed is measured by running them for real, never asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_ingest_benchmark_runs(tmp_path: Path) -> None:
    result = _run(
        "benchmarks/ingest.py",
        "--images",
        "8",
        "--megapixels",
        "0.1",
        "--workers",
        "1",
        "--cache",
        str(tmp_path),
    )
    assert result["samples_in_db"] == 8 and result["failed"] == 0
    assert result["baseline_ips"] > 0 and result["vistudio_ips"] > 0 and result["ratio"] > 0


@pytest.mark.slow
def test_browse_benchmark_runs() -> None:
    result = _run("benchmarks/browse.py", "--samples", "300", "--repeat", "2")
    assert result["samples"] == 300 and len(result["queries"]) == 5
    assert all(q["vistudio"]["p50_ms"] > 0 and q["ratio_p50"] > 0 for q in result["queries"].values())


@pytest.mark.slow
def test_pipeline_benchmark_runs() -> None:
    result = _run("benchmarks/pipeline.py", "--items", "12", "--size", "32", "--rounds", "1", "--threads", "2")
    text = json.dumps(result)
    assert "overhead" in text and result["items"] == 12


@pytest.mark.slow
def test_search_benchmark_runs() -> None:
    result = _run("benchmarks/search.py", "--sizes", "3000", "--dim", "16", "--queries", "20")
    assert result["benchmark"] and result["results"]


@pytest.mark.slow
def test_cli_startup_benchmark_runs() -> None:
    result = _run("benchmarks/cli_startup.py", "--runs", "1")
    assert set(result["commands"]) == {"--help", "project list"}
    for r in result["commands"].values():
        assert r["median_ms"] > 0 and r["ratio"] > 0 and r["heavy_modules"] == []
    assert result["baselines"]["python -c pass"]["median_ms"] > 0


@pytest.mark.slow
def test_edits_benchmark_runs() -> None:
    result = _run("benchmarks/edits.py", "--samples", "400", "--naive-samples", "40")
    assert result["samples"] == 400 and len(result["steps"]) == 5
    assert result["relabel"]["ratio"] > 0 and result["relabel"]["naive_samples"] == 40


@pytest.mark.slow
def test_rotated_iou_benchmark_runs() -> None:
    result = _run("benchmarks/rotated_iou.py", "--pairs", "500", "--repeat", "1")
    assert result["pairs"] == 500 and result["max_abs_diff"] < 1e-9 and result["ratio"] > 0


@pytest.mark.slow
def test_segmentation_eval_benchmark_runs() -> None:
    result = _run("benchmarks/segmentation_eval.py", "--images", "20", "--size", "64", "--classes", "5")
    assert result["images"] == 20 and result["max_abs_diff"] < 1e-7
    assert result["ratio_vs_numpy"] > 0 and result["ratio_vs_torchmetrics"] > 0


def test_task_metrics_benchmark_runs() -> None:
    result = _run("benchmarks/task_metrics.py", "--samples", "2000", "--targets", "2")
    assert result["benchmark"] == "task_metrics" and result["samples"] == 2000
    assert result["anomaly"]["max_abs_diff"] < 1e-9 and result["regression"]["max_abs_diff"] < 1e-9
    assert result["anomaly"]["ratio_vs_sklearn"] > 0 and result["regression"]["ratio_vs_sklearn"] > 0


def test_text_search_benchmark_runs() -> None:
    result = _run("benchmarks/text_search.py", "--n", "2000", "--queries", "5")
    assert result["benchmark"] == "text_search" and result["documents"] == 2000
    for kind in result["kinds"].values():
        assert kind["ratio_p50"] > 0 and kind["fts5"]["p95_ms"] > 0
    # the index finds what the scan finds (same words, different ways)
    rare = result["kinds"]["rare word"]
    assert rare["mean_matches_fts"] == rare["mean_matches_like"]


@pytest.mark.slow
def test_geo_benchmark_runs() -> None:
    result = _run("benchmarks/geo.py", "--n", "3000", "--repeat", "1")
    assert result["benchmark"] == "geo" and result["photos"] == 3000
    # the SQL clusters equal the Python ones (checked inside); both views found photos
    for view in ("world", "city"):
        assert result[view]["photos"] > 0 and result[view]["clusters"] > 0
        # timings of a toy size, rounded: present, not meaningful (0.0 happens on a busy machine)
        assert result[view]["python_over_sql"] >= 0 and result[view]["without_index_ms"] >= 0
    assert result["world"]["photos"] > result["city"]["photos"]


def test_albums_benchmark_runs() -> None:
    result = _run("benchmarks/albums.py", "--n", "3000", "--repeat", "1")
    assert result["benchmark"] == "albums" and result["photos"] == 3000
    # the range reads and the strftime scan found the same photos (checked inside)
    otd = result["on_this_day"]
    assert otd["photos"] > 0 and otd["range_reads_ms"] >= 0 and otd["scan_over_range_reads"] >= 0
    for album in result["smart_album"]:  # the page equals the sorted matches (checked inside)
        assert album["album_photos"] > 0 and album["sort_all_over_page"] >= 0


@pytest.mark.slow
def test_backup_benchmark_runs() -> None:
    result = _run("benchmarks/backup.py", "--photos", "40", "--kb", "8")
    assert result["benchmark"] == "backup" and result["files"] == 80
    # 1 % of 40 photos rounds to one: its original and thumbnail are all the incremental copies
    assert result["incremental_backup"]["new_blobs"] == 2
    assert result["full_backup"]["mb_s"] > 0 and result["baseline_copytree"]["mb_s"] > 0


@pytest.mark.slow
def test_pgvector_benchmark_runs() -> None:
    pytest.importorskip("pgserver", reason="pgserver (PostgreSQL with pgvector) is not installed")
    result = _run(
        "benchmarks/pgvector.py", "--n", "2000", "--dim", "16", "--queries", "10", "--exact-filter-max", "50"
    )
    assert result["pgvector"]["exact_filter_max"] == 50  # the 10 % filter (≈ 200 ids) took the graph path
    assert result["pgvector"]["filter_10pct_exact_scan"]["recall_at_10"] == 1.0
    assert result["faiss"]["unfiltered"]["recall_at_10"] == 1.0  # exact below the HNSW threshold
    assert 0 < result["pgvector"]["unfiltered"]["recall_at_10"] <= 1 and result["ratio_load_pg_over_faiss"] > 0


@pytest.mark.slow
def test_enrich_ray_benchmark_runs(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (the ray extra)")
    result = _run(
        "benchmarks/enrich_ray.py", "--images", "12", "--megapixels", "0.05", "--batch-size", "4",
        "--cache", str(tmp_path),
    )
    assert result["benchmark"] == "enrich_ray" and result["images"] == 12 and "untrained" in result["weights"]
    assert result["max_abs_vector_diff"] <= 1e-5  # the same vectors both ways (also checked inside)
    assert result["local_ips"] > 0 and result["ray_ips"] > 0 and result["ratio_ray_over_local"] > 0
