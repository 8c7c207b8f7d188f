"""Embedding jobs, embedding sets and vector indexes through the real services (tiny model, SQLite)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import delete, func, select

from embed_factories import crash_after, register_tiny, run_embedding, with_embed
from factories import make_class_folders, run_import
from vistudio.config import Settings
from vistudio.db import Sample
from vistudio.db.embeddings import ActiveEmbedding, Embedding, EmbeddingSet
from vistudio.errors import Conflict, ModelUnavailable
from vistudio.jobs.worker import Worker
from vistudio.services import embeddings, projects, search, vector_index
from vistudio.studio import Studio, open_studio

OTHER = "vistudio-test-tiny-b"  # a second architecture: a "changed configured model"
OTHER_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pets(tiny: Studio, tmp_path: Path) -> Studio:
    projects.create_project(tiny, name="pets", task="classification")
    run_import(tiny, "pets", make_class_folders(tmp_path / "pets", {"cat": 6, "dog": 5, "fox": 4}))
    return tiny


def _vectors_in_db(studio: Studio, project_id: int = 1) -> int:
    with studio.sessions() as s:
        return int(s.scalar(select(func.count()).where(Embedding.project_id == project_id)) or 0)


def _index_files(studio: Studio) -> list[Path]:
    return sorted((studio.home / "indexes").rglob("*.npz"))


def test_embed_job_records_vectors_once_and_a_rerun_skips_them(pets: Studio) -> None:
    job = run_embedding(pets, "pets")
    assert job["status"] == "succeeded", job["error"]
    report = job["result"]["report"]
    assert report["embedded"] == 15 and report["skipped"] == 0 and report["failed"] == 0
    assert report["pending"] == 0 and report["active"] is True
    model = report["model"]
    assert model["name"] == "vistudio-test-tiny" and model["version"] == "untrained-seed0"
    assert model["dim"] == 32 and model["device"] == "cpu" and model["untrained"] and "warning" in model
    again = run_embedding(pets, "pets")["result"]["report"]
    assert again["embedded"] == 0 and again["skipped"] == 15
    assert _vectors_in_db(pets) == 15
    files = _index_files(pets)
    assert [f.name for f in files] == ["project-1.npz"]
    assert files[0].parent.name.startswith("vistudio-test-tiny-untrained-seed0-m")
    with pets.sessions() as s:
        es = s.scalar(select(EmbeddingSet))
        assert es is not None and es.status == "complete" and es.embedded == 15 and es.total == 15
        assert s.scalar(select(ActiveEmbedding.model_id)) == model["id"]
    status = embeddings.embedding_status(pets, project="pets")
    assert status["complete"] and status["embedded"] == 15 and status["pending"] == 0
    assert status["configured"]["available"] and status["jobs"] == []


def test_two_requests_racing_to_start_embedding_queue_one_job(
    pets: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = embeddings.start_embedding(pets, project="pets")
    real = embeddings._running_embedding

    def blind_first_look(*args: Any, before: int | None = None) -> Any:
        # the second request looked before the first had queued its job
        return None if before is None else real(*args, before=before)

    monkeypatch.setattr(embeddings, "_running_embedding", blind_first_look)
    second = embeddings.start_embedding(pets, project="pets")
    assert second["id"] == first["id"]
    jobs, _ = pets.queue.list(kind="embed")
    assert sorted(j.status for j in jobs) == ["cancelled", "queued"]


def test_deleting_the_project_removes_its_index_files(pets: Studio, tmp_path: Path) -> None:
    projects.create_project(pets, name="other", task="classification")
    run_import(pets, "other", make_class_folders(tmp_path / "other", {"owl": 3}, start_seed=900))
    run_embedding(pets, "pets")
    run_embedding(pets, "other")
    search.search(pets, project="pets", text="a cat")  # loads the index into memory
    assert [f.name for f in _index_files(pets)] == ["project-1.npz", "project-2.npz"]
    projects.delete_project(pets, "pets")
    assert [f.name for f in _index_files(pets)] == ["project-2.npz"]
    assert len(search.search(pets, project="other", text="an owl")["items"]) == 3


def test_project_vectors_contract(pets: Studio) -> None:
    assert embeddings.project_vectors(pets, 1) is None  # never embedded
    assert embeddings.project_vectors(pets, 999) is None
    run_embedding(pets, "pets")
    out = embeddings.project_vectors(pets, 1)
    assert out is not None
    ids, vectors, info = out
    assert ids.dtype == np.int64 and ids.tolist() == sorted(ids.tolist()) and ids.size == 15
    assert vectors.dtype == np.float32 and vectors.shape == (15, 32) and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert {"name", "version", "dim", "device"} <= set(info) and info["dim"] == 32
    with pets.sessions() as s:
        stored = s.scalar(select(Embedding.vector).where(Embedding.sample_id == int(ids[3])))
    np.testing.assert_allclose(np.frombuffer(stored, dtype="<f4"), vectors[3], atol=1e-6)


def test_a_crash_mid_embedding_resumes_and_the_index_stays_consistent(
    pets: Studio, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vistudio.ml.embed.batch.embed_images", crash_after(1))
    job = run_embedding(pets, "pets")
    assert job["status"] == "queued" and "killed" in job["error"]["message"]  # retried later
    assert _vectors_in_db(pets) == 8  # the first batch was committed
    assert embeddings.project_vectors(pets, 1) is None  # no complete set yet
    # before any set is complete, searches see what is embedded so far
    partial = search.search(pets, project="pets", text="a cat", k=50)
    assert partial["complete"] is False and partial["embedded"] == 8 and partial["pending"] == 7
    assert len(partial["items"]) == 8 and {n["code"] for n in partial["notices"]} == {"partial"}

    # the retry runs in another process (another Studio): it finishes what is left, exactly once each
    monkeypatch.undo()
    worker_studio = open_studio(with_embed(settings))
    try:
        time.sleep(0.05)  # the retry's backoff
        done = Worker(worker_studio).run_one(job["id"])
        assert done is not None and done.status == "succeeded"
        report = (done.result or {})["report"]
        assert report["embedded"] == 7 and report["skipped"] == 8 and done.attempts == 2
    finally:
        worker_studio.close()
    assert _vectors_in_db(pets) == 15
    # this process's index was loaded at 8 vectors: it catches up from the database
    full = search.search(pets, project="pets", text="a cat", k=50)
    assert full["complete"] and full["embedded"] == 15 and len(full["items"]) == 15


def test_a_stale_damaged_or_missing_index_file_is_made_current_from_the_database(
    pets: Studio, settings: Settings
) -> None:
    run_embedding(pets, "pets")
    (path,) = _index_files(pets)
    with pets.sessions.begin() as s:  # samples deleted behind the index's back (another process)
        doomed = list(s.scalars(select(Sample.id).order_by(Sample.id).limit(3)))
        s.execute(delete(Sample).where(Sample.id.in_(doomed)))
    for damage in ("stale", "truncated", "missing"):
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[:100])
        elif damage == "missing":
            path.unlink()
        cold = open_studio(with_embed(settings))  # a fresh process: no index in memory
        try:
            out = embeddings.project_vectors(cold, 1)
            assert out is not None
            ids, _, _ = out
            assert ids.size == 12 and not set(doomed) & set(ids.tolist())
            hits = search.search(cold, project="pets", text="an animal", k=100)["items"]
            assert len(hits) == 12 and not {h["sample_id"] for h in hits} & set(doomed)
        finally:
            cold.close()
        assert path.is_file()  # written again, current
    from vistudio.ml.embed import FaissVectorIndex

    assert len(FaissVectorIndex.load(path)) == 12


def test_a_stale_index_file_is_brought_up_to_date_by_difference(
    pets: Studio, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart, a file saved before the last changes is updated with them (a large index
    is not rebuilt from scratch in the first search)."""
    run_embedding(pets, "pets")
    with pets.sessions.begin() as s:
        doomed = list(s.scalars(select(Sample.id).order_by(Sample.id.desc()).limit(2)))
        s.execute(delete(Sample).where(Sample.id.in_(doomed)))

    def no_rebuild(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the index was rebuilt from scratch")

    monkeypatch.setattr(vector_index, "load_or_rebuild", no_rebuild)
    cold = open_studio(with_embed(settings))
    try:
        hits = search.search(cold, project="pets", text="an animal", k=100)["items"]
        assert len(hits) == 13 and not {h["sample_id"] for h in hits} & set(doomed)
    finally:
        cold.close()


def test_changing_the_model_reembeds_and_searches_keep_the_old_vectors_until_complete(
    pets: Studio, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_embedding(pets, "pets")
    register_tiny(OTHER, OTHER_CONFIG)
    changed = open_studio(with_embed(settings, model=OTHER))
    try:
        first = search.search(changed, project="pets", text="a dog")
        notice = next(n for n in first["notices"] if n["code"] == "reembedding")
        assert first["model"]["name"] == "vistudio-test-tiny" and first["complete"]
        job_id = notice["job_id"]
        again = search.search(changed, project="pets", text="a dog")  # the same job, not a second one
        assert next(n for n in again["notices"] if n["code"] == "reembedding")["job_id"] == job_id
        with pytest.raises(Conflict):
            embeddings.start_embedding(changed, project="pets", model="vistudio-test-tiny")

        monkeypatch.setattr("vistudio.ml.embed.batch.embed_images", crash_after(1))
        Worker(changed).run_one(job_id)
        monkeypatch.undo()
        midway = search.search(changed, project="pets", text="a dog", k=50)
        assert midway["model"]["name"] == "vistudio-test-tiny" and midway["model"]["dim"] == 32
        assert len(midway["items"]) == 15 and midway["pending"] == 0
        assert embeddings.project_vectors(changed, 1)[1].shape == (15, 32)  # type: ignore[index]

        time.sleep(0.05)
        done = Worker(changed).run_one(job_id)
        assert done is not None and done.status == "succeeded"
        report = (done.result or {})["report"]
        assert report["replaced"]["name"] == "vistudio-test-tiny" and report["model"]["name"] == OTHER
        after = search.search(changed, project="pets", text="a dog", k=50)
        assert after["model"]["name"] == OTHER and after["model"]["dim"] == 16 and after["notices"] == []
        assert embeddings.project_vectors(changed, 1)[1].shape == (15, 16)  # type: ignore[index]
        status = embeddings.embedding_status(changed, project="pets")
        assert [(x["model"]["name"], x["active"]) for x in status["sets"]] == [
            (OTHER, True),
            ("vistudio-test-tiny", False),
        ]
        assert len(_index_files(changed)) == 2  # one folder per model
    finally:
        changed.close()


def test_a_model_named_explicitly_is_not_replaced_by_the_configured_one(pets: Studio) -> None:
    register_tiny(OTHER, OTHER_CONFIG)
    job = run_embedding(pets, "pets", model=OTHER, pretrained="none")
    assert job["params"]["explicit"] is True and job["status"] == "succeeded"
    out = search.search(pets, project="pets", text="a fox")
    assert out["model"]["name"] == OTHER and out["notices"] == []
    assert pets.queue.list(kind="embed")[1] == 1  # no re-embedding job with the configured model
    configured = run_embedding(pets, "pets")  # asked for: the configured model replaces it
    assert configured["params"]["explicit"] is False
    assert search.search(pets, project="pets", text="a fox")["model"]["name"] == "vistudio-test-tiny"


def test_filters_restrict_the_search_before_ranking(tiny: Studio, tmp_path: Path) -> None:
    from datetime import datetime

    from embed_factories import dated_jpeg

    src = tmp_path / "photos"
    for i, (folder, when) in enumerate(
        [
            ("beach", datetime(2023, 7, 1)),
            ("beach", datetime(2024, 7, 2)),
            ("city", datetime(2024, 1, 5)),
            ("city", datetime(2024, 12, 31, 23)),
            ("city", datetime(2025, 2, 1)),
            ("beach", datetime(2024, 5, 9)),
        ]
    ):
        dated_jpeg(src / folder / f"p{i}.jpg", colour=(40 * i, 100, 200 - 30 * i), when=when)
    projects.create_project(tiny, name="lib", task="library")
    run_import(tiny, "lib", src)
    run_embedding(tiny, "lib")

    def names(**filters: Any) -> set[str]:
        out = search.search(tiny, project="lib", text="holiday", k=50, filters=filters)
        return {i["name"].rsplit("/", 1)[-1] for i in out["items"]}

    assert len(names()) == 6
    assert names(tag="beach") == {"p0.jpg", "p1.jpg", "p5.jpg"}
    assert names(year="2024") == {"p1.jpg", "p2.jpg", "p3.jpg", "p5.jpg"}
    assert names(tag="city", year="2024") == {"p2.jpg", "p3.jpg"}
    assert names(**{"from": "2024-06", "to": "2025"}) == {"p1.jpg", "p3.jpg", "p4.jpg"}
    assert names(taken_to="2023-12-31") == {"p0.jpg"}
    assert names(name="p4") == {"p4.jpg"}
    assert names(tag="nothing-has-this") == set()
    out = search.search(tiny, project="lib", text="holiday", filters={"tag": "city", "year": "2024"})
    assert all(i["why"].endswith("filters: tag=city, 2024") for i in out["items"])
    assert out["filters"]["taken_from"] == "2024-01-01T00:00:00"


def test_search_by_sample_and_by_upload(pets: Studio, tmp_path: Path) -> None:
    run_embedding(pets, "pets")
    out = search.search(pets, project="pets", sample_id=4, k=20)
    ids = [i["sample_id"] for i in out["items"]]
    assert 4 not in ids and len(ids) == 14  # the query itself is left out
    assert out["items"][0]["why"].startswith("similar to sample 4 (")
    assert [i["score"] for i in out["items"]] == sorted((i["score"] for i in out["items"]), reverse=True)
    with pets.sessions() as s:
        row = s.get_one(Sample, 4)
    own = (pets.home / row.path).read_bytes()
    up = search.search(pets, project="pets", image=own, image_name="mine.png", k=3)
    assert up["items"][0]["sample_id"] == 4 and up["items"][0]["score"] > 0.99
    assert "uploaded image 'mine.png'" in up["items"][0]["why"]
    page2 = search.search(pets, project="pets", sample_id=4, k=5, offset=5)
    assert [i["sample_id"] for i in page2["items"]] == ids[5:10]

    # a sample imported after the embedding: not in results yet (pending), but searchable by
    make_class_folders(tmp_path / "more", {"owl": 1}, start_seed=500)
    follow_up = run_import(pets, "pets", tmp_path / "more")["result"]["report"]["embedding"]
    assert set(follow_up) == {"job"}  # the new image is queued for embedding with the same model
    with pets.sessions() as s:
        new_id = s.scalar(select(func.max(Sample.id)))
    fresh = search.search(pets, project="pets", sample_id=new_id, k=50)
    assert (
        fresh["pending"] == 1
        and len(fresh["items"]) == 15
        and new_id not in {i["sample_id"] for i in fresh["items"]}
    )
    assert run_embedding(pets, "pets")["result"]["report"]["embedded"] == 1
    assert search.search(pets, project="pets", text="owl", k=50)["pending"] == 0


def test_samples_hidden_by_a_duplicate_review_are_out_of_search_results(pets: Studio) -> None:
    from vistudio.db.duplicates import HiddenSample

    run_embedding(pets, "pets")
    before = {i["sample_id"] for i in search.search(pets, project="pets", text="a cat", k=50)["items"]}
    assert {3, 7} <= before
    with pets.sessions() as s, s.begin():
        s.add_all([HiddenSample(sample_id=3, project_id=1), HiddenSample(sample_id=7, project_id=1)])
    after = {i["sample_id"] for i in search.search(pets, project="pets", text="a cat", k=50)["items"]}
    assert after == before - {3, 7}
    tagged = search.search(pets, project="pets", text="a cat", k=50, filters={"tag": "cat"})
    assert {i["sample_id"] for i in tagged["items"]}.isdisjoint({3, 7})


def test_a_removal_undone_is_searchable_again_once_re_embedded(pets: Studio) -> None:
    from vistudio.services import duplicates

    run_embedding(pets, "pets")
    groups = duplicates.list_groups(pets, project="pets", level="semantic", threshold=0.8)["items"]
    group = max(groups, key=lambda g: g["size"])  # the tiny untrained model finds look-alikes
    removed = duplicates.decide(pets, project="pets", group=group["id"], action="remove", threshold=0.8)
    gone = set(removed["decision"]["affected"])

    def found() -> set[int]:
        return {i["sample_id"] for i in search.search(pets, project="pets", text="a cat", k=50)["items"]}

    assert gone and not gone & found()
    back = duplicates.undo(pets, project="pets", decision=removed["decision"]["id"])
    assert set(back["restored"]) == gone and "job" in back["embedding"]  # their vectors went with them
    Worker(pets).run_one(job_id=back["embedding"]["job"])
    assert gone <= found()


def test_a_project_without_embeddings_answers_empty_with_the_pending_count(pets: Studio) -> None:
    out = search.search(pets, project="pets", text="a cat")
    assert out["items"] == [] and out["model"] is None and out["pending"] == 15
    assert out["notices"][0]["code"] == "no_embeddings"
    status = embeddings.embedding_status(pets, project="pets")
    assert status["searching"] is None and status["pending"] == 15 and status["sets"] == []


def test_unavailable_weights_refuse_to_start(studio: Studio) -> None:
    projects.create_project(studio, name="p", task="library")
    with pytest.raises(ModelUnavailable) as exc:  # the default model; nothing is cached offline
        embeddings.start_embedding(studio, project="p")
    assert "VISTUDIO_EMBED__MODEL" in exc.value.message
    assert embeddings.embedding_status(studio, project="p")["configured"]["available"] is False
    assert studio.queue.list(kind="embed")[1] == 0  # no job was queued
