"""What a log line is about: the request, the job and the project being worked on.

Context variables, so that each request (an asyncio task, and the thread a sync route runs in) and
each job (a worker thread) sees its own values without passing them down every call. Setting them
never changes state shared between requests.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

request_id: ContextVar[str | None] = ContextVar("vistudio_request_id", default=None)
job_id: ContextVar[int | None] = ContextVar("vistudio_job_id", default=None)
job_kind: ContextVar[str | None] = ContextVar("vistudio_job_kind", default=None)
project: ContextVar[str | None] = ContextVar("vistudio_project", default=None)
# the request's ASGI scope: the project is read from its path parameters when a line is logged,
# after routing filled them in
scope: ContextVar[MutableMapping[str, Any] | None] = ContextVar("vistudio_scope", default=None)
# the workspace the work belongs to: a log file takes only its own workspace's lines
workspace: ContextVar[Path | None] = ContextVar("vistudio_workspace", default=None)

# an incoming X-Request-ID is kept when it is short and plain (a proxy's id); anything else is
# replaced, so a header cannot inject text into the logs
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id(incoming: str | None = None) -> str:
    """The request's id: the client's ``X-Request-ID`` when it is plain, else a fresh random one."""
    if incoming and _CLIENT_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current_project() -> str | None:
    value = project.get()
    if value is not None:
        return value
    sc = scope.get()
    if sc is not None:
        got = (sc.get("path_params") or {}).get("project")
        return str(got) if got is not None else None
    return None


@contextlib.contextmanager
def job_context(*, home: Path, job: int, kind: str, project_name: str | None) -> Iterator[None]:
    """Tag every line logged inside the block with the job (used by workers around a handler)."""
    tokens = [
        (workspace, workspace.set(home)),
        (job_id, job_id.set(job)),
        (job_kind, job_kind.set(kind)),
        (project, project.set(project_name)),
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)  # type: ignore[attr-defined]


def multiproc_dir(home: Path) -> Path:
    """Where worker processes write their metrics (prometheus-client's multiprocess files)."""
    return home / "metrics"


def prepare_worker_process(home: Path) -> Path | None:
    """Make this process write its metrics to the workspace's metrics folder, where the server's
    ``/metrics`` reads them. Must run before prometheus-client is imported: it picks its value
    storage (memory or files) once, at import. A ``PROMETHEUS_MULTIPROC_DIR`` the user set wins."""
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # too late for this process (a worker run in-process, e.g. by the tests): it keeps its
        # metrics in memory, and its children are not handed a folder they would outlive
        return None
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or multiproc_dir(home))
    path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path
