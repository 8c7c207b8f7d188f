"""A project's photos on a map: where the photos with a GPS position are, as clusters per zoom level,
and the photos inside an area.

Clustering happens in the database, not in the browser (which cannot hold a million markers): at
zoom ``z`` the world is cut into square cells of ``360 / 2**(z + 2)`` degrees (four per 256-pixel
map tile: cells of 64 px on screen at the equator) and one ``GROUP BY`` over the photos inside the
asked area returns, per occupied cell, the number of photos, their mean position (where the
cluster is drawn), the box around them (where clicking it zooms to) and one photo for a thumbnail.
Every photo falls in exactly one cell (``floor`` of its position over the cell size), so the
counts of one answer add up to the photos in the area.

An area is ``west,south,east,north`` in degrees (WGS 84, as EXIF stores GPS positions). ``west >
east`` is an area across the antimeridian (170,-20,-170,0: from 170°E eastwards to 170°W).

Only valid positions count (latitude within ±90°, longitude within ±180°; NULL: no position);
photos hidden by a duplicates review are left out, as the grid leaves them out. Video keyframes
have no GPS position of their own, so none is on the map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session

from vistudio.db import Sample
from vistudio.db.duplicates import HiddenSample
from vistudio.errors import InvalidInput
from vistudio.services.places import place_dict
from vistudio.services.projects import find_project
from vistudio.studio import Studio

MAX_ZOOM = 22  # Leaflet's deepest zoom (about 2 m cells)
CELLS_PER_TILE = 4  # a cell is a quarter of a 256-px tile wide: 64 px
# An area that spans more cells than this at its zoom is refused: a screen shows a few thousand
# (a 4K screen, 3840 × 2160 px, about 2,000 cells of 64 px), and one answer's size is bounded by it.
MAX_CELLS = 65_536
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
WORLD = (-180.0, -90.0, 180.0, 90.0)
# OpenStreetMap's standard tiles (https://operations.osmfoundation.org/policies/tiles/), drawn over
# the vendored world outline when the workspace is online.
TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
TILE_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'


@dataclass(frozen=True)
class BBox:
    """An area in degrees; ``west > east``: across the antimeridian."""

    west: float
    south: float
    east: float
    north: float

    @property
    def crosses_antimeridian(self) -> bool:
        return self.west > self.east

    @property
    def width(self) -> float:
        """Degrees of longitude covered (0..360)."""
        return self.east - self.west + (360.0 if self.crosses_antimeridian else 0.0)

    def contains(self, lat: float, lon: float) -> bool:
        """Whether a position lies inside (edges included): the rule :func:`bbox_condition` applies."""
        if not (self.south <= lat <= self.north and -180.0 <= lon <= 180.0):
            return False
        if self.crosses_antimeridian:
            return lon >= self.west or lon <= self.east
        return self.west <= lon <= self.east

    def as_list(self) -> list[float]:
        return [self.west, self.south, self.east, self.north]

    def text(self) -> str:
        return ",".join(_short(v) for v in self.as_list())


def _short(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def parse_bbox(value: Any, field: str = "bbox") -> BBox:
    """``"west,south,east,north"`` (or four numbers) as a :class:`BBox`; InvalidInput, with what is
    wrong, for anything else: not four numbers, not finite, a latitude beyond ±90°, a longitude
    beyond ±180°, south above north."""
    if isinstance(value, str):
        parts = value.split(",")
        if len(parts) != 4:
            raise InvalidInput(
                f"{field} is four numbers: west,south,east,north in degrees (got {len(parts)} "
                f"value{'s' if len(parts) != 1 else ''})"
            )
        try:
            numbers = [float(p.strip()) for p in parts]
        except ValueError:
            raise InvalidInput(
                f"{field} is four numbers: west,south,east,north (got {value[:80]!r})"
            ) from None
    elif isinstance(value, (list, tuple)) and len(value) == 4:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise InvalidInput(f"{field} is four numbers: west,south,east,north")
        numbers = [float(v) for v in value]
    else:
        raise InvalidInput(f"{field} is four numbers: west,south,east,north in degrees")
    if not all(math.isfinite(v) for v in numbers):
        raise InvalidInput(f"{field}: every value must be a finite number (no NaN or infinity)")
    west, south, east, north = numbers
    for name, v in (("south", south), ("north", north)):
        if not -90.0 <= v <= 90.0:
            raise InvalidInput(f"{field}: {name} latitude {_short(v)} is outside -90..90")
    for name, v in (("west", west), ("east", east)):
        if not -180.0 <= v <= 180.0:
            raise InvalidInput(
                f"{field}: {name} longitude {_short(v)} is outside -180..180 "
                "(an area across the antimeridian has west > east)"
            )
    if south > north:
        raise InvalidInput(f"{field}: south ({_short(south)}) is above north ({_short(north)})")
    return BBox(west, south, east, north)


def check_zoom(zoom: Any) -> int:
    if isinstance(zoom, bool) or not isinstance(zoom, int) or not 0 <= zoom <= MAX_ZOOM:
        raise InvalidInput(f"zoom is a whole number from 0 to {MAX_ZOOM}")
    return zoom


def cell_size(zoom: int) -> float:
    """A cluster cell's side in degrees at ``zoom``."""
    return 360.0 / (2 ** (zoom + 2))


