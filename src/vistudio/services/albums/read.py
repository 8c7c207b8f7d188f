"""Albums: reading (see the package's docstring): names, smart albums' selects, pages, lists."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, false, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from vistudio.db import Sample
from vistudio.db.albums import Album, AlbumPhoto
from vistudio.errors import InvalidInput, NotFound, VistudioError
from vistudio.query_syntax import Query, parse
from vistudio.services import text_index
from vistudio.services.hybrid_search import allowed_select
from vistudio.services.places import place_dict
from vistudio.services.projects import find_project
from vistudio.services.timeline import make_cursor, parse_cursor, time_source
from vistudio.studio import Studio

KINDS = ("manual", "smart")
MAX_NAME = 200
MAX_BATCH = 10_000  # photo ids in one add, remove or order
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
GAP = 1024
KEEP_DELETED = timedelta(days=30)
_COLUMNS = (
    Sample.id,
    Sample.name,
    Sample.width,
    Sample.height,
    Sample.taken_at,
    Sample.file_time,
    Sample.sort_time,
    Sample.place_city,
    Sample.place_region,
    Sample.place_country,
    Sample.place_country_code,
)


# --- helpers --------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """An album's name: 1–200 characters once trimmed, without control characters."""
    text = (name or "").strip()
    if not text or len(text) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInput(
            f"an album name is 1–{MAX_NAME} characters, without control characters",
            details={"name": text[:80]},
        )
    return text


def _find(s: Session, project_id: int, album_id: int, *, deleted: bool = False) -> Album:
    a = s.get(Album, album_id) if 0 < album_id < 2**63 else None
    if a is None or a.project_id != project_id or (a.deleted_at is not None) != deleted:
        raise NotFound(
            f"album {album_id} not found in this project" + (" among the deleted" if deleted else "")
        )
    return a


def _name_taken(s: Session, project_id: int, name: str, *, other_than: int | None = None) -> bool:
    stmt = select(Album.id).where(
        Album.project_id == project_id, Album.name == name, Album.deleted_at.is_(None)
    )
    if other_than is not None:
        stmt = stmt.where(Album.id != other_than)
    return s.scalar(stmt.limit(1)) is not None


def _thumb(sample_id: int | None) -> str | None:
    return f"/api/v1/samples/{sample_id}/thumbnail" if sample_id else None


def photo_dict(r: Any, *, position: int | None = None) -> dict[str, Any]:
    when = r.taken_at or r.file_time
    d = {
        "id": r.id,
        "name": r.name,
        "width": r.width,
        "height": r.height,
        "time": when.isoformat() if when else None,
        "time_source": time_source(r.taken_at, r.file_time),
        "place": place_dict(r),
        "thumbnail_url": _thumb(r.id),
    }
    if position is not None:
        d["position"] = position
    return d


def _ids(values: list[int], what: str = "photos") -> list[int]:
    """Photo ids as given, without repeats (first place kept); bounded."""
    if len(values) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH:,} {what} at once", details={"given": len(values)})
    bad = [v for v in values if not 0 < v < 2**63]
    if bad:
        raise InvalidInput(f"photo ids are positive integers (got {bad[0]})", details={"bad": bad[:20]})
    return list(dict.fromkeys(values))


# --- smart albums ---------------------------------------------------------------------------------


def _smart_select(s: Session, project_id: int, query: Query) -> Select[Any]:
    """The ids of the project's photos in a smart album of ``query``: its filters (hidden
    duplicates out) and, when it has free words, the full-text index's matches of all of them."""
    allowed = allowed_select(s, project_id, query)
    if query.terms:
        matched = text_index.match_select(s, query.terms)
        allowed = allowed.where(false() if matched is None else Sample.id.in_(matched))
    return allowed


def check_query(s: Session, project_id: int, query: str) -> Query:
    """A smart album's query, parsed (a syntax error is a 422 naming the column) and tried once
    against the project (an unknown person is a 422 too)."""
    if not query or not query.strip():
        raise InvalidInput("a smart album needs a query (filters and/or words)", details={"column": 1})
    parsed = parse(query)
    if not parsed.terms and not parsed.filters:
        raise InvalidInput("a smart album needs a query (filters and/or words)", details={"column": 1})
    try:
        _smart_select(s, project_id, parsed)
    except NotFound as exc:
        raise InvalidInput(exc.message, details={"query": query[:200]}) from None
    return parsed


