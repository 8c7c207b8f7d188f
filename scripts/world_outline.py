"""Convert world-atlas's TopoJSON countries (Natural Earth 1:110m) into the compact GeoJSON that the
places map draws under its tiles (src/vistudio/web/static/vendor/leaflet/world-110m.geojson).

Run once when vendoring, with the package unpacked from ``npm pack world-atlas@2.0.2``:

    python scripts/world_outline.py package/countries-110m.json \
        src/vistudio/web/static/vendor/leaflet/world-110m.geojson

Standard library only: it decodes TopoJSON's quantised, delta-encoded arcs (the format's spec:
https://github.com/topojson/topojson-specification) into polygons, keeps each country's name and
rounds coordinates to 0.01° (about 1 km, finer than the 1:110m data itself).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

DECIMALS = 2


def decode_arcs(topo: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """Every arc as absolute (lon, lat) points: undo the delta encoding, then the quantisation."""
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring(indexes: list[int], arcs: list[list[tuple[float, float]]]) -> list[list[float]]:
    """A closed ring from its arc indexes (a negative index ~i is arc i reversed); consecutive arcs
    share their end point, which is kept once."""
    out: list[tuple[float, float]] = []
    for i in indexes:
        points = arcs[i] if i >= 0 else arcs[~i][::-1]
        out.extend(points[1:] if out else points)
    rounded: list[list[float]] = []
    for lon, lat in out:
        p = [round(lon, DECIMALS), round(lat, DECIMALS)]
        if not rounded or rounded[-1] != p:  # rounding merges neighbours
            rounded.append(p)
    return rounded


def unwrap(ring: list[list[float]]) -> list[list[float]]:
    """A ring that crosses the antimeridian (Russia's Chukotka, Fiji) jumps from 180° to -180°, which
    a map draws as a line across the whole world: its longitudes are made continuous (179, 181, …)
    instead — Leaflet draws past 180°. A ring that still does not close once unwrapped goes round
    the pole (Antarctica) and is kept as it is."""
    if all(abs(b[0] - a[0]) <= 180 for a, b in itertools.pairwise(ring)):
        return ring
    out = [list(ring[0])]
    for lon, lat in ring[1:]:
        prev = out[-1][0]
        lon += 360 * round((prev - lon) / 360)
        out.append([round(lon, DECIMALS), lat])
    return out if abs(out[-1][0] - out[0][0]) < 1e-6 else ring


def convert(topo: dict[str, Any], name: str = "countries") -> dict[str, Any]:
    arcs = decode_arcs(topo)
    features = []
    for geom in topo["objects"][name]["geometries"]:
        if geom["type"] == "Polygon":
            polygons = [geom["arcs"]]
        elif geom["type"] == "MultiPolygon":
            polygons = geom["arcs"]
        else:
            continue
        coords = []
        for polygon in polygons:
            rings = [unwrap(ring(r, arcs)) for r in polygon]
            rings = [r for r in rings if len(r) >= 4]  # too small at 0.01°: dropped
            if rings:
                coords.append(rings)
        if coords:
            features.append(
                {
                    "type": "Feature",
                    "properties": {"name": (geom.get("properties") or {}).get("name", "")},
                    "geometry": {"type": "MultiPolygon", "coordinates": coords},
                }
            )
    return {"type": "FeatureCollection", "features": features}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    topo = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    out = convert(topo)
    Path(argv[2]).write_text(json.dumps(out, separators=(",", ":")), encoding="utf-8")
    print(f"{len(out['features'])} countries, {Path(argv[2]).stat().st_size:,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
