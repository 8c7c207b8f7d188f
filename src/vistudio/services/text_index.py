"""The full-text index: one text document per sample, searched with SQLite FTS5 (bm25) or
PostgreSQL full text (``ts_rank_cd``) behind one interface.

A document has one text per field (:data:`FIELDS`): the file name and folders, the caption, the
tags, the labels (class names of its annotations), the camera (make, model, lens), the place and
the names of the people in it. :data:`SOURCES` says where each field's text comes from — adding a
source is one line there. The text is stored *normalised* (lower case,
no diacritics, every run of characters other than letters and digits made one space), so that both
databases cut it into the same words whatever their tokenizer does with ``IMG_0042.JPG``.

The rows live in ``text_documents``; the database keeps the index from them in the same
transaction (migration 0019): an external-content FTS5 table filled by triggers (the text is
stored once, and bm25 and ``highlight`` still work), or a generated ``tsvector`` with a GIN index.

Sync: every service that changes an indexed field calls :func:`sync` (or :func:`sync_faces`,
:func:`sync_people`) with the samples it touched, in its own transaction. Deleting a sample
deletes its document by ``ON DELETE CASCADE`` (and the FTS5 trigger fires for it).

Projects that had samples before the index existed are listed in ``text_index_pending``: their
first search rebuilds the index at once when small (:data:`INLINE_REBUILD` samples), else queues a
``text-index`` job and answers "text index building: N of M" until it is done.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Integer, Select, bindparam, delete, func, insert, literal_column, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import column, table

from vistudio.db import Annotation, Job, JobEvent, LabelClass, Project, Sample, SampleTag, utcnow
from vistudio.db.faces import Face, Person
from vistudio.db.text_index import TextDocument, TextIndexPending
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.query_syntax import Term

KIND = "text-index"
FIELDS = ("name", "caption", "tags", "labels", "camera", "place", "people")
# bm25 column weights (FTS5, in FIELDS order): a hit in a person, tag or label counts most
FTS5_WEIGHTS = (1.0, 1.0, 3.0, 3.0, 2.0, 2.0, 4.0)
# samples' place names (migration 0020), used where the columns exist
PLACE_COLUMNS = ("place_city", "place_region", "place_country", "place_country_code")
INLINE_REBUILD = 20_000  # samples a search indexes at once for a pending project (else a job)
CHUNK = 500
REBUILD_BATCH = 2_000

_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without diacritics: ``"Zoë Ångström"`` → ``"zoe angstrom"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    """The index's words of a text: folded runs of letters and digits."""
    return _WORD.findall(fold(text))


def normalise(text: str) -> str:
    return " ".join(words(text))


# --- the documents' sources ----------------------------------------------------------------------
# Each source gives (sample id, text) pairs for some of the samples asked for; a field's text is
# the join of its sources' texts.

Source = Callable[[Session, Sequence[int]], Iterable[tuple[int, str | None]]]


def _names(s: Session, ids: Sequence[int]) -> Iterable[tuple[int, str | None]]:
    for sid, name, storage, path in s.execute(
        select(Sample.id, Sample.name, Sample.storage, Sample.path).where(Sample.id.in_(ids))
    ):
        yield sid, name
        if storage == "reference":  # the folders of a photo in the user's library
            yield sid, path


def _tags(s: Session, ids: Sequence[int]) -> Iterable[tuple[int, str | None]]:
    return s.execute(select(SampleTag.sample_id, SampleTag.tag).where(SampleTag.sample_id.in_(ids))).all()


def _labels(s: Session, ids: Sequence[int]) -> Iterable[tuple[int, str | None]]:
    return s.execute(
        select(Annotation.sample_id, LabelClass.name)
        .join(LabelClass, LabelClass.id == Annotation.class_id)
        .where(Annotation.sample_id.in_(ids))
        .distinct()
    ).all()


def _camera(s: Session, ids: Sequence[int]) -> Iterable[tuple[int, str | None]]:
    for sid, *parts in s.execute(
        select(Sample.id, Sample.camera_make, Sample.camera_model, Sample.lens).where(Sample.id.in_(ids))
    ):
        yield sid, " ".join(p for p in parts if p)


