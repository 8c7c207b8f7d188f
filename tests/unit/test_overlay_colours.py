"""Class colours: the overlays saved by Python and the ones the pages draw (overlay.js) give a class
the same colour — the same formula on both sides, checked against CSS's own hsl() conversion."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from vistudio.ml.inference.detections import Detections
from vistudio.ml.inference.overlays import LIGHTNESS, SATURATION, class_colour, class_hue, draw_detections

OVERLAY_JS = Path(__file__).parents[2] / "src" / "vistudio" / "web" / "static" / "overlay.js"


def _css_hsl(hue: float, saturation: float, lightness: float) -> tuple[int, int, int]:
    """CSS Color 4's hslToRgb (the algorithm browsers use for ``hsl()``), rounded to bytes."""
    a = saturation * min(lightness, 1 - lightness)

    def f(n: int) -> float:
        k = (n + hue / 30) % 12
        return lightness - a * max(-1.0, min(k - 3, 9 - k, 1.0))

    return round(f(0) * 255), round(f(8) * 255), round(f(4) * 255)


def test_class_hues_are_pinned() -> None:
    # class k: k golden angles (137.508°) round the wheel from 2°
    assert [class_hue(k) for k in range(6)] == [2.0, 139.5, 277.0, 54.5, 192.0, 329.5]
    assert class_hue(100) == 72.8 and class_hue(1000) == 350.0
    assert class_colour(0) == _css_hsl(2.0, 0.85, 0.46) == (217, 24, 18)
    assert class_colour(1) == (18, 217, 82)
    assert class_colour(2) == (141, 18, 217)


def test_python_and_the_pages_use_one_formula() -> None:
    js = OVERLAY_JS.read_text(encoding="utf-8")
    hue = re.search(r"function hue\(ci\) \{ return \(ci \* ([\d.]+) \+ ([\d.]+)\) % 360; \}", js)
    assert hue is not None, "overlay.js's hue() changed: change class_hue with it"
    light = re.search(r"const LIGHT = \[([\d, ]+)\];", js)
    sat = re.search(r'", (\d+)%, " \+ LIGHT\[', js)
    assert light is not None and sat is not None, "overlay.js's colour() changed: change class_colour with it"
    step, offset = float(hue.group(1)), float(hue.group(2))
    lights = [int(v) / 100 for v in light.group(1).split(",")]
    assert tuple(lights) == LIGHTNESS and int(sat.group(1)) / 100 == SATURATION
    for k in range(40):
        js_hue = round((k * step + offset) % 360, 1)
        assert class_hue(k) == js_hue
        for inst in range(len(lights) + 1):
            assert class_colour(k, inst) == _css_hsl(js_hue, SATURATION, lights[inst % len(lights)])


def test_saved_overlays_draw_boxes_in_the_class_colour() -> None:
    img = Image.new("RGB", (64, 48), (255, 255, 255))
    dets = Detections(
        np.array([[4.0, 20.0, 30.0, 44.0], [34.0, 20.0, 60.0, 44.0]]),
        np.array([0, 2]),
        np.array([0.9, 0.8], np.float32),
    )
    out = np.asarray(draw_detections(img, dets, ["a", "b", "c"]))
    assert tuple(out[44, 10]) == class_colour(0) and tuple(out[44, 40]) == class_colour(2)
