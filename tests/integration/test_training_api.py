"""The experiments API: start (202), list, get, metric series, compare, rename, frozen config (409),
stop, delete, the model catalog, and hostile input (400/404/422, never 5xx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from training_helpers import TINY, run_job, tiny_project
from vistudio.api.app import create_app
from vistudio.studio import Studio

API = "/api/v1/experiments"


@pytest.fixture
def client(studio: Studio) -> Iterator[TestClient]:
    with TestClient(create_app(studio)) as c:
        yield c


def _error(resp: object, status: int, code: str | None = None) -> dict:  # type: ignore[type-arg]
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_experiment_lifecycle_over_http(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path)
    r = client.post(API, json={"project": "shapes", "name": "api-1", "config": {**TINY, "epochs": 1}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["job"]["kind"] == "train" and body["experiment"]["status"] == "queued"
    assert run_job(studio, body["job"]["id"])["status"] == "succeeded"

    exp = client.get(f"{API}/shapes/api-1").json()["experiment"]
    assert (
        exp["status"] == "succeeded" and exp["job"]["status"] == "succeeded" and len(exp["checkpoints"]) == 2
    )
    assert client.get(f"{API}/shapes/{exp['id']}").json()["experiment"]["name"] == "api-1"  # by id too
    series = client.get(f"{API}/shapes/api-1/metrics").json()["series"]
    assert {"train_loss", "val_loss", "val_accuracy", "train_loss_step", "lr"} <= set(series)
    assert series["val_loss"]["epoch"] == [1] and len(series["train_loss_step"]["step"]) >= 2
    only = client.get(f"{API}/shapes/api-1/metrics", params={"names": ["val_loss", "nope"]}).json()["series"]
    assert list(only) == ["val_loss"]

    r = client.post(API, json={"project": "shapes", "name": "api-2", "config": {**TINY, "epochs": 30}})
    assert r.status_code == 202
    r = client.post(f"{API}/shapes/api-2/stop")
    assert r.status_code == 202 and r.json()["experiment"]["status"] == "stopped"  # it was still queued
    listed = client.get(API, params={"project": "shapes"}).json()
    assert listed["total"] == 2 and [e["name"] for e in listed["items"]] == ["api-2", "api-1"]
    assert client.get(API, params={"project": "shapes", "status": "succeeded"}).json()["total"] == 1
    cmp = client.get(f"{API}/compare", params={"project": "shapes", "experiments": ["api-1", "api-2"]}).json()
    assert set(cmp["series"]["val_accuracy"]) == {"api-1"} and len(cmp["table"]) == 2
    assert cmp["table"][0]["best"]["val_accuracy"] == exp["best_metrics"]["val_accuracy"]

    _error(client.patch(f"{API}/shapes/api-1", json={"config": {"lr": 0.5}}), 409, "immutable")
    assert (
        client.patch(f"{API}/shapes/api-1", json={"name": "api-one"}).json()["experiment"]["name"]
        == "api-one"
    )
    _error(client.patch(f"{API}/shapes/api-2", json={"name": "api-one"}), 409, "conflict")
    _error(client.post(f"{API}/shapes/api-one/stop"), 409, "conflict")
    gone = client.delete(f"{API}/shapes/api-one").json()
    assert gone["deleted"] == "api-one" and gone["checkpoints"] == 2
    _error(client.get(f"{API}/shapes/api-one"), 404, "not_found")


def test_bad_requests_are_clear(client: TestClient, studio: Studio, tmp_path: Path) -> None:
    tiny_project(studio, tmp_path, per_class=4)
    err = _error(
        client.post(API, json={"project": "shapes", "config": {"epochs": 0, "colour": "red"}}),
        400,
        "bad_request",
    )
    assert {e["key"] for e in err["details"]["errors"]} == {"epochs", "colour"}
    _error(client.post(API, json={"project": "nope", "config": {}}), 404, "not_found")
    _error(client.post(API, json={"project": "shapes", "config": {"augment": {"blur": 1}}}), 400)
    _error(client.post(API, json={"project": "shapes", "config": "epochs=3"}), 422, "invalid_input")
    _error(client.post(API, json={"project": "shapes", "config": {**TINY, "pretrained": "/etc/passwd"}}), 422)
    _error(
        client.post(API, json={"project": "shapes", "name": "bad/name", "config": TINY}), 422, "invalid_input"
    )
    _error(client.get(f"{API}/compare", params={"project": "shapes", "experiments": ["a"]}), 422)
    _error(client.get(f"{API}/compare", params={"project": "shapes", "experiments": ["a", "b"]}), 404)
    _error(client.get(f"{API}/shapes/99999999999999999999999"), 404)
    _error(client.get(API, params={"project": "shapes", "limit": 0}), 422)
    catalog = client.get(f"{API}/models").json()
    assert catalog["total"] == len(catalog["items"]) >= 7
    assert {"name", "family", "params_millions", "default_image_size", "pretrained_cached"} <= set(
        catalog["items"][0]
    )


def test_create_response_warns_about_an_image_size_too_small(
    client: TestClient, studio: Studio, tmp_path: Path
) -> None:
    tiny_project(studio, tmp_path, per_class=4)
    small = {**TINY, "model": "mobilenet_v3_small", "image_size": 32}
    r = client.post(API, json={"project": "shapes", "name": "small", "config": small})
    assert r.status_code == 202, r.text
    (warning,) = r.json()["warnings"]
    assert warning["code"] == "image_size_too_small" and warning["minimum"] == 96
    assert "96 px" in warning["message"]
    # the experiment keeps saying it: its detail shows the same warning
    assert client.get(f"{API}/shapes/small").json()["experiment"]["warnings"] == [warning]
    r = client.post(API, json={"project": "shapes", "config": {**small, "image_size": 224}})
    assert r.status_code == 202 and r.json()["warnings"] == []
    sizes = {m["name"]: m["min_image_size"] for m in client.get(f"{API}/models").json()["items"]}
    assert sizes["mobilenet_v3_small"] == 96 and sizes["resnet18"] == 32


def test_detector_weight_words_are_no_pass_for_classification(
    client: TestClient, studio: Studio, tmp_path: Path
) -> None:
    """none/backbone/coco name a detector's weights only in projects whose task has objects: in a
    classification project they are weights paths like any other, checked and refused clearly."""
    tiny_project(studio, tmp_path, per_class=4)
    for word in ("coco", "COCO ", "backbone", "none", "w.pt", " "):
        err = _error(
            client.post(API, json={"project": "shapes", "config": {**TINY, "pretrained": word}}), 422
        )
        assert "absolute path of a weights file" in err["message"] and err["details"]["key"] == "pretrained"
    outside = tmp_path.parent / "elsewhere" / "coco"
    err = _error(
        client.post(API, json={"project": "shapes", "config": {**TINY, "pretrained": str(outside)}}), 422
    )
    assert "outside the folders" in err["message"] and err["details"]["key"] == "pretrained"
    _error(client.post(API, json={"project": "nope", "config": {"pretrained": "coco"}}), 404, "not_found")
    assert client.get(API, params={"project": "shapes"}).json()["total"] == 0  # nothing was created
