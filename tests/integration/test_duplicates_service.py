"""Duplicate review through the service: the three levels, the keeper rule, decisions and their
undo, originals untouched, blob references consistent, and hostile input."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from sqlalchemy import delete, select

from factories import run_import
from vistudio.db import Artifact, Sample
from vistudio.db.duplicates import DuplicateDecision, DuplicateGroupCache, DuplicateHash, HiddenSample
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.jobs.worker import Worker
from vistudio.services import duplicates, library, projects, samples, splits
from vistudio.services.doctor import run_doctor
from vistudio.studio import Studio

T = Image.Transpose


def _photo(name: str, side: int) -> Image.Image:
    a = getattr(skdata, name)()
    im = Image.fromarray(a).convert("RGB")
    im.thumbnail((side, side))
    return im


def _save(im: Image.Image, path: Path, *, date: str | None = None, **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if date:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = date
        kw["exif"] = exif.tobytes()
    im.save(path, **kw)
    return path


def make_photos(root: Path) -> Path:
    """people/: an astronaut, turned and shrunk; food/: a coffee mirrored, both dated; misc/: unrelated."""
    astro = _photo("astronaut", 240)
    _save(astro, root / "people" / "astronaut.png")
    _save(astro.resize((200, 200)).transpose(T.ROTATE_90), root / "people" / "astronaut-rot90.png")
    _save(astro.resize((120, 120)), root / "people" / "astronaut-small.jpg", quality=60)
    coffee = _photo("coffee", 300)
    _save(coffee, root / "food" / "coffee.jpg", date="2024:05:01 10:00:00", quality=92)
    _save(
        coffee.transpose(T.FLIP_LEFT_RIGHT),
        root / "food" / "coffee-mirror.jpg",
        date="2020:01:01 08:00:00",
        quality=92,
    )
    _save(_photo("camera", 200), root / "misc" / "camera.png")
    _save(_photo("rocket", 200), root / "misc" / "rocket.png")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def ids_by_name(studio: Studio, project: str) -> dict[str, int]:
    items = samples.list_samples(studio, project=project, limit=500, include_hidden=True)["items"]
    return {Path(s["name"]).name: s["id"] for s in items}


@pytest.fixture
def photos(studio: Studio, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    src = make_photos(tmp_path / "src")
    projects.create_project(studio, name="photos", task="classification")
    job = run_import(studio, "photos", src, fmt="folder")
    assert job["status"] == "succeeded", job["error"]
    return src, ids_by_name(studio, "photos")


def _perceptual(studio: Studio, **kw: Any) -> dict[str, Any]:
    return duplicates.list_groups(studio, project="photos", level="perceptual", **kw)


def test_perceptual_groups_turned_mirrored_and_shrunk_copies(studio: Studio, photos: Any) -> None:
    _, ids = photos
    out = _perceptual(studio)
    assert out["level"] == "perceptual" and out["threshold"] == 6
    assert out["hashing"]["pending"] == 0  # hashed in the request: few samples
    groups = {frozenset(s["id"] for s in g["samples"]): g for g in out["items"]}
    astro = frozenset(ids[n] for n in ("astronaut.png", "astronaut-rot90.png", "astronaut-small.jpg"))
    coffee = frozenset(ids[n] for n in ("coffee.jpg", "coffee-mirror.jpg"))
    assert set(groups) == {astro, coffee}
    assert out["total"] == 2 and out["counts"] == {"groups": 2, "open": 2, "reviewed": 0, "duplicates": 3}
    # keeper: the largest resolution; then the earliest date (the mirrored coffee was taken first)
    assert groups[astro]["keeper"] == ids["astronaut.png"]
    assert groups[coffee]["keeper"] == ids["coffee-mirror.jpg"]
    g = groups[astro]
    assert g["id"].startswith("p-") and g["samples"][0]["keeper"] and g["samples"][0]["id"] == g["keeper"]
    assert g["size"] == 3 and 0 <= g["distance"] <= 6
    assert {"width", "height", "bytes", "taken_at", "path", "thumbnail_url", "distance", "hidden"} <= set(
        g["samples"][0]
    )
    # every sample now has its eight exact variant hashes
    with studio.sessions() as s:
        rows = list(s.scalars(select(DuplicateHash)))
    assert len(rows) == 7 and all(r.exact and len(r.variants) == 64 for r in rows)
    # the groups are kept for the next request, while the samples and their hashes are unchanged
    with studio.sessions() as s:
        cached = list(s.scalars(select(DuplicateGroupCache)))
    assert [(c.level, c.threshold, len(c.groups)) for c in cached] == [("perceptual", "6", 2)]
    assert _perceptual(studio)["items"] == out["items"]
    # a strict threshold keeps only near-identical pairs; 0 bits still groups identical hashes
    assert _perceptual(studio, threshold=0)["total"] <= 2
    # pagination
    page = _perceptual(studio, limit=1, offset=1)
    assert page["total"] == 2 and len(page["items"]) == 1 and page["items"][0]["id"] == out["items"][1]["id"]


def _digit(path: Path, k: int) -> Path:
    """Digit ``k`` of scikit-learn's digits drawn as the demo draws it (32×32 grey PNG)."""
    from sklearn.datasets import load_digits

    arr = (255 - load_digits().images[k] * (255 / 16)).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L").resize((32, 32), Image.Resampling.NEAREST).save(path)
    return path


