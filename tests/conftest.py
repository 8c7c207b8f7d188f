"""Shared fixtures: a temporary workspace, its Studio, an HTTP client, and image factories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

# With several test processes on a small machine, one thread each: torch's default (a thread per
# core in every process, and in every training child, which inherits this) oversubscribes the cores
# and slows convolution-heavy tests several times over. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# prometheus-client picks memory or per-process files for its values once, at import, from
# PROMETHEUS_MULTIPROC_DIR: imported here, before a test runs `vistudio worker` in-process (which
# would otherwise switch this whole process to files in that test's soon-deleted workspace).
import prometheus_client  # noqa: F401
import pytest

from factories import make_class_folders
from vistudio.config import ImportSettings, JobSettings, Settings
from vistudio.studio import Studio, open_studio

# The suite runs offline: no test downloads model weights, whatever the machine's network (library
# calls without workspace settings, CLI subprocesses and the test settings all see it).
os.environ["VISTUDIO_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _no_metrics_folder_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `vistudio worker` run in-process must not hand its metrics folder to later tests' child
    processes (monkeypatch restores the variable after the test)."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _drop_module_scratch(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Remove what a module's own fixtures wrote (trained experiments, served workspaces) once the
    module is done, unless one of its tests failed: a full run would otherwise keep gigabytes until
    it ends (a passed test's ``tmp_path`` goes at once, see ``tmp_path_retention_policy``). Autouse
    fixtures are set up first, so this one is torn down after the module's other fixtures."""
    base = tmp_path_factory.getbasetemp()
    before, failed = set(base.iterdir()), request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for path in set(base.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "ws",
        offline=True,
        import_roots=[tmp_path],
        allowed_hosts=["localhost", "127.0.0.1", "testserver"],  # TestClient's host
        imports=ImportSettings(workers=1, batch_size=8),
        jobs=JobSettings(
            lease_seconds=30, heartbeat_seconds=0.2, poll_seconds=0.05, backoff_base_seconds=0.01
        ),
    )


@pytest.fixture
def studio(settings: Settings) -> Iterator[Studio]:
    s = open_studio(settings)
    yield s
    s.close()


@pytest.fixture
def tiny(settings: Settings) -> Iterator[Studio]:
    """A studio whose embedding model is the tiny untrained CLIP of embed_factories (modules that
    need more in it define their own ``tiny``)."""
    from embed_factories import with_embed

    s = open_studio(with_embed(settings))
    yield s
    s.close()


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "pets", {"cat": 6, "dog": 5, "fox": 4})


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """An S3-compatible server on loopback (moto's standalone server, over real HTTP), with test
    credentials in the environment for the module. Yields its endpoint URL."""
    import socket

    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - moto and flask are in the dev extra
        pytest.skip(f"moto's server is not installed: {exc}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        try:
            server.start()
        except Exception as exc:  # pragma: no cover - a sandbox without loopback sockets
            pytest.skip(f"moto's S3 server could not start on 127.0.0.1:{port}: {exc}")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()
