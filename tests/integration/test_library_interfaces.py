"""The library through its front doors: the CLI's JSON contract and the REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from factories import cli, draw_image
from vistudio.api.app import create_app
from vistudio.cli.main import main
from vistudio.jobs.worker import Worker
from vistudio.services import projects
from vistudio.studio import Studio


def _photos(root: Path, n: int = 4) -> Path:
    for i in range(n):
        draw_image(root / f"p{i}.png", seed=200 + i)
    (root / "bad.png").write_bytes(b"not a png")
    return root


def test_cli_json_contract(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTUDIO_IMPORTS__WORKERS", "1")
    ws = tmp_path / "ws"
    a, b = _photos(tmp_path / "a"), _photos(tmp_path / "b", 1)
    assert cli(capsys, ws, "project", "create", "album", "--task", "library")[0] == 0

    code, out = cli(capsys, ws, "library", "add", "album", str(a), str(b))
    assert code == 0 and [r["path"] for r in out["roots"]] == [str(a), str(b)] and len(out["added"]) == 2
    assert {"id", "path", "files", "failed", "added_at", "last_scan_at", "last_report"} <= set(
        out["roots"][0]
    )
    code, out = cli(capsys, ws, "library", "roots", "album")
    assert code == 0 and out["total"] == 2 and out["items"][0]["problem"] is None

    code, out = cli(capsys, ws, "library", "scan", "album")
    assert code == 0, out
    assert out["job"]["status"] == "succeeded" and out["job"]["kind"] == "library_scan"
    report = out["report"]
    assert {"added", "updated", "removed", "unchanged", "failed"} <= set(report)
    assert report["added"] == 5 and report["unchanged"] == 0 and report["removed"] == 0
    assert report["samples_added"] == 4 and report["duplicate_files"] == 1  # b/p0.png repeats a/p0.png
    assert [set(f) for f in report["failed"]] == [{"path", "error"}] * 2
    assert {Path(f["path"]).name for f in report["failed"]} == {"bad.png"}

    code, out = cli(capsys, ws, "library", "scan", "album", "--no-wait")
    assert code == 0 and out["job"]["status"] == "queued" and "report" not in out
    code, out = cli(capsys, ws, "library", "scan", "album")  # runs the queued scan
    assert code == 0 and out["report"]["unchanged"] == 5

    code, out = cli(capsys, ws, "library", "remove", "album", str(b))
    assert (
        code == 0 and out["removed"]["path"] == str(b) and out["samples_removed"] == 0
    )  # b's photo is in a too
    code, out = cli(capsys, ws, "samples", "album")
    assert out["total"] == 4

    # errors: one JSON document, exit 1; usage errors exit 2
    code, out = cli(capsys, ws, "library", "add", "album", str(tmp_path / "missing"))
    assert code == 1 and out["error"]["code"] == "not_found"
    code, out = cli(capsys, ws, "library", "remove", "album", str(tmp_path / "missing"))
    assert code == 1 and out["error"]["code"] == "not_found"
    code, out = cli(capsys, ws, "library", "roots", "nope")
    assert code == 1 and out["error"]["code"] == "not_found"
    a.rename(tmp_path / "unplugged")
    code, out = cli(capsys, ws, "library", "scan", "album")
    assert code == 1 and out["error"]["code"] == "job_failed"
    assert "missing" in out["error"]["message"] and "nothing was removed" in out["error"]["message"]
    code, out = cli(capsys, ws, "library", "scan")
    assert code == 2 and out["error"]["code"] == "usage"

    # the human output shows names that look like markup as they are
    odd = _photos(tmp_path / "a[" / "b]", 1)
    assert main(["--workspace", str(ws), "library", "add", "album", str(odd)]) == 0
    assert main(["--workspace", str(ws), "library", "roots", "album"]) == 0
    assert "never" in capsys.readouterr().out  # the table was printed, not a markup error


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def _error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


def test_api(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    projects.create_project(studio, name="album", task="library")
    projects.create_project(studio, name="pets", task="classification")
    photos = _photos(tmp_path / "photos")
    url = "/api/v1/library/album"
    assert client.get(url + "/roots").json() == {"items": [], "total": 0}
    _error(client.post(url + "/scan"), 422, "invalid_input")  # no roots yet

    # root paths from the API are checked: absolute, existing, a folder, inside the import roots
    err = _error(client.post(url + "/roots", json={"paths": ["photos"]}), 422, "invalid_input")
    assert "absolute" in err["message"]
    _error(client.post(url + "/roots", json={"paths": [str(tmp_path / "missing")]}), 404, "not_found")
    err = _error(client.post(url + "/roots", json={"paths": [str(photos / "p0.png")]}), 422)
    assert "not a folder" in err["message"]
    err = _error(client.post(url + "/roots", json={"paths": ["/usr"]}), 422, "invalid_input")
    assert "VISTUDIO_IMPORT_ROOTS" in err["message"] and err["details"]["import_roots"] == [str(tmp_path)]
    _error(client.post(url + "/roots", json={"paths": [str(photos) + "\x00x"]}), 422)
    _error(client.post(url + "/roots", json={"paths": ["~no-such-user-here/photos"]}), 422, "invalid_input")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    _error(client.post(url + "/roots", json={"paths": [str(tmp_path / "loop" / "x")]}), 422)
    _error(client.post(url + "/roots", json={"paths": []}), 422)
    _error(client.post(url + "/roots", json={"path": str(photos)}), 422)
    _error(client.post("/api/v1/library/pets/roots", json={"paths": [str(photos)]}), 409, "conflict")
    _error(client.post("/api/v1/library/nope/roots", json={"paths": [str(photos)]}), 404)

    r = client.post(url + "/roots", json={"paths": [str(photos)]})
    assert r.status_code == 201 and r.json()["added"][0]["path"] == str(photos)
    root_id = r.json()["added"][0]["id"]
    _error(client.post(url + "/roots", json={"paths": [str(photos / "sub")]}), 404)
    (photos / "sub").mkdir()
    _error(client.post(url + "/roots", json={"paths": [str(photos / "sub")]}), 409, "conflict")

    _error(client.get(url + "/scan"), 404)  # never scanned
    r = client.post(url + "/scan", json={"roots": [root_id]})
    assert r.status_code == 202 and r.json()["job"]["kind"] == "library_scan"
    job_id = r.json()["job"]["id"]
    assert client.post(url + "/scan").json()["job"]["id"] == job_id  # the queued scan is reused
    _error(client.delete(f"{url}/roots/{root_id}"), 409)  # not while a scan is queued
    _error(client.post(url + "/scan", json={"roots": [999]}), 404)
    Worker(studio).run_one(job_id=job_id)
    latest = client.get(url + "/scan").json()
    assert latest["job"]["id"] == job_id and latest["report"]["added"] == 4
    assert latest["report"]["failed"][0]["path"] == str(photos / "bad.png")
    assert client.get(f"/api/v1/jobs/{job_id}").json()["job"]["result"]["report"]["added"] == 4

    listed = client.get(url + "/files", params={"limit": 2}).json()
    assert listed["total"] == 5 and len(listed["items"]) == 2
    assert {"root_id", "path", "size", "mtime", "sha256", "sample_id", "error"} <= set(listed["items"][0])
    bad = client.get(url + "/files", params={"failed": "true"}).json()
    assert bad["total"] == 1 and bad["items"][0]["path"] == "bad.png" and bad["items"][0]["sample_id"] is None
    assert client.get(url + "/files", params={"root": root_id}).json()["total"] == 5
    _error(client.get(url + "/files", params={"root": 999}), 404)
    roots = client.get(url + "/roots").json()["items"]
    assert roots[0]["files"] == 5 and roots[0]["failed"] == 1 and roots[0]["last_scan_at"]

    _error(client.delete(f"{url}/roots/999"), 404)
    r = client.delete(f"{url}/roots/{root_id}")
    assert r.status_code == 200 and r.json()["samples_removed"] == 4
    assert client.get("/api/v1/samples", params={"project": "album"}).json()["total"] == 0
    assert (photos / "p0.png").is_file()
