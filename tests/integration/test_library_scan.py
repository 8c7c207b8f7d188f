"""Library scans: the first scan, incremental rescans, bad files, missing roots, root removal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from factories import draw_image, run_import, tree
from vistudio.db import Artifact, Sample
from vistudio.db.library import LibraryFile, LibraryRoot
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.jobs.worker import Worker
from vistudio.services import library, projects, samples
from vistudio.services.doctor import run_doctor
from vistudio.studio import Studio


def scan(studio: Studio, project: str = "lib", **kw: Any) -> dict[str, Any]:
    """Queue a scan and run it here; returns ``{"job", "report"}``."""
    job = library.start_scan(studio, project=project, **kw)
    Worker(studio).run_one(job_id=job["id"])
    return library.scan_report(studio, job["id"])


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's mtime and bytes: originals must never change."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in folder.rglob("*")
        if p.is_file()
    }


def files(studio: Studio) -> dict[str, LibraryFile]:
    with studio.sessions() as s:
        return {f.path: f for f in s.scalars(select(LibraryFile))}


def count(studio: Studio, model: Any) -> int:
    with studio.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def bump(path: Path, seconds: float = 10) -> None:
    """Move a file's mtime (a copy tool or an editor touching it)."""
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + seconds))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i in range(5):
        draw_image(root / "2023" / f"img_{i}.png", seed=i)
    draw_image(root / "2024" / "trip" / "beach.jpg", seed=10, fmt="JPEG")
    (root / "2024" / "copy-of-img_0.png").write_bytes((root / "2023" / "img_0.png").read_bytes())
    (root / "notes.txt").write_text("not an image name: ignored")
    (root / ".hidden.png").write_bytes((root / "2023" / "img_1.png").read_bytes())
    return root


@pytest.fixture
def lib(studio: Studio, photos: Path) -> Path:
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(photos)])
    return photos


def test_first_scan_indexes_in_place(studio: Studio, lib: Path) -> None:
    before = snapshot(lib)
    out = scan(studio)
    assert out["job"]["status"] == "succeeded" and out["job"]["kind"] == "library_scan"
    r = out["report"]
    assert (r["added"], r["updated"], r["removed"], r["unchanged"], r["failed"]) == (7, 0, 0, 0, [])
    assert r["samples_added"] == 6 and r["duplicate_files"] == 1
    assert r["roots"][0]["path"] == str(lib) and r["roots"][0]["files"] == 7
    rows = files(studio)
    assert set(rows) == {
        *(f"2023/img_{i}.png" for i in range(5)),
        "2024/trip/beach.jpg",
        "2024/copy-of-img_0.png",
    }
    # identical bytes: two files, one sample
    assert rows["2024/copy-of-img_0.png"].sample_id == rows["2023/img_0.png"].sample_id
    assert rows["2023/img_0.png"].sha256 == rows["2024/copy-of-img_0.png"].sha256
    listed = samples.list_samples(studio, project="lib", limit=50)
    assert listed["total"] == 6
    detail = samples.get_sample(studio, rows["2024/trip/beach.jpg"].sample_id or 0)
    assert detail["storage"] == "reference" and detail["path"] == str(lib / "2024" / "trip" / "beach.jpg")
    assert detail["format"] == "JPEG" and detail["width"] == 64
    assert len(tree(studio.home / "thumbs")) == 6 and tree(studio.home / "media") == set()
    assert snapshot(lib) == before  # originals untouched
    assert run_doctor(studio)["ok"]
    roots = library.list_roots(studio, project="lib")["items"]
    assert roots[0]["files"] == 7 and roots[0]["problem"] is None and roots[0]["last_report"]["added"] == 7


def test_incremental_rescan(studio: Studio, lib: Path) -> None:
    scan(studio)
    first = files(studio)
    # nothing changed: stat only, nothing read
    again = scan(studio)
    assert again["report"]["unchanged"] == 7 and again["report"]["added"] == 0
    assert again["job"]["progress"]["total"] == 0  # no file needed reading

    draw_image(lib / "2025" / "new.png", seed=50)  # new
    draw_image(lib / "2023" / "img_1.png", seed=51)  # same name, new content
    bump(lib / "2023" / "img_1.png")
    bump(lib / "2023" / "img_2.png")  # touched, same bytes
    (lib / "2023" / "img_3.png").unlink()  # removed
    (lib / "2023" / "img_4.png").rename(lib / "2023" / "renamed.png")  # renamed
    out = scan(studio)
    r = out["report"]
    assert (r["added"], r["updated"], r["removed"], r["unchanged"]) == (2, 1, 2, 4), r
    assert r["touched"] == 1 and r["failed"] == []
    # new content for img_1 and new.png; img_1's old content and img_3 leave
    assert r["samples_added"] == 2 and r["samples_removed"] == 2
    now = files(studio)
    assert "2023/img_3.png" not in now and "2023/img_4.png" not in now
    assert now["2023/renamed.png"].sample_id == first["2023/img_4.png"].sample_id  # the photo kept its sample
    renamed = samples.get_sample(studio, now["2023/renamed.png"].sample_id or 0)
    assert renamed["path"] == str(lib / "2023" / "renamed.png") and renamed["name"] == "2023/renamed.png"
    assert now["2023/img_1.png"].sample_id != first["2023/img_1.png"].sample_id
    assert now["2023/img_1.png"].id == first["2023/img_1.png"].id  # same row, new content
    assert now["2023/img_2.png"].sample_id == first["2023/img_2.png"].sample_id
    assert now["2023/img_2.png"].mtime == (lib / "2023" / "img_2.png").stat().st_mtime
    with studio.sessions() as s:
        assert s.get(Sample, first["2023/img_3.png"].sample_id) is None
        assert s.get(Sample, first["2023/img_1.png"].sample_id) is None
    assert samples.list_samples(studio, project="lib")["total"] == 6
    assert len(tree(studio.home / "thumbs")) == 6  # the two released thumbnails were collected
    assert run_doctor(studio)["ok"]
    assert scan(studio)["report"]["unchanged"] == 7


def test_duplicate_leaves_keep_the_sample_until_the_last_file_goes(studio: Studio, lib: Path) -> None:
    scan(studio)
    sid = files(studio)["2023/img_0.png"].sample_id
    (lib / "2023" / "img_0.png").unlink()
    r = scan(studio)["report"]
    assert r["removed"] == 1 and r["samples_removed"] == 0
    detail = samples.get_sample(studio, sid or 0)
    assert detail["path"] == str(lib / "2024" / "copy-of-img_0.png")  # points at the file that is left
    (lib / "2024" / "copy-of-img_0.png").unlink()
    r = scan(studio)["report"]
    assert r["removed"] == 1 and r["samples_removed"] == 1
    assert run_doctor(studio)["ok"]


def test_swapped_contents_in_one_scan(studio: Studio, tmp_path: Path) -> None:
    """a.png takes new bytes while b.png (new) takes a.png's old bytes: the sample of the old
    content is dropped with a.png's change and made again for b.png, within one scan."""
    studio.settings.imports.batch_size = 1  # a.png's change is committed before b.png is written
    root = tmp_path / "swap"
    old = draw_image(root / "a.png", seed=1).read_bytes()
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(root)])
    scan(studio)
    draw_image(root / "a.png", seed=2)
    bump(root / "a.png")
    (root / "b.png").write_bytes(old)
    r = scan(studio)["report"]
    assert (r["added"], r["updated"], r["failed"]) == (1, 1, [])
    rows = files(studio)
    assert (
        rows["a.png"].sample_id
        and rows["b.png"].sample_id
        and rows["a.png"].sample_id != rows["b.png"].sample_id
    )
    assert samples.list_samples(studio, project="lib")["total"] == 2
    assert run_doctor(studio)["ok"]


def test_bad_files_are_reported_and_the_rest_proceeds(studio: Studio, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    draw_image(root / "good.png", seed=1)
    draw_image(root / "good.jpg", seed=2, fmt="JPEG")
    (root / "notes.jpg").write_text("this is not an image")
    full = draw_image(tmp_path / "full.jpg", seed=3, size=(200, 200), fmt="JPEG").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    os.symlink(tmp_path / "full.jpg", root / "outside.jpg")  # leaves the root: refused
    with open(os.path.join(os.fsencode(root), b"caf\xe9.png"), "wb") as fh:  # a Latin-1 name
        fh.write((root / "good.png").read_bytes())
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[str(root)])
    out = scan(studio)
    r = out["report"]
    assert out["job"]["status"] == "succeeded"
    assert r["added"] == 2 and r["failed_count"] == 6
    errors = {Path(f["path"]).name: f["error"] for f in r["failed"]}
    assert set(errors) == {
        "notes.jpg",
        "truncated.jpg",
        "empty.png",
        "corrupt.png",
        "outside.jpg",
        "caf\\xe9.png",
    }
    assert errors["caf\\xe9.png"] == "file name is not valid UTF-8"
    assert errors["notes.jpg"] == "not an image"
    assert "truncated" in errors["truncated.jpg"] or "corrupt" in errors["truncated.jpg"]
    assert "empty" in errors["empty.png"]
    assert "outside" in errors["outside.jpg"]
    assert samples.list_samples(studio, project="lib")["total"] == 2
    assert library.list_files(studio, project="lib", failed=True)["total"] == 4
    # unchanged bad files are not read again, but they are still reported
    again = scan(studio)
    assert again["job"]["progress"]["total"] == 0 and again["report"]["failed_count"] == 6
    # a bad file that is fixed is indexed on the next scan
    draw_image(root / "notes.jpg", seed=9, fmt="JPEG")
    bump(root / "notes.jpg")
    fixed = scan(studio)["report"]
    assert fixed["updated"] == 1 and fixed["failed_count"] == 5
    assert samples.list_samples(studio, project="lib")["total"] == 3
    assert run_doctor(studio)["ok"]


