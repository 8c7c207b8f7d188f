"""Search with the query syntax (``vistudio.query_syntax``): filters, full text and CLIP, fused.

- The filters select the allowed sample ids in SQL (:func:`allowed_select`); both searches run
  over that same set, so a result always passes every filter.
- Free words and phrases go to the full-text index (bm25 / ``ts_rank_cd``: every term must match)
  and, joined, to CLIP's text encoder when the project has embeddings. The two ranked lists are
  fused by reciprocal rank fusion, ``score = Σ 1 / (RRF_K + rank)`` with ``RRF_K = 60`` (Cormack et
  al. 2009): a photo near the top of either list comes up, one near the top of both first. Without
  embeddings (or without a loadable model) the full text answers alone, and the answer says so.
- An image or a sample with a query: CLIP searches by that image; the words (if any) by full text.
- Only filters: the matching photos, newest taken first (undated last), then by id.

Each result says why it matched: the words and the fields they matched in, its rank and score in
each list (the CLIP similarity), and the filters it passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, func, not_, or_, select
from sqlalchemy.orm import Session

from vistudio.db import Annotation, LabelClass, Sample, SampleTag
from vistudio.db.faces import Face
from vistudio.errors import InvalidInput, ModelUnavailable, NotFound
from vistudio.query_syntax import Filter, Query, date_range, parse
from vistudio.services import embeddings as emb
from vistudio.services import text_index, vector_index
from vistudio.services.projects import find_project
from vistudio.services.samples import fewest_faces_first, filtered_query, person_ids
from vistudio.studio import Studio

RRF_K = 60
DEPTH = 100  # each list's depth before fusion (at least offset + k)
PLACE_COLUMNS = text_index.PLACE_COLUMNS


def rrf(lists: Sequence[Sequence[int]], *, k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked id lists (best first): ``[(id, Σ 1/(k + rank))]``, best
    first; ties go to the better best rank, then the smaller id."""
    score: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranked in lists:
        for rank, i in enumerate(ranked, start=1):
            score[i] = score.get(i, 0.0) + 1.0 / (k + rank)
            best[i] = min(best.get(i, rank), rank)
    return sorted(score.items(), key=lambda x: (-x[1], best[x[0]], x[0]))


# --- filters ---------------------------------------------------------------------------------------


def _lower(col: Any) -> ColumnElement[str]:
    return func.lower(func.coalesce(col, ""))


def _contains(cols: Sequence[Any], value: str) -> ColumnElement[bool]:
    """Any of ``cols`` contains ``value``, ignoring the case of ASCII letters (both databases)."""
    v = value.lower()
    return or_(*(_lower(c).contains(v, autoescape=True) for c in cols))


def place_columns() -> list[Any]:
    return [Sample.__table__.c[c] for c in PLACE_COLUMNS if c in Sample.__table__.c]


def _condition(s: Session, project_id: int, f: Filter) -> ColumnElement[bool]:
    """One filter of the query as a condition on ``Sample`` (before its negation)."""
    if f.key == "tag":
        return Sample.id.in_(select(SampleTag.sample_id).where(SampleTag.tag == f.value))
    if f.key == "label":
        classes = select(LabelClass.id).where(LabelClass.project_id == project_id, LabelClass.name == f.value)
        return Sample.id.in_(select(Annotation.sample_id).where(Annotation.class_id.in_(classes)))
    if f.key == "person":
        (pid,) = person_ids(s, project_id, f.value)
        return Sample.id.in_(select(Face.sample_id).where(Face.person_id == pid))
    if f.key == "camera":
        return _contains([Sample.camera_make, Sample.camera_model], f.value)
    if f.key == "lens":
        return _contains([Sample.lens], f.value)
    if f.key == "name":
        return _contains([Sample.name], f.value)
    if f.key == "place":
        cols = place_columns()
        if not cols:
            raise InvalidInput("place: this workspace has no place names yet")
        v = f.value.lower()
        return or_(*(_lower(c) == v for c in cols))
    raise AssertionError(f.key)  # dates are a range, below


def allowed_select(
    s: Session, project_id: int, query: Query, *, base: dict[str, Any] | None = None
) -> Select[Any]:
    """The ids of the project's samples that pass every filter of ``query`` (and the older
    ``Filters`` given as ``base``: ``filtered_query``'s keywords). Hidden duplicates are out."""
    people = [f.value for f in query.filters if f.key == "person" and not f.negated]
    extra = dict(base or {})
    ids = fewest_faces_first(s, person_ids(s, project_id, people) + tuple(extra.pop("people", ())))
    stmt = filtered_query(
        project_id,
        label=extra.get("label"),
        tag=extra.get("tag"),
        split=None,
        subset=None,
        has_annotations=None,
        taken_from=extra.get("taken_from"),
        taken_to=extra.get("taken_to"),
        dup_group=None,
        duplicates_only=False,
        q=extra.get("q"),
        include_hidden=False,
        people=ids,
    ).with_only_columns(Sample.id)
    for f in query.filters:
        if f.key in ("after", "before", "on") or (f.key == "person" and not f.negated):
            continue
        cond = _condition(s, project_id, f)
        stmt = stmt.where(not_(cond) if f.negated else cond)
    start, end = date_range(query)
    if start is not None:
        stmt = stmt.where(Sample.taken_at >= start)
    if end is not None:
        stmt = stmt.where(Sample.taken_at < end)
    return stmt