def _smart_page(
    s: Session, allowed: Select[Any], cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    """A page of a smart album, newest first (undated last), from a timeline-style cursor. The
    album's conditions go straight onto the page's query, so that the database can walk the
    (project, sort_time, id) index backwards and stop once the page is full."""
    t = Sample.sort_time
    after = parse_cursor(cursor) if cursor else None
    base = allowed.with_only_columns(*_COLUMNS)
    rows: list[Any] = []
    undated_only = after is not None and after[0] is None
    if not undated_only:
        dated = base.where(t.is_not(None))
        if after is not None and after[0] is not None:
            when, sid = after
            dated = dated.where(t <= when, or_(t < when, and_(t == when, Sample.id < sid)))
        rows = list(s.execute(dated.order_by(t.desc(), Sample.id.desc()).limit(limit + 1)).all())
    if len(rows) <= limit:
        undated = base.where(t.is_(None))
        if undated_only and after is not None:
            undated = undated.where(Sample.id < after[1])
        rows += s.execute(undated.order_by(Sample.id.desc()).limit(limit + 1 - len(rows))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows and more else None
    return rows, (make_cursor(last.sort_time, last.id) if last is not None else None)


# --- manual albums --------------------------------------------------------------------------------


def _parse_position_cursor(cursor: str) -> tuple[int, int]:
    try:
        pos, sid = cursor.split("~", 1)
        out = int(pos), int(sid)
        if len(cursor) > 60 or not 0 < out[1] < 2**63:
            raise ValueError
        return out
    except ValueError:
        raise InvalidInput(
            "cursor: the next_cursor of an earlier page", details={"cursor": cursor[:60]}
        ) from None


def _manual_page(s: Session, album_id: int, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    stmt = (
        select(*_COLUMNS, AlbumPhoto.position)
        .join(AlbumPhoto, AlbumPhoto.sample_id == Sample.id)
        .where(AlbumPhoto.album_id == album_id)
    )
    if cursor:
        pos, sid = _parse_position_cursor(cursor)
        stmt = stmt.where(tuple_(AlbumPhoto.position, AlbumPhoto.sample_id) > tuple_(pos, sid))
    rows = list(s.execute(stmt.order_by(AlbumPhoto.position, AlbumPhoto.sample_id).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (f"{rows[-1].position}~{rows[-1].id}" if more else None)


def _ordered_ids(s: Session, album_id: int) -> list[int]:
    return list(
        s.scalars(
            select(AlbumPhoto.sample_id)
            .where(AlbumPhoto.album_id == album_id)
            .order_by(AlbumPhoto.position, AlbumPhoto.sample_id)
        )
    )


def _number(s: Session, album_id: int, order: list[int]) -> None:
    """Positions GAP, 2·GAP, … in this order."""
    if not order:
        return
    # executemany of one UPDATE with bound values (the ORM's bulk update needs the primary key)
    s.connection().execute(
        update(AlbumPhoto)
        .where(AlbumPhoto.album_id == album_id, AlbumPhoto.sample_id == bindparam("sid"))
        .values(position=bindparam("pos")),
        [{"sid": sid, "pos": (i + 1) * GAP} for i, sid in enumerate(order)],
    )


# --- reading --------------------------------------------------------------------------------------


def _count(s: Session, a: Album) -> tuple[int, str | None]:
    """How many photos the album has, and why a smart album shows none (its query fails now)."""
    if a.kind == "manual":
        return int(s.scalar(select(func.count()).where(AlbumPhoto.album_id == a.id)) or 0), None
    try:
        allowed = _smart_select(s, a.project_id, parse(a.query or ""))
    except VistudioError as exc:
        return 0, exc.message
    return int(s.scalar(select(func.count()).select_from(allowed.subquery())) or 0), None


def _cover(s: Session, a: Album) -> int | None:
    """The album's cover: the user's while it is still in the album, else its first photo."""
    if a.kind == "manual":
        if a.cover_sample_id is not None:
            return a.cover_sample_id  # removing the photo or deleting it clears the cover
        return s.scalar(
            select(AlbumPhoto.sample_id)
            .where(AlbumPhoto.album_id == a.id)
            .order_by(AlbumPhoto.position, AlbumPhoto.sample_id)
            .limit(1)
        )
    try:
        allowed = _smart_select(s, a.project_id, parse(a.query or ""))
    except VistudioError:
        return None
    if (
        a.cover_sample_id is not None
        and s.scalar(allowed.where(Sample.id == a.cover_sample_id).limit(1)) is not None
    ):
        return a.cover_sample_id
    rows, _ = _smart_page(s, allowed, None, 1)
    return rows[0].id if rows else None


def album_dict(s: Session, a: Album) -> dict[str, Any]:
    count, problem = _count(s, a)
    cover = _cover(s, a)
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "query": a.query,
        "photos": count,
        "cover_sample_id": cover,
        "cover_chosen": a.cover_sample_id is not None and a.cover_sample_id == cover,
        "cover_url": _thumb(cover),
        "problem": problem,
        "created_at": a.created_at.isoformat() + "Z",
        "updated_at": a.updated_at.isoformat() + "Z",
        "deleted_at": a.deleted_at.isoformat() + "Z" if a.deleted_at else None,
    }


def list_albums(
    studio: Studio, *, project: str | int, offset: int = 0, limit: int = DEFAULT_LIMIT
) -> dict[str, Any]:
    """The project's albums by name (case-insensitive), each with its photo count and cover →
    ``{"items", "total", "offset", "limit"}``."""
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= 10_000_000:
        raise InvalidInput(f"limit must be 1..{MAX_LIMIT} and offset ≥ 0")
    with studio.sessions() as s:
        p = find_project(s, project)
        live = [Album.project_id == p.id, Album.deleted_at.is_(None)]
        total = s.scalar(select(func.count(Album.id)).where(*live)) or 0
        albums = s.scalars(
            select(Album).where(*live).order_by(func.lower(Album.name), Album.id).offset(offset).limit(limit)
        ).all()
        items = [album_dict(s, a) for a in albums]
    return {"items": items, "total": int(total), "offset": offset, "limit": limit}


def get_album(
    studio: Studio,
    *,
    project: str | int,
    album: int,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """An album and a page of its photos (a manual album's in the user's order, a smart album's
    newest first) → ``{"album", "items", "next_cursor", "limit", "notices"}``; ``next_cursor``
    (None at the end) gives the next page."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", details={"limit": limit})
    if cursor is not None and len(cursor) > 80:
        raise InvalidInput("cursor: the next_cursor of an earlier page", details={"cursor": cursor[:60]})
    notices: list[dict[str, Any]] = []
    with studio.sessions() as s:
        p = find_project(s, project)
        a = _find(s, p.id, album)
        project_id, kind, query = p.id, a.kind, a.query
    if kind == "smart":
        parsed = parse(query or "")
        if parsed.terms:
            state = text_index.ensure_ready(studio, project_id)
            if not state.ready:
                notices.append(
                    {"code": "text_index_building", "message": state.message, "job_id": state.job_id}
                )
    with studio.sessions() as s:
        a = _find(s, project_id, album)
        d = album_dict(s, a)
        if d["problem"]:
            notices.append({"code": "query_failed", "message": d["problem"]})
        rows: list[Any] = []
        next_cursor = None
        if kind == "manual":
            rows, next_cursor = _manual_page(s, a.id, cursor, limit)
            items = [photo_dict(r, position=r.position) for r in rows]
        else:
            if not d["problem"]:
                rows, next_cursor = _smart_page(
                    s, _smart_select(s, project_id, parse(query or "")), cursor, limit
                )
            items = [photo_dict(r) for r in rows]
    return {"album": d, "items": items, "next_cursor": next_cursor, "limit": limit, "notices": notices}


def album_photo_ids(studio: Studio, *, project: str | int, album: int) -> list[int]:
    """Every photo id of an album, in its order (for tests, exports and the CLI's --json)."""
    out: list[int] = []
    cursor = None
    while True:
        page = get_album(studio, project=project, album=album, cursor=cursor, limit=MAX_LIMIT)
        out += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def album_names(
    studio: Studio, *, project: str | int, kind: str = "manual", limit: int = 500
) -> list[dict[str, Any]]:
    """The ids and names of the project's albums of one kind, by name (the "Add to album" picker)."""
    with studio.sessions() as s:
        p = find_project(s, project)
        rows = s.execute(
            select(Album.id, Album.name)
            .where(Album.project_id == p.id, Album.kind == kind, Album.deleted_at.is_(None))
            .order_by(func.lower(Album.name), Album.id)
            .limit(limit)
        ).all()
    return [{"id": i, "name": n} for i, n in rows]