def test_groups_do_not_chain_and_the_import_counts_the_page_groups(studio: Studio, tmp_path: Path) -> None:
    # digits 67, 212 and 282 are distinct pictures: 67–212 and 212–282 are 4 bits apart, 67–282
    # 8. Single linkage made one group of all three; the third must stay out at 4 or 6 bits.
    src = tmp_path / "digits"
    for name, k in (("a", 67), ("b", 212), ("c", 282), ("d", 0), ("e", 1)):
        _digit(src / f"{name}.png", k)
    projects.create_project(studio, name="digits", task="library")
    report = run_import(studio, "digits", src)["result"]["report"]
    ids = ids_by_name(studio, "digits")
    a, b, c = ids["a.png"], ids["b.png"], ids["c.png"]
    page = duplicates.list_groups(studio, project="digits")
    # the import report and the page count the same groups
    assert report["near_duplicate_groups"] == page["counts"]["groups"] == page["total"] == 1
    (g,) = page["items"]
    assert g["keeper"] == a and {s["id"] for s in g["samples"]} == {a, b}
    assert g["distance"] == 4 and all(s["distance"] <= 6 for s in g["samples"])
    at4 = duplicates.list_groups(studio, project="digits", threshold=4)["items"]
    assert [{s["id"] for s in x["samples"]} for x in at4] == [{a, b}]
    at8 = duplicates.list_groups(studio, project="digits", threshold=8)["items"]
    assert [{s["id"]: s["distance"] for s in x["samples"]} for x in at8] == [{a: 0, b: 4, c: 8}]
    # samples are marked with their group's keeper, for browsing side by side
    marked = samples.list_samples(studio, project="digits", duplicates_only=True)["items"]
    assert {s["id"]: s["dup_group"] for s in marked} == {a: a, b: a}


