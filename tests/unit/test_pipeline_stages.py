"""Built-in pipeline stages: what they return for small known images, and what they refuse."""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vistudio.errors import InvalidInput
from vistudio.pipelines import builtin
from vistudio.pipelines.builtin import (
    BUILTIN_STAGES,
    OnnxSessionCache,
    blur,
    classify_onnx,
    crop,
    edges,
    grayscale,
    load,
    load_custom,
    normalise,
    resize,
)
from vistudio.pipelines.spec import check_chain, load_spec
from vistudio.pipelines.stage import (
    STAGE_IO,
    STAGES,
    Item,
    StageError,
    StageIO,
    StepOutput,
    as_output,
    io_of,
    stage,
)

ITEM = Item(key="x")


def rgb_4x6() -> np.ndarray:
    """4 high × 6 wide: left half red, right half blue."""
    arr = np.zeros((4, 6, 3), dtype=np.uint8)
    arr[:, :3] = (255, 0, 0)
    arr[:, 3:] = (0, 0, 255)
    return arr


def step_edge() -> np.ndarray:
    """8×8 grey: left half black, right half white."""
    arr = np.zeros((8, 8), dtype=np.uint8)
    arr[:, 4:] = 255
    return arr


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# --- registry ------------------------------------------------------------------------------------


def test_the_builtin_stages_are_registered_once_under_their_names() -> None:
    assert set(BUILTIN_STAGES) <= set(STAGES.names())
    assert len(BUILTIN_STAGES) == len(set(BUILTIN_STAGES))
    for name in BUILTIN_STAGES:
        assert STAGES.get(name) is getattr(builtin, name)
    with pytest.raises(ValueError, match="already registered"):
        STAGES.register("resize")(resize)
    assert "custom" not in STAGES.names()  # load_custom is a helper the runner wraps, not a stage


def test_every_builtin_stage_declares_what_it_takes_and_gives() -> None:
    kinds = {name: (STAGE_IO.get(name).takes, STAGE_IO.get(name).gives) for name in BUILTIN_STAGES}
    assert kinds["load"] == (("any",), "image")  # reads the file whatever came before
    assert kinds["resize"] == (("image",), "image") and kinds["edges"] == (("image",), "image")
    assert kinds["normalise"] == (("image",), "array")
    assert kinds["classify_onnx"] == (("image", "file"), "label")  # reads the file when first
    with pytest.raises(ValueError, match="unknown data kinds"):
        stage("nonsense", takes=("pictures",))
    assert "nonsense" not in STAGES.names()