@pytest.mark.parametrize("how", ["missing", "empty mount point", "no images left"])
def test_unavailable_root_stops_the_scan_and_removes_nothing(studio: Studio, lib: Path, how: str) -> None:
    scan(studio)
    n_samples, n_files = count(studio, Sample), count(studio, LibraryFile)
    aside = lib.parent / "aside"
    shutil.move(str(lib), aside)
    if how != "missing":
        lib.mkdir()
    if how == "no images left":
        (lib / "README.txt").write_text("the drive is not mounted")
    out = scan(studio)
    assert out["job"]["status"] == "failed"  # permanent: not retried
    assert out["job"]["attempts"] == 1
    message = out["job"]["error"]["message"]
    assert str(lib) in message and "nothing was removed" in message
    assert count(studio, Sample) == n_samples and count(studio, LibraryFile) == n_files
    problem = library.list_roots(studio, project="lib")["items"][0]["problem"]
    assert problem is not None if how != "no images left" else problem is None
    # back in place: the next scan finds everything unchanged
    shutil.rmtree(lib, ignore_errors=True)
    shutil.move(str(aside), lib)
    assert scan(studio)["report"]["unchanged"] == 7


def test_new_empty_root_is_fine(studio: Studio, tmp_path: Path) -> None:
    projects.create_project(studio, name="lib", task="library")
    (tmp_path / "empty").mkdir()
    library.add_roots(studio, project="lib", paths=[str(tmp_path / "empty")])
    out = scan(studio)
    assert out["job"]["status"] == "succeeded" and out["report"]["added"] == 0