def test_keep_hide_remove_and_undo(studio: Studio, photos: Any, tmp_path: Path) -> None:
    src, ids = photos
    before = tree_digest(src)
    groups = {g["keeper"]: g for g in _perceptual(studio)["items"]}
    astro = groups[ids["astronaut.png"]]
    coffee = groups[ids["coffee-mirror.jpg"]]

    # keep: reviewed, nothing else changes
    kept = duplicates.decide(studio, project="photos", group=coffee["id"], action="keep")
    assert kept["decision"]["action"] == "keep" and kept["decision"]["affected"] == []
    listed = _perceptual(studio, status="reviewed")
    assert [g["id"] for g in listed["items"]] == [coffee["id"]]
    assert listed["items"][0]["decision"]["action"] == "keep"
    assert [g["id"] for g in _perceptual(studio, status="open")["items"]] == [astro["id"]]
    with pytest.raises(Conflict):  # decided already
        duplicates.decide(studio, project="photos", group=coffee["id"], action="hide")
    duplicates.undo(studio, project="photos", decision=kept["decision"]["id"])
    assert _perceptual(studio, status="reviewed")["total"] == 0

    # hide others: gone from browsing, back after undo
    hidden = duplicates.decide(studio, project="photos", group=astro["id"], action="hide")
    others = {ids["astronaut-rot90.png"], ids["astronaut-small.jpg"]}
    assert set(hidden["decision"]["affected"]) == others
    assert {s["id"] for s in hidden["group"]["samples"] if s["hidden"]} == others
    browsed = {s["id"] for s in samples.list_samples(studio, project="photos")["items"]}
    assert not browsed & others and ids["astronaut.png"] in browsed
    assert samples.list_samples(studio, project="photos")["total"] == 5
    assert samples.list_samples(studio, project="photos", label="people")["total"] == 1
    duplicates.undo(studio, project="photos", decision=hidden["decision"]["id"])
    assert samples.list_samples(studio, project="photos")["total"] == 7

    # remove others, with a chosen keeper: the samples leave, their blobs are released
    keeper = ids["astronaut-rot90.png"]
    removed = duplicates.decide(studio, project="photos", group=astro["id"], action="remove", keeper=keeper)
    gone = {ids["astronaut.png"], ids["astronaut-small.jpg"]}
    assert set(removed["decision"]["affected"]) == gone and removed["decision"]["keeper"] == keeper
    left = ids_by_name(studio, "photos")
    assert "astronaut.png" not in left and "astronaut-rot90.png" in left and len(left) == 5
    with studio.sessions() as s:
        shas = {r.id: r.sha256 for r in s.scalars(select(Sample))}
        zero = {a.sha256 for a in s.scalars(select(Artifact).where(Artifact.ref_count == 0))}
    assert len(zero) == 2 and not zero & set(shas.values())  # released, kept until collected
    report = run_doctor(studio)
    assert report["ok"], report["problems"]
    assert tree_digest(src) == before  # the user's files are never touched
    assert _perceptual(studio)["total"] == 1  # the astronaut group is no more

    # undo: the samples come back with their labels, references and the same ids
    back = duplicates.undo(studio, project="photos", decision=removed["decision"]["id"])
    assert sorted(back["restored"]) == sorted(gone) and back["not_restored"] == []
    assert ids_by_name(studio, "photos") == ids
    assert samples.get_sample(studio, ids["astronaut.png"])["labels"] == ["people"]
    report = run_doctor(studio)
    assert report["ok"], report["problems"]
    assert _perceptual(studio)["total"] == 2 and tree_digest(src) == before


def test_a_removal_in_a_library_holds_across_rescans_until_undone(studio: Studio, tmp_path: Path) -> None:
    src = make_photos(tmp_path / "lib")
    before = tree_digest(src)
    projects.create_project(studio, name="shots", task="library")
    library.add_roots(studio, project="shots", paths=[src])

    def scan() -> dict[str, Any]:
        job = library.start_scan(studio, project="shots")
        done = Worker(studio).run_one(job_id=job["id"])
        assert done is not None and done.status == "succeeded"
        return dict(studio.queue.get(job["id"]).result["report"])

    assert scan()["added"] == 7
    ids = ids_by_name(studio, "shots")
    astro = next(
        g
        for g in duplicates.list_groups(studio, project="shots", level="perceptual")["items"]
        if g["keeper"] == ids["astronaut.png"]
    )
    removed = duplicates.decide(studio, project="shots", group=astro["id"], action="remove")
    assert len(removed["decision"]["affected"]) == 2
    again = scan()  # the files are still in the folder: the user's decision holds
    assert again["excluded"] == 2 and again["added"] == 0 and again["unchanged"] == 5
    assert len(ids_by_name(studio, "shots")) == 5
    with studio.sessions.begin() as s:  # their thumbnails are collected meanwhile
        assert studio.store.gc(s) == 2
    back = duplicates.undo(studio, project="shots", decision=removed["decision"]["id"])
    assert back["not_restored"] == [] and ids_by_name(studio, "shots") == ids  # drawn again from the files
    assert run_doctor(studio)["ok"]
    after = scan()
    assert after["excluded"] == 0 and after["unchanged"] == 7 and after["added"] == 0
    assert tree_digest(src) == before


