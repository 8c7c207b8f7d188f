"""The dataset writers without a database: safe and unique file names, what each format drops, and
every format read back by its own reader (property tests over generated annotations)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from export_factories import (
    Ann,
    ann,
    assert_same,
    boxes,
    lone_outlines,
    mask_box,
    masks,
    outline_bounds,
    rings,
    rotated,
    with_flags,
)
from factories import draw_image
from vistudio.ingest.readers import read_source
from vistudio.ingest.safepath import IMAGE_EXTENSIONS, resolve_inside
from vistudio.ingest.writers import (
    ExportAnnotation,
    ExportSample,
    get_writer,
    summarise,
    writer_formats,
)
from vistudio.ingest.writers._base import INVALID
from vistudio.ingest.writers._names import MAX_COMPONENT_BYTES, MAX_DEPTH, NameBook, safe_relpath
from vistudio.ingest.writers.coco import rle_box

READER = {"folders": "folder"}  # the reader of each writer, where the names differ
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


def sample(
    name: str, anns: list[Ann], *, size: tuple[int, int] = (40, 30), subset: str | None = None
) -> ExportSample:
    return ExportSample(
        name=name,
        width=size[0],
        height=size[1],
        format="PNG",
        annotations=[ExportAnnotation(a["kind"], a["class"], a["geometry"]) for a in anns],
        subset=subset,
        key=name,
    )


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("images/a.jpg", "images/a.jpg"),
        ("../../etc/passwd.png", "etc/passwd.png"),
        ("/abs/x.png", "abs/x.png"),
        ("C:\\win\\y.png", "C_/win/y.png"),
        ("a/./b/../c.png", "a/b/c.png"),
        (".hidden/.x.png", "_hidden/_x.png"),
        ("ctrl\x01\x7f\n.png", "ctrl___.png"),
        ("bidi\u202egnp.exe", "bidi_gnp.exe.png"),
        ("CON.png", "_CON.png"),
        ("a<b>c:d|e?f*.png", "a_b_c_d_e_f_.png"),
        ("noext", "noext.png"),
        ("", "image.png"),
        ("..", "image.png"),
        (" trailing. / x.png ", "trailing/x.png"),
        ("u\u0308ber/cafe\u0301.png", "über/café.png"),  # NFC
    ],
)
def test_safe_relpath(name: str, expected: str) -> None:
    assert safe_relpath(name, "PNG") == expected


def test_long_and_deep_names_are_cut_to_what_file_systems_take() -> None:
    long = safe_relpath("é" * 150 + ".png", "PNG")
    assert long.endswith(".png") and len(long.encode()) <= MAX_COMPONENT_BYTES
    deep = safe_relpath("/".join(f"d{i}" for i in range(40)) + "/x.png")
    assert len(deep.split("/")) == MAX_DEPTH and deep.endswith("d39/x.png")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_name_becomes_a_safe_relative_image_path(name: str) -> None:
    out = safe_relpath(name, "JPEG")
    parts = out.split("/")
    assert all(p and p not in (".", "..") and not p.startswith(".") for p in parts)
    assert all(len(p.encode()) <= MAX_COMPONENT_BYTES for p in parts)
    assert len(parts) <= MAX_DEPTH
    assert not any(ord(c) < 32 or c in '<>:"|?*\\' for c in out)
    assert Path(out).suffix.lower() in IMAGE_EXTENSIONS
    with tempfile.TemporaryDirectory() as tmp:
        assert resolve_inside(Path(tmp), out).is_relative_to(Path(tmp).resolve())


def test_name_book_never_hands_out_a_path_twice() -> None:
    book = NameBook()
    got = [
        book.claim(p)
        for p in ["a.jpg", "A.JPG", "a.png", "a.jpg/b.jpg", "x/y.png", "x.png", "x/y.png", "b/c.png", "b.png"]
    ]
    assert got == [
        "a.jpg",
        "A-2.JPG",
        "a-3.png",
        "a.jpg_/b.jpg",
        "x/y.png",
        "x.png",
        "x/y-2.png",
        "b/c.png",
        "b.png",
    ]
    folded = [g.casefold() for g in got]
    assert len(set(folded)) == len(folded)
    stems = [str(Path(g).with_suffix("")).casefold() for g in got]
    assert len(set(stems)) == len(stems)  # the label files of these images do not collide either


def test_colliding_samples_get_numbered_suffixes_in_their_order() -> None:
    samples = [sample(n, []) for n in ["a:b.png", "a_b.png", "A_B.png", "../a_b.png"]]
    plan = get_writer("coco")(samples, classes=[], by_split=False).plan()
    assert [p for _, p in plan.entries] == [
        "images/a_b.png",
        "images/a_b-2.png",
        "images/A_B-3.png",
        "images/a_b-4.png",
    ]


# --- what each format drops ------------------------------------------------------------------

BOX = {"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5}
RING = [[0.2, 0.2], [0.6, 0.2], [0.4, 0.7]]
QUAD = [[0.2, 0.2], [0.6, 0.3], [0.5, 0.7], [0.1, 0.6]]
MASK = {"size": [30, 40], "counts": [100, 20, 1080]}
MIXED = [
    ann("label", "cat"),
    ann("box", "cat", BOX),
    ann("polygon", "cat", {"polygons": [RING]}),  # paired with the box above: one COCO object
    ann("polygon", "dog", {"polygons": [RING, [[0.7, 0.7], [0.9, 0.7], [0.8, 0.9]]]}),  # two rings
    ann("mask_rle", "dog", MASK),
    ann("rotated_box", "dog", {"points": QUAD}),
    ann("box", "dog", {**BOX, "iscrowd": True}),
    ann("box", "cat", {**BOX, "difficult": True, "truncated": True}),
    ann("value", None, {"values": [1.5]}),
]


@pytest.mark.parametrize(
    ("fmt", "task_kinds", "written", "dropped", "converted"),
    [
        (
            "coco",
            (),
            7,
            {"rotated_box": 1, "value": 1, "truncated flag": 1},
            {
                "box added around a polygon or mask (COCO needs a bbox)": 2,
                "difficult written as iscrowd": 1,
            },
        ),
        (
            "yolo",
            ("box",),
            1,
            {
                "crowd or difficult objects": 2,
                "label": 1,
                "mask_rle": 1,
                "polygon (a YOLO detect dataset holds box only)": 2,
                "rotated_box (a YOLO detect dataset holds box only)": 1,
                "value": 1,
            },
            {},
        ),
        (
            "yolo",
            ("polygon", "mask_rle", "box"),
            1,
            {
                "boxes of polygon objects (a segment dataset derives them)": 1,
                "box (a YOLO segment dataset holds polygon only)": 2,
                "label": 1,
                "mask_rle": 1,
                "polygons of several rings": 1,
                "rotated_box (a YOLO segment dataset holds polygon only)": 1,
                "value": 1,
            },
            {},
        ),
        (
            "voc",
            (),
            3,
            {"label": 1, "mask_rle": 1, "polygon": 2, "rotated_box": 1, "value": 1},
            {"iscrowd written as difficult": 1},
        ),
        ("dota", (), 1, {"box": 3, "label": 1, "mask_rle": 1, "polygon": 2, "value": 1}, {}),
    ],
)
def test_dropped_counts_name_what_the_format_cannot_express(
    fmt: str, task_kinds: tuple[str, ...], written: int, dropped: dict[str, int], converted: dict[str, int]
) -> None:
    summary = summarise(fmt, [sample("a.png", MIXED)], classes=["cat", "dog"], task_kinds=task_kinds)
    assert (summary.samples, summary.annotations) == (1, written)
    assert summary.dropped == dropped
    assert summary.converted == converted


def test_labels_and_values_formats_leave_out_whole_samples() -> None:
    samples = [
        sample("one.png", [ann("label", "cat")]),
        sample("two.png", [ann("label", "cat"), ann("label", "dog")]),
        sample("none.png", []),
        sample("twice.png", [ann("label", "dog"), ann("label", "dog"), ann("box", "dog", BOX)]),
    ]
    folders = summarise("folders", samples, classes=["cat", "dog"])
    assert (folders.samples, folders.annotations) == (2, 2)
    assert folders.dropped == {
        "box": 1,
        "duplicate labels": 1,
        "multi-label samples": 1,
        "unlabelled samples": 1,
    }
    table = summarise("csv", samples, classes=["cat", "dog"])
    assert (table.samples, table.annotations) == (3, 2)  # the unlabelled sample is a row with no label
    assert table.dropped == {"box": 1, "duplicate labels": 1, "multi-label samples": 1}
    values = [
        sample("a.png", [ann("value", None, {"values": [1.0, 2.0]}), ann("label", "cat")]),
        sample("b.png", [ann("value", None, {"values": [3.0, 4.0]})]),
        sample("c.png", [ann("value", None, {"values": [5.0]})]),
        sample("d.png", [ann("value", None, {"values": [math.nan, 1.0]})]),
        sample("e.png", []),
    ]
    regression = summarise("csv", values, classes=["cat"])
    assert (regression.samples, regression.annotations) == (2, 2)
    assert regression.dropped == {
        "label": 1,
        "samples with a value that is not a finite number": 1,
        "samples with another number of values": 1,
        "samples without a value": 1,
    }


def test_samples_outside_the_split_are_left_out_by_split() -> None:
    samples = [sample("a.png", [], subset="train"), sample("b.png", [], subset=None)]
    summary = summarise("coco", samples, classes=[], by_split=True)
    assert summary.samples == 1 and summary.dropped == {"samples outside the split": 1}


def test_class_names_a_format_cannot_hold_are_renamed_never_merged() -> None:
    samples = [
        sample(
            "a.png",
            [ann("rotated_box", c, {"points": QUAD}) for c in ("big truck", "big_truck", "7")]
            + [ann("label", c) for c in ("a/b", "A/B", "..")],
        )
    ]
    dota = summarise("dota", samples, classes=[])
    assert dota.converted == {
        "class 'big truck' written as 'big_truck'": 1,
        "class 'big_truck' written as 'big_truck-2'": 1,
        "class '7' written as 'class_7'": 1,
    }
    writer = get_writer("folders")(
        [sample("x.png", [ann("label", "a/b")])], classes=["a/b", "A/B", ".."], by_split=False
    )
    assert [writer.class_label(c) for c in ("a/b", "A/B", "..")] == ["a_b", "A_B-2", "_"]


def test_objects_that_rounding_breaks_are_dropped_not_written() -> None:
    tiny = ann("polygon", "cat", {"polygons": [[[0.5, 0.5], [0.5000001, 0.5], [0.5, 0.5000001]]]})
    crossing = ann("polygon", "cat", {"polygons": [[[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]]})
    flat = ann("box", "cat", {"x": 0.5, "y": 0.5, "w": 1e-9, "h": 0.2})
    for fmt, kinds in (("yolo", ("polygon",)), ("coco", ())):
        summary = summarise(fmt, [sample("a.png", [tiny, crossing])], classes=["cat"], task_kinds=kinds)
        assert summary.annotations == 0 and summary.dropped == {INVALID: 2}, fmt
    for fmt in ("yolo", "coco", "voc"):
        summary = summarise(fmt, [sample("a.png", [flat])], classes=["cat"], task_kinds=("box",))
        assert summary.dropped == {INVALID: 1}, fmt
    # VOC's inclusive pixels cannot hold a box one pixel wide (xmin = xmax is refused on reading)
    one_pixel = ann("box", "cat", {"x": 0.5, "y": 0.5, "w": 1 / 40, "h": 0.2})
    assert summarise("voc", [sample("a.png", [one_pixel])], classes=["cat"]).dropped == {INVALID: 1}
    assert summarise("coco", [sample("a.png", [one_pixel])], classes=["cat"]).dropped == {}


@settings(max_examples=40, deadline=None)
@given(data=st.data(), height=st.integers(1, 12), width=st.integers(1, 12))
def test_the_box_and_area_of_an_rle_mask_are_pycocotools(
    data: st.DataObject, height: int, width: int
) -> None:
    rle = data.draw(masks(height, width))
    box, area = rle_box(rle["size"], rle["counts"]) or ([], 0)
    encoded = (
        {"size": rle["size"], "counts": rle["counts"].encode()}
        if isinstance(rle["counts"], str)
        else mask_utils.frPyObjects(rle, height, width)
    )
    assert box == pytest.approx(mask_utils.toBbox(encoded).tolist())
    assert area == int(mask_utils.area(encoded))


def test_an_empty_or_malformed_mask_has_no_box() -> None:
    assert rle_box([2, 2], [4]) is None  # all background
    assert rle_box([2, 2], [1, 1]) is None  # too short for its size
    assert rle_box([2, 2], "\x7f") is None


# --- every format read back by its reader ------------------------------------------------------


def export_and_read(
    fmt: str,
    samples: list[ExportSample],
    classes: list[str],
    *,
    task_kinds: tuple[str, ...] = (),
    by_split: bool = False,
) -> tuple[dict[str, list[Ann]], dict[str, ExportSample], Any]:
    """Write the export to a temporary folder (tiny images drawn for its samples), read it with
    the format's reader; annotations read back by image path, and the sample of each path."""
    writer = get_writer(fmt)(samples, classes=classes, by_split=by_split, task_kinds=task_kinds)
    plan = writer.plan()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, (s, rel) in enumerate(plan.entries):
            draw_image(root / rel, seed=i, size=(s.width, s.height), fmt="PNG")
        rendered = writer.render(plan.entries)
        for rel, data in rendered.files:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        parsed = read_source(root, READER.get(fmt, fmt), work_dir=root / ".work")
    assert parsed.errors == [], parsed.errors
    back = {
        i.name: [{"kind": a.kind, "class": a.class_name, "geometry": a.geometry} for a in i.annotations]
        for i in parsed.items
    }
    return back, {rel: s for s, rel in plan.entries}, rendered