def test_scan_one_root_and_remove_a_root(studio: Studio, lib: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    draw_image(other / "x.png", seed=70)
    (other / "img_0-again.png").write_bytes((lib / "2023" / "img_0.png").read_bytes())
    library.add_roots(studio, project="lib", paths=[str(other)])
    only = scan(studio, roots=[str(other)])
    assert only["report"]["added"] == 2 and [r["path"] for r in only["report"]["roots"]] == [str(other)]
    scan(studio)
    assert samples.list_samples(studio, project="lib")["total"] == 7
    before = snapshot(lib)
    out = library.remove_root(studio, project="lib", root=str(lib))
    # img_0's content is also in the other root: that sample stays, pointing there now
    assert out["removed"]["path"] == str(lib) and out["removed"]["files"] == 7
    assert out["samples_removed"] == 5 and out["blobs_removed"] == 5
    kept = samples.list_samples(studio, project="lib")["items"]
    assert {s["name"] for s in kept} == {"x.png", "img_0-again.png"}
    assert samples.get_sample(studio, kept[0]["id"])["path"].startswith(str(other))
    assert snapshot(lib) == before
    assert run_doctor(studio)["ok"]
    with pytest.raises(NotFound):
        library.remove_root(studio, project="lib", root=str(lib))


def test_copy_imported_samples_are_not_removed_by_a_scan(studio: Studio, lib: Path, tmp_path: Path) -> None:
    imported = tmp_path / "import"
    (imported / "same.png").parent.mkdir()
    (imported / "same.png").write_bytes((lib / "2023" / "img_2.png").read_bytes())
    run_import(studio, "lib", imported)
    scan(studio)
    (lib / "2023" / "img_2.png").unlink()
    r = scan(studio)["report"]
    assert r["removed"] == 1 and r["samples_removed"] == 0  # the copy-mode sample stays
    assert samples.list_samples(studio, project="lib", q="same")["total"] == 1
    assert run_doctor(studio)["ok"]


def test_root_rules(studio: Studio, lib: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="absolute"):
        library.add_roots(studio, project="lib", paths=["relative/photos"])
    with pytest.raises(NotFound):
        library.add_roots(studio, project="lib", paths=[str(tmp_path / "missing")])
    with pytest.raises(InvalidInput, match="not a folder"):
        library.add_roots(studio, project="lib", paths=[str(lib / "notes.txt")])
    with pytest.raises(InvalidInput, match="outside"):
        library.add_roots(studio, project="lib", paths=["/usr"], allowed=[tmp_path])
    with pytest.raises(InvalidInput, match="workspace"):
        library.add_roots(studio, project="lib", paths=[str(studio.home / "thumbs")])
    with pytest.raises(Conflict, match="overlaps"):
        library.add_roots(studio, project="lib", paths=[str(lib / "2023")])
    with pytest.raises(Conflict, match="overlaps"):
        library.add_roots(studio, project="lib", paths=[str(tmp_path)])
    # all or none: one bad path and nothing is added
    (tmp_path / "fine").mkdir()
    with pytest.raises(NotFound):
        library.add_roots(studio, project="lib", paths=[str(tmp_path / "fine"), str(tmp_path / "nope")])
    assert library.list_roots(studio, project="lib")["total"] == 1
    # adding again is a no-op; a relative path with a base is resolved against it
    again = library.add_roots(studio, project="lib", paths=["photos"], base=tmp_path)
    assert again["added"] == [] and len(again["roots"]) == 1
    projects.create_project(studio, name="pets", task="classification")
    with pytest.raises(Conflict, match="library"):
        library.add_roots(studio, project="pets", paths=[str(tmp_path / "fine")])
    projects.create_project(studio, name="empty", task="library")
    with pytest.raises(InvalidInput, match="no library folders"):
        library.start_scan(studio, project="empty")
    # a second scan while one is queued reuses it; removing a root meanwhile is refused
    first = library.start_scan(studio, project="lib")
    assert library.start_scan(studio, project="lib")["id"] == first["id"]
    with pytest.raises(Conflict):
        library.remove_root(studio, project="lib", root=str(lib))


def test_deleting_the_project_drops_its_library(studio: Studio, lib: Path) -> None:
    scan(studio)
    before = snapshot(lib)
    projects.delete_project(studio, "lib")
    assert count(studio, LibraryRoot) == 0 and count(studio, LibraryFile) == 0
    assert count(studio, Artifact) == 0 and snapshot(lib) == before


def test_a_file_whose_sample_was_deleted_comes_back(studio: Studio, lib: Path) -> None:
    scan(studio)
    sid = files(studio)["2023/img_3.png"].sample_id
    with studio.sessions.begin() as s:  # a sample removed by other means than a scan
        row = s.get(Sample, sid)
        assert row is not None
        studio.store.release(s, "thumbnail", row.sha256)
        s.delete(row)
    assert files(studio)["2023/img_3.png"].sample_id is None  # ON DELETE SET NULL
    r = scan(studio)["report"]
    assert r["updated"] == 1 and r["unchanged"] == 6 and r["samples_added"] == 1
    assert files(studio)["2023/img_3.png"].sample_id is not None
    assert run_doctor(studio)["ok"]


def test_a_read_error_is_retried_and_keeps_the_sample(
    studio: Studio, lib: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that cannot be read this time (a drive unplugged mid-read, permissions) is reported,
    keeps its sample and is read again by the next scan; a decode error is remembered instead."""
    import vistudio.services.ingest as ingest_service

    scan(studio)
    before = files(studio)["2023/img_2.png"]
    draw_image(lib / "2023" / "img_2.png", seed=42)  # edited: the scan must read it again
    bump(lib / "2023" / "img_2.png")
    real = ingest_service.probe_and_store

    def flaky(path: Path, **kw: Any) -> dict[str, Any]:
        if path.name == "img_2.png":
            return {"status": "error", "reason": "cannot read file: Input/output error", "transient": True}
        return real(path, **kw)

    monkeypatch.setattr(ingest_service, "probe_and_store", flaky)
    r = scan(studio)["report"]
    assert r["failed_count"] == 1 and "Input/output" in r["failed"][0]["error"]
    after = files(studio)["2023/img_2.png"]
    assert (after.sample_id, after.sha256, after.mtime, after.error) == (
        before.sample_id,
        before.sha256,
        before.mtime,
        None,
    )
    monkeypatch.setattr(ingest_service, "probe_and_store", real)
    r = scan(studio)["report"]
    assert r["updated"] == 1 and r["failed_count"] == 0 and r["samples_added"] == 1
    assert run_doctor(studio)["ok"]


def test_a_photo_edited_in_place_keeps_its_tags_and_labels(studio: Studio, lib: Path) -> None:
    from vistudio.db import Annotation, LabelClass, SampleTag

    scan(studio)
    old = files(studio)["2024/trip/beach.jpg"].sample_id
    with studio.sessions.begin() as s:
        cls = LabelClass(project_id=s.get_one(Sample, old).project_id, name="holiday")
        s.add(cls)
        s.flush()
        s.add_all(
            [
                SampleTag(sample_id=old, tag="favourite"),
                Annotation(sample_id=old, kind="label", class_id=cls.id),
            ]
        )
    draw_image(lib / "2024" / "trip" / "beach.jpg", seed=77, fmt="JPEG")  # a rating written into it
    bump(lib / "2024" / "trip" / "beach.jpg")
    r = scan(studio)["report"]
    assert r["updated"] == 1 and r["samples_added"] == 1 and r["samples_removed"] == 1
    new = files(studio)["2024/trip/beach.jpg"].sample_id
    assert new != old
    got = samples.get_sample(studio, new)
    assert got["tags"] == ["favourite"] and got["labels"] == ["holiday"]
    assert run_doctor(studio)["ok"]


@pytest.mark.slow
def test_a_file_that_kills_its_worker_is_reported_and_the_scan_goes_on(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vistudio.services.ingest as ingest_service
    from factories import probe_or_crash
    from vistudio.studio import open_studio

    root = tmp_path / "many"
    for i in range(40):  # enough for the process pool
        draw_image(root / f"img_{i:02}.png", seed=100 + i, size=(24, 24))
    (root / "crash-me.png").write_bytes((root / "img_00.png").read_bytes())
    monkeypatch.setattr(ingest_service, "probe_task", probe_or_crash)
    studio = open_studio(
        settings.model_copy(update={"imports": settings.imports.model_copy(update={"workers": 2})})
    )
    try:
        projects.create_project(studio, name="lib", task="library")
        library.add_roots(studio, project="lib", paths=[str(root)])
        out = scan(studio)
        r = out["report"]
        assert out["job"]["status"] == "succeeded" and out["job"]["attempts"] == 1
        assert r["added"] == 40 and r["failed_count"] == 1
        assert r["failed"][0]["path"].endswith("crash-me.png") and "crashed" in r["failed"][0]["error"]
        # read again by the next scan (running out of memory is as likely as a bad file); one file
        # is read in this process, where nothing kills it
        again = scan(studio)["report"]
        assert again["unchanged"] == 40 and again["added"] == 1 and again["failed_count"] == 0
    finally:
        studio.close()


@pytest.mark.slow
def test_pool_workers_know_hashes_by_prefix_and_a_false_match_is_probed_again(
    settings: Any, tmp_path: Path
) -> None:
    from vistudio.ingest.pool import HashPrefixes
    from vistudio.ingest.types import SourceItem
    from vistudio.services.ingest import probe_items
    from vistudio.storage.blobs import sha256_file
    from vistudio.studio import open_studio

    paths = [draw_image(tmp_path / "src" / f"i{i:02}.png", seed=300 + i, size=(20, 20)) for i in range(40)]
    real = [sha256_file(p) for p in paths]
    twin = real[5][:16] + ("0" if real[5][16] != "0" else "1") + real[5][17:]  # same first 8 bytes
    prefixes = HashPrefixes([real[0], twin])
    assert real[0] in prefixes and real[5] in prefixes and real[6] not in prefixes and "zz" not in prefixes
    studio = open_studio(
        settings.model_copy(update={"imports": settings.imports.model_copy(update={"workers": 2})})
    )
    try:
        items = [SourceItem(path=p, name=p.name) for p in paths]
        results = {
            it.name: res
            for it, res in probe_items(
                items, mode="reference", studio=studio, known=frozenset({real[0], twin})
            )
        }
    finally:
        studio.close()
    assert results["i00.png"]["status"] == "known"  # the project has it
    assert results["i05.png"]["status"] == "ok"  # only its prefix matched: probed, not skipped
    assert sum(r["status"] == "ok" for r in results.values()) == 39