def describe(query: Query) -> list[str]:
    """The filters in words, for each result's "why"."""
    out = []
    for f in query.filters:
        if f.key in ("after", "before", "on"):
            out.append(f"{'taken ' + f.key if f.key != 'on' else 'taken in'} {f.value}")
        else:
            out.append(f"{'not ' if f.negated else ''}{f.key}={f.value}")
    return out


# --- the search ------------------------------------------------------------------------------------


@dataclass
class _Ranked:
    ids: list[int]
    scores: dict[int, float]

    @property
    def ranks(self) -> dict[int, int]:
        return {i: r for r, i in enumerate(self.ids, start=1)}


def search_query(
    studio: Studio,
    *,
    project: str | int,
    query: str,
    k: int = 20,
    offset: int = 0,
    sample_id: int | None = None,
    image: bytes | None = None,
    image_name: str | None = None,
    filters: dict[str, Any] | None = None,
    vector: np.ndarray | None = None,
    reembed: bool = True,
) -> dict[str, Any]:
    """Search a project with the query syntax; ``sample_id`` or ``image`` make CLIP search by that
    image. ``filters``: the older filter keys (``search.FILTER_KEYS``), combined with AND.
    ``vector``: a query vector (d,) in the model's space, used instead of encoding the words.

    → the shape of ``search.search`` (``items``, ``total``, ``model``, ``notices`` …) plus
    ``mode`` (hybrid | text | clip | filters), ``text_index`` (its state) and, per item, ``match``.
    """
    from vistudio.services import search as sem

    parsed = parse(query)
    if sample_id is not None and image is not None:
        raise InvalidInput("search with one of sample_id or image, not both")
    if not 1 <= k <= sem.MAX_K:
        raise InvalidInput(f"k must be between 1 and {sem.MAX_K}")
    if not 0 <= offset <= sem.MAX_OFFSET:
        raise InvalidInput(f"offset must be between 0 and {sem.MAX_OFFSET}")
    old = sem.make_filters(filters)
    picture = sem.decode_upload(image) if image is not None else None
    depth = max(offset + k, DEPTH)
    notices: list[dict[str, Any]] = []
    with studio.sessions() as s:
        p = find_project(s, project)
        project_id = p.id
        if sample_id is not None:
            row = s.get(Sample, sample_id) if 0 < sample_id < 2**63 else None
            if row is None or row.project_id != project_id:
                raise NotFound(f"sample {sample_id} not found in project {p.name!r}")
        total_samples = s.scalar(select(func.count()).where(Sample.project_id == project_id)) or 0
        chosen = emb.search_model(s, project_id)
    base_filters: dict[str, Any] = {
        "label": old.label,
        "tag": old.tag,
        "taken_from": old.taken_from,
        "taken_to": old.taken_to,
        "q": old.name,
        "people": (),
    }
    with studio.sessions() as s:
        if old.people:
            base_filters["people"] = person_ids(s, project_id, old.people)
        allowed = allowed_select(s, project_id, parsed, base=base_filters)
    passed = describe(parsed) + ([old.describe()] if old.any else [])
    by_image = sample_id is not None or image is not None
    state = text_index.IndexState(ready=True)
    text = _Ranked([], {})
    clip = _Ranked([], {})
    mode = "filters"
    used_clip = False
    if parsed.terms:
        state = text_index.ensure_ready(studio, project_id)
        if state.ready:
            with studio.sessions() as s:
                hits = text_index.search(s, terms=parsed.terms, allowed=allowed, k=depth)
            text = _Ranked([h.sample_id for h in hits], {h.sample_id: h.score for h in hits})
        else:
            notices.append({"code": "text_index_building", "message": state.message, "job_id": state.job_id})
    model_d: dict[str, Any] | None = None
    complete, embedded = False, 0
    if parsed.terms or by_image:
        if reembed:
            notices += sem._maybe_reembed(studio, project_id, chosen[0] if chosen else None)
        if chosen is None:
            notices.append(
                {
                    "code": "no_embeddings",
                    "message": "this project has no embeddings yet: full text only (run `vistudio embed`)",
                }
            )
        else:
            model, complete = chosen
            model_d = emb.model_dict(model)
            index = vector_index.project_index(studio, project_id, model)
            embedded = len(index)
            try:
                if vector is not None:
                    qv, exclude = np.asarray(vector, dtype=np.float32), None
                else:
                    qv, exclude = sem._query_vector(
                        studio,
                        model,
                        text=None if by_image else parsed.text,
                        sample_id=sample_id,
                        picture=picture,
                    )
            except ModelUnavailable as exc:
                if by_image:
                    raise
                notices.append({"code": "clip_unavailable", "message": f"full text only: {exc.message}"})
            else:
                used_clip = True
                with studio.sessions() as s:
                    ids = np.fromiter(s.scalars(allowed), dtype=np.int64)
                if embedded and ids.size:
                    scores, found = index.search(qv, min(depth + 1, embedded), allowed=ids)
                    pairs = [
                        (int(i), float(sc))
                        for i, sc in zip(found[0], scores[0], strict=True)
                        if i >= 0 and i != exclude
                    ][:depth]
                    clip = _Ranked([i for i, _ in pairs], dict(pairs))
    if parsed.terms or by_image:
        fused = rrf([text.ids, clip.ids])
        mode = ("hybrid" if used_clip else "text") if parsed.terms else "clip"
        page = fused[offset : offset + k]
        items = _items(
            studio,
            page,
            parsed=parsed,
            text=text,
            clip=clip,
            passed=passed,
            clip_query=None if by_image else parsed.text,
        )
        matched = None
    else:
        with studio.sessions() as s:
            order = (Sample.taken_at.is_(None), Sample.taken_at.desc(), Sample.id)
            stmt = select(Sample.id).where(Sample.id.in_(allowed)).order_by(*order).offset(offset).limit(k)
            ids_page = list(s.scalars(stmt))
            matched = s.scalar(select(func.count()).select_from(allowed.subquery())) or 0
        items = _items(
            studio, [(i, None) for i in ids_page], parsed=parsed, text=text, clip=clip, passed=passed
        )
    return {
        "query": {"query": query, "canonical": str(parsed), "words": [str(t) for t in parsed.terms]},
        "filters": {"query": [str(f) for f in parsed.filters], **old.to_dict()},
        "k": k,
        "offset": offset,
        "samples": total_samples,
        "mode": mode,
        "items": items,
        "total": len(items),
        "matched": matched,
        "model": model_d,
        "complete": complete,
        "embedded": embedded,
        "pending": max(0, total_samples - embedded) if model_d is not None else total_samples,
        "text_index": state.to_dict(),
        "notices": notices,
    }


