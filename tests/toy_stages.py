"""Custom pipeline stages used by the tests (loaded by import path, as users' stages are)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vistudio.pipelines.stage import Item, StepOutput


def colour_classifier(item: Item, data: Any) -> StepOutput:
    """'red' when the red channel dominates, else 'blue': a classifier whose mistakes we know."""
    arr = np.asarray(data, dtype=np.float64)
    red, blue = arr[..., 0].mean(), arr[..., 2].mean()
    label = "red" if red > blue else "blue"
    return StepOutput(data={"label": label, "confidence": 1.0}, metrics={"red_minus_blue": red - blue})


def explode_on_odd(item: Item, data: Any) -> Any:
    """Fails for items whose name ends in an odd digit; passes data through otherwise."""
    if item.key[-1] in "13579":
        raise RuntimeError(f"cannot handle {item.key}")
    return data


def constant_artifact(item: Item, data: Any) -> StepOutput:
    """The same artifact for every item and run: it must be stored once."""
    return StepOutput(data=data, artifacts={"lut": np.arange(256, dtype=np.uint8)})


# A custom stage may declare what it takes and gives, as the built-in ones do: the chain is checked.
colour_classifier.takes = ("image",)  # type: ignore[attr-defined]
colour_classifier.gives = "label"  # type: ignore[attr-defined]
