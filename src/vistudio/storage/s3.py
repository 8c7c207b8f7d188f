"""Blobs in an S3-compatible bucket, behind the ``BlobFiles`` interface (docs/storage.md).

Objects follow the local layout under the configured prefix: ``<prefix>media/ab/<sha>.jpg``,
``<prefix>thumbs/ab/<sha>-256.webp``, ``<prefix>artifacts/ab/<sha>.onnx``. Every object carries the
sha256 of its bytes in its metadata (``x-amz-meta-sha256``): a multipart upload's ETag is not a
content hash, and a thumbnail's key is its original's hash, not its own.

Atomicity: S3 makes an object visible only once its PUT, or the completion of its multipart upload,
or its server-side copy, has succeeded, so a reader never sees half an object. Bytes whose hash is
known before the upload (``write_bytes``) go straight to their content-addressed key. A file that is
hashed while it is read (``write_file``: a checkpoint, an export) goes to ``<prefix>tmp/<uuid>``
first and is copied to its final key on the server only when the hash is the expected one; the
temporary key is deleted either way. A killed process leaves a temporary key or an unfinished
multipart upload, never a final key: ``gc``/``doctor`` remove those once older than
``stale_upload_seconds`` (so uploads still in flight in another process are left alone).

Reads: code that needs a local file calls ``path()`` as with the local store; the blob is fetched
into a read-through cache that *is* the workspace's own layout (``<home>/media/…``), checked against
its hash before it is renamed into place, and evicted least-recently-used (file mtimes, bumped on each
hit) once the cache passes ``cache_max_bytes`` (0, the default, is unbounded: some readers still
open ``<workspace>/<sample path>`` directly, see docs/storage.md). Writes go through to the cache
as well.

Downloads: browsers get presigned URLs signed for ``public_endpoint_url`` (the address they reach
the store at), while the server talks to ``endpoint_url``.

Keys outside the prefix are never written, listed as ours, or deleted. boto3 is imported lazily: it is
the optional ``s3`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from vistudio.errors import VistudioError
from vistudio.storage.atomic import TMP_PREFIX, atomic_write_bytes
from vistudio.storage.blobs import (
    CHUNK,
    DEFAULT_DIR,
    KIND_DIRS,
    SHA_RE,
    BlobError,
    BlobFiles,
    check_sha,
    sha256_bytes,
    sha256_file,
)

log = logging.getLogger(__name__)

TMP_DIR = "tmp"
DIR_KINDS: dict[str, str | None] = {"media": "original", "thumbs": "thumbnail", DEFAULT_DIR: None}
META_SHA = "sha256"


class BlobStoreUnavailable(VistudioError):
    """The configured object store cannot be used: unreachable, no credentials, no bucket."""

    code = "blob_store_unavailable"
    status = 503


@dataclass(frozen=True)
class S3Config:
    """The S3 settings a store needs (plain data: import pool processes receive it pickled)."""

    url: str  # s3://bucket/prefix
    endpoint_url: str | None = None
    public_endpoint_url: str | None = None  # the host in presigned URLs; None: endpoint_url
    region: str | None = None
    addressing_style: str = "auto"
    presign_seconds: int = 300
    multipart_threshold: int = 64 * 2**20
    multipart_chunksize: int = 64 * 2**20
    cache_max_bytes: int = 0
    stale_upload_seconds: float = 6 * 3600.0
    connect_timeout: float = 5.0
    max_attempts: int = 3


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix/")`` (the prefix may be empty)."""
    parts = urlsplit(url.strip())
    if parts.scheme != "s3" or not parts.netloc:
        raise BlobStoreUnavailable(f"not an S3 URL (expected s3://bucket/prefix): {url[:200]!r}")
    if parts.query or parts.fragment:
        raise BlobStoreUnavailable(f"an S3 URL takes no query or fragment: {url[:200]!r}")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise BlobStoreUnavailable(f"an S3 prefix may not contain '.' or '..' segments: {url[:200]!r}")
    return parts.netloc, "".join(f"{s}/" for s in segments)


