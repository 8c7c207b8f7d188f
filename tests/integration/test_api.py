from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from factories import make_class_folders, zip_folder
from vistudio.api.app import create_app
from vistudio.jobs.worker import Worker
from vistudio.studio import Studio


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def _error(resp: object, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def _run(studio: Studio, job_id: int) -> dict:
    Worker(studio).run_one(job_id=job_id)
    from vistudio.jobs.queue import job_dict

    return job_dict(studio.queue.get(job_id))


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert "vistudio_projects 0" in text and 'vistudio_jobs{status="dead"} 0' in text


def test_project_crud(client: TestClient) -> None:
    r = client.post("/api/v1/projects", json={"name": "Birds", "task": "classification"})
    assert r.status_code == 201 and r.json()["project"]["task"] == "classification"
    _error(client.post("/api/v1/projects", json={"name": "Birds", "task": "detection"}), 409, "conflict")
    _error(client.post("/api/v1/projects", json={"name": "x", "task": "painting"}), 422, "invalid_input")
    _error(client.post("/api/v1/projects", json={"name": "../../etc", "task": "library"}), 422)
    _error(client.post("/api/v1/projects", json={"name": "a" * 5000, "task": "library"}), 422)
    _error(client.post("/api/v1/projects", content=b"{not json", headers={"content-type": "application/json"}), 422)
    _error(client.post("/api/v1/projects", json=[1, 2]), 422)
    listed = client.get("/api/v1/projects").json()
    assert listed["total"] == 1 and listed["items"][0]["samples"] == 0
    assert client.patch("/api/v1/projects/Birds", json={"name": "Birds2"}).json()["project"]["name"] == "Birds2"
    _error(client.get("/api/v1/projects/Birds"), 404, "not_found")
    assert client.delete("/api/v1/projects/Birds2").json()["deleted"] == "Birds2"
    _error(client.get("/api/v1/projects?limit=100000"), 422)
    _error(client.get("/api/v1/projects?offset=-1"), 422)


def test_upload_zip_import_browse_and_split(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    folder = make_class_folders(tmp_path / "shapes", {"circle": 8, "square": 8, "star": 4})
    z = zip_folder(folder, tmp_path / "shapes.zip")
    client.post("/api/v1/projects", json={"name": "shapes", "task": "classification"})
    with open(z, "rb") as fh:
        r = client.post("/api/v1/imports/upload", files={"file": ("shapes.zip", fh, "application/zip")}, data={"project": "shapes"})
    assert r.status_code == 202, r.text
    job = _run(studio, r.json()["job"]["id"])
    assert job["status"] == "succeeded"
    report = client.get(f"/api/v1/imports/{job['id']}").json()["report"]
    assert report["imported"] == 20 and report["source"] == Path(job["params"]["source"]).name
    assert not Path(job["params"]["source"]).exists()  # the uploaded zip is removed after import

    page = client.get("/api/v1/samples", params={"project": "shapes", "limit": 7, "sort": "name"}).json()
    assert page["total"] == 20 and len(page["items"]) == 7
    page2 = client.get("/api/v1/samples", params={"project": "shapes", "limit": 7, "offset": 7}).json()
    assert not {s["id"] for s in page["items"]} & {s["id"] for s in page2["items"]}
    stars = client.get("/api/v1/samples", params={"project": "shapes", "label": "star"}).json()
    assert stars["total"] == 4 and all(s["labels"] == ["star"] for s in stars["items"])
    sid = stars["items"][0]["id"]
    detail = client.get(f"/api/v1/samples/{sid}").json()["sample"]
    assert detail["annotations"][0]["class"] == "star" and detail["width"] == 64
    thumb = client.get(f"/api/v1/samples/{sid}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert client.get(f"/api/v1/samples/{sid}/original").content[:4] == b"\x89PNG"
    _error(client.get("/api/v1/samples/999999"), 404)
    _error(client.get("/api/v1/samples", params={"project": "shapes", "sort": "evil; drop table"}), 422)

    preview = client.post("/api/v1/splits/preview", json={"project": "shapes", "ratios": [0.5, 0.25, 0.25], "seed": 1}).json()["split"]
    assert preview["locked"] is False and preview["subsets"]["train"]["per_class"]["circle"] == 4
    assert client.get("/api/v1/splits", params={"project": "shapes"}).json()["total"] == 0
    made = client.post("/api/v1/splits", json={"project": "shapes", "name": "s1", "ratios": [0.5, 0.25, 0.25], "seed": 1})
    assert made.status_code == 201 and made.json()["split"]["locked"] is True
    assert made.json()["split"]["subsets"] == preview["subsets"]
    _error(client.post("/api/v1/splits", json={"project": "shapes", "name": "s1"}), 409, "immutable")
    _error(client.patch("/api/v1/splits/shapes/s1", json={}), 409, "immutable")
    _error(client.put("/api/v1/splits/shapes/s1", json={}), 409, "immutable")
    _error(client.post("/api/v1/splits", json={"project": "shapes", "name": "bad", "ratios": [0.9, 0.9]}), 422)
    _error(client.post("/api/v1/splits", json={"project": "shapes", "name": "bad", "ratios": [1, 0, 0, 0]}), 422)
    val = client.get("/api/v1/samples", params={"project": "shapes", "split": "s1", "subset": "val"}).json()
    assert val["total"] == 5


def test_upload_rejects_non_zip_and_too_large(client: TestClient, studio: Studio) -> None:
    client.post("/api/v1/projects", json={"name": "p", "task": "library"})
    r = client.post("/api/v1/imports/upload", files={"file": ("x.zip", b"GIF89a not a zip", "application/zip")}, data={"project": "p"})
    _error(r, 422)
    studio.settings.imports.max_upload_bytes = 1000
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", b"\0" * 5000)
    r = client.post("/api/v1/imports/upload", files={"file": ("big.zip", big.getvalue(), "application/zip")}, data={"project": "p"})
    _error(r, 413, "too_large")
    assert list((studio.home / "tmp").iterdir()) == []
    _error(client.post("/api/v1/imports/upload", data={"project": "p"}), 422)


def test_server_path_import_must_stay_inside_import_roots(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    client.post("/api/v1/projects", json={"name": "p", "task": "library"})
    _error(client.post("/api/v1/imports", json={"project": "p", "source": "/etc"}), 422)
    _error(client.post("/api/v1/imports", json={"project": "p", "source": str(tmp_path / ".." / "..")}), 422)
    _error(client.post("/api/v1/imports", json={"project": "p", "source": "relative/path"}), 422)
    _error(client.post("/api/v1/imports", json={"project": "p", "source": "/tmp/\x00x"}), 422)
    link = tmp_path / "sneaky"
    link.symlink_to("/etc")
    _error(client.post("/api/v1/imports", json={"project": "p", "source": str(link)}), 422)
    folder = make_class_folders(tmp_path / "ok", {"a": 2})
    r = client.post("/api/v1/imports", json={"project": "p", "source": str(folder), "mode": "reference"})
    assert r.status_code == 202
    assert _run(studio, r.json()["job"]["id"])["result"]["report"]["imported"] == 2


def test_jobs_api_and_sse_stream(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    folder = make_class_folders(tmp_path / "f", {"a": 3})
    client.post("/api/v1/projects", json={"name": "p", "task": "classification"})
    job_id = client.post("/api/v1/imports", json={"project": "p", "source": str(folder)}).json()["job"]["id"]
    assert client.get("/api/v1/jobs", params={"status": "queued"}).json()["total"] == 1
    _run(studio, job_id)
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = "".join(resp.iter_text())
    events = [block for block in body.split("\n\n") if block.startswith("id:") or block.startswith("event:")]
    kinds = [line.split(": ", 1)[1] for block in events for line in block.splitlines() if line.startswith("event:")]
    assert kinds[0] == "status" and "progress" in kinds and kinds[-1] == "end"
    end = json.loads(events[-1].split("data: ", 1)[1])
    assert end["status"] == "succeeded"
    # resuming after the last seen event id sends only what came later
    last_id = [b for b in events if b.startswith("id:")][-1].split("\n")[0].split(": ")[1]
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers={"Last-Event-ID": last_id}) as resp:
        rest = "".join(resp.iter_text())
    assert "event: progress" not in rest and "event: end" in rest
    _error(client.get("/api/v1/jobs/424242/events"), 404)
    _error(client.post(f"/api/v1/jobs/{job_id}/cancel"), 409)
    _error(client.post(f"/api/v1/jobs/{job_id}/requeue"), 409)


def test_api_token_required_when_configured(studio: Studio) -> None:
    studio.settings.api_token = "s3cret"
    with TestClient(create_app(studio)) as c:
        assert c.get("/health").status_code == 200
        _error(c.get("/api/v1/projects"), 401, "unauthorized")
        _error(c.get("/api/v1/projects", headers={"Authorization": "Bearer wrong"}), 401)
        assert c.get("/api/v1/projects", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/metrics").status_code == 401


def test_api_explorer_is_served_without_a_cdn(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "vistudio"


def test_cross_site_requests_and_foreign_hosts_are_refused(client: TestClient, tmp_path: Path) -> None:
    evil = {"Origin": "https://evil.example"}
    _error(client.post("/api/v1/projects", json={"name": "x", "task": "library"}, headers=evil), 403, "forbidden")
    r = client.post(
        "/api/v1/imports/upload",
        files={"file": ("x.zip", b"PK\x05\x06" + b"\0" * 18, "application/zip")},
        data={"project": "x"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    _error(r, 403, "forbidden")
    same = {"Origin": "http://testserver"}
    assert client.post("/api/v1/projects", json={"name": "ok", "task": "library"}, headers=same).status_code == 201
    assert client.get("/api/v1/projects", headers=evil).status_code == 200  # reads are not state changes
    # DNS rebinding: a foreign name pointing at 127.0.0.1 gets nothing without a token
    _error(client.get("/api/v1/projects", headers={"Host": "rebound.evil.example"}), 403, "forbidden")
    assert client.get("/health", headers={"Host": "127.0.0.1:8000"}).status_code == 200


def test_runs_api(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "in", {"a": 3})
    body = {"pipeline": {"name": "api-pipe", "stages": [{"name": "load"}]}, "input": str(src), "mode": "production"}
    r = client.post("/api/v1/runs", json=body)
    assert r.status_code == 202, r.text
    job = _run(studio, r.json()["job"]["id"])
    run_id = job["result"]["run"]["id"]
    assert client.get("/api/v1/runs").json()["total"] == 1
    assert client.get(f"/api/v1/runs/{run_id}").json()["run"]["items"] == 3
    assert client.get("/api/v1/runs/usage").json()["per_mode"]["production"] > 0
    assert client.get("/api/v1/runs/compare", params={"a": run_id, "b": run_id}).json()["regressions"] == []
    _error(client.post("/api/v1/runs", json={**body, "input": "/etc"}), 422)
    _error(client.post("/api/v1/runs", json={**body, "pipeline": "stages: 3"}), 422)
    _error(client.get("/api/v1/runs/nope"), 404)
    assert client.post("/api/v1/runs/clean", json={"runs": [run_id]}).json()["runs"] == [run_id]
    _error(client.post("/api/v1/runs/clean", json={}), 422)
