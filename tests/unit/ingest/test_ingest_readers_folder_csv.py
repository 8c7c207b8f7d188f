from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_factories import write_image

from vistudio.ingest.readers import read_source
from vistudio.ingest.readers.csv import parse_csv_text, read_csv
from vistudio.ingest.readers.folder import read_folder
from vistudio.ingest.types import IngestError, ParsedSource, SourceError


def names(parsed: ParsedSource) -> list[str]:
    return [i.name for i in parsed.items]


def test_folder_class_folders_become_labels(tmp_path: Path) -> None:
    for rel in ["dog/1.png", "cat/2.jpg", "cat/3.png"]:
        write_image(tmp_path / rel)
    parsed = read_folder(tmp_path)
    assert parsed.format == "folder"
    assert parsed.classes == ["cat", "dog"]
    assert names(parsed) == ["cat/2.jpg", "cat/3.png", "dog/1.png"]
    assert [(a.kind, a.class_name) for i in parsed.items for a in i.annotations] == [
        ("label", "cat"),
        ("label", "cat"),
        ("label", "dog"),
    ]
    assert all(i.path.is_absolute() and i.path.is_file() for i in parsed.items)


@pytest.mark.parametrize(
    "layout",
    [
        ["a.png", "b.png"],  # flat folder of photos
        ["2023/06/a.jpg", "2023/07/b.jpg", "2024/01/c.jpg"],  # library by date
        ["cat/1.png", "loose.png"],  # mixed depth
    ],
)
def test_folder_without_class_layout_is_unlabelled(tmp_path: Path, layout: list[str]) -> None:
    for rel in layout:
        write_image(tmp_path / rel)
    parsed = read_folder(tmp_path)
    assert parsed.classes == []
    assert sorted(names(parsed)) == sorted(layout)
    assert all(i.annotations == [] for i in parsed.items)


def test_folder_bad_inputs(tmp_path: Path) -> None:
    outside = write_image(tmp_path / "outside" / "secret.png")
    root = tmp_path / "root"
    write_image(root / "cat" / "1.png")
    (root / "cat" / "leak.png").symlink_to(outside)
    (root / "cat" / "loop").symlink_to(root, target_is_directory=True)
    parsed = read_folder(root)
    assert names(parsed) == ["cat/1.png"]
    reasons = {e.path: e.reason for e in parsed.errors}
    assert reasons["cat/leak.png"] == "symlink points outside the source folder"
    assert "loop" in reasons["cat/loop"]
    with pytest.raises(SourceError):
        read_folder(tmp_path / "missing")


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_labels_with_bom_crlf_and_quotes(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "a b.png")
    write_image(tmp_path / "imgs" / "c.png")
    write_image(tmp_path / "imgs" / "d.png")
    csv_path = write_csv(
        tmp_path / "labels.csv",
        '\ufeffFilename,Label\r\n"imgs/a b.png","big, fluffy"\r\nimgs\\c.png,small\r\n\r\nimgs/d.png,\r\n',
    )
    parsed = read_csv(csv_path)
    assert parsed.errors == []
    assert names(parsed) == ["imgs/a b.png", "imgs/c.png", "imgs/d.png"]
    assert parsed.classes == ["big, fluffy", "small"]
    assert [[a.class_name for a in i.annotations] for i in parsed.items] == [["big, fluffy"], ["small"], []]


def test_csv_numeric_columns_are_regression(tmp_path: Path) -> None:
    for n in "abc":
        write_image(tmp_path / f"{n}.png")
    parsed = read_csv(
        write_csv(tmp_path / "t.csv", "image,age,score\na.png,31,0.5\nb.png,4.5,-1e3\nc.png,x,2\n")
    )
    assert parsed.targets == ["age", "score"]
    assert parsed.classes == []
    assert [i.annotations[0].geometry for i in parsed.items] == [
        {"values": [31.0, 0.5]},
        {"values": [4.5, -1000.0]},
    ]
    assert parsed.items[0].annotations[0].kind == "value"
    assert len(parsed.errors) == 1 and "row 4" in parsed.errors[0].reason and "age" in parsed.errors[0].reason


def test_csv_numeric_label_column_stays_a_label(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    parsed = read_csv(write_csv(tmp_path / "t.csv", "path,label\na.png,3\n"))
    assert parsed.targets == [] and parsed.classes == ["3"]


def test_csv_bad_rows_corpus(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_image(root / "ok.png")
    write_image(tmp_path / "secret.png")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    text = (
        "path,label\n"
        "ok.png,cat\n"  # row 2
        "../secret.png,cat\n"  # row 3
        f"{tmp_path / 'secret.png'},cat\n"  # row 4
        "C:\\Windows\\x.png,cat\n"  # row 5
        "link.png,cat\n"  # row 6
        "missing.png,cat\n"  # row 7
        ",cat\n"  # row 8
        "ok.png,dog\n"  # row 9
        "ok.png\n"  # row 10
        "ok.png,cat,extra\n"  # row 11
    )
    parsed = read_csv(write_csv(root / "labels.csv", text))
    assert names(parsed) == ["ok.png"]
    assert parsed.items[0].annotations[0].class_name == "cat"
    reasons = [e.reason for e in parsed.errors]
    assert len(reasons) == 9
    expected = [
        "'..'",
        "absolute",
        "absolute",
        "outside",
        "not found",
        "empty path",
        "listed twice",
        "columns",
        "columns",
    ]
    for row, fragment in zip(range(3, 12), expected, strict=True):
        assert any(r.startswith(f"row {row}:") and fragment in r for r in reasons), (row, fragment, reasons)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\r\n\r\n", "empty"),
        ("name,label\na.png,x\n", "no path column"),
        ("x\x00y", "path column"),
    ],
)
def test_csv_source_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_csv(write_csv(tmp_path / "t.csv", text))


def test_csv_not_utf8_and_folder_lookup(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="UTF-8"):
        read_csv(write_csv(tmp_path / "a" / "t.csv", "path,label\nü.png,x\n", encoding="utf-16"))
    (tmp_path / "b").mkdir()
    with pytest.raises(SourceError, match="exactly one"):
        read_csv(tmp_path / "b")
    write_image(tmp_path / "c" / "x.png")
    write_csv(tmp_path / "c" / "list.csv", "path\nx.png\n")
    parsed = read_source(tmp_path / "c", "csv", work_dir=tmp_path / "work")
    assert names(parsed) == ["x.png"] and parsed.items[0].annotations == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list('path,label"\r\n\\/.x1 é\x00\ufeff')), max_size=120))
def test_csv_parser_never_crashes(tmp_path: Path, text: str) -> None:
    try:
        parsed = parse_csv_text(text, root=tmp_path)
    except (SourceError, IngestError):
        return
    for item in parsed.items:
        assert item.path.resolve().is_relative_to(tmp_path.resolve())
    assert all(e.reason for e in parsed.errors)