def _chain(*stages: dict[str, Any]) -> dict[str, Any]:
    return {"name": "p", "stages": list(stages)}


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            [{"name": "resize", "params": {"max_side": 8}}],
            r"stage 'resize' needs an image .*, but as the first stage it gets only the item's file"
            r".*: add a `load` stage first",
        ),
        (
            [{"name": "g", "uses": "grayscale"}, {"name": "load"}],
            r"stage 'g' \(grayscale\) needs an image.*add a `load` stage first",
        ),
        (
            [{"name": "load"}, {"name": "normalise"}, {"name": "small", "uses": "resize"}],
            r"stage 'small' \(resize\) needs an image .*, but stage 'normalise' before it gives an array"
            r".*: move 'small' before 'normalise'",
        ),
        (
            [{"name": "load"}, {"name": "classify_onnx", "params": {"model": "m.onnx"}}, {"name": "blur"}],
            r"stage 'blur' needs an image .*, but stage 'classify_onnx' before it gives a prediction",
        ),
    ],
)
def test_a_chain_that_cannot_work_is_refused_when_loaded(stages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as exc:
        load_spec(_chain(*stages))
    assert exc.value.status == 422 and exc.value.details["fix"]


@pytest.mark.parametrize(
    "stages",
    [
        [{"name": "load"}, {"name": "resize", "params": {"max_side": 8}}, {"name": "normalise"}],
        [{"name": "classify_onnx", "params": {"model": "m.onnx"}}],  # reads the item's file itself
        [{"name": "load"}, {"name": "grayscale"}, {"name": "again", "uses": "load"}, {"name": "edges"}],
        # a custom stage declares nothing: it takes and gives anything, in any position
        [{"name": "mine", "uses": "custom:somewhere.else:fn"}, {"name": "blur"}],
        [{"name": "not-registered"}, {"name": "blur"}],  # the runner refuses it by name
    ],
)
def test_chains_that_fit_are_accepted(stages: list[dict[str, Any]]) -> None:
    assert [s.name for s in load_spec(_chain(*stages)).stages] == [s["name"] for s in stages]


def test_a_custom_stage_declares_its_kinds_on_the_function() -> None:
    def to_label(item: Item, data: Any) -> str:
        return "x"

    to_label.gives = "label"  # type: ignore[attr-defined]
    sp = load_spec(_chain({"name": "load"}, {"name": "mine", "uses": "custom:m:f"}, {"name": "blur"}))
    assert io_of(to_label).gives == "label" and io_of(lambda i, d: d) == StageIO()
    with pytest.raises(InvalidInput, match=r"stage 'mine' .* gives a prediction"):
        check_chain(sp, {"mine": to_label})


def test_run_status_counts_failed_items() -> None:
    from vistudio.services.runs import run_status

    assert run_status(items=60, failed=60) == "failed"
    assert run_status(items=60, failed=1) == "partial"
    assert run_status(items=60, failed=0) == "succeeded"
    assert run_status(items=0, failed=0) == "succeeded"  # no items: nothing failed


def test_small_images_are_shown_scaled_up_by_a_whole_factor() -> None:
    from vistudio.pipelines.report import readable_width
    from vistudio.pipelines.saver import _readable

    assert readable_width(8, 8) == 160 and readable_width(32, 32) == 160 and readable_width(30, 20) == 240
    assert readable_width(640, 480) == 640 and readable_width(0, 0) == 0
    big = _readable(Image.new("L", (8, 6)))
    assert big.size == (216, 162)  # ×27: the shorter side reaches 160 px
    assert _readable(Image.new("L", (300, 200))).size == (300, 200)
    assert _readable(Image.new("L", (1000, 2))).size == (2000, 4)  # a thin strip stays bounded


# --- load ----------------------------------------------------------------------------------------


def test_load_reads_rgb_and_grey(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(rgb_4x6()).save(path)
    out = load(Item("a", path=path), None)
    assert isinstance(out, StepOutput)
    assert out.data.shape == (4, 6, 3) and out.data.dtype == np.uint8
    np.testing.assert_array_equal(out.data, rgb_4x6())
    assert out.metrics == {"width": 6.0, "height": 4.0}
    assert out.outputs == [] and out.artifacts == {}

    grey = load(Item("a", path=path), None, mode="L").data
    assert grey.shape == (4, 6) and grey.dtype == np.uint8
    assert grey[0, 0] == 76 and grey[0, 5] == 29  # ITU-R 601-2 luma of pure red and pure blue


def test_load_applies_exif_orientation(tmp_path: Path) -> None:
    # Stored 40 wide × 20 high, left half red; orientation 6 = rotate 90° clockwise to display.
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, quality=95, exif=exif)

    out = load(Item("r", path=path), None)
    assert out.data.shape == (40, 20, 3)
    assert out.metrics == {"width": 20.0, "height": 40.0}
    top, bottom = out.data[5, 10], out.data[35, 10]
    assert top[0] > 200 and top[2] < 60  # the red left side is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_load_takes_the_first_frame_of_an_animated_gif(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (5, 3), c) for c in ((0, 255, 0), (255, 0, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    out = load(Item("g", path=path), None)
    assert out.data.shape == (3, 5, 3)
    assert tuple(out.data[1, 2]) == (0, 255, 0)


def test_load_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a JPEG")
    with pytest.raises(StageError, match=r"cannot read notes\.jpg as an image"):
        load(Item("n", path=fake), None)
    with pytest.raises(StageError, match="file not found"):
        load(Item("m", path=tmp_path / "missing.png"), None)
    with pytest.raises(StageError, match="has no file path"):
        load(Item("none"), None)
    Image.new("RGB", (2, 2)).save(tmp_path / "ok.png")
    with pytest.raises(StageError, match="unknown mode 'CMYK'"):
        load(Item("ok", path=tmp_path / "ok.png"), None, mode="CMYK")


def write_bomb_png(path: Path, side: int = 20_000) -> None:
    """A valid all-black 1-bit PNG of side × side pixels; compresses to a few tens of KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + side // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_load_keeps_the_decompression_bomb_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    write_bomb_png(path)
    assert path.stat().st_size < 200_000
    with pytest.raises(StageError, match=r"refusing bomb\.png.*decompression bomb"):
        load(Item("b", path=path), None)


# --- resize --------------------------------------------------------------------------------------


def test_resize_by_width_height_or_max_side() -> None:
    img = rgb_4x6()
    out = resize(ITEM, img, width=3)
    assert out.data.shape == (2, 3, 3) and out.data.dtype == np.uint8
    assert out.metrics == {"width": 3.0, "height": 2.0, "scale_x": 0.5, "scale_y": 0.5}
    assert len(out.outputs) == 1
    obj, hint, ext = out.outputs[0]
    assert obj is out.data and hint == "resized" and ext == ""
    assert tuple(out.data[0, 0]) == (255, 0, 0) and tuple(out.data[0, 2]) == (0, 0, 255)

    assert resize(ITEM, img, height=8).data.shape == (8, 12, 3)
    assert resize(ITEM, img, max_side=12).data.shape == (8, 12, 3)
    assert resize(ITEM, img, width=12, height=12).data.shape == (8, 12, 3)  # fits inside the box
    assert resize(ITEM, img, width=2, height=5, keep_aspect=False).data.shape == (5, 2, 3)
    assert resize(ITEM, img, width=2, keep_aspect=False).data.shape == (4, 2, 3)
    assert resize(ITEM, img[:, :, 0], width=3).data.shape == (2, 3)  # grey stays grey
    same = resize(ITEM, img, width=6)
    np.testing.assert_array_equal(same.data, img)
    assert same.data is not img


def test_resize_keeps_a_flat_image_flat() -> None:
    img = np.full((10, 10, 3), 77, dtype=np.uint8)
    out = resize(ITEM, img, max_side=3).data
    assert out.shape == (3, 3, 3) and np.all(out == 77)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one way of sizing"),
        ({"width": 3, "max_side": 4}, r"exactly one way of sizing.*not both"),
        ({"width": -3}, "width must be a positive integer, got -3"),
        ({"height": 0}, "height must be a positive integer"),
        ({"max_side": 2.5}, "max_side must be a positive integer"),
        ({"width": True}, "width must be a positive integer"),
        ({"width": "10"}, "width must be a positive integer"),
        ({"width": 3, "keep_aspect": "yes"}, "keep_aspect must be true or false"),
    ],
)
def test_resize_refuses_bad_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError, match=message):
        resize(ITEM, rgb_4x6(), **params)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "expected an image array from the previous stage, got NoneType"),
        (np.zeros((4, 6, 3), dtype=np.float32), "expected a uint8 image, got dtype float32"),
        (np.zeros((4, 6, 4), dtype=np.uint8), r"expected an H×W or H×W×3 image, got shape \(4, 6, 4\)"),
        (np.zeros((0, 6), dtype=np.uint8), "the image is empty"),
    ],
)
def test_image_stages_refuse_what_is_not_an_image(data: Any, message: str) -> None:
    with pytest.raises(StageError, match=message):
        resize(ITEM, data, width=2)
    with pytest.raises(StageError, match=message):
        grayscale(ITEM, data)


def test_a_pil_image_from_a_custom_stage_is_accepted() -> None:
    out = grayscale(ITEM, Image.fromarray(rgb_4x6()))
    assert out.data.shape == (4, 6) and out.data[0, 0] == 76


# --- crop ----------------------------------------------------------------------------------------


def test_crop_in_pixels_and_normalised() -> None:
    img = np.arange(24, dtype=np.uint8).reshape(4, 6)
    out = crop(ITEM, img, box=[1, 2, 3, 2])
    np.testing.assert_array_equal(out.data, [[13, 14, 15], [19, 20, 21]])
    assert out.metrics == {"width": 3.0, "height": 2.0, "x": 1.0, "y": 2.0}
    assert out.data.base is None  # a copy, not a view into the previous stage's array

    half = crop(ITEM, rgb_4x6(), box=[0.5, 0.0, 0.5, 0.5], normalised=True)
    assert half.data.shape == (2, 3, 3)
    assert np.all(half.data == (0, 0, 255))
    tiny = crop(ITEM, img, box=[0.99, 0.99, 0.01, 0.01], normalised=True)
    assert tiny.data.shape == (1, 1)  # rounded, but never empty
    np.testing.assert_array_equal(crop(ITEM, img, box=(0.0, 0.0, 6.0, 4.0)).data, img)


@pytest.mark.parametrize(
    ("box", "normalised", "message"),
    [
        ([0, 0, 7, 4], False, r"outside the 6×4 image"),
        ([5, 3, 2, 1], False, "outside the"),
        ([-1, 0, 2, 2], False, r"x, y ≥ 0 and w, h > 0"),
        ([0, 0, 0, 2], False, r"w, h > 0"),
        ([0, 0, 2], False, r"four numbers \[x, y, w, h\]"),
        ("0,0,2,2", False, "four numbers"),
        ([0, 0, "2", 2], False, "four numbers"),
        ([0.5, 0, 1.5, 2], False, "must be whole numbers"),
        ([0.5, 0.5, 0.6, 0.2], True, r"normalised box .* is outside the image"),
        ([0, 0, 2, 2], True, "outside the image"),
    ],
)
def test_crop_refuses_bad_boxes(box: Any, normalised: bool, message: str) -> None:
    with pytest.raises(StageError, match=message):
        crop(ITEM, rgb_4x6(), box=box, normalised=normalised)


# --- grayscale, blur -----------------------------------------------------------------------------


def test_grayscale_converts_rgb_and_passes_grey_through() -> None:
    out = grayscale(ITEM, rgb_4x6())
    assert out.data.shape == (4, 6) and out.data.dtype == np.uint8
    assert set(np.unique(out.data)) == {29, 76}
    assert out.metrics["mean_intensity"] == pytest.approx((76 + 29) / 2)
    assert out.metrics["std_intensity"] == pytest.approx((76 - 29) / 2)
    grey = np.full((3, 3), 9, dtype=np.uint8)
    np.testing.assert_array_equal(grayscale(ITEM, grey).data, grey)


def test_blur_spreads_a_point_and_keeps_its_mass() -> None:
    img = np.zeros((9, 9), dtype=np.uint8)
    img[4, 4] = 255
    out = blur(ITEM, img, radius=1.0)
    assert out.data.shape == (9, 9) and out.data.dtype == np.uint8
    assert 0 < out.data[4, 4] < 255
    assert out.data[4, 3] > 0 and out.data[4, 3] == out.data[4, 5] == out.data[3, 4]
    assert abs(int(out.data.astype(int).sum()) - 255) < 15
    assert out.metrics["radius"] == 1.0 and out.metrics["mean_abs_change"] > 0

    rgb = blur(ITEM, rgb_4x6(), radius=0)
    np.testing.assert_array_equal(rgb.data, rgb_4x6())
    assert rgb.metrics["mean_abs_change"] == 0.0
    assert blur(ITEM, rgb_4x6()).data.shape == (4, 6, 3)


@pytest.mark.parametrize("radius", [-1, "2", float("nan"), None])
def test_blur_refuses_bad_radius(radius: Any) -> None:
    with pytest.raises(StageError, match="radius must be a number ≥ 0"):
        blur(ITEM, rgb_4x6(), radius=radius)


# --- edges ---------------------------------------------------------------------------------------


def test_edges_find_a_vertical_step() -> None:
    out = edges(ITEM, step_edge())
    assert out.data.shape == (8, 8) and out.data.dtype == np.uint8
    # Sobel responds on both columns next to the step (full strength), nowhere else.
    assert np.all(out.data[:, 3:5] == 255)
    assert np.all(out.data[:, :3] == 0) and np.all(out.data[:, 5:] == 0)
    assert out.metrics["edge_fraction"] == pytest.approx(0.25)
    assert out.metrics["mean_edge"] == pytest.approx(0.25)


def test_edges_with_threshold_give_a_binary_mask() -> None:
    img = step_edge().copy()
    img[:, 4:] = 100  # a weaker step: strength 100
    weak = edges(ITEM, img, threshold=150)
    assert set(np.unique(weak.data)) == {0}
    assert weak.metrics["edge_fraction"] == 0.0
    strong = edges(ITEM, np.stack([img] * 3, axis=-1), threshold=50)
    assert set(np.unique(strong.data)) == {0, 255}
    assert strong.metrics["edge_fraction"] == pytest.approx(0.25)
    flat = edges(ITEM, np.full((5, 5), 200, dtype=np.uint8))
    assert np.all(flat.data == 0) and flat.metrics["edge_fraction"] == 0.0  # borders are not edges


@pytest.mark.parametrize("threshold", [-1, 256, "high", True])
def test_edges_refuse_bad_threshold(threshold: Any) -> None:
    with pytest.raises(StageError, match=r"threshold must be a number in \[0, 255\]"):
        edges(ITEM, step_edge(), threshold=threshold)


# --- normalise -----------------------------------------------------------------------------------


def test_normalise_gives_a_chw_float_tensor() -> None:
    out = normalise(ITEM, rgb_4x6(), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    t = out.data
    assert t.shape == (3, 4, 6) and t.dtype == np.float32 and t.flags.c_contiguous
    assert out.artifacts["tensor"] is t
    np.testing.assert_allclose(t[0, :, :3], 1.0)  # red channel of the red half
    np.testing.assert_allclose(t[0, :, 3:], -1.0)
    np.testing.assert_allclose(t[2, :, 3:], 1.0)
    np.testing.assert_allclose(t[1], -1.0)
    assert out.metrics["mean"] == pytest.approx(float(t.mean()))

    imagenet = normalise(ITEM, rgb_4x6()).data
    assert imagenet[0, 0, 0] == pytest.approx((1 - 0.485) / 0.229, rel=1e-6)
    assert imagenet[1, 0, 0] == pytest.approx((0 - 0.456) / 0.224, rel=1e-6)

    grey = normalise(ITEM, np.full((2, 3), 51, dtype=np.uint8), mean=[0.0], std=[0.5]).data
    assert grey.shape == (1, 2, 3)
    np.testing.assert_allclose(grey, 0.4, rtol=1e-6)


@pytest.mark.parametrize(
    ("data", "params", "message"),
    [
        (rgb_4x6(), {"std": (0.2, 0.0, 0.2)}, "std values must be > 0"),
        (rgb_4x6(), {"mean": (0.5, 0.5)}, r"mean has 2 values but the image has 3 channel"),
        (rgb_4x6(), {"mean": "0.5"}, "mean must be a number or a list of numbers"),
        (np.zeros((2, 2), dtype=np.uint8), {}, r"mean has 3 values but the image has 1 channel"),
    ],
)
def test_normalise_refuses_bad_parameters(data: Any, params: dict[str, Any], message: str) -> None:
    with pytest.raises(StageError, match=message):
        normalise(ITEM, data, **params)


def test_stages_after_normalise_refuse_the_float_tensor() -> None:
    tensor = normalise(ITEM, rgb_4x6()).data
    with pytest.raises(StageError, match="expected a uint8 image"):
        resize(ITEM, tensor, width=2)


# --- chaining ------------------------------------------------------------------------------------


def test_stages_chain_and_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    arr = np.zeros((30, 40, 3), dtype=np.uint8)
    arr[10:20, 10:30] = (250, 250, 250)
    Image.fromarray(arr).save(path)
    before = tree(tmp_path)
    cwd_before = set(os.listdir(Path.cwd()))

    item = Item("photo", path=path)
    data: Any = None
    chain: list[tuple[str, dict[str, Any]]] = [
        ("load", {}),
        ("resize", {"width": 20}),
        ("grayscale", {}),
        ("edges", {"threshold": 100}),
    ]
    outputs = []
    for name, params in chain:
        out = as_output(STAGES.get(name)(item, data, **params))
        outputs.append(out)
        data = out.data

    assert data.shape == (15, 20) and data.dtype == np.uint8
    assert set(np.unique(data)) == {0, 255}
    assert 0 < outputs[-1].metrics["edge_fraction"] < 0.5
    assert data[2, 2] == 0 and data[7, 10] == 0  # flat background and flat inside of the square
    assert tree(tmp_path) == before
    assert set(os.listdir(Path.cwd())) == cwd_before


# --- load_custom ---------------------------------------------------------------------------------

CUSTOM_MODULE = "vistudio_test_custom_stages"


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / f"{CUSTOM_MODULE}.py").write_text(
        "import numpy as np\n\nTHRESHOLD = 3\n\ndef invert(item, data):\n    return 255 - data\n"
    )
    (pkg / "vistudio_test_broken_stages.py").write_text("raise RuntimeError('plugin is broken')\n")
    monkeypatch.syspath_prepend(str(pkg))
    yield CUSTOM_MODULE
    for name in (CUSTOM_MODULE, "vistudio_test_broken_stages"):
        sys.modules.pop(name, None)


def test_load_custom_resolves_both_spellings(custom_module: str) -> None:
    fn = load_custom(f"{custom_module}:invert")
    assert fn is load_custom(f"{custom_module}.invert")
    assert fn.__name__ == "invert"
    out = as_output(fn(ITEM, np.array([[0, 200]], dtype=np.uint8)))
    np.testing.assert_array_equal(out.data, [[255, 55]])


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("vistudio_no_such_module_zz:run", "cannot import module 'vistudio_no_such_module_zz'"),
        (f"{CUSTOM_MODULE}:THRESHOLD", r"is a int, not a callable"),
        (f"{CUSTOM_MODULE}:missing", f"module '{CUSTOM_MODULE}' has no attribute 'missing'"),
        ("vistudio_test_broken_stages:run", r"importing 'vistudio_test_broken_stages' failed: RuntimeError"),
        ("", "expected 'package.module:function'"),
        ("invert", "is not of the form"),
        ("a:b:c", "more than one ':'"),
        ("os:path.join", "is not of the form"),
        ("os; rm -rf:x", "is not of the form"),
    ],
)
def test_load_custom_refuses_bad_paths(custom_module: str, path: str, message: str) -> None:
    with pytest.raises(StageError, match=message):
        load_custom(path)


# --- classify_onnx -------------------------------------------------------------------------------


def test_classify_onnx_says_when_onnxruntime_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not loaded anyway")
    with pytest.raises(StageError, match=r"^onnxruntime is not installed: pip install onnxruntime$"):
        classify_onnx(ITEM, rgb_4x6(), model=str(model))


def test_classify_onnx_validates_its_parameters(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="top_k must be a positive integer"):
        classify_onnx(ITEM, rgb_4x6(), model="m.onnx", top_k=0)
    with pytest.raises(StageError, match="model file not found"):
        classify_onnx(ITEM, rgb_4x6(), model=str(tmp_path / "nope.onnx"))
    with pytest.raises(StageError, match="model must be a path"):
        classify_onnx(ITEM, rgb_4x6(), model="")


def make_channel_classifier(path: Path, props: dict[str, str] | None = None, scale: float = 1.0) -> None:
    """A tiny ONNX model: logits = scale × per-channel mean of the 1×3×H×W input (red, green, blue)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor(
        "w", TensorProto.FLOAT, [3, 3], (np.eye(3, dtype=np.float32) * scale).ravel().tolist()
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "channel_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    default = {
        "input_size": "8,8",
        "mean": "0.5,0.5,0.5",
        "std": "0.5,0.5,0.5",
        "class_names": json.dumps(["red", "green", "blue"]),
    }
    helper.set_model_props(model, default if props is None else props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


@pytest.fixture
def onnx_model(tmp_path: Path) -> Iterator[Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    OnnxSessionCache.clear()
    path = tmp_path / "colours.onnx"
    make_channel_classifier(path)
    yield path
    OnnxSessionCache.clear()


def test_classify_onnx_ranks_classes_with_softmax(onnx_model: Path) -> None:
    out = classify_onnx(Item("r", ground_truth="red"), rgb_4x6()[:, :3], model=str(onnx_model), top_k=2)
    # Pure red → normalised channels (1, -1, -1) → softmax of logits (1, -1, -1).
    p_red = np.e / (np.e + 2 / np.e)
    p_other = (1 / np.e) / (np.e + 2 / np.e)
    assert out.data["label"] == "red"
    assert out.data["confidence"] == pytest.approx(p_red, rel=1e-5)
    assert [name for name, _ in out.data["top_k"]] == ["red", "green"]  # ties keep class order
    assert out.data["top_k"][1][1] == pytest.approx(p_other, rel=1e-5)
    assert out.metrics == {"confidence": pytest.approx(p_red, rel=1e-5), "correct": 1.0}
    json.dumps(out.data)  # plain JSON for the saver

    blue = classify_onnx(Item("b", ground_truth="red"), rgb_4x6()[:, 3:], model=str(onnx_model))
    assert blue.data["label"] == "blue" and len(blue.data["top_k"]) == 3  # top_k capped at 3 classes
    assert blue.metrics["correct"] == 0.0
    assert sum(p for _, p in blue.data["top_k"]) == pytest.approx(1.0)


def test_classify_onnx_reads_the_item_when_it_is_the_first_stage(onnx_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "green.png"
    Image.new("RGB", (5, 7), (0, 255, 0)).save(path)
    out = classify_onnx(Item("g", path=path), None, model=str(onnx_model))
    assert out.data["label"] == "green"
    assert "correct" not in out.metrics
    grey = classify_onnx(ITEM, np.full((4, 4), 255, dtype=np.uint8), model=str(onnx_model))
    assert grey.data["confidence"] == pytest.approx(1 / 3, rel=1e-5)  # grey feeds equal channels


def test_classify_onnx_caches_sessions_by_path_and_mtime(onnx_model: Path, tmp_path: Path) -> None:
    first = OnnxSessionCache.get(onnx_model)
    assert OnnxSessionCache.get(str(onnx_model)) is first
    assert first.input_size == (8, 8) and first.class_names == ("red", "green", "blue")

    make_channel_classifier(onnx_model, scale=10.0)  # re-exported in place
    stat = onnx_model.stat()
    os.utime(onnx_model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = OnnxSessionCache.get(onnx_model)
    assert second is not first
    assert OnnxSessionCache.size() == 1  # the stale version is dropped
    out = classify_onnx(ITEM, rgb_4x6()[:, :3], model=str(onnx_model))
    assert out.data["confidence"] > 0.999

    for i in range(OnnxSessionCache.maxsize + 2):
        make_channel_classifier(tmp_path / f"m{i}.onnx")
        OnnxSessionCache.get(tmp_path / f"m{i}.onnx")
    assert OnnxSessionCache.size() == OnnxSessionCache.maxsize


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"mean": "0,0,0", "std": "1,1,1"}, "metadata 'input_size' must be 'H,W'"),
        ({"input_size": "8,8", "mean": "0,0", "std": "1,1,1"}, "metadata 'mean' must be 'r,g,b'"),
        ({"input_size": "8,8", "mean": "0,0,0", "std": "a,b,c"}, "metadata 'std' must be 'r,g,b'"),
        (
            {"input_size": "8,8", "mean": "0,0,0", "std": "1,1,1", "class_names": "[oops"},
            "'class_names' is not JSON",
        ),
    ],
)
def test_classify_onnx_refuses_models_without_preprocessing(
    tmp_path: Path, props: dict[str, str], message: str
) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "bare.onnx"
    make_channel_classifier(path, props=props)
    with pytest.raises(StageError, match=message):
        classify_onnx(ITEM, rgb_4x6(), model=str(path))


def test_classify_onnx_checks_class_names_against_the_outputs(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "two_names.onnx"
    props = {"input_size": "4,4", "mean": "0,0,0", "std": "1,1,1", "class_names": '["a", "b"]'}
    make_channel_classifier(path, props=props)
    with pytest.raises(StageError, match="the model has 3 outputs but 2 class_names"):
        classify_onnx(ITEM, rgb_4x6(), model=str(path))


def test_classify_onnx_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00junk")
    with pytest.raises(StageError, match=r"cannot load model junk\.onnx"):
        classify_onnx(ITEM, rgb_4x6(), model=str(path))
