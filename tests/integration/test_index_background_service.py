"""The services' vector indexes build their HNSW graph in the background: the embed job waits for
it and leaves a current HNSW file; a restart loads that file instead of rebuilding."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import select

from embed_factories import run_embedding, with_embed
from factories import make_class_folders, run_import
from vistudio.config import Settings
from vistudio.ml.embed import FaissVectorIndex
from vistudio.services import projects, search, vector_index
from vistudio.studio import Studio, open_studio


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pets(settings: Settings, tmp_path: Path) -> Iterator[Studio]:
    studio = open_studio(with_embed(settings))
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 6, "dog": 5, "fox": 4}))
    yield studio
    studio.close()


def test_the_embed_job_leaves_a_current_hnsw_file_built_in_the_background(
    pets: Studio, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[FaissVectorIndex] = []
    original = vector_index.load_or_rebuild

    def small_threshold(*args: Any, **kwargs: Any) -> FaissVectorIndex:
        index = functools.partial(original, hnsw_threshold=10)(*args, **kwargs)
        built.append(index)
        return index

    monkeypatch.setattr(vector_index, "load_or_rebuild", small_threshold)
    job = run_embedding(pets, "pets")
    assert job["status"] == "succeeded", job["error"]
    (index,) = built
    assert index.background and not index.building and index.build_error is None
    assert index.kind == "hnsw" and len(index) == 15  # the 15 vectors crossed 10: built, swapped in
    (path,) = sorted((pets.home / "indexes").rglob("*.npz"))
    on_disk = FaissVectorIndex.load(path)  # saved after the swap, with the current fingerprint
    assert (
        on_disk.kind == "hnsw"
        and len(on_disk) == 15
        and on_disk.fingerprint.endswith(index.fingerprint.split(":", 1)[1])
    )
    hits = search.search(pets, project="pets", text="an animal", k=100)["items"]
    assert len(hits) == 15

    def no_rebuild(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the index was rebuilt from scratch")

    monkeypatch.setattr(vector_index, "load_or_rebuild", no_rebuild)
    cold = open_studio(with_embed(settings))  # a restart loads the HNSW file
    try:
        hits = search.search(cold, project="pets", text="an animal", k=100)["items"]
        assert len(hits) == 15
    finally:
        cold.close()


def test_a_search_during_the_build_answers_from_the_flat_vectors(
    pets: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embed job waits for the graph; a search meanwhile answers at once, exactly."""
    original = vector_index.load_or_rebuild
    monkeypatch.setattr(vector_index, "load_or_rebuild", functools.partial(original, hnsw_threshold=10))
    gate, entered = threading.Event(), threading.Event()
    fill = FaissVectorIndex._fill

    def slow_fill(self: FaissVectorIndex, index: Any, vecs: Any) -> None:
        entered.set()
        assert gate.wait(60)
        fill(self, index, vecs)

    monkeypatch.setattr(FaissVectorIndex, "_fill", slow_fill)
    jobs: list[dict[str, Any]] = []
    runner = threading.Thread(target=lambda: jobs.append(run_embedding(pets, "pets")))
    runner.start()
    try:
        assert entered.wait(60)  # the job stored the vectors and the graph is being built
        t = time.monotonic()
        out = search.search(pets, project="pets", text="an animal", k=100)
        assert time.monotonic() - t < 30 and runner.is_alive()  # answered while the job still waits
        assert len(out["items"]) == 15
        index = vector_index.project_index(pets, 1, _model(pets))
        assert index.kind == "exact" and index.building
    finally:
        gate.set()
        runner.join(60)
    assert jobs and jobs[0]["status"] == "succeeded", jobs
    assert index.kind == "hnsw" and not index.building
    assert len(search.search(pets, project="pets", text="an animal", k=100)["items"]) == 15


def _model(studio: Studio) -> Any:
    from vistudio.db.embeddings import EmbeddingModel

    with studio.sessions() as s:
        model = s.scalars(select(EmbeddingModel)).one()
        s.expunge(model)
        return model