def _people(s: Session, ids: Sequence[int]) -> Iterable[tuple[int, str | None]]:
    return s.execute(
        select(Face.sample_id, Person.name)
        .join(Person, Person.id == Face.person_id)
        .where(Face.sample_id.in_(ids), Person.name.is_not(None))
        .distinct()
    ).all()


def _places(s: Session, ids: Sequence[int]) -> Iterable[tuple[int, str | None]]:
    cols = [Sample.__table__.c[c] for c in PLACE_COLUMNS if c in Sample.__table__.c]
    if not cols:
        return ()
    return (
        (sid, " ".join(p for p in parts if p))
        for sid, *parts in s.execute(select(Sample.id, *cols).where(Sample.id.in_(ids)))
    )


def _captions(s: Session, ids: Sequence[int]) -> Iterable[tuple[int, str | None]]:
    """The user's caption of a photo when there is one (it corrects the models'), else every
    model's."""
    from vistudio.db.captions import USER, Caption

    rows = s.execute(
        select(Caption.sample_id, Caption.model, Caption.text).where(Caption.sample_id.in_(ids))
    ).all()
    mine = {sid for sid, model, _ in rows if model == USER}
    return ((sid, text) for sid, model, text in rows if model == USER or sid not in mine)


SOURCES: tuple[tuple[str, Source], ...] = (
    ("name", _names),
    ("tags", _tags),
    ("labels", _labels),
    ("camera", _camera),
    ("people", _people),
    ("place", _places),
    ("caption", _captions),
)


