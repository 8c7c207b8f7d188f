"""A synthetic year of photos whose events are known (tests of ml/events and services/events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from vistudio.ml.events import Photo

HOME = (52.52, 13.40)  # Berlin
CITIES = [(38.72, -9.14), (41.15, -8.61), (48.86, 2.35), (41.39, 2.17), (45.46, 9.19), (50.08, 14.44)]


def _jitter(rng: np.random.Generator, at: tuple[float, float], km: float) -> tuple[float, float]:
    return at[0] + rng.uniform(-km, km) / 111.0, at[1] + rng.uniform(-km, km) / 70.0


def year_of_photos(seed: int, *, gps_share: float = 0.8) -> list[list[Photo]]:
    """The true events of a synthetic year: outings at home (a burst of 3–30 photos a few minutes
    apart; on one day in four a second one 4–8 hours later) and trips of 2–7 days to a city 300+ km away (5–40 photos a day between 9:00
    and 21:00, with a lunch break of up to 2 h), one trip in three going on to a second city
    (a second event). ``gps_share`` of the photos have a position (a camera without GPS took the
    others)."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    events: list[list[Photo]] = []
    next_id = 0
    day = 0

    def photo(t: datetime, at: tuple[float, float], km: float) -> Photo:
        nonlocal next_id
        next_id += 1
        if rng.random() < gps_share:
            lat, lon = _jitter(rng, at, km)
            return Photo(next_id, t.timestamp(), lat, lon)
        return Photo(next_id, t.timestamp())

    def day_of_shooting(d: int, at: tuple[float, float]) -> list[Photo]:
        t = t0 + timedelta(days=d, hours=float(rng.uniform(9, 11)))
        out = []
        for k in range(int(rng.integers(5, 41))):
            out.append(photo(t, at, 10))
            t += timedelta(minutes=float(rng.exponential(12)) + 0.2)
            if k == 6:
                t += timedelta(minutes=float(rng.uniform(30, 120)))  # lunch
            if t.hour >= 21:
                break
        return out

    while day < 365:
        if rng.random() < 0.05:
            length = int(rng.integers(2, 8))
            stops = [CITIES[int(rng.integers(len(CITIES)))]]
            if rng.random() < 1 / 3:
                stops.append(next(c for c in CITIES if c != stops[0]))
            split = length // 2 if len(stops) == 2 else length
            for s, (first, last) in enumerate(((0, split), (split, length))[: len(stops)]):
                trip = [p for d in range(day + first, day + last) for p in day_of_shooting(d, stops[s])]
                if trip:
                    events.append(trip)
            day += length + 1
        elif rng.random() < 0.3:
            t = t0 + timedelta(days=day, hours=float(rng.uniform(8, 12)))
            for _ in range(2 if rng.random() < 0.25 else 1):  # sometimes a second outing that day
                burst = []
                for _ in range(int(rng.integers(3, 31))):
                    burst.append(photo(t, HOME, 5))
                    t += timedelta(minutes=float(rng.exponential(3)) + 0.1)
                events.append(burst)
                t += timedelta(hours=float(rng.uniform(4, 8)))
            day += 1
        else:
            day += 1
    return events
