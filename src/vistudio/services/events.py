"""Events: a project's photos grouped by when and where they were taken (``ml/events.py`` for the
rules), named from their place and dates ("Lisbon, 3–7 May 2024"), merged, split and renamed by
the user.

The ``events`` job reads every dated photo of the project (the timeline's date: EXIF, else the
file's: ``samples.sort_time``; photos hidden as duplicates and photos without a date are in no event), its position
and its place name, cuts the stream with the rules, then applies the user's decisions — a merge
is "no cut before this photo", a split "a cut before this photo" — and writes the events. An
event keeps its id (and a user's name) through a recomputation when most of its photos are
still together: each new event takes the old event holding most of its photos, if that is more
than half of them and no other new event took it first.

The job is queued when the events are listed and the project's photos changed since the last
computation (their number or the largest photo id), and by ``vistudio events PROJECT
--refresh``. Merge, split and rename apply at once (no job). A merge undoes a split at the same
place and the other way round, so either is undone by the other.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from vistudio.db import Job, Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.db.events import Event, EventDecision, EventPhoto, EventState
from vistudio.errors import BadRequest, Conflict, NotFound
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext
from vistudio.services.projects import find_project
from vistudio.studio import Studio

KIND = "events"
MAX_NAME = 300
MAX_LIMIT = 500


def _photo_time() -> Any:
    """The timeline's date (``taken_at``, else ``file_time``), stored and indexed as ``sort_time``."""
    return Sample.sort_time


def _dated(project_id: int) -> list[Any]:
    hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)
    return [Sample.project_id == project_id, Sample.id.not_in(hidden), _photo_time().is_not(None)]


def _fingerprint(s: Session, project_id: int) -> tuple[int, int]:
    """What makes the events stale when it changes: the photos shown (a photo hidden as a
    duplicate, or restored, changes the count) and the newest photo."""
    hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)
    n, top = s.execute(
        select(func.count(Sample.id), func.max(Sample.id)).where(
            Sample.project_id == project_id, Sample.id.not_in(hidden)
        )
    ).one()
    return int(n or 0), int(top or 0)


def _epoch(when: datetime) -> float:
    return when.replace(tzinfo=UTC).timestamp()


# --- computing ------------------------------------------------------------------------------------


