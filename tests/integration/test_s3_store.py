"""Blobs on S3-compatible object storage, against a real server on loopback (moto's standalone
server over HTTP, started by the ``s3_server`` fixture): writes, multipart, verification, the
read-through cache, presigned downloads, gc and doctor, and a whole import served through the API."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from factories import run_import
from vistudio.api.app import create_app
from vistudio.config import BlobStoreSettings, Settings
from vistudio.db import Sample
from vistudio.ingest.pool import probe_task
from vistudio.jobs.worker import Worker
from vistudio.services import dataset_export, faces, projects
from vistudio.services.doctor import run_doctor
from vistudio.storage.artifacts import S3ArtifactStore
from vistudio.storage.blobs import BlobError, BlobVanished, blob_files_from_spec, sha256_file
from vistudio.storage.s3 import BlobStoreUnavailable, S3BlobFiles, S3Config, parse_s3_url
from vistudio.studio import Studio, open_studio

MiB = 2**20


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_server: str) -> str:
    name = f"vs-{uuid.uuid4().hex[:12]}"
    _client(s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(s3_server: str) -> Any:
    return _client(s3_server)


def _store(root: Path, endpoint: str, bucket: str, **kw: Any) -> S3BlobFiles:
    store = S3BlobFiles(root, config=S3Config(url=f"s3://{bucket}/ws1", endpoint_url=endpoint, **kw))
    store.check()
    return store


def _png(seed: int, size: int = 48) -> bytes:
    im = Image.new("RGB", (size, size), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256))
    im.putpixel((seed % size, 0), (255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _backdate(bucket: str, key: str, seconds: float) -> None:
    """Make an object on moto's server look written ``seconds`` ago (S3 has no call to set its
    LastModified; moto's server runs in this process)."""
    from moto.s3.models import s3_backends

    for regions in s3_backends.values():
        for backend in regions.values():
            found = backend.buckets.get(bucket)
            if found is not None:
                obj = found.keys[key]
                obj.last_modified = obj.last_modified - timedelta(seconds=seconds)
                return
    raise AssertionError(f"no bucket {bucket} on moto's server")


def _keys(s3: Any, bucket: str, prefix: str = "") -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


# --- the store alone ---------------------------------------------------------------------------


def test_write_read_round_trip_is_hash_checked(tmp_path: Path, s3_server: str, bucket: str, s3: Any) -> None:
    store = _store(tmp_path / "ws", s3_server, bucket)
    data = b"checkpoint bytes " * 1000
    sha = store.write_bytes("checkpoint", data, ext="pt")
    assert sha == hashlib.sha256(data).hexdigest()
    key = f"ws1/artifacts/{sha[:2]}/{sha}.pt"
    assert _keys(s3, bucket) == {key}
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["sha256"] == sha and head["ContentLength"] == len(data)
    assert store.location("checkpoint", sha, "pt") == f"s3://{bucket}/{key}"
    assert store.verify_blob("checkpoint", sha, "pt") is None
    assert store.exists("checkpoint", sha, "pt") and store.size("checkpoint", sha, "pt") == len(data)
    # written through to the cache; dropped from it, ``path`` fetches it again
    local = store.path("checkpoint", sha, "pt")
    assert local.read_bytes() == data and local.is_relative_to(tmp_path / "ws")
    local.unlink()
    assert store.path("checkpoint", sha, "pt").read_bytes() == data
    # idempotent: a second write uploads nothing new
    assert store.write_bytes("checkpoint", data, ext="pt") == sha
    assert _keys(s3, bucket) == {key}
    # a missing blob: a path that does not exist, and ``missing`` on verify
    absent = "0" * 64
    assert not store.path("checkpoint", absent, "pt").exists()
    assert store.verify_blob("checkpoint", absent, "pt") == "missing"
    # a thumbnail is keyed by its original's hash and checked against the hash in its metadata
    thumb = _png(1)
    assert store.write_bytes("thumbnail", thumb, key=sha) == sha
    thead = s3.head_object(Bucket=bucket, Key=f"ws1/thumbs/{sha[:2]}/{sha}-256.webp")
    assert thead["Metadata"]["sha256"] == hashlib.sha256(thumb).hexdigest()
    assert store.verify_blob("thumbnail", sha) is None


