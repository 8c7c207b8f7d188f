from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from ingest_factories import make_zip, pattern, tree

from vistudio.ingest.archive import extract_zip
from vistudio.ingest.types import SourceError


def png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    pattern(16, 16).save(buf, "PNG")
    return buf.getvalue()


def test_extract_zip_happy_path(tmp_path: Path) -> None:
    data = png_bytes()
    zpath = make_zip(tmp_path / "in.zip", {"ds/cat/a.png": data, "ds/dog/b.png": data, "ds/empty/": b""})
    dest = tmp_path / "out"
    assert extract_zip(zpath, dest) == []
    assert (dest / "ds" / "cat" / "a.png").read_bytes() == data
    assert tree(dest) == {"ds", "ds/cat", "ds/cat/a.png", "ds/dog", "ds/dog/b.png", "ds/empty"}


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_extract_zip_refuses_bad_members_and_writes_nothing_outside(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    zpath = make_zip(
        tmp_path / "evil.zip",
        {
            "../escape.txt": b"x",
            "a/../../escape2.txt": b"x",
            "/abs.txt": b"x",
            "C:/windows.txt": b"x",
            "d:\\win2.txt": b"x",
            "ok/..\\..\\escape3.txt": b"x",
            "__MACOSX/ok/._a.png": b"x",
            "ok/.DS_Store": b"x",
            "ok/good.txt": b"good",
            "ok/dup.txt": b"first",
        },
        symlinks={"ok/link": "/etc/passwd", "ok/uplink": "../../.."},
    )
    with zipfile.ZipFile(zpath, "a") as archive:
        archive.writestr(zipfile.ZipInfo("ok/dup.txt"), b"second")
    before = tree(tmp_path)
    dest = work / "dest"
    errors = extract_zip(zpath, dest)
    reasons = {e.path: e.reason for e in errors}
    assert "'..'" in reasons["../escape.txt"]
    assert "'..'" in reasons["a/../../escape2.txt"]
    assert "'..'" in reasons["ok/..\\..\\escape3.txt"]
    assert "absolute" in reasons["/abs.txt"]
    assert "drive letter" in reasons["C:/windows.txt"]
    assert "drive letter" in reasons["d:\\win2.txt"]
    assert "symlink" in reasons["ok/link"] and "symlink" in reasons["ok/uplink"]
    assert reasons["ok/dup.txt"] == "listed twice in the zip"
    assert len(errors) == 9  # __MACOSX and hidden entries are skipped silently
    assert (dest / "ok" / "good.txt").read_bytes() == b"good"
    assert (dest / "ok" / "dup.txt").read_bytes() == b"first"
    after = tree(tmp_path)
    assert after - before == {"work/dest", "work/dest/ok", "work/dest/ok/good.txt", "work/dest/ok/dup.txt"}
    assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_extract_zip_not_a_zip_and_corrupt(tmp_path: Path) -> None:
    text = tmp_path / "x.zip"
    text.write_text("hello, not a zip")
    with pytest.raises(SourceError, match="not a zip"):
        extract_zip(text, tmp_path / "out")
    with pytest.raises(SourceError, match="not found"):
        extract_zip(tmp_path / "missing.zip", tmp_path / "out")
    good = make_zip(tmp_path / "good.zip", {"a.bin": bytes(range(256)) * 400})
    with zipfile.ZipFile(good) as archive:
        offset = archive.getinfo("a.bin").header_offset
    data = bytearray(good.read_bytes())
    data[offset + 60 : offset + 4000] = b"\xaa" * 3940  # damage the member body (CRC mismatch)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="corrupt"):
        extract_zip(bad, tmp_path / "out2")
    assert not any((tmp_path / "out2").rglob("a.bin"))


def test_extract_zip_bomb_ratio_and_limits(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\x00" * (4 << 20))
    assert bomb.stat().st_size < 50_000
    with pytest.raises(SourceError, match="zip bomb"):
        extract_zip(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SourceError, match="limit"):
        extract_zip(bomb, tmp_path / "out", max_total_bytes=1 << 20, max_ratio=10**6)
    many = make_zip(tmp_path / "many.zip", {f"{i}.txt": b"x" for i in range(5)})
    with pytest.raises(SourceError, match="entries"):
        extract_zip(many, tmp_path / "out", max_members=4)


def test_extract_zip_stops_when_data_exceeds_declared_size(tmp_path: Path) -> None:
    path = tmp_path / "liar.zip"
    payload = b"A" * 5000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("big.txt", payload)
    # Shrink the declared size in both headers: the member then inflates past what it claims.
    data = bytearray(path.read_bytes())
    for sig, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(sig)
        data[at + size_offset : at + size_offset + 4] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError):
        extract_zip(path, tmp_path / "out")
    assert not any(p.name == "big.txt" for p in (tmp_path / "out").rglob("*"))


def test_extract_zip_bomb_of_many_small_members(tmp_path: Path) -> None:
    # Each member stays under the 1 MB floor of the per-member ratio test, but together
    # 40 of them expand ~1000:1; with thousands more a small upload would fill the disk.
    bomb = tmp_path / "many-small.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(40):
            archive.writestr(f"z{i}.bin", b"\x00" * (512 << 10))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(SourceError, match="zip bomb"):
        extract_zip(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
