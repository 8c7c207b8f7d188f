"""The DOTA reader: layouts, what each line becomes, and a corpus of bad input (each reported with
its reason, the rest of the source still read)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_factories import make_zip, write_image

from vistudio.ingest.readers import detect_format, read_source
from vistudio.ingest.readers.dota import (
    MAX_LABEL_BYTES,
    label_path_for,
    parse_dota_labels,
    read_dota,
)
from vistudio.ingest.types import SourceError

QUAD = "10 10 50 10 50 30 10 30"


def write_text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def errors_of(parsed: object) -> dict[str, str]:
    return {e.path: e.reason for e in parsed.errors}  # type: ignore[attr-defined]


def test_flat_layout_with_header_lines_difficult_and_nine_fields(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "P0001.png", size=(200, 100))
    write_image(tmp_path / "images" / "P0002.png", size=(40, 40), seed=1)
    write_text(
        tmp_path / "labelTxt" / "P0001.txt",
        "imagesource:GoogleEarth\ngsd:0.146343590398\n"
        "20 10 120 10 120 60 20 60 large-vehicle 0\n"
        "0 0 200 0 200 100 0 100 plane 1\n"
        "# a comment\n\n"
        "30 20 40 20 40 30 30 30 ship\n",
    )
    parsed = read_dota(tmp_path)
    assert parsed.errors == []
    assert parsed.format == "dota"
    assert parsed.classes == ["large-vehicle", "plane", "ship"]
    items = {i.name: i for i in parsed.items}
    assert sorted(items) == ["images/P0001.png", "images/P0002.png"]
    assert items["images/P0002.png"].annotations == []  # no label file: no objects
    vehicle, plane, ship = items["images/P0001.png"].annotations
    assert (vehicle.kind, vehicle.class_name) == ("rotated_box", "large-vehicle")
    assert vehicle.geometry == {"points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.6], [0.1, 0.6]]}
    assert plane.geometry is not None and plane.geometry["difficult"] is True
    assert plane.geometry["points"] == [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    assert ship.geometry is not None and "difficult" not in ship.geometry


def test_split_folders_read_from_their_common_root(tmp_path: Path) -> None:
    for split, seed in (("train", 0), ("val", 1)):
        write_image(tmp_path / split / "images" / "sub" / f"{split}.png", size=(60, 60), seed=seed)
        write_text(tmp_path / split / "labelTxt" / "sub" / f"{split}.txt", f"{QUAD} car 0\n")
    parsed = read_dota(tmp_path)
    assert parsed.errors == []
    assert sorted(i.name for i in parsed.items) == ["train/images/sub/train.png", "val/images/sub/val.png"]
    assert all(len(i.annotations) == 1 for i in parsed.items)
    assert detect_format(tmp_path) == "dota"


def test_label_path_swaps_the_last_images_folder() -> None:
    assert label_path_for("images/a.png") == "labelTxt/a.txt"
    assert label_path_for("train/images/x/images/b.jpg") == "train/images/x/labelTxt/b.txt"
    assert label_path_for("elsewhere/c.png") == ""


def test_corners_slightly_outside_are_clipped_and_the_size_follows_exif(tmp_path: Path) -> None:
    from PIL import Image

    im = Image.new("RGB", (80, 40), (30, 60, 90))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90°: 40 wide, 80 high
    (tmp_path / "images").mkdir()
    im.save(tmp_path / "images" / "turned.jpg", exif=exif)
    write_text(tmp_path / "labelTxt" / "turned.txt", "-0.5 0 40.5 0 40 80 0 80 tall 0\n")
    parsed = read_dota(tmp_path)
    assert parsed.errors == []
    (ann,) = parsed.items[0].annotations
    assert ann.geometry == {"points": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]}


BAD_LINES = [
    ("10 10 50 10 50 30 10 car 0", "coordinate 8 is not a number: 'car'"),  # one missing
    ("10 10 50 10 50 30 10 30 20 car 0", "got 11 fields"),
    ("10 10 50 10 50 30", "got 6 fields"),
    ("10 10 50 10 50 30 10 30 7 0", "class name is a number"),
    ("nan 10 50 10 50 30 10 30 car 0", "not a finite number"),
    ("10 inf 50 10 50 30 10 30 car 0", "not a finite number"),
    ("10 ten 50 10 50 30 10 30 car 0", "coordinate 2 is not a number"),
    ("-5 10 50 10 50 30 10 30 car 0", "outside the 100x50 image"),
    ("10 10 150 10 150 30 10 30 car 0", "outside the 100x50 image"),
    ("10 10 50 10 50 90 10 90 car 0", "outside the 100x50 image"),
    ("10 10 50 30 50 10 10 30 car 0", "self-intersecting"),  # a bow tie
    ("10 10 20 10 30 10 40 10 car 0", "zero area"),
    ("10 10 10 10 10 10 50 30 car 0", "fewer than 3 distinct points"),
    (f"{QUAD} car 2", "difficult must be 0 or 1"),
    (f"{QUAD} car yes", "difficult must be 0 or 1"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_lines_are_refused_with_their_reason(line: str, reason: str) -> None:
    anns, errors = parse_dota_labels(f"{QUAD} good 0\n{line}\n", width=100, height=50, source="x.txt")
    assert [a.class_name for a in anns] == ["good"]  # the valid line is kept
    (error,) = errors
    assert error.path == "x.txt:2"
    assert reason in error.reason


def test_a_bad_file_is_reported_and_the_rest_of_the_source_reads(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "good.png", size=(100, 50))
    write_image(tmp_path / "images" / "latin1.png", size=(100, 50), seed=1)
    write_image(tmp_path / "images" / "huge.png", size=(100, 50), seed=2)
    write_image(tmp_path / "loose.png", seed=3)  # outside images/
    write_text(tmp_path / "labelTxt" / "good.txt", f"{QUAD} car 0\n")
    write_text(tmp_path / "labelTxt" / "latin1.txt", "10 10 50 10 50 30 10 30 caf\xe9 0\n".encode("latin-1"))
    write_text(tmp_path / "labelTxt" / "huge.txt", b"#" * (MAX_LABEL_BYTES + 1))
    write_text(tmp_path / "labelTxt" / "orphan.txt", f"{QUAD} car 0\n")
    write_text(tmp_path / "labelTxt" / "README.md", "notes\n")
    write_text(tmp_path / "labelTxt" / ".hidden.txt", "ignored\n")
    parsed = read_dota(tmp_path)
    errors = errors_of(parsed)
    assert errors == {
        "labelTxt/latin1.txt": "label file is not UTF-8 text",
        "labelTxt/huge.txt": f"label file larger than {MAX_LABEL_BYTES // 2**20} MiB",
        "labelTxt/orphan.txt": "label file has no matching image",
        "labelTxt/README.md": "not a DOTA label file (.txt): ignored",
        "loose.png": "not inside an images/ folder: not read",
    }
    items = {i.name: i for i in parsed.items}
    assert sorted(items) == ["images/good.png", "images/huge.png", "images/latin1.png"]
    assert len(items["images/good.png"].annotations) == 1


def test_symlinks_leaving_the_source_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_text(outside / "secret.txt", f"{QUAD} stolen 0\n")
    write_image(outside / "elsewhere.png")
    src = tmp_path / "src"
    write_image(src / "images" / "a.png", size=(100, 50))
    write_image(src / "images" / "b.png", size=(100, 50), seed=1)
    (src / "labelTxt").mkdir()
    os.symlink(outside / "secret.txt", src / "labelTxt" / "a.txt")  # a label read from elsewhere
    os.symlink(outside / "elsewhere.png", src / "images" / "linked.png")
    parsed = read_dota(src)
    errors = errors_of(parsed)
    assert "outside the source folder" in errors["labelTxt/a.txt"]
    assert "outside the source folder" in errors["images/linked.png"]
    assert all(a.class_name != "stolen" for i in parsed.items for a in i.annotations)
    assert sorted(i.name for i in parsed.items) == ["images/a.png", "images/b.png"]


def test_a_labeltxt_folder_linked_from_outside_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "labelTxt"
    write_text(outside / "a.txt", f"{QUAD} stolen 0\n")
    src = tmp_path / "src"
    write_image(src / "images" / "a.png", size=(100, 50))
    (src / "sub").mkdir()
    (src / "sub" / "labelTxt").mkdir()  # the source has a labelTxt of its own
    os.symlink(outside, src / "labelTxt")
    parsed = read_dota(src)
    assert "outside the source folder" in errors_of(parsed)["labelTxt/a.txt"]
    assert parsed.items[0].annotations == []


def test_not_a_dota_source(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png")
    with pytest.raises(SourceError, match="no labelTxt/ folder"):
        read_dota(tmp_path)
    with pytest.raises(SourceError, match="not a folder"):
        read_dota(tmp_path / "images" / "a.png")


def test_a_zipped_dota_source_is_detected_and_read(tmp_path: Path) -> None:
    png = write_image(tmp_path / "img.png", size=(100, 50)).read_bytes()
    archive = make_zip(
        tmp_path / "dota.zip",
        {"ds/images/a.png": png, "ds/labelTxt/a.txt": f"{QUAD} car 1\n".encode()},
    )
    assert detect_format(archive) == "dota"
    parsed = read_source(archive, "auto", work_dir=tmp_path / "work")
    assert parsed.errors == []
    (item,) = parsed.items
    assert item.annotations[0].geometry == {
        "points": [[0.1, 0.2], [0.5, 0.2], [0.5, 0.6], [0.1, 0.6]],
        "difficult": True,
    }


@settings(max_examples=60, deadline=None)
@given(
    cx=st.floats(20, 80),
    cy=st.floats(15, 35),
    w=st.floats(2, 30),
    h=st.floats(2, 20),
    angle=st.floats(-math.pi, math.pi),
    difficult=st.booleans(),
)
def test_any_rotated_rectangle_inside_the_image_reads_back(
    cx: float, cy: float, w: float, h: float, angle: float, difficult: bool
) -> None:
    c, s = math.cos(angle), math.sin(angle)
    corners = [
        (cx + dx * c - dy * s, cy + dx * s + dy * c)
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))
    ]
    text = " ".join(f"{x!r} {y!r}" for x, y in corners) + f" thing {int(difficult)}\n"
    anns, errors = parse_dota_labels(text, width=100, height=50)
    inside = all(-1 <= x <= 101 and -1 <= y <= 51 for x, y in corners)
    if not inside:
        assert errors and "outside" in errors[0].reason
        return
    assert errors == []
    (ann,) = anns
    assert ann.geometry is not None
    for (x, y), (nx, ny) in zip(corners, ann.geometry["points"], strict=True):
        assert nx == pytest.approx(min(1.0, max(0.0, x / 100)), abs=1e-12)
        assert ny == pytest.approx(min(1.0, max(0.0, y / 50)), abs=1e-12)
    assert ann.geometry.get("difficult", False) is difficult