def test_multipart_uploads_are_verified(tmp_path: Path, s3_server: str, bucket: str, s3: Any) -> None:
    store = _store(
        tmp_path / "ws", s3_server, bucket, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB
    )
    big = os.urandom(11 * MiB + 123)  # three parts
    src = tmp_path / "model.onnx"
    src.write_bytes(big)
    sha = store.write_file("export", src, ext="onnx")
    assert sha == hashlib.sha256(big).hexdigest()
    key = f"ws1/artifacts/{sha[:2]}/{sha}.onnx"
    head = s3.head_object(Bucket=bucket, Key=key)
    # a multipart object's ETag is "<md5 of the parts' md5s>-<parts>": no content hash, hence the metadata
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
    assert head["Metadata"]["sha256"] == sha
    assert _keys(s3, bucket) == {key}  # the temporary key is gone
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert store.verify_blob("export", sha, "onnx") is None
    store.path("export", sha, "onnx").unlink()
    assert hashlib.sha256(store.path("export", sha, "onnx").read_bytes()).hexdigest() == sha
    # bytes above the threshold go straight to their key, in parts too
    more = os.urandom(6 * MiB)
    sha2 = store.write_bytes("checkpoint", more)
    h2 = s3.head_object(Bucket=bucket, Key=f"ws1/artifacts/{sha2[:2]}/{sha2}")
    assert h2["ETag"].strip('"').endswith("-2") and h2["Metadata"]["sha256"] == sha2
    assert store.verify_blob("checkpoint", sha2) is None
    # a file that does not hash to what the caller expected is refused, and leaves no key behind
    with pytest.raises(BlobError, match="hash mismatch"):
        store.write_file("export", src, ext="onnx", expected_sha="1" * 64)
    assert _keys(s3, bucket) == {key, f"ws1/artifacts/{sha2[:2]}/{sha2}"}


def test_corrupted_object_is_detected_and_never_cached(
    tmp_path: Path, s3_server: str, bucket: str, s3: Any, studio: Studio
) -> None:
    store = S3ArtifactStore(
        tmp_path / "ws", config=S3Config(url=f"s3://{bucket}/ws1", endpoint_url=s3_server)
    )
    good = store.write_bytes("checkpoint", b"good")
    bad = store.write_bytes("checkpoint", b"bad")
    thumb_key = store.write_bytes("thumbnail", _png(2), key=good)
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", good, size=4)
        store.acquire(s, "checkpoint", bad, size=3)
        store.acquire(s, "thumbnail", thumb_key, size=1)
    # tampered behind the store's back: one with its metadata kept, one replaced wholesale
    s3.put_object(
        Bucket=bucket, Key=f"ws1/artifacts/{bad[:2]}/{bad}", Body=b"tampered", Metadata={"sha256": bad}
    )
    s3.put_object(Bucket=bucket, Key=f"ws1/thumbs/{good[:2]}/{good}-256.webp", Body=b"not an image")
    assert store.verify_blob("checkpoint", bad) == "corrupt"
    assert store.verify_blob("thumbnail", good) == "corrupt"
    with studio.sessions() as s:
        problems = {(p.problem, p.kind, p.sha256) for p in store.scan(s)}
    assert problems == {("corrupt", "checkpoint", bad), ("corrupt", "thumbnail", good)}
    # the cache never takes bytes that fail their hash
    for p in (store.path("checkpoint", bad), store.path("thumbnail", good)):
        p.unlink(missing_ok=True)
    assert not store.path("checkpoint", bad).exists()
    assert not store.path("thumbnail", good).exists()
    assert not list((tmp_path / "ws").rglob(".tmp-*"))
    assert store.path("checkpoint", good).read_bytes() == b"good"


