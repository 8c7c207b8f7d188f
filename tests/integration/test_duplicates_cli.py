"""``vistudio duplicates`` with --json: one JSON document, the documented shape, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete
from test_duplicates_service import make_photos

from factories import cli
from vistudio.cli.main import main
from vistudio.config import Settings
from vistudio.db.duplicates import DuplicateHash
from vistudio.services import duplicates
from vistudio.studio import open_studio


@pytest.fixture
def ws(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    ws = tmp_path / "ws"
    assert cli(capsys, ws, "project", "create", "photos", "--task", "classification")[0] == 0
    code, out = cli(capsys, ws, "import", "photos", str(make_photos(tmp_path / "src")), "--format", "folder")
    assert code == 0, out
    return ws


def test_list_resolve_undo(
    capsys: pytest.CaptureFixture[str], ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates, "INLINE_HASHES", 0)  # hashing goes to a job: the CLI waits for it
    # the import hashed its photos' turns and mirrors; forget them, as for photos from before that
    studio = open_studio(Settings(home=ws))
    with studio.sessions.begin() as s:
        s.execute(delete(DuplicateHash))
    studio.close()
    code, out = cli(capsys, ws, "duplicates", "photos")
    assert code == 0 and out["level"] == "perceptual" and out["threshold"] == 6
    assert out["hashing"] == {"pending": 0, "job": None}  # the CLI ran the job, then listed again
    code, jobs = cli(capsys, ws, "jobs", "list", "--kind", "duplicate_hashes")
    assert [(j["status"], j["result"]) for j in jobs["items"]] == [("succeeded", {"hashed": 7})]
    assert len(out["groups"]) == out["total"] == 2
    g = out["groups"][0]
    assert {"id", "samples", "keeper", "level", "distance", "size", "decision"} <= set(g)
    assert g["level"] == "perceptual" and g["keeper"] == g["samples"][0]["id"] and g["distance"] <= 6
    code, again = cli(capsys, ws, "duplicates", "photos", "--level", "perceptual", "--threshold", "6")
    assert again["groups"] == out["groups"]

    code, out = cli(capsys, ws, "duplicates", "photos", "--resolve", g["id"], "--action", "keep")
    assert code == 0 and out["decision"]["action"] == "keep" and out["decision"]["group"] == g["id"]
    code, out = cli(capsys, ws, "duplicates", "photos", "--status", "open")
    assert [x["id"] for x in out["groups"]] == [x["id"] for x in again["groups"] if x["id"] != g["id"]]
    code, listed = cli(capsys, ws, "duplicates", "photos", "--decisions")
    assert code == 0 and listed["total"] == 1
    code, out = cli(capsys, ws, "duplicates", "photos", "--undo", str(listed["items"][0]["id"]))
    assert code == 0 and out["undone"]["action"] == "keep"

    code, out = cli(capsys, ws, "duplicates", "photos", "--resolve", g["id"], "--action", "remove")
    assert code == 1 and "--yes" in out["error"]["message"]  # a removal is confirmed
    code, out = cli(capsys, ws, "duplicates", "photos", "--resolve", g["id"], "--action", "remove", "--yes")
    assert code == 0 and len(out["decision"]["affected"]) == g["size"] - 1
    code, out = cli(capsys, ws, "samples", "photos")
    assert out["total"] == 7 - (g["size"] - 1)
    code, out = cli(capsys, ws, "duplicates", "photos", "--undo", str(_last_decision(capsys, ws)))
    assert code == 0 and len(out["restored"]) == g["size"] - 1
    code, out = cli(capsys, ws, "doctor")
    assert out["ok"], out


def _last_decision(capsys: pytest.CaptureFixture[str], ws: Path) -> int:
    return int(cli(capsys, ws, "duplicates", "photos", "--decisions")[1]["items"][0]["id"])


def test_other_levels_and_errors(capsys: pytest.CaptureFixture[str], ws: Path) -> None:
    code, out = cli(capsys, ws, "duplicates", "photos", "--level", "exact")
    assert code == 0 and out["groups"] == [] and out["threshold"] is None
    assert out["import_duplicates"] == {"count": 0, "items": []}
    code, out = cli(capsys, ws, "duplicates", "photos", "--level", "semantic")
    assert code == 0 and out["available"] is False and "vistudio embed photos" in out["message"]
    for args, status, err in (
        (("--level", "fuzzy"), 1, "invalid_input"),
        (("--threshold", "99"), 1, "invalid_input"),
        (("--level", "semantic", "--threshold", "0.1"), 1, "invalid_input"),
        (("--level", "exact", "--threshold", "2"), 1, "invalid_input"),
        (("--resolve", "p-000000000000", "--action", "keep"), 1, "not_found"),
        (("--resolve", "p-000000000000", "--action", "explode"), 1, "invalid_input"),
        (("--resolve", "p-000000000000"), 2, "usage"),
        (("--action", "keep"), 2, "usage"),
        (("--undo", "999"), 1, "not_found"),
        (("--undo", "1", "--decisions"), 2, "usage"),
    ):
        code, out = cli(capsys, ws, "duplicates", "photos", *args)
        assert (code, out["error"]["code"]) == (status, err), args
    code, out = cli(capsys, ws, "duplicates", "nope")
    assert code == 1 and out["error"]["code"] == "not_found"


def test_human_output(capsys: pytest.CaptureFixture[str], ws: Path) -> None:
    assert main(["--workspace", str(ws), "duplicates", "photos"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # Rich wraps at the terminal's width
    assert (
        "2 perceptual duplicate groups" in text
        and "3 extra copies" in text
        and "keep" in text
        and "astronaut.png" in text
    )
