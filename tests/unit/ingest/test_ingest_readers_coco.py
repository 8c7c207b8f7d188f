from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ingest_factories import write_image

from vistudio.ingest.readers.coco import read_coco
from vistudio.ingest.types import SourceError


def write_coco(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_coco_happy_path(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "a.png", size=(200, 100))
    write_image(tmp_path / "images" / "b.png", size=(40, 40))
    write_image(tmp_path / "images" / "c.png", size=(50, 25))
    doc = {
        "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}],
        "images": [
            {"id": 10, "file_name": "a.png", "width": 200, "height": 100},
            {"id": 11, "file_name": "images/b.png"},  # no size: read from the header
            {"id": 12, "file_name": "c.png", "width": 50, "height": 25},  # no annotations
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "bbox": [20, 10, 100, 50], "iscrowd": 0},
            {
                "id": 2,
                "image_id": 10,
                "category_id": 3,
                "bbox": [0, 0, 20, 20],
                "segmentation": [[0, 0, 20, 0, 20, 20]],
            },
            {
                "id": 3,
                "image_id": 11,
                "category_id": 3,
                "bbox": [0, 0, 40, 40],
                "segmentation": {"size": [40, 40], "counts": [0, 1600]},
                "iscrowd": 1,
            },
        ],
    }
    parsed = read_coco(write_coco(tmp_path / "instances.json", doc))
    assert parsed.errors == []
    assert parsed.format == "coco"
    assert parsed.classes == ["cat", "dog"]  # category id order
    assert [i.name for i in parsed.items] == ["images/a.png", "images/b.png", "images/c.png"]
    a, b, c = parsed.items
    assert a.annotations[0].kind == "box" and a.annotations[0].class_name == "cat"
    assert a.annotations[0].geometry == pytest.approx({"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.5})
    poly = next(x for x in a.annotations if x.kind == "polygon")
    assert poly.class_name == "dog"
    assert poly.geometry == {"polygons": [[[0.0, 0.0], [0.1, 0.0], [0.1, 0.2]]]}
    kinds = {x.kind: x for x in b.annotations}
    assert kinds["box"].geometry == {"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0, "iscrowd": True}
    assert kinds["mask_rle"].geometry == {"size": [40, 40], "counts": [0, 1600], "iscrowd": True}
    assert c.annotations == []


def test_coco_folder_with_images_next_to_json(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png")
    write_coco(
        tmp_path / "ann.json", {"images": [{"id": 1, "file_name": "x.png", "width": 64, "height": 48}]}
    )
    parsed = read_coco(tmp_path)
    assert [i.name for i in parsed.items] == ["x.png"]


def test_coco_bad_input_corpus(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_image(root / "ok.png", size=(100, 100))
    write_image(root / "ok2.png", size=(100, 100))
    write_image(tmp_path / "secret.png")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    doc = {
        "categories": [{"id": 1, "name": "cat"}, {"id": "x"}],
        "images": [
            {"id": 1, "file_name": "ok.png", "width": 100, "height": 100},
            {"id": 2, "file_name": "../secret.png"},
            {"id": 3, "file_name": str(tmp_path / "secret.png")},
            {"id": 4, "file_name": "link.png"},
            {"id": 5, "file_name": "missing.png"},
            {"id": 6, "file_name": "ok.png", "width": 100, "height": 100},  # same file again
            {"id": 1, "file_name": "ok2.png"},  # same id again
            {"id": 7, "file_name": "ok2.png", "width": 100, "height": 100},
            "not an object",
        ],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},  # valid
            {"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]},  # missing image id
            {"image_id": 1, "category_id": 42, "bbox": [0, 0, 1, 1]},  # unknown category
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, -5, 1]},  # negative size
            {"image_id": 1, "category_id": 1, "bbox": ["a", 0, 1, 1]},  # non-numeric
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]},  # wrong length
            {"image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3]]},  # bad polygon
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]},  # image refused above: dropped
            {"image_id": 7, "category_id": 1, "bbox": [500, 500, 10, 10]},  # outside the image
            # a bow tie: its two edges cross at (50, 50)
            {"image_id": 1, "category_id": 1, "segmentation": [[10, 10, 90, 90, 90, 10, 10, 90]]},
            {"image_id": 1, "category_id": 1, "segmentation": [[10, 10, 50, 50, 90, 90]]},  # on a line
            {"image_id": 1, "category_id": 1, "segmentation": [[10, 10, 10, 10, 10, 10]]},  # one point
            {"image_id": 1, "category_id": 1, "segmentation": {"size": [50, 100], "counts": [5000]}},
            {"image_id": 1, "category_id": 1, "segmentation": {"size": [100, 100], "counts": [10000]}},
            {"image_id": 1, "category_id": 1, "segmentation": [[10, 10, 90, 10, 90, 90, 10, 90]]},
        ],
    }
    parsed = read_coco(write_coco(root / "coco.json", doc))
    assert [i.name for i in parsed.items] == ["ok.png", "ok2.png"]
    assert [a.kind for a in parsed.items[0].annotations] == ["box", "mask_rle", "polygon"]
    assert parsed.items[1].annotations == []
    reasons = [f"{e.path}: {e.reason}" for e in parsed.errors]
    assert "self-intersecting polygon: its edges cross near (50, 50)" in " ".join(reasons)
    assert "RLE size 50×100 (h×w) differs from the image's 100×100" in " ".join(reasons)
    for fragment in [
        "categories[1]",
        "../secret.png: path escapes",
        "absolute path not allowed",
        "link.png: path resolves outside",
        "missing.png: file not found",
        "ok.png: listed twice",
        "images[6]: image id 1 listed twice",
        "images[8]",
        "missing image id 99",
        "unknown category id 42",
        "width and height must be positive",
        "malformed polygon: need an even number",
        "outside the image",
        "self-intersecting polygon",
        "zero area",
        "fewer than 3 distinct points",
        "RLE size",
    ]:
        assert sum(fragment in r for r in reasons) == 1, (fragment, reasons)
    assert sum("malformed bbox" in r and "need 4 numbers" in r for r in reasons) == 2
    assert len(reasons) == 19


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "must be an object"),
        ('{"annotations": []}', "no 'images'"),
        ('{"images": [], "annotations": {}}', "must be lists"),
        ("\xff\xfe", "malformed JSON"),
    ],
)
def test_coco_malformed_documents(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(SourceError, match=message):
        read_coco(path)


def test_coco_folder_needs_exactly_one_json(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="exactly one"):
        read_coco(tmp_path)
    write_coco(tmp_path / "a.json", {"images": []})
    write_coco(tmp_path / "b.json", {"images": []})
    with pytest.raises(SourceError, match="exactly one"):
        read_coco(tmp_path)


def test_coco_size_from_the_image_follows_exif_orientation(tmp_path: Path) -> None:
    # Stored 64x48 with orientation 6: displayed (and probed) as 48 wide, 64 high. Without
    # width/height in the JSON the reader must normalise against the displayed size too.
    from ingest_factories import pattern
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "images").mkdir()
    pattern(64, 48).save(tmp_path / "images" / "r.jpg", exif=exif)
    doc = {
        "images": [{"id": 1, "file_name": "r.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [12, 16, 24, 32]}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    parsed = read_coco(write_coco(tmp_path / "ann.json", doc))
    assert parsed.errors == []
    (box,) = parsed.items[0].annotations
    assert box.geometry == pytest.approx({"x": 0.25, "y": 0.25, "w": 0.5, "h": 0.5})


def test_coco_polygon_overflowing_to_infinity_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 1e-300, "height": 1e-300}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1e10, 1e10, 2e10, 1e10, 1e10, 2e10]]}
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    parsed = read_coco(write_coco(tmp_path / "ann.json", doc))
    assert parsed.items[0].annotations == []
    assert [e.reason for e in parsed.errors] == [
        "malformed polygon: coordinates too large for the image size"
    ]


def test_coco_images_folder_symlinked_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_image(outside / "secret.png")
    src = tmp_path / "src"
    src.mkdir()
    (src / "images").symlink_to(outside, target_is_directory=True)
    doc = {"images": [{"id": 1, "file_name": "secret.png"}], "annotations": [], "categories": []}
    parsed = read_coco(write_coco(src / "ann.json", doc))
    assert parsed.items == []
    assert ("images", "symlinked folder points outside the source folder") in {
        (e.path, e.reason) for e in parsed.errors
    }