def test_interrupted_upload_leaves_no_final_key_and_gc_cleans_it(
    tmp_path: Path, s3_server: str, bucket: str, s3: Any, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = S3Config(
        url=f"s3://{bucket}/ws1",
        endpoint_url=s3_server,
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
        stale_upload_seconds=3600,
    )
    store = S3ArtifactStore(tmp_path / "ws", config=cfg)
    src = tmp_path / "ckpt.pt"
    src.write_bytes(os.urandom(12 * MiB))

    from vistudio.storage import s3 as s3mod

    real_read = s3mod._HashingReader.read

    def dying_read(self: Any, n: int = -1) -> bytes:
        if self.size >= 6 * MiB:
            raise OSError("the drive went away")  # the upload dies half-way
        return real_read(self, n)

    monkeypatch.setattr(s3mod._HashingReader, "read", dying_read)
    with pytest.raises(OSError, match="the drive went away"):
        store.write_file("checkpoint", src, ext="pt")
    monkeypatch.undo()
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert not store.exists("checkpoint", sha, "pt")
    assert not [k for k in _keys(s3, bucket) if "/artifacts/" in k]
    assert not list((tmp_path / "ws").rglob(".tmp-*"))  # nor a partial file in the cache

    # a process killed outright leaves what a kill leaves: a temporary key, an unfinished upload
    s3.put_object(Bucket=bucket, Key="ws1/tmp/killed", Body=b"half")
    up = s3.create_multipart_upload(Bucket=bucket, Key="ws1/tmp/killed-big")
    s3.upload_part(
        Bucket=bucket, Key="ws1/tmp/killed-big", UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 100
    )
    with studio.sessions() as s:
        young = {p.path for p in store.scan(s) if p.problem == "temp"}
    # a young temporary key may belong to an upload still running: left alone. (moto dates every
    # multipart upload 2010-11-10, so on it the unfinished upload always counts as stale.)
    assert f"s3://{bucket}/ws1/tmp/killed" not in young
    stale = S3ArtifactStore(tmp_path / "ws", config=S3Config(**{**cfg.__dict__, "stale_upload_seconds": 0}))
    with studio.sessions() as s:
        temps = {p.path for p in stale.scan(s) if p.problem == "temp"}
    assert f"s3://{bucket}/ws1/tmp/killed" in temps
    assert any(t.startswith(f"s3://{bucket}/ws1/tmp/killed-big#upload=") for t in temps)
    with studio.sessions.begin() as s:
        stale.gc(s)
    assert not _keys(s3, bucket, "ws1/tmp/")
    assert not s3.list_multipart_uploads(Bucket=bucket, Prefix="ws1/").get("Uploads")
    with studio.sessions() as s:
        assert stale.scan(s) == []
    # then the same file uploads whole
    assert store.write_file("checkpoint", src, ext="pt") == sha
    assert store.verify_blob("checkpoint", sha, "pt") is None


def test_gc_deletes_unreferenced_blobs_only(
    tmp_path: Path, s3_server: str, bucket: str, s3: Any, studio: Studio
) -> None:
    store = S3ArtifactStore(
        tmp_path / "ws", config=S3Config(url=f"s3://{bucket}/ws1", endpoint_url=s3_server)
    )
    keep = store.write_bytes("checkpoint", b"keep")
    drop = store.write_bytes("checkpoint", b"drop")
    with studio.sessions.begin() as s:
        store.acquire(s, "checkpoint", keep, size=4)
        store.acquire(s, "checkpoint", drop, size=4, n=2)
        store.release(s, "checkpoint", drop)
        assert store.gc(s) == 0  # one reference left
        store.release(s, "checkpoint", drop)
        assert store.gc(s) == 1
    assert store.exists("checkpoint", keep) and not store.exists("checkpoint", drop)
    assert not store.path("checkpoint", drop).exists()  # the cached copy went too
    assert store.path("checkpoint", keep).read_bytes() == b"keep"


def _await_gc(store: S3ArtifactStore, studio: Studio, data: bytes) -> str:
    """A blob written, referenced and released: its row has ref_count 0 and awaits gc."""
    sha = store.write_bytes("original", data, ext="jpg")
    with studio.sessions.begin() as s:
        store.acquire(s, "original", sha, size=len(data), ext="jpg")
    with studio.sessions.begin() as s:
        store.release(s, "original", sha)
    return sha


def test_gc_racing_a_worker_that_references_the_blob_again(
    tmp_path: Path, s3_server: str, bucket: str, s3: Any, studio: Studio
) -> None:
    """The worker finds the object (HEAD) and uploads nothing; the server's gc deletes it; the
    worker's reference then must not point at a missing object."""
    cfg = S3Config(url=f"s3://{bucket}/ws1", endpoint_url=s3_server)
    server = S3ArtifactStore(tmp_path / "server", config=cfg)
    worker = S3ArtifactStore(tmp_path / "worker", config=cfg)  # another machine, its own cache
    data = b"a photo deleted from one project, imported into another"
    sha = _await_gc(server, studio, data)
    key = f"ws1/media/{sha[:2]}/{sha}.jpg"
    assert worker.write_bytes("original", data, ext="jpg") == sha  # found: nothing uploaded
    with studio.sessions.begin() as s:
        assert server.gc(s) == 1
    assert key not in _keys(s3, bucket)
    # the worker's batch commits its reference: the object is put back from the worker's cache
    with studio.sessions.begin() as s:
        worker.acquire_many(s, [("original", sha, len(data), "jpg")])
    assert key in _keys(s3, bucket)
    assert server.verify_blob("original", sha, "jpg") is None
    with studio.sessions() as s:
        assert server.scan(s) == []

    # processes sharing one workspace volume share the cache, which gc empties too: nothing to put
    # back, so the batch fails and rolls back, and the job's retry uploads the photo again
    with studio.sessions.begin() as s:
        server.release(s, "original", sha)
    shared = S3ArtifactStore(tmp_path / "server", config=cfg)
    assert shared.write_bytes("original", data, ext="jpg") == sha
    with studio.sessions.begin() as s:
        assert server.gc(s) == 1
    with pytest.raises(BlobVanished), studio.sessions.begin() as s:
        shared.acquire_many(s, [("original", sha, len(data), "jpg")])
    with studio.sessions() as s:
        assert server.scan(s) == []  # no row left pointing at the missing object
    shared.write_bytes("original", data, ext="jpg")
    with studio.sessions.begin() as s:
        shared.acquire(s, "original", sha, size=len(data), ext="jpg")
    assert server.verify_blob("original", sha, "jpg") is None


def test_doctor_leaves_young_orphans_alone(s3_studio: Studio, bucket: str, s3: Any) -> None:
    """An import uploads its blobs before its batch commits their rows: a key no row names yet is a
    photo in flight until it is older than stale_upload_seconds, and doctor --fix must keep it."""
    studio = s3_studio
    fresh, old = "e" * 64, "f" * 64
    s3.put_object(Bucket=bucket, Key=f"lib/media/ee/{fresh}.jpg", Body=b"a photo in flight")
    s3.put_object(Bucket=bucket, Key=f"lib/media/ff/{old}.jpg", Body=b"left by a crash")
    _backdate(bucket, f"lib/media/ff/{old}.jpg", 6 * 3600 + 60)
    report = run_doctor(studio)
    assert [(p["kind"], p["sha256"]) for p in report["problems"]] == [("blob_orphan", old)]
    run_doctor(studio, fix=True)
    assert _keys(s3, bucket, "lib/media/") == {f"lib/media/ee/{fresh}.jpg"}


def test_read_through_cache_fills_verifies_and_evicts_lru(
    tmp_path: Path, s3_server: str, bucket: str
) -> None:
    home = tmp_path / "ws"
    writer = _store(home / "elsewhere", s3_server, bucket)  # another machine: this cache starts empty
    blobs = [os.urandom(40_000) for _ in range(5)]
    shas = [writer.write_bytes("checkpoint", b) for b in blobs]
    reader = _store(home, s3_server, bucket, cache_max_bytes=100_000)
    assert reader.cache_files() == []
    for i, sha in enumerate(shas[:2]):
        assert reader.path("checkpoint", sha).read_bytes() == blobs[i]
        time.sleep(0.02)  # distinct mtimes
    # a hit counts as a use: blob 0 becomes the most recent
    reader.path("checkpoint", shas[0])
    time.sleep(0.02)
    assert reader.path("checkpoint", shas[2]).read_bytes() == blobs[2]  # 120 kB > 100 kB: evict
    cached = {p.name for p in reader.cache_files()}
    assert cached == {shas[0], shas[2]}, "the least recently used blob (1) goes first"
    assert sum(p.stat().st_size for p in reader.cache_files()) <= 100_000
    # evicted blobs come back on demand
    assert reader.path("checkpoint", shas[1]).read_bytes() == blobs[1]


def test_presigned_download_over_http_has_a_short_expiry(tmp_path: Path, s3_server: str, bucket: str) -> None:
    store = _store(tmp_path / "ws", s3_server, bucket, presign_seconds=2)
    data = _png(3)
    sha = store.write_bytes("original", data, ext="png")
    url = store.download_url("original", sha, "png", filename="photo one.png", media_type="image/png")
    assert url is not None and url.startswith(f"{s3_server}/{bucket}/ws1/media/")
    assert "X-Amz-Expires=2" in url
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == data
    assert resp.headers["content-type"] == "image/png"
    assert "photo%20one.png" in resp.headers["content-disposition"]
    # signed now, valid for presign_seconds (moto does not enforce expiry, so only the URL is checked)
    query = dict(httpx.URL(url).params)
    signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed).total_seconds()) < 60
    assert query["X-Amz-Expires"] == "2"
    # the default lifetime is short too: minutes, not days
    default = _store(tmp_path / "ws", s3_server, bucket).download_url("original", sha, "png")
    assert default is not None and dict(httpx.URL(default).params)["X-Amz-Expires"] == "300"