def _items(
    studio: Studio,
    page: Sequence[tuple[int, float | None]],
    *,
    parsed: Query,
    text: _Ranked,
    clip: _Ranked,
    passed: list[str],
    clip_query: str | None = None,
) -> list[dict[str, Any]]:
    from vistudio.services.search import _items as sample_items

    if not page:
        return []
    with studio.sessions() as s:
        fields = text_index.matched_fields(s, [i for i, _ in page], parsed.terms)
    out = sample_items(studio, [(i, sc or 0.0) for i, sc in page], why=lambda _score: "")
    fused = dict(page)
    t_ranks, c_ranks = text.ranks, clip.ranks
    for item in out:
        sid = item["sample_id"]
        words = fields.get(sid, {})
        match = {
            "words": words,
            "text_rank": t_ranks.get(sid),
            "text_score": round(text.scores[sid], 4) if sid in text.scores else None,
            "clip_rank": c_ranks.get(sid),
            "similarity": round(clip.scores[sid], 4) if sid in clip.scores else None,
            "rrf": None if (f := fused.get(sid)) is None else round(f, 6),
            "filters": passed,
        }
        item["score"] = match["rrf"]
        item["match"] = match
        item["why"] = why(match, clip_query=clip_query)
        if clip_query is None and match["similarity"] is not None:  # by an image: say so
            item["why"] = item["why"].replace("text similarity", "image similarity", 1)
    return out


def why(match: dict[str, Any], *, clip_query: str | None = None) -> str:
    """A result's reasons in one line: CLIP similarity, words (fields), full-text rank, filters."""
    parts = []
    if match["similarity"] is not None:
        to = f" to {clip_query!r}" if clip_query else ""
        parts.append(f"text similarity {match['similarity']:.2f}{to} (CLIP rank {match['clip_rank']})")
    if match["words"]:
        parts.append("words " + "; ".join(f"{w} in {', '.join(fs)}" for w, fs in match["words"].items()))
    if match["text_rank"] is not None:
        parts.append(f"full-text rank {match['text_rank']}")
    if match["filters"]:
        parts.append("filters: " + ", ".join(match["filters"]))
    return "; ".join(parts) or "in the project"
