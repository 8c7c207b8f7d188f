"""Test data for regression: pictures whose target is something a small network can read off them
(the length of a drawn bar, in original units far from 0..1), written with a CSV beside them;
a regression project imported from it with a split; a made-up evaluation for the page tests."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from factories import run_import
from vistudio.services import projects, splits
from vistudio.studio import Studio

# target = SCALE × bar length + OFFSET: units far from the network's own, which the z-score handles
SCALE, OFFSET = 10.0, 100.0


def bar_image(path: Path, length: float, *, row: int, size: int = 32, mark: int = 0) -> Path:
    """A dark square with a light horizontal bar ``length`` pixels long (antialiased by drawing
    at 4× and shrinking, so that fractional lengths show as grey ends); ``mark`` is written in
    two dim corner pixels, so that no two pictures are the same file (imports deduplicate)."""
    big = Image.new("L", (size * 4, size * 4), 25)
    d = ImageDraw.Draw(big)
    d.rectangle([8, row * 4, 8 + round(length * 4), row * 4 + 11], fill=235)
    img = big.resize((size, size), Image.Resampling.BOX).convert("RGB")
    img.putpixel((size - 1, size - 1), (mark % 64, 0, 0))
    img.putpixel((size - 2, size - 1), (mark // 64 % 64, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_bars(root: Path, *, count: int, seed: int = 0, extra_rows: list[str] | None = None) -> Path:
    """``root/images/bar-<i>.png`` and ``root/targets.csv`` (``path,target``); ``extra_rows`` are
    appended to the CSV as they are (bad rows for the bad-input tests). Returns the CSV."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        length = float(rng.uniform(3.0, 26.0))
        bar_image(root / "images" / f"bar-{i:04d}.png", length, row=int(rng.integers(4, 24)), mark=i)
        rows.append((f"images/bar-{i:04d}.png", round(SCALE * length + OFFSET, 4)))
    path = root / "targets.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "target"])
        w.writerows(rows)
        for extra in extra_rows or []:
            fh.write(extra + "\n")
    return path


def bars_project(
    studio: Studio, root: Path, *, name: str = "bars", count: int = 80, seed: int = 0
) -> dict[str, Any]:
    """A regression project of ``count`` bar pictures imported from CSV, with a split ``s1``
    (70/15/15, seed 3)."""
    source = write_bars(root / f"{name}-src", count=count, seed=seed)
    projects.create_project(studio, name=name, task="regression")
    job = run_import(studio, name, source, fmt="csv")
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=(0.7, 0.15, 0.15), seed=3)
    return projects.get_project(studio, name)


def write_values(root: Path, values: list[list[float]], *, header: list[str] | None = None) -> Path:
    """``root/images/v-<i>.png`` (a bar whose length follows the first value's rank) and
    ``root/values.csv`` with the given values, one row per image. Returns the CSV."""
    first = np.asarray([v[0] for v in values])
    ranks = np.argsort(np.argsort(first)) / max(1, len(values) - 1)
    names = header or [f"t{i + 1}" for i in range(len(values[0]))]
    path = root / "values.csv"
    root.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", *names])
        for i, row in enumerate(values):
            bar_image(
                root / "images" / f"v-{i:04d}.png", 3 + 22 * float(ranks[i]), row=4 + i % 20, size=24, mark=i
            )
            w.writerow([f"images/v-{i:04d}.png", *(repr(float(v)) for v in row)])
    return path


