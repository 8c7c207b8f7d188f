"""Albums: the user's changes (create, rename, query, cover, delete and restore, photos and order)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vistudio.db import Sample, utcnow
from vistudio.db.albums import Album, AlbumPhoto
from vistudio.errors import Conflict, InvalidInput
from vistudio.query_syntax import parse
from vistudio.services.albums.read import (
    GAP,
    KEEP_DELETED,
    KINDS,
    MAX_BATCH,
    MAX_NAME,
    _find,
    _ids,
    _name_taken,
    _number,
    _ordered_ids,
    _smart_select,
    album_dict,
    check_name,
    check_query,
)
from vistudio.services.projects import find_project
from vistudio.studio import Studio

# --- changes --------------------------------------------------------------------------------------


def create_album(
    studio: Studio, *, project: str | int, name: str, kind: str = "manual", query: str | None = None
) -> dict[str, Any]:
    """A new album → ``{"album"}``: manual (no query) or smart (``query`` required). A name
    another album of the project has is a 409."""
    text = check_name(name)
    if kind not in KINDS:
        raise InvalidInput(f"kind is one of {', '.join(KINDS)}", details={"kind": str(kind)[:20]})
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        if kind == "smart":
            check_query(s, p.id, query or "")
        elif query:
            raise InvalidInput("a manual album has no query: make it a smart album", details={"column": 1})
        if _name_taken(s, p.id, text):
            raise Conflict(f"an album named {text!r} exists already", details={"name": text})
        a = Album(project_id=p.id, name=text, kind=kind, query=query if kind == "smart" else None)
        s.add(a)
        try:
            s.flush()
        except IntegrityError:  # created meanwhile by another request
            raise Conflict(f"an album named {text!r} exists already", details={"name": text}) from None
        return {"album": album_dict(s, a)}


def update_album(
    studio: Studio,
    *,
    project: str | int,
    album: int,
    name: str | None = None,
    query: str | None = None,
    cover_sample_id: int | None = None,
    reset_cover: bool = False,
) -> dict[str, Any]:
    """Rename, change a smart album's query, choose the cover (one of its photos) or go back to
    the first photo as cover (``reset_cover``) → ``{"album"}``."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        a = _find(s, p.id, album)
        if name is not None:
            text = check_name(name)
            if _name_taken(s, p.id, text, other_than=a.id):
                raise Conflict(f"an album named {text!r} exists already", details={"name": text})
            a.name = text
        if query is not None:
            if a.kind != "smart":
                raise Conflict("a manual album has no query (its photos are chosen by hand)")
            check_query(s, p.id, query)
            a.query = query
        if reset_cover:
            a.cover_sample_id = None
        elif cover_sample_id is not None:
            if not _holds(s, a, cover_sample_id):
                raise InvalidInput(
                    f"photo {cover_sample_id} is not in this album: the cover is one of its photos",
                    details={"cover_sample_id": cover_sample_id},
                )
            a.cover_sample_id = cover_sample_id
        a.updated_at = utcnow()
        try:
            s.flush()
        except IntegrityError:
            raise Conflict(f"an album named {a.name!r} exists already", details={"name": a.name}) from None
        return {"album": album_dict(s, a)}


def _holds(s: Session, a: Album, sample_id: int) -> bool:
    if not 0 < sample_id < 2**63:
        return False
    if a.kind == "manual":
        return s.get(AlbumPhoto, (a.id, sample_id)) is not None
    allowed = _smart_select(s, a.project_id, parse(a.query or ""))
    return s.scalar(allowed.where(Sample.id == sample_id).limit(1)) is not None


