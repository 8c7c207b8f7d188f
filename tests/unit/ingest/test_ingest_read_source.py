from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from ingest_factories import make_zip, pattern, tree, write_image

from vistudio.ingest.readers import detect_format, known_formats, read_source, register_reader
from vistudio.ingest.types import ParsedSource, SourceError


def png() -> bytes:
    buf = io.BytesIO()
    pattern(16, 12).save(buf, "PNG")
    return buf.getvalue()


def test_registry_knows_formats_and_refuses_duplicates() -> None:
    assert {"coco", "csv", "folder", "yolo"} <= set(known_formats())
    with pytest.raises(ValueError, match="already registered"):

        @register_reader("folder")
        def again(path: Path) -> ParsedSource:  # pragma: no cover - never called
            return ParsedSource(format="folder", root=path)


def test_read_source_missing_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        read_source(tmp_path / "nope", "folder", work_dir=tmp_path / "w")
    with pytest.raises(SourceError, match="known formats: coco, csv, dota, folder, masks, voc, yolo"):
        read_source(tmp_path, "pascal", work_dir=tmp_path / "w")


def test_read_source_zip_with_single_top_folder_and_bad_members(tmp_path: Path) -> None:
    data = png()
    zpath = make_zip(
        tmp_path / "upload.zip",
        {"ds/cat/a.png": data, "ds/dog/b.png": data, "../evil.png": data, "__MACOSX/ds/._a.png": b"x"},
        symlinks={"ds/cat/link.png": "/etc/passwd"},
    )
    work = tmp_path / "work"
    before = tree(tmp_path)
    parsed = read_source(zpath, "folder", work_dir=work)
    assert parsed.root.parent.parent == work.resolve() and parsed.root.name == "ds"
    assert parsed.classes == ["cat", "dog"]
    assert [i.name for i in parsed.items] == ["cat/a.png", "dog/b.png"]
    assert [e.path for e in parsed.errors] == ["../evil.png", "ds/cat/link.png"]
    new = tree(tmp_path) - before
    assert new and all(p.startswith("work") for p in new)
    # A second read goes to a fresh folder.
    again = read_source(zpath, "folder", work_dir=work)
    assert again.root != parsed.root


def test_read_source_zipped_coco_and_auto(tmp_path: Path) -> None:
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 12}], "annotations": []}
    zpath = make_zip(
        tmp_path / "coco.zip", {"coco/ann.json": json.dumps(doc).encode(), "coco/images/a.png": png()}
    )
    assert detect_format(zpath) == "coco"
    parsed = read_source(zpath, "auto", work_dir=tmp_path / "w")
    assert parsed.format == "coco" and [i.name for i in parsed.items] == ["images/a.png"]


def test_read_source_not_a_zip_and_bomb(tmp_path: Path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_text("nope")
    with pytest.raises(SourceError, match="not a zip"):
        read_source(fake, "folder", work_dir=tmp_path / "w")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.png", b"\x00" * (8 << 20))
    with pytest.raises(SourceError, match="zip bomb"):
        read_source(bomb, "folder", work_dir=tmp_path / "w")


def test_detect_format(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    write_image(folder / "cat" / "a.png")
    assert detect_format(folder) == "folder"

    coco = tmp_path / "coco"
    coco.mkdir()
    (coco / "instances.json").write_text(json.dumps({"images": []}))
    assert detect_format(coco) == "coco"
    assert detect_format(coco / "instances.json") == "coco"
    (tmp_path / "other.json").write_text("[1]")
    assert detect_format(tmp_path / "other.json") == "folder"

    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "data.yaml").write_text("names: [a]\n")
    assert detect_format(yolo) == "yolo"
    bare = tmp_path / "bare"
    (bare / "images").mkdir(parents=True)
    (bare / "labels").mkdir()
    assert detect_format(bare) == "yolo"

    table = tmp_path / "table"
    table.mkdir()
    (table / "labels.csv").write_text("path,label\n")
    assert detect_format(table) == "csv"
    assert detect_format(table / "labels.csv") == "csv"

    assert detect_format(make_zip(tmp_path / "y.zip", {"d/data.yaml": b"names: [a]"})) == "yolo"
    assert detect_format(make_zip(tmp_path / "c.zip", {"d/l.csv": b"path\n"})) == "csv"
    assert detect_format(make_zip(tmp_path / "f.zip", {"d/a/x.png": png()})) == "folder"
