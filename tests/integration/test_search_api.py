"""The search API: start embedding (202), status, search by text / sample / upload, and its errors."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from embed_factories import TINY, with_embed
from factories import make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.config import Settings
from vistudio.jobs.worker import Worker
from vistudio.services import projects
from vistudio.studio import Studio, open_studio


@pytest.fixture
def tiny(settings: Settings, tmp_path: Path) -> Iterator[Studio]:
    torch.set_num_threads(1)
    s = open_studio(with_embed(settings, max_upload_bytes=50_000))
    projects.create_project(s, name="pets", task="classification")
    run_import(s, "pets", make_class_folders(tmp_path / "pets", {"cat": 5, "dog": 5}))
    projects.create_project(s, name="other", task="library")
    run_import(s, "other", make_class_folders(tmp_path / "other", {"x": 2}, start_seed=100))
    yield s
    s.close()


@pytest.fixture
def client(tiny: Studio) -> TestClient:
    return TestClient(create_app(tiny))


def _png(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def _embed(client: TestClient, studio: Studio, project: str = "pets") -> dict:  # type: ignore[type-arg]
    r = client.post("/api/v1/search/embeddings", json={"project": project})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["kind"] == "embed" and job["status"] == "queued"
    done = Worker(studio).run_one(job["id"])
    assert done is not None and done.status == "succeeded", done and done.error
    return job  # type: ignore[no-any-return]


def test_embed_status_and_search(client: TestClient, tiny: Studio) -> None:
    r = client.get("/api/v1/search/embeddings", params={"project": "pets"})
    assert r.status_code == 200 and r.json()["searching"] is None and r.json()["pending"] == 10
    assert r.json()["configured"]["name"] == TINY and r.json()["configured"]["available"]
    _embed(client, tiny)
    status = client.get("/api/v1/search/embeddings", params={"project": "pets"}).json()
    assert status["complete"] and status["embedded"] == 10 and status["sets"][0]["active"]

    r = client.post("/api/v1/search", json={"project": "pets", "text": "a cat", "k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 4 and body["model"]["name"] == TINY and body["pending"] == 0
    assert body["items"][0]["why"].startswith("text similarity")
    assert body["items"][0]["thumbnail_url"] == f"/api/v1/samples/{body['items'][0]['sample_id']}/thumbnail"
    assert client.get(body["items"][0]["thumbnail_url"]).status_code == 200

    sid = body["items"][0]["sample_id"]
    r = client.post(
        "/api/v1/search", json={"project": "pets", "sample_id": sid, "filters": {"label": "dog"}, "k": 50}
    )
    assert r.status_code == 200 and all(i["labels"] == ["dog"] for i in r.json()["items"])
    assert len(r.json()["items"]) == 5 - (1 if "dog" in body["items"][0]["labels"] else 0)

    r = client.post(
        "/api/v1/search/image",
        data={"project": "pets", "k": "3", "label": "cat"},
        files={"file": ("red.png", _png(), "image/png")},
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 3 and all("uploaded image 'red.png'" in i["why"] for i in items)
    assert all(i["labels"] == ["cat"] for i in items)


def test_hostile_requests_get_clear_errors(client: TestClient, tiny: Studio) -> None:
    _embed(client, tiny)
    cases = [
        ({"project": "pets", "text": "x", "k": 10**9}, 422, "invalid_input"),
        ({"project": "pets", "text": "x", "k": 0}, 422, "invalid_input"),
        ({"project": "pets", "text": ""}, 422, "invalid_input"),
        ({"project": "pets", "text": " \n\t "}, 422, "invalid_input"),
        ({"project": "pets"}, 422, "invalid_input"),
        ({"project": "pets", "text": "x", "sample_id": 1}, 422, "invalid_input"),
        ({"project": "pets", "sample_id": 9_999_999}, 404, "not_found"),
        ({"project": "pets", "sample_id": 2**70}, 422, "invalid_input"),
        ({"project": "pets", "sample_id": 11}, 404, "not_found"),  # a sample of project "other"
        ({"project": "pets", "text": "x", "filters": {"taken_from": "yesterday"}}, 422, "invalid_input"),
        (
            {"project": "pets", "text": "x", "filters": {"taken_from": "2025", "taken_to": "2024"}},
            422,
            "invalid_input",
        ),
        ({"project": "nope", "text": "x"}, 404, "not_found"),
        ({"project": "pets", "text": "x" * 5000}, 422, "invalid_input"),
    ]
    for body, status, code in cases:
        r = client.post("/api/v1/search", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["code"] == code and set(r.json()["error"]) == {"code", "message", "details"}

    def upload(data: bytes, name: str = "x.png") -> int:
        r = client.post(
            "/api/v1/search/image", data={"project": "pets"}, files={"file": (name, data, "image/png")}
        )
        assert set(r.json()["error"]) == {"code", "message", "details"} if r.status_code >= 400 else True
        return r.status_code

    assert upload(b"") == 422
    assert upload(b"GIF89a not really") == 422
    assert upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100) == 422
    assert upload(b"\xff" * 60_000) == 413  # over VISTUDIO_EMBED__MAX_UPLOAD_BYTES (50 kB here)
    # a streamed (chunked) upload that never says its length is refused too (the middleware's
    # own test shows it stops reading); one that declares too much is refused before it is read
    def endless() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(20):
            yield b"\xff" * 65_536

    multipart = {"content-type": "multipart/form-data; boundary=b"}
    r = client.post("/api/v1/search/image", content=endless(), headers=multipart)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = client.post("/api/v1/search/image", content=b"x", headers={**multipart, "content-length": str(2**40)})
    assert r.status_code == 413 and "VISTUDIO_EMBED__MAX_UPLOAD_BYTES" in r.json()["error"]["message"]
    r = client.post(
        "/api/v1/search", content=b" " * (17 * 2**20), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413  # no request but an upload needs more than 16 MiB
    Image.MAX_IMAGE_PIXELS, saved = 100, Image.MAX_IMAGE_PIXELS
    try:
        assert upload(_png(size=(40, 30))) == 422  # 1,200 px > 2 × 100: a decompression bomb
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    import vistudio.services.search as search_service

    cap, search_service.MAX_UPLOAD_PIXELS = search_service.MAX_UPLOAD_PIXELS, 1000
    try:
        assert upload(_png(size=(40, 30))) == 422  # 1,200 px: under Pillow's limit, over the search cap
    finally:
        search_service.MAX_UPLOAD_PIXELS = cap
    assert upload(_png()) == 200
    r = client.post(
        "/api/v1/search/image",
        data={"project": "pets", "k": "501"},
        files={"file": ("x.png", _png(), "image/png")},
    )
    assert r.status_code == 422


def test_model_unavailable_is_503_and_checkpoints_stay_inside_the_roots(
    client: TestClient, tiny: Studio, tmp_path: Path
) -> None:
    r = client.post(
        "/api/v1/search/embeddings",
        json={"project": "pets", "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
    )
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "model_unavailable" and "VISTUDIO_EMBED__MODEL" in err["message"]
    r = client.post(
        "/api/v1/search/embeddings", json={"project": "pets", "checkpoint": str(tmp_path / "none.pt")}
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
    r = client.post("/api/v1/search/embeddings", json={"project": "pets", "checkpoint": "/etc/passwd"})
    assert r.status_code == 422 and "VISTUDIO_IMPORT_ROOTS" in r.json()["error"]["message"]
    r = client.post("/api/v1/search/embeddings", json={"project": "pets", "checkpoint": "relative.pt"})
    assert r.status_code == 422
    r = client.post("/api/v1/search/embeddings", json={"project": "pets", "model": "no-such-arch"})
    assert r.status_code == 422
    r = client.post("/api/v1/search/embeddings", json={"project": "missing"})
    assert r.status_code == 404
    # one embedding job per project at a time: the same model answers the queued job again
    first = client.post("/api/v1/search/embeddings", json={"project": "pets"}).json()["job"]
    again = client.post("/api/v1/search/embeddings", json={"project": "pets"})
    assert again.status_code == 202 and again.json()["job"]["id"] == first["id"]
