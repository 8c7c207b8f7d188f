"""Semantic search: text → image and image → image (an uploaded file or a sample) over a project's
vectors, restricted by metadata filters, each result with its score and why it matched.

The query vector comes from the model the project searches with (``embeddings.search_model``):
a text or an uploaded image is encoded with it, a sample's stored vector is used as it is (an
image not embedded yet is encoded on the fly). Filters (class, tag, date taken, name) select the
allowed sample ids in SQL and the index searches among just those: the true top ``k`` of the
filtered set, not the top ``k`` filtered afterwards. Samples without a vector yet are not in the
results; the answer says how many are pending.

When the configured model differs from the one a project searches with, a search starts the
re-embedding job (once) and keeps answering from the old vectors until the new set is complete.
"""

from __future__ import annotations

import calendar
import io
import re
from dataclasses import dataclass, replace
from datetime import datetime, time
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vistudio.db import Job, Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.db.embeddings import Embedding, EmbeddingModel, EmbeddingSet
from vistudio.errors import InvalidInput, NotFound, VistudioError
from vistudio.jobs.queue import job_dict
from vistudio.services import embeddings as emb
from vistudio.services import vector_index
from vistudio.services.projects import find_project
from vistudio.services.samples import filtered_query, labels_for, person_ids
from vistudio.studio import Studio

MAX_K = 500
MAX_OFFSET = 1500
MAX_TEXT = 1000
MAX_UPLOAD_PIXELS = 50_000_000  # a search image is shrunk to ~224 px: more is only a memory risk
FILTER_KEYS = ("label", "tag", "from", "to", "year", "name", "person")
_ALIASES = {"class": "label", "taken_from": "from", "taken_to": "to", "q": "name"}


@dataclass(frozen=True)
class Filters:
    label: str | None = None
    tag: str | None = None
    taken_from: datetime | None = None
    taken_to: datetime | None = None
    name: str | None = None
    dates: str | None = None  # how the date range was given, for the explanation
    people: tuple[str, ...] = ()  # photos of all these people (ids or names)
    people_shown: tuple[str, ...] = ()  # how the explanation names them (their names, once found)

    @property
    def any(self) -> bool:
        return any((self.label, self.tag, self.taken_from, self.taken_to, self.name, self.people))

    def describe(self) -> str:
        parts = []
        if self.label:
            parts.append(f"label={self.label}")
        if self.tag:
            parts.append(f"tag={self.tag}")
        if self.dates:
            parts.append(self.dates)
        if self.name:
            parts.append(f"name contains {self.name!r}")
        if self.people:
            parts.append(f"showing {' and '.join(self.people_shown or self.people)}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "tag": self.tag,
            "taken_from": self.taken_from.isoformat() if self.taken_from else None,
            "taken_to": self.taken_to.isoformat() if self.taken_to else None,
            "name": self.name,
            "person": list(self.people),
        }


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def _parse_date(value: str, key: str, *, end: bool) -> datetime:
    """``2024``, ``2024-05``, ``2024-05-31`` (the start or the end of that period) or an ISO time."""
    value = value.strip()
    m = _DATE.match(value)
    try:
        if m:
            y, mo, d = int(m[1]), int(m[2] or 0), int(m[3] or 0)
            if not end:
                return datetime(y, mo or 1, d or 1)
            if d:
                return datetime.combine(datetime(y, mo, d).date(), time.max)
            if mo:
                return datetime.combine(datetime(y, mo, calendar.monthrange(y, mo)[1]).date(), time.max)
            return datetime.combine(datetime(y, 12, 31).date(), time.max)
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise InvalidInput(
            f"{key} must be a date like 2024, 2024-05 or 2024-05-31 (got {value[:40]!r})"
        ) from None


