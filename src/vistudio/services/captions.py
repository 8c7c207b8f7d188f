"""Captions of a project's photos: a ``captions`` job writes one caption per photo with the
workspace's captioning model (``captions.model``, see ``ml/captions.py``); a user writes their
own, which always wins and which no run overwrites.

The job captions the photos that have no caption of the current model *and version* (a model
changed in place, or another model configured, captions every photo again; the older captions stay
until the photo is deleted), in batches of ``captions.batch_size``, with progress and cancel; the
model stays loaded in the studio's model cache (idle TTL) between runs. Photos are read as drafts
of ``captions.max_side`` px; an unreadable photo is reported and skipped. Every written caption
goes into the full-text index in the same transaction, so photos are found by the words of their
captions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vistudio.db import Job, Sample
from vistudio.db.captions import USER, Caption
from vistudio.errors import BadRequest, NotFound
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext
from vistudio.ml.captions import Captioner, load_captioner, resolve_name
from vistudio.services import text_index
from vistudio.services.projects import find_project
from vistudio.studio import Studio

log = logging.getLogger(__name__)
KIND = "captions"
MAX_CAPTION = 2000


def _device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _entry(studio: Studio) -> tuple[tuple[Any, ...], Any]:
    cfg = studio.settings.captions
    device = _device(cfg.device)

    def load() -> Captioner:
        from vistudio.ml.weights import WeightsPolicy

        t = time.monotonic()
        model = load_captioner(
            cfg.model,
            policy=WeightsPolicy.from_settings(studio.settings),
            device=device,
            max_new_tokens=cfg.max_new_tokens,
            num_beams=cfg.num_beams,
        )
        log.info("loaded captioning model %s on %s in %.1f s", model.name, device, time.monotonic() - t)
        return model

    return ("captioner", resolve_name(cfg.model), device, cfg.max_new_tokens, cfg.num_beams), load


def start_captions(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Queue the captions job of the project (or give the one queued or running) → the job. In an
    offline workspace the model is looked for here first, so that one not on this machine is a
    clear error at once (``ModelUnavailable``: 503); online, the job downloads it."""
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id = p.id
        running = s.scalar(
            select(Job).where(Job.kind == KIND, Job.project_id == p.id, Job.status.in_(("queued", "running")))
        )
        if running is not None:
            return job_dict(running)
    from vistudio.ml.captions import locate
    from vistudio.ml.weights import WeightsPolicy

    policy = WeightsPolicy.from_settings(studio.settings)
    if policy.offline:
        locate(studio.settings.captions.model, policy)
    job = studio.queue.enqueue(KIND, {"project_id": project_id}, project_id=project_id, max_attempts=2)
    return job_dict(job)


def pending_captions(studio: Studio, project_id: int, model: str, version: str) -> list[tuple[int, Path]]:
    """The project's photos without a caption of ``model`` at ``version``: ``(sample id, file)``."""
    with studio.sessions() as s:
        done = select(Caption.sample_id).where(
            Caption.project_id == project_id, Caption.model == model, Caption.version == version
        )
        todo = s.execute(
            select(Sample.id, Sample.storage, Sample.path)
            .where(Sample.project_id == project_id, Sample.id.not_in(done))
            .order_by(Sample.id)
        ).all()
    return [(sid, studio.photo_file(storage, path)) for sid, storage, path in todo]


def store_captions(
    studio: Studio, *, project_id: int, model: str, version: str, captions: list[tuple[int, str]]
) -> int:
    """Write ``(sample id, text)`` captions of ``model`` at ``version`` in one transaction, with
    the full-text index; a photo deleted meanwhile or already captioned by this model and
    version is left out (a rerun writes nothing twice). → captions written."""
    if not captions:
        return 0
    ids = [sid for sid, _ in captions]
    with studio.sessions.begin() as s:
        alive = set(s.scalars(select(Sample.id).where(Sample.id.in_(ids))))
        have = set(
            s.scalars(
                select(Caption.sample_id).where(
                    Caption.sample_id.in_(ids), Caption.model == model, Caption.version == version
                )
            )
        )
        rows = [
            Caption(
                sample_id=sid, model=model, version=version, project_id=project_id, text=text[:MAX_CAPTION]
            )
            for sid, text in captions
            if sid in alive and sid not in have  # deleted while it was being captioned
        ]
        s.add_all(rows)
        s.flush()
        text_index.sync(s, [r.sample_id for r in rows])
    return len(rows)


