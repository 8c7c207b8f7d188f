"""Test data for evaluation and export: a digits project with a split, and experiments whose
checkpoints are made directly (build_model + a few training steps + save_checkpoint + blob + rows),
so that these tests do not depend on the training job; a made-up evaluation for page tests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from factories import run_import
from vistudio.db import Project, utcnow
from vistudio.db.training import Checkpoint, Experiment
from vistudio.services import projects, splits
from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND, split_items
from vistudio.studio import Studio

LONG_CLASS = "a-very-long-class-name-that-keeps-going-and-going-to-test-the-layout"


def workspace_settings(root: Path) -> Any:
    """Settings like the shared ``settings`` fixture's, for module-scoped workspaces."""
    from vistudio.config import ImportSettings, JobSettings, Settings

    return Settings(
        home=root / "ws",
        import_roots=[root],
        allowed_hosts=["localhost", "127.0.0.1", "testserver"],
        imports=ImportSettings(workers=1, batch_size=8),
        jobs=JobSettings(
            lease_seconds=30, heartbeat_seconds=0.2, poll_seconds=0.05, backoff_base_seconds=0.01
        ),
    )


def run_job(studio: Studio, job_id: int) -> dict[str, Any]:
    """Run a queued job in this process; returns the finished job as a dict."""
    from vistudio.jobs.queue import job_dict
    from vistudio.jobs.worker import Worker

    worker = Worker(studio)
    if worker.run_one(job_id=job_id) is None:  # a live server's embedded worker claimed it first
        worker.run_to_end(job_id)
    return job_dict(studio.queue.get(job_id))


def import_folder(studio: Studio, project: str, src: Path) -> dict[str, Any]:
    """Import a class-folder source and wait for it: this process runs the job unless a server's
    embedded worker (the browser tests' live server) claimed it first."""
    import time

    from vistudio.jobs.queue import FINISHED, job_dict

    job = run_import(studio, project, src, fmt="folder")
    deadline = time.monotonic() + 120
    while job["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
        job = job_dict(studio.queue.get(job["id"]))
    assert job["status"] == "succeeded", job
    return job


def write_digits(root: Path, *, classes: tuple[int, ...] = (0, 1, 2), per_class: int = 20) -> Path:
    """``root/<digit>/digit-<i>.png``: scikit-learn's digits, 32×32 grey, dark ink on white."""
    from sklearn.datasets import load_digits

    data = load_digits()
    counts = dict.fromkeys(classes, 0)
    for i, (img, target) in enumerate(zip(data.images, data.target, strict=True)):
        t = int(target)
        if t not in counts or counts[t] >= per_class:
            continue
        counts[t] += 1
        arr = (255 - img * (255 / 16)).clip(0, 255).astype(np.uint8)
        folder = root / str(t)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, "L").resize((32, 32), Image.Resampling.NEAREST).save(
            folder / f"digit-{i:04d}.png"
        )
    return root


def digits_project(
    studio: Studio,
    tmp: Path,
    *,
    name: str = "digits",
    classes: tuple[int, ...] = (0, 1, 2),
    per_class: int = 20,
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> dict[str, Any]:
    """A classification project of a few digit classes with a saved split named ``default``."""
    src = write_digits(tmp / f"{name}-src", classes=classes, per_class=per_class)
    projects.create_project(studio, name=name, task="classification")
    import_folder(studio, name, src)
    splits.create_split(studio, project=name, name="default", ratios=ratios, seed=42)
    return projects.get_project(studio, name)


def _train_steps(
    model: Any, studio: Studio, split_id: int, classes: list[str], meta: dict[str, Any], steps: int
) -> None:
    import torch

    from vistudio.ml.preprocess import eval_batch

    with studio.sessions() as s:
        items = split_items(studio, s, split_id, ["train"], classes)
    x = torch.from_numpy(eval_batch([it.path for it in items], meta))
    y = torch.tensor([it.target for it in items])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()


def make_experiment(
    studio: Studio,
    *,
    project: str,
    name: str = "exp1",
    model: str = "resnet18",
    image_size: int = 32,
    train_steps: int = 0,
    status: str = "succeeded",
    kinds: tuple[str, ...] = ("best", "last"),
    seed: int = 0,
    split: str = "default",
) -> dict[str, Any]:
    """An experiment with checkpoints made here: untrained weights (seeded) or ``train_steps``
    full-batch Adam steps on the train subset. Returns ``{"id", "name", "classes", "checkpoints"}``."""
    import torch

    from vistudio.db import Split
    from vistudio.ml.checkpoint import save_checkpoint
    from vistudio.ml.models import build_model
    from vistudio.ml.preprocess import preprocess_meta
    from vistudio.services.samples import class_counts
    from vistudio.services.versions import version_for_training

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    classes = sorted(class_counts(studio, project=project))
    net, info = build_model(model, len(classes), pretrained=False)
    meta_pre = preprocess_meta(image_size, info.mean, info.std)
    with studio.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name=split).one_or_none()
        project_id, split_id = p.id, sp.id if sp else None
    if train_steps and split_id is not None:
        _train_steps(net, studio, split_id, classes, meta_pre, train_steps)
    config = {
        "model": model,
        "pretrained": False,
        "image_size": image_size,
        "split": split,
        "epochs": 1,
        "batch_size": 16,
        "lr": 1e-3,
        "optimizer": "adam",
        "scheduler": "none",
        "seed": seed,
    }
    meta = {
        "model": model,
        "task": "classification",
        "classes": classes,
        "preprocess": meta_pre,
        "config": config,
        "epoch": 1,
        "step": train_steps,
        "metrics": {},
    }
    stored: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "ckpt.pt", net, meta)
        sha = studio.store.write_file(CHECKPOINT_KIND, path, ext=CHECKPOINT_EXT)
        size = path.stat().st_size
    with studio.sessions.begin() as s:
        # as a real start does: the dataset version it trains and evaluates on
        version = version_for_training(s, s.get(Project, project_id), actor=f"experiment {name}")
        exp = Experiment(
            project_id=project_id,
            split_id=split_id,
            version_id=version.id,
            name=name,
            task="classification",
            config=config,
            classes=classes,
            status=status,
            epochs_done=1,
            created_at=utcnow(),
            started_at=utcnow(),
            finished_at=None if status in ("queued", "running", "draft") else utcnow(),
        )
        s.add(exp)
        s.flush()
        for kind in kinds:
            s.add(
                Checkpoint(
                    experiment_id=exp.id,
                    kind=kind,
                    sha256=sha,
                    size=size,
                    epoch=1,
                    step=train_steps,
                    metrics={},
                )
            )
            studio.store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
            stored[kind] = sha
        exp_id = exp.id
    return {"id": exp_id, "name": name, "classes": classes, "checkpoints": stored, "model": net}