def anns_of(s: ExportSample) -> list[Ann]:
    return [{"kind": a.kind, "class": a.class_name, "geometry": a.geometry} for a in s.annotations]


@st.composite
def images(draw: st.DrawFn, objects: st.SearchStrategy[list[Ann]], max_images: int = 3) -> list[ExportSample]:
    count = draw(st.integers(1, max_images))
    out = []
    for i in range(count):
        size = (draw(st.integers(16, 64)), draw(st.integers(16, 64)))
        out.append(sample(f"d{i % 2}/img{i}.png", draw(objects), size=size))
    return out


CLASS = st.sampled_from(["cat", "dog", "big truck"])
FLAG = st.sampled_from(
    [{}, {}, {"iscrowd": True}, {"difficult": True}, {"truncated": True}, {"occluded": True}]
)


@st.composite
def box_objects(draw: st.DrawFn) -> list[Ann]:
    return [ann("box", draw(CLASS), {**draw(boxes()), **draw(FLAG)}) for _ in range(draw(st.integers(0, 4)))]


@SETTINGS
@given(samples=images(box_objects()))
def test_voc_reads_back_every_box_and_flag(samples: list[ExportSample]) -> None:
    back, by_path, rendered = export_and_read("voc", samples, ["cat", "dog", "big truck"])
    assert +rendered.dropped == {}
    for path, s in by_path.items():
        expected = [
            with_flags(a, keep=("difficult", "truncated", "occluded"), ignore_as="difficult")
            for a in anns_of(s)
        ]
        assert_same(expected, back[path], (s.width, s.height), path)


