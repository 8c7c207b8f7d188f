"""Library rules that need no database: when a root is usable, which samples a root owns, walks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factories import draw_image
from vistudio.errors import InvalidInput, NotFound
from vistudio.services.library import _owned, _walk, check_root_path, root_problem


def test_root_problem(tmp_path: Path) -> None:
    assert root_problem(tmp_path / "gone", indexed=0) == "missing"
    (tmp_path / "file").write_text("x")
    assert root_problem(tmp_path / "file", indexed=3) == "not a folder"
    (tmp_path / "mount").mkdir()
    assert root_problem(tmp_path / "mount", indexed=0) is None  # new and empty: fine
    assert "unmounted" in (root_problem(tmp_path / "mount", indexed=5) or "")  # emptied: refused
    (tmp_path / "mount" / "a.png").write_bytes(b"x")
    assert root_problem(tmp_path / "mount", indexed=5) is None


def test_owned_needs_a_whole_folder_prefix() -> None:
    roots = ["/data/photos", "/"]
    assert _owned("/data/photos/2024/a.jpg", roots[:1])
    assert not _owned("/data/photos-old/a.jpg", roots[:1])
    assert not _owned("/data/photos", roots[:1])
    assert _owned("/anything.jpg", roots[1:])


def test_check_root_path(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    (home / "thumbs").mkdir(parents=True)
    (tmp_path / "pics").mkdir()
    assert check_root_path(str(tmp_path / "pics" / ".." / "pics"), home=home) == tmp_path / "pics"
    assert check_root_path("pics", home=home, base=tmp_path) == tmp_path / "pics"
    os.symlink(tmp_path / "pics", tmp_path / "link")
    assert check_root_path(str(tmp_path / "link"), home=home) == tmp_path / "pics"  # stored resolved
    for bad in ("", "   ", "pics", "/x\x00y"):
        with pytest.raises(InvalidInput):
            check_root_path(bad, home=home)
    with pytest.raises(NotFound):
        check_root_path(str(tmp_path / "nope"), home=home)
    with pytest.raises(InvalidInput, match="workspace"):
        check_root_path(str(home / "thumbs"), home=home)
    with pytest.raises(InvalidInput, match="outside"):
        check_root_path(str(tmp_path / "pics"), home=home, allowed=[tmp_path / "elsewhere"])


def test_walk_reports_what_it_cannot_index_and_skips_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "root"
    draw_image(root / "a.png", seed=1)
    draw_image(root / "sub" / "b.jpg", seed=2, fmt="JPEG")
    (root / "readme.txt").write_text("ignored")
    draw_image(root / ".cache" / "c.png", seed=3)  # hidden: skipped
    draw_image(root / "ws" / "thumbs" / "d.png", seed=4)  # the workspace inside the root
    with open(os.path.join(os.fsencode(root), b"bad-\xff.png"), "wb") as fh:  # not UTF-8
        fh.write(b"x")
    os.symlink("/etc/hostname", root / "escape.png")
    w = _walk(str(root), workspace=root / "ws")
    assert set(w.files) == {"a.png", "sub/b.jpg"}
    assert w.files["a.png"][0] == (root / "a.png").stat().st_size
    errors = {f["error"] for f in w.failed}
    assert "file name is not valid UTF-8" in errors and any("outside" in e for e in errors)
    assert len(w.unsure) == 2  # neither is ever taken as gone
