"""Workers: claim jobs, run their handlers with a heartbeat, record the outcome."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any

from vistudio.errors import VistudioError
from vistudio.jobs.queue import FINISHED, JobQueue, LeaseLost
from vistudio.jobs.registry import get_handler, handler_kinds
from vistudio.telemetry.context import job_context

if TYPE_CHECKING:
    from vistudio.db import Job
    from vistudio.studio import Studio

log = logging.getLogger(__name__)
# LogRecord attributes a job's log data must not overwrite (logging refuses them in ``extra``)
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JobCancelled(Exception):
    """Raised by ``JobContext.check_cancelled`` when a user asked the job to stop."""


class PermanentJobError(Exception):
    """A failure that retrying cannot fix (bad input, missing source)."""


class JobContext:
    """What a handler gets: its job's params, the studio, progress reporting and cancel checks."""

    PROGRESS_INTERVAL = 0.25

    def __init__(self, studio: Studio, job: Job, worker: str) -> None:
        self.studio = studio
        self.job_id = job.id
        self.params: dict[str, Any] = dict(job.params or {})
        self.project_id = job.project_id
        self.attempt = job.attempts
        self.worker = worker
        self.cancel_requested = threading.Event()
        if job.cancel_requested:  # asked while an earlier attempt ran, before its worker died
            self.cancel_requested.set()
        self.lease_lost = threading.Event()
        self._last_progress = 0.0
        self._items_seen = 0  # progress counted into vistudio_job_items_total so far
        self._items = studio.metrics.items.labels(job.kind)

    @property
    def queue(self) -> JobQueue:
        return self.studio.queue

    def progress(
        self, done: int, total: int | None, message: str | None = None, *, force: bool = False
    ) -> None:
        """Report progress; throttled so a loop may call it for every item. Items done count
        towards ``vistudio_job_items_total`` (a count that goes down starts a new phase)."""
        if done > self._items_seen:
            self._items.inc(done - self._items_seen)
        self._items_seen = done
        now = time.monotonic()
        if force or done == total or now - self._last_progress >= self.PROGRESS_INTERVAL:
            self._last_progress = now
            self.queue.progress(self.job_id, done=done, total=total, message=message)

    def log(self, message: str, **data: Any) -> None:
        """A line in the job's event log and in the workspace's JSON log (with the job's id)."""
        self.queue.event(self.job_id, "log", {"message": message, **data})
        log.info(message, extra={k: v for k, v in data.items() if k not in _RESERVED})

    def check_cancelled(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(f"job {self.job_id} lost its lease")
        if self.cancel_requested.is_set():
            raise JobCancelled()


class Worker:
    def __init__(self, studio: Studio, *, name: str | None = None, kinds: list[str] | None = None) -> None:
        self.studio = studio
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.kinds = kinds or handler_kinds()

    @property
    def queue(self) -> JobQueue:
        return self.studio.queue

    def run_one(self, job_id: int | None = None) -> Job | None:
        """Claim one runnable job (or the given one) and run it to the end. None if nothing to do."""
        reaped = self.queue.reap_expired()
        if reaped:
            self.studio.metrics.jobs_reaped.inc(reaped)
        job = self.queue.claim(self.name, kinds=self.kinds, job_id=job_id)
        if job is None:
            return None
        self.execute(job)
        return self.queue.get(job.id)

    def run_to_end(self, job_id: int, *, poll: float = 0.1) -> Job:
        """Run the job here, or wait for its end when another worker (a running server's) claimed
        it first; a retry waiting out its backoff is taken here when due. The finished job."""
        while True:
            job = self.queue.get(job_id)
            if job.status in FINISHED:
                return job
            if self.run_one(job_id=job_id) is None:
                time.sleep(poll)

    def run_forever(self, stop: threading.Event) -> None:
        poll = self.studio.settings.jobs.poll_seconds
        while not stop.is_set():
            try:
                job = self.run_one()
            except Exception:  # a broken database connection must not kill the worker thread
                log.exception("worker %s: error while claiming", self.name)
                job = None
            if job is None:
                stop.wait(poll)

    def execute(self, job: Job) -> None:
        with (
            self.studio.logging_to_file(),
            job_context(home=self.studio.home, job=job.id, kind=job.kind, project_name=self._project(job)),
        ):
            self._execute(job)

    def _project(self, job: Job) -> str | None:
        if job.project_id is None:
            return None
        from vistudio.db import Project

        try:
            with self.studio.sessions() as s:
                p = s.get(Project, job.project_id)
                return p.name if p is not None else str(job.project_id)
        except Exception:  # the log context is a nicety: never a reason for a job not to run
            return str(job.project_id)

    def _execute(self, job: Job) -> None:
        ctx = JobContext(self.studio, job, self.name)
        metrics = self.studio.metrics
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(ctx, stop_beat), daemon=True)
        log.info("job started (attempt %d of %d) on %s", job.attempts, job.max_attempts, self.name)
        started = time.perf_counter()
        outcome = "succeeded"
        beat.start()
        try:
            handler = get_handler(job.kind)
            result = handler(ctx)
        except JobCancelled:
            outcome = "cancelled"
            self.queue.mark_cancelled(job.id, self.name)
        except LeaseLost:
            outcome = "lease_lost"
            log.warning("job %s lost its lease; leaving it to its new owner", job.id)
        except (VistudioError, PermanentJobError, KeyError) as exc:
            outcome = self.queue.fail(job.id, self.name, _error(exc, transient=False), transient=False)
            log.error("job failed: %s", _error(exc, transient=False)["message"], exc_info=exc)
        except Exception as exc:
            outcome = self.queue.fail(job.id, self.name, _error(exc, transient=True), transient=True)
            log.error("job attempt failed (%s): %s", outcome, _error(exc, transient=True)["message"], exc_info=exc)
        else:
            self.queue.complete(job.id, self.name, result)
        finally:
            stop_beat.set()
            beat.join(timeout=5)
        seconds = time.perf_counter() - started
        if outcome == "queued":
            outcome = "retried"
            metrics.job_retries.labels(job.kind).inc()
        elif outcome == "dead":
            metrics.jobs_dead_lettered.labels(job.kind).inc()
        metrics.job_seconds.labels(job.kind, outcome).observe(seconds)
        log.info("job %s in %.3f s", outcome, seconds, extra={"outcome": outcome, "seconds": round(seconds, 3)})

    def _heartbeat(self, ctx: JobContext, stop: threading.Event) -> None:
        interval = self.studio.settings.jobs.heartbeat_seconds
        while not stop.wait(interval):
            try:
                if self.queue.heartbeat(ctx.job_id, self.name):
                    ctx.cancel_requested.set()
            except LeaseLost:
                ctx.lease_lost.set()
                return
            except Exception:
                log.exception("heartbeat failed for job %s", ctx.job_id)
        # one last look so a cancel sent during a short job is still honoured by callers
        return


def _error(exc: BaseException, *, transient: bool) -> dict[str, Any]:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"type": type(exc).__name__, "message": message, "transient": transient, "traceback": tb[-4000:]}


class EmbeddedWorkers:
    """Worker threads that live inside ``vistudio serve``."""

    def __init__(self, studio: Studio, count: int) -> None:
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(
                target=Worker(studio).run_forever, args=(self.stop,), daemon=True, name=f"worker-{i}"
            )
            for i in range(count)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=timeout)
