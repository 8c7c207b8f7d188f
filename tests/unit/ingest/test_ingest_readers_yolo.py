from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_factories import write_image

from vistudio.ingest.readers.yolo import parse_yolo_labels, read_yolo
from vistudio.ingest.types import IngestError, SourceError

NAMES = {0: "car", 1: "person"}


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_yolo_happy_path_with_yaml(tmp_path: Path) -> None:
    write_text(
        tmp_path / "data.yaml",
        "path: /home/someone/datasets/x\ntrain: images/train\nval: images/val\nnames:\n  0: car\n  1: person\n",
    )
    write_image(tmp_path / "images" / "train" / "a.jpg")
    write_image(tmp_path / "images" / "train" / "b.png")
    write_image(tmp_path / "images" / "val" / "c.png")
    write_text(tmp_path / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.5 0.1 0.5 0.5\n")
    write_text(tmp_path / "labels" / "val" / "c.txt", "\n# comment\n1 0.25 0.75 0.5 0.5\n")
    parsed = read_yolo(tmp_path)
    assert parsed.errors == []
    assert parsed.format == "yolo"
    assert parsed.classes == ["car", "person"]
    items = {i.name: i for i in parsed.items}
    assert sorted(items) == ["images/train/a.jpg", "images/train/b.png", "images/val/c.png"]
    box, poly = items["images/train/a.jpg"].annotations
    assert (box.kind, box.class_name) == ("box", "car")
    assert box.geometry == pytest.approx({"x": 0.4, "y": 0.3, "w": 0.2, "h": 0.4})
    assert poly.kind == "polygon" and poly.geometry == {"polygons": [[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]]}
    assert items["images/train/b.png"].annotations == []
    assert items["images/val/c.png"].annotations[0].geometry == pytest.approx(
        {"x": 0.0, "y": 0.5, "w": 0.5, "h": 0.5}
    )


def test_yolo_list_files_and_names_list(tmp_path: Path) -> None:
    write_text(tmp_path / "dataset.yaml", "train: train.txt\nnames: [car, person]\n")
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.png")
    write_text(
        tmp_path / "train.txt",
        "./images/a.png\nimages/b.png\n../escape.png\n/etc/passwd\nimages/missing.png\n",
    )
    write_text(tmp_path / "labels" / "b.txt", "1 0.5 0.5 1 1\n")
    parsed = read_yolo(tmp_path / "dataset.yaml")
    assert [i.name for i in parsed.items] == ["images/a.png", "images/b.png"]
    assert parsed.items[1].annotations[0].class_name == "person"
    reasons = {e.path: e.reason for e in parsed.errors}
    assert "'..'" in reasons["train.txt:3"]
    assert "absolute" in reasons["train.txt:4"]
    assert "not found" in reasons["train.txt:5"]


def test_yolo_obb_only_with_task_obb(tmp_path: Path) -> None:
    line = "0 0.1 0.1 0.6 0.1 0.6 0.4 0.1 0.4\n"
    anns, errors = parse_yolo_labels(line, names=NAMES, obb=True)
    assert errors == [] and anns[0].kind == "rotated_box"
    assert anns[0].geometry == {"points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.4], [0.1, 0.4]]}
    assert parse_yolo_labels(line, names=NAMES)[0][0].kind == "polygon"

    write_text(tmp_path / "data.yaml", "task: obb\ntrain: images\nnames: [car]\n")
    write_image(tmp_path / "images" / "a.png")
    write_text(tmp_path / "labels" / "a.txt", line)
    assert read_yolo(tmp_path).items[0].annotations[0].kind == "rotated_box"


def test_yolo_without_yaml_uses_classes_txt(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png")
    write_text(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.5 0.5\n")
    write_text(tmp_path / "labels" / "classes.txt", "truck\n")
    parsed = read_yolo(tmp_path)
    assert parsed.classes == ["truck"] and parsed.items[0].annotations[0].class_name == "truck"
    (tmp_path / "labels" / "classes.txt").unlink()
    with pytest.raises(SourceError, match=r"classes\.txt"):
        read_yolo(tmp_path)


def test_yolo_bad_input_corpus(tmp_path: Path) -> None:
    write_text(tmp_path / "data.yaml", "train: images\nval: ../outside\nnames: [car, person]\n")
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "elsewhere" / "secret.png")
    (tmp_path / "images" / "leak.png").symlink_to(tmp_path / "elsewhere" / "secret.png")
    write_text(
        tmp_path / "labels" / "a.txt",
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "7 0.5 0.5 0.2 0.2\n"  # unknown class
        "x 0.5 0.5 0.2 0.2\n"  # non-numeric class
        "0 0.5 abc 0.2 0.2\n"  # non-numeric coordinate
        "0 1.5 0.5 0.2 0.2\n"  # outside [0, 1]
        "0 0.5 0.5 0.2\n"  # too few
        "0 0.5 0.5 0.2 0.2 0.1\n"  # odd count
        "0 0.5 0.5 0 0.2\n"  # zero width
        "1 1.008 0.5 0.01 0.01\n"  # within epsilon, but right of the border
        "1 0.1 0.1 0.9 0.9 0.9 0.1 0.1 0.9\n"  # a bow tie: crosses itself at (0.5, 0.5)
        "1 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n",  # a square: fine
    )
    write_text(tmp_path / "labels" / "orphan.txt", "0 0.5 0.5 0.2 0.2\n")
    parsed = read_yolo(tmp_path)
    assert [i.name for i in parsed.items] == ["images/a.png"]
    assert [a.kind for a in parsed.items[0].annotations] == ["box", "polygon"]
    reasons = {e.path: e.reason for e in parsed.errors}
    assert "'..'" in reasons["../outside"]
    assert reasons["images/leak.png"] == "symlink points outside the source folder"
    assert reasons["labels/a.txt:2"] == "unknown class id 7"
    assert "class id" in reasons["labels/a.txt:3"]
    assert "not a number" in reasons["labels/a.txt:4"]
    assert "outside [0, 1]" in reasons["labels/a.txt:5"]
    assert "got 3" in reasons["labels/a.txt:6"]
    assert "got 5" in reasons["labels/a.txt:7"]
    assert "positive" in reasons["labels/a.txt:8"]
    assert "outside the image" in reasons["labels/a.txt:9"]
    assert reasons["labels/a.txt:10"] == "self-intersecting polygon: its edges cross near (0.5, 0.5)"
    assert reasons["labels/orphan.txt"] == "label file has no matching image"
    assert len(reasons) == 12


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("names: [a\ntrain: [", "malformed YAML"),
        ("- just\n- a list\n", "mapping"),
        ("train: images\n", "names"),
        ("names: {a: car}\n", "not an integer"),
        ("names: !!python/object/apply:os.system ['echo hi']\n", "malformed YAML"),
    ],
)
def test_yolo_malformed_yaml(tmp_path: Path, yaml_text: str, message: str) -> None:
    write_text(tmp_path / "data.yaml", yaml_text)
    with pytest.raises(SourceError, match=message):
        read_yolo(tmp_path)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("0123456789 .-+e\n\t#xnaif")), max_size=80))
