"""Classification metrics equal scikit-learn's (zero_division=0), the confusion PNG, softmax/top-k."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion

from vistudio.ml.inference.confusion import MAX_DRAWN, render_confusion_png
from vistudio.ml.inference.metrics import classification_metrics, confusion_matrix, softmax, top_k


def check_against_sklearn(y_true: list[int], y_pred: list[int], n: int) -> None:
    classes = [f"c{i}" for i in range(n)]
    cm = confusion_matrix(y_true, y_pred, n)
    labels = list(range(n))
    assert cm.tolist() == sk_confusion(y_true, y_pred, labels=labels).tolist()
    m = classification_metrics(cm, classes)
    assert m["accuracy"] == accuracy_score(y_true, y_pred)
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == (p, r, f), avg
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    per = m["per_class"]
    assert [c["precision"] for c in per] == p.tolist()
    assert [c["recall"] for c in per] == r.tolist()
    assert [c["f1"] for c in per] == f.tolist()
    assert [c["support"] for c in per] == s.tolist()
    assert [c["class"] for c in per] == classes


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=2, max_value=12).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=80),
        )
    )
)
def test_metrics_equal_scikit_learn(case: tuple[int, list[tuple[int, int]]]) -> None:
    n, pairs = case
    check_against_sklearn([t for t, _ in pairs], [p for _, p in pairs], n)


def test_classes_never_seen_nor_predicted_count_as_zero_like_scikit_learn() -> None:
    # class 3 has no support and is never predicted; class 2 is predicted but never true
    y_true = [0, 0, 1, 1, 1, 0]
    y_pred = [0, 2, 1, 1, 0, 0]
    check_against_sklearn(y_true, y_pred, 4)
    m = classification_metrics(confusion_matrix(y_true, y_pred, 4), list("abcd"))
    assert m["per_class"][3] == {
        "class": "d",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
        "predicted": 0,
    }
    assert m["micro_f1"] == m["accuracy"] == 4 / 6


def test_perfect_and_empty_inputs() -> None:
    m = classification_metrics(confusion_matrix([0, 1, 2], [0, 1, 2], 3), ["a", "b", "c"])
    assert m["accuracy"] == m["macro_f1"] == m["weighted_f1"] == 1.0
    empty = classification_metrics(confusion_matrix([], [], 2), ["a", "b"])
    assert empty["samples"] == 0 and empty["accuracy"] == 0.0 and empty["macro_f1"] == 0.0


def test_confusion_matrix_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], 2)


def test_softmax_and_top_k() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [1000.0, 1000.0, -1000.0]], dtype=np.float32)
    p = softmax(logits)
    assert np.allclose(p.sum(axis=1), 1.0) and np.isfinite(p).all()
    idx, prob = top_k(p, 2)
    assert idx.tolist() == [[1, 2], [0, 1]]  # ties: lower index first
    assert prob[0, 0] == p[0, 1]
    assert top_k(p, 99)[0].shape == (2, 3)


@pytest.mark.parametrize("n", [2, 12, 30])
def test_confusion_png_is_a_readable_heatmap(n: int) -> None:
    rng = np.random.default_rng(n)
    cm = rng.integers(0, 4, (n, n))
    cm[np.arange(n), np.arange(n)] += 50
    cm[0, 0] = 12345  # a wide number still fits its cell
    names = [f"class-{i}" for i in range(n)]
    names[-1] = "a-class-name-far-too-long-to-show-entirely-" * 3
    png = render_confusion_png(cm, names, title="t")
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.width < 60 * n + 600 and im.height < 60 * n + 600
        px = im.convert("RGB")
        colours = {px.getpixel((x, y)) for x in range(0, im.width, 7) for y in range(0, im.height, 7)}
    assert any(b > r + 60 for r, _, b in colours)  # the blue diagonal
    if n > 2:
        assert any(r > b + 30 for r, _, b in colours)  # red mistakes
    with pytest.raises(ValueError, match="does not match"):
        render_confusion_png(cm, names[:-1])


def test_confusion_png_of_a_thousand_classes_draws_the_most_confused() -> None:
    n = 1000
    cm = np.diag(np.full(n, 20))
    cm[7, 900] = 9  # the classes worth seeing: 7 and 900 confused
    png = render_confusion_png(cm, [f"c{i}" for i in range(n)], title="t")
    with Image.open(io.BytesIO(png)) as im:
        assert im.width < 60 * MAX_DRAWN + 600 and im.height < 60 * MAX_DRAWN + 600
        px = im.convert("RGB")
        colours = {px.getpixel((x, y)) for x in range(0, im.width, 3) for y in range(0, im.height, 3)}
    assert any(r > b + 30 for r, _, b in colours)  # the 7 → 900 mistake is among those drawn