def test_presigned_urls_name_the_endpoint_browsers_reach(
    settings: Settings, tmp_path: Path, s3_server: str, bucket: str
) -> None:
    """compose.yaml: the server talks to http://s3:9000, browsers to http://localhost:9000. Here
    both names reach moto: 127.0.0.1 for the server, localhost for the browser."""
    port = httpx.URL(s3_server).port
    public = f"http://localhost:{port}"
    studio = open_studio(
        settings.model_copy(
            update={
                "blob_store": BlobStoreSettings(
                    url=f"s3://{bucket}/pub", endpoint_url=s3_server, public_endpoint_url=public
                )
            }
        )
    )
    try:
        store = studio.store
        assert isinstance(store, S3BlobFiles)
        data = _png(5)
        sha = store.write_bytes("original", data, ext="png")
        assert store.client.meta.endpoint_url == s3_server  # the server's own requests
        url = store.download_url("original", sha, "png", media_type="image/png")
        assert url is not None and httpx.URL(url).netloc.decode() == f"localhost:{port}"
        got = httpx.get(url)  # signed for the host the browser sends
        assert got.status_code == 200 and got.content == data
    finally:
        studio.close()
    # unset, the URLs name the endpoint itself; and the cache is unbounded by default
    plain = _store(tmp_path / "ws", s3_server, bucket)
    url = plain.download_url("original", sha, "png")
    assert url is not None and url.startswith(f"{s3_server}/")
    assert BlobStoreSettings().cache_max_bytes == 0 and plain.config.cache_max_bytes == 0