def cell_of(lat: float, lon: float, zoom: int) -> tuple[int, int]:
    """The (row, column) of the cell holding a position: what the SQL groups by, for tests and
    callers that cluster points of their own."""
    size = cell_size(zoom)
    return math.floor((lat + 90.0) / size), math.floor((lon + 180.0) / size)


def _cells_spanned(bbox: BBox, zoom: int) -> int:
    size = cell_size(zoom)
    cols = math.floor(bbox.width / size) + 2
    rows = math.floor((bbox.north - bbox.south) / size) + 2
    return cols * rows


def valid_position() -> ColumnElement[bool]:
    """A photo with a usable GPS position (NULL, or beyond ±90°/±180°: none)."""
    return and_(Sample.gps_lat.between(-90.0, 90.0), Sample.gps_lon.between(-180.0, 180.0))


def bbox_condition(bbox: BBox) -> ColumnElement[bool]:
    """Photos whose position lies inside ``bbox`` (edges included, the antimeridian handled)."""
    lat = Sample.gps_lat.between(bbox.south, bbox.north)
    if bbox.crosses_antimeridian:
        lon: ColumnElement[bool] = or_(
            Sample.gps_lon.between(bbox.west, 180.0), Sample.gps_lon.between(-180.0, bbox.east)
        )
    else:
        lon = Sample.gps_lon.between(bbox.west, bbox.east)
    return and_(lat, lon)


def tile_layer(studio: Studio) -> dict[str, str] | None:
    """The online base map drawn over the world outline: OpenStreetMap's tiles, or None when the
    workspace is offline (the ``offline`` setting, ``VISTUDIO_OFFLINE=1``): then the page asks
    no server for anything and shows the outline alone."""
    if studio.settings.offline:
        return None
    return {"url": TILE_URL, "attribution": TILE_ATTRIBUTION}


def _visible(project_id: int) -> list[ColumnElement[bool]]:
    hidden = select(HiddenSample.sample_id).where(HiddenSample.project_id == project_id)
    return [Sample.project_id == project_id, Sample.id.not_in(hidden)]


def _floor(s: Session, value: ColumnElement[Any]) -> ColumnElement[int]:
    # value is never negative here: SQLite's CAST truncates, which is floor; PostgreSQL's rounds
    if s.get_bind().dialect.name == "sqlite":
        return cast(value, Integer)
    return cast(func.floor(value), Integer)


def summary(studio: Studio, *, project: str | int) -> dict[str, Any]:
    """How many photos have a GPS position and how many not, and the box around those that have one
    (``bounds``: ``[west, south, east, north]``, null when none), and the online tiles (``tiles``:
    ``{"url", "attribution"}``, null when offline)."""
    with studio.sessions() as s:
        p = find_project(s, project)
        visible = _visible(p.id)
        total = s.scalar(select(func.count()).select_from(Sample).where(*visible)) or 0
        row = s.execute(
            select(
                func.count(),
                func.min(Sample.gps_lon),
                func.min(Sample.gps_lat),
                func.max(Sample.gps_lon),
                func.max(Sample.gps_lat),
            ).where(*visible, valid_position())
        ).one()
        with_gps = int(row[0] or 0)
        return {
            "project": {"id": p.id, "name": p.name},
            "total": int(total),
            "with_gps": with_gps,
            "without_gps": int(total) - with_gps,
            "bounds": [float(v) for v in row[1:] if v is not None] if with_gps else None,
            "tiles": tile_layer(studio),
        }


