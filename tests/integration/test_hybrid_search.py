"""Hybrid search: reciprocal rank fusion of the full-text and CLIP lists over the same filtered set.

On a synthetic corpus where the words (tags, until captions exist) and the vectors disagree —
for each concept, some photos say it only in words, others only in their vectors — the fused
recall@5 is at least the better of the two alone (here it is higher: each finds what the other
misses). Vectors are made by hand into the project's embedding set (no CLIP weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vistudio.db import Sample, SampleTag
from vistudio.db.embeddings import ActiveEmbedding, Embedding, EmbeddingModel, EmbeddingSet
from vistudio.services import hybrid_search, projects, text_index
from vistudio.studio import Studio

CONCEPTS = ["beach", "forest", "snow", "city"]
DIM = 16
FILLER = ["holiday", "family", "weekend", "misc", "export", "phone"]


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = hybrid_search.rrf([[1, 2, 3], [3, 4]], k=60)
    assert [i for i, _ in fused] == [3, 1, 2, 4]  # in both lists first; ties: best rank, then id
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    assert dict(fused)[2] == pytest.approx(1 / 62)
    assert hybrid_search.rrf([[], []]) == []


def _add_samples(studio: Studio, project_id: int, tags: list[list[str]], vectors: np.ndarray) -> list[int]:
    with studio.sessions.begin() as s:
        model = EmbeddingModel(
            name="by-hand", pretrained=None, version="v1", checkpoint=None, dim=DIM, device="cpu"
        )
        s.add(model)
        s.flush()
        ids = []
        for n, (words, vec) in enumerate(zip(tags, vectors, strict=True)):
            row = Sample(
                project_id=project_id,
                sha256=f"{n:064x}",
                name=f"photo-{n:04d}.jpg",
                storage="copy",
                path=f"media/{n}.jpg",
                width=8,
                height=8,
                format="jpeg",
                bytes=1,
                phash="0" * 16,
                exif={},
            )
            s.add(row)
            s.flush()
            ids.append(row.id)
            s.add_all(SampleTag(sample_id=row.id, tag=t) for t in words)
            s.add(
                Embedding(
                    sample_id=row.id,
                    model_id=model.id,
                    project_id=project_id,
                    vector=vec.astype("<f4").tobytes(),
                )
            )
        s.add(
            EmbeddingSet(
                project_id=project_id, model_id=model.id, status="complete", embedded=len(ids), total=len(ids)
            )
        )
        s.add(ActiveEmbedding(project_id=project_id, model_id=model.id))
        text_index.sync(s, ids)
    return ids


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture
def corpus(studio: Studio) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Per concept: 2 photos tagged with its word whose vectors point elsewhere, 3 whose vectors
    point at it but whose tags do not say it, and 40 photos of neither. The relevant photos and
    the photos tagged ``keep``."""
    rng = np.random.default_rng(7)
    basis = np.eye(DIM, dtype=np.float32)
    tags: list[list[str]] = []
    vecs: list[np.ndarray] = []
    relevant: dict[str, list[int]] = {c: [] for c in CONCEPTS}
    for c_i, concept in enumerate(CONCEPTS):
        for _ in range(2):  # the words say it; the vector says another concept, weakly
            other = basis[(c_i + 1) % len(CONCEPTS)] * 0.3 + rng.normal(0, 0.3, DIM)
            relevant[concept].append(len(tags))
            tags.append([concept, str(rng.choice(FILLER))])
            vecs.append(other)
        for _ in range(3):  # the vector says it; the words do not
            relevant[concept].append(len(tags))
            tags.append([str(rng.choice(FILLER))])
            vecs.append(basis[c_i] + rng.normal(0, 0.15, DIM))
    for _ in range(40):
        tags.append([str(rng.choice(FILLER))])
        vecs.append(basis[4 + int(rng.integers(0, DIM - 4))] + rng.normal(0, 0.3, DIM))
    keep = set(range(0, len(tags), 2))
    for i in keep:
        tags[i].append("keep")
    project_id = projects.create_project(studio, name="corpus", task="library")["id"]
    ids = _add_samples(studio, project_id, tags, _unit(np.array(vecs, dtype=np.float32)))
    return (
        {c: {ids[i] for i in rel} for c, rel in relevant.items()},
        {"keep": {ids[i] for i in keep}},
    )