def test_keys_outside_the_prefix_are_never_touched(
    tmp_path: Path, s3_server: str, bucket: str, s3: Any, studio: Studio
) -> None:
    foreign = {"ws10/artifacts/ab/x", "other/file", "ws1", "ws1-sibling/thumbs/x", "readme.txt"}
    for k in foreign:
        s3.put_object(Bucket=bucket, Key=k, Body=b"not vistudio's")
    s3.put_object(Bucket=bucket, Key="ws1/notes/keep.txt", Body=b"in the prefix, not in the layout")
    store = S3ArtifactStore(
        tmp_path / "ws",
        config=S3Config(url=f"s3://{bucket}/ws1", endpoint_url=s3_server, stale_upload_seconds=0),
    )
    orphan = store.write_bytes("checkpoint", b"orphan")
    with studio.sessions() as s:
        problems = store.scan(s)
    assert [(p.problem, p.sha256) for p in problems] == [("orphan", orphan)]
    for p in problems:
        store.remove_file(p.path)
    with studio.sessions.begin() as s:
        store.gc(s)
    assert _keys(s3, bucket) == foreign | {"ws1/notes/keep.txt"}
    for bad in (
        f"s3://{bucket}/other/file",
        f"s3://{bucket}/ws10/artifacts/ab/x",
        f"s3://{bucket}/ws1/../other/file",
        f"s3://{bucket}/ws1/",
        "s3://another-bucket/ws1/artifacts/ab/x",
    ):
        with pytest.raises(BlobError, match="outside"):
            store.remove_file(bad)
    assert _keys(s3, bucket) == foreign | {"ws1/notes/keep.txt"}
    # local paths still follow the local rule: inside the workspace only
    with pytest.raises(BlobError, match="outside"):
        store.remove_file(tmp_path / "elsewhere.txt")


