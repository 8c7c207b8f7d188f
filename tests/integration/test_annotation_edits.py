"""Saving an image's objects from the annotation editor: one undoable change, stale saves refused,
geometry checked, and dataset versions that keep the objects they had."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from detection_factories import write_coco
from factories import make_class_folders, run_import
from vistudio.api.app import create_app
from vistudio.db import Split
from vistudio.errors import Conflict, InvalidInput, NotFound
from vistudio.services import annotations, edits, projects, samples, splits, versions
from vistudio.services.experiments.lookup import split_items
from vistudio.studio import Studio


@pytest.fixture
def seg(studio: Studio, tmp_path: Path) -> list[int]:
    """An instance segmentation project ``seg`` of 6 shape images (polygons and boxes)."""
    projects.create_project(studio, name="seg", task="instance_segmentation")
    assert run_import(studio, "seg", write_coco(tmp_path / "coco", 6, size=96, seed=3), fmt="coco")[
        "status"
    ] == ("succeeded")
    return [i["id"] for i in samples.list_samples(studio, project="seg", limit=100)["items"]]


def objects_of(studio: Studio, sid: int) -> tuple[list[dict[str, Any]], str]:
    d = samples.get_sample(studio, sid)
    kinds = annotations.editable_kinds("instance_segmentation")
    truth = [a for a in d["annotations"] if a["kind"] in kinds and a["score"] is None]
    return annotations.canonical(truth), d["objects_revision"]


def test_save_undo_redo_and_stale_saves(studio: Studio, seg: list[int]) -> None:
    sid = seg[0]
    loaded, rev = objects_of(studio, sid)
    assert loaded and rev == annotations.revision(loaded)
    # move the first polygon right by 0.01, drop the last object, add a box of a new class
    moved = [dict(o) for o in loaded]
    poly = next(o for o in moved if o["kind"] == "polygon")
    poly["geometry"] = {
        "polygons": [[[min(1.0, x + 0.01), y] for x, y in r] for r in poly["geometry"]["polygons"]]
    }
    new = [
        *moved[:-1],
        {"kind": "box", "class": "sticker", "geometry": {"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.1}},
    ]
    with pytest.raises(InvalidInput, match="no class 'sticker'"):
        annotations.set_objects(studio, sid, new, expected_revision=rev)
    saved = annotations.set_objects(studio, sid, new, expected_revision=rev, create_classes=True)
    assert saved["change_id"] and saved["created_classes"] == ["sticker"]
    now, rev2 = objects_of(studio, sid)
    assert now == annotations.canonical(new) and rev2 == saved["revision"] != rev
    # a second client still holding the first revision is refused with the current objects
    with pytest.raises(Conflict) as stale:
        annotations.set_objects(studio, sid, loaded, expected_revision=rev)
    assert stale.value.details["revision"] == rev2 and stale.value.details["current"] == now
    # the same list again changes nothing and records nothing
    assert annotations.set_objects(studio, sid, new, expected_revision=rev2)["change_id"] is None
    # undo, redo; the history shows the objects before and after
    edits.undo(studio, project="seg")
    assert objects_of(studio, sid) == (loaded, rev)
    edits.redo(studio, project="seg")
    assert objects_of(studio, sid)[0] == now
    h = edits.history(studio, project="seg", sample_id=sid)["items"]
    assert (
        [c["kind"] for c in h] == ["annotations"] * 3 and h[-1]["before"] == loaded and h[-1]["after"] == now
    )
    # an undo refused once another save touched the image after the change
    annotations.set_objects(studio, sid, [], expected_revision=rev2)
    with pytest.raises(Conflict, match="changed since"):
        edits.undo(studio, project="seg", change_id=saved["change_id"])


def test_bad_geometry_is_refused_and_changes_nothing(studio: Studio, seg: list[int], tmp_path: Path) -> None:
    sid = seg[1]
    before = objects_of(studio, sid)

    def box(**g: Any) -> list[dict[str, Any]]:
        return [{"kind": "box", "class": "ellipse", "geometry": {"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2, **g}}]

    ring = [
        [0.5 + 0.4 * math.cos(2 * math.pi * i / 10_000), 0.5 + 0.4 * math.sin(2 * math.pi * i / 10_000)]
        for i in range(10_000)
    ]
    cases: list[tuple[list[Any], str]] = [
        (box(x=0.9), "outside the image"),
        (box(x=-0.5), "outside the image"),
        (box(w=0), "positive width"),
        (box(h=math.nan), "finite numbers"),
        (box(x="0.1"), "finite number"),
        (
            [
                {
                    "kind": "polygon",
                    "class": "ellipse",
                    "geometry": {"polygons": [[[0, 0], [1, 1], [1, 0], [0, 1]]]},
                }
            ],
            "self-intersecting",
        ),
        (
            [{"kind": "polygon", "class": "ellipse", "geometry": {"polygons": [[[0, 0], [1, 1]]]}}],
            "3 to 10,000 points",
        ),
        (
            [{"kind": "polygon", "class": "ellipse", "geometry": {"polygons": [[*ring, [0.5, 0.5]]]}}],
            "not 10,001",
        ),
        ([{"kind": "label", "class": "ellipse", "geometry": None}], "kind must be"),
        (
            [{"kind": "mask_rle", "class": "ellipse", "geometry": {"size": [10, 10], "counts": [100]}}],
            "image's size",
        ),
        ([{"kind": "box", "class": "", "geometry": {}}], "class name"),
        (["not an object"], "kind must be"),
    ]
    for objects, message in cases:
        with pytest.raises(InvalidInput, match=message):
            annotations.set_objects(studio, sid, objects, expected_revision=None)
    assert objects_of(studio, sid) == before
    # a 10,000-point ring is fine
    big = [{"kind": "polygon", "class": "ellipse", "geometry": {"polygons": [ring]}}]
    assert annotations.set_objects(studio, sid, big, expected_revision=before[1])["change_id"]
    with pytest.raises(NotFound):
        annotations.set_objects(studio, 10**9, [], expected_revision=None)
    projects.create_project(studio, name="pets", task="classification")
    run_import(studio, "pets", make_class_folders(tmp_path / "pets", {"cat": 1}))
    cat = samples.list_samples(studio, project="pets")["items"][0]["id"]
    with pytest.raises(InvalidInput, match="no objects to draw"):
        annotations.set_objects(studio, cat, [], expected_revision=None)


def test_api_and_versions_keep_their_objects(studio: Studio, seg: list[int]) -> None:
    split = splits.create_split(studio, project="seg", name="s", ratios=(0.5, 0.5, 0.0))
    version = versions.create_version(studio, project="seg", name="before")
    sid = seg[2]
    loaded, rev = objects_of(studio, sid)
    with TestClient(create_app(studio)) as client:
        r = client.put(f"/api/v1/samples/{sid}/annotations", json={"objects": [], "revision": rev})
        assert r.status_code == 200 and r.json()["changed"] == 1
        r = client.put(f"/api/v1/samples/{sid}/annotations", json={"objects": loaded, "revision": rev})
        assert r.status_code == 409 and r.json()["error"]["details"]["current"] == []
        assert client.put(f"/api/v1/samples/{sid}/annotations", json={"objects": "x"}).status_code == 422
        assert client.put("/api/v1/samples/0/annotations", json={"objects": []}).status_code == 422
        assert (
            client.put(f"/api/v1/samples/{sid}/annotations", json={"objects": [], "extra": 1}).status_code
            == 422
        )
    # the split now has no objects for that image; at the version's watermark it has them all
    with studio.sessions() as s:
        classes = sorted(samples.class_counts(studio, project="seg"))
        args = (studio, s, split["id"], ["train", "val"], classes)
        now = {i.sample_id: i.target["objects"] for i in split_items(*args, task="instance_segmentation")}
        then = {
            i.sample_id: i.target["objects"]
            for i in split_items(*args, task="instance_segmentation", as_of=version["watermark"])
        }
        assert s.get(Split, split["id"]) is not None
    assert now[sid] == [] and len(then[sid]) == sum(o["kind"] != "box" for o in loaded) > 0
    assert all(now[i] == then[i] for i in now if i != sid)