def make_filters(values: dict[str, Any] | None) -> Filters:
    """Filters from ``{key: value}``: label (or class), tag, from, to, year, name. Unknown keys are refused."""
    raw: dict[str, str] = {}
    people: list[str] = []
    for key, value in (values or {}).items():
        if value is None or value == "":
            continue
        k = _ALIASES.get(str(key).strip().lower(), str(key).strip().lower())
        if k not in FILTER_KEYS:
            raise InvalidInput(
                f"unknown filter {key!r}; use {', '.join(FILTER_KEYS)}", details={"filter": str(key)[:100]}
            )
        if k == "person":  # one person, or a list of people shown together
            names = [str(v).strip() for v in (value if isinstance(value, list | tuple) else [value])]
            if len(names) > 20 or any(len(n) > 200 for n in names):
                raise InvalidInput("person: at most 20 people of 200 characters each")
            people.extend(n for n in names if n)
            continue
        v = value.isoformat() if isinstance(value, datetime) else str(value)
        if len(v) > 200:
            raise InvalidInput(f"filter {k} is too long (200 characters at most)")
        raw[k] = v.strip()
    start = end = None
    if "year" in raw:
        if not re.fullmatch(r"\d{4}", raw["year"]):
            raise InvalidInput(f"year must be four digits (got {raw['year'][:20]!r})")
        start, end = _parse_date(raw["year"], "year", end=False), _parse_date(raw["year"], "year", end=True)
    if "from" in raw:
        start = _parse_date(raw["from"], "from", end=False)
    if "to" in raw:
        end = _parse_date(raw["to"], "to", end=True)
    if start and end and start > end:
        raise InvalidInput("the 'from' date is after the 'to' date")
    lo, hi = raw.get("from") or raw.get("year"), raw.get("to") or raw.get("year")
    dates = None
    if lo and hi:
        dates = lo if lo == hi else f"{lo}–{hi}"
    elif lo or hi:
        dates = f"from {lo}" if lo else f"until {hi}"
    return Filters(
        label=raw.get("label"),
        tag=raw.get("tag"),
        taken_from=start,
        taken_to=end,
        name=raw.get("name"),
        dates=dates,
        people=tuple(people),
    )


def parse_filter_args(pairs: list[str] | None) -> dict[str, str]:
    """``["label=cat", "year=2024"]`` → ``{"label": "cat", "year": "2024"}`` (the CLI's ``--filter``)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"a filter is KEY=VALUE (got {pair[:60]!r}); keys: {', '.join(FILTER_KEYS)}")
        out[key.strip()] = value
    return out


def _allowed_ids(s: Session, project_id: int, f: Filters) -> np.ndarray | None:
    """Sample ids a search may return, or None for all of them. Samples hidden by a duplicate
    review are out of search results as they are out of browsing."""
    if not f.any:
        hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id).limit(1)
        if s.scalar(hidden) is None:
            return None
    stmt = filtered_query(
        project_id,
        label=f.label,
        tag=f.tag,
        split=None,
        subset=None,
        has_annotations=None,
        taken_from=f.taken_from,
        taken_to=f.taken_to,
        dup_group=None,
        duplicates_only=False,
        q=f.name,
        include_hidden=False,
        people=person_ids(s, project_id, f.people),
    ).with_only_columns(Sample.id)
    return np.fromiter(s.scalars(stmt), dtype=np.int64)


def _people_shown(s: Session, project_id: int, refs: tuple[str, ...]) -> tuple[str, ...]:
    """The people a filter names, as the People pages call them: a name, or "unnamed person #ID"."""
    from vistudio.db.faces import Person

    ids = person_ids(s, project_id, refs)
    names: dict[int, str | None] = {
        i: n for i, n in s.execute(select(Person.id, Person.name).where(Person.id.in_(ids)))
    }
    return tuple(names.get(i) or f"unnamed person #{i}" for i in ids)


def _check_query(text: str | None, sample_id: int | None, image: bytes | None) -> str | None:
    given = sum(x is not None for x in (text, sample_id, image))
    if given != 1:
        raise InvalidInput("search with exactly one of: text, sample_id, image")
    if text is not None:
        text = " ".join(text.split())
        if not text:
            raise InvalidInput("the search text is empty")
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"the search text is too long ({MAX_TEXT} characters at most)")
    return text


def decode_upload(data: bytes, *, min_side: int = 224) -> Any:
    """An uploaded image as RGB (shrink-on-load); ``InvalidInput`` when it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    from vistudio.ml.embed.batch import open_image

    if not data:
        raise InvalidInput("the uploaded image is empty")
    try:
        return open_image(io.BytesIO(data), min_side=min_side, max_pixels=MAX_UPLOAD_PIXELS)
    except UnidentifiedImageError:
        raise InvalidInput("the upload is not an image (JPEG, PNG, WebP, TIFF, BMP, GIF…)") from None
    except Image.DecompressionBombError:
        raise InvalidInput(
            f"the uploaded image has too many pixels ({MAX_UPLOAD_PIXELS // 1_000_000} megapixels at most, "
            "after JPEG shrink-on-load)"
        ) from None
    except Exception as exc:  # Pillow raises many kinds for a bad file
        raise InvalidInput(f"the upload is not a readable image: {str(exc)[:200]}") from None