def test_s3_urls_are_parsed_strictly() -> None:
    assert parse_s3_url("s3://b/a/b/") == ("b", "a/b/")
    assert parse_s3_url("s3://b") == ("b", "")
    for bad in ("http://b/x", "s3:///x", "s3://b/../x", "s3://b/x?y=1"):
        with pytest.raises(BlobStoreUnavailable):
            parse_s3_url(bad)


def test_pool_processes_open_the_same_store_from_its_spec(
    tmp_path: Path, s3_server: str, bucket: str, s3: Any
) -> None:
    store = _store(tmp_path / "ws", s3_server, bucket)
    spec = store.spec()
    import pickle

    again = blob_files_from_spec(pickle.loads(pickle.dumps(spec)))
    assert isinstance(again, S3BlobFiles) and again.location("original", "a" * 64, "jpg") == store.location(
        "original", "a" * 64, "jpg"
    )
    img = tmp_path / "one.png"
    img.write_bytes(_png(4))
    res = probe_task((str(img), "copy", str(tmp_path / "ws"), 256, spec))
    assert res["status"] == "ok"
    sha = res["probe"]["sha256"]
    assert _keys(s3, bucket) == {f"ws1/media/{sha[:2]}/{sha}.png", f"ws1/thumbs/{sha[:2]}/{sha}-256.webp"}
    assert pickle.loads(pickle.dumps(store))._client is None  # a client never travels


# --- a workspace on S3 -------------------------------------------------------------------------


@pytest.fixture
def s3_studio(settings: Settings, s3_server: str, bucket: str) -> Iterator[Studio]:
    s = open_studio(
        settings.model_copy(
            update={"blob_store": BlobStoreSettings(url=f"s3://{bucket}/lib", endpoint_url=s3_server)}
        )
    )
    yield s
    s.close()


