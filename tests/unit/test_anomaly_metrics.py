"""Anomaly metrics (``ml/inference/anomaly``): AUROC equals scikit-learn's and the Mann–Whitney U
statistic / (n₀·n₁), AP equals scikit-learn's, the curves are scikit-learn's, and the chosen
threshold (best F1 or Youden's J) reproduces exactly the TPR, FPR and F1 reported with it — on
random data with ties, including Hypothesis-generated cases; undefined metrics are None."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve

from vistudio.ml.inference.anomaly import (
    anomaly_metrics,
    at_threshold,
    auroc,
    average_precision,
    best_threshold,
    normal_class,
    pr_curve,
    score_histogram,
    sigmoid,
)
from vistudio.ml.inference.anomaly import roc_curve as our_roc


def _data(seed: int, n: int = 300, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + 1.3 * y
    if ties:  # rounded scores: many ties, across the classes too
        s = np.round(s, 1)
    return y, sigmoid(s)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_equals_sklearn_and_mann_whitney(seed: int) -> None:
    y, s = _data(seed, ties=seed % 2 == 0)
    ours = auroc(y, s)
    assert ours is not None
    assert ours == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    u = mannwhitneyu(s[y == 1], s[y == 0], alternative="two-sided").statistic
    assert abs(ours - u / ((y == 1).sum() * (y == 0).sum())) < 1e-6
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    mine = our_roc(y, s)
    np.testing.assert_allclose(mine["fpr"], fpr, atol=1e-12)
    np.testing.assert_allclose(mine["tpr"], tpr, atol=1e-12)


@pytest.mark.parametrize("by", ["f1", "youden"])
@pytest.mark.parametrize("seed", range(4))
def test_the_chosen_threshold_reproduces_its_figures_exactly(by: str, seed: int) -> None:
    y, s = _data(seed)
    m = anomaly_metrics(y, s, threshold_by=by)
    t = m["threshold"]
    assert m["threshold_source"] == by
    # halfway between two neighbouring scores: none lies strictly between the chosen one and it
    distinct = np.unique(s)
    above = distinct[distinct >= t]
    below = distinct[distinct < t]
    assert above.size and (not below.size or t == (above.min() + below.max()) / 2)
    pred = s >= t
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    assert m["tpr"] == tp / (y == 1).sum() and m["fpr"] == fp / (y == 0).sum()
    assert m["f1"] == pytest.approx(f1_score(y, pred.astype(int)), abs=1e-12)
    # it is the best: no other score as threshold does better by its criterion
    for other in np.unique(s):
        o = at_threshold(y, s, float(other))
        if by == "f1":
            assert o["f1"] <= m["f1"] + 1e-12
        else:
            assert o["tpr"] - o["fpr"] <= m["tpr"] - m["fpr"] + 1e-12
    # the point is on the ROC curve that is reported
    roc = our_roc(y, s)
    assert any(f == m["fpr"] and r == m["tpr"] for f, r in zip(roc["fpr"], roc["tpr"], strict=True))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 12)), min_size=2, max_size=60).filter(
        lambda xs: {y for y, _ in xs} == {0, 1}
    )
)
def test_random_cases_with_heavy_ties(pairs: list[tuple[int, int]]) -> None:
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] / 12 for p in pairs])
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    u = mannwhitneyu(s[y == 1], s[y == 0], alternative="two-sided").statistic
    assert abs(auroc(y, s) - u / ((y == 1).sum() * (y == 0).sum())) < 1e-6  # type: ignore[operator]
    t = best_threshold(y, s, "f1")
    assert t is not None
    assert at_threshold(y, s, t)["f1"] == pytest.approx(max(f1_score(y, (s >= v).astype(int)) for v in s))


def test_undefined_metrics_are_none_and_a_fallback_threshold_is_used() -> None:
    y = np.zeros(5, dtype=int)
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.4])
    m = anomaly_metrics(y, s, fallback_threshold=0.35)
    assert m["auroc"] is None and m["ap"] is None and m["tpr"] is None
    assert m["threshold"] == 0.35 and m["threshold_source"] == "fallback"
    assert m["fp"] == 2 and m["fpr"] == 0.4 and m["roc"]["fpr"] == [] and m["pr"]["recall"] == []
    assert anomaly_metrics(y, s)["threshold_source"] == "default"
    given_ = anomaly_metrics(np.array([0, 1, 1]), np.array([0.2, 0.6, 0.1]), threshold=0.5)
    assert given_["threshold_source"] == "given" and given_["tp"] == 1 and given_["fn"] == 1
    assert pr_curve(y, s)["precision"] == []
    with pytest.raises(ValueError, match="labels"):
        auroc([0, 2], [0.1, 0.2])


def test_histogram_sigmoid_and_the_normal_class() -> None:
    h = score_histogram([0, 0, 1, 1], [0.0, 0.04, 0.97, 1.0], bins=10)
    assert h["normal"][0] == 2 and h["anomalous"][-1] == 2 and sum(h["normal"]) == 2
    assert sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]
    assert normal_class(["crack", "Good", "scratch"]) == "Good"
    assert normal_class(["crack", "OK"]) == "OK" and normal_class(["a", "b"]) is None
    m = anomaly_metrics([0, 1, 0, 1], [0.1, 0.8, 0.4, 0.35])
    assert m["roc"]["thresholds"][0] is None and m["auroc"] == 0.75