def regression_experiment(
    studio: Studio, *, project: str, name: str = "reg", split: str = "s1", image_size: int = 16, seed: int = 0
) -> dict[str, Any]:
    """A finished experiment with an untrained (seeded) resnet18 regressor whose z-score is the
    split's training values, saved as training saves one (best and last): what the Evaluate page
    and a real evaluation job need, without training."""
    import tempfile

    import torch

    from vistudio.db import Project, Split, utcnow
    from vistudio.db.training import Checkpoint, Experiment
    from vistudio.ml.checkpoint import save_checkpoint
    from vistudio.ml.inference.regression import normalisation
    from vistudio.ml.preprocess import preprocess_meta
    from vistudio.ml.tasks.regression import build_regressor
    from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND, split_items
    from vistudio.services.experiments.values import split_target_names

    torch.manual_seed(seed)
    with studio.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name=split).one()
        project_id, split_id = p.id, sp.id
        names = split_target_names(s, split_id)
        train = [it.target for it in split_items(studio, s, split_id, ["train"], names, task="regression")]
    model, info = build_regressor("resnet18", len(names))
    mean, std = normalisation(train)
    model.set_normalisation(mean, std)
    config = {"model": "resnet18", "image_size": image_size, "split": split, "epochs": 1, "loss": "mse"}
    meta = {
        "model": "resnet18",
        "task": "regression",
        "classes": names,
        "preprocess": preprocess_meta(image_size, info.mean, info.std),
        "config": config,
        "target_mean": mean,
        "target_std": std,
        "epoch": 1,
        "step": 0,
        "metrics": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "ckpt.pt", model, meta)
        sha = studio.store.write_file(CHECKPOINT_KIND, path, ext=CHECKPOINT_EXT)
        size = path.stat().st_size
    with studio.sessions.begin() as s:
        exp = Experiment(
            project_id=project_id,
            split_id=split_id,
            name=name,
            task="regression",
            config=config,
            classes=names,
            status="succeeded",
            epochs_done=1,
            created_at=utcnow(),
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        s.add(exp)
        s.flush()
        for kind in ("best", "last"):
            s.add(
                Checkpoint(
                    experiment_id=exp.id, kind=kind, sha256=sha, size=size, epoch=1, step=0, metrics={}
                )
            )
            studio.store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
        return {"id": exp.id, "name": name, "targets": names, "mean": mean, "std": std}


def fake_regression_evaluation(
    studio: Studio,
    *,
    project: str,
    experiment: str,
    subsets: tuple[str, ...] = ("train", "val", "test"),
    noise: float = 0.2,
    seed: int = 0,
) -> int:
    """A finished evaluation whose predictions are the true values plus noise (``noise`` of each
    target's spread) and a slight shrink toward the mean, stored as the job stores one — for page
    tests that need many results without running a model."""
    from sqlalchemy import insert

    from vistudio.db import utcnow
    from vistudio.db.training import Evaluation, RegressionResult
    from vistudio.ml.inference.regression import regression_metrics
    from vistudio.services.experiments import split_items
    from vistudio.services.exports import resolve

    rng = np.random.default_rng(seed)
    with studio.sessions() as s:
        _, exp = resolve(s, project, experiment)
        assert exp.split_id is not None
        names = list(exp.classes)
        items = split_items(studio, s, exp.split_id, list(subsets), names, task="regression")
        exp_id = exp.id
    truth = np.asarray([it.target for it in items], dtype=np.float64)
    mean, spread = truth.mean(axis=0), truth.std(axis=0) + 1e-12
    pred = mean + 0.92 * (truth - mean) + rng.normal(0, noise, truth.shape) * spread
    rows = [
        {
            "sample_id": it.sample_id,
            "subset": it.subset,
            "truth": [float(v) for v in truth[i]],
            "prediction": [float(v) for v in pred[i]],
            "abs_error": float(np.mean(np.abs(pred[i] - truth[i]))),
        }
        for i, it in enumerate(items)
    ]
    metrics = regression_metrics(truth, pred, names)
    metrics |= {"targets": names, "left_out": {}, "skipped": 0, "skipped_items": []}
    with studio.sessions.begin() as s:
        ev = Evaluation(
            experiment_id=exp_id,
            checkpoint_kind="best",
            checkpoint_sha256="0" * 64,
            subsets=[x for x in ("train", "val", "test") if x in subsets],
            status="succeeded",
            metrics=metrics,
            confusion=[],
            classes=names,
            results_path=f"exports/{project}/{experiment}/evaluation/results.parquet",
            created_at=utcnow(),
            finished_at=utcnow(),
        )
        s.add(ev)
        s.flush()
        s.execute(insert(RegressionResult), [{**r, "evaluation_id": ev.id} for r in rows])
        return int(ev.id)
