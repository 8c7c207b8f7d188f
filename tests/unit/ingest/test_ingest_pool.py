from __future__ import annotations

from pathlib import Path

import pytest
from ingest_factories import write_image

from vistudio.ingest import pool
from vistudio.storage.blobs import BlobFiles


def test_probe_and_store_refuses_a_file_too_large_to_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = write_image(tmp_path / "a.png")
    store = BlobFiles(tmp_path / "ws")
    ok = pool.probe_and_store(image, mode="copy", store=store, known=frozenset())
    assert ok["status"] == "ok"
    # A file named like an image is read into memory whole; a huge one must be refused first.
    monkeypatch.setattr(pool, "MAX_IMAGE_BYTES", image.stat().st_size - 1)
    result = pool.probe_and_store(image, mode="copy", store=store, known=frozenset())
    assert result["status"] == "error"
    assert result["reason"].startswith("file too large")
