"""The query syntax through the API, the CLI and the Search page: results with their reasons,
syntax errors as 422 / exit 1 with the column, and hostile input that never reaches SQL or FTS5
as syntax (operators are words; nothing is a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from embed_factories import run_embedding, with_embed
from factories import cli, make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.config import Settings
from vistudio.services import edits, projects, samples
from vistudio.studio import Studio, open_studio


@pytest.fixture
def pets(studio: Studio, tmp_path: Path) -> Studio:
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 3, "dog": 2}))
    first = min(x["id"] for x in samples.list_samples(studio, project="pets")["items"])
    edits.edit_sample(studio, first, add_tags=["keep", "Lisbon trip"])
    return studio


@pytest.fixture
def client(pets: Studio) -> TestClient:
    return TestClient(create_app(pets))


def test_query_through_the_api(client: TestClient) -> None:
    r = client.post("/api/v1/search", json={"project": "pets", "query": "cat -tag:keep"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "text" and body["total"] == 2
    assert body["query"]["canonical"] == "cat -tag:keep" and body["text_index"]["state"] == "ready"
    item = body["items"][0]
    assert item["match"]["words"] == {"cat": ["name", "labels"]} and item["match"]["filters"] == [
        "not tag=keep"
    ]
    assert item["why"].startswith("words cat in name, labels; full-text rank 1")
    assert {"sample_id", "name", "path", "labels", "thumbnail_url", "score"} <= set(item)
    # filters alone: a listing (newest taken first), with the number matching
    r = client.post("/api/v1/search", json={"project": "pets", "query": 'tag:"Lisbon trip"', "k": 1})
    assert r.status_code == 200 and r.json()["mode"] == "filters" and r.json()["matched"] == 1
    assert r.json()["items"][0]["score"] is None and r.json()["items"][0]["why"] == "filters: tag=Lisbon trip"
    # the older filters still work beside a query, with AND
    r = client.post(
        "/api/v1/search", json={"project": "pets", "query": "label:cat", "filters": {"tag": "keep"}}
    )
    assert r.status_code == 200 and r.json()["matched"] == 1


@pytest.mark.parametrize(
    ("query", "column", "words"),
    [
        ("cat colour:red", 5, "unknown key 'colour'"),
        ('cat "unclosed', 5, "this quote is not closed"),
        ("tag:", 5, "needs a value"),
        ("after:2023-02-31", 7, "a date is YYYY"),
        ("cat\x07", 4, "control character"),
        ("x" * 10_000, 1001, "too long"),
    ],
)
def test_syntax_errors_are_422_with_the_column(
    client: TestClient, query: str, column: int, words: str
) -> None:
    r = client.post("/api/v1/search", json={"project": "pets", "query": query})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_input" and words in err["message"] and err["details"]["column"] == column


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '""',
        "*",
        "**",
        "NEAR(cat dog)",
        "NEAR(cat, 2)",
        "cat AND OR NOT dog",
        "^cat",
        ":",
        "cat:",  # not a key: 'cat' is letters, so this is an unknown key — see below
        "name : cat",
        "'; DROP TABLE samples; --x",
        "%",
        "_",
        "\\",
        "{name labels}: cat",
        "labels:cat",
        "cat*dog",
        '"cat"*',
        "🐈 كلب 猫",
        "cat\u00a0dog",
        "a" * 999,
    ],
)
def test_hostile_queries_are_words_or_a_clear_error(client: TestClient, query: str) -> None:
    r = client.post("/api/v1/search", json={"project": "pets", "query": query})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert r.json()["error"]["code"] == "invalid_input" and "column" in r.json()["error"]["details"]
    else:
        assert all("sample_id" in i for i in r.json()["items"])


def test_fts_operators_are_searched_as_words(client: TestClient) -> None:
    def names(q: str) -> list[str]:
        r = client.post("/api/v1/search", json={"project": "pets", "query": q})
        assert r.status_code == 200, r.text
        return sorted(i["name"] for i in r.json()["items"])

    assert names("NEAR(cat") == []  # "near" AND "cat": no photo says "near"
    assert names("cat OR dog") == []  # the word "or" is in no photo: OR is not an operator
    assert len(names("cat*")) == 3 and names("^cat") == names("cat") == names('"cat"')
    assert names("dog/dog-001.png") == ["dog/dog-001.png"]


def test_query_and_text_together_are_refused(client: TestClient) -> None:
    r = client.post("/api/v1/search", json={"project": "pets", "query": "cat", "text": "cat"})
    assert r.status_code == 422 and "not both" in r.json()["error"]["message"]
    r = client.post("/api/v1/search", json={"project": "pets", "query": "person:Nobody"})
    assert r.status_code == 404


def test_the_cli_query(capsys: pytest.CaptureFixture[str], pets: Studio) -> None:
    ws = pets.home
    code, out = cli(capsys, ws, "search", "pets", "--query", "label:cat tag:keep")
    assert code == 0 and out["mode"] == "filters" and out["matched"] == 1
    code, out = cli(capsys, ws, "search", "pets", "--query", "dog")
    assert code == 0 and out["mode"] == "text" and len(out["items"]) == 2
    assert out["items"][0]["why"].startswith("words dog in")
    code, out = cli(capsys, ws, "search", "pets", "--query", "cat bogus:1")
    assert code == 1 and out["error"]["code"] == "invalid_input" and out["error"]["details"]["column"] == 5
    code, out = cli(capsys, ws, "search", "pets", "--query", "cat", "--text", "cat")
    assert code == 2 and out["error"]["code"] == "usage"


def test_the_cli_query_as_text(capsys: pytest.CaptureFixture[str], pets: Studio) -> None:
    from vistudio.cli.main import main

    assert main(["--workspace", str(pets.home), "search", "pets", "--query", "cat"]) in (0, None)
    out = capsys.readouterr().out
    assert "cat/cat-000.png" in out and "words cat in" in out


@pytest.fixture
def tiny(settings: Settings, tmp_path: Path) -> Iterator[Studio]:
    torch.set_num_threads(1)
    s = open_studio(with_embed(settings))
    projects.create_project(s, name="pets", task="classification")
    run_import(s, "pets", make_class_folders(tmp_path / "pets", {"cat": 4, "dog": 4}))
    yield s
    s.close()


def test_hybrid_with_a_real_encoder(tiny: Studio) -> None:
    """The tiny untrained CLIP through the production path: both lists, fused."""
    assert run_embedding(tiny, "pets")["status"] == "succeeded"
    client = TestClient(create_app(tiny))
    r = client.post("/api/v1/search", json={"project": "pets", "query": "cat", "k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "hybrid" and body["model"]["name"] and body["total"] == 8
    ranks = [(i["match"]["text_rank"], i["match"]["clip_rank"]) for i in body["items"]]
    assert sum(t is not None for t, _ in ranks) == 4  # the four cats by their words
    assert all(c is not None for _, c in ranks)  # every photo by its vector
    assert all(i["why"].startswith("text similarity") and "(CLIP rank" in i["why"] for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    # a sample's vector with the query's filters: CLIP by image, within label:dog
    cat = body["items"][0]["sample_id"]
    r = client.post("/api/v1/search", json={"project": "pets", "query": "label:dog", "sample_id": cat})
    assert r.status_code == 200 and r.json()["mode"] == "clip"
    assert {tuple(i["labels"]) for i in r.json()["items"]} == {("dog",)} and r.json()["total"] == 4


def test_the_search_page_takes_the_syntax(client: TestClient) -> None:
    r = client.get("/projects/pets/search", params={"text": "label:cat tag:keep"})
    assert r.status_code == 200 and 'data-testid="syntax-popover"' in r.text
    assert "filters: label=cat, tag=keep" in r.text and "1 matching" in r.text
    r = client.get("/projects/pets/search", params={"text": "cat"})
    assert r.status_code == 200 and "words cat in name, labels" in r.text
    # a syntax error is shown inline, in the page, with its column
    r = client.get("/projects/pets/search", params={"text": 'cat "open'}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and 'data-testid="search-error"' in r.text
    assert "this quote is not closed (column 5)" in r.text
    r = client.get("/projects/pets/search", params={"text": "colour:red"})
    assert 'data-testid="search-error"' in r.text and "known keys: person, tag" in r.text
    assert 'data-testid="syntax-popover"' in r.text  # the whole page, not a blank one