class _HashingReader:
    """A read-only, non-seekable stream over ``fh`` that hashes what it hands out and copies it to
    ``tee``. Non-seekable on purpose: s3transfer then reads it once, in order."""

    def __init__(self, fh: BinaryIO, tee: BinaryIO) -> None:
        self.fh, self.tee = fh, tee
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.digest.update(data)
        self.tee.write(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


def _not_found(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


# a copy-mode original's place in the layout: media/ab/<sha>[.ext]
ORIGINAL_RE = re.compile(r"media/(?P<ab>[0-9a-f]{2})/(?P<sha>(?P=ab)[0-9a-f]{62})(?:\.(?P<ext>[A-Za-z0-9]{1,10}))?")


class S3BlobFiles(BlobFiles):
    """``BlobFiles`` on an S3-compatible bucket, with a local read-through cache under ``root``."""

    remote = True

    def __init__(self, root: Path, *, thumb_size: int = 256, config: S3Config) -> None:
        super().__init__(root, thumb_size=thumb_size, stale_seconds=config.stale_upload_seconds)
        self.config = config
        self.bucket, self.prefix = parse_s3_url(config.url)
        self._client: Any = None
        self._presigner: Any = None
        self._added = 0  # bytes put into the cache since its size was last checked

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # a boto3 client is not picklable; each process makes its own
        state["_client"] = state["_presigner"] = None
        return state

    # --- connection ---------------------------------------------------------------------------

    def _make_client(self, endpoint_url: str | None) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - the s3 extra is part of dev installs
            raise BlobStoreUnavailable("an s3:// blob store needs boto3: pip install 'vistudio[s3]'") from exc
        cfg = self.config
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=cfg.region or None,
            config=Config(
                connect_timeout=cfg.connect_timeout,
                read_timeout=60,
                retries={"max_attempts": cfg.max_attempts, "mode": "standard"},
                s3={"addressing_style": cfg.addressing_style},
                signature_version="s3v4",
            ),
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client(self.config.endpoint_url)
        return self._client

    @property
    def presigner(self) -> Any:
        """The client that signs download URLs: for ``public_endpoint_url`` when the browsers reach
        the store at another address than the server does (compose: ``http://s3:9000`` inside,
        ``http://localhost:9000`` outside). Signing makes no request."""
        public = self.config.public_endpoint_url
        if not public or public == self.config.endpoint_url:
            return self.client
        if self._presigner is None:
            self._presigner = self._make_client(public)
        return self._presigner

    @property
    def transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.config.multipart_threshold,
            multipart_chunksize=self.config.multipart_chunksize,
            max_concurrency=4,
        )

    def check(self) -> None:
        """Fail at start, with a message naming the setting to fix, when the bucket is unusable."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"s3://{self.bucket}/{self.prefix}" + (
            f" at {self.config.endpoint_url}" if self.config.endpoint_url else ""
        )
        try:
            self.client.head_bucket(Bucket=self.bucket)
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except NoCredentialsError as exc:
            raise BlobStoreUnavailable(
                f"no AWS credentials for the blob store {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
                details={"setting": "VISTUDIO_BLOB_STORE__URL"},
            ) from exc
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                msg = f"the bucket of the blob store {where} does not exist: create it first"
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                msg = f"access to the blob store {where} was denied ({code}): check the AWS credentials"
            else:
                msg = f"the blob store {where} answered {code}: {exc}"
            raise BlobStoreUnavailable(msg, details={"code": code}) from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(
                f"cannot reach the blob store {where}: {exc} (check VISTUDIO_BLOB_STORE__ENDPOINT_URL)"
            ) from exc

    # --- names --------------------------------------------------------------------------------

    def object_key(self, kind: str, sha: str, ext: str = "") -> str:
        return self.prefix + self.key(kind, sha, ext)

    def location(self, kind: str, sha: str, ext: str = "") -> str:
        return f"s3://{self.bucket}/{self.object_key(kind, sha, ext)}"

    def _parse_location(self, text: str) -> tuple[str, str | None]:
        """``s3://bucket/key[#upload=id]`` → (key, upload id), refusing keys that are not ours."""
        parts = urlsplit(text)
        key = parts.path.lstrip("/")
        upload = parts.fragment.removeprefix("upload=") if parts.fragment.startswith("upload=") else None
        if (
            parts.scheme != "s3"
            or parts.netloc != self.bucket
            or not key.startswith(self.prefix)
            or key == self.prefix
            or any(s in ("", ".", "..") for s in key[len(self.prefix) :].split("/"))
        ):
            raise BlobError(
                f"refusing to delete outside the blob store s3://{self.bucket}/{self.prefix}: {text}"
            )
        return key, upload

    def _local(self, rel: str) -> Path:
        return self.root / rel

    # --- reads --------------------------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise
        return head

    def exists(self, kind: str, sha: str, ext: str | None = "") -> bool:
        if ext is not None:
            return self._head(self.object_key(kind, sha, ext)) is not None
        check_sha(sha)
        base = f"{self.prefix}{KIND_DIRS.get(kind, DEFAULT_DIR)}/{sha[:2]}/{sha}."
        resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=base, MaxKeys=1)
        return bool(resp.get("KeyCount"))

    def size(self, kind: str, sha: str, ext: str = "") -> int:
        head = self._head(self.object_key(kind, sha, ext))
        if head is None:
            raise FileNotFoundError(self.location(kind, sha, ext))
        return int(head["ContentLength"])

    def missing(self, blobs: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """The blobs not in the bucket: one HEAD each, a few at a time (an import batch checks
        hundreds; boto3 clients are thread-safe)."""
        if len(blobs) <= 1:
            return [b for b in blobs if self._head(self.object_key(*b)) is None]
        _ = self.client  # made once, before the threads share it
        with ThreadPoolExecutor(max_workers=min(8, len(blobs))) as pool:
            absent = list(pool.map(lambda b: self._head(self.object_key(*b)) is None, blobs))
        return [b for b, gone in zip(blobs, absent, strict=True) if gone]

    def restore(self, kind: str, sha: str, ext: str = "") -> bool:
        """Upload a blob that vanished from the bucket again from this cache's copy, if the copy
        is intact (its hash is the key; a thumbnail's is recorded as its own)."""
        local = BlobFiles.path(self, kind, sha, ext)
        try:
            digest = sha256_file(local)
        except FileNotFoundError:
            return False
        if kind != "thumbnail" and digest != sha:
            return False
        log.warning("blob %s was collected while referenced again: uploaded again", self.key(kind, sha, ext))
        self.client.upload_file(
            str(local),
            self.bucket,
            self.object_key(kind, sha, ext),
            ExtraArgs={"Metadata": {META_SHA: digest}},
            Config=self.transfer,
        )
        return True

    def path(self, kind: str, sha: str, ext: str = "") -> Path:
        """The blob as a local file, fetched into the cache when it is not there (and verified)."""
        rel = self.key(kind, sha, ext)
        local = self._local(rel)
        if local.is_file():
            with contextlib.suppress(OSError):
                os.utime(local)  # least recently used goes first: a hit counts as a use
            return local
        self._fill(rel, local, expected=None if kind == "thumbnail" else sha)
        return local

    def original(self, rel: str) -> Path:
        """A copy-mode original by its workspace-relative path, fetched into the cache when it is
        not there: a worker on another machine reads the photos it never imported."""
        m = ORIGINAL_RE.fullmatch(rel)
        if m is None:  # not a path of the layout: as it is (its reader reports it missing)
            return self._local(rel)
        return self.path("original", m["sha"], m["ext"] or "")

    def _intact(self, digest: str, *, expected: str | None, meta: str | None, data: bytes | None) -> bool:
        """Content-addressed blobs must hash to their key; a thumbnail (keyed by its original) to
        the hash in its metadata, or, without one, decode as an image."""
        if expected is not None:
            return digest == expected and meta in (None, digest)
        if meta:
            return digest == meta
        if data is None:
            return False
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        except Exception:
            return False
        return True

    def _fill(self, rel: str, local: Path, *, expected: str | None) -> bool:
        """Download ``rel`` into the cache, hash-checked before the rename. False if absent or corrupt."""
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.prefix + rel)
        except ClientError as exc:
            if _not_found(exc):
                return False
            raise
        meta = obj.get("Metadata", {}).get(META_SHA)
        keep = expected is None and not meta  # only an unlabelled thumbnail is checked by decoding
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=local.parent)
        try:
            digest, size, kept = hashlib.sha256(), 0, bytearray()
            with os.fdopen(fd, "wb") as out:
                for chunk in obj["Body"].iter_chunks(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if keep:
                        kept += chunk
                out.flush()
                os.fsync(out.fileno())
            if not self._intact(
                digest.hexdigest(), expected=expected, meta=meta, data=bytes(kept) if keep else None
            ):
                log.warning(
                    "blob %s in s3://%s/%s does not match its hash: not cached", rel, self.bucket, self.prefix
                )
                os.unlink(tmp)
                return False
            os.replace(tmp, local)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._cached(size)
        return True

    def verify_blob(self, kind: str, sha: str, ext: str = "") -> str | None:
        """Re-hash the object as stored (its ETag is no sha256); None, ``missing`` or ``corrupt``."""
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.object_key(kind, sha, ext))
        except ClientError as exc:
            if _not_found(exc):
                return "missing"
            raise
        meta = obj.get("Metadata", {}).get(META_SHA)
        keep = kind == "thumbnail" and not meta
        digest, kept = hashlib.sha256(), bytearray()
        for chunk in obj["Body"].iter_chunks(CHUNK):
            digest.update(chunk)
            if keep:
                kept += chunk
        ok = self._intact(
            digest.hexdigest(),
            expected=None if kind == "thumbnail" else sha,
            meta=meta,
            data=bytes(kept) if keep else None,
        )
        return None if ok else "corrupt"

    def download_url(
        self,
        kind: str,
        sha: str,
        ext: str = "",
        *,
        filename: str | None = None,
        media_type: str | None = None,
    ) -> str | None:
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self.object_key(kind, sha, ext)}
        if media_type:
            params["ResponseContentType"] = media_type
        if filename:
            params["ResponseContentDisposition"] = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        url: str = self.presigner.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.config.presign_seconds
        )
        return url

    # --- writes -------------------------------------------------------------------------------

    def write_bytes(self, kind: str, data: bytes, *, ext: str = "", key: str | None = None) -> str:
        """Store ``data`` at its content-addressed key (hash known before the upload). Idempotent."""
        digest = sha256_bytes(data)
        sha = check_sha(key or digest)
        okey = self.object_key(kind, sha, ext)
        if self._head(okey) is None:
            self.client.upload_fileobj(
                io.BytesIO(data),
                self.bucket,
                okey,
                ExtraArgs={"Metadata": {META_SHA: digest}},
                Config=self.transfer,
            )
        local = BlobFiles.path(self, kind, sha, ext)
        if not local.is_file():
            atomic_write_bytes(local, data)
            self._cached(len(data))
        return sha

    def write_file(self, kind: str, src: Path, *, ext: str = "", expected_sha: str | None = None) -> str:
        """Upload ``src`` under a temporary key, hashing (and caching) while it is read; copy it to its
        content-addressed key on the server only when the hash is the expected one."""
        if expected_sha is not None and self._head(self.object_key(kind, expected_sha, ext)) is not None:
            return expected_sha
        folder = self.folder(kind)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
        tmp_key = f"{self.prefix}{TMP_DIR}/{uuid.uuid4().hex}"
        try:
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as tee:
                reader = _HashingReader(fin, tee)
                self.client.upload_fileobj(reader, self.bucket, tmp_key, Config=self.transfer)
                tee.flush()
                os.fsync(tee.fileno())
            sha = reader.digest.hexdigest()
            if expected_sha is not None and sha != expected_sha:
                raise BlobError(f"{src} changed while it was copied (hash mismatch)")
            final = self.object_key(kind, sha, ext)
            if self._head(final) is None:
                self.client.copy(
                    {"Bucket": self.bucket, "Key": tmp_key},
                    self.bucket,
                    final,
                    ExtraArgs={"Metadata": {META_SHA: sha}, "MetadataDirective": "REPLACE"},
                    Config=self.transfer,
                )
            local = BlobFiles.path(self, kind, sha, ext)
            local.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, local)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        finally:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=tmp_key)
        self._cached(reader.size)
        return sha

    # --- listing, deleting, housekeeping ------------------------------------------------------

    def _age(self, when: datetime) -> float:
        return (datetime.now(UTC) - when).total_seconds()

    def _stale(self, when: datetime) -> bool:
        return self._age(when) >= self.config.stale_upload_seconds

    def _stale_uploads(self) -> Iterator[tuple[str, float]]:
        """Locations and ages of temporary keys and unfinished multipart uploads old enough to be
        abandoned."""
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{TMP_DIR}/"):
            for obj in page.get("Contents", []):
                if self._stale(obj["LastModified"]):
                    yield f"s3://{self.bucket}/{obj['Key']}", self._age(obj["LastModified"])
        marker: dict[str, str] = {}
        while True:
            resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix, **marker)
            for up in resp.get("Uploads", []):
                if self._stale(up["Initiated"]):
                    yield (
                        f"s3://{self.bucket}/{up['Key']}#upload={up['UploadId']}",
                        self._age(up["Initiated"]),
                    )
            if not resp.get("IsTruncated"):
                break
            marker = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}

    def iter_locations(self) -> Iterator[tuple[str | None, str, bool, float]]:
        """Objects of the layout under the prefix, then abandoned uploads (``is_temporary``), each
        with its age (``LastModified``). Keys under the prefix that are not in the layout are not
        ours to judge: they are skipped."""
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                top = obj["Key"][len(self.prefix) :].split("/", 1)[0]
                if top in DIR_KINDS:
                    yield (
                        DIR_KINDS[top],
                        f"s3://{self.bucket}/{obj['Key']}",
                        False,
                        self._age(obj["LastModified"]),
                    )
        for loc, age in self._stale_uploads():
            yield None, loc, True, age

    def iter_files(self) -> Iterator[tuple[str | None, Path]]:
        """Every intact blob of the layout as a local file (fetched into the cache as it is reached)."""
        for kind, loc, temp, _ in self.iter_locations():
            if temp:
                continue
            rel = loc.removeprefix(f"s3://{self.bucket}/{self.prefix}")
            name = rel.rsplit("/", 1)[-1]
            if not SHA_RE.match(name[:64]):
                continue
            local = self._local(rel)
            if local.is_file() or self._fill(rel, local, expected=None if kind == "thumbnail" else name[:64]):
                yield kind, local

    def remove_file(self, path: Path | str) -> None:
        """Delete an object by its ``location`` (or abort an unfinished upload); a local path (an
        export folder, a run) is removed as the local store does, inside the workspace only."""
        text = str(path)
        if not text.startswith("s3://"):
            super().remove_file(Path(path))
            return
        key, upload = self._parse_location(text)
        if upload is not None:
            from botocore.exceptions import ClientError

            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except ClientError as exc:
                if not _not_found(exc):
                    raise
            return
        self.client.delete_object(Bucket=self.bucket, Key=key)
        rel = key[len(self.prefix) :]
        if rel.split("/", 1)[0] in DIR_KINDS:
            self._local(rel).unlink(missing_ok=True)

    def delete_blob(self, kind: str, sha: str, ext: str = "") -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(kind, sha, ext))
        BlobFiles.path(self, kind, sha, ext).unlink(missing_ok=True)

    def delete_blobs(self, blobs: list[tuple[str, str, str]]) -> None:
        """Delete the objects (1000 per request, S3's limit) and their cached copies; raises
        ``BlobError`` if the server refused any, so that ``gc``'s transaction rolls back."""
        for start in range(0, len(blobs), 1000):
            chunk = blobs[start : start + 1000]
            resp = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self.object_key(*b)} for b in chunk], "Quiet": True},
            )
            errors = [e for e in resp.get("Errors", []) if e.get("Code") not in ("NoSuchKey", "404")]
            if errors:
                raise BlobError(
                    f"the blob store refused to delete {len(errors)} object(s): "
                    f"{errors[0].get('Key')} ({errors[0].get('Code')}: {errors[0].get('Message')})"
                )
            for b in chunk:
                BlobFiles.path(self, *b).unlink(missing_ok=True)

    def sweep_stale(self) -> int:
        stale = [loc for loc, _ in self._stale_uploads()]
        for loc in stale:
            self.remove_file(loc)
        return len(stale)

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "s3": asdict(self.config)}

    # --- the cache ----------------------------------------------------------------------------

    def _cached(self, n: int) -> None:
        limit = self.config.cache_max_bytes
        self._added += n
        # the folders are walked when a twentieth of the limit has come in since the last walk
        if limit > 0 and self._added >= max(1, limit // 20):
            self.evict()

    def cache_files(self) -> list[Path]:
        return [p for sub in DIR_KINDS for p in (self.root / sub).rglob("*") if p.is_file()]

    def evict(self) -> int:
        """Delete cached blobs, least recently used first, until the cache is within its limit.
        Returns how many were deleted. Every blob in the cache is also in the bucket."""
        self._added = 0
        limit = self.config.cache_max_bytes
        if limit <= 0:
            return 0
        entries = []
        now = time.time()
        for p in self.cache_files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if p.name.startswith(TMP_PREFIX):
                if now - st.st_mtime > self.config.stale_upload_seconds:
                    p.unlink(missing_ok=True)  # a fill or a write-through killed midway
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total <= limit:
                break
            p.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed
