"""The enrich job's plain parts, without a Ray cluster: steps, addresses, how errors from the
cluster are classified (permanent vs retried), and the faces' transport between actor and job."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from vistudio.errors import BadRequest
from vistudio.jobs.worker import PermanentJobError
from vistudio.ml.enrich import decode_faces, encode_faces
from vistudio.services import enrich


def test_steps_are_checked_and_put_in_their_order() -> None:
    assert enrich.parse_steps(None) == ["embed", "faces", "captions"]
    assert enrich.parse_steps("captions, embed") == ["embed", "captions"]
    assert enrich.parse_steps(["faces"]) == ["faces"]
    for bad in ("", "embed,colour", ","):
        with pytest.raises(BadRequest):
            enrich.parse_steps(bad)


def test_addresses_that_cannot_be_a_cluster_fail_at_once() -> None:
    with pytest.raises(PermanentJobError, match="not a Ray address"):
        enrich._probe("no-port")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PermanentJobError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        enrich._probe(f"127.0.0.1:{port}")
    enrich._probe("auto")  # resolved by Ray itself


class _Dataset:
    """Stands in for a Ray Dataset whose execution fails after one batch with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed = False

    def iter_batches(self, **_: Any) -> Iterator[dict[str, Any]]:
        try:
            yield {"sample_id": [1]}
            raise self.error
        finally:
            self.closed = True


def test_a_model_error_on_the_cluster_is_permanent_an_actor_crash_is_retried() -> None:
    wrong = _Dataset(
        RuntimeError("ray.exceptions.ActorDiedError: ...\nModelMismatch: the CLIP model loaded ...")
    )
    with pytest.raises(PermanentJobError, match="on the Ray cluster: ModelMismatch"):
        list(enrich._batches(wrong))
    crash = _Dataset(RuntimeError("The actor died unexpectedly before finishing this task."))
    with pytest.raises(RuntimeError, match="died unexpectedly"):  # transient: the job system retries
        list(enrich._batches(crash))
    # stopping early (a cancel) closes the pipeline
    stopped = _Dataset(RuntimeError("never reached"))
    batches = enrich._batches(stopped)
    assert next(batches) == {"sample_id": [1]}
    batches.close()
    assert stopped.closed


def test_faces_travel_unchanged() -> None:
    faces = [
        {
            "box": (0.1, 0.2, 0.3, 0.4),
            "landmarks": [[0.1, 0.2]] * 5,
            "score": 0.9,
            "embedding": b"\x00\x01" * 64,
            "crop": b"RIFF....WEBP",
        }
    ]
    assert decode_faces(encode_faces(faces)) == faces


def test_importing_vistudio_does_not_import_ray() -> None:
    code = (
        "import sys, vistudio.cli.main, vistudio.jobs.registry as r; r.load_handlers(); "
        "import vistudio.services.enrich, vistudio.ml.enrich; print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
