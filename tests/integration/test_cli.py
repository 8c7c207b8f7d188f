"""The CLI contract: with --json, exactly one JSON document on stdout; errors as {"error": …}."""

from __future__ import annotations

from pathlib import Path

import pytest

from factories import cli, draw_image, make_class_folders
from vistudio.cli.main import main


def test_project_import_samples_split_flow(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    ws = tmp_path / "ws"
    src = make_class_folders(tmp_path / "src", {"ant": 10, "bee": 10})
    code, out = cli(capsys, ws, "project", "create", "insects", "--task", "classification")
    assert code == 0 and {"id", "name", "task"} <= set(out["project"])
    code, out = cli(capsys, ws, "project", "list")
    assert out["total"] == 1 and out["items"][0]["name"] == "insects"

    code, out = cli(capsys, ws, "import", "insects", str(src), "--format", "folder")
    assert code == 0, out
    assert out["job"]["status"] == "succeeded"
    assert {"imported", "duplicates", "skipped", "failed", "near_duplicate_groups"} <= set(out["report"])
    assert out["report"]["imported"] == 20

    code, out = cli(capsys, ws, "samples", "insects", "--label", "ant", "--limit", "3")
    assert out["total"] == 10 and len(out["items"]) == 3
    assert {"id", "sha256", "width", "height", "format", "labels", "taken_at"} <= set(out["items"][0])

    code, out = cli(
        capsys, ws, "split", "create", "insects", "--ratios", "0.6,0.2,0.2", "--seed", "7", "--preview"
    )
    assert out["split"]["locked"] is False
    code, out = cli(capsys, ws, "split", "create", "insects", "--ratios", "0.6,0.2,0.2", "--seed", "7")
    assert code == 0 and out["split"]["locked"] is True
    assert out["split"]["subsets"]["train"] == {"total": 12, "per_class": {"ant": 6, "bee": 6}}
    code, out = cli(capsys, ws, "split", "create", "insects", "--ratios", "0.6,0.2,0.2")
    assert code == 1 and out["error"]["code"] == "immutable"
    code, out = cli(capsys, ws, "samples", "insects", "--subset", "test")
    assert out["total"] == 4

    code, out = cli(capsys, ws, "project", "rename", "insects", "bugs")
    assert out["project"]["name"] == "bugs"
    code, out = cli(capsys, ws, "project", "delete", "bugs")
    assert code == 1 and "--yes" in out["error"]["message"]
    code, out = cli(capsys, ws, "project", "delete", "bugs", "--yes")
    assert code == 0 and out["samples"] == 20
    code, out = cli(capsys, ws, "doctor")
    assert code == 0 and out["ok"] is True


def test_jobs_commands_and_no_wait(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    draw_image(tmp_path / "one" / "x.png", seed=1)
    cli(capsys, ws, "project", "create", "p", "--task", "library")
    code, out = cli(capsys, ws, "import", "p", str(tmp_path / "one"), "--no-wait")
    job_id = out["job"]["id"]
    assert out["job"]["status"] == "queued"
    code, out = cli(capsys, ws, "jobs", "list")
    assert out["total"] == 1
    code, out = cli(capsys, ws, "jobs", "cancel", str(job_id))
    assert out["job"]["status"] == "cancelled"
    code, out = cli(capsys, ws, "jobs", "requeue", str(job_id))
    assert out["job"]["status"] == "queued"
    code, out = cli(capsys, ws, "worker", "--once")
    assert out["job"]["id"] == job_id and out["job"]["status"] == "succeeded"
    code, out = cli(capsys, ws, "jobs", "show", str(job_id))
    assert out["job"]["result"]["report"]["imported"] == 1
    code, out = cli(capsys, ws, "jobs", "show", "999")
    assert code == 1 and out["error"]["code"] == "not_found"


def test_errors_are_json_with_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    code, out = cli(capsys, ws, "project", "create", "p", "--task", "nonsense")
    assert code == 1 and out["error"]["code"] == "invalid_input"
    code, out = cli(capsys, ws, "import", "missing-project", str(tmp_path))
    assert code == 1 and out["error"]["code"] == "not_found"
    code, out = cli(capsys, ws, "project", "frobnicate")
    assert code == 2 and out["error"]["code"] == "usage"
    code, out = cli(capsys, ws, "split", "create", "p", "--seed", "notanumber")
    assert code == 2


def test_failed_import_exits_non_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04garbage")
    cli(capsys, ws, "project", "create", "p", "--task", "library")
    code, out = cli(capsys, ws, "import", "p", str(bad))
    assert code == 1 and "zip" in out["error"]["message"].lower()


def test_human_output_is_rich_text(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "project", "create", "nice", "--task", "detection"]) == 0
    assert main(["--workspace", str(ws), "project", "list"]) == 0
    out = capsys.readouterr().out
    assert "created project nice" in out and "detection" in out


def test_samples_filters_and_detail(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = make_class_folders(tmp_path / "src", {"ant": 3, "bee": 2})
    cli(capsys, ws, "project", "create", "p", "--task", "classification")
    cli(capsys, ws, "import", "p", str(src))
    code, out = cli(capsys, ws, "samples", "p", "--annotated", "--name", "bee")
    assert out["total"] == 2
    code, out = cli(capsys, ws, "samples", "p", "--unannotated")
    assert out["total"] == 0
    code, out = cli(capsys, ws, "samples", "p", "--taken-from", "2020-01-01")
    assert out["total"] == 0  # generated images carry no date
    code, out = cli(capsys, ws, "samples", "p", "--taken-from", "not-a-date")
    assert code == 2
    code, out = cli(capsys, ws, "sample", "1")
    assert out["sample"]["id"] == 1 and out["sample"]["annotations"][0]["class"] == "ant"


def test_serve_refuses_a_public_address_without_a_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISTUDIO_API_TOKEN", raising=False)
    code, out = cli(capsys, tmp_path / "ws", "serve", "--host", "0.0.0.0")
    assert code == 1 and "VISTUDIO_API_TOKEN" in out["error"]["message"]


def test_run_and_runs_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = tmp_path / "in"
    for i in range(3):
        draw_image(src / f"p{i}.png", seed=i)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: tiny\nstages:\n  - name: load\n  - name: grayscale\n")
    code, out = cli(
        capsys, ws, "run", str(pipeline), "--input", str(src), "--mode", "production", "--tag", "v1.1"
    )
    assert code == 0, out
    assert {"id", "status", "items", "failed", "audit_path", "report_path", "outputs_dir"} <= set(out["run"])
    first = out["run"]["id"]
    assert out["run"]["items"] == 3 and (ws / out["run"]["report_path"]).is_file()
    code, out = cli(capsys, ws, "run", str(pipeline), "--input", str(src), "--dry-run")
    assert code == 0 and out["run"]["dry_run"] is True
    code, out = cli(capsys, ws, "run", str(pipeline), "--input", str(src))
    second = out["run"]["id"]
    code, out = cli(capsys, ws, "runs", "list", "--pipeline", "tiny")
    assert out["total"] == 2
    code, out = cli(capsys, ws, "runs", "list", "--slower-than", "100000000")
    assert out["total"] == 0
    code, out = cli(capsys, ws, "runs", "show", first)
    assert [s["stage"] for s in out["run"]["stages"]] == ["load", "grayscale"]
    code, out = cli(capsys, ws, "runs", "compare", first, second)
    assert out["regressions"] == [] or all("slower" in r for r in out["regressions"])
    code, out = cli(capsys, ws, "runs", "clean", "--older-than", "0", "--dry-run")
    assert out["runs"] == [second]  # tagged runs are kept
    code, out = cli(capsys, ws, "runs", "clean", second)
    assert out["runs"] == [second] and not (ws / "runs" / second).exists()
    code, out = cli(capsys, ws, "run", str(tmp_path / "missing.yaml"), "--input", str(src))
    assert code == 2 and out["error"]["code"] == "invalid_input"  # refused before running: a usage error