def search(
    studio: Studio,
    *,
    project: str | int,
    text: str | None = None,
    sample_id: int | None = None,
    image: bytes | None = None,
    image_name: str | None = None,
    k: int = 20,
    offset: int = 0,
    filters: dict[str, Any] | None = None,
    reembed: bool = True,
    query: str | None = None,
) -> dict[str, Any]:
    """The ``k`` samples most similar to the query (after ``offset``), best first.

    → ``{"items": [{"sample_id", "score", "why", "path", "name", ...}], "total", "model",
    "complete", "embedded", "pending", "notices"}``.

    ``query``: the search box's syntax (``vistudio.query_syntax``: words, "phrases", key:value
    filters) — full text and CLIP fused, see ``services.hybrid_search`` — instead of ``text``.
    """
    if query is not None:
        from vistudio.services.hybrid_search import search_query

        if text is not None:
            raise InvalidInput("search with query or text, not both (query takes words too)")
        return search_query(
            studio,
            project=project,
            query=query,
            k=k,
            offset=offset,
            sample_id=sample_id,
            image=image,
            image_name=image_name,
            filters=filters,
            reembed=reembed,
        )
    text = _check_query(text, sample_id, image)
    if not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be between 1 and {MAX_K}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"offset must be between 0 and {MAX_OFFSET}")
    f = make_filters(filters)
    picture = decode_upload(image) if image is not None else None
    notices: list[dict[str, Any]] = []
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id, project_name = p.id, p.name
        if sample_id is not None:
            row = s.get(Sample, sample_id) if 0 < sample_id < 2**63 else None
            if row is None or row.project_id != project_id:
                raise NotFound(f"sample {sample_id} not found in project {project_name!r}")
        total_samples = s.scalar(select(func.count()).where(Sample.project_id == project_id)) or 0
        chosen = emb.search_model(s, project_id)
        allowed = _allowed_ids(s, project_id, f)
        if f.people:
            f = replace(f, people_shown=_people_shown(s, project_id, f.people))
    query_d: dict[str, Any] = (
        {"text": text}
        if text is not None
        else {"sample_id": sample_id}
        if sample_id is not None
        else {"image": image_name or "upload"}
    )
    if reembed:
        notices += _maybe_reembed(studio, project_id, chosen[0] if chosen else None)
    base: dict[str, Any] = {
        "query": query_d,
        "filters": f.to_dict(),
        "k": k,
        "offset": offset,
        "samples": total_samples,
    }
    if chosen is None:
        notices.append(
            {"code": "no_embeddings", "message": "this project has no embeddings yet: run `vistudio embed`"}
        )
        return {
            **base,
            "items": [],
            "total": 0,
            "model": None,
            "complete": False,
            "embedded": 0,
            "pending": total_samples,
            "notices": notices,
        }
    model, complete = chosen
    index = vector_index.project_index(studio, project_id, model)
    embedded = len(index)
    if not complete:
        notices.append(
            {
                "code": "partial",
                "message": "the first embedding of this project is not finished: "
                "results cover the images embedded so far",
            }
        )
    vector, exclude = _query_vector(studio, model, text=text, sample_id=sample_id, picture=picture)
    want = offset + k + (1 if exclude is not None else 0)
    items: list[dict[str, Any]] = []
    if embedded and (allowed is None or allowed.size):
        scores, ids = index.search(vector, min(want, max(1, embedded)), allowed=allowed)
        hits = [
            (int(i), float(sc)) for i, sc in zip(ids[0], scores[0], strict=True) if i >= 0 and i != exclude
        ]
        hits = hits[offset : offset + k]
        items = _items(studio, hits, why=_why(text, sample_id, image_name, f))
    return {
        **base,
        "items": items,
        "total": len(items),
        "model": emb.model_dict(model),
        "complete": complete,
        "embedded": embedded,
        "pending": max(0, total_samples - embedded),
        "notices": notices,
    }


def _query_vector(
    studio: Studio, model: EmbeddingModel, *, text: str | None, sample_id: int | None, picture: Any
) -> tuple[np.ndarray, int | None]:
    """The query as a unit vector (d,), and the sample to leave out of the results."""
    if sample_id is not None:
        with studio.sessions() as s:
            blob = s.scalar(
                select(Embedding.vector).where(
                    Embedding.sample_id == sample_id, Embedding.model_id == model.id
                )
            )
            row = s.get_one(Sample, sample_id)
            path = studio.photo_file(row.storage, row.path)
        if blob is not None:
            return np.frombuffer(blob, dtype="<f4", count=model.dim).copy(), sample_id
        # not embedded yet: encode its image now
        try:
            data = path.read_bytes()
        except OSError:
            raise NotFound(f"the original of sample {sample_id} is missing: {path}") from None
        try:
            picture = decode_upload(data)
        except InvalidInput as exc:
            raise InvalidInput(f"the image of sample {sample_id} cannot be read: {exc.message}") from None
    encoder = _encoder(studio, model)
    if text is not None:
        return encoder.encode_texts([text])[0], None
    picture = picture.convert("RGB")
    batch = encoder.preprocess(picture).unsqueeze(0)
    return encoder.encode_images(batch)[0], sample_id


