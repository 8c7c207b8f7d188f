"""Photos into events: cuts in a time-ordered photo stream by time gaps relative to the local
rhythm and by jumps in place, with stays away from home kept whole across nights.

The photos are sorted by time (then id). Between two neighbours ``i`` and ``i + 1`` there is a
gap ``g`` (seconds) and, when both have a position, a distance. Positions: a photo without GPS
takes the position of the nearest photo in time that has one, within ``borrow_s`` (a phone and a
camera on the same trip). The gap is a cut, rule by rule, the first that applies:

1. ``g < min_gap_s`` (1 h): no cut — one outing, whatever else;
2. a **jump in place**: both positions known and more than ``jump_km`` (50 km) apart — a cut
   (you arrived somewhere else: Lisbon → Porto is two events);
3. a **stay away from home**: both photos away from home (further than ``jump_km`` from it) and
   ``g < stay_gap_s`` (48 h) — no cut: a trip is one event across its nights and quiet days;
4. ``g ≥ max_gap_s`` (24 h) — a cut;
5. the adaptive rule of PhotoTOC (Platt, Czerwinski & Field, 2003): a cut when
   ``log g ≥ log K + mean(log gaps of the 2·window + 1 gaps centred on it)`` with ``K`` = 17 and
   ``window`` = 10 — a gap much longer than the gaps around it. Unlike a fixed threshold (such as
   36 h), this follows the local rhythm: a 3-hour pause cuts a day of dense shooting in two, while
   a photo every few hours for a week stays one series.

Home is where the photos are taken on the most days: positions rounded to cells of about
``jump_km`` (the latitude in steps of jump_km / 111 km, the longitude scaled by the latitude), the
cell with the most distinct days, its photos' median position. Without any position there is no
home and rules 2 and 3 never apply.

A library module: plain values in, plain lists out; no database.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import pairwise

import numpy as np

EARTH_KM = 6371.0088


@dataclass(frozen=True)
class Photo:
    """One photo: ``time`` in seconds (epoch, the photo's local clock as UTC), a position or None."""

    id: int
    time: float
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class EventRules:
    min_gap_s: float = 3600.0
    max_gap_s: float = 86400.0
    stay_gap_s: float = 2 * 86400.0
    jump_km: float = 50.0
    borrow_s: float = 6 * 3600.0
    window: int = 10
    k: float = 17.0


def distance_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance (haversine), element by element, in km."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def _valid(lat: float | None, lon: float | None) -> bool:
    return (
        lat is not None
        and lon is not None
        and math.isfinite(lat)
        and math.isfinite(lon)
        and -90 <= lat <= 90
        and -180 <= lon <= 180
    )


def _positions(times: np.ndarray, lat: np.ndarray, lon: np.ndarray, borrow_s: float) -> np.ndarray:
    """Which photos have a position after borrowing; fills ``lat``/``lon`` in place (NaN: none)."""
    known = ~np.isnan(lat)
    if not known.any():
        return known
    idx = np.flatnonzero(known)
    kt = times[idx]
    # nearest known photo in time: the one before or the one after
    right = np.searchsorted(kt, times, side="left").clip(0, len(idx) - 1)
    left = (right - 1).clip(0, len(idx) - 1)
    pick = np.where(np.abs(kt[left] - times) <= np.abs(kt[right] - times), left, right)
    near = idx[pick]
    ok = ~known & (np.abs(times[near] - times) <= borrow_s)
    lat[ok], lon[ok] = lat[near[ok]], lon[near[ok]]
    return known | ok


def home(photos: Sequence[Photo], jump_km: float = 50.0) -> tuple[float, float] | None:
    """Where the photos are taken on the most distinct days (see the module docstring), or None."""
    days: dict[tuple[int, int], set[date]] = {}
    members: dict[tuple[int, int], list[tuple[float, float]]] = {}
    step = jump_km / 111.0
    for p in photos:
        if not _valid(p.lat, p.lon):
            continue
        assert p.lat is not None and p.lon is not None
        lon_step = step / max(math.cos(math.radians(p.lat)), 0.05)
        cell = (math.floor(p.lat / step), math.floor(p.lon / lon_step))
        days.setdefault(cell, set()).add(datetime.fromtimestamp(p.time, UTC).date())
        members.setdefault(cell, []).append((p.lat, p.lon))
    if not days:
        return None
    best = max(days, key=lambda c: (len(days[c]), len(members[c]), c))
    pts = np.array(members[best])
    return float(np.median(pts[:, 0])), float(np.median(pts[:, 1]))


def segment(
    photos: Sequence[Photo], rules: EventRules | None = None, *, decided: Mapping[int, bool] | None = None
) -> list[list[int]]:
    """The photos' ids grouped into events, in time order (see the module docstring).
    ``decided``: the user's word, by photo id, on whether an event starts at that photo (a split
    or a merge); it overrides the rules there."""
    r = rules or EventRules()
    ordered = sorted(photos, key=lambda p: (p.time, p.id))
    n = len(ordered)
    if n == 0:
        return []
    times = np.array([p.time for p in ordered], np.float64)
    lat = np.array([p.lat if _valid(p.lat, p.lon) else np.nan for p in ordered], np.float64)
    lon = np.array([p.lon if _valid(p.lat, p.lon) else np.nan for p in ordered], np.float64)
    cuts = cut_flags(times, lat, lon, r, home(ordered, r.jump_km))
    if decided:
        for i in range(1, n):
            cut = decided.get(ordered[i].id)
            if cut is not None:
                cuts[i - 1] = cut
    ids = [p.id for p in ordered]
    starts = [0, *(np.flatnonzero(cuts) + 1).tolist(), n]
    return [ids[a:b] for a, b in pairwise(starts)]


def cut_flags(
    times: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    rules: EventRules,
    home_at: tuple[float, float] | None,
) -> np.ndarray:
    """(n − 1,) booleans: is the gap after photo ``i`` a cut. ``times`` sorted; ``lat``/``lon``
    NaN where unknown (copied, then filled by borrowing)."""
    n = len(times)
    if n < 2:
        return np.zeros(0, bool)
    lat, lon = lat.copy(), lon.copy()
    has = _positions(times, lat, lon, rules.borrow_s)
    gaps = np.diff(times)
    both = has[:-1] & has[1:]
    step = np.full(n - 1, np.nan)
    step[both] = distance_km(lat[:-1][both], lon[:-1][both], lat[1:][both], lon[1:][both])
    away = np.zeros(n, bool)
    if home_at is not None:
        from_home = np.full(n, np.nan)
        from_home[has] = distance_km(
            lat[has], lon[has], np.full(has.sum(), home_at[0]), np.full(has.sum(), home_at[1])
        )
        away = has & (np.nan_to_num(from_home, nan=0.0) > rules.jump_km)
    # PhotoTOC: the gap against the mean log gap of the window centred on it
    logs = np.log(np.maximum(gaps, 1.0))
    w = rules.window
    padded = np.pad(logs, w, mode="edge")
    sums = np.convolve(padded, np.ones(2 * w + 1), mode="valid")
    local = sums / (2 * w + 1)
    adaptive = logs >= math.log(rules.k) + local

    cut = np.zeros(n - 1, bool)
    short = gaps < rules.min_gap_s
    jump = both & (np.nan_to_num(step, nan=0.0) > rules.jump_km)
    stay = away[:-1] & away[1:] & (gaps < rules.stay_gap_s)
    cut = ~short & (jump | (~stay & ((gaps >= rules.max_gap_s) | adaptive)))
    return cut


def boundary_f1(predicted: Sequence[Sequence[int]], truth: Sequence[Sequence[int]]) -> float:
    """F1 of the cuts of two groupings of the same photos in the same time order: a cut is the
    first photo of every event but the first; 1.0 when both have no cut."""

    def starts(events: Sequence[Sequence[int]]) -> set[int]:
        return {e[0] for e in events[1:] if e}

    p, t = starts(predicted), starts(truth)
    if not p and not t:
        return 1.0
    hit = len(p & t)
    return 2 * hit / (len(p) + len(t))


def date_span(first: date, last: date) -> str:
    """``3 May 2024``, ``3–7 May 2024``, ``30 Apr – 2 May 2024``, ``28 Dec 2023 – 2 Jan 2024``."""

    def d(x: date, *, month: bool = True, year: bool = True) -> str:
        parts = [str(x.day)]
        if month:
            parts.append(x.strftime("%b"))
        if year:
            parts.append(str(x.year))
        return " ".join(parts)

    if first == last:
        return d(first)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{d(last)}"
    if first.year == last.year:
        return f"{d(first, year=False)} – {d(last)}"
    return f"{d(first)} – {d(last)}"


def event_name(places: Sequence[str | None], first: date, last: date) -> str:
    """``Lisbon, 3–7 May 2024``: the most frequent place of the event's photos (ties: the first
    seen) and its dates; the dates alone when no photo has a place."""
    named = [p for p in places if p]
    span = date_span(first, last)
    if not named:
        return span
    counts = Counter(named)
    top = max(counts.values())
    place = next(p for p in named if counts[p] == top)
    return f"{place}, {span}"