def compute(studio: Studio, project_id: int) -> dict[str, int]:
    """Recompute the project's events (see the module docstring) → counts."""
    from vistudio.ml.events import Photo, event_name, segment

    with studio.sessions() as s:
        fingerprint = _fingerprint(s, project_id)
        rows = s.execute(
            select(
                Sample.id,
                _photo_time(),
                Sample.gps_lat,
                Sample.gps_lon,
                func.coalesce(Sample.place_city, Sample.place_region, Sample.place_country),
            )
            .where(*_dated(project_id))
            .order_by(_photo_time(), Sample.id)
        ).all()
        decisions = dict(
            s.execute(
                select(EventDecision.sample_id, EventDecision.cut).where(
                    EventDecision.project_id == project_id
                )
            ).all()
        )
        old = dict(
            s.execute(
                select(EventPhoto.sample_id, EventPhoto.event_id)
                .join(Event, Event.id == EventPhoto.event_id)
                .where(Event.project_id == project_id)
            ).all()
        )
        old_named = dict(
            s.execute(select(Event.id, Event.name).where(Event.project_id == project_id, Event.named)).all()
        )
    groups = segment([Photo(r[0], _epoch(r[1]), r[2], r[3]) for r in rows], decided=decisions)
    by_id = {r[0]: r for r in rows}
    # keep ids: each new event takes the old event holding most (> half) of its photos
    taken: set[int] = set()
    keep: list[int | None] = []
    for g in groups:
        votes: dict[int, int] = defaultdict(int)
        for sid in g:
            if sid in old:
                votes[old[sid]] += 1
        best = max(votes, key=lambda e: (votes[e], -e), default=None)
        if best is not None and votes[best] * 2 > len(g) and best not in taken:
            taken.add(best)
            keep.append(best)
        else:
            keep.append(None)
    with studio.sessions.begin() as s:
        s.execute(delete(Event).where(Event.project_id == project_id, Event.id.not_in(taken or {-1})))
        s.execute(
            delete(EventPhoto).where(
                EventPhoto.sample_id.in_(select(Sample.id).where(Sample.project_id == project_id))
            )
        )
        for g, event_id in zip(groups, keep, strict=True):
            first, last = by_id[g[0]][1], by_id[g[-1]][1]
            places = [by_id[i][4] for i in g]
            top = _top_place(places)
            values = {
                "place": top,
                "start_at": first,
                "end_at": last,
                "photos": len(g),
                "cover_sample_id": g[len(g) // 2],
            }
            if event_id is not None and event_id in old_named:
                s.execute(update(Event).where(Event.id == event_id).values(**values))
            elif event_id is not None:
                name = event_name(places, first.date(), last.date())
                s.execute(update(Event).where(Event.id == event_id).values(name=name, **values))
            else:
                name = event_name(places, first.date(), last.date())
                event_id = s.execute(
                    insert(Event)
                    .values(project_id=project_id, name=name, named=False, **values)
                    .returning(Event.id)
                ).scalar_one()
            s.execute(insert(EventPhoto), [{"sample_id": sid, "event_id": event_id} for sid in g])
        state = s.get(EventState, project_id)
        if state is None:
            state = EventState(project_id=project_id, samples=0, max_sample_id=0)
            s.add(state)
        state.samples, state.max_sample_id = fingerprint
        state.computed_at = datetime.now(UTC).replace(tzinfo=None)
    return {"events": len(groups), "photos": len(rows), "kept": len(taken)}


def _top_place(places: list[str | None]) -> str | None:
    named = [p for p in places if p]
    if not named:
        return None
    counts: dict[str, int] = defaultdict(int)
    for p in named:
        counts[p] += 1
    top = max(counts.values())
    return next(p for p in named if counts[p] == top)


@job_handler(KIND)
def run_events(ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0, None, "grouping photos into events", force=True)
    return compute(ctx.studio, int(ctx.params["project_id"]))


def refresh(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Queue the recomputation of the project's events (one job at a time) → ``{"job"}``."""
    with studio.sessions() as s:
        project_id = find_project(s, project).id
    return {"job": job_dict(_queue(studio, project_id))}


def _queue(studio: Studio, project_id: int) -> Job:
    with studio.sessions() as s:
        state = s.get(EventState, project_id)
        job = s.get(Job, state.job_id) if state is not None and state.job_id else None
        if job is not None and job.status in ("queued", "running"):
            return job
    job = studio.queue.enqueue(KIND, {"project_id": project_id}, project_id=project_id, max_attempts=2)
    with studio.sessions.begin() as s:
        state = s.get(EventState, project_id)
        if state is None:
            s.add(EventState(project_id=project_id, samples=-1, max_sample_id=-1, job_id=job.id))
        else:
            state.job_id = job.id
    return job


# --- reading --------------------------------------------------------------------------------------


def event_dict(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "named": e.named,
        "place": e.place,
        "start": e.start_at.isoformat(),
        "end": e.end_at.isoformat(),
        "photos": e.photos,
        "cover_sample_id": e.cover_sample_id,
    }


def list_events(
    studio: Studio, *, project: str | int, offset: int = 0, limit: int = 100, refresh_if_stale: bool = True
) -> dict[str, Any]:
    """The project's events, newest first → ``{"items", "total", "stale", "job"}``. ``stale``: the
    photos changed since the events were computed; a recomputation is then queued (once)."""
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT} and offset ≥ 0")
    with studio.sessions() as s:
        p = find_project(s, project)
        state = s.get(EventState, p.id)
        current = _fingerprint(s, p.id)
        stale = state is None or (state.samples, state.max_sample_id) != current
        total = s.scalar(select(func.count(Event.id)).where(Event.project_id == p.id)) or 0
        events = s.scalars(
            select(Event)
            .where(Event.project_id == p.id)
            .order_by(Event.start_at.desc(), Event.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        items = [event_dict(e) for e in events]
        project_id = p.id
    job = None
    if stale and refresh_if_stale and current[0] > 0:
        job = job_dict(_queue(studio, project_id))
    return {"items": items, "total": int(total), "offset": offset, "limit": limit, "stale": stale, "job": job}


def _find(s: Session, project_id: int, event_id: int) -> Event:
    e = s.get(Event, event_id)
    if e is None or e.project_id != project_id:
        raise NotFound(f"event {event_id} not found in this project")
    return e


def get_event(
    studio: Studio, *, project: str | int, event: int, offset: int = 0, limit: int = 200
) -> dict[str, Any]:
    """One event and a page of its photos in time order → ``{"event", "photos", "previous", "next"}``
    (``previous``/``next``: the neighbouring events' ids, for merging)."""
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT} and offset ≥ 0")
    with studio.sessions() as s:
        p = find_project(s, project)
        e = _find(s, p.id, event)
        rows = s.execute(
            select(Sample.id, Sample.name, _photo_time(), Sample.place_city)
            .join(EventPhoto, EventPhoto.sample_id == Sample.id)
            .where(EventPhoto.event_id == e.id)
            .order_by(_photo_time(), Sample.id)
            .offset(offset)
            .limit(limit)
        ).all()
        before, after = _neighbours(s, e)
        return {
            "event": event_dict(e),
            "photos": [
                {"sample_id": r[0], "name": r[1], "time": r[2].isoformat() if r[2] else None, "place": r[3]}
                for r in rows
            ],
            "offset": offset,
            "limit": limit,
            "previous": before,
            "next": after,
        }


def _neighbours(s: Session, e: Event) -> tuple[int | None, int | None]:
    key = (Event.start_at, Event.id)
    before = s.scalar(
        select(Event.id)
        .where(Event.project_id == e.project_id, tuple_(*key) < tuple_(e.start_at, e.id))
        .order_by(Event.start_at.desc(), Event.id.desc())
        .limit(1)
    )
    after = s.scalar(
        select(Event.id)
        .where(Event.project_id == e.project_id, tuple_(*key) > tuple_(e.start_at, e.id))
        .order_by(Event.start_at, Event.id)
        .limit(1)
    )
    return before, after


# --- the user's changes ---------------------------------------------------------------------------


def rename_event(studio: Studio, *, project: str | int, event: int, name: str | None) -> dict[str, Any]:
    """Name the event (kept by every recomputation); an empty or no name gives it back the one
    worked out from its place and dates."""
    from vistudio.ml.events import event_name

    text = (name or "").strip()
    if len(text) > MAX_NAME or any(ord(c) < 32 for c in text):
        raise BadRequest(f"an event name is at most {MAX_NAME} characters, without control characters")
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        e = _find(s, p.id, event)
        if text:
            e.name, e.named = text, True
        else:
            places = s.scalars(
                select(func.coalesce(Sample.place_city, Sample.place_region, Sample.place_country))
                .join(EventPhoto, EventPhoto.sample_id == Sample.id)
                .where(EventPhoto.event_id == e.id)
            ).all()
            e.name, e.named = event_name(list(places), e.start_at.date(), e.end_at.date()), False
        return {"event": event_dict(e)}


def _first_photo(s: Session, event_id: int) -> int:
    return int(
        s.execute(
            select(Sample.id)
            .join(EventPhoto, EventPhoto.sample_id == Sample.id)
            .where(EventPhoto.event_id == event_id)
            .order_by(_photo_time(), Sample.id)
            .limit(1)
        ).scalar_one()
    )


def _decide(s: Session, project_id: int, sample_id: int, cut: bool) -> None:
    """Record "an event starts (``cut``) / does not start at this photo"; the opposite decision
    at the same photo is removed instead (an undo)."""
    had = s.get(EventDecision, sample_id)
    if had is not None and had.cut != cut:
        s.delete(had)
    elif had is None:
        s.add(EventDecision(sample_id=sample_id, project_id=project_id, cut=cut))


def _restat(s: Session, e: Event) -> None:
    from vistudio.ml.events import event_name

    rows = s.execute(
        select(
            Sample.id,
            _photo_time(),
            func.coalesce(Sample.place_city, Sample.place_region, Sample.place_country),
        )
        .join(EventPhoto, EventPhoto.sample_id == Sample.id)
        .where(EventPhoto.event_id == e.id)
        .order_by(_photo_time(), Sample.id)
    ).all()
    places = [r[2] for r in rows]
    e.start_at, e.end_at, e.photos = rows[0][1], rows[-1][1], len(rows)
    e.place = _top_place(places)
    if e.cover_sample_id not in {r[0] for r in rows}:
        e.cover_sample_id = rows[len(rows) // 2][0]
    if not e.named:
        e.name = event_name(places, e.start_at.date(), e.end_at.date())


def merge_events(studio: Studio, *, project: str | int, events: list[int]) -> dict[str, Any]:
    """Merge events that follow each other in time into the first → ``{"event"}``; a user's name
    of the first is kept (else the first named one's)."""
    ids = sorted(set(events))
    if len(ids) < 2:
        raise BadRequest("name at least two events to merge")
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        chosen = sorted((_find(s, p.id, i) for i in ids), key=lambda e: (e.start_at, e.id))
        between = s.scalars(
            select(Event.id)
            .where(
                Event.project_id == p.id,
                tuple_(Event.start_at, Event.id) > tuple_(chosen[0].start_at, chosen[0].id),
                tuple_(Event.start_at, Event.id) < tuple_(chosen[-1].start_at, chosen[-1].id),
                Event.id.not_in(ids),
            )
            .limit(5)
        ).all()
        if between:
            raise Conflict(
                f"only events next to each other merge: event(s) {', '.join(map(str, between))} lie between",
                details={"between": list(between)},
            )
        first = chosen[0]
        if not first.named:
            named = next((e for e in chosen if e.named), None)
            if named is not None:
                first.name, first.named = named.name, True
        for e in chosen[1:]:
            _decide(s, p.id, _first_photo(s, e.id), cut=False)
            s.execute(update(EventPhoto).where(EventPhoto.event_id == e.id).values(event_id=first.id))
            s.delete(e)
        s.flush()
        _restat(s, first)
        return {"event": event_dict(first)}


def split_event(studio: Studio, *, project: str | int, event: int, at: int) -> dict[str, Any]:
    """Split the event before its photo ``at`` (a sample id): the photos from it on become a new
    event → ``{"event", "new_event"}``."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        e = _find(s, p.id, event)
        member = s.get(EventPhoto, at)
        if member is None or member.event_id != e.id:
            raise BadRequest(f"photo {at} is not in event {e.id}")
        if _first_photo(s, e.id) == at:
            raise BadRequest("the event already starts at this photo: choose a later one")
        moment = s.execute(select(_photo_time()).where(Sample.id == at)).scalar_one()
        later = s.scalars(
            select(Sample.id)
            .join(EventPhoto, EventPhoto.sample_id == Sample.id)
            .where(
                EventPhoto.event_id == e.id,
                tuple_(_photo_time(), Sample.id) >= tuple_(moment, at),
            )
        ).all()
        _decide(s, p.id, at, cut=True)
        new = Event(
            project_id=p.id,
            name="",
            named=False,
            start_at=moment,
            end_at=moment,
            photos=0,
            cover_sample_id=None,
        )
        s.add(new)
        s.flush()
        s.execute(update(EventPhoto).where(EventPhoto.sample_id.in_(later)).values(event_id=new.id))
        s.flush()
        _restat(s, e)
        _restat(s, new)
        return {"event": event_dict(e), "new_event": event_dict(new)}
