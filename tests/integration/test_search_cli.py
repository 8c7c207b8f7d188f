"""The ``embed``, ``embeddings`` and ``search`` commands: one JSON document, documented exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embed_factories import TINY, register_tiny
from factories import cli, make_class_folders
from vistudio.cli.main import main


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    register_tiny()
    torch.set_num_threads(1)
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    monkeypatch.setenv("VISTUDIO_EMBED__MODEL", TINY)
    monkeypatch.setenv("VISTUDIO_EMBED__PRETRAINED", "none")
    monkeypatch.setenv("VISTUDIO_EMBED__WORKERS", "0")


def test_embed_and_search_json_contract(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, env: None
) -> None:
    ws = tmp_path / "ws"
    cli(capsys, ws, "project", "create", "pets", "--task", "classification")
    cli(capsys, ws, "import", "pets", str(make_class_folders(tmp_path / "src", {"cat": 4, "dog": 4})))

    code, out = cli(capsys, ws, "search", "pets", "--text", "a cat")
    assert code == 0 and out["items"] == [] and out["pending"] == 8 and out["model"] is None

    code, out = cli(capsys, ws, "embed", "pets")
    assert code == 0, out
    assert out["job"]["status"] == "succeeded"
    assert {"embedded", "skipped", "model"} <= set(out["report"])
    assert out["report"]["embedded"] == 8 and out["report"]["skipped"] == 0
    model = out["report"]["model"]
    assert {"name", "version", "dim", "device"} <= set(model) and model["untrained"] is True

    code, out = cli(capsys, ws, "search", "pets", "--text", "a cat", "--k", "3", "--filter", "label=dog")
    assert code == 0 and len(out["items"]) == 3 and out["total"] == 3
    first = out["items"][0]
    assert {"sample_id", "score", "path", "why", "name"} <= set(first)
    assert Path(first["path"]).is_file() and first["labels"] == ["dog"]
    assert first["why"].startswith("text similarity") and first["why"].endswith("filters: label=dog")
    assert out["model"]["name"] == TINY and out["pending"] == 0

    code, out = cli(capsys, ws, "search", "pets", "--sample", str(first["sample_id"]), "--k", "2")
    assert code == 0 and first["sample_id"] not in [i["sample_id"] for i in out["items"]]
    code, out = cli(capsys, ws, "search", "pets", "--image", first["path"], "--k", "1")
    assert code == 0 and out["items"][0]["sample_id"] == first["sample_id"]

    code, out = cli(capsys, ws, "embed", "pets", "--no-wait")
    assert code == 0 and out["job"]["status"] == "queued"
    code, out = cli(capsys, ws, "embeddings", "pets")
    assert code == 0 and out["sets"][0]["status"] == "complete" and len(out["jobs"]) == 1


def test_errors_are_json_with_the_documented_exit_codes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    cli(capsys, ws, "project", "create", "p", "--task", "library")
    cli(capsys, ws, "import", "p", str(make_class_folders(tmp_path / "src", {"a": 2})))

    code, out = cli(capsys, ws, "search", "p", "--text", "x", "--sample", "1")
    assert code == 2 and out["error"]["code"] == "usage"
    code, out = cli(capsys, ws, "search", "p")
    assert code == 2
    code, out = cli(capsys, ws, "embed", "p", "--pretrained", "none", "--checkpoint", "/x.pt")
    assert code == 2 and "not both" in out["error"]["message"]

    # weights that are not here: exit 1, model_unavailable, naming what to change
    monkeypatch.setenv("VISTUDIO_EMBED__MODEL", "ViT-B-32")
    monkeypatch.setenv("VISTUDIO_EMBED__PRETRAINED", "laion2b_s34b_b79k")
    code, out = cli(capsys, ws, "embed", "p")
    assert code == 1 and out["error"]["code"] == "model_unavailable"
    assert "VISTUDIO_EMBED__MODEL" in out["error"]["message"] and "--checkpoint" in out["error"]["message"]
    code, out = cli(capsys, ws, "embed", "p", "--checkpoint", str(tmp_path / "nope.pt"))
    assert code == 1 and out["error"]["code"] == "model_unavailable" and "nope.pt" in out["error"]["message"]
    code, out = cli(capsys, ws, "embed", "p", "--model", "ViT-B-32", "--pretrained", "bogus")
    assert code == 1 and out["error"]["code"] == "invalid_input"
    monkeypatch.setenv("VISTUDIO_EMBED__MODEL", TINY)
    monkeypatch.setenv("VISTUDIO_EMBED__PRETRAINED", "none")

    cli(capsys, ws, "embed", "p")
    for args, expected in [
        (("--text", "   "), "invalid_input"),
        (("--text", "x", "--k", "100000"), "invalid_input"),
        (("--text", "x", "--k", "0"), "invalid_input"),
        (("--sample", "999999"), "not_found"),
        (("--image", str(tmp_path / "missing.png")), "not_found"),
        (("--image", str(tmp_path)), "invalid_input"),
        (("--text", "x", "--filter", "colour=red"), "invalid_input"),
        (("--text", "x", "--filter", "nonsense"), "invalid_input"),
        (("--text", "x", "--filter", "year=24"), "invalid_input"),
    ]:
        code, out = cli(capsys, ws, "search", "p", *args)
        assert code == 1 and out["error"]["code"] == expected, (args, out)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    code, out = cli(capsys, ws, "search", "p", "--image", str(bad))
    assert code == 1 and out["error"]["code"] == "invalid_input"
    code, out = cli(capsys, ws, "search", "nope", "--text", "x")
    assert code == 1 and out["error"]["code"] == "not_found"


def test_human_output_says_the_model_is_untrained(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, env: None
) -> None:
    ws = tmp_path / "ws"
    main(["--workspace", str(ws), "project", "create", "p", "--task", "library"])
    main(["--workspace", str(ws), "import", "p", str(make_class_folders(tmp_path / "src", {"a": 2}))])
    capsys.readouterr()
    assert main(["--workspace", str(ws), "embed", "p"]) == 0
    captured = capsys.readouterr()
    assert "2 embedded" in captured.out and "untrained" in captured.err
    assert main(["--workspace", str(ws), "search", "p", "--text", "a thing"]) == 0
    captured = capsys.readouterr()
    assert "text similarity" in captured.out.replace("\n", " ") or "a thing" in captured.out
    assert "untrained" in captured.err
