from __future__ import annotations

import os
from pathlib import Path

import pytest
from ingest_factories import write_image

from vistudio.ingest.safepath import IMAGE_EXTENSIONS, resolve_inside, walk_images
from vistudio.ingest.types import IngestError, SourceError


def test_resolve_inside_accepts_nested_and_backslash_paths(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write_image(root / "a" / "b.png")
    assert resolve_inside(root, "a/b.png") == (root / "a" / "b.png").resolve()
    assert resolve_inside(root, "a\\b.png") == (root / "a" / "b.png").resolve()
    assert resolve_inside(root, "./a//b.png") == (root / "a" / "b.png").resolve()
    assert resolve_inside(root, "missing.jpg") == (root / "missing.jpg").resolve()


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\x.jpg", "absolute"),
        ("c:/x.jpg", "absolute"),
        ("\\\\server\\share\\x.jpg", "absolute"),
        ("../outside.jpg", "'..'"),
        ("a/../../outside.jpg", "'..'"),
        ("a\\..\\..\\x.jpg", "'..'"),
        ("x\x00.jpg", "NUL"),
        ("", "empty"),
        ("  ", "empty"),
        ("./.", "empty"),
    ],
)
def test_resolve_inside_refuses_bad_paths(tmp_path: Path, relative: str, reason: str) -> None:
    with pytest.raises(IngestError, match=reason):
        resolve_inside(tmp_path, relative)


def test_resolve_inside_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    secret = write_image(tmp_path / "secret.png")
    (root / "link.png").symlink_to(secret)
    (root / "dir").symlink_to(tmp_path)
    with pytest.raises(IngestError, match="outside the source folder"):
        resolve_inside(root, "link.png")
    with pytest.raises(IngestError, match="outside the source folder"):
        resolve_inside(root, "dir/secret.png")


def test_resolve_inside_allows_symlink_within_root(tmp_path: Path) -> None:
    target = write_image(tmp_path / "real" / "x.png")
    (tmp_path / "alias.png").symlink_to(target)
    assert resolve_inside(tmp_path, "alias.png") == target.resolve()


def test_image_extensions() -> None:
    assert {
        ".jpg",
        ".jpeg",
        ".png",
        ".heic",
        ".heif",
        ".tif",
        ".tiff",
        ".gif",
        ".bmp",
        ".webp",
    } == IMAGE_EXTENSIONS


def test_walk_images_sorted_filtered_hidden_skipped(tmp_path: Path) -> None:
    for rel in ["b/2.png", "a/1.JPG", "a/sub/3.tiff", "top.HEIC", ".hidden/4.png", "a/.5.png", "c/6.png"]:
        write_image(tmp_path / rel, fmt="PNG")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "c" / "readme.md").write_text("x")
    paths, errors = walk_images(tmp_path)
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in paths]
    assert found == ["a/1.JPG", "a/sub/3.tiff", "b/2.png", "c/6.png", "top.HEIC"]
    assert errors == []


def test_walk_images_symlinks_outside_loops_and_broken(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_image(outside / "secret.png")
    root = tmp_path / "root"
    write_image(root / "cls" / "ok.png")
    (root / "cls" / "leak.png").symlink_to(outside / "secret.png")
    (root / "leakdir").symlink_to(outside, target_is_directory=True)
    (root / "cls" / "loop").symlink_to(root, target_is_directory=True)
    (root / "self").symlink_to(root / "self")
    (root / "broken.jpg").symlink_to(root / "nothing.jpg")
    (root / "inside.png").symlink_to(root / "cls" / "ok.png")
    (root / "again").symlink_to(root / "cls", target_is_directory=True)
    paths, errors = walk_images(root)
    rel = [p.relative_to(root.resolve()).as_posix() for p in paths]
    # "again" is the same folder as "cls": walked once only (sorted order reaches "again" first).
    assert rel == ["again/ok.png", "inside.png"]
    reasons = {e.path: e.reason for e in errors}
    assert reasons["again/leak.png"] == "symlink points outside the source folder"
    assert reasons["leakdir"] == "symlinked folder points outside the source folder"
    assert "loop" in reasons["again/loop"]
    assert reasons["broken.jpg"] == "broken symlink"
    assert all(p.resolve().is_relative_to(root.resolve()) for p in paths)


def test_walk_images_missing_root(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        walk_images(tmp_path / "nope")


def test_walk_images_deep_tree_does_not_recurse(tmp_path: Path) -> None:
    deep = tmp_path
    for i in range(60):
        deep = deep / f"d{i}"
    write_image(deep / "x.png")
    paths, _ = walk_images(tmp_path)
    assert len(paths) == 1 and os.path.basename(paths[0]) == "x.png"
