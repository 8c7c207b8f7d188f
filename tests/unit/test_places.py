"""Place names from GPS: the shipped GeoNames gazetteer on known positions, the lookup rules on a
small gazetteer of our own (distance cut-off, most populous nearby, antimeridian, poles), and
hostile positions that must give no place and never an exception."""

from __future__ import annotations

import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vistudio.services import places
from vistudio.services.places import Gazetteer, Place
from vistudio.studio import Studio


@pytest.fixture(scope="module")
def geonames() -> Gazetteer:
    return Gazetteer.from_package()


def small(points: list[tuple[str, float, float, int]]) -> Gazetteer:
    return Gazetteer(
        lat=[p[1] for p in points],
        lon=[p[2] for p in points],
        cities=[p[0] for p in points],
        regions=[f"{p[0]} region" for p in points],
        country_codes=["XX" for _ in points],
        population=[p[3] for p in points],
        countries={"XX": "Testland"},
        name="test-1",
    )


@pytest.mark.parametrize(
    ("lat", "lon", "city", "country"),
    [
        (38.72, -9.14, "Lisbon", "Portugal"),
        (48.8566, 2.3522, "Paris", "France"),
        (40.71, -74.00, "New York City", "United States"),
        (-33.87, 151.21, "Sydney", "Australia"),
        (64.1466, -21.94, "Reykjavík", "Iceland"),  # a native name, with its accent
        (78.22, 15.65, "Longyearbyen", "Svalbard and Jan Mayen"),  # near the pole
    ],
)
def test_known_positions(geonames: Gazetteer, lat: float, lon: float, city: str, country: str) -> None:
    (place,) = geonames.lookup([(lat, lon)])
    assert place is not None
    assert (place.city, place.country) == (city, country)
    assert place.distance_km < 10


def test_a_neighbourhood_gives_way_to_its_city(geonames: Gazetteer) -> None:
    # GeoNames' nearest point to central Lisbon is the neighbourhood "Intendente" (0.5 km away)
    (place,) = geonames.lookup([(38.72, -9.14)])
    assert place is not None and place.city == "Lisbon" and place.region == "Lisbon"
    assert places.place_names(_Row(place.columns())) == ["Lisbon", "Portugal"]


def test_open_sea_has_no_place(geonames: Gazetteer) -> None:
    # the middle of the Pacific: GeoNames' nearest town (Taiohae, Marquesas) is ~990 km away
    assert geonames.lookup([(0.0, -140.0), (-48.88, -123.39)]) == [None, None]


def test_distance_cut_off() -> None:
    gaz = small([("Here", 0.0, 0.0, 100)])
    km_per_degree = places.EARTH_RADIUS_KM * math.pi / 180
    inside, outside = gaz.lookup([(0.0, 49.0 / km_per_degree), (0.0, 51.0 / km_per_degree)])
    assert (
        inside is not None and inside.city == "Here" and inside.distance_km == pytest.approx(49.0, rel=1e-6)
    )
    assert outside is None


def test_most_populous_within_a_few_km() -> None:
    gaz = small(
        [("Quarter", 0.0, 0.0, 5_000), ("Metropolis", 0.0, 0.02, 2_000_000), ("Far", 0.0, 0.2, 10**8)]
    )
    # Quarter is nearest; Metropolis (2.2 km farther) is within SAME_PLACE_KM; Far is 22 km away
    (place,) = gaz.lookup([(0.0, 0.0)])
    assert place is not None and place.city == "Metropolis"
    # a bigger place more than SAME_PLACE_KM farther than the nearest does not win: 4.4 km
    apart = small([("Quarter", 0.0, 0.0, 5_000), ("Metropolis", 0.0, 0.04, 2_000_000)])
    (alone,) = apart.lookup([(0.0, 0.0)])
    assert alone is not None and alone.city == "Quarter"


def test_great_circle_across_the_antimeridian_and_at_the_pole() -> None:
    gaz = small(
        [
            ("East", 0.0, 179.95, 10),
            ("West", 0.0, -179.5, 10),
            ("Pole", 89.0, 0.0, 10),
            ("Over", 89.9, 180.0, 10),
        ]
    )
    # degrees as plain numbers would call -179.95 nearest to West (0.45°), not East (0.1° across)
    first, second = gaz.lookup([(0.0, -179.95), (89.9, 0.0)])
    assert first is not None and first.city == "East" and first.distance_km < 12
    # near the pole a degree of longitude is short: "Over" is 22 km away, "Pole" 100 km
    assert second is not None and second.city == "Over"


