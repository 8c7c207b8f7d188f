from __future__ import annotations

import json
import re
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
        "logs",  # the workspace's log of the job (docs/operations.md)
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
    assert {p for p in tree(studio.home) if not p.startswith("logs/")} == {
        p for p in before if not p.startswith("logs/")
    }  # the job's log lines aside
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
    newest_first = [r["id"] for r in runs.list_runs(studio, pipeline="shapes")["items"]]
    second = runs.list_runs(studio, pipeline="shapes", offset=1, limit=1)  # a page: newest first
    assert second["total"] == 2 and [r["id"] for r in second["items"]] == newest_first[1:]
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


# --- honest status: a chain that cannot work is refused, a run that failed says so ----------------


def test_a_chain_without_load_is_refused_before_running(studio: Studio, images: Path) -> None:
    no_load = spec(stages=[{"name": "small", "uses": "resize", "params": {"max_side": 16}}])
    with pytest.raises(
        InvalidInput, match=r"stage 'small' \(resize\) needs an image.*add a `load` stage first"
    ) as exc:
        runs.start_run(studio, pipeline=no_load, input_dir=images)
    assert exc.value.status == 422 and exc.value.details["stage"] == "small"
    assert studio.queue.list()[1] == 0  # nothing was queued
    # a custom stage that declares it gives a label cannot feed resize (kinds read from the function)
    with pytest.raises(InvalidInput, match=r"stage 'small' \(resize\) needs an image.*stage 'label'"):
        runs.start_run(
            studio,
            pipeline=spec(
                stages=[
                    {"name": "load"},
                    {"name": "label", "uses": "custom:toy_stages:colour_classifier"},
                    {"name": "small", "uses": "resize", "params": {"max_side": 16}},
                ]
            ),
            input_dir=images,
        )


def test_the_api_answers_422_and_the_cli_exits_2_for_a_chain_without_load(
    studio: Studio, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from vistudio.api.app import create_app
    from vistudio.cli.main import main

    body = {
        "pipeline": {"name": "p", "stages": [{"name": "resize", "params": {"max_side": 8}}]},
        "input": str(images),
    }
    r = TestClient(create_app(studio)).post("/api/v1/runs", json=body)
    assert r.status_code == 422 and "add a `load` stage first" in r.json()["error"]["message"]

    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("name: p\nstages:\n  - name: resize\n    params: {max_side: 8}\n")
    code = main(["--workspace", str(studio.home), "--json", "run", str(yaml_file), "--input", str(images)])
    out = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert code == 2 and len(out) == 1
    error = json.loads(out[0])["error"]
    assert error["code"] == "invalid_input" and error["details"]["stage"] == "resize"


def test_run_status_is_failed_partial_or_succeeded(studio: Studio, images: Path, tmp_path: Path) -> None:
    ok = run(studio, spec(output_mode="production"), input_dir=images)
    assert ok["status"] == "succeeded" and ok["failed"] == 0

    picky = spec(stages=[*BASE["stages"], {"name": "picky", "uses": "custom:toy_stages:explode_on_odd"}])
    some = run(studio, picky, input_dir=images)
    assert (some["status"], some["failed"], some["items"]) == ("partial", 3, 6)

    for f in images.iterdir():  # every file unreadable now: every item fails in load
        f.write_bytes(b"not an image")
    none = run(studio, spec(), input_dir=images)
    assert (none["status"], none["failed"], none["items"]) == ("failed", 6, 6)
    audit = json.loads((studio.home / none["audit_path"]).read_text())
    assert audit["status"] == "failed"
    assert "all 6 items failed" in (studio.home / none["report_path"]).read_text()

    (tmp_path / "empty").mkdir()
    empty = run(studio, spec(), input_dir=tmp_path / "empty")
    assert (empty["status"], empty["items"]) == ("succeeded", 0)
    assert "no items" in (studio.home / empty["report_path"]).read_text()

    # a folder whose only picture is a link leaving it: the reader refuses it, so the run failed
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "away.png").symlink_to(outside)
    refused = run(studio, spec(), input_dir=tmp_path / "links")
    assert (refused["status"], refused["items"]) == ("failed", 0)

    assert [r["id"] for r in runs.list_runs(studio, status="partial")["items"]] == [some["id"]]
    assert {r["id"] for r in runs.list_runs(studio, status="failed")["items"]} == {none["id"], refused["id"]}


