"""The job queue: a table of jobs that workers claim atomically and hold under a lease.

Status moves queued → running → succeeded | failed | dead | cancelled. A transient failure goes
back to queued with exponential backoff and jitter until ``max_attempts``, then to ``dead`` (the
dead-letter queue); ``requeue`` brings a finished job back. A running job whose lease expired
belongs to a worker that died: ``reap_expired`` treats that as a transient failure.
"""

from __future__ import annotations

import builtins
import random
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vistudio.config import JobSettings
from vistudio.db import Job, JobEvent, utcnow
from vistudio.errors import Conflict, NotFound

FINISHED = ("succeeded", "failed", "dead", "cancelled")


class LeaseLost(Exception):
    """The job is no longer held by this worker (reaped, cancelled or claimed elsewhere)."""


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "project_id": job.project_id,
        "status": job.status,
        "params": job.params,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": {"done": job.progress_done, "total": job.progress_total, "message": job.progress_message},
        "cancel_requested": job.cancel_requested,
        "worker": job.worker,
        "result": job.result,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "run_after": _iso(job.run_after),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


class JobQueue:
    def __init__(self, session_factory: sessionmaker[Session], settings: JobSettings) -> None:
        self.sessions = session_factory
        self.settings = settings

    # --- producers -----------------------------------------------------------------------
    def enqueue(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        project_id: int | None = None,
        max_attempts: int | None = None,
        priority: int = 0,
    ) -> Job:
        with self.sessions.begin() as s:
            job = Job(
                kind=kind,
                params=params,
                project_id=project_id,
                max_attempts=max_attempts or self.settings.max_attempts,
                priority=priority,
                run_after=utcnow(),
                created_at=utcnow(),
            )
            s.add(job)
            s.flush()
            s.add(JobEvent(job_id=job.id, kind="status", data={"status": "queued"}, at=utcnow()))
        return job

    def get(self, job_id: int) -> Job:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            return job

    def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        project_id: int | None = None,
        project_ids: Collection[int] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[builtins.list[Job], int]:
        """Newest first; ``project_ids``: only jobs of these projects or of none (a user's view)."""
        q = select(Job)
        if project_ids is not None:
            q = q.where(or_(Job.project_id.in_(list(project_ids)), Job.project_id.is_(None)))
        if status:
            q = q.where(Job.status.in_(status.split(",")))
        if kind:
            q = q.where(Job.kind == kind)
        if project_id is not None:
            q = q.where(Job.project_id == project_id)
        with self.sessions() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            items = list(s.scalars(q.order_by(Job.id.desc()).offset(offset).limit(limit)))
        return items, total

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once; ask a running one to stop at its next check."""
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            if job.status in FINISHED:
                raise Conflict(f"job {job_id} is already {job.status}")
            if job.status == "queued":
                job.status = "cancelled"
                job.finished_at = utcnow()
                s.add(JobEvent(job_id=job.id, kind="status", data={"status": "cancelled"}, at=utcnow()))
            else:
                job.cancel_requested = True
                s.add(JobEvent(job_id=job.id, kind="status", data={"cancel_requested": True}, at=utcnow()))
        return job

    def requeue(self, job_id: int) -> Job:
        """Put a failed, dead or cancelled job back in the queue with a fresh attempt budget."""
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            if job.status not in ("failed", "dead", "cancelled"):
                raise Conflict(
                    f"only failed, dead or cancelled jobs can be requeued (job {job_id} is {job.status})"
                )
            job.status = "queued"
            job.attempts = 0
            job.cancel_requested = False
            job.error = None
            job.run_after = utcnow()
            job.finished_at = None
            s.add(
                JobEvent(
                    job_id=job.id, kind="status", data={"status": "queued", "requeued": True}, at=utcnow()
                )
            )
        return job

    # --- workers -------------------------------------------------------------------------
    def claim(self, worker: str, *, kinds: builtins.list[str] | None = None, job_id: int | None = None) -> Job | None:
        """Atomically take the next runnable job (or the given one) and lease it to ``worker``."""
        now = utcnow()
        pick = select(Job.id).where(Job.status == "queued", Job.run_after <= now)
        if kinds:
            pick = pick.where(Job.kind.in_(kinds))
        if job_id is not None:
            pick = pick.where(Job.id == job_id)
        pick = pick.order_by(Job.priority.desc(), Job.id).limit(1).with_for_update(skip_locked=True)
        stmt = (
            update(Job)
            .where(Job.id == pick.scalar_subquery(), Job.status == "queued")
            .values(
                status="running",
                worker=worker,
                attempts=Job.attempts + 1,
                lease_until=now + timedelta(seconds=self.settings.lease_seconds),
                started_at=now,
            )
            .returning(Job.id)
        )
        with self.sessions.begin() as s:
            claimed = s.scalar(stmt)
            if claimed is None:
                return None
            s.add(
                JobEvent(job_id=claimed, kind="status", data={"status": "running", "worker": worker}, at=now)
            )
        return self.get(claimed)

    def heartbeat(self, job_id: int, worker: str) -> bool:
        """Extend the lease; returns whether a cancel was requested. Raises LeaseLost."""
        with self.sessions.begin() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == worker, Job.status == "running")
                .values(lease_until=utcnow() + timedelta(seconds=self.settings.lease_seconds))
                .returning(Job.cancel_requested)
            ).first()
        if res is None:
            raise LeaseLost(f"job {job_id} is no longer held by {worker}")
        return bool(res[0])

    def progress(self, job_id: int, *, done: int, total: int | None, message: str | None = None) -> None:
        with self.sessions.begin() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(progress_done=done, progress_total=total, progress_message=(message or "")[:500])
            )
            s.add(
                JobEvent(
                    job_id=job_id,
                    kind="progress",
                    data={"done": done, "total": total, "message": message},
                    at=utcnow(),
                )
            )

    def event(self, job_id: int, kind: str, data: dict[str, Any]) -> None:
        with self.sessions.begin() as s:
            s.add(JobEvent(job_id=job_id, kind=kind, data=data, at=utcnow()))

    def events_after(self, job_id: int, after_id: int = 0, limit: int = 500) -> builtins.list[JobEvent]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
                    .order_by(JobEvent.id)
                    .limit(limit)
                )
            )

    def event_log(self, job_id: int, *, limit: int = 200) -> tuple[builtins.list[JobEvent], int]:
        """The job's newest ``limit`` events other than progress ticks (oldest first), and how many
        progress events it has: an import of 100,000 files writes thousands of ticks that would bury
        the status changes, logs and metrics a reader looks for."""
        with self.sessions() as s:
            rows = list(
                s.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job_id, JobEvent.kind != "progress")
                    .order_by(JobEvent.id.desc())
                    .limit(limit)
                )
            )
            ticks = s.scalar(
                select(func.count())
                .select_from(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.kind == "progress")
            )
        return rows[::-1], int(ticks or 0)

    def _finish(self, job_id: int, owner: str, status: str, **values: Any) -> bool:
        now = utcnow()
        with self.sessions.begin() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == owner, Job.status == "running")
                .values(status=status, lease_until=None, **values)
                .returning(Job.id)
            ).first()
            if res is None:
                return False
            data = {"status": status}
            if values.get("error"):
                data["error"] = values["error"].get("message")
            s.add(JobEvent(job_id=job_id, kind="status", data=data, at=now))
        return True

    def complete(self, job_id: int, worker: str, result: dict[str, Any]) -> bool:
        return self._finish(job_id, worker, "succeeded", result=result, finished_at=utcnow())

    def mark_cancelled(self, job_id: int, worker: str, result: dict[str, Any] | None = None) -> bool:
        return self._finish(job_id, worker, "cancelled", result=result, finished_at=utcnow())

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter, in seconds."""
        cap = min(
            self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2 ** max(0, attempts - 1)
        )
        return random.uniform(cap / 2, cap)

    def fail(
        self, job_id: int, worker: str, error: dict[str, Any], *, transient: bool, delay: float | None = None
    ) -> str:
        """Record a failure; returns the new status (queued for a retry, failed, or dead).

        A retry waits ``delay`` seconds, by default the exponential backoff for this attempt.
        """
        job = self.get(job_id)
        if transient and job.attempts < job.max_attempts:
            delay = self.backoff(job.attempts) if delay is None else delay
            ok = self._finish(
                job_id,
                worker,
                "queued",
                error=error,
                worker=None,
                run_after=utcnow() + timedelta(seconds=delay),
            )
            return "queued" if ok else job.status
        status = "dead" if transient else "failed"
        self._finish(job_id, worker, status, error=error, finished_at=utcnow())
        return status

    def reap_expired(self) -> int:
        """Requeue (or dead-letter) running jobs whose worker stopped renewing its lease."""
        now = utcnow()
        with self.sessions() as s:
            expired = list(
                s.execute(select(Job.id, Job.worker).where(Job.status == "running", Job.lease_until < now))
            )
        for job_id, worker in expired:
            self.fail(
                job_id,
                worker or "",
                {"message": "worker lost its lease (crashed or stopped)", "transient": True},
                transient=True,
                delay=0,  # the job did nothing wrong: its worker vanished, so retry at once
            )
        return len(expired)
