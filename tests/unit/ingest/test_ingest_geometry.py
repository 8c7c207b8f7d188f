from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vistudio.ingest.geometry import ring_problem


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ([[0, 0], [10, 0], [10, 10], [0, 10]], None),
        ([[0, 0], [10, 0], [10, 10], [10, 10], [0, 10]], None),  # a repeated point is harmless
        ([[0, 0], [10, 10], [10, 0], [0, 10]], "self-intersecting polygon: its edges cross near (5, 5)"),
        ([[0, 0], [5, 5], [10, 10]], "zero area"),
        ([[3, 3], [3, 3], [3, 3]], "fewer than 3 distinct points"),
        ([[0, 0], [1, 1], [0, 0]], "fewer than 3 distinct points"),
        ([[0, 0], [math.nan, 1], [1, 0]], "finite numbers"),
        ([[0, 0, 0], [1, 1, 1], [1, 0, 0]], "[x, y] pairs"),
        ([[0, 0], [4, 0], [4, 4], [2, 0], [0, 4]], "self-intersecting polygon"),  # touches its own edge
    ],
)
def test_ring_problem(points: list[list[float]], reason: str | None) -> None:
    got = ring_problem(points)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_ten_thousand_vertices_are_checked() -> None:
    n = 10_000
    circle = [
        [200 + 100 * math.cos(2 * math.pi * i / n), 200 + 100 * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    assert ring_problem(circle) is None
    circle[10], circle[5000] = circle[5000], circle[10]
    assert "self-intersecting" in (ring_problem(circle) or "")


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=3, max_size=12))
def test_never_raises(points: list[tuple[float, float]]) -> None:
    reason = ring_problem([list(p) for p in points])
    assert reason is None or reason.startswith(("malformed polygon", "self-intersecting polygon"))