def test_the_cli_exits_1_for_a_failed_run_and_for_a_partial_one_with_strict(
    studio: Studio, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vistudio.cli.main import main

    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text(
        "name: p\nstages:\n  - name: load\n  - name: picky\n    uses: custom:toy_stages:explode_on_odd\n"
    )

    def cli(*args: str) -> tuple[int, dict[str, Any]]:
        code = main(["--workspace", str(studio.home), "--json", "run", str(yaml_file), *args])
        out = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert len(out) == 1, out  # still exactly one JSON document
        return code, json.loads(out[0])

    code, out = cli("--input", str(images))
    assert code == 0 and out["run"]["status"] == "partial" and out["run"]["failed"] == 3
    code, out = cli("--input", str(images), "--strict")
    assert code == 1 and out["run"]["status"] == "partial"
    code, out = cli("--file", str(images / "im1.png"), "--file", str(images / "im3.png"))
    assert code == 1 and out["run"]["status"] == "failed" and out["run"]["failed"] == 2
    code, out = cli("--file", str(images / "im0.png"), "--strict")
    assert code == 0 and out["run"]["status"] == "succeeded"

    # without --json: the status and the outcome in words, with proper plurals
    code = main(["--workspace", str(studio.home), "run", str(yaml_file), "--file", str(images / "im1.png")])
    text = " ".join(capsys.readouterr().out.split())
    assert code == 1 and "failed: the only item failed" in text
    code = main(["--workspace", str(studio.home), "run", str(yaml_file), "--file", str(images / "im0.png")])
    text = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "succeeded: 1 item, none failed" in text and "1 items" not in text


def test_compare_marks_every_change_past_the_threshold(studio: Studio, images: Path) -> None:
    from vistudio.db import Run, RunStage

    a = run(studio, spec(output_mode="production"), input_dir=images)
    b = run(studio, spec(output_mode="production"), input_dir=images)
    with studio.sessions.begin() as s:
        for run_id, mean_intensity, load_ms in ((a["id"], 100.0, 0.30), (b["id"], 187.0, 0.561)):
            row = s.get(Run, run_id)
            assert row is not None
            row.metrics = {**row.metrics, "grey.mean_intensity": mean_intensity, "grey.flat": 1.0}
            stage = s.get(RunStage, (run_id, "load"))
            assert stage is not None
            stage.total_ms, stage.ok, stage.failed = load_ms * 6, 6, 0
    diff = runs.compare_runs(studio, a["id"], b["id"])
    m = diff["metrics"]["grey.mean_intensity"]
    assert m["relative"] == pytest.approx(0.87) and m["changed"] is True  # +87 % is marked
    assert diff["metrics"]["grey.flat"]["changed"] is False
    load = diff["stages"]["load"]
    # +87 % slower, but by 0.26 ms per item: marked, yet within the timer's noise, not a regression
    assert load["changed"] and load["slower"] and load["within_noise"] and not load["regression"]
    assert not any("load" in r for r in diff["regressions"])


def test_validation_side_by_side_is_readable_in_the_report(studio: Studio, tmp_path: Path) -> None:
    src = tmp_path / "tiny"
    src.mkdir()
    rows = ["path,label"]
    for i in range(4):
        Image.new("RGB", (8, 8), (220, 20, 20) if i % 2 == 0 else (20, 20, 220)).save(src / f"t{i}.png")
        rows.append(f"t{i}.png,{'blue' if i == 0 else ('red' if i % 2 == 0 else 'blue')}")  # t0 is a mistake
    (src / "truth.csv").write_text("\n".join(rows) + "\n")
    pipeline = spec(
        stages=[{"name": "load"}, {"name": "classify", "uses": "custom:toy_stages:colour_classifier"}],
        output_mode="validation",
    )
    r = run(studio, pipeline, input_dir=src, ground_truth=src / "truth.csv")
    assert r["mistakes"] == 1
    with Image.open(studio.home / "validation" / r["id"] / "errors" / "t0_compare.png") as im:
        # the 8×8 input is scaled up by a whole factor (nearest) to at least 160 px, under a caption
        assert im.height >= 160 + 40
        assert im.convert("RGB").getpixel((80, 40 + 80)) == (220, 20, 20)
    html = (studio.home / r["report_path"]).read_text()
    # embedded as saved (not a 220 px thumbnail), and shown at its natural width
    assert re.search(r'<img alt="t0_compare.png" src="data:image/png;base64,[^"]+" width="(\d+)"', html)
    width = int(re.search(r'alt="t0_compare.png"[^>]*width="(\d+)"', html).group(1))  # type: ignore[union-attr]
    assert width >= 160 and f'style="width:{width}px"' in html
