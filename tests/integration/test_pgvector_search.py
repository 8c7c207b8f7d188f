"""Search with the pgvector backend (VISTUDIO_EMBED__INDEX_BACKEND=pgvector): two servers on one
PostgreSQL share one index — the second finds it built, nothing re-sent —, answers equal an exact
search over the stored vectors, a deleted photo leaves every server's results; the backend on
SQLite is a clear error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, text

from embed_factories import run_embedding, with_embed
from factories import make_class_folders, pgvector_server, run_import
from vistudio.config import Settings
from vistudio.db import Sample
from vistudio.errors import BadRequest
from vistudio.ml.embed.pgvector_index import PgVectorIndex
from vistudio.services import embeddings, projects, search, vector_index
from vistudio.studio import Studio, open_studio

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pgvector_server() as url:
        yield url


def _server(settings: Settings, home: Path, url: str) -> Studio:
    return open_studio(
        with_embed(settings.model_copy(update={"home": home, "database_url": url}), index_backend="pgvector")
    )


def _exact(studio: Studio, sample_id: int, k: int) -> list[int]:
    got = embeddings.project_vectors(studio, 1)
    assert got is not None
    ids, vecs, _ = got
    order = np.argsort(-(vecs @ vecs[np.searchsorted(ids, sample_id)]), kind="stable")
    return [int(i) for i in ids[order] if i != sample_id][:k]  # the photo itself is not a result


def test_two_servers_share_one_pgvector_index(
    pg_url: str, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _server(settings, tmp_path / "a", pg_url)
    b = _server(settings, tmp_path / "b", pg_url)
    try:
        projects.create_project(a, name="pets", task="classification")
        run_import(a, "pets", make_class_folders(tmp_path / "pets", {"cat": 6, "dog": 5, "fox": 4}))
        assert run_embedding(a, "pets")["status"] == "succeeded"
        found = search.search(a, project="pets", sample_id=3, k=5)
        assert [i["sample_id"] for i in found["items"]] == _exact(a, 3, 5)
        assert not list((tmp_path / "a").glob("indexes/**/*.npz"))  # no index file

        # the second server: the table is there, nothing re-sent
        sent: list[int] = []
        original = PgVectorIndex.add
        monkeypatch.setattr(
            PgVectorIndex, "add", lambda self, ids, vecs: (sent.append(len(ids)), original(self, ids, vecs))
        )
        again = search.search(b, project="pets", sample_id=3, k=5)
        assert [i["sample_id"] for i in again["items"]] == [i["sample_id"] for i in found["items"]]
        assert sent == []

        # a photo deleted through the first server leaves the second's results
        with a.sessions.begin() as s:
            s.execute(delete(Sample).where(Sample.id == 4))
        hits = [i["sample_id"] for i in search.search(b, project="pets", sample_id=3, k=15)["items"]]
        assert 4 not in hits and len(hits) == 13  # 15 photos, less the query and the deleted one
        assert [i["sample_id"] for i in search.search(a, project="pets", sample_id=3, k=15)["items"]] == hits

        # deleting the project drops its table
        projects.delete_project(a, "pets")
        with a.engine.connect() as conn:
            assert (
                conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'vectors_p1%'")
                ).scalar()
                == 0
            )
    finally:
        a.close()
        b.close()


def test_pgvector_on_sqlite_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    studio = open_studio(with_embed(settings, index_backend="pgvector"))
    try:
        projects.create_project(studio, name="pets", task="classification")
        run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 2, "dog": 2}))
        job = run_embedding(studio, "pets")
        assert job["status"] in ("failed", "dead")
        with pytest.raises(BadRequest, match="VISTUDIO_DATABASE_URL"):
            vector_index.sync_index(studio, 1, 1)
    finally:
        studio.close()
