"""``vistudio restore SRC``: a snapshot of a backup into a new, empty workspace.

Nothing is written before the manifest has passed its checks (format, checksum, every path inside
the workspace) and every object it lists is present with its size; each file is hash-checked while
it is copied. A restore that fails half-way removes the files it wrote, leaving the empty workspace
it found (on PostgreSQL, tables restored before a failure to open the workspace stay: docs/backup.md). The database comes back as the backup's dialect (a SQLite file, or ``pg_restore`` into the
workspace's PostgreSQL database, which must hold no tables), then the workspace is opened once, which
upgrades the schema when the backup came from an older vistudio.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.engine import make_url

from vistudio.config import Settings
from vistudio.errors import BadRequest, Conflict, NotFound, VistudioError
from vistudio.services.backup.create import COPY_THREADS, Progress, pg_env, pg_tool
from vistudio.services.backup.store import (
    BackupInvalid,
    Objects,
    check_dest,
    read_manifest,
    snapshot_names,
)
from vistudio.storage.atomic import TMP_PREFIX
from vistudio.storage.blobs import CHUNK


def _copy_checked(src: Path, dest: Path, sha: str) -> None:
    """Copy ``src`` to ``dest`` atomically, refusing bytes that do not hash to ``sha``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=dest.parent)
    try:
        h = hashlib.sha256()
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if h.hexdigest() != sha:
            raise BackupInvalid(f"backup object {src.name} is damaged: its bytes do not match its hash")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_empty(home: Path) -> bool:
    """Whether ``home`` exists (empty); raises when it is a file or holds anything."""
    if not home.exists():
        return False
    if not home.is_dir():
        raise BadRequest(f"the workspace is not a folder: {home}")
    if any(home.iterdir()):
        raise Conflict(f"the workspace {home} is not empty: restore into a new or empty folder")
    return True


def restore_backup(
    settings: Settings, src: Path, *, snapshot: str | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Restore ``snapshot`` (default: the latest complete one) of the backup at ``src`` into the
    workspace of ``settings``. Returns ``{"path", "snapshot", "samples", "blobs", "bytes",
    "new_blobs", "workspace"}``."""
    src = check_dest(src.expanduser().resolve(), create=False)
    names = snapshot_names(src)
    if snapshot is None:
        if not names:
            raise NotFound(f"no complete snapshot in {src}")
        snapshot = names[-1]
    manifest = read_manifest(src, snapshot)
    home = settings.home.expanduser().resolve()
    existed = _check_empty(home)
    if getattr(getattr(settings, "blob_store", None), "url", None):
        # the files are written in the local layout; a bucket's keys are not written (yet)
        raise BadRequest(
            "restoring into a workspace whose blobs live in a bucket is not supported yet: restore into "
            "a local workspace (VISTUDIO_BLOB_STORE__URL unset), then copy media/, thumbs/ and artifacts/ "
            "to the bucket"
        )
    url = settings.db_url
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    db = manifest["database"]
    if db["dialect"] != dialect:
        raise BadRequest(
            f"snapshot {snapshot} holds a {db['dialect']} database; this workspace uses {dialect} "
            "(set VISTUDIO_DATABASE_URL to match, or unset it for SQLite)"
        )
    sqlite_file: Path | None = None
    if dialect == "sqlite":
        sqlite_file = Path(make_url(url).database or home / "vistudio.db").expanduser().resolve()
        if sqlite_file.exists():
            raise Conflict(f"the database {sqlite_file} exists already: restore into a new workspace")
    else:
        pg_tool("pg_restore")
        probe = create_engine(url)
        try:
            if inspect(probe).get_table_names():
                raise Conflict(
                    "the workspace's PostgreSQL database is not empty: restore into an empty database"
                )
        finally:
            probe.dispose()
    objects = Objects(src / "objects")
    absent = [
        f["path"]
        for f in [*manifest["files"], {**db, "path": "(database)"}]
        if not objects.has(f["sha256"], f["size"])
    ]
    if absent:
        raise BackupInvalid(
            f"snapshot {snapshot}: {len(absent)} object(s) missing or truncated, first {absent[0]}",
            details={"snapshot": snapshot, "missing": absent[:1000]},
        )
    tick = progress or (lambda *_: None)
    try:
        home.mkdir(parents=True, exist_ok=True)
        total = len(manifest["files"])
        tick("restore", 0, total + 1)
        for f in manifest["files"]:
            if not (home / f["path"]).resolve().is_relative_to(home):  # no symlink can be there; be sure
                raise BackupInvalid(f"snapshot {snapshot}: path leaves the workspace: {f['path']}")
        with ThreadPoolExecutor(COPY_THREADS) as pool:
            futures = [
                pool.submit(_copy_checked, objects.path(f["sha256"]), home / f["path"], f["sha256"])
                for f in manifest["files"]
            ]
            try:
                for done, fut in enumerate(as_completed(futures), 1):
                    fut.result()
                    tick("restore", done, total + 1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        if sqlite_file is not None:
            _copy_checked(objects.path(db["sha256"]), sqlite_file, db["sha256"])
        else:
            _pg_restore(url, objects.path(db["sha256"]), db["sha256"])
        tick("restore", total + 1, total + 1)
        samples = _open_once(settings.model_copy(update={"home": home}))
    except BaseException:
        _undo(home, existed=existed, sqlite_file=sqlite_file)
        raise
    stats = manifest.get("stats") or {}
    return {
        "path": str(src),
        "snapshot": snapshot,
        "workspace": str(home),
        "samples": samples,
        "blobs": len(manifest["files"]),
        "bytes": int(stats.get("bytes", 0)),
        "new_blobs": len(manifest["files"]),
        "missing": manifest.get("missing") or [],
    }


def _pg_restore(url: str, dump: Path, sha: str) -> None:
    # pg_restore reads the file itself: check its bytes first
    h = hashlib.sha256()
    with dump.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    if h.hexdigest() != sha:
        raise BackupInvalid("the database dump is damaged: its bytes do not match its hash")
    env = pg_env(url)
    out = subprocess.run(
        [
            pg_tool("pg_restore"),
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "-d",
            env.get("PGDATABASE", ""),
            str(dump),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise VistudioError(f"pg_restore failed: {out.stderr.strip()[-2000:]}")


def _open_once(settings: Settings) -> int:
    """Open the restored workspace (schema upgraded if older) and count its samples."""
    from vistudio.db import Sample
    from vistudio.studio import open_studio

    studio = open_studio(settings)
    try:
        with studio.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Sample)) or 0)
    finally:
        studio.close()


def _undo(home: Path, *, existed: bool, sqlite_file: Path | None) -> None:
    """Remove what a failed restore wrote (the workspace was empty or absent before)."""
    if home.is_dir():
        if existed:
            for child in home.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        else:
            shutil.rmtree(home, ignore_errors=True)
    if sqlite_file is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{sqlite_file}{suffix}").unlink()