def documents(s: Session, sample_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The documents of the samples that exist among ``sample_ids``: ``{id: {"project_id", field:
    normalised text}}``."""
    docs: dict[int, dict[str, Any]] = {}
    for part in _chunks(sample_ids):
        for sid, project_id in s.execute(select(Sample.id, Sample.project_id).where(Sample.id.in_(part))):
            docs[sid] = {"sample_id": sid, "project_id": project_id, **dict.fromkeys(FIELDS, "")}
        texts: dict[tuple[int, str], list[str]] = {}
        for field, source in SOURCES:
            for sid, text in source(s, part):
                if text and sid in docs:
                    texts.setdefault((sid, field), []).append(text)
        for (sid, field), parts in texts.items():
            docs[sid][field] = normalise(" ".join(sorted(parts)))
    return docs


def _chunks(ids: Iterable[int], n: int = CHUNK) -> Iterator[list[int]]:
    part: list[int] = []
    for i in ids:
        part.append(int(i))
        if len(part) == n:
            yield part
            part = []
    if part:
        yield part


# --- sync ------------------------------------------------------------------------------------------


def sync(s: Session, sample_ids: Iterable[int]) -> int:
    """Bring these samples' documents up to date in this transaction (a sample that no longer
    exists loses its document); only changed documents are written. The number written."""
    ids = sorted(set(int(i) for i in sample_ids))
    if not ids:
        return 0
    s.flush()
    written = 0
    cols = [TextDocument.__table__.c[f] for f in ("sample_id", "project_id", *FIELDS)]
    for part in _chunks(ids):
        docs = documents(s, part)
        have = {row[0]: row for row in s.execute(select(*cols).where(TextDocument.sample_id.in_(part)))}
        gone = [i for i in part if i not in docs and i in have]
        if gone:
            s.execute(delete(TextDocument).where(TextDocument.sample_id.in_(gone)))
        fresh = [d for sid, d in docs.items() if sid not in have]
        changed = [d for sid, d in docs.items() if sid in have and tuple(have[sid]) != _row(d)]
        if fresh:
            s.execute(insert(TextDocument), fresh)
        if changed:  # by primary key (the FTS5 trigger replaces each row's old text)
            s.execute(update(TextDocument), changed)
        written += len(gone) + len(fresh) + len(changed)
    return written


def _row(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["sample_id"], d["project_id"], *(d[f] for f in FIELDS))


def sync_faces(s: Session, face_ids: Iterable[int]) -> int:
    """Sync the photos of these faces (a face moved to or from a named person)."""
    faces = list(set(face_ids))
    photos: set[int] = set()
    for part in _chunks(faces):
        photos.update(s.scalars(select(Face.sample_id).where(Face.id.in_(part))))
    return sync(s, photos)


def sync_people(s: Session, *, people: Iterable[int] = (), faces: Iterable[int] = ()) -> int:
    """Sync the photos showing these people now, and those of these faces (a decision about
    people: rename, merge, move, delete, undo)."""
    s.flush()
    photos: set[int] = set()
    for part in _chunks(set(people)):
        photos.update(s.scalars(select(Face.sample_id).where(Face.person_id.in_(part))))
    for part in _chunks(set(faces)):
        photos.update(s.scalars(select(Face.sample_id).where(Face.id.in_(part))))
    return sync(s, photos)


def photos_of_faces(s: Session, face_ids: Iterable[int]) -> set[int]:
    """The photos of these faces (read before deleting the faces, to sync them after)."""
    out: set[int] = set()
    for part in _chunks(set(face_ids)):
        out.update(s.scalars(select(Face.sample_id).where(Face.id.in_(part))))
    return out


def sync_named_photos(s: Session, project_id: int) -> int:
    """Sync every document of the project that names people (all its faces or people went)."""
    ids = s.scalars(
        select(TextDocument.sample_id).where(TextDocument.project_id == project_id, TextDocument.people != "")
    ).all()
    return sync(s, ids)


# --- the rebuild (projects from before the index) ------------------------------------------------


@dataclass(frozen=True)
class IndexState:
    ready: bool
    indexed: int = 0
    samples: int = 0
    job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": "ready" if self.ready else "building",
            "indexed": self.indexed,
            "samples": self.samples,
            "job_id": self.job_id,
        }

    @property
    def message(self) -> str:
        return f"text index building: {self.indexed:,} of {self.samples:,} (job {self.job_id})"


def ensure_ready(studio: Any, project_id: int) -> IndexState:
    """Whether the project's index is complete. A pending one is rebuilt now when small, else a
    ``text-index`` job is queued (once) and the state says how far it got."""
    with studio.sessions() as s:
        if s.get(TextIndexPending, project_id) is None:
            return IndexState(ready=True)
    with studio.sessions.begin() as s:
        pending = s.get(TextIndexPending, project_id)
        if pending is None:  # done meanwhile
            return IndexState(ready=True)
        samples = s.scalar(select(func.count()).where(Sample.project_id == project_id)) or 0
        if samples <= INLINE_REBUILD:
            _rebuild(s, project_id)
            s.delete(pending)
            return IndexState(ready=True)
        job = s.get(Job, pending.job_id) if pending.job_id is not None else None
        if job is None or job.status not in ("queued", "running"):
            job = Job(
                kind=KIND,
                params={"project_id": project_id},
                project_id=project_id,
                max_attempts=studio.queue.settings.max_attempts,
                run_after=utcnow(),
                created_at=utcnow(),
            )
            s.add(job)
            s.flush()
            s.add(JobEvent(job_id=job.id, kind="status", data={"status": "queued"}, at=utcnow()))
            pending.job_id = job.id
        indexed = s.scalar(select(func.count()).where(TextDocument.project_id == project_id)) or 0
        return IndexState(ready=False, indexed=indexed, samples=samples, job_id=job.id)


def mark_stale(s: Session, project_id: int) -> None:
    """Ask for the project's index to be rebuilt (at the next search, or by its job)."""
    if s.get(TextIndexPending, project_id) is None:
        s.add(TextIndexPending(project_id=project_id))


def _project_ids(s: Session, project_id: int, after: int, n: int) -> list[int]:
    return list(
        s.scalars(
            select(Sample.id)
            .where(Sample.project_id == project_id, Sample.id > after)
            .order_by(Sample.id)
            .limit(n)
        )
    )