def test_a_library_photo_that_cannot_be_restored_is_scanned_again(studio: Studio, tmp_path: Path) -> None:
    src = make_photos(tmp_path / "lib")
    projects.create_project(studio, name="shots", task="library")
    library.add_roots(studio, project="shots", paths=[src])
    job = library.start_scan(studio, project="shots")
    Worker(studio).run_one(job_id=job["id"])
    ids = ids_by_name(studio, "shots")
    group = next(
        g
        for g in duplicates.list_groups(studio, project="shots", level="perceptual")["items"]
        if g["keeper"] == ids["coffee-mirror.jpg"]
    )
    removed = duplicates.decide(studio, project="shots", group=group["id"], action="remove")
    with studio.sessions.begin() as s:
        studio.store.gc(s)
    _save(_photo("camera", 300), src / "food" / "coffee.jpg")  # edited since: another image now
    back = duplicates.undo(studio, project="shots", decision=removed["decision"]["id"])
    assert back["restored"] == [] and [x["id"] for x in back["not_restored"]] == [ids["coffee.jpg"]]
    job = library.start_scan(studio, project="shots")
    Worker(studio).run_one(job_id=job["id"])
    report = studio.queue.get(job["id"]).result["report"]
    assert report["excluded"] == 0 and report["samples_added"] == 1  # the file is the library's again
    assert "coffee.jpg" in ids_by_name(studio, "shots")


def test_removed_samples_cannot_come_back_once_collected(studio: Studio, photos: Any) -> None:
    _, ids = photos
    group = next(g for g in _perceptual(studio)["items"] if g["keeper"] == ids["coffee-mirror.jpg"])
    removed = duplicates.decide(studio, project="photos", group=group["id"], action="remove")
    run_doctor(studio, fix=True)  # garbage collection: the released copies go
    assert run_doctor(studio)["ok"]
    with pytest.raises(Conflict, match="cannot be undone"):
        duplicates.undo(studio, project="photos", decision=removed["decision"]["id"])
    assert "coffee.jpg" not in ids_by_name(studio, "photos")


def test_remove_refuses_samples_of_a_saved_split(studio: Studio, photos: Any) -> None:
    splits.create_split(studio, project="photos", name="s1", ratios="0.5,0.5", seed=1)
    group = _perceptual(studio)["items"][0]
    with pytest.raises(Conflict, match="saved split"):
        duplicates.decide(studio, project="photos", group=group["id"], action="remove")
    assert _perceptual(studio, status="reviewed")["total"] == 0  # nothing was recorded
    assert duplicates.decide(studio, project="photos", group=group["id"], action="hide")["decision"]


def test_hostile_input(studio: Studio, photos: Any) -> None:
    group = _perceptual(studio)["items"][0]
    projects.create_project(studio, name="other", task="classification")
    with pytest.raises(NotFound):
        duplicates.decide(studio, project="photos", group="p-000000000000", action="keep")
    with pytest.raises(NotFound):  # a group of another project
        duplicates.decide(studio, project="other", group=group["id"], action="keep")
    with pytest.raises(NotFound):
        duplicates.decide(studio, project="photos", group="../../etc/passwd", action="keep")
    with pytest.raises(NotFound):
        duplicates.decide(studio, project="nope", group=group["id"], action="keep")
    with pytest.raises(InvalidInput):
        duplicates.decide(studio, project="photos", group=group["id"], action="delete-everything")
    with pytest.raises(InvalidInput):
        duplicates.decide(studio, project="photos", group=group["id"], action="keep", level="semantic")
    with pytest.raises(InvalidInput):  # a keeper from outside the group
        duplicates.decide(studio, project="photos", group=group["id"], action="hide", keeper=10**9)
    with pytest.raises(InvalidInput):
        duplicates.decide(studio, project="photos", group=group["id"], action="keep", threshold=99)
    for bad in ("fuzzy", "", "EXACT"):
        with pytest.raises(InvalidInput):
            duplicates.list_groups(studio, project="photos", level=bad)
    for level, threshold in (
        ("perceptual", -1),
        ("perceptual", 17),
        ("perceptual", 2.5),
        ("perceptual", float("nan")),
        ("semantic", 0.5),
        ("semantic", 1.01),
        ("semantic", float("inf")),
        ("exact", 3),
    ):
        with pytest.raises(InvalidInput):
            duplicates.list_groups(studio, project="photos", level=level, threshold=threshold)
    with pytest.raises(InvalidInput):
        duplicates.list_groups(studio, project="photos", status="maybe")
    with pytest.raises(InvalidInput):
        duplicates.list_groups(studio, project="photos", limit=0)
    with pytest.raises(NotFound):
        duplicates.undo(studio, project="photos", decision=10**9)
    decided = duplicates.decide(studio, project="photos", group=group["id"], action="keep")
    with pytest.raises(NotFound):  # a decision of another project
        duplicates.undo(studio, project="other", decision=decided["decision"]["id"])
    assert duplicates.list_decisions(studio, project="photos")["total"] == 1