@SETTINGS
@given(samples=images(box_objects()))
def test_yolo_detect_reads_back_every_box_but_ignored_ones(samples: list[ExportSample]) -> None:
    back, by_path, _ = export_and_read("yolo", samples, ["cat", "dog", "big truck"], task_kinds=("box",))
    for path, s in by_path.items():
        expected = [
            with_flags(a, keep=())
            for a in anns_of(s)
            if not any((a["geometry"] or {}).get(f) for f in ("iscrowd", "difficult"))
        ]
        assert_same(expected, back[path], (s.width, s.height), path)


@st.composite
def segment_objects(draw: st.DrawFn) -> list[Ann]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        cls = draw(CLASS)
        rs = (
            [draw(rings())]
            if draw(st.integers(0, 3))
            else [draw(rings(cx=0.3, cy=0.3)), draw(rings(cx=0.7, cy=0.7))]
        )
        out.append(ann("polygon", cls, {"polygons": rs}))
    return out


@SETTINGS
@given(samples=images(segment_objects()))
def test_yolo_segment_reads_back_every_single_ring_polygon(samples: list[ExportSample]) -> None:
    back, by_path, rendered = export_and_read(
        "yolo", samples, ["cat", "dog", "big truck"], task_kinds=("polygon",)
    )
    several = sum(len(a["geometry"]["polygons"]) > 1 for s in samples for a in anns_of(s))
    assert (+rendered.dropped).get("polygons of several rings", 0) == several
    for path, s in by_path.items():
        expected = [a for a in anns_of(s) if len(a["geometry"]["polygons"]) == 1]
        assert_same(expected, back[path], (s.width, s.height), path)


