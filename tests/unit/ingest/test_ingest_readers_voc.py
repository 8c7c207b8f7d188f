from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_factories import make_zip, pattern, write_image

from vistudio.ingest.readers import detect_format, read_source
from vistudio.ingest.readers.voc import MAX_OBJECTS, MAX_XML_BYTES, read_voc
from vistudio.ingest.types import SourceError


def obj(name: str, box: tuple[Any, Any, Any, Any] | None, **flags: Any) -> str:
    """One <object>; ``box`` values are written verbatim (so tests can garble them)."""
    parts = [f"<name>{name}</name>"]
    parts += [f"<{k}>{v}</{k}>" for k, v in flags.items()]
    if box is not None:
        coords = "".join(
            f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
        )
        parts.append(f"<bndbox>{coords}</bndbox>")
    return "<object>" + "".join(parts) + "</object>"


def voc_xml(filename: str | None, objects: list[str], size: tuple[int, int] | None = None) -> str:
    head = f"<filename>{filename}</filename>" if filename is not None else ""
    if size is not None:
        head += f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    return f"<annotation><folder>VOC2007</folder>{head}{''.join(objects)}</annotation>"


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_voc_standard_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "JPEGImages" / "000001.jpg", size=(200, 100))
    write_image(tmp_path / "JPEGImages" / "000002.jpg", size=(40, 40), seed=1)
    write_text(
        tmp_path / "Annotations" / "000001.xml",
        voc_xml(
            "000001.jpg",
            [
                obj("dog", (21, 11, 120, 60), difficult=0, truncated=1),
                obj("person", (1, 1, 200, 100), difficult=1, occluded=1),
            ],
            size=(200, 100),
        ),
    )
    # No <filename> and no <size>: the image is found by the XML's stem, its size read from it.
    write_text(tmp_path / "Annotations" / "000002.xml", voc_xml(None, [obj("cat", (11, 1, 30, 40))]))
    write_text(tmp_path / "ImageSets" / "Main" / "train.txt", "000001\n")
    parsed = read_voc(tmp_path)
    assert parsed.errors == []
    assert parsed.format == "voc"
    assert parsed.classes == ["cat", "dog", "person"]
    assert [i.name for i in parsed.items] == ["JPEGImages/000001.jpg", "JPEGImages/000002.jpg"]
    first, second = parsed.items
    dog, person = first.annotations
    assert dog.kind == "box" and dog.class_name == "dog"
    # Pixels 21..120 (1-based, inclusive) = edges 20..120 of 200: x 0.1, w 0.5; rows 11..60 of 100.
    assert dog.geometry == pytest.approx({"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5, "truncated": True})
    assert dog.geometry is not None and "difficult" not in dog.geometry
    assert person.geometry == {"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0, "difficult": True, "occluded": True}
    (cat,) = second.annotations
    assert cat.class_name == "cat"
    assert cat.geometry == pytest.approx({"x": 0.25, "y": 0.0, "w": 0.5, "h": 1.0})


def test_voc_xml_beside_images_and_single_file(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", size=(100, 50))
    write_image(tmp_path / "sub" / "b.png", size=(10, 10), seed=2)
    write_image(tmp_path / "unlabelled.png", seed=3)  # no XML: not imported
    write_text(tmp_path / "a.xml", voc_xml("a.png", [obj("car", (1, 1, 50, 25))], size=(100, 50)))
    # <filename> points to a file that is not there (renamed): the stem finds sub/b.png.
    write_text(tmp_path / "sub" / "b.xml", voc_xml("old-name.png", [obj("bus", (2, 2, 5, 5))]))
    parsed = read_voc(tmp_path)
    assert parsed.errors == []
    assert [i.name for i in parsed.items] == ["a.png", "sub/b.png"]
    assert parsed.items[0].annotations[0].geometry == pytest.approx({"x": 0, "y": 0, "w": 0.5, "h": 0.5})
    assert parsed.items[1].annotations[0].geometry == pytest.approx({"x": 0.1, "y": 0.1, "w": 0.4, "h": 0.4})
    assert detect_format(tmp_path) == "voc"

    single = read_voc(tmp_path / "a.xml")
    assert [i.name for i in single.items] == ["a.png"] and single.classes == ["car"]


def test_voc_bad_input_corpus(tmp_path: Path) -> None:
    root = tmp_path / "root"
    images, ann = root / "JPEGImages", root / "Annotations"
    for name in ["ok", "boxes", "bomb", "ext", "trav", "abs", "link", "many", "garbled", "notvoc"]:
        write_image(images / f"{name}.jpg", size=(100, 100))
    write_image(tmp_path / "secret.jpg")
    (tmp_path / "secret.txt").write_text("top secret")
    (images / "outside.jpg").symlink_to(tmp_path / "secret.jpg")
    write_text(ann / "ok.xml", voc_xml("ok.jpg", [obj("cat", (10, 10, 20, 20))], size=(100, 100)))
    write_text(
        ann / "boxes.xml",
        voc_xml(
            "boxes.jpg",
            [
                obj("cat", (1, 1, 100, 100)),  # valid
                obj("cat", None),  # no bndbox
                obj("cat", (1, 1, "", 10)),  # missing coordinate
                obj("cat", (30, 1, 20, 10)),  # xmax <= xmin
                obj("cat", (1, 1, 10, 10)).replace("<name>cat</name>", ""),  # no name
                obj("cat", (1, 1, 150, 10)),  # beyond the 100x100 image
                obj("cat", (0, 0, 101, 101)),  # one pixel over: clipped, kept
                obj("cat", ("abc", 1, 10, 10)),  # non-numeric
                obj("cat", ("nan", 1, 10, 10)),  # NaN
                obj("cat", (1, 1, "inf", 10)),  # infinity
                obj("cat", (-5, 1, 10, 10)),  # negative
                obj("cat", (1, 1, 10, 10), difficult="maybe"),  # garbled flag
            ],
            size=(100, 100),
        ),
    )
    write_text(ann / "broken.xml", "<annotation><filename>ok.jpg</filename><object>")
    write_text(
        ann / "bomb.xml",
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
        "<annotation><filename>bomb.jpg</filename>"
        "<object><name>&lol3;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
        "</bndbox></object></annotation>",
    )
    write_text(
        ann / "ext.xml",
        f'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file://{tmp_path / "secret.txt"}">]>\n'
        "<annotation><filename>ext.jpg</filename>"
        "<object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
        "</bndbox></object></annotation>",
    )
    write_text(ann / "trav.xml", voc_xml("../../secret.jpg", [obj("cat", (1, 1, 2, 2))]))
    write_text(ann / "abs.xml", voc_xml(str(tmp_path / "secret.jpg"), [obj("cat", (1, 1, 2, 2))]))
    write_text(ann / "link.xml", voc_xml("outside.jpg", [obj("cat", (1, 1, 2, 2))]))
    write_text(ann / "missing.xml", voc_xml("nowhere.jpg", [obj("cat", (1, 1, 2, 2))]))
    write_text(ann / "many.xml", voc_xml("many.jpg", [obj("cat", (1, 1, 2, 2))] * (MAX_OBJECTS + 1)))
    write_text(ann / "huge.xml", "<annotation>" + " " * MAX_XML_BYTES + "</annotation>")
    write_text(ann / "notvoc.xml", "<svg><filename>notvoc.jpg</filename></svg>")
    write_text(ann / "dup.xml", voc_xml("ok.jpg", []))  # same image as ok.xml
    (ann / "escape.xml").symlink_to(write_text(tmp_path / "escape.xml", voc_xml("ok.jpg", [])))

    parsed = read_voc(root)
    assert [i.name for i in parsed.items] == ["JPEGImages/boxes.jpg", "JPEGImages/ok.jpg"]
    boxes = parsed.items[0].annotations
    assert [a.geometry for a in boxes] == [
        {"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0},
        {"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0},
    ]
    assert all(a.class_name == "cat" for a in boxes) and parsed.classes == ["cat"]
    reasons = [f"{e.path}: {e.reason}" for e in parsed.errors]
    for fragment in [
        "boxes.xml (object[1]): object 'cat' has no <bndbox>",
        "boxes.xml (object[2]): bndbox has no <xmax>",
        "boxes.xml (object[3]): empty box",
        "boxes.xml (object[4]): object has no <name>",
        "boxes.xml (object[5]): box (1, 1, 150, 10) extends beyond the 100x100 image",
        "boxes.xml (object[7]): <xmin> is not a number",
        "boxes.xml (object[8]): <xmin> is not a finite number",
        "boxes.xml (object[9]): <xmax> is not a finite number",
        "boxes.xml (object[10]): <xmin> is negative",
        "boxes.xml (object[11]): <difficult> must be 0 or 1",
        "broken.xml: malformed XML",
        "bomb.xml: XML with a DTD",
        "ext.xml: XML with a DTD",
        "trav.xml: path escapes the source folder",
        "abs.xml: absolute path not allowed",
        "link.xml: path resolves outside the source folder",
        "missing.xml: image not found",
        f"many.xml: {MAX_OBJECTS + 1} objects in one image",
        "huge.xml: XML file larger than 10 MiB",
        "notvoc.xml: not a VOC annotation: root element is <svg>",
        "JPEGImages/ok.jpg: listed twice",
        "Annotations/escape.xml: symlink points outside the source folder",
    ]:
        assert sum(fragment in r for r in reasons) == 1, (fragment, reasons)
    assert len(reasons) == 22
    assert not any("lol" in r or "top secret" in r for r in reasons)


def test_voc_empty_or_hostile_sources(tmp_path: Path) -> None:
    (tmp_path / "empty" / "Annotations").mkdir(parents=True)
    write_image(tmp_path / "empty" / "JPEGImages" / "a.jpg")
    with pytest.raises(SourceError, match="no VOC annotation files"):
        read_voc(tmp_path / "empty")
    with pytest.raises(SourceError, match="not found"):
        read_voc(tmp_path / "nope")
    with pytest.raises(SourceError, match="not a VOC XML"):
        read_voc(write_image(tmp_path / "x.png"))

    outside = tmp_path / "outside"
    write_image(outside / "s.jpg")
    write_text(outside / "s.xml", voc_xml("s.jpg", [obj("cat", (1, 1, 2, 2))]))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "Annotations").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SourceError, match="outside the source folder"):
        read_voc(linked)

    images_out = tmp_path / "images_out"
    write_text(images_out / "Annotations" / "s.xml", voc_xml("s.jpg", [obj("cat", (1, 1, 2, 2))]))
    (images_out / "JPEGImages").symlink_to(outside, target_is_directory=True)
    parsed = read_voc(images_out)
    assert parsed.items == []
    reasons = {(e.path, e.reason) for e in parsed.errors}
    assert ("JPEGImages", "symlinked folder points outside the source folder") in reasons
    assert any(p == "Annotations/s.xml" and "image not found" in r for p, r in reasons)


def test_voc_zip_through_read_source(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pattern(50, 40).save(buf, "JPEG")
    xml = voc_xml("a.jpg", [obj("dog", (6, 5, 30, 24), difficult=1)], size=(50, 40))
    zpath = make_zip(
        tmp_path / "voc.zip",
        {"VOC2007/Annotations/a.xml": xml.encode(), "VOC2007/JPEGImages/a.jpg": buf.getvalue()},
    )
    assert detect_format(zpath) == "voc"
    parsed = read_source(zpath, "auto", work_dir=tmp_path / "work")
    assert parsed.format == "voc" and parsed.errors == []
    assert [i.name for i in parsed.items] == ["JPEGImages/a.jpg"]
    assert parsed.items[0].annotations[0].geometry == pytest.approx(
        {"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5, "difficult": True}
    )


def test_voc_detect_format(tmp_path: Path) -> None:
    (tmp_path / "std" / "Annotations").mkdir(parents=True)
    assert detect_format(tmp_path / "std") == "voc"
    xml = write_text(tmp_path / "one" / "a.xml", voc_xml("a.jpg", []))
    assert detect_format(xml) == "voc"
    write_text(tmp_path / "other" / "a.xml", "<svg/>")
    write_image(tmp_path / "other" / "a.png")
    assert detect_format(tmp_path / "other") == "folder"


@st.composite
def pixel_box(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """A valid VOC box in a 640x480 image: 1-based, xmax > xmin, inside the image."""
    xmin, ymin = draw(st.integers(1, 639)), draw(st.integers(1, 479))
    return xmin, ymin, draw(st.integers(xmin + 1, 640)), draw(st.integers(ymin + 1, 480))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    boxes=st.lists(st.tuples(st.sampled_from(["cat", "dog", "car"]), pixel_box(), st.booleans()), max_size=15)
)
def test_voc_write_read_round_trip(
    tmp_path: Path, boxes: list[tuple[str, tuple[int, int, int, int], bool]]
) -> None:
    width, height = 640, 480
    folder = tmp_path / "rt"
    if not (folder / "img.jpg").exists():
        write_image(folder / "img.jpg", size=(8, 8))  # the declared <size> rules, not the pixels
    objects = [obj(name, box, difficult=int(hard)) for name, box, hard in boxes]
    write_text(folder / "img.xml", voc_xml("img.jpg", objects, size=(width, height)))
    parsed = read_voc(folder)
    assert parsed.errors == []
    anns = parsed.items[0].annotations
    assert len(anns) == len(boxes)
    for ann, (name, (xmin, ymin, xmax, ymax), hard) in zip(anns, boxes, strict=True):
        g = ann.geometry or {}
        assert ann.class_name == name
        assert g.get("difficult", False) is hard
        # Back to VOC: what a VOC writer would emit from the stored box.
        assert round(g["x"] * width) + 1 == xmin and round(g["y"] * height) + 1 == ymin
        assert round((g["x"] + g["w"]) * width) == xmax and round((g["y"] + g["h"]) * height) == ymax
        assert g["x"] * width + 1 == pytest.approx(xmin) and (g["x"] + g["w"]) * width == pytest.approx(xmax)