def _alone(studio: Studio, query: str, concept: str, *, k: int = 5) -> tuple[list[int], list[int], list[int]]:
    """The fused top k, and each list's own top k (read from a deep fused page's ranks)."""
    vector = np.eye(DIM, dtype=np.float32)[CONCEPTS.index(concept)]
    deep = hybrid_search.search_query(
        studio, project="corpus", query=query, k=200, vector=vector, reembed=False
    )
    fused = hybrid_search.search_query(
        studio, project="corpus", query=query, k=k, vector=vector, reembed=False
    )
    assert deep["mode"] == fused["mode"] == "hybrid"
    by_text = sorted(
        (i for i in deep["items"] if i["match"]["text_rank"]), key=lambda i: i["match"]["text_rank"]
    )
    by_clip = sorted(
        (i for i in deep["items"] if i["match"]["clip_rank"]), key=lambda i: i["match"]["clip_rank"]
    )
    return (
        [i["sample_id"] for i in fused["items"]],
        [i["sample_id"] for i in by_text[:k]],
        [i["sample_id"] for i in by_clip[:k]],
    )


def test_fused_recall_at_5_is_at_least_the_better_list(
    studio: Studio, corpus: tuple[dict[str, set[int]], dict[str, set[int]]]
) -> None:
    relevant, _ = corpus
    fused_r, text_r, clip_r = [], [], []
    for concept in CONCEPTS:
        fused, by_text, by_clip = _alone(studio, concept, concept)
        rel = relevant[concept]

        def recall(ids: list[int], rel: set[int] = rel) -> float:
            return len(set(ids) & rel) / len(rel)

        assert recall(fused) >= max(recall(by_text), recall(by_clip)), concept
        fused_r.append(recall(fused))
        text_r.append(recall(by_text))
        clip_r.append(recall(by_clip))
    # the words and the vectors disagree: each list alone misses what the other finds
    assert max(np.mean(text_r), np.mean(clip_r)) < 0.7
    assert np.mean(fused_r) > max(np.mean(text_r), np.mean(clip_r))


def test_both_lists_search_only_the_filtered_photos(
    studio: Studio, corpus: tuple[dict[str, set[int]], dict[str, set[int]]]
) -> None:
    relevant, sets = corpus
    vector = np.eye(DIM, dtype=np.float32)[0]
    out = hybrid_search.search_query(
        studio, project="corpus", query="beach tag:keep", k=50, vector=vector, reembed=False
    )
    got = [i["sample_id"] for i in out["items"]]
    assert got and set(got) <= sets["keep"]
    # the true top of the filtered set, not the top filtered afterwards: every kept beach photo
    assert relevant["beach"] & sets["keep"] <= set(got[: len(relevant["beach"] & sets["keep"])] + got)
    top = out["items"][0]["match"]
    assert top["filters"] == ["tag=keep"] and top["rrf"] == out["items"][0]["score"]
    assert any(i["match"]["words"] == {"beach": ["tags"]} for i in out["items"])
    assert all(i["match"]["similarity"] is not None for i in out["items"])


def test_without_embeddings_the_full_text_answers_alone(studio: Studio, tmp_path: Path) -> None:
    project_id = projects.create_project(studio, name="plain", task="library")["id"]
    with studio.sessions.begin() as s:
        rows = [
            Sample(
                project_id=project_id,
                sha256=f"{n:064x}",
                name=f"{w}.jpg",
                storage="copy",
                path=f"m/{n}",
                width=1,
                height=1,
                format="jpeg",
                bytes=1,
                phash="0" * 16,
                exif={},
            )
            for n, w in enumerate(["sunset", "sunrise", "noon"])
        ]
        s.add_all(rows)
        s.flush()
        text_index.sync(s, [r.id for r in rows])
    out = hybrid_search.search_query(studio, project="plain", query="sun*")
    assert out["mode"] == "text" and {i["name"] for i in out["items"]} == {"sunset.jpg", "sunrise.jpg"}
    assert [n["code"] for n in out["notices"]] == ["no_embeddings"]
    assert all(i["match"]["similarity"] is None and i["match"]["text_rank"] for i in out["items"])