def _rebuild(s: Session, project_id: int) -> int:
    after, n = 0, 0
    while ids := _project_ids(s, project_id, after, REBUILD_BATCH):
        n += sync(s, ids)
        after = ids[-1]
    return n


def rebuild(studio: Any, *, project: str | int) -> dict[str, Any]:
    """Rebuild a project's text index now, in batches (one transaction each)."""
    from vistudio.services.projects import find_project

    with studio.sessions() as s:
        project_id = find_project(s, project).id
    return _rebuild_batches(studio, project_id, ctx=None)


def _rebuild_batches(studio: Any, project_id: int, *, ctx: JobContext | None) -> dict[str, Any]:
    with studio.sessions() as s:
        total = s.scalar(select(func.count()).where(Sample.project_id == project_id)) or 0
    after, done, written = 0, 0, 0
    while True:
        if ctx is not None:
            ctx.check_cancelled()
        with studio.sessions.begin() as s:
            ids = _project_ids(s, project_id, after, REBUILD_BATCH)
            if not ids:
                s.execute(delete(TextIndexPending).where(TextIndexPending.project_id == project_id))
                break
            written += sync(s, ids)
        after, done = ids[-1], done + len(ids)
        if ctx is not None:
            ctx.progress(done, total, f"text index: {done:,} of {total:,}")
    return {"samples": done, "written": written}


@job_handler(KIND)
def run_rebuild(ctx: JobContext) -> dict[str, Any]:
    if ctx.project_id is None:
        raise PermanentJobError("the project of this job was deleted")
    with ctx.studio.sessions() as s:
        if s.get(Project, ctx.project_id) is None:
            raise PermanentJobError("the project of this job was deleted")
    return {"report": _rebuild_batches(ctx.studio, ctx.project_id, ctx=ctx)}


# --- search ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextHit:
    sample_id: int
    score: float  # higher is better (bm25 negated on SQLite, ts_rank_cd on PostgreSQL)


class TextBackend(Protocol):
    def search(self, s: Session, *, terms: Sequence[Term], allowed: Select[Any], k: int) -> list[TextHit]:
        """The ``k`` best documents among the sample ids ``allowed`` selects that hold every term."""
        ...


def term_words(terms: Sequence[Term]) -> list[tuple[list[str], bool]]:
    """Each term as its index words and whether its last word is a prefix; terms without a letter
    or digit (``^``, ``*``, ``(``) drop out: they cannot match a word."""
    out = []
    for t in terms:
        ws = words(t.text)
        if ws:
            out.append((ws, t.prefix))
    return out


class Fts5Backend:
    """SQLite FTS5: each term becomes a quoted FTS5 string (its words only, so nothing the user
    types is read as FTS5 syntax: ``NEAR(``, ``AND``, ``^``, ``:`` are words or nothing)."""

    def search(self, s: Session, *, terms: Sequence[Term], allowed: Select[Any], k: int) -> list[TextHit]:
        parts = term_words(terms)
        if not parts:
            return []
        match = " AND ".join('"' + " ".join(ws) + '"' + ("*" if prefix else "") for ws, prefix in parts)
        fts = table("text_fts", column("rowid", Integer))
        weights: list[Any] = [literal_column(repr(w)) for w in FTS5_WEIGHTS]
        rank = func.bm25(literal_column("text_fts"), *weights)
        stmt = (
            select(fts.c.rowid, rank)
            .select_from(fts)
            .where(literal_column("text_fts").op("MATCH")(bindparam("fts_query", match)))
            # "+ 0": not a constraint FTS5 sees, so it runs the MATCH once and the ids are then
            # checked against the allowed set (else it may run the MATCH once per allowed id)
            .where((fts.c.rowid + 0).in_(allowed))
            .order_by(rank, fts.c.rowid)
            .limit(k)
        )
        return [TextHit(int(i), -float(r)) for i, r in s.execute(stmt)]