def clusters(
    studio: Studio, *, project: str | int, bbox: str | BBox | None = None, zoom: int = 0
) -> dict[str, Any]:
    """The photos inside ``bbox`` (default: the world) grouped by the cells of ``zoom``, most
    photos first: ``{"clusters": [{"count", "lat", "lon", "bounds": [w, s, e, n], "sample_id"}],
    "photos": total inside, "cell": degrees, "zoom", "bbox"}``. ``lat``/``lon``: the mean
    position of the cluster's photos (one photo: its own); ``bounds``: the box around them;
    ``sample_id``: the most recently added of them (a thumbnail). An area of more than
    ``MAX_CELLS`` cells at that zoom is refused (InvalidInput)."""
    zoom = check_zoom(zoom)
    box = _bbox(bbox)
    spanned = _cells_spanned(box, zoom)
    if spanned > MAX_CELLS:
        raise InvalidInput(
            f"the area spans about {spanned:,} cells at zoom {zoom}; at most {MAX_CELLS:,}: "
            "ask for a smaller area or a lower zoom",
            details={"cells": spanned, "max_cells": MAX_CELLS},
        )
    size = cell_size(zoom)
    with studio.sessions() as s:
        p = find_project(s, project)
        # one integer per cell (row · columns + column): one sort key, not two
        columns = 2 ** (zoom + 2) + 1
        cell = (
            _floor(s, (Sample.gps_lat + 90.0) / size) * columns + _floor(s, (Sample.gps_lon + 180.0) / size)
        ).label("cell")
        stmt = (
            select(
                cell,
                func.count().label("n"),
                func.avg(Sample.gps_lat),
                func.avg(Sample.gps_lon),
                func.min(Sample.gps_lon),
                func.min(Sample.gps_lat),
                func.max(Sample.gps_lon),
                func.max(Sample.gps_lat),
                func.max(Sample.id),
            )
            # the bbox lies within ±90°/±180° (parse_bbox): no valid_position(), whose latitude
            # range the planner could pick for the index search instead of the bbox's
            .where(*_visible(p.id), bbox_condition(box))
            .group_by(literal_column("cell"))
        )
        out: list[dict[str, Any]] = []
        total = 0
        for _cell, n, lat, lon, w, so, e, no, sid in s.execute(stmt):
            total += n
            out.append(
                {
                    "count": int(n),
                    "lat": float(lat),
                    "lon": float(lon),
                    "bounds": [float(w), float(so), float(e), float(no)],
                    "sample_id": int(sid),
                    "thumbnail_url": f"/api/v1/samples/{int(sid)}/thumbnail",
                }
            )
    out.sort(key=lambda c: (-c["count"], c["sample_id"]))
    return {
        "project": {"id": p.id, "name": p.name},
        "zoom": zoom,
        "bbox": box.as_list(),
        "cell": size,
        "photos": total,
        "clusters": out,
    }


def _bbox(bbox: str | BBox | None) -> BBox:
    if bbox is None or bbox == "":
        return BBox(*WORLD)
    return bbox if isinstance(bbox, BBox) else parse_bbox(bbox)


def photos(
    studio: Studio,
    *,
    project: str | int,
    bbox: str | BBox | None = None,
    offset: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """One page of the photos inside ``bbox`` (default: every photo with a position), newest first
    (by the timeline's date, the undated last; ties by id): ``{"items": [{"id", "name", "width",
    "height", "time", "lat", "lon", "place", "thumbnail_url"}], "total", "offset", "limit",
    "bbox"}``."""
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 2**62:
        raise InvalidInput("offset must be a whole number >= 0")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    box = _bbox(bbox)
    with studio.sessions() as s:
        p = find_project(s, project)
        where = [*_visible(p.id), bbox_condition(box)]  # within ±90°/±180°: valid positions only
        total = s.scalar(select(func.count()).select_from(Sample).where(*where)) or 0
        rows = s.scalars(
            select(Sample)
            .where(*where)
            .order_by(Sample.sort_time.desc().nulls_last(), Sample.id.desc())
            .offset(offset)
            .limit(limit)
        )
        items = [
            {
                "id": r.id,
                "name": r.name,
                "width": r.width,
                "height": r.height,
                "time": r.sort_time.isoformat() if r.sort_time else None,
                "lat": r.gps_lat,
                "lon": r.gps_lon,
                "place": place_dict(r),
                "thumbnail_url": f"/api/v1/samples/{r.id}/thumbnail",
            }
            for r in rows
        ]
    return {
        "project": {"id": p.id, "name": p.name},
        "bbox": box.as_list(),
        "items": items,
        "total": int(total),
        "offset": offset,
        "limit": limit,
    }