def test_hashing_job_for_large_backlogs(studio: Studio, photos: Any) -> None:
    # an import hashes its photos' turns and mirrors itself; samples from before that have none
    with studio.sessions.begin() as s:
        s.execute(delete(DuplicateHash))
    out = _perceptual(studio, hash_inline=0)
    job = out["hashing"]["job"]
    assert out["hashing"]["pending"] == 7 and job["kind"] == "duplicate_hashes"
    assert out["total"] == 2  # predicted variants meanwhile
    assert duplicates.start_hashing(studio, project="photos")["id"] == job["id"]  # one at a time
    done = Worker(studio).run_one(job_id=job["id"])
    assert done is not None and done.status == "succeeded" and done.result == {"hashed": 7}
    again = _perceptual(studio, hash_inline=0)
    assert again["hashing"] == {"pending": 0, "job": None} and again["total"] == 2


def test_semantic_level(studio: Studio, photos: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ids = photos
    empty = duplicates.list_groups(studio, project="photos", level="semantic")
    assert empty["available"] is False and "vistudio embed photos" in empty["message"]
    assert empty["items"] == [] and empty["threshold"] == 0.95

    from vistudio.services import embeddings

    order = sorted(ids.values())
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(order), 32)).astype(np.float32)
    near = [order.index(ids["camera.png"]), order.index(ids["rocket.png"])]
    vectors[near[1]] = vectors[near[0]] + 0.05 * rng.standard_normal(32).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def fake(studio_: Studio, project_id: int) -> Any:
        return np.asarray(order, dtype=np.int64), vectors, {"name": "test-model", "dim": 32}

    monkeypatch.setattr(embeddings, "project_vectors", fake, raising=False)
    out = duplicates.list_groups(studio, project="photos", level="semantic")
    assert out["available"] is True and out["model"]["name"] == "test-model"
    assert [{s["id"] for s in g["samples"]} for g in out["items"]] == [{ids["camera.png"], ids["rocket.png"]}]
    g = out["items"][0]
    assert g["id"].startswith("s-") and 0 < g["distance"] < 0.05
    assert duplicates.list_groups(studio, project="photos", level="semantic", threshold=1.0)["total"] == 0
    # other embeddings: computed again, not taken from the cache
    saved = vectors.copy()
    vectors[:] = rng.standard_normal(vectors.shape).astype(np.float32)
    assert duplicates.list_groups(studio, project="photos", level="semantic")["total"] == 0
    vectors[:] = saved
    hidden = duplicates.decide(studio, project="photos", group=g["id"], action="hide")
    assert len(hidden["decision"]["affected"]) == 1


