"""The embedding map: every image of a project as a point in 2-D, near images near each other, for a
scatter plot coloured by label, tag or evaluation outcome, with lasso selection.

Vectors: the project's CLIP embeddings (its complete active set), else an experiment's features
(the input of its model's last linear layer, computed here). Projection: UMAP (umap-learn) when
asked or by default above a few points, else PCA (scikit-learn). A job computes it; the result is a
file of the workspace (``maps/<project id>/<source>.npz``: sample ids and coordinates scaled to
0..1), replaced when recomputed. The points are then served with the colouring data; sample ids
and arrays keep 100,000 points to a few megabytes of JSON.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from vistudio.db import Annotation, LabelClass, Sample, SampleTag
from vistudio.errors import BadRequest, Conflict, InvalidInput, NotFound
from vistudio.jobs.queue import job_dict
from vistudio.jobs.registry import job_handler
from vistudio.jobs.worker import JobContext, PermanentJobError
from vistudio.services.projects import find_project
from vistudio.storage.atomic import atomic_write_bytes
from vistudio.studio import Studio

KIND = "embedding_map"
METHODS = ("auto", "umap", "pca")
UMAP_MIN_POINTS = 50  # fewer points: PCA (UMAP needs neighbours to be meaningful)


def _folder(studio: Studio, project_id: int) -> Path:
    return studio.home / "maps" / str(project_id)


def _source_key(source: str, experiment_id: int | None) -> str:
    return "embeddings" if source == "embeddings" else f"experiment-{experiment_id}"


def start_map(
    studio: Studio,
    *,
    project: str | int,
    source: str = "embeddings",
    experiment: str | int | None = None,
    method: str = "auto",
) -> dict[str, Any]:
    """Queue the computation of the project's map → ``{"job"}``. ``source``: ``embeddings`` (the
    project's CLIP embeddings) or ``experiment`` (the named experiment's features)."""
    from vistudio.services import embeddings
    from vistudio.services.exports import ready_checkpoint, resolve

    if method not in METHODS:
        raise BadRequest(f"method must be one of {', '.join(METHODS)}, got {method[:20]!r}")
    if source not in ("embeddings", "experiment"):
        raise BadRequest(f"source must be 'embeddings' or 'experiment', got {source[:20]!r}")
    with studio.sessions() as s:
        p = find_project(s, project)
        params: dict[str, Any] = {"project_id": p.id, "source": source, "method": method}
        if source == "experiment":
            if experiment is None:
                raise BadRequest("name the experiment whose features to map")
            _, exp = resolve(s, p.id, experiment)
            ready_checkpoint(s, exp, "best")
            if exp.task != "classification":
                raise InvalidInput("features are taken from classification experiments")
            params["experiment_id"] = exp.id
        project_id = p.id
    if source == "embeddings" and embeddings.project_vectors(studio, project_id) is None:
        raise Conflict(
            "this project has no complete set of embeddings: embed it first (vistudio embed, or the "
            "Search tab), or map an experiment's features"
        )
    job = studio.queue.enqueue(KIND, params, project_id=project_id, max_attempts=2)
    return {"job": job_dict(job)}


def _experiment_features(ctx: JobContext, experiment_id: int) -> tuple[Any, Any]:
    import numpy as np

    from vistudio.db.training import Experiment
    from vistudio.ml.checkpoint import load_checkpoint
    from vistudio.ml.inference.pytorch import predict_batches, resolve_device
    from vistudio.services.exports import checkpoint_file, ready_checkpoint
    from vistudio.services.label_errors import feature_net

    studio = ctx.studio
    with studio.sessions() as s:
        exp = s.get(Experiment, experiment_id)
        if exp is None:
            raise PermanentJobError("the experiment was deleted")
        ckpt = ready_checkpoint(s, exp, "best")
        rows = s.execute(
            select(Sample.id, Sample.storage, Sample.path)
            .where(Sample.project_id == exp.project_id)
            .order_by(Sample.id)
        ).all()
        s.expunge_all()
    items = [(sid, str(studio.photo_file(storage, path))) for sid, storage, path in rows]
    device = resolve_device("auto")
    model, meta = load_checkpoint(checkpoint_file(studio, ckpt), device=device)
    ids: list[int] = []
    vectors: list[Any] = []
    for batch in predict_batches(feature_net(model), items, meta["preprocess"], batch_size=64, device=device):
        ids.extend(batch.items)
        vectors.append(batch.logits)
        ctx.progress(len(ids), len(items), "computing features")
        ctx.check_cancelled()
    if not ids:
        raise PermanentJobError("none of the project's images could be read")
    return np.asarray(ids, dtype=np.int64), np.concatenate(vectors).astype(np.float32)


def project_2d(vectors: Any, method: str, *, seed: int = 0) -> tuple[Any, str]:
    """2-D coordinates of ``vectors`` scaled to 0..1 (aspect kept), and the method used."""
    import numpy as np

    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32), "none"
    use_umap = method == "umap" or (method == "auto" and n >= UMAP_MIN_POINTS)
    if n < 3:
        xy = np.zeros((n, 2))
        xy[:, 0] = np.arange(n)
        used = "none"
    elif use_umap:
        try:
            import umap
        except ImportError:  # pragma: no cover - umap-learn is a dependency; a broken install
            if method == "umap":
                raise InvalidInput("UMAP is not installed here (umap-learn); use pca") from None
            use_umap = False
        else:
            neighbours = max(2, min(15, n - 1))
            reducer = umap.UMAP(
                n_components=2, n_neighbors=neighbours, random_state=seed, metric="cosine", n_jobs=1
            )
            xy = reducer.fit_transform(vectors)
            used = "umap"
    if n >= 3 and not use_umap:
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(vectors)
        used = "pca"
    xy = np.asarray(xy, dtype=np.float64)
    lo = xy.min(axis=0)
    span = float((xy.max(axis=0) - lo).max()) or 1.0
    return ((xy - lo) / span).astype(np.float32), used


@job_handler(KIND)
def run_map(ctx: JobContext) -> dict[str, Any]:
    import io

    import numpy as np

    from vistudio.services import embeddings

    studio, params = ctx.studio, ctx.params
    project_id = int(params["project_id"])
    source = str(params.get("source", "embeddings"))
    ctx.progress(0, None, "reading vectors", force=True)
    if source == "embeddings":
        got = embeddings.project_vectors(studio, project_id)
        if got is None:
            raise PermanentJobError("the project has no complete set of embeddings")
        ids, vectors, info = got
        described = f"{info.get('name')} {info.get('pretrained') or ''}".strip()
    else:
        ids, vectors = _experiment_features(ctx, int(params["experiment_id"]))
        described = f"experiment {params['experiment_id']}"
    ctx.progress(0, None, f"projecting {len(ids):,} points", force=True)
    xy, used = project_2d(vectors, str(params.get("method", "auto")))
    key = _source_key(source, params.get("experiment_id"))
    folder = _folder(studio, project_id)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=ids, xy=xy)
    atomic_write_bytes(folder / f"{key}.npz", buf.getvalue())
    meta = {"source": source, "key": key, "method": used, "vectors": described, "points": len(ids)}
    meta["experiment_id"] = params.get("experiment_id")
    atomic_write_bytes(folder / f"{key}.json", json.dumps(meta).encode())
    return meta


def map_info(
    studio: Studio, project_id: int, source: str, experiment_id: int | None = None
) -> dict[str, Any] | None:
    """How a computed map was made (``method``, ``points``, ``vectors``, ``computed_at``) without
    loading its points; None before it is computed."""
    from datetime import UTC, datetime

    key = _source_key(source, experiment_id)
    folder = _folder(studio, project_id)
    meta_file, points_file = folder / f"{key}.json", folder / f"{key}.npz"
    if not (meta_file.is_file() and points_file.is_file()):
        return None
    try:
        meta: dict[str, Any] = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return None
    when = datetime.fromtimestamp(points_file.stat().st_mtime, tz=UTC)
    meta["computed_at"] = when.strftime("%Y-%m-%d %H:%M UTC")
    return meta


_TAG = re.compile(r"^.{1,100}$", re.S)


def get_map(
    studio: Studio,
    *,
    project: str | int,
    source: str = "embeddings",
    experiment: str | int | None = None,
    tag: str | None = None,
    outcome: str | int | None = None,
) -> dict[str, Any]:
    """The map's points: ``{"ids", "x", "y", "label" (class index, -1 unlabelled), "classes", …}``;
    with ``tag`` a 0/1 ``tagged`` array; with ``outcome`` (an evaluated experiment) ``outcome``
    per point: 1 correct, 0 wrong, -1 not evaluated."""
    import numpy as np

    from vistudio.services.exports import resolve

    if tag is not None and not _TAG.match(tag):
        raise BadRequest("a tag is 1 to 100 characters")
    with studio.sessions() as s:
        p = find_project(s, project)
        experiment_id = None
        if source == "experiment":
            if experiment is None:
                raise BadRequest("name the experiment of the map")
            experiment_id = resolve(s, p.id, experiment)[1].id
        elif source != "embeddings":
            raise BadRequest(f"source must be 'embeddings' or 'experiment', got {source[:20]!r}")
        key = _source_key(source, experiment_id)
        folder = _folder(studio, p.id)
        if not (folder / f"{key}.npz").is_file():
            raise NotFound("this map has not been computed yet: compute it first", details={"source": source})
        meta = json.loads((folder / f"{key}.json").read_text())
        with np.load(folder / f"{key}.npz") as data:
            ids, xy = data["ids"], data["xy"]
        alive = set(s.scalars(select(Sample.id).where(Sample.project_id == p.id)))
        keep = np.fromiter((int(i) in alive for i in ids), dtype=bool, count=len(ids))
        ids, xy = ids[keep], xy[keep]
        classes = list(
            s.scalars(
                select(LabelClass.name)
                .where(LabelClass.project_id == p.id)
                .order_by(LabelClass.ordinal, LabelClass.name)
            )
        )
        index = {c: i for i, c in enumerate(classes)}
        first_label: dict[int, int] = {}
        for sid, name in s.execute(
            select(Annotation.sample_id, LabelClass.name)
            .join(LabelClass, LabelClass.id == Annotation.class_id)
            .where(LabelClass.project_id == p.id, Annotation.score.is_(None))
            .order_by(Annotation.sample_id, Annotation.id)
        ):
            first_label.setdefault(sid, index[name])
        out: dict[str, Any] = {
            "source": source,
            "method": meta["method"],
            "vectors": meta["vectors"],
            "points": len(ids),
            "ids": ids.tolist(),
            "x": np.round(xy[:, 0], 5).tolist(),
            "y": np.round(xy[:, 1], 5).tolist(),
            "classes": classes,
            "label": [first_label.get(int(i), -1) for i in ids],
        }
        if tag is not None:
            tagged = set(s.scalars(select(SampleTag.sample_id).where(SampleTag.tag == tag)))
            out["tagged"] = [int(int(i) in tagged) for i in ids]
        if outcome is not None:
            out["outcome"] = _outcomes(s, p.id, outcome, ids)
        return out


def _outcomes(s: Any, project_id: int, experiment: str | int, ids: Any) -> list[int]:
    from vistudio.db.training import EvalResult, Evaluation
    from vistudio.services.exports import resolve

    exp = resolve(s, project_id, experiment)[1]
    ev = s.scalar(select(Evaluation).where(Evaluation.experiment_id == exp.id))
    if ev is None or ev.status != "succeeded":
        raise Conflict(f"experiment {exp.name!r} has no finished evaluation to colour by")
    if exp.task == "classification":
        rows = s.execute(
            select(EvalResult.sample_id, EvalResult.correct).where(EvalResult.evaluation_id == ev.id)
        )
    else:  # box tasks: an image is right when it has no false positive and no missed object
        from vistudio.db.training import DetectionResult

        R = DetectionResult
        rows = s.execute(select(R.sample_id, (R.fp == 0) & (R.fn == 0)).where(R.evaluation_id == ev.id))
    correct = {int(sid): bool(ok) for sid, ok in rows}
    return [int(correct[int(i)]) if int(i) in correct else -1 for i in ids]