def test_yolo_label_parser_never_crashes(text: str) -> None:
    try:
        anns, errors = parse_yolo_labels(text, names=NAMES, obb=False, source="l.txt")
    except (IngestError, SourceError):  # pragma: no cover - the parser reports, never raises
        return
    for ann in anns:
        assert ann.class_name in NAMES.values()
        if ann.kind == "box":
            g = ann.geometry or {}
            assert 0 <= g["x"] <= 1 and 0 <= g["y"] <= 1 and g["w"] > 0 and g["h"] > 0
            assert g["x"] + g["w"] <= 1 + 1e-9 and g["y"] + g["h"] <= 1 + 1e-9
    assert all(e.path.startswith("l.txt:") for e in errors)


box_strategy = st.tuples(
    st.integers(0, 1),
    st.floats(0.05, 0.95),
    st.floats(0.05, 0.95),
    st.floats(0.01, 0.1),
    st.floats(0.01, 0.1),
)


@settings(max_examples=50, deadline=None)
@given(boxes=st.lists(box_strategy, max_size=20))
def test_yolo_write_read_round_trip(boxes: list[tuple[int, float, float, float, float]]) -> None:
    text = "".join(f"{c} {cx:.8f} {cy:.8f} {w:.8f} {h:.8f}\n" for c, cx, cy, w, h in boxes)
    anns, errors = parse_yolo_labels(text, names=NAMES)
    assert errors == []
    assert len(anns) == len(boxes)
    for ann, (c, cx, cy, w, h) in zip(anns, boxes, strict=True):
        g = ann.geometry or {}
        assert ann.class_name == NAMES[c]
        # Convert back to centre form: what a YOLO writer would emit.
        assert g["x"] + g["w"] / 2 == pytest.approx(cx, abs=1e-7)
        assert g["y"] + g["h"] / 2 == pytest.approx(cy, abs=1e-7)
        assert g["w"] == pytest.approx(w, abs=1e-7) and g["h"] == pytest.approx(h, abs=1e-7)


def test_yolo_yaml_alias_bomb_in_names_is_refused(tmp_path: Path) -> None:
    # "Billion laughs": each level lists the previous one nine times. safe_load shares the
    # objects, but str() of a class name made of them would expand 9**6 leaves (and far more
    # with a few extra levels); class names must be scalars.
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i, name in enumerate("bcdef"):
        prev = "abcdef"[i]
        levels.append(f"{name}: &{name} [" + ", ".join(f"*{prev}" for _ in range(9)) + "]")
    write_text(tmp_path / "data.yaml", "\n".join(levels) + "\nnames: [*f]\ntask: *f\ntrain: images\n")
    write_image(tmp_path / "images" / "a.jpg")
    with pytest.raises(SourceError, match="class names must be text"):
        read_yolo(tmp_path)


def test_yolo_oversized_yaml_is_refused(tmp_path: Path) -> None:
    from vistudio.ingest.readers.yolo import YAML_MAX_BYTES

    write_text(tmp_path / "data.yaml", "names: [car]\n" + "#" * YAML_MAX_BYTES + "\n")
    with pytest.raises(SourceError, match="larger than"):
        read_yolo(tmp_path)