def test_exact_level_without_and_with_library_files(studio: Studio, tmp_path: Path) -> None:
    # a project imported from a folder with a byte-identical copy: one sample, the copy skipped
    src = tmp_path / "imp"
    _save(_photo("chelsea", 120), src / "cat.png")
    (src / "cat-copy.png").write_bytes((src / "cat.png").read_bytes())
    projects.create_project(studio, name="plain", task="classification")
    run_import(studio, "plain", src, fmt="folder")
    out = duplicates.list_groups(studio, project="plain", level="exact")
    assert out["items"] == [] and out["threshold"] is None
    assert out["import_duplicates"]["count"] == 1
    assert out["import_duplicates"]["items"][0]["path"] in ("cat.png", "cat-copy.png")

    # a library: three paths with the same bytes are one sample and one exact group of files
    lib = tmp_path / "lib"
    _save(_photo("chelsea", 120), lib / "2020" / "cat.png")
    for rel in ("2021/cat (copy).png", "backup/cat.png"):
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_bytes((lib / "2020" / "cat.png").read_bytes())
    _save(_photo("coins", 120), lib / "2020" / "coins.png")
    before = tree_digest(lib)
    projects.create_project(studio, name="lib", task="library")
    library.add_roots(studio, project="lib", paths=[lib])
    job = library.start_scan(studio, project="lib")
    assert Worker(studio).run_one(job_id=job["id"]).status == "succeeded"  # type: ignore[union-attr]
    out = duplicates.list_groups(studio, project="lib", level="exact")
    assert out["total"] == 1
    g = out["items"][0]
    assert g["id"].startswith("e-") and g["size"] == 3 and g["distance"] == 0
    paths = [s["path"] for s in g["samples"]]
    assert sorted(paths) == sorted(
        str(lib.resolve() / r) for r in ("2020/cat.png", "2021/cat (copy).png", "backup/cat.png")
    )
    assert len({s["id"] for s in g["samples"]}) == 1 and sum(s["keeper"] for s in g["samples"]) == 1
    assert g["samples"][0]["file_id"] == g["keeper_file"]
    for action in ("hide", "remove"):
        with pytest.raises(InvalidInput, match="never deletes"):
            duplicates.decide(studio, project="lib", group=g["id"], action=action)
    kept = duplicates.decide(studio, project="lib", group=g["id"], action="keep")
    assert kept["decision"]["level"] == "exact" and kept["group"]["decision"]["action"] == "keep"
    assert duplicates.list_groups(studio, project="lib", level="exact", status="open")["total"] == 0
    assert tree_digest(lib) == before


def test_semantic_level_with_real_embeddings(settings: Any, tmp_path: Path) -> None:
    """Wired to ``services.embeddings.project_vectors`` (a tiny untrained CLIP: the wiring, not
    the quality, is under test here)."""
    import torch

    from embed_factories import run_embedding, with_embed
    from vistudio.ml.embed.dedup import similarity_groups
    from vistudio.services import embeddings
    from vistudio.studio import open_studio

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    studio = open_studio(with_embed(settings))
    try:
        projects.create_project(studio, name="photos", task="classification")
        run_import(studio, "photos", make_photos(tmp_path / "src"), fmt="folder")
        assert duplicates.list_groups(studio, project="photos", level="semantic")["available"] is False
        assert run_embedding(studio, "photos")["status"] == "succeeded"
        out = duplicates.list_groups(studio, project="photos", level="semantic", threshold=0.9, limit=None)
        assert out["available"] is True and out["model"]["name"] == "vistudio-test-tiny"
        found = embeddings.project_vectors(studio, 1)
        assert found is not None
        ids, vectors, _ = found
        expected = {frozenset(int(ids[i]) for i in g) for g in similarity_groups(vectors, threshold=0.9)}
        assert {frozenset(s["id"] for s in g["samples"]) for g in out["items"]} == expected
    finally:
        studio.close()
        torch.set_num_threads(threads)


def test_deleting_the_project_takes_its_decisions_along(studio: Studio, photos: Any) -> None:
    src, _ = photos
    before = tree_digest(src)
    groups = _perceptual(studio)["items"]
    duplicates.decide(studio, project="photos", group=groups[0]["id"], action="hide")
    duplicates.decide(studio, project="photos", group=groups[1]["id"], action="remove")
    projects.delete_project(studio, "photos")
    with studio.sessions() as s:
        for model in (DuplicateHash, DuplicateGroupCache, DuplicateDecision, HiddenSample, Artifact):
            assert list(s.scalars(select(model))) == [], model
    report = run_doctor(studio)
    assert report["ok"], report["problems"]
    assert tree_digest(src) == before
