"""S3 blob store benchmark: write and read throughput on an S3-compatible server on loopback.

The server is moto's standalone server (``moto.server.ThreadedMotoServer``, real HTTP on
127.0.0.1), started here. The baseline, in the same run, is the local store (``BlobFiles`` on the
workspace folders). Four measurements, each for both stores, with ``ratio`` = S3 / local time
(> 1: the S3 store is that many times slower):

- ``small_write``: ``--small`` blobs of ``--small-kb`` KiB through ``write_bytes`` (thumbnails,
  originals of an import: a HEAD and a PUT each on S3);
- ``large_write``: ``--large`` files of ``--large-mb`` MiB through ``write_file`` (checkpoints,
  exports: streamed, hashed, multipart above ``--part-mb``, then copied to the final key);
- ``cold_read``: every blob read through ``path()`` with the cache emptied first (GET, hash check,
  rename into the cache) — the local store just reads the file;
- ``warm_read``: the same again, from the cache.

moto keeps objects in the server's memory and answers from Python: absolute numbers say little
about a real S3 or MinIO; the cost the store adds per operation (round trips, hashing, the temp key
and copy of ``write_file``) is what this shows.

    .venv/bin/python benchmarks/s3_store.py [--small 200] [--small-kb 64] [--large 3]
        [--large-mb 24] [--part-mb 8] [--out FILE]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vistudio.storage.blobs import BlobFiles
from vistudio.storage.s3 import S3BlobFiles, S3Config

MiB = 2**20


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _clear_cache(root: Path) -> None:
    for sub in ("media", "thumbs", "artifacts"):
        shutil.rmtree(root / sub, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory(prefix="vistudio-s3-bench-") as tmp:
            base = Path(tmp)
            small = [os.urandom(args.small_kb * 1024) for _ in range(args.small)]
            large_files = []
            for i in range(args.large):
                p = base / f"large-{i}.bin"
                p.write_bytes(os.urandom(args.large_mb * MiB))
                large_files.append(p)
            part = args.part_mb * MiB
            stores: dict[str, BlobFiles] = {
                "local": BlobFiles(base / "local"),
                "s3": S3BlobFiles(
                    base / "s3cache",
                    config=S3Config(
                        url="s3://bench/ws",
                        endpoint_url=endpoint,
                        region="us-east-1",
                        multipart_threshold=part,
                        multipart_chunksize=part,
                        cache_max_bytes=0,
                    ),
                ),
            }
            s3store = stores["s3"]
            assert isinstance(s3store, S3BlobFiles)
            s3store.check()
            small_bytes = args.small * args.small_kb * 1024
            large_bytes = args.large * args.large_mb * MiB
            results: dict[str, dict[str, Any]] = {}
            keys: dict[str, list[tuple[str, str, str]]] = {}
            for name, store in stores.items():
                written: list[tuple[str, str, str]] = []

                def small_write(
                    store: BlobFiles = store, written: list[tuple[str, str, str]] = written
                ) -> None:
                    for data in small:
                        written.append(("original", store.write_bytes("original", data, ext="jpg"), "jpg"))

                def large_write(
                    store: BlobFiles = store, written: list[tuple[str, str, str]] = written
                ) -> None:
                    for p in large_files:
                        written.append(("checkpoint", store.write_file("checkpoint", p, ext="pt"), "pt"))

                results.setdefault("small_write", {})[name] = _timed(small_write)
                results.setdefault("large_write", {})[name] = _timed(large_write)
                keys[name] = written

            def read_all(store: BlobFiles, written: list[tuple[str, str, str]]) -> None:
                for kind, sha, ext in written:
                    with store.path(kind, sha, ext).open("rb") as fh:
                        while fh.read(MiB):
                            pass

            for name, store in stores.items():
                if name == "s3":
                    _clear_cache(store.root)
                results.setdefault("cold_read", {})[name] = _timed(
                    lambda s=store, n=name: read_all(s, keys[n])
                )
                results.setdefault("warm_read", {})[name] = _timed(
                    lambda s=store, n=name: read_all(s, keys[n])
                )
            for name, store in stores.items():  # the same blobs came back as they went in
                for kind, sha, ext in keys[name]:
                    assert store.verify_blob(kind, sha, ext) is None, (name, sha)
    finally:
        server.stop()

    sizes = {
        "small_write": small_bytes,
        "large_write": large_bytes,
        "cold_read": small_bytes + large_bytes,
        "warm_read": small_bytes + large_bytes,
    }
    ops = {
        "small_write": args.small,
        "large_write": args.large,
        "cold_read": args.small + args.large,
        "warm_read": args.small + args.large,
    }
    out: dict[str, Any] = {
        "benchmark": "s3_store",
        "server": "moto ThreadedMotoServer on 127.0.0.1 (HTTP)",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "small": {"count": args.small, "kib": args.small_kb},
        "large": {"count": args.large, "mib": args.large_mb, "part_mib": args.part_mb},
        "results": {},
    }
    for what, by_store in results.items():
        row: dict[str, Any] = {}
        for name, seconds in by_store.items():
            row[name] = {
                "seconds": round(seconds, 4),
                "mib_per_s": round(sizes[what] / MiB / seconds, 1) if seconds > 0 else None,
                "ops_per_s": round(ops[what] / seconds, 1) if seconds > 0 else None,
            }
        local, s3 = by_store["local"], by_store["s3"]
        row["ratio"] = round(s3 / local, 2) if local > 0 else None
        out["results"][what] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--small-kb", type=int, default=64)
    ap.add_argument("--large", type=int, default=3)
    ap.add_argument("--large-mb", type=int, default=24)
    ap.add_argument("--part-mb", type=int, default=8, help="multipart threshold and part size (>= 5)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.part_mb < 5:
        ap.error("--part-mb: S3 parts are at least 5 MiB")
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