def many_classes_project(
    studio: Studio, tmp: Path, *, name: str = "many", classes: int = 30, per_class: int = 34
) -> dict[str, Any]:
    """``classes`` class folders (the last with a very long name) of distinct 16×16 images, split 60/20/20."""
    src = tmp / f"{name}-src"
    for c in range(classes):
        label = LONG_CLASS if c == classes - 1 else f"class-{c:02d}"
        folder = src / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = (c * 8 % 256, i * 7 % 256, (c * 31 + i * 3) % 256)
            Image.new("RGB", (16, 16), colour).save(folder / f"img-{i:03d}.png")
    projects.create_project(studio, name=name, task="classification")
    import_folder(studio, name, src)
    splits.create_split(studio, project=name, name="default", ratios=(0.6, 0.2, 0.2), seed=1)
    return projects.get_project(studio, name)


def fake_evaluation(
    studio: Studio,
    *,
    project: str,
    experiment: str,
    accuracy: float = 0.8,
    subsets: tuple[str, ...] = ("train", "val", "test"),
    seed: int = 0,
) -> int:
    """A finished evaluation with made-up predictions (right with probability ``accuracy``), stored
    as the job stores one — for page tests that need many results without running a model."""
    from sqlalchemy import insert

    from vistudio.db.training import EvalResult, Evaluation
    from vistudio.ml.inference.metrics import classification_metrics, confusion_matrix
    from vistudio.services.exports import resolve

    rng = np.random.default_rng(seed)
    with studio.sessions() as s:
        _, exp = resolve(s, project, experiment)
        assert exp.split_id is not None
        items = split_items(studio, s, exp.split_id, list(subsets), list(exp.classes))
        exp_id, classes = exp.id, list(exp.classes)
    n = len(classes)
    rows = []
    for it in items:
        pred = it.target if rng.random() < accuracy else int(rng.integers(n))
        probs = rng.dirichlet(np.ones(n) * 0.3)
        probs[pred] += 1.0
        probs /= probs.sum()
        order = [pred, *[int(o) for o in np.argsort(-probs, kind="stable") if o != pred]][: min(5, n)]
        rows.append(
            {
                "sample_id": it.sample_id,
                "subset": it.subset,
                "true_index": it.target,
                "pred_index": pred,
                "confidence": float(probs[pred]),
                "topk": [[o, float(probs[o])] for o in order],
                "correct": pred == it.target,
            }
        )
    cm = confusion_matrix([r["true_index"] for r in rows], [r["pred_index"] for r in rows], n)
    metrics = {**classification_metrics(cm, classes), "skipped": 0, "skipped_items": []}
    with studio.sessions.begin() as s:
        ev = Evaluation(
            experiment_id=exp_id,
            checkpoint_kind="best",
            checkpoint_sha256="0" * 64,
            subsets=[x for x in ("train", "val", "test") if x in subsets],
            status="succeeded",
            metrics=metrics,
            confusion=cm.tolist(),
            classes=classes,
            results_path=f"exports/{project}/{experiment}/evaluation/results.parquet",
            created_at=utcnow(),
            finished_at=utcnow(),
        )
        s.add(ev)
        s.flush()
        s.execute(insert(EvalResult), [{**r, "evaluation_id": ev.id} for r in rows])
        return int(ev.id)
