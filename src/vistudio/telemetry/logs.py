"""Structured JSON logs in ``<workspace>/logs/``: one JSON object per line, rotated by size.

Every line carries ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``pid`` and, when
known, ``request_id``, ``job_id``, ``job_kind`` and ``project`` (see ``context``), then any
``extra=`` fields and ``exc`` (the traceback). The server and every worker process append to the
same ``vistudio.log``; a process that finds the file rotated by another reopens it.

``read_lines`` and ``follow`` read them back (``vistudio logs``, ``GET /api/v1/jobs/{id}/logs``, the
job page); a line that is not a JSON object (a torn write, a hand edit) is skipped and counted.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vistudio.telemetry import context

LOG_FILE = "vistudio.log"
LOGGER = "vistudio"  # the package's loggers all descend from it
# attributes every LogRecord has: anything else on a record came from ``extra=`` and is written out
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_CONTEXT = ("request_id", "job_id", "job_kind", "project")


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record (keys in a fixed order: ts, level, logger, message, …)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key in _CONTEXT:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _CONTEXT and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False, default=str)


class ContextFilter(logging.Filter):
    """Copies the request/job context onto each record, and keeps lines of another workspace out
    of this workspace's file (several Studios in one process, as in tests)."""

    def __init__(self, home: Path) -> None:
        super().__init__()
        self.home = home

    def filter(self, record: logging.LogRecord) -> bool:
        ws = context.workspace.get()
        if ws is not None and ws != self.home:
            return False
        if getattr(record, "request_id", None) is None:
            record.request_id = context.request_id.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = context.job_id.get()
            record.job_kind = context.job_kind.get()
        if getattr(record, "project", None) is None:
            record.project = context.current_project()
        return True


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler for a file that other processes append to and rotate: before each
    write it checks that its open file is still the one at the path (as WatchedFileHandler does),
    so no process keeps writing into a file another one rotated away."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is not None:
            try:
                st = os.stat(self.baseFilename)
                moved = (st.st_dev, st.st_ino) != _ident(self.stream)
            except OSError:
                moved = True
            if moved:
                try:  # the folder may be gone (a workspace deleted): a log line never fails a request
                    self.stream.close()
                    self.stream = self._open()
                except OSError:
                    self.handleError(record)
                    return
        super().emit(record)


def _ident(stream: Any) -> tuple[int, int]:
    st = os.fstat(stream.fileno())
    return st.st_dev, st.st_ino


def log_dir(home: Path) -> Path:
    return home / "logs"


def attach(home: Path, *, max_bytes: int, backups: int, level: str = "INFO") -> logging.Handler:
    """Send the ``vistudio`` loggers' records of this workspace to ``<home>/logs/vistudio.log``.
    Idempotent: a second call for the same workspace returns the handler already attached."""
    logger = logging.getLogger(LOGGER)
    path = log_dir(home) / LOG_FILE
    for h in logger.handlers:
        if isinstance(h, SharedRotatingFileHandler) and Path(h.baseFilename) == path:
            return h
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = SharedRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter(home))
    handler.setLevel(level.upper())
    logger.addHandler(handler)
    wanted = logging.getLevelName(level.upper())
    if logger.level == logging.NOTSET or (isinstance(wanted, int) and logger.level > wanted):
        logger.setLevel(wanted)
    return handler


def detach(handler: logging.Handler) -> None:
    logging.getLogger(LOGGER).removeHandler(handler)
    handler.close()


@dataclass
class LogPage:
    """Lines read back: parsed objects (oldest first) and how many lines were not JSON objects."""

    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0


def log_files(home: Path) -> list[Path]:
    """The log files, oldest first: ``vistudio.log.N`` … ``vistudio.log.1``, ``vistudio.log``."""
    folder = log_dir(home)
    rotated = []
    for p in folder.glob(LOG_FILE + ".*"):
        suffix = p.name[len(LOG_FILE) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    files = [p for _, p in sorted(rotated, reverse=True)]
    current = folder / LOG_FILE
    return files + ([current] if current.exists() else [])


def _needle(job_id: int | None) -> tuple[str, ...] | None:
    # a cheap substring test before json.loads: most lines of a big log are other jobs'
    if job_id is None:
        return None
    return (f'"job_id":{job_id},', f'"job_id":{job_id}}}')


def parse_line(line: str, job_id: int | None = None) -> dict[str, Any] | bool | None:
    """The line's object; ``None`` when it belongs to another job; ``False`` when it is not a
    JSON object (corrupt)."""
    needles = _needle(job_id)
    if needles is not None and not any(n in line for n in needles):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    if job_id is not None and obj.get("job_id") != job_id:
        return None
    return obj


def read_lines(home: Path, *, job_id: int | None = None, limit: int = 200) -> LogPage:
    """The newest ``limit`` lines (of one job, with ``job_id``), oldest first."""
    page = LogPage()
    newest: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(0, limit))
    for path in log_files(home):
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        continue
                    got = parse_line(line, job_id)
                    if got is False:
                        # a corrupt line of another job may fail the needle test and go uncounted;
                        # only lines that could be this job's (or any, without a job) are counted
                        page.skipped += 1
                    elif got:
                        newest.append(got)  # type: ignore[arg-type]
        except FileNotFoundError:  # rotated away while we read
            continue
    page.items = list(newest)
    return page


def follow(
    home: Path,
    *,
    job_id: int | None = None,
    stop: Callable[[], bool],
    poll: float = 0.5,
    on_skip: Callable[[str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Lines appended to ``vistudio.log`` from now on, until ``stop()``; follows rotation."""
    path = log_dir(home) / LOG_FILE
    f = None
    # None: start at the end of the current file; (0, 0): no file yet, read the next one whole
    ident: tuple[int, int] | None = None if path.exists() else (0, 0)
    buf = ""
    try:
        while not stop():
            if f is None and path.exists():
                f = path.open(encoding="utf-8", errors="replace")
                if ident is None:
                    f.seek(0, os.SEEK_END)  # only what comes after the command started
                ident = _ident(f)
            if f is not None:
                chunk = f.read()
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split("\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        got = parse_line(line, job_id)
                        if got is False:
                            if on_skip:
                                on_skip(line)
                        elif got:
                            yield got  # type: ignore[misc]
                    continue
                try:
                    rotated = (os.stat(path).st_dev, os.stat(path).st_ino) != ident
                except OSError:
                    rotated = True
                if rotated:  # another process rotated the file: read the new one from its start
                    f.close()
                    f, buf = None, ""
                    ident = (0, 0)
                    continue
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()
