from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image
from sqlalchemy import select

from factories import draw_image, tree
from vistudio.db import Artifact
from vistudio.errors import InvalidInput, NotFound
from vistudio.jobs.worker import Worker
from vistudio.services import runs
from vistudio.studio import Studio

BASE: dict[str, Any] = {
    "name": "shapes",
    "version": "1",
    "stages": [
        {"name": "load"},
        {"name": "small", "uses": "resize", "params": {"max_side": 16}},
        {"name": "grey", "uses": "grayscale"},
    ],
}


def spec(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def run(studio: Studio, pipeline: dict[str, Any], **kw: Any) -> dict[str, Any]:
    job = runs.start_run(studio, pipeline=pipeline, **kw)
    Worker(studio).run_one(job_id=job["id"])
    final = studio.queue.get(job["id"])
    assert final.status == "succeeded", final.error
    assert final.result is not None
    return dict(final.result["run"])


@pytest.fixture
def images(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    for i in range(6):
        draw_image(src / f"im{i}.png", seed=i, size=(40, 30))
    return src


def outside_workspace_dirs(studio: Studio) -> set[str]:
    return {p.split("/")[0] for p in tree(studio.home)} - {
        "vistudio.db",
        "vistudio.db-wal",
        "vistudio.db-shm",
    }


def test_sample_mode_layout(studio: Studio, images: Path) -> None:
    r = run(studio, spec(output_mode="sample", save_outputs={"max_samples": 2}), input_dir=images)
    files = tree(studio.home / "runs" / r["id"])
    assert {"audit.json", "report.html", "metrics.parquet"} <= files
    stage_files = sorted(f for f in files if f.startswith("stages/"))
    assert stage_files == sorted(
        f"stages/{st}/im{i}_{st}_{name}.png"
        for i in (0, 1)
        for st, name in (("load", "data"), ("small", "resized"), ("grey", "data"))
    )
    assert outside_workspace_dirs(studio) == {"runs"}  # nothing in validation/ or production/
    assert r["items"] == 6 and r["failed"] == 0 and r["report_path"] == f"runs/{r['id']}/report.html"


def test_production_mode_layout_and_parquet(studio: Studio, images: Path) -> None:
    r = run(studio, spec(output_mode="production"), input_dir=images, tag="v2")
    files = tree(studio.home / "production" / r["id"])
    assert sorted(f for f in files if f.startswith("final/")) == [
        f"final/im{i}_grey_data.png" for i in range(6)
    ]
    assert outside_workspace_dirs(studio) == {"production"}
    table = pq.read_table(studio.home / "production" / r["id"] / "metrics.parquet").to_pydict()
    assert set(table["stage"]) == {"load", "small", "grey"} and set(table["item"]) == {
        f"im{i}" for i in range(6)
    }
    with Image.open(studio.home / "production" / r["id"] / "final" / "im0_grey_data.png") as im:
        assert im.mode == "L" and max(im.size) == 16


def test_dry_run_writes_nothing(studio: Studio, images: Path) -> None:
    before = tree(studio.home)
    r = run(studio, spec(output_mode="production"), input_dir=images, dry_run=True)
    assert r["dry_run"] and r["items"] == 6
    assert tree(studio.home) == before
    assert runs.list_runs(studio)["total"] == 0


def test_a_failing_item_does_not_stop_the_run(studio: Studio, images: Path) -> None:
    (images / "im9.png").write_bytes(b"not an image")
    pipeline = spec(
        stages=[*BASE["stages"], {"name": "picky", "uses": "custom:toy_stages:explode_on_odd"}],
        output_mode="production",
    )
    r = run(studio, pipeline, input_dir=images)
    assert r["items"] == 7 and r["failed"] == 4  # im1, im3, im5 in picky; im9 in load
    audit = json.loads((studio.home / r["audit_path"]).read_text())
    by_item = {i["item"]: i for i in audit["per_item"]}
    assert by_item["im0"]["status"] == "ok" and by_item["im3"]["status"] == "failed"
    assert by_item["im3"]["stages"][-1] == {
        **by_item["im3"]["stages"][-1],
        "stage": "picky",
        "status": "failed",
    }
    assert "cannot handle im3" in by_item["im3"]["stages"][-1]["error"]
    assert (
        by_item["im9"]["stages"][0]["stage"] == "load" and by_item["im9"]["stages"][0]["status"] == "failed"
    )
    assert [s["failed"] for s in audit["stages"]] == [1, 0, 0, 3]
    produced = tree(studio.home / "production" / r["id"] / "final")
    assert produced == {"im0_picky_data.png", "im2_picky_data.png", "im4_picky_data.png"}
    assert {"stage", "duration_ms", "status"} <= set(audit["per_item"][0]["stages"][0])
    assert audit["peak_memory_mb"] > 0 and audit["pipeline"]["version_hash"]


def test_validation_saves_exactly_the_mistakes(studio: Studio, tmp_path: Path) -> None:
    src = tmp_path / "colours"
    src.mkdir()
    truth = ["path,label"]
    for i in range(8):
        colour = (220, 20, 20) if i % 2 == 0 else (20, 20, 220)
        Image.new("RGB", (20, 20), colour).save(src / f"c{i}.png")
        actual = "red" if i % 2 == 0 else "blue"
        wrong = {"red": "blue", "blue": "red"}[actual]
        truth.append(f"c{i}.png,{wrong if i in (2, 5) else actual}")  # two known mistakes
    (src / "truth.csv").write_text("\n".join(truth) + "\n")
    pipeline = spec(
        stages=[{"name": "load"}, {"name": "classify", "uses": "custom:toy_stages:colour_classifier"}],
        output_mode="validation",
    )
    r = run(studio, pipeline, input_dir=src, ground_truth=src / "truth.csv")
    assert r["mistakes"] == 2 and r["failed"] == 0
    folder = studio.home / "validation" / r["id"]
    errors = tree(folder / "errors")
    assert errors == {"c2_classify_data.json", "c2_compare.png", "c5_classify_data.json", "c5_compare.png"}
    assert json.loads((folder / "errors" / "c2_classify_data.json").read_text())["label"] == "red"
    table = (folder / "error_table.csv").read_text().splitlines()
    assert table[0].startswith("item,stage") and {row.split(",")[0] for row in table[1:]} == {"c2", "c5"}
    assert json.loads((folder / "confusion.json").read_text())["confusion"] == {
        "blue": {"red": 1},
        "red": {"blue": 1},
    }
    assert outside_workspace_dirs(studio) == {"validation"}


def test_identical_artifacts_are_stored_once_and_survive_cleaning(studio: Studio, images: Path) -> None:
    pipeline = spec(
        stages=[{"name": "load"}, {"name": "lut", "uses": "custom:toy_stages:constant_artifact"}],
        output_mode="production",
    )
    a = run(studio, pipeline, input_dir=images)
    b = run(studio, pipeline, input_dir=images)
    with studio.sessions() as s:
        rows = list(s.scalars(select(Artifact).where(Artifact.kind == "pipeline_artifact")))
    assert len(rows) == 1 and rows[0].ref_count == 12  # 6 items × 2 runs, one blob
    blob = studio.store.path("pipeline_artifact", rows[0].sha256)
    out = runs.clean_runs(studio, run_ids=[a["id"]])
    assert out["runs"] == [a["id"]] and out["blobs_removed"] == 0
    assert blob.exists() and not (studio.home / "production" / a["id"]).exists()
    with studio.sessions() as s:
        assert s.scalar(select(Artifact.ref_count).where(Artifact.kind == "pipeline_artifact")) == 6
    runs.clean_runs(studio, run_ids=[b["id"]])
    assert not blob.exists()


def test_history_queries_compare_and_retention(studio: Studio, images: Path) -> None:
    a = run(studio, spec(output_mode="production"), input_dir=images, tag="v1")
    (images / "im1.png").write_bytes(b"broken now")
    b = run(studio, spec(output_mode="production"), input_dir=images)
    assert runs.list_runs(studio, pipeline="shapes")["total"] == 2
    assert [r["id"] for r in runs.list_runs(studio, status="succeeded", tag="v1")["items"]] == [a["id"]]
    assert runs.list_runs(studio, slower_than_ms=10**9)["total"] == 0
    assert runs.list_runs(studio, metric="grey.mean_intensity", metric_above=-1)["total"] == 2
    diff = runs.compare_runs(studio, a["id"], b["id"])
    assert diff["same_pipeline"] and any("im1" in x for x in diff["regressions"])
    assert [i["item"] for i in diff["items"]] == ["im1"]
    dry = runs.clean_runs(studio, older_than_days=0, dry_run=True)
    assert dry["runs"] == [b["id"]]  # the tagged run is kept
    assert (studio.home / "production" / b["id"]).exists()
    usage = runs.disk_usage(studio)
    assert usage["per_mode"]["production"] > 0


def test_bad_requests_are_refused_before_running(studio: Studio, images: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="exactly one input"):
        runs.start_run(studio, pipeline=BASE)
    with pytest.raises(InvalidInput, match="unknown pipeline stage"):
        runs.start_run(studio, pipeline=spec(stages=[{"name": "teleport"}]), input_dir=images)
    with pytest.raises(InvalidInput, match=r"No module named|cannot import"):
        runs.start_run(
            studio,
            pipeline=spec(stages=[{"name": "x", "uses": "custom:no.such.module:fn"}]),
            input_dir=images,
        )
    with pytest.raises(InvalidInput, match="ground truth"):
        runs.start_run(studio, pipeline=spec(output_mode="validation"), input_dir=images)
    with pytest.raises(InvalidInput, match="stage names must be unique"):
        runs.start_run(studio, pipeline=spec(stages=[{"name": "load"}, {"name": "load"}]), input_dir=images)
    with pytest.raises(InvalidInput):
        runs.start_run(studio, pipeline="name: [unclosed", input_dir=images)
    with pytest.raises(InvalidInput):
        runs.start_run(studio, pipeline="- just\n- a list\n", input_dir=images)
    with pytest.raises(NotFound):
        runs.start_run(studio, pipeline=BASE, input_dir=tmp_path / "missing")
    with pytest.raises(NotFound):
        runs.get_run(studio, "nope")


def test_validation_against_expected_images_saves_a_colour_coded_difference(
    studio: Studio, tmp_path: Path
) -> None:
    src = tmp_path / "masks"
    (src / "expected").mkdir(parents=True)
    rows = ["path,expected"]
    for i in range(3):
        Image.new("L", (12, 10), 100 + i).save(src / f"m{i}.png")
        expected = Image.new("L", (12, 10), 100 + i)
        if i == 1:  # one expected image differs in a corner
            expected.paste(255, (0, 0, 6, 5))
        expected.save(src / "expected" / f"m{i}.png")
        rows.append(f"m{i}.png,expected/m{i}.png")
    (src / "truth.csv").write_text("\n".join(rows) + "\n")
    pipeline = spec(stages=[{"name": "load", "params": {"mode": "L"}}], output_mode="validation")
    r = run(studio, pipeline, files=[src / f"m{i}.png" for i in range(3)], ground_truth=src / "truth.csv")
    assert r["mistakes"] == 1
    errors = tree(studio.home / "validation" / r["id"] / "errors")
    assert errors == {"m1_load_data.png", "m1_compare.png", "m1_diff.png"}
    with Image.open(studio.home / "validation" / r["id"] / "errors" / "m1_diff.png") as im:
        px = im.convert("RGB").load()
        assert px is not None
        corner, rest = px[1, 1], px[10, 8]
    assert corner[2] > corner[0]  # the output is darker than expected there: blue
    assert rest[0] == rest[1] == rest[2]  # equal elsewhere: grey


def test_point_clouds_are_saved_with_a_preview(studio: Studio, tmp_path: Path) -> None:
    import numpy as np

    from vistudio.pipelines.saver import ItemResult, OutputSaver
    from vistudio.pipelines.spec import load_spec
    from vistudio.pipelines.stage import Item, StepOutput

    sp = load_spec(
        {
            "name": "pc",
            "stages": [{"name": "lift"}],
            "output_mode": "production",
            "save_outputs": {"formats": {"point_clouds": "pcd"}},
        }
    )
    saver = OutputSaver(spec=sp, home=studio.home, run_id="r1", blobs=studio.store)
    pts = np.random.default_rng(0).random((50, 6))
    result = ItemResult(
        item=Item(key="scan"),
        index=0,
        steps=[("lift", StepOutput(outputs=[(pts, "cloud", ""), (pts[:, :3], "xyz", "xyz")]))],
    )
    saved = {s.path for s in saver.save(result)}
    assert saved == {
        f"production/r1/final/scan_lift_{n}"
        for n in ("cloud.pcd", "cloud_preview.png", "xyz.xyz", "xyz_preview.png")
    }
    pcd = (studio.home / "production/r1/final/scan_lift_cloud.pcd").read_text().splitlines()
    assert "FIELDS x y z rgb" in pcd and "POINTS 50" in pcd and len(pcd) == 11 + 50
    with pytest.raises(ValueError, match="N×3 or N×6"):
        saver.save(
            ItemResult(
                item=Item(key="bad"),
                index=0,
                steps=[("lift", StepOutput(outputs=[(np.zeros((4, 2)), "c", "ply")]))],
            )
        )


def test_project_subset_as_input(studio: Studio, tmp_path: Path) -> None:
    from factories import make_class_folders, run_import
    from vistudio.services import projects, splits

    projects.create_project(studio, name="p", task="classification")
    run_import(studio, "p", make_class_folders(tmp_path / "src", {"a": 5, "b": 5}))
    splits.create_split(studio, project="p", name="s", ratios="0.6,0.2,0.2", seed=1)
    r = run(studio, spec(output_mode="production"), project="p", split="s", subset="val")
    assert r["items"] == 2 and r["input"]["subset"] == "val"
    audit = json.loads((studio.home / r["audit_path"]).read_text())
    assert all(i["ground_truth"] in ("a", "b") for i in audit["per_item"])
