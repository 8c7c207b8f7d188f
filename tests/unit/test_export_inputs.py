"""What an export's parity check runs on: the split's readable images, else seeded noise (said in
the validation's ``source``), never nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vistudio.services import exports


def test_unreadable_images_are_skipped_and_none_readable_means_seeded_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exports, "_parity_items", lambda studio, exp: ["a.jpg", "bad.jpg", "c.jpg"])

    def read(path: str) -> str:
        if path == "bad.jpg":
            raise OSError("truncated")
        return path.upper()

    inputs, source = exports._parity_inputs(None, None, read, lambda rng: ["noise"])  # type: ignore[arg-type]
    assert inputs == ["A.JPG", "C.JPG"] and source == "split images"

    def unreadable(path: str) -> Any:
        raise ValueError("not an image")

    first = exports._parity_inputs(None, None, unreadable, lambda rng: list(rng.random(3)))  # type: ignore[arg-type]
    again = exports._parity_inputs(None, None, unreadable, lambda rng: list(rng.random(3)))  # type: ignore[arg-type]
    assert first[1] == "random inputs (the split has no readable images)"
    assert first[0] == again[0]  # seeded: the same check every time


def test_without_a_split_classifiers_and_detectors_get_noise_of_their_input_shape() -> None:
    exp = SimpleNamespace(split_id=None)  # the split was deleted
    arrays, source = exports._image_inputs(None, exp, {"input_size": [32, 24]})  # type: ignore[arg-type]
    assert source.startswith("random inputs") and len(arrays) == 8
    assert all(a.shape == (3, 32, 24) and a.dtype == np.float32 for a in arrays)
    images, _ = exports._detector_inputs(None, exp, 64)  # type: ignore[arg-type]
    assert [a.shape for a in images] == [(3, 64, 64), (3, 64, 56), (3, 64, 48), (3, 64, 40)]
    assert all(a.min() >= 0 and a.max() < 1 for a in images)