HOSTILE: list[tuple[Any, Any]] = [
    (math.nan, 0.0),
    (0.0, math.nan),
    (math.inf, 10.0),
    (-math.inf, 10.0),
    (91.0, 0.0),
    (-90.5, 0.0),
    (10.0, 180.01),
    (10.0, -720.0),
    (None, 5.0),
    ("abc", 5.0),
    (1e308, 1e308),
    ([1], {}),
]


def test_invalid_positions_have_no_place(geonames: Gazetteer) -> None:
    found = geonames.lookup([*HOSTILE, (38.72, -9.14)])
    assert found[:-1] == [None] * len(HOSTILE)
    assert found[-1] is not None and found[-1].city == "Lisbon"  # one bad point spoils nothing else


def test_empty_and_all_invalid(geonames: Gazetteer) -> None:
    assert geonames.lookup([]) == []
    assert geonames.lookup([(math.nan, math.nan)]) == [None]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True)
        ),
        max_size=20,
    )
)
def test_any_floats_never_crash(geonames: Gazetteer, points: list[tuple[float, float]]) -> None:
    found = geonames.lookup(points)
    assert len(found) == len(points)
    for (lat, lon), place in zip(points, found, strict=True):
        if place is not None:
            assert abs(lat) <= 90 and abs(lon) <= 180
            assert 0 <= place.distance_km <= places.MAX_DISTANCE_KM


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def test_place_names_and_dict() -> None:
    row = _Row(
        {
            "place_city": "Porto",
            "place_region": "Porto",
            "place_country": "Portugal",
            "place_country_code": "PT",
        }
    )
    assert places.place_names(row) == ["Porto", "Portugal"]
    assert places.place_text(row) == "Porto, Portugal"
    assert places.place_dict(row) == {
        "city": "Porto",
        "region": "Porto",
        "country": "Portugal",
        "country_code": "PT",
    }
    none = _Row(dict.fromkeys(places.PLACE_COLUMNS))
    assert (
        places.place_names(none) == [] and places.place_text(none) == "" and places.place_dict(none) is None
    )


def test_place_columns_are_cut_to_their_width() -> None:
    cols = Place(city="x" * 500, region="", country=None, country_code="XXL", distance_km=1).columns()
    assert (
        len(cols["place_city"] or "") == 200
        and cols["place_region"] is None
        and cols["place_country"] is None
    )
    assert cols["place_country_code"] == "XX"


def test_fill_places_once_per_batch_and_gazetteer_loaded_once(studio: Studio) -> None:
    rows: list[dict[str, Any]] = [
        {"gps_lat": 38.72, "gps_lon": -9.14},
        {"gps_lat": None, "gps_lon": None},
        {"gps_lat": 0.0, "gps_lon": -140.0},
        {"gps_lat": math.nan, "gps_lon": 1.0},
    ]
    loads = studio.cache.loads
    places.fill_places(studio, rows)
    places.fill_places(studio, [{"gps_lat": 48.8566, "gps_lon": 2.3522}])
    assert studio.cache.loads == loads + 1
    assert rows[0]["place_city"] == "Lisbon" and rows[0]["place_country_code"] == "PT"
    assert rows[0]["place_lookup"] == places.gazetteer_name()
    assert "place_lookup" not in rows[1]  # no position: nothing to look up
    for row in rows[2:]:  # looked up, nothing found: not looked up again
        assert row["place_lookup"] == places.gazetteer_name() and row["place_city"] is None


def test_fill_places_without_a_gazetteer_leaves_rows_unlooked_up(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(places, "PACKAGE", "no_such_gazetteer_package")
    rows: list[dict[str, Any]] = [{"gps_lat": 38.72, "gps_lon": -9.14}]
    places.fill_places(studio, rows)  # an import goes on without places
    assert "place_lookup" not in rows[0] and "place_city" not in rows[0]


def test_local_time_and_file_time(tmp_path: Path) -> None:
    when = datetime(2019, 6, 15, 10, 30, 5)
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    os.utime(f, (when.timestamp(), when.timestamp()))
    assert places.file_time(f) == when
    assert places.file_time(f, scratch=tmp_path) is None  # unpacked from a zip: the unpacking's time
    assert places.file_time(tmp_path / "missing.jpg") is None
    for placeholder in (0, 1, -5, math.nan, math.inf, 1e30, None):
        assert places.local_time(placeholder) is None