@st.composite
def rotated_objects(draw: st.DrawFn) -> list[Ann]:
    return [
        ann("rotated_box", draw(CLASS), {"points": draw(rotated()), **draw(FLAG)})
        for _ in range(draw(st.integers(0, 4)))
    ]


@SETTINGS
@given(samples=images(rotated_objects()))
def test_dota_and_yolo_obb_read_back_every_rotated_box(samples: list[ExportSample]) -> None:
    classes = ["cat", "dog", "big truck"]
    back, by_path, rendered = export_and_read("dota", samples, classes)
    assert set(+rendered.dropped) <= {"truncated flag", "occluded flag"}  # DOTA has difficult only
    for path, s in by_path.items():
        expected = [with_flags(a, keep=("difficult",), ignore_as="difficult") for a in anns_of(s)]
        expected = [{**a, "class": a["class"].replace(" ", "_")} for a in expected]
        assert_same(expected, back[path], (s.width, s.height), path)
    back, by_path, _ = export_and_read("yolo", samples, classes, task_kinds=("rotated_box",))
    for path, s in by_path.items():
        expected = [
            with_flags(a, keep=())
            for a in anns_of(s)
            if not any((a["geometry"] or {}).get(f) for f in ("iscrowd", "difficult"))
        ]
        assert_same(expected, back[path], (s.width, s.height), path)


