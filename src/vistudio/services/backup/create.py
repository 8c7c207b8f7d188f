"""``vistudio backup DEST``: an online, incremental backup of a workspace, and ``--verify``.

Order matters for consistency while imports and training write to the workspace:

1. the database is dumped first, as one consistent snapshot — SQLite's online backup API (a read
   transaction in WAL mode: writers go on), or ``pg_dump`` on an exported snapshot
   (``pg_export_snapshot``) whose very transaction also lists the blobs;
2. the blobs *that snapshot* references (its ``artifacts`` rows) are copied, by content hash,
   skipping those the backup folder has already: files written later belong to the next backup.
   A blob deleted between the dump and its copy is taken from the backup folder when an earlier
   snapshot has it, else recorded under ``missing`` in the manifest and the result;
3. the readable folders (exports, runs, indexes, …) are copied the same way, each file once per
   content; an unchanged file (same size and mtime as in the previous snapshot) is not re-read;
4. the manifest is written last, atomically: only then does the snapshot exist.

Vector index files are backed up as they are (a cache of the database's vectors): after a restore
the index loader compares them with the database and brings them up to date, so searches return
what they returned before without rebuilding a large index.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

import vistudio
from vistudio.db.session import current_revision
from vistudio.errors import BadRequest, Conflict, VistudioError
from vistudio.services.backup.store import (
    DB_FILE_RE,
    EXCLUDED_TOP,
    FORMAT,
    VERSION,
    BackupInvalid,
    BlobMismatch,
    Objects,
    check_dest,
    file_sha,
    locked,
    read_manifest,
    snapshot_names,
    write_manifest,
)
from vistudio.storage.atomic import TMP_PREFIX
from vistudio.storage.blobs import KIND_DIRS, SHA_RE
from vistudio.studio import Studio

# (phase, done, total): "database", "files", "verify"
Progress = Callable[[str, int, int], None]
BLOB_DIRS = frozenset({*KIND_DIRS.values(), "artifacts"})
COPY_THREADS = 4  # copying is I/O: a few threads overlap reads, writes and fsyncs


class ToolMissing(VistudioError):
    code = "tool_missing"
    status = 503


@dataclass(frozen=True)
class _Item:
    rel: str  # path relative to the workspace
    sha: str | None  # known from the name (content-addressed blobs) or None: hash the bytes
    blob: tuple[str, str, str, int] | None = None  # (kind, key sha256, ext, size) of a store blob


@dataclass(frozen=True)
class _Dump:
    dialect: str
    tmp: Path
    samples: int
    blobs: list[tuple[str, str, str, int]]  # (kind, sha256, ext, size) of the snapshot's artifacts rows
    revision: str | None


def _sqlite_path(engine: Engine) -> Path:
    db = engine.url.database
    if not db or db == ":memory:":
        raise VistudioError("this workspace's SQLite database is in memory: nothing to back up")
    return Path(db)


def _dump_sqlite(engine: Engine, objects: Objects) -> _Dump:
    tmp = objects.temp(".sqlite")
    src = sqlite3.connect(_sqlite_path(engine), timeout=30)
    try:
        dst = sqlite3.connect(tmp)
        try:
            # one step (pages=-1): the whole database under one read transaction, a consistent
            # snapshot; WAL lets the server's writers go on meanwhile
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            samples = int(dst.execute("SELECT count(*) FROM samples").fetchone()[0])
            blobs = [
                (str(k), str(s), str(e or ""), int(n or 0))
                for k, s, e, n in dst.execute("SELECT kind, sha256, ext, size FROM artifacts")
            ]
            rev = dst.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    return _Dump("sqlite", tmp, samples, blobs, str(rev[0]) if rev else None)


# the connection parameters of a URL's query that libpq also reads from the environment
LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "krbsrvname": "PGKRBSRVNAME",
}


def pg_env(url: str) -> dict[str, str]:
    """libpq's environment for a SQLAlchemy PostgreSQL URL (the password stays out of argv)."""
    u = make_url(url)
    env = dict(os.environ)
    host = u.host or u.query.get("host")
    port = u.port or u.query.get("port")
    pairs: dict[str, object] = {
        "PGHOST": host,
        "PGPORT": port,
        "PGUSER": u.username,
        "PGPASSWORD": u.password,
        "PGDATABASE": u.database,
    }
    for param, value in u.query.items():
        if param in ("host", "port"):
            continue
        var = LIBPQ_ENV.get(param)
        if var is None:  # dropping it could dump over another connection than the server's own
            raise BadRequest(
                f"the database URL's parameter {param!r} cannot be handed to pg_dump/pg_restore; "
                f"those take: {', '.join(sorted(LIBPQ_ENV))}"
            )
        pairs[var] = value
    for key, given in pairs.items():
        if given:
            env[key] = str(given[0] if isinstance(given, tuple) else given)
    return env


def pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolMissing(
            f"{name} not found: install PostgreSQL's client tools (the server's major version or newer)"
        )
    return found


def _dump_postgres(engine: Engine, objects: Objects) -> _Dump:
    tool = pg_tool("pg_dump")
    tmp = objects.temp(".pgdump")
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        # pg_dump reads the snapshot this transaction exported, so the dump and the blob list
        # below see the same database state
        snap = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        samples = int(conn.execute(text("SELECT count(*) FROM samples")).scalar_one())
        blobs = [
            (str(k), str(s), str(e or ""), int(n or 0))
            for k, s, e, n in conn.execute(text("SELECT kind, sha256, ext, size FROM artifacts"))
        ]
        rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        out = subprocess.run(
            [tool, "--format=custom", f"--snapshot={snap}", "--no-owner", "--no-privileges", "-f", str(tmp)],
            env=pg_env(engine.url.render_as_string(hide_password=False)),
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise VistudioError(f"pg_dump failed: {out.stderr.strip()[-2000:]}")
    return _Dump("postgresql", tmp, samples, blobs, str(rev) if rev else None)


def _readable_files(home: Path) -> Iterable[_Item]:
    """Files outside the blob store and the database: exports, run outputs, indexes, …"""
    for top in sorted(home.iterdir()):
        if top.name in BLOB_DIRS or top.name in EXCLUDED_TOP or DB_FILE_RE.match(top.name):
            continue
        if top.is_symlink() or top.name.startswith(TMP_PREFIX):
            continue
        if top.is_file():
            yield _Item(top.name, None)
            continue
        for dirpath, dirnames, filenames in os.walk(top):  # does not follow symlinks
            dirnames.sort()
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if f.startswith(TMP_PREFIX) or p.is_symlink() or not p.is_file():
                    continue
                yield _Item(p.relative_to(home).as_posix(), None)


def _previous(dest: Path) -> dict[str, dict[str, Any]]:
    """The latest readable snapshot's files by path (empty for a new backup)."""
    for name in reversed(snapshot_names(dest)):
        try:
            m = read_manifest(dest, name)
        except BackupInvalid:
            continue
        return {f["path"]: f for f in m["files"]}
    return {}


def create_backup(studio: Studio, dest: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Back the workspace up into ``dest`` (a new snapshot). Returns ``{"path", "snapshot",
    "samples", "blobs", "bytes", "new_blobs", "new_bytes", "database", "missing", "seconds"}``."""
    started = time.perf_counter()
    dest = dest.expanduser().resolve()
    home = studio.home.resolve()
    if dest.is_relative_to(home) or home.is_relative_to(dest):
        raise BadRequest(f"the backup folder and the workspace must not contain one another: {dest}")
    dest = check_dest(dest, create=True)
    tick = progress or (lambda *_: None)
    objects = Objects(dest / "objects")
    with locked(dest):
        objects.remove_temps()
        prev_files = _previous(dest)
        name = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        taken = snapshot_names(dest)
        if taken and name <= taken[-1]:  # the clock went back: the newest snapshot must sort last
            raise Conflict(f"the clock is behind the newest snapshot ({taken[-1]}): check the system time")
        tick("database", 0, 1)
        dialect = studio.engine.dialect.name
        dump = (
            _dump_sqlite(studio.engine, objects)
            if dialect == "sqlite"
            else _dump_postgres(studio.engine, objects)
        )
        try:
            db_sha, db_size = objects.adopt(dump.tmp)
        finally:
            dump.tmp.unlink(missing_ok=True)
        tick("database", 1, 1)
        items: dict[str, _Item] = {}
        for kind, sha, ext, size in dump.blobs:
            if not SHA_RE.match(sha):
                continue
            rel = _blob_key(studio, kind, sha, ext)
            if rel is not None:
                items[rel] = _Item(rel, None if kind == "thumbnail" else sha, (kind, sha, ext, size))
        for item in _readable_files(home):
            items.setdefault(item.rel, item)

        entries: list[dict[str, Any]] = []
        missing: list[dict[str, Any]] = []
        new_blobs = new_bytes = 0
        total = len(items)
        tick("files", 0, total)
        # files the backup has already (most, after the first backup) are settled here with two
        # stats each; only the others go to the copying threads
        to_copy: list[_Item] = []
        for item in items.values():
            entry = _unchanged(f"{home}{os.sep}", objects, item, prev_files.get(item.rel))
            if entry is None:
                to_copy.append(item)
            else:
                entries.append(entry)
        done = len(entries)
        tick("files", done, total)
        with ThreadPoolExecutor(COPY_THREADS) as pool:
            futures = {
                pool.submit(_copy_one, studio, objects, it, prev_files.get(it.rel)): it for it in to_copy
            }
            for fut in as_completed(futures):
                entry, copied, problem = fut.result()
                if entry is None:
                    missing.append({"path": futures[fut].rel, "sha256": futures[fut].sha, "reason": problem})
                else:
                    entries.append(entry)
                    if copied:
                        new_blobs += 1
                        new_bytes += entry["size"]
                done += 1
                tick("files", done, total)
        entries.sort(key=lambda e: str(e["path"]))
        missing.sort(key=lambda e: str(e["path"]))
        files_bytes = sum(int(e["size"]) for e in entries)
        stats = {
            "samples": dump.samples,
            "blobs": len(entries),
            "bytes": files_bytes + db_size,
            "new_blobs": new_blobs,
            "new_bytes": new_bytes,
        }
        objects.sync()  # the objects' folder entries before the manifest that names them
        write_manifest(
            dest,
            name,
            {
                "format": FORMAT,
                "version": VERSION,
                "created_at": datetime.now(UTC).isoformat(),
                "vistudio": vistudio.__version__,
                "schema_revision": dump.revision or current_revision(studio.engine),
                "database": {"dialect": dump.dialect, "sha256": db_sha, "size": db_size},
                "files": entries,
                "missing": missing,
                "stats": stats,
            },
        )
    return {
        "path": str(dest),
        "snapshot": name,
        **stats,
        "database": {"dialect": dump.dialect, "bytes": db_size},
        "missing": missing,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _unchanged(
    prefix: str, objects: Objects, item: _Item, prev: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The manifest entry of a file the backup holds already, or None (copy it, or it is gone)."""
    if item.sha is not None and item.blob is not None and objects.has(item.sha, item.blob[3]):
        # content-addressed: the object of that hash and size is the blob (no read, no download)
        return _entry(item, item.sha, item.blob[3])
    try:
        st = os.stat(prefix + item.rel)
    except FileNotFoundError:
        return None
    if item.sha is not None:
        return _entry(item, item.sha, st.st_size) if objects.has(item.sha, st.st_size) else None
    if (
        prev is not None
        and prev.get("size") == st.st_size
        and prev.get("mtime_ns") == st.st_mtime_ns
        and objects.has(prev["sha256"], st.st_size)
    ):
        return _entry(item, prev["sha256"], st.st_size, st.st_mtime_ns)
    return None


def _entry(item: _Item, sha: str, size: int, mtime_ns: int | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"path": item.rel, "sha256": sha, "size": size}
    if item.blob is not None:  # what the blob store calls it (a restore into a bucket needs it)
        e["kind"], e["ext"] = item.blob[0], item.blob[2]
    if mtime_ns is not None:
        e["mtime_ns"] = mtime_ns
    return e


def _blob_key(studio: Studio, kind: str, sha: str, ext: str) -> str | None:
    """The blob's path in the workspace layout (``media/ab/<sha>.jpg``), whatever the store."""
    key = getattr(studio.store, "key", None)
    if key is not None:
        return str(key(kind, sha, ext))
    where = str(studio.store.path(kind, sha, ext))
    prefix = f"{studio.home}{os.sep}"
    return where[len(prefix) :] if where.startswith(prefix) else None


def _copy_one(
    studio: Studio, objects: Objects, item: _Item, prev: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, bool, str | None]:
    """(manifest entry or None, copied, why not) for one workspace file."""
    try:
        if item.blob is not None:
            kind, key_sha, ext, _ = item.blob
            # through the store: a remote one fetches the blob into its local cache here
            src = studio.store.path(kind, key_sha, ext)
        else:
            src = studio.home / item.rel
        st = src.stat()
        sha, size, copied = objects.put(src, expected_sha=item.sha)
        return _entry(item, sha, size, None if item.sha else st.st_mtime_ns), copied, None
    except FileNotFoundError:
        # deleted after the dump (a blob collected, an export removed): an earlier snapshot's copy
        # is as good when it has the bytes the dump's rows name (a thumbnail: the one it had)
        same = prev is not None and (prev["sha256"] == item.sha if item.sha else item.blob is not None)
        if same and prev is not None and objects.has(prev["sha256"], prev["size"]):
            return _entry(item, prev["sha256"], prev["size"]), False, None
        return None, False, "deleted before it was copied"
    except BlobMismatch:
        return None, False, "corrupt in the workspace (its bytes do not match its hash): run vistudio doctor"


def verify_backup(dest: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """Re-hash every object every snapshot of ``dest`` lists. Raises ``BackupInvalid`` (with the
    problems in its details) when anything is missing, damaged or unreadable."""
    dest = check_dest(dest.expanduser().resolve(), create=False)
    tick = progress or (lambda *_: None)
    objects = Objects(dest / "objects")
    problems: list[dict[str, Any]] = []
    wanted: dict[str, tuple[int, str, str]] = {}  # sha → (size, snapshot, path)
    names = snapshot_names(dest)
    latest: dict[str, Any] | None = None
    for name in names:
        try:
            m = read_manifest(dest, name)
        except BackupInvalid as exc:
            problems.append({"snapshot": name, "problem": "manifest_invalid", "detail": exc.message})
            continue
        latest = m | {"name": name}
        db = m["database"]
        wanted.setdefault(db["sha256"], (db["size"], name, "(database)"))
        for f in m["files"]:
            wanted.setdefault(f["sha256"], (f["size"], name, f["path"]))
    total = len(wanted)
    tick("verify", 0, total)
    checked_bytes = 0
    for done, (sha, (size, name, rel)) in enumerate(sorted(wanted.items()), 1):
        p = objects.path(sha)
        where = {"snapshot": name, "path": rel, "object": p.relative_to(dest).as_posix()}
        if not p.is_file():
            problems.append({**where, "problem": "missing"})
        elif p.stat().st_size != size:
            problems.append(
                {**where, "problem": "size", "detail": f"{p.stat().st_size} bytes, expected {size}"}
            )
        elif file_sha(p) != sha:
            problems.append({**where, "problem": "corrupt"})
        else:
            checked_bytes += size
        tick("verify", done, total)
    if not names:
        problems.append({"problem": "no_snapshot", "detail": "no complete snapshot in this folder"})
    if problems:
        raise BackupInvalid(
            f"backup {dest}: {len(problems)} problem(s), first: {_describe(problems[0])}",
            details={"path": str(dest), "problems": problems},
        )
    assert latest is not None
    stats = latest.get("stats") or {}
    return {
        "path": str(dest),
        "snapshot": latest["name"],
        "snapshots": len(names),
        "samples": stats.get("samples", 0),
        "blobs": len(latest["files"]),
        "bytes": stats.get("bytes", 0),
        "new_blobs": 0,
        "objects_checked": total,
        "bytes_checked": checked_bytes,
        "verified": True,
        "problems": [],
    }


def _describe(p: dict[str, Any]) -> str:
    where = " ".join(f"{k}={p[k]}" for k in ("snapshot", "path") if k in p)
    return f"{p['problem']} {where}".strip() + (f" ({p['detail']})" if "detail" in p else "")