@job_handler(KIND)
def run_captions(ctx: JobContext) -> dict[str, Any]:
    from vistudio.ml.captions import caption_image

    studio = ctx.studio
    cfg = studio.settings.captions
    project_id = int(ctx.params["project_id"])
    ctx.progress(0, None, "loading the captioning model", force=True)
    with studio.cache.hold(*_entry(studio)) as model:
        todo = pending_captions(studio, project_id, model.name, model.version)
        written, skipped = 0, []
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            images, ids = [], []
            for sid, file in batch:
                try:
                    img = caption_image(file, max_side=cfg.max_side)
                except Exception as exc:  # an unreadable photo is reported, not fatal
                    skipped.append({"sample_id": sid, "reason": str(exc)[:300]})
                    continue
                images.append(img)
                ids.append(sid)
            texts = model.caption(images)
            written += store_captions(
                studio,
                project_id=project_id,
                model=model.name,
                version=model.version,
                captions=list(zip(ids, texts, strict=True)),
            )
            ctx.progress(start + len(batch), len(todo), f"captioning with {model.name} on {model.device}")
            ctx.check_cancelled()
    return {"model": model.name, "version": model.version, "captioned": written, "skipped": skipped[:100]}


def captions_of(studio: Studio, sample_id: int) -> dict[str, Any]:
    """A photo's captions → ``{"caption": the one it shows, "source": "user" | model name | None,
    "captions": [{"model", "version", "text", "created_at"}]}``."""
    with studio.sessions() as s:
        if s.get(Sample, sample_id) is None:
            raise NotFound(f"sample {sample_id} not found")
        return read_captions(s, sample_id, model=resolve_name(studio.settings.captions.model))


def read_captions(s: Session, sample_id: int, *, model: str) -> dict[str, Any]:
    """``captions_of`` in the caller's session (the photo's detail reads them with the rest)."""
    rows = s.scalars(
        select(Caption).where(Caption.sample_id == sample_id).order_by(Caption.created_at.desc())
    ).all()
    listed = [
        {"model": r.model, "version": r.version, "text": r.text, "created_at": r.created_at.isoformat() + "Z"}
        for r in rows
    ]
    return {**shown(listed, model), "captions": listed}


def shown(rows: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The caption a photo shows among its captions (newest first): the user's, else the
    configured model's newest, else any model's newest."""
    for pick in (
        lambda r: r["model"] == USER,
        lambda r: r["model"] == model,
        lambda r: True,
    ):
        found = next((r for r in rows if pick(r)), None)
        if found is not None:
            return {"caption": found["text"], "source": found["model"]}
    return {"caption": None, "source": None}


def set_caption(studio: Studio, sample_id: int, text: str | None) -> dict[str, Any]:
    """Write the user's caption of a photo (kept over every model's, never overwritten by a run);
    an empty text removes it (the model's caption shows again)."""
    value = " ".join((text or "").split())
    if len(value) > MAX_CAPTION or any(ord(c) < 32 for c in (text or "") if c not in "\t\n\r"):
        raise BadRequest(f"a caption is at most {MAX_CAPTION} characters, without control characters")
    with studio.sessions.begin() as s:
        sample = s.get(Sample, sample_id)
        if sample is None:
            raise NotFound(f"sample {sample_id} not found")
        s.execute(delete(Caption).where(Caption.sample_id == sample_id, Caption.model == USER))
        if value:
            s.add(
                Caption(sample_id=sample_id, model=USER, version="", project_id=sample.project_id, text=value)
            )
        s.flush()
        text_index.sync(s, [sample_id])
    return captions_of(studio, sample_id)


def caption_status(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """How many of the project's photos have a caption of the configured model, or the user's."""
    model = resolve_name(studio.settings.captions.model)
    with studio.sessions() as s:
        p = find_project(s, project)
        total = s.scalar(select(func.count(Sample.id)).where(Sample.project_id == p.id)) or 0
        captioned = (
            s.scalar(
                select(func.count(func.distinct(Caption.sample_id))).where(
                    Caption.project_id == p.id, Caption.model.in_((model, USER))
                )
            )
            or 0
        )
    return {"model": model, "photos": int(total), "captioned": int(captioned)}