def _encoder(studio: Studio, model: EmbeddingModel) -> Any:
    from vistudio.errors import ModelUnavailable

    spec = emb.model_spec(model)
    d = emb.describe_spec(studio, spec)
    if d.version != model.version:
        raise ModelUnavailable(
            f"the checkpoint {model.checkpoint} changed since this project's vectors were made with it: "
            "embed the project again (vistudio embed) or restore the file",
            details={"checkpoint": model.checkpoint, "setting": "VISTUDIO_EMBED__CHECKPOINT"},
        )
    return emb.encoder_for(studio, spec, described=d)


def _why(text: str | None, sample_id: int | None, image_name: str | None, f: Filters) -> Any:
    suffix = f"; filters: {f.describe()}" if f.any else ""

    def why(score: float) -> str:
        if text is not None:
            return f"text similarity {score:.2f} to {text!r}{suffix}"
        if sample_id is not None:
            return f"similar to sample {sample_id} ({score:.2f}){suffix}"
        return (
            f"similar to the uploaded image{f' {image_name!r}' if image_name else ''} ({score:.2f}){suffix}"
        )

    return why


def _items(studio: Studio, hits: list[tuple[int, float]], *, why: Any) -> list[dict[str, Any]]:
    if not hits:
        return []
    ids = [i for i, _ in hits]
    with studio.sessions() as s:
        rows = {r.id: r for r in s.scalars(select(Sample).where(Sample.id.in_(ids)))}
        labels = labels_for(s, list(rows))
    out = []
    for sid, score in hits:
        r = rows.get(sid)
        if r is None:  # deleted since the index was synced
            continue
        out.append(
            {
                "sample_id": sid,
                "score": round(score, 4),
                "why": why(score),
                "name": r.name,
                "path": str(studio.home / r.path) if r.storage == "copy" else r.path,
                "labels": labels.get(sid, []),
                "taken_at": r.taken_at.isoformat() if r.taken_at else None,
                "width": r.width,
                "height": r.height,
                "thumbnail_url": f"/api/v1/samples/{sid}/thumbnail",
                "video_id": r.video_id,  # a keyframe of a library video (services/videos.py)
                "video_time": r.video_time,
            }
        )
    return out


def _maybe_reembed(studio: Studio, project_id: int, current: EmbeddingModel | None) -> list[dict[str, Any]]:
    """Start re-embedding when the configured model is not the one the project searches with.

    Only for a project that already has vectors (its first embedding is asked for explicitly) made
    with the configured model of the time (a model named in ``vistudio embed --model/--checkpoint``
    stays), and once: a re-embed job that failed or was cancelled is reported, not restarted.
    """
    if current is None:
        return []
    with studio.sessions() as s:
        es = s.get(EmbeddingSet, (project_id, current.id))
        if es is not None and es.explicit:
            return []  # the user chose this model by name: the configuration does not override it
    spec = emb.configured_spec(studio.settings)
    try:
        d = emb.describe_spec(studio, spec)
    except VistudioError as exc:
        if (spec.name, spec.pretrained) == (current.name, current.pretrained) and spec.checkpoint is None:
            return []
        return [{"code": "configured_model_unavailable", "message": exc.message}]
    if (d.name, d.version) == (current.name, current.version):
        return []
    with studio.sessions() as s:
        jobs = list(
            s.scalars(
                select(Job)
                .where(Job.project_id == project_id, Job.kind == emb.KIND)
                .order_by(Job.id.desc())
                .limit(50)
            )
        )
    for job in jobs:
        params = job.params or {}
        if (params.get("name"), params.get("version")) != (d.name, d.version):
            continue
        if job.status in ("queued", "running"):
            return [_reembed_notice(job_dict(job), d.name, current)]
        return [
            {
                "code": "reembed_stopped",
                "message": f"re-embedding with the configured model {d.name} ended {job.status} (job {job.id}); "
                f"searches use {current.name} — run `vistudio embed` to try again",
                "job_id": job.id,
            }
        ]
    try:
        job_d = emb.start_embedding(studio, project=project_id)
    except VistudioError as exc:  # another model's job is running: say so, search anyway
        return [{"code": "reembed_waiting", "message": exc.message}]
    return [_reembed_notice(job_d, d.name, current)]


def _reembed_notice(job: dict[str, Any], name: str, current: EmbeddingModel) -> dict[str, Any]:
    return {
        "code": "reembedding",
        "message": f"re-embedding with the configured model {name} (job {job['id']}); "
        f"results use {current.name} until it is complete",
        "job_id": job["id"],
    }