@st.composite
def coco_objects(draw: st.DrawFn, size: tuple[int, int]) -> list[Ann]:
    """Objects as the COCO reader stores them: a box alone, a box then its polygon or mask (one COCO
    annotation), a polygon or mask alone, an image-level label."""
    out: list[Ann] = []
    for _ in range(draw(st.integers(0, 4))):
        cls = draw(CLASS)
        crowd = {"iscrowd": True} if draw(st.integers(0, 4)) == 0 else {}
        shape = draw(st.sampled_from(["box", "box+polygon", "box+mask", "polygon", "mask", "label"]))
        if shape == "label":
            out.append(ann("label", cls))
            continue
        if shape == "box":
            out.append(ann("box", cls, {**draw(boxes()), **crowd}))
            continue
        if shape.endswith("polygon"):
            outline = ann("polygon", cls, {"polygons": [draw(rings())], **crowd})
        else:
            outline = ann("mask_rle", cls, {**draw(masks(size[1], size[0])), **crowd})
        if shape.startswith("box"):  # the outline's own box (or, one time in four, another box)
            x0, y0, x1, y1 = outline_bounds(outline)
            own = {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0}
            out.append(ann("box", cls, {**(own if draw(st.integers(0, 3)) else draw(boxes())), **crowd}))
        out.append(outline)
    return out