def test_import_serve_and_doctor_with_blobs_on_s3(
    s3_studio: Studio, class_folders: Path, bucket: str, s3: Any
) -> None:
    studio = s3_studio
    assert studio.store.remote
    projects.create_project(studio, name="pets", task="classification")
    job = run_import(studio, "pets", class_folders)
    assert job["status"] == "succeeded", job
    report = job["result"]["report"]
    assert report["imported"] == 15
    keys = _keys(s3, bucket, "lib/")
    assert len([k for k in keys if k.startswith("lib/media/")]) == 15
    assert len([k for k in keys if k.startswith("lib/thumbs/")]) == 15
    assert run_doctor(studio)["ok"], run_doctor(studio)["problems"]

    # served through the API: a redirect to a short-lived URL, followed over HTTP
    with TestClient(create_app(studio)) as client:
        items = client.get("/api/v1/samples", params={"project": "pets", "limit": 3}).json()["items"]
        assert len(items) == 3
        for item in items:
            sha = item["sha256"]
            for what, key_prefix in (("thumbnail", "lib/thumbs/"), ("original", "lib/media/")):
                resp = client.get(f"/api/v1/samples/{item['id']}/{what}", follow_redirects=False)
                assert resp.status_code == 307, resp.text
                location = resp.headers["location"]
                assert f"/{bucket}/{key_prefix}{sha[:2]}/{sha}" in location
                got = httpx.get(location)
                assert got.status_code == 200
                key = next(k for k in keys if k.startswith(f"{key_prefix}{sha[:2]}/{sha}"))
                assert got.content == s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                if what == "original":
                    assert hashlib.sha256(got.content).hexdigest() == sha
                    assert got.headers["content-type"].startswith("image/")
        assert client.get("/api/v1/samples/999999/thumbnail", follow_redirects=False).status_code == 404

    # a re-import finds everything in the bucket and adds nothing
    again = run_import(studio, "pets", class_folders)["result"]["report"]
    assert again["imported"] == 0
    # the cache can go at any time: reads fetch again (duplicates, thumbnails, originals)
    for sub in ("media", "thumbs"):
        for p in (studio.home / sub).rglob("*"):
            if p.is_file():
                p.unlink()
    first = items[0]
    assert studio.store.path("thumbnail", first["sha256"]).is_file()
    assert run_doctor(studio)["ok"]

    # doctor finds a corrupt object and an orphan key, and fixes both
    s3.put_object(
        Bucket=bucket, Key=f"lib/thumbs/{first['sha256'][:2]}/{first['sha256']}-256.webp", Body=b"junk"
    )
    orphan = "f" * 64
    s3.put_object(Bucket=bucket, Key=f"lib/artifacts/ff/{orphan}", Body=b"orphan")
    _backdate(bucket, f"lib/artifacts/ff/{orphan}", 7 * 3600)  # older than stale_upload_seconds
    kinds = {p["kind"] for p in run_doctor(studio)["problems"]}
    assert {"blob_corrupt", "blob_orphan"} <= kinds
    fixed = run_doctor(studio, fix=True)
    assert fixed["fixed"]
    assert f"lib/artifacts/ff/{orphan}" not in _keys(s3, bucket)
    # the corrupt thumbnail is dropped; a re-import writes it again and the workspace is clean
    run_import(studio, "pets", class_folders)
    assert run_doctor(studio)["ok"], run_doctor(studio)["problems"]


def test_startup_fails_plainly_on_a_bad_endpoint_bucket_or_credentials(
    settings: Settings, s3_server: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]

    def start(**blob: Any) -> None:
        s = open_studio(settings.model_copy(update={"blob_store": BlobStoreSettings(**blob)}))
        s.close()

    t0 = time.monotonic()
    with pytest.raises(BlobStoreUnavailable, match="cannot reach the blob store"):
        start(url=f"s3://{bucket}/x", endpoint_url=f"http://127.0.0.1:{dead}", max_attempts=1)
    assert time.monotonic() - t0 < 30
    with pytest.raises(BlobStoreUnavailable, match="does not exist"):
        start(url="s3://no-such-bucket-here/x", endpoint_url=s3_server)
    with pytest.raises(BlobStoreUnavailable, match="not an S3 URL"):
        start(url="https://example.com/bucket", endpoint_url=s3_server)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(settings.home / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(settings.home / "none"))
    with pytest.raises(BlobStoreUnavailable, match="no AWS credentials") as info:
        start(url=f"s3://{bucket}/x", endpoint_url=s3_server)
    assert info.value.to_dict()["error"]["code"] == "blob_store_unavailable"
    # nothing was created in the workspace's database before the check
    assert not (settings.home / "vistudio.db").exists()