class PostgresBackend:
    """PostgreSQL: a tsquery built from the words alone (``simple`` configuration: no stemming,
    names are not English), ranked with ``ts_rank_cd`` over the GIN-indexed ``tsv`` column."""

    def search(self, s: Session, *, terms: Sequence[Term], allowed: Select[Any], k: int) -> list[TextHit]:
        parts = term_words(terms)
        if not parts:
            return []
        tsquery = " & ".join(
            "(" + " <-> ".join([*ws[:-1], ws[-1] + (":*" if prefix else "")]) + ")" for ws, prefix in parts
        )
        docs = table("text_documents", column("sample_id", Integer), column("tsv"))
        q = func.to_tsquery(literal_column("'simple'"), bindparam("ts_query", tsquery))
        rank = func.ts_rank_cd(docs.c.tsv, q)
        stmt = (
            select(docs.c.sample_id, rank)
            .where(docs.c.tsv.op("@@")(q))
            .where(docs.c.sample_id.in_(allowed))
            .order_by(rank.desc(), docs.c.sample_id)
            .limit(k)
        )
        return [TextHit(int(i), float(r)) for i, r in s.execute(stmt)]


def backend(s: Session) -> TextBackend:
    return Fts5Backend() if s.get_bind().dialect.name == "sqlite" else PostgresBackend()


def search(s: Session, *, terms: Sequence[Term], allowed: Select[Any], k: int) -> list[TextHit]:
    """The ``k`` best documents holding every term among ``allowed`` (a select of sample ids)."""
    return backend(s).search(s, terms=terms, allowed=allowed, k=k)


def match_select(s: Session, terms: Sequence[Term]) -> Select[Any] | None:
    """The ids of every document holding all ``terms`` (the same matching as :func:`search`,
    unranked and unlimited: a set, for smart albums); None when no term has a word (nothing
    matches)."""
    parts = term_words(terms)
    if not parts:
        return None
    if s.get_bind().dialect.name == "sqlite":
        match = " AND ".join('"' + " ".join(ws) + '"' + ("*" if prefix else "") for ws, prefix in parts)
        fts = table("text_fts", column("rowid", Integer))
        return (
            select(fts.c.rowid)
            .select_from(fts)
            .where(literal_column("text_fts").op("MATCH")(bindparam("fts_match", match)))
        )
    tsquery = " & ".join(
        "(" + " <-> ".join([*ws[:-1], ws[-1] + (":*" if prefix else "")]) + ")" for ws, prefix in parts
    )
    docs = table("text_documents", column("sample_id", Integer), column("tsv"))
    q = func.to_tsquery(literal_column("'simple'"), bindparam("ts_match", tsquery))
    return select(docs.c.sample_id).where(docs.c.tsv.op("@@")(q))


def matched_fields(
    s: Session, sample_ids: Collection[int], terms: Sequence[Term]
) -> dict[int, dict[str, list[str]]]:
    """For each sample, each term (as typed) → the fields it matched in: what a result's "why" says."""
    parts = [(t, *tw) for t in terms for tw in term_words([t])]
    if not sample_ids or not parts:
        return {}
    cols = [TextDocument.__table__.c[f] for f in FIELDS]
    out: dict[int, dict[str, list[str]]] = {}
    for part in _chunks(sample_ids):
        for sid, *texts in s.execute(
            select(TextDocument.sample_id, *cols).where(TextDocument.sample_id.in_(part))
        ):
            found: dict[str, list[str]] = {}
            for t, ws, prefix in parts:
                where = [f for f, text in zip(FIELDS, texts, strict=True) if _holds(text.split(), ws, prefix)]
                if where:
                    found[str(t)] = where
            out[sid] = found
    return out


def _holds(doc: list[str], ws: list[str], prefix: bool) -> bool:
    n = len(ws)
    for i in range(len(doc) - n + 1):
        if doc[i : i + n - 1] == ws[:-1] and (
            doc[i + n - 1].startswith(ws[-1]) if prefix else doc[i + n - 1] == ws[-1]
        ):
            return True
    return False
