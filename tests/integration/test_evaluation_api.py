"""The evaluation and export API: 202 jobs, results filters, confusion PNG, reset, downloads, errors."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from eval_factories import digits_project, make_experiment, run_job, workspace_settings
from vistudio.api.app import create_app
from vistudio.studio import Studio, open_studio

API = "/api/v1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Studio]]:
    root = tmp_path_factory.mktemp("eval-api")
    studio = open_studio(workspace_settings(root))
    digits_project(studio, root, name="digits")
    make_experiment(studio, project="digits", name="small", model="mobilenet_v3_small", seed=1)
    make_experiment(studio, project="digits", name="busy", model="mobilenet_v3_small", status="running")
    make_experiment(studio, project="digits", name="empty", model="mobilenet_v3_small", kinds=())
    with TestClient(create_app(studio)) as c:
        yield c, studio
    studio.close()


def error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return dict(body["error"])


def test_evaluation_lifecycle(client: tuple[TestClient, Studio]) -> None:
    c, studio = client
    r = c.post(
        f"{API}/evaluations",
        json={
            "project": "digits",
            "experiment": "small",
            "subsets": ["test", "val"],
            "batch_size": 7,
            "device": "cpu",
        },
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["job"]["kind"] == "evaluate" and body["job"]["status"] == "queued"
    assert body["evaluation"]["status"] == "queued" and body["evaluation"]["subsets"] == ["val", "test"]
    assert run_job(studio, body["job"]["id"])["status"] == "succeeded"
    ev = c.get(f"{API}/evaluations/digits/small").json()["evaluation"]
    assert ev["status"] == "succeeded" and ev["device"] == "cpu" and ev["batch_size"] == 7
    assert {"accuracy", "macro_f1", "micro_f1", "per_class"} <= set(ev["metrics"])
    assert len(ev["confusion_matrix"]) == 3 and ev["classes"] == ["0", "1", "2"]
    # relative: no server paths
    assert ev["results_path"].startswith(f"exports/digits/small-{ev['experiment_id']}/evaluation/")

    res = c.get(f"{API}/evaluations/digits/small/results", params={"limit": 500}).json()
    assert res["total"] == 24 and len(res["items"]) == 24
    item = res["items"][0]
    assert {
        "sample_id",
        "name",
        "subset",
        "true",
        "predicted",
        "confidence",
        "correct",
        "top_k",
        "thumbnail_url",
    } <= set(item)
    assert c.get(item["thumbnail_url"]).status_code == 200
    wrong = c.get(f"{API}/evaluations/digits/small/results", params={"correct": "false", "limit": 500}).json()
    assert wrong["total"] == 24 - ev["metrics"]["correct"] and all(not x["correct"] for x in wrong["items"])
    val = c.get(f"{API}/evaluations/digits/small/results", params={"subset": "val"}).json()
    assert val["total"] == 12 and {x["subset"] for x in val["items"]} == {"val"}
    cell = c.get(f"{API}/evaluations/digits/small/results", params={"true": "1", "pred": "0"}).json()
    assert cell["total"] == ev["confusion_matrix"][1][0]
    down = c.get(
        f"{API}/evaluations/digits/small/results", params={"sort": "-confidence", "offset": 5, "limit": 5}
    ).json()
    full = c.get(
        f"{API}/evaluations/digits/small/results", params={"sort": "-confidence", "limit": 500}
    ).json()
    assert [x["sample_id"] for x in down["items"]] == [x["sample_id"] for x in full["items"][5:10]]
    detail = c.get(f"{API}/evaluations/digits/small/results/{item['sample_id']}").json()["result"]
    assert detail == item

    png = c.get(f"{API}/evaluations/digits/small/confusion.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).format == "PNG"

    gone = c.delete(f"{API}/evaluations/digits/small")
    assert gone.status_code == 200 and gone.json()["reset"] is True
    assert not (studio.home / ev["results_path"]).exists()
    error(c.get(f"{API}/evaluations/digits/small"), 404, "not_found")
    error(c.get(f"{API}/evaluations/digits/small/results"), 404)
    error(c.get(f"{API}/evaluations/digits/small/confusion.png"), 404)
    error(c.delete(f"{API}/evaluations/digits/small"), 404)


def test_export_lifecycle_and_download(client: tuple[TestClient, Studio]) -> None:
    c, studio = client
    r = c.post(
        f"{API}/exports", json={"project": "digits", "experiment": "small", "format": "onnx", "opset": 17}
    )
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["job"]["kind"] == "export" and started["export"]["status"] == "queued"
    export_id = started["export"]["id"]
    error(c.get(f"{API}/exports/{export_id}/download"), 409, "conflict")
    assert run_job(studio, started["job"]["id"])["status"] == "succeeded"
    out = c.get(f"{API}/exports/{export_id}").json()["export"]
    assert out["status"] == "succeeded" and out["validation"]["top1_agreement"] == 1.0
    assert out["validation"]["max_abs_diff"] < 1e-4 and out["job"]["status"] == "succeeded"
    listed = c.get(f"{API}/exports", params={"project": "digits"}).json()
    assert listed["total"] >= 1 and listed["items"][0]["id"] == export_id
    assert c.get(f"{API}/exports", params={"project": "digits", "experiment": "empty"}).json()["total"] == 0
    dl = c.get(out["download_url"])
    assert dl.status_code == 200
    assert f'filename="small-best-opset17-{export_id}.onnx"' in dl.headers["content-disposition"]
    assert dl.content == (studio.home / out["path"]).read_bytes()
    import onnx

    props = {p.key: p.value for p in onnx.load_model_from_string(dl.content).metadata_props}
    assert json.loads(props["class_names"]) == ["0", "1", "2"] and props["model"] == "mobilenet_v3_small"
    # the readable copy is gone: the blob still serves the download
    (studio.home / out["path"]).unlink()
    assert c.get(out["download_url"]).content == dl.content
    assert c.delete(f"{API}/exports/{export_id}").json()["deleted"] == export_id
    error(c.get(f"{API}/exports/{export_id}"), 404)
    error(c.get(f"{API}/exports/{export_id}/download"), 404)


def test_hostile_requests(client: tuple[TestClient, Studio]) -> None:
    c, _ = client
    base = {"project": "digits", "experiment": "small"}
    msg = error(c.post(f"{API}/evaluations", json={**base, "experiment": "busy"}), 409, "conflict")["message"]
    assert "is running" in msg and "wait until its training has finished" in msg
    msg = error(c.post(f"{API}/exports", json={**base, "experiment": "empty"}), 409)["message"]
    assert "has no checkpoint" in msg
    error(c.post(f"{API}/evaluations", json={**base, "experiment": "ghost"}), 404, "not_found")
    error(c.post(f"{API}/evaluations", json={**base, "project": "ghost"}), 404, "not_found")
    error(c.post(f"{API}/evaluations", json={**base, "checkpoint": "median"}), 422, "invalid_input")
    error(c.post(f"{API}/evaluations", json={**base, "subsets": ["holdout"]}), 422)
    error(c.post(f"{API}/evaluations", json={**base, "subsets": []}), 422)
    error(c.post(f"{API}/evaluations", json={**base, "batch_size": 10**12}), 422)
    error(c.post(f"{API}/evaluations", json={**base, "device": "tpu"}), 422)
    error(c.post(f"{API}/exports", json={**base, "format": "tflite"}), 422)
    error(c.post(f"{API}/exports", json={**base, "opset": 10**6}), 422)
    error(c.post(f"{API}/evaluations", content=b"{oops", headers={"content-type": "application/json"}), 422)
    error(c.get(f"{API}/evaluations/digits/{'9' * 40}"), 404)
    error(c.get(f"{API}/evaluations/digits/small/results", params={"limit": 10**9}), 422)
    error(c.get(f"{API}/evaluations/digits/small/results", params={"offset": -1}), 422)
    error(c.get(f"{API}/evaluations/digits/small/results", params={"sort": "name"}), 422)
    error(c.get(f"{API}/evaluations/digits/small/results/{10**30}"), 422)
    error(c.get(f"{API}/exports/{10**30}"), 422)
    error(c.get(f"{API}/exports/123456"), 404)
    error(c.delete(f"{API}/exports/123456"), 404)
    error(c.get(f"{API}/exports"), 422)  # the project is required