@pytest.mark.slow
def test_pool_import_writes_to_the_bucket(
    settings: Settings, s3_server: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    """Enough images for the import pool (spawned processes open the store from its spec)."""
    from factories import make_class_folders
    from vistudio.config import ImportSettings

    src = make_class_folders(tmp_path / "many", {"a": 20, "b": 20})
    cfg = settings.model_copy(
        update={
            "imports": ImportSettings(workers=2, batch_size=16),
            "blob_store": BlobStoreSettings(url=f"s3://{bucket}/pool", endpoint_url=s3_server),
        }
    )
    studio = open_studio(cfg)
    try:
        projects.create_project(studio, name="many", task="classification")
        job = run_import(studio, "many", src)
        assert job["status"] == "succeeded", job
        assert job["result"]["report"]["imported"] == 40
        keys = _keys(s3, bucket, "pool/")
        assert len([k for k in keys if k.startswith("pool/media/")]) == 40
        assert len([k for k in keys if k.startswith("pool/thumbs/")]) == 40
        assert run_doctor(studio)["ok"]
    finally:
        studio.close()


def test_cli_reports_an_unusable_blob_store_as_a_plain_error(tmp_path: Path, s3_server: str) -> None:
    import subprocess
    import sys

    env = {
        **os.environ,
        "VISTUDIO_HOME": str(tmp_path / "ws"),
        "VISTUDIO_BLOB_STORE__URL": "s3://no-such-bucket-here/ws",
        "VISTUDIO_BLOB_STORE__ENDPOINT_URL": s3_server,
    }
    out = subprocess.run(
        [sys.executable, "-m", "vistudio.cli.main", "--json", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    error = json.loads(out.stdout)["error"]
    assert error["code"] == "blob_store_unavailable"
    assert "does not exist" in error["message"] and "Traceback" not in out.stderr


@pytest.mark.slow
def test_benchmark_runs_at_toy_size() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    args = ["--small", "5", "--small-kb", "4", "--large", "1", "--large-mb", "6", "--part-mb", "5"]
    out = subprocess.run(
        [sys.executable, "benchmarks/s3_store.py", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert set(result["results"]) == {"small_write", "large_write", "cold_read", "warm_read"}
    assert all(r["ratio"] > 0 for r in result["results"].values())


def test_another_machine_reads_originals_it_never_imported(
    s3_studio: Studio, class_folders: Path, settings: Settings, s3_server: str, bucket: str, tmp_path: Path
) -> None:
    """A worker with its own workspace folder (another machine) on the same database and bucket:
    the originals come into its cache when a job reads them, hash-checked."""
    projects.create_project(s3_studio, name="pets", task="classification")
    assert run_import(s3_studio, "pets", class_folders)["status"] == "succeeded"
    other = open_studio(
        settings.model_copy(
            update={
                "home": tmp_path / "elsewhere",
                "database_url": s3_studio.settings.db_url,
                "blob_store": BlobStoreSettings(url=f"s3://{bucket}/lib", endpoint_url=s3_server),
            }
        )
    )
    try:
        with other.sessions() as s:
            rows = s.execute(select(Sample.storage, Sample.path, Sample.sha256)).all()
        assert rows and not [f for f in (tmp_path / "elsewhere" / "media").rglob("*") if f.is_file()]
        for storage, path, sha in rows:
            got = other.photo_file(storage, path)
            assert got.is_file() and sha256_file(got) == sha
        assert (
            other.photo_file("copy", "media/zz/not-a-blob.jpg")
            == tmp_path / "elsewhere" / "media/zz/not-a-blob.jpg"
        )
        # a job there reads every photo (none unreadable)
        shutil.rmtree(tmp_path / "elsewhere" / "media")
        (tmp_path / "elsewhere" / "media").mkdir()
        job = faces.start_faces(other, project="pets")
        Worker(other).run_one(job_id=job["id"])
        done = other.queue.get(job["id"])
        assert done.status == "succeeded", done.error
        assert done.result["report"]["photos"] == 15 and done.result["report"]["failed"] == []
        # a dataset export there too: every file fetched and written, none missing
        shutil.rmtree(tmp_path / "elsewhere" / "media")
        out = tmp_path / "exported"
        job = dataset_export.start_dataset_export(other, project="pets", format="folders", out=out)
        Worker(other).run_one(job_id=job["id"])
        done = other.queue.get(job["id"])
        assert done.status == "succeeded", done.error
        assert done.result["export"]["samples"] == 15 and done.result["export"]["failed"] == []
        written = sorted(sha256_file(f) for f in out.rglob("*") if f.suffix in (".png", ".jpg"))
        assert written == sorted(sha for _, _, sha in rows)
    finally:
        other.close()
