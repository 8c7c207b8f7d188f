from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vistudio.errors import InvalidInput
from vistudio.services.splits import assign_subsets, parse_ratios


def test_parse_ratios() -> None:
    assert parse_ratios("0.8,0.1,0.1") == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert parse_ratios([0.7, 0.3]) == {"train": 0.7, "val": 0.3}
    assert parse_ratios({"train": 0.9, "val": 0.1}) == {"train": 0.9, "val": 0.1}
    for bad in ("0.5,0.6", "a,b", "1", "0.2,0.2,0.2,0.4", "-0.1,0.6,0.5", "nan,0.5,0.5", "0,0.5,0.5"):
        with pytest.raises(InvalidInput):
            parse_ratios(bad)


def test_stratified_per_class_proportions() -> None:
    classes = {i: ["a"] for i in range(100)} | {100 + i: ["b"] for i in range(50)} | {200 + i: ["c"] for i in range(10)}
    out = assign_subsets(classes, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    per = Counter((classes[i][0], s) for i, s in out.items())
    assert (per["a", "train"], per["a", "val"], per["a", "test"]) == (80, 10, 10)
    assert (per["b", "train"], per["b", "val"], per["b", "test"]) == (40, 5, 5)
    assert (per["c", "train"], per["c", "val"], per["c", "test"]) == (8, 1, 1)


def test_seed_changes_membership_but_not_counts() -> None:
    classes = {i: [str(i % 3)] for i in range(90)}
    r = {"train": 0.8, "val": 0.1, "test": 0.1}
    a, b, a2 = assign_subsets(classes, r, 1), assign_subsets(classes, r, 2), assign_subsets(classes, r, 1)
    assert a == a2 and a != b
    assert Counter(a.values()) == Counter(b.values())


def test_multilabel_rare_classes_reach_every_subset() -> None:
    # detection-style: every image has "car"; "bike" is rare and must not all land in train
    classes = {i: ["car"] for i in range(80)} | {80 + i: ["car", "bike"] for i in range(20)}
    out = assign_subsets(classes, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    bikes = Counter(s for i, s in out.items() if "bike" in classes[i])
    assert bikes == {"train": 12, "val": 4, "test": 4}


def test_many_singleton_strata_still_follow_the_ratios() -> None:
    classes = {i: [f"class-{i}"] for i in range(100)}
    out = Counter(assign_subsets(classes, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0).values())
    assert abs(out["train"] - 80) <= 1 and abs(out["val"] - 10) <= 1 and abs(out["test"] - 10) <= 1


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.integers(0, 10_000), st.lists(st.sampled_from("abcde"), max_size=3), min_size=1, max_size=200),
    st.integers(0, 2**32),
)
def test_every_sample_assigned_once_and_totals_match(classes: dict[int, list[str]], seed: int) -> None:
    ratios = {"train": 0.7, "val": 0.2, "test": 0.1}
    out = assign_subsets(classes, ratios, seed)
    assert set(out) == set(classes)
    counts = Counter(out.values())
    n = len(classes)
    for k, r in ratios.items():
        assert abs(counts[k] - r * n) <= 1 + 0.05 * n
