"""The semantic segmentation masks reader: class map variants, label PNGs of every accepted mode
read back exactly (the stored RLEs decode to the label image, 255 as the class-less ignored
region), pycocotools-identical RLE strings, auto-detection, and a corpus of bad input — each item
reported with its reason while the rest of the source still reads."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_factories import make_zip, png_chunk, write_image
from PIL import Image
from pycocotools import mask as mask_utils

from vistudio.ingest.readers import detect_format, read_source
from vistudio.ingest.readers.masks import (
    ClassMap,
    label_annotations,
    parse_classes_json,
    parse_labelmap,
    read_masks,
    region_runs,
)
from vistudio.ingest.types import Annotation, ParsedSource, SourceError

# pycocotools (the reference the RLEs are checked against) warns about NumPy 2's copy keyword
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

CLASSES = {"0": "background", "1": "road", "2": "car", "3": "a-very-long-class-name-for-a-sign"}
VOC_PALETTE = [
    (0, 0, 0),
    (128, 0, 0),
    (0, 128, 0),
    (128, 128, 0),
    (0, 0, 128),
]


def labels_for(width: int, height: int, seed: int, values: tuple[int, ...] = (0, 1, 2, 3, 255)) -> np.ndarray:
    """A label image: blocks of random values (so runs cross columns), a few single stray pixels."""
    rng = np.random.default_rng(seed)
    small = rng.choice(np.array(values, np.uint8), size=(max(1, height // 6), max(1, width // 6)))
    lab = np.kron(small, np.ones((6, 6), np.uint8))[:height, :width]
    lab = np.pad(lab, ((0, height - lab.shape[0]), (0, width - lab.shape[1])), mode="edge")
    for _ in range(5):
        lab[rng.integers(0, height), rng.integers(0, width)] = rng.choice(np.array(values, np.uint8))
    return np.ascontiguousarray(lab)


def save_mask(path: Path, lab: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.fromarray(lab, "L").convert("P")  # identity palette indices…
        im.putdata(lab.ravel().tolist())
        palette = [c for rgb in VOC_PALETTE for c in rgb] + [224, 224, 192] * 251
        im.putpalette(palette[: 256 * 3])
    else:
        im = Image.fromarray(lab, "L")
    im.save(path, format="PNG")
    return path


def make_source(
    root: Path,
    masks: dict[str, np.ndarray],
    *,
    classes: dict[str, Any] | None = None,
    ext: str = ".jpg",
    mode: str = "L",
    extra_images: tuple[str, ...] = (),
) -> Path:
    """images/<stem><ext> + masks/<stem>.png per entry (stems may hold folders), a classes.json."""
    for i, (stem, lab) in enumerate(masks.items()):
        h, w = lab.shape
        write_image(root / "images" / f"{stem}{ext}", size=(w, h), seed=i)
        save_mask(root / "masks" / f"{stem}.png", lab, mode)
    for j, stem in enumerate(extra_images):
        write_image(root / "images" / f"{stem}{ext}", size=(40, 30), seed=100 + j)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(CLASSES if classes is None else classes))
    return root


def decode(annotation: Annotation) -> np.ndarray:
    g = annotation.geometry
    assert g is not None
    return np.asarray(mask_utils.decode({"size": g["size"], "counts": g["counts"].encode()}), np.uint8)


def rebuild(annotations: list[Annotation], names: dict[int, str], shape: tuple[int, int]) -> np.ndarray:
    """The label image back from the stored annotations; every pixel must be covered exactly once."""
    value_of = {n: v for v, n in names.items()}
    out = np.zeros(shape, np.int32)
    cover = np.zeros(shape, np.int32)
    for a in annotations:
        assert a.kind == "mask_rle" and a.geometry is not None
        assert a.geometry["size"] == list(shape)
        m = decode(a).astype(bool)
        if a.class_name is None:
            assert a.geometry.get("iscrowd") is True
            out[m] = 255
        else:
            assert "iscrowd" not in a.geometry
            out[m] = value_of[a.class_name]
        cover += m
    assert (cover == 1).all(), "regions overlap or leave pixels uncovered"
    return out.astype(np.uint8)


def errors_of(parsed: ParsedSource) -> dict[str, str]:
    return {e.path: e.reason for e in parsed.errors}


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "P"])
def test_label_images_round_trip_with_the_ignore_region(tmp_path: Path, mode: str) -> None:
    labs = {"a": labels_for(60, 40, 0), "b": labels_for(33, 47, 1), "sub/c": labels_for(20, 20, 2, (2, 255))}
    root = make_source(tmp_path, labs, mode=mode, extra_images=("unlabelled",))
    parsed = read_masks(root)
    assert parsed.errors == []
    assert parsed.format == "masks"
    assert parsed.classes == ["background", "road", "car", "a-very-long-class-name-for-a-sign"]
    items = {i.name: i for i in parsed.items}
    assert sorted(items) == ["images/a.jpg", "images/b.jpg", "images/sub/c.jpg", "images/unlabelled.jpg"]
    assert items["images/unlabelled.jpg"].annotations == []
    names = {int(k): v for k, v in CLASSES.items()}
    for stem, lab in labs.items():
        anns = items[f"images/{stem}.jpg"].annotations
        assert np.array_equal(rebuild(anns, names, lab.shape), lab)
        # one annotation per class present, in value order, the ignored region last
        present = sorted(set(np.unique(lab).tolist()))
        assert [a.class_name for a in anns] == [names[v] for v in present if v != 255] + (
            [None] if 255 in present else []
        )
    only = items["images/sub/c.jpg"].annotations
    assert [a.class_name for a in only] == ["car", None]


def test_rle_strings_equal_pycocotools_encode(tmp_path: Path) -> None:
    lab = labels_for(57, 43, 7)
    cmap = ClassMap({0: "background", 1: "road", 2: "car", 3: "sign"})
    for a in label_annotations(lab, cmap):
        value = 255 if a.class_name is None else {n: v for v, n in cmap.names.items()}[a.class_name]
        want = mask_utils.encode(np.asfortranarray((lab == value).astype(np.uint8)))
        assert a.geometry is not None
        assert a.geometry["counts"] == want["counts"].decode()
        assert a.geometry["size"] == [43, 57]


def test_run_lengths_start_with_background_and_have_no_empty_tail() -> None:
    lab = np.array([[1, 1, 0], [1, 0, 0]], np.uint8)  # column-major: 1 1 | 1 0 | 0 0
    runs = region_runs(lab)
    assert runs[1] == [0, 3, 3]
    assert runs[0] == [3, 3]
    full = region_runs(np.full((2, 2), 5, np.uint8))
    assert full == {5: [0, 4]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 24),
    st.integers(1, 24),
    st.lists(st.sampled_from([0, 1, 2, 7, 254, 255]), min_size=1, max_size=4, unique=True),
    st.integers(0, 2**31),
)
def test_any_label_image_encodes_as_pycocotools_and_decodes_back(
    height: int, width: int, values: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    lab = rng.choice(np.array(values, np.uint8), size=(height, width))
    cmap = ClassMap({v: f"c{v}" for v in values if v != 255})
    anns = label_annotations(lab, cmap)
    back = rebuild(anns, cmap.names, (height, width))
    assert np.array_equal(back, lab)
    for a in anns:
        assert a.geometry is not None
        value = 255 if a.class_name is None else int(a.class_name[1:])
        want = mask_utils.encode(np.asfortranarray((lab == value).astype(np.uint8)))
        assert a.geometry["counts"] == want["counts"].decode()


def test_a_one_bit_mask_reads_as_zero_and_one(tmp_path: Path) -> None:
    lab = np.zeros((20, 30), bool)
    lab[5:15, 10:20] = True
    write_image(tmp_path / "images" / "x.png", size=(30, 20))
    (tmp_path / "masks").mkdir()
    Image.fromarray(lab).save(tmp_path / "masks" / "x.png")
    assert Image.open(tmp_path / "masks" / "x.png").mode == "1"
    (tmp_path / "classes.json").write_text(json.dumps({"background": 0, "thing": 1}))
    parsed = read_masks(tmp_path)
    assert parsed.errors == []
    anns = parsed.items[0].annotations
    assert np.array_equal(rebuild(anns, {0: "background", 1: "thing"}, (20, 30)), lab.astype(np.uint8))


# --- class maps ----------------------------------------------------------------------------------


def test_class_map_forms() -> None:
    assert parse_classes_json('{"0": "background", "7": "car"}').names == {0: "background", 7: "car"}
    assert parse_classes_json('{"car": 7, "background": 0}').classes == ["background", "car"]
    assert parse_classes_json('{" 3 ": " road "}').names == {3: "road"}
    text = "# label:color_rgb:parts:actions\nbackground:0,0,0::\nroad:128,64,128::\n\ncar : 0, 0, 142::\n"
    cmap = parse_labelmap(text)
    assert cmap.names == {0: "background", 1: "road", 2: "car"}
    assert cmap.colours == {(0, 0, 0): 0, (128, 64, 128): 1, (0, 0, 142): 2}
    plain = parse_labelmap("background\nroad\n")
    assert plain.names == {0: "background", 1: "road"} and plain.colours is None
    partly = parse_labelmap("background:0,0,0::\nroad\n")  # colours on some lines only: indices
    assert partly.colours is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "malformed JSON"),
        ("[]", "non-empty object"),
        ("{}", "non-empty object"),
        ('{"road": "1"}', "every key is a pixel value"),
        ('{"1": "road", "car": 2}', "not a mix"),
        ('{"road": true}', "not a mix"),
        ('{"255": "void"}', "255 is the ignore value"),
        ('{"void": 255}', "255 is the ignore value"),
        ('{"road": 300}', "outside 0..254"),
        ('{"road": -1}', "outside 0..254"),
        ('{"1": "road", "2": "road"}', "named by values 1 and 2"),
        ('{"1": "  "}', "empty class name"),
        ('{"1": "' + "x" * 201 + '"}', "longer than 200"),
        ('{"01": "a", "1": "b"}', "listed twice"),
    ],
)
def test_bad_classes_json_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(SourceError, match=reason):
        parse_classes_json(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("# only a comment\n", "lists no class"),
        ("road:1,2::\n", "is not r,g,b"),
        ("road:1,2,300::\n", "is not r,g,b"),
        ("road:a,b,c::\n", "is not r,g,b"),
        ("a:1,1,1::\nb:1,1,1::\n", "same colour"),
        ("road\nroad\n", "named by values 0 and 1"),
        ("\n".join(f"c{i}" for i in range(256)), "255 is the ignore value"),
    ],
)
def test_bad_labelmap_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(SourceError, match=reason):
        parse_labelmap(text)


def test_class_map_file_problems(tmp_path: Path) -> None:
    root = make_source(tmp_path / "both", {"a": labels_for(12, 12, 0, (0, 1))})
    (root / "labelmap.txt").write_text("background\nroad\n")
    with pytest.raises(SourceError, match=r"both classes\.json and labelmap\.txt"):
        read_masks(root)
    (root / "classes.json").unlink()
    (root / "labelmap.txt").unlink()
    with pytest.raises(SourceError, match="needs a class map"):
        read_masks(root)
    (root / "labelmap.txt").write_bytes(b"\xff\xfe road")
    with pytest.raises(SourceError, match="not UTF-8"):
        read_masks(root)
    (root / "labelmap.txt").write_bytes(b"x\n" * (2**20))
    with pytest.raises(SourceError, match="larger than 1 MiB"):
        read_masks(root)
    (root / "labelmap.txt").unlink()
    outside = tmp_path / "classes.json"
    outside.write_text('{"0": "background", "1": "road"}')
    os.symlink(outside, root / "classes.json")
    with pytest.raises(SourceError, match="outside the source folder"):
        read_masks(root)


def test_labelmap_line_index_is_the_value_and_its_colours_read_colour_masks(tmp_path: Path) -> None:
    colours = {0: (0, 0, 0), 1: (128, 64, 128), 2: (0, 0, 142)}
    lab = labels_for(30, 24, 3, (0, 1, 2))
    rgb = np.zeros((*lab.shape, 3), np.uint8)
    for v, c in colours.items():
        rgb[lab == v] = c
    write_image(tmp_path / "images" / "street.png", size=(30, 24))
    (tmp_path / "masks").mkdir()
    Image.fromarray(rgb, "RGB").save(tmp_path / "masks" / "street.png")
    # a grey mask in the same source: read by value (the line index)
    write_image(tmp_path / "images" / "grey.png", size=(30, 24), seed=1)
    save_mask(tmp_path / "masks" / "grey.png", lab)
    (tmp_path / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nroad:128,64,128::\ncar:0,0,142::\n"
    )
    parsed = read_masks(tmp_path)
    assert parsed.errors == []
    assert parsed.classes == ["background", "road", "car"]
    names = {0: "background", 1: "road", 2: "car"}
    for item in parsed.items:
        assert np.array_equal(rebuild(item.annotations, names, lab.shape), lab), item.name
    # a colour the map does not list is named
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb, "RGB").save(tmp_path / "masks" / "street.png")
    errors = errors_of(read_masks(tmp_path))
    assert "colours not in labelmap.txt: (1, 2, 3)" in errors["images/street.png"]


# --- detection -----------------------------------------------------------------------------------


def test_the_layout_is_detected_in_folders_zips_and_from_its_class_map(tmp_path: Path) -> None:
    root = make_source(tmp_path / "seg", {"a": labels_for(12, 12, 0, (0, 1))})
    assert detect_format(root) == "masks"
    assert detect_format(root / "classes.json") == "masks"
    members = {
        "seg/images/a.png": (root / "images" / "a.jpg").read_bytes(),
        "seg/masks/a.png": (root / "masks" / "a.png").read_bytes(),
        "seg/classes.json": (root / "classes.json").read_bytes(),
    }
    zipped = make_zip(tmp_path / "seg.zip", members)
    assert detect_format(zipped) == "masks"
    parsed = read_source(zipped, "auto", work_dir=tmp_path / "work")
    assert parsed.format == "masks" and [i.name for i in parsed.items] == ["images/a.png"]
    # the neighbours keep their formats
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    assert detect_format(yolo) == "yolo"
    coco = make_source(tmp_path / "coco", {"a": labels_for(12, 12, 0, (0, 1))})
    (coco / "classes.json").unlink()
    (coco / "annotations.json").write_text(json.dumps({"images": [], "annotations": []}))
    assert detect_format(coco) == "coco"


def test_not_a_masks_source(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(SourceError, match="masks/ is missing"):
        read_masks(tmp_path)
    with pytest.raises(SourceError, match="not a masks source"):
        read_masks(write_image(tmp_path / "x.png"))
    with pytest.raises(SourceError, match="not found"):
        read_masks(tmp_path / "nope")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    os.symlink(outside, tmp_path / "masks")
    with pytest.raises(SourceError, match="masks/ is a symlink pointing outside"):
        read_masks(tmp_path)


# --- the bad-input corpus ------------------------------------------------------------------------


def header_only_png(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` 8-bit grey pixels and holds none."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # bomb2: refused all the same
def test_bad_masks_are_refused_one_by_one_and_the_rest_imports(tmp_path: Path) -> None:
    good = {"good1": labels_for(40, 30, 0), "good2": labels_for(40, 30, 1)}
    root = make_source(tmp_path, good, extra_images=("nomask",))
    images, masks = root / "images", root / "masks"

    def image(stem: str, size: tuple[int, int] = (40, 30), ext: str = ".jpg") -> None:
        write_image(images / f"{stem}{ext}", size=size, seed=hash(stem) % 1000)

    lab = labels_for(40, 30, 5, (0, 1))
    image("wrong_size")
    save_mask(masks / "wrong_size.png", labels_for(41, 30, 5, (0, 1)))
    image("unknown_values")
    bad = lab.copy()
    bad[0, :3] = 9
    bad[1, 0] = 77
    save_mask(masks / "unknown_values.png", bad)
    image("rgb")
    Image.fromarray(np.stack([lab] * 3, axis=-1), "RGB").save(masks / "rgb.png")
    image("sixteen")
    Image.fromarray(lab.astype(np.uint16)).save(masks / "sixteen.png")
    image("alpha")
    Image.fromarray(lab, "L").convert("LA").save(masks / "alpha.png")
    image("rgba")
    Image.fromarray(lab, "L").convert("RGBA").save(masks / "rgba.png")
    image("truncated")
    whole = png_bytes(Image.fromarray(labels_for(40, 30, 9), "L"))
    (masks / "truncated.png").write_bytes(whole[: len(whole) // 2])
    image("garbage")
    (masks / "garbage.png").write_bytes(b"not a png at all")
    image("jpeg_inside")
    Image.fromarray(lab, "L").save(masks / "jpeg_inside.png", format="JPEG")
    image("lossy")
    Image.fromarray(lab, "L").save(masks / "lossy.jpg", format="JPEG")
    write_image(images / "bomb.png", size=(40, 30), seed=3)
    (masks / "bomb.png").write_bytes(header_only_png(100_000, 100_000))  # DecompressionBombError
    write_image(images / "bomb2.png", size=(40, 30), seed=4)
    over = int((Image.MAX_IMAGE_PIXELS or 0) ** 0.5) + 100  # between the limit and twice it
    (masks / "bomb2.png").write_bytes(header_only_png(over, over))
    save_mask(masks / "orphan.png", lab)
    save_mask(masks / "deep" / "orphan2.png", lab)
    image("twin", ext=".jpg")
    image("twin", ext=".png")
    save_mask(masks / "twin.png", lab)
    image("twin_free", ext=".jpg")
    image("twin_free", ext=".png")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    save_mask(outside, lab)
    image("escape")
    os.symlink(outside, masks / "escape.png")
    image("broken_link")
    os.symlink(tmp_path / "nowhere.png", masks / "broken_link.png")
    (images / "corrupt_image.jpg").write_bytes(b"\xff\xd8 not really")
    save_mask(masks / "corrupt_image.png", lab)
    (masks / "notes.txt").write_text("not a mask, not read")

    parsed = read_masks(root)
    errors = errors_of(parsed)
    items = {i.name: i for i in parsed.items}
    # what is good still imports: the good masks, the unlabelled image, and twins without a mask
    assert sorted(items) == [
        "images/good1.jpg",
        "images/good2.jpg",
        "images/nomask.jpg",
        "images/twin_free.jpg",
        "images/twin_free.png",
    ]
    names = {int(k): v for k, v in CLASSES.items()}
    for stem, labels in good.items():
        assert np.array_equal(rebuild(items[f"images/{stem}.jpg"].annotations, names, labels.shape), labels)
    expected = {
        "images/wrong_size.jpg": "masks/wrong_size.png: mask is 41×30 px but its image is 40×30",
        "images/unknown_values.jpg": "pixel values not in classes.json: 9 (3 px), 77 (1 px)",
        "images/rgb.jpg": "colour (RGB) mask",
        "images/sixteen.jpg": "16-bit or wider mask (mode I;16)",
        "images/alpha.jpg": "alpha channel (mode LA)",
        "images/rgba.jpg": "alpha channel (mode RGBA)",
        "images/truncated.jpg": "truncated or corrupt PNG",
        "images/garbage.jpg": "mask is not an image",
        "images/jpeg_inside.jpg": "mask is a JPEG file, not a PNG",
        "images/lossy.jpg": "masks/lossy.jpg: masks must be PNG files (lossless)",
        "images/bomb.png": "possible decompression bomb",
        "images/bomb2.png": f"mask too large ({over * over} pixels",
        "masks/orphan.png": "mask has no image (no images/orphan.* image)",
        "masks/deep/orphan2.png": "mask has no image (no images/deep/orphan2.* image)",
        "images/twin.jpg": "images twin.jpg, twin.png share the stem 'twin'",
        "images/twin.png": "masks/twin.png cannot say which one it labels",
        "images/escape.jpg": "masks/escape.png: symlink points outside the source folder",
        "images/broken_link.jpg": "masks/broken_link.png: broken symlink",
        "images/corrupt_image.jpg": "cannot read the image",
    }
    for path, reason in expected.items():
        assert reason in errors.get(path, ""), (path, errors.get(path))
    assert set(errors) == set(expected), sorted(set(errors) ^ set(expected))


def test_an_empty_masks_folder_is_reported_once_and_the_images_import_unlabelled(tmp_path: Path) -> None:
    root = make_source(tmp_path, {}, extra_images=("a", "b"))
    parsed = read_masks(root)
    assert [i.name for i in parsed.items] == ["images/a.jpg", "images/b.jpg"]
    assert all(i.annotations == [] for i in parsed.items)
    assert errors_of(parsed) == {"masks/": "no PNG masks in masks/: every image is imported without labels"}


def test_two_masks_for_one_image_refuse_it(tmp_path: Path) -> None:
    lab = labels_for(20, 20, 0, (0, 1))
    root = make_source(tmp_path, {"a": lab})
    save_mask(root / "masks" / "a.PNG", lab)
    if (root / "masks" / "a.png").samefile(root / "masks" / "a.PNG"):
        pytest.skip("case-insensitive file system")
    parsed = read_masks(root)
    assert parsed.items == []
    assert "several masks for one image: masks/a.PNG, masks/a.png" in errors_of(parsed)["images/a.jpg"]


def test_a_zip_member_climbing_out_is_refused_and_the_rest_imports(tmp_path: Path) -> None:
    root = make_source(tmp_path / "src", {"a": labels_for(20, 20, 0, (0, 1))})
    members = {
        "ds/images/a.jpg": (root / "images" / "a.jpg").read_bytes(),
        "ds/masks/a.png": (root / "masks" / "a.png").read_bytes(),
        "ds/masks/../../evil.png": (root / "masks" / "a.png").read_bytes(),
        "ds/classes.json": (root / "classes.json").read_bytes(),
    }
    zipped = make_zip(tmp_path / "ds.zip", members, symlinks={"ds/masks/link.png": "/etc/passwd"})
    parsed = read_source(zipped, "masks", work_dir=tmp_path / "work")
    assert [i.name for i in parsed.items] == ["images/a.jpg"]
    assert len(parsed.items[0].annotations) == 2
    reasons = errors_of(parsed)
    assert any(".." in path and "escapes" in reason for path, reason in reasons.items()), reasons
    assert any("link.png" in path and "symlink" in reason for path, reason in reasons.items()), reasons
    assert not (tmp_path / "work" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_exif_turned_images_are_compared_as_displayed(tmp_path: Path) -> None:
    """A photo stored 40×30 with EXIF orientation 6 is 30×40 as displayed (and as stored in the
    workspace): a 30×40 mask fits it, a 40×30 one is refused with the explanation."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    for stem in ("fits", "raw"):
        Image.new("RGB", (40, 30), (10, 20, 30)).save(
            tmp_path / "images" / f"{stem}.jpg", exif=exif.tobytes()
        )
    save_mask(tmp_path / "masks" / "fits.png", labels_for(30, 40, 0, (0, 1)))
    save_mask(tmp_path / "masks" / "raw.png", labels_for(40, 30, 0, (0, 1)))
    (tmp_path / "classes.json").write_text('{"0": "background", "1": "road"}')
    parsed = read_masks(tmp_path)
    assert [i.name for i in parsed.items] == ["images/fits.jpg"]
    assert parsed.items[0].annotations[0].geometry["size"] == [40, 30]
    reason = errors_of(parsed)["images/raw.jpg"]
    assert "mask is 40×30 px but its image is 30×40" in reason and "EXIF orientation" in reason


def test_a_large_mask_is_encoded_without_a_loop_over_pixels(tmp_path: Path) -> None:
    """A 2000×1500 mask with 20 classes: every class's RLE decodes to exactly its pixels."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 20, size=(30, 40), dtype=np.uint8)
    lab = np.kron(small, np.ones((50, 50), np.uint8))
    cmap = ClassMap({v: f"class {v}" for v in range(20)})
    anns = label_annotations(lab, cmap)
    assert len(anns) == len(np.unique(lab))
    assert np.array_equal(rebuild(anns, cmap.names, lab.shape), lab)
