"""A training's live numbers (step, images/s, ETA) and their text: ``epoch 1/10 · 85 img/s · ETA 1:23``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vistudio.db import JobEvent


def clock_text(seconds: float) -> str:
    """``83`` → ``"1:23"``, ``3723`` → ``"1:02:03"``: a time left, as a stopwatch shows it."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def speed_text(images_per_s: float) -> str:
    """``85.2`` → ``"85 img/s"``; below 10, one decimal (``"0.4 img/s"``, not ``"0 img/s"``)."""
    return f"{images_per_s:,.0f} img/s" if images_per_s >= 10 else f"{images_per_s:.1f} img/s"


def live_text(live: dict[str, Any]) -> str:
    """The training job's progress message: ``"epoch 1/10 · 85 img/s · ETA 1:23"`` (steps are the
    job's done/total). Short enough for the CLI's progress bar."""
    text = f"epoch {live['epoch']}/{live['epochs']}"
    if live.get("images_per_s"):
        text += f" · {speed_text(live['images_per_s'])}"
    if live.get("eta_s") is not None:
        text += f" · ETA {clock_text(live['eta_s'])}"
    return text


def _live(s: Session, job_id: int) -> dict[str, Any] | None:
    """The latest ``on_progress`` numbers of a training job (step, images/s, ETA…), if any yet."""
    # the newest progress event is among the last few: at most an epoch and two checkpoint
    # events follow one
    rows = s.scalars(
        select(JobEvent.data)
        .where(JobEvent.job_id == job_id, JobEvent.kind == "metrics")
        .order_by(JobEvent.id.desc())
        .limit(20)
    )
    for data in rows:
        if data.get("scope") == "progress" and isinstance(data.get("live"), dict):
            return dict(data["live"])
    return None
