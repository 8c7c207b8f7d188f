"""The evaluation page's drawing data: the browser counts predictions against the evaluation's
threshold, which is often a prediction's own score (the best-F1 confidence)."""

from vistudio.web.pages.evaluation import drawing


def test_scores_reach_the_page_exactly_so_a_score_equal_to_the_threshold_still_counts() -> None:
    score = 0.3127849  # rounded to 5 decimals it would fall below itself
    result = {
        "width": 64,
        "height": 48,
        "predictions": [{"box": [1.004, 2, 30, 40], "score": score, "class_index": 0, "outcome": "fp"}],
        "truths": [{"box": [0, 0, 10, 10], "class_index": 1, "outcome": "fn", "matched_score": None}],
    }
    d = drawing(result)
    assert d["p"][0]["s"] == score and d["p"][0]["s"] >= score
    assert d["p"][0]["b"] == [1.0, 2.0, 30.0, 40.0] and d["p"][0]["o"] == "fp"
    assert d["t"][0] == {"b": [0.0, 0.0, 10.0, 10.0], "c": 1, "o": "fn", "ms": None}
    assert (d["w"], d["h"]) == (64, 48)
