from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from factories import claim_all_concurrently
from vistudio.db import Job, utcnow
from vistudio.errors import Conflict, NotFound
from vistudio.jobs.queue import JobQueue
from vistudio.jobs.worker import JobContext, Worker
from vistudio.studio import Studio


def _expire_backoff(studio: Studio, job_id: int) -> None:
    with studio.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(run_after=utcnow() - timedelta(seconds=1)))


def test_claim_is_atomic_across_threads(studio: Studio) -> None:
    ids, claimed = claim_all_concurrently(studio, 20)
    assert sorted(claimed) == sorted(ids)  # every job exactly once


def test_priority_then_fifo(studio: Studio) -> None:
    q = studio.queue
    a = q.enqueue("noop", {})
    b = q.enqueue("noop", {}, priority=5)
    c = q.enqueue("noop", {})
    order = [q.claim("w").id for _ in range(3)]  # type: ignore[union-attr]
    assert order == [b.id, a.id, c.id]


def test_retry_backoff_then_dead_letter_then_requeue(studio: Studio) -> None:
    q = JobQueue(studio.sessions, studio.settings.jobs.model_copy(update={"backoff_base_seconds": 30}))
    job = q.enqueue("noop", {}, max_attempts=2)
    claimed = q.claim("w")
    assert claimed is not None and claimed.attempts == 1
    assert q.fail(job.id, "w", {"message": "disk busy"}, transient=True) == "queued"
    assert q.get(job.id).run_after > utcnow()  # backoff keeps it out of reach
    assert q.claim("w") is None
    _expire_backoff(studio, job.id)
    assert q.claim("w") is not None
    assert q.fail(job.id, "w", {"message": "disk busy"}, transient=True) == "dead"
    dead, total = q.list(status="dead")
    assert total == 1 and dead[0].error == {"message": "disk busy"}
    q.requeue(job.id)
    again = q.get(job.id)
    assert again.status == "queued" and again.attempts == 0 and again.error is None


def test_permanent_failure_does_not_retry(studio: Studio) -> None:
    q = studio.queue
    job = q.enqueue("noop", {}, max_attempts=5)
    q.claim("w")
    assert q.fail(job.id, "w", {"message": "bad input"}, transient=False) == "failed"
    assert q.get(job.id).attempts == 1


def test_backoff_grows_and_is_capped(studio: Studio) -> None:
    q = JobQueue(studio.sessions, studio.settings.jobs.model_copy(update={"backoff_base_seconds": 1, "backoff_max_seconds": 10}))
    assert all(0.5 <= q.backoff(1) <= 1 for _ in range(50))
    assert all(2 <= q.backoff(3) <= 4 for _ in range(50))
    assert all(5 <= q.backoff(20) <= 10 for _ in range(50))


def test_expired_lease_is_reaped_and_retried(studio: Studio) -> None:
    q = studio.queue
    job = q.enqueue("noop", {})
    q.claim("crashed-worker")
    with studio.sessions.begin() as s:
        s.execute(update(Job).where(Job.id == job.id).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert q.reap_expired() == 1
    reaped = q.get(job.id)
    assert reaped.status == "queued" and "lease" in (reaped.error or {})["message"]
    # the dead worker cannot finish a job it no longer holds
    assert q.complete(job.id, "crashed-worker", {}) is False


def test_cancel_queued_and_running(studio: Studio) -> None:
    q = studio.queue
    queued = q.enqueue("noop", {})
    assert q.cancel(queued.id).status == "cancelled"
    with pytest.raises(Conflict):
        q.cancel(queued.id)
    running = q.enqueue("noop", {})
    q.claim("w")
    q.cancel(running.id)
    assert q.heartbeat(running.id, "w") is True
    with pytest.raises(NotFound):
        q.cancel(999)


def test_worker_runs_handler_with_progress_and_cooperative_cancel(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    from vistudio.jobs import registry

    started = threading.Event()

    def slow(ctx: JobContext) -> dict[str, Any]:
        for i in range(1000):
            ctx.progress(i, 1000, f"step {i}", force=True)
            started.set()
            ctx.check_cancelled()
            time.sleep(0.01)
        return {"finished": True}

    monkeypatch.setitem(registry.HANDLERS.entries, "slow-test", slow)
    job = studio.queue.enqueue("slow-test", {})
    worker = Worker(studio, kinds=["slow-test"])
    t = threading.Thread(target=worker.run_one)
    t.start()
    assert started.wait(5)
    studio.queue.cancel(job.id)
    t.join(10)
    final = studio.queue.get(job.id)
    assert final.status == "cancelled"
    assert 0 < final.progress_done < 1000
    kinds = {e.kind for e in studio.queue.events_after(job.id)}
    assert {"status", "progress"} <= kinds


def test_worker_classifies_errors(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    from vistudio.errors import InvalidInput
    from vistudio.jobs import registry

    calls = {"n": 0}

    def flaky(ctx: JobContext) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 3:
            raise OSError("temporarily unavailable")
        return {"ok": calls["n"]}

    def bad(ctx: JobContext) -> dict[str, Any]:
        raise InvalidInput("no such column 'label'")

    monkeypatch.setitem(registry.HANDLERS.entries, "flaky-test", flaky)
    monkeypatch.setitem(registry.HANDLERS.entries, "bad-test", bad)
    w = Worker(studio, kinds=["flaky-test", "bad-test"])
    job = studio.queue.enqueue("flaky-test", {}, max_attempts=3)
    for _ in range(3):
        w.run_one(job_id=job.id)
        _expire_backoff(studio, job.id)
    final = studio.queue.get(job.id)
    assert final.status == "succeeded" and final.result == {"ok": 3} and final.attempts == 3

    job2 = studio.queue.enqueue("bad-test", {})
    w.run_one(job_id=job2.id)
    failed = studio.queue.get(job2.id)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.error is not None and failed.error["message"] == "no such column 'label'"
    assert "Traceback" in failed.error["traceback"]


def test_run_to_end_waits_for_a_job_another_worker_claimed(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's worker took the job first: the caller waits for its end rather than seeing it
    still running (the demo and the CLI run jobs in-process beside a possibly running server)."""
    from vistudio.jobs import registry

    release = threading.Event()

    def gated(ctx: JobContext) -> dict[str, Any]:
        assert release.wait(10)
        return {"by": ctx.worker}

    monkeypatch.setitem(registry.HANDLERS.entries, "gated-test", gated)
    job = studio.queue.enqueue("gated-test", {})
    other = Worker(studio, kinds=["gated-test"], name="server")
    t = threading.Thread(target=other.run_one)
    t.start()
    while studio.queue.get(job.id).status != "running":
        time.sleep(0.01)
    here = Worker(studio, kinds=["gated-test"], name="here")
    threading.Timer(0.3, release.set).start()
    final = here.run_to_end(job.id, poll=0.02)
    t.join(10)
    assert final.status == "succeeded" and final.result == {"by": "server"}


def test_duplicate_handler_names_are_refused() -> None:
    from vistudio.jobs.registry import job_handler

    with pytest.raises(ValueError, match="already registered"):
        job_handler("import")(lambda ctx: {})