def delete_album(studio: Studio, *, project: str | int, album: int) -> dict[str, Any]:
    """Delete an album, keeping its rows for the undo → ``{"album", "undo": {"restore": id}}``
    (:func:`restore_album`). Albums deleted more than ``KEEP_DELETED`` ago go for good now."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        a = _find(s, p.id, album)
        now = utcnow()
        s.execute(
            delete(Album).where(
                Album.project_id == p.id, Album.deleted_at.is_not(None), Album.deleted_at < now - KEEP_DELETED
            )
        )
        a.deleted_at = now
        s.flush()
        return {"album": album_dict(s, a), "undo": {"restore": a.id}}


def restore_album(studio: Studio, *, project: str | int, album: int) -> dict[str, Any]:
    """Undo a delete → ``{"album", "renamed"}``; when another album took its name meanwhile the
    restored one is named "NAME (restored)" (or "(restored 2)", …) and ``renamed`` says so."""
    with studio.sessions.begin() as s:
        p = find_project(s, project)
        a = _find(s, p.id, album, deleted=True)
        name, n = a.name, 1
        while _name_taken(s, p.id, name):
            n += 1
            suffix = " (restored)" if n == 2 else f" (restored {n - 1})"
            name = a.name[: MAX_NAME - len(suffix)] + suffix
        renamed = name != a.name
        a.name, a.deleted_at = name, None
        s.flush()
        return {"album": album_dict(s, a), "renamed": renamed}


def _manual(s: Session, project: str | int, album: int) -> tuple[int, Album]:
    p = find_project(s, project)
    a = _find(s, p.id, album)
    if a.kind != "manual":
        raise Conflict("a smart album's photos come from its query: change the query instead")
    return p.id, a


def add_photos(studio: Studio, *, project: str | int, album: int, sample_ids: list[int]) -> dict[str, Any]:
    """Add photos (ids of the project's photos) at the end, in the order given; photos already
    in the album stay where they are → ``{"album", "added", "already"}``. An id that is not a
    photo of this project refuses the whole call (422, ``details.missing``)."""
    ids = _ids(sample_ids)
    with studio.sessions.begin() as s:
        project_id, a = _manual(s, project, album)
        found: set[int] = set()
        for i in range(0, len(ids), 500):
            found.update(
                s.scalars(
                    select(Sample.id).where(Sample.id.in_(ids[i : i + 500]), Sample.project_id == project_id)
                )
            )
        missing = [i for i in ids if i not in found]
        if missing:
            raise InvalidInput(
                f"{len(missing)} id(s) are not photos of this project (e.g. {missing[0]})",
                details={"missing": missing[:50]},
            )
        present: set[int] = set()
        for i in range(0, len(ids), 500):
            present.update(
                s.scalars(
                    select(AlbumPhoto.sample_id).where(
                        AlbumPhoto.album_id == a.id, AlbumPhoto.sample_id.in_(ids[i : i + 500])
                    )
                )
            )
        new = [i for i in ids if i not in present]
        if new:
            top = s.scalar(select(func.max(AlbumPhoto.position)).where(AlbumPhoto.album_id == a.id)) or 0
            now = utcnow()
            s.execute(
                insert(AlbumPhoto),
                [
                    {"album_id": a.id, "sample_id": sid, "position": top + (k + 1) * GAP, "added_at": now}
                    for k, sid in enumerate(new)
                ],
            )
            a.updated_at = now
        s.flush()
        return {"album": album_dict(s, a), "added": len(new), "already": len(ids) - len(new)}


def remove_photos(studio: Studio, *, project: str | int, album: int, sample_ids: list[int]) -> dict[str, Any]:
    """Take photos out of the album (ids not in it are ignored) → ``{"album", "removed"}``; the
    photos themselves stay in the project. Removing the cover makes the first photo the cover."""
    ids = _ids(sample_ids)
    with studio.sessions.begin() as s:
        _, a = _manual(s, project, album)
        removed = 0
        for i in range(0, len(ids), 500):
            removed += (
                s.execute(
                    delete(AlbumPhoto).where(
                        AlbumPhoto.album_id == a.id, AlbumPhoto.sample_id.in_(ids[i : i + 500])
                    )
                ).rowcount  # type: ignore[attr-defined]
                or 0
            )
        if a.cover_sample_id in ids:
            a.cover_sample_id = None
        if removed:
            a.updated_at = utcnow()
        s.flush()
        return {"album": album_dict(s, a), "removed": removed}


def _position(s: Session, album_id: int, sample_id: int | None) -> int | None:
    if sample_id is None or not 0 < sample_id < 2**63:
        return None
    return s.scalar(
        select(AlbumPhoto.position).where(AlbumPhoto.album_id == album_id, AlbumPhoto.sample_id == sample_id)
    )


def move_photo(
    studio: Studio, *, project: str | int, album: int, sample_id: int, before: int | None
) -> dict[str, Any]:
    """Move one photo of a manual album just before another (``before``), or to the end
    (``before`` None) → ``{"album", "renumbered"}``."""
    with studio.sessions.begin() as s:
        _, a = _manual(s, project, album)
        if _position(s, a.id, sample_id) is None:
            raise InvalidInput(f"photo {sample_id} is not in this album", details={"sample_id": sample_id})
        if before == sample_id:
            raise InvalidInput("a photo cannot move before itself", details={"before": before})
        if before is not None and _position(s, a.id, before) is None:
            raise InvalidInput(f"photo {before} is not in this album", details={"before": before})
        new = _slot(s, a.id, sample_id, before)
        renumbered = new is None
        if new is None:  # no room between the new neighbours: renumber, then there is
            _number(s, a.id, _ordered_ids(s, a.id))
            new = _slot(s, a.id, sample_id, before)
            assert new is not None
        s.execute(
            update(AlbumPhoto)
            .where(AlbumPhoto.album_id == a.id, AlbumPhoto.sample_id == sample_id)
            .values(position=new)
        )
        a.updated_at = utcnow()
        s.flush()
        return {"album": album_dict(s, a), "renumbered": renumbered}


def _slot(s: Session, album_id: int, sample_id: int, before: int | None) -> int | None:
    """The position that puts the photo just before ``before`` (or last), None when there is no
    room between its new neighbours."""
    others = [AlbumPhoto.album_id == album_id, AlbumPhoto.sample_id != sample_id]
    if before is None:
        top = s.scalar(select(func.max(AlbumPhoto.position)).where(*others))
        return GAP if top is None else int(top) + GAP
    target = _position(s, album_id, before)
    assert target is not None
    prev = s.scalar(
        select(AlbumPhoto.position)
        .where(*others, tuple_(AlbumPhoto.position, AlbumPhoto.sample_id) < tuple_(target, before))
        .order_by(AlbumPhoto.position.desc(), AlbumPhoto.sample_id.desc())
        .limit(1)
    )
    if prev is None:
        return target - GAP
    if target - int(prev) < 2:
        return None
    return (int(prev) + target) // 2


def set_order(studio: Studio, *, project: str | int, album: int, order: list[int]) -> dict[str, Any]:
    """Give a manual album's full order at once: ``order`` holds each of its photos once."""
    ids = list(order)
    if len(ids) > MAX_BATCH * 10:
        raise InvalidInput(f"at most {MAX_BATCH * 10:,} photos in an order", details={"given": len(ids)})
    with studio.sessions.begin() as s:
        _, a = _manual(s, project, album)
        current = set(_ordered_ids(s, a.id))
        repeated = len(ids) != len(set(ids))
        if repeated or set(ids) != current:
            missing = sorted(current - set(ids))[:50]
            extra = sorted(set(ids) - current)[:50]
            raise InvalidInput(
                "order: every photo of the album once, and no other",
                details={"missing": missing, "not_in_album": extra, "repeated": repeated},
            )
        _number(s, a.id, ids)
        a.updated_at = utcnow()
        s.flush()
        s.expire_all()
        return {"album": album_dict(s, s.get(Album, a.id))}  # type: ignore[arg-type]