@st.composite
def coco_images(draw: st.DrawFn) -> list[ExportSample]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        size = (draw(st.integers(16, 48)), draw(st.integers(16, 48)))
        out.append(sample(f"img{i}.png", draw(coco_objects(size)), size=size))
    return out


@SETTINGS
@given(samples=coco_images())
def test_coco_reads_back_boxes_polygons_masks_labels_and_crowds(samples: list[ExportSample]) -> None:
    back, by_path, rendered = export_and_read("coco", samples, ["cat", "dog", "big truck"])
    assert +rendered.dropped == {}
    for path, s in by_path.items():
        expected = anns_of(s)
        # a polygon or mask alone comes back with the box COCO needs around it
        for a in lone_outlines(anns_of(s)):
            crowd = {"iscrowd": True} if a["geometry"].get("iscrowd") else {}
            if a["kind"] == "mask_rle":
                expected.append(ann("box", a["class"], {**mask_box(a["geometry"]), **crowd}))
            else:
                pts = np.asarray(a["geometry"]["polygons"][0])
                (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
                expected.append(
                    ann("box", a["class"], {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, **crowd})
                )
        assert_same(expected, back[path], (s.width, s.height), path)


@SETTINGS
@given(
    labels=st.lists(
        st.lists(st.sampled_from(["cat", "dog", 'a,b "q"', "ünï"]), max_size=2), min_size=1, max_size=6
    )
)
def test_csv_and_class_folders_read_back_single_labels(labels: list[list[str]]) -> None:
    samples = [sample(f"sub/{i}.png", [ann("label", c) for c in ls]) for i, ls in enumerate(labels)]
    classes = ["cat", "dog", 'a,b "q"', "ünï"]
    for fmt in ("csv", "folders"):
        back, by_path, _ = export_and_read(fmt, samples, classes)
        kept = [
            s
            for s in samples
            if len({a.class_name for a in s.annotations}) == 1 or (fmt == "csv" and not s.annotations)
        ]
        assert len(by_path) == len(kept), fmt
        # a folder name cannot hold '"' (Windows): that class is renamed; a CSV cell holds anything
        renamed = {'a,b "q"': "a,b _q_"} if fmt == "folders" else {}
        for path, s in by_path.items():
            names = sorted({a.class_name for a in s.annotations if a.class_name})
            expected = [ann("label", renamed.get(c, c)) for c in names]
            assert_same(expected, back[path], (s.width, s.height), f"{fmt}:{path}")


@SETTINGS
@given(
    values=st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=2, max_size=2),
        min_size=1,
        max_size=5,
    )
)
def test_csv_reads_back_regression_values_exactly(values: list[list[float]]) -> None:
    samples = [sample(f"{i}.png", [ann("value", None, {"values": v})]) for i, v in enumerate(values)]
    back, by_path, _ = export_and_read("csv", samples, [])
    for path, s in by_path.items():
        (got,) = back[path]
        assert got["geometry"]["values"] == s.annotations[0].geometry["values"]  # type: ignore[index]


def test_every_registered_format_is_read_back_by_a_reader() -> None:
    from vistudio.ingest.readers import known_formats

    assert set(writer_formats()) == {"coco", "yolo", "voc", "dota", "csv", "folders"}
    assert {READER.get(f, f) for f in writer_formats()} <= set(known_formats())
