"""The per-photo work of batch enrichment on Ray (``services/enrich.py``), as Ray Data callables.

Plain inputs and outputs, no database: a batch is a dict of columns (numpy arrays).

- ``read_files`` runs as tasks pinned to the node of the job's worker (the machine that holds the
  workspace and the library's files) and turns ``sample_id`` + ``path`` into ``data`` (the file's
  bytes; empty with an ``error`` when it cannot be read). The bytes travel to the actors through
  Ray's object store, so actors on other machines need no access to the workspace.
- ``EmbedActor``, ``FacesActor``, ``CaptionActor``: one model per actor, loaded once in
  ``__init__``; each decodes the bytes exactly as the local job decodes files (same functions),
  so the results are the local job's. A photo that cannot be decoded comes back with its
  ``error``; the rest of its batch is done.

An actor checks that the model it loaded is the version the job asked for (a node with other
weights at the same path, or another checkpoint): a mismatch raises ``ModelMismatch`` there, which
the job reports as a permanent failure.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

Batch = dict[str, Any]


class ModelMismatch(RuntimeError):
    """The model an actor loaded is not the version the job was started with."""


def read_files(batch: Batch) -> Batch:
    """``{"sample_id", "path"}`` → ``{"sample_id", "data" (bytes), "error" ("" when read)}``."""
    data: list[bytes] = []
    errors: list[str] = []
    for path in batch["path"]:
        try:
            data.append(Path(str(path)).read_bytes())
            errors.append("")
        except FileNotFoundError:
            data.append(b"")
            errors.append("file not found")
        except OSError as exc:
            data.append(b"")
            errors.append(f"unreadable file: {str(exc)[:200]}")
    return {
        "sample_id": np.asarray(batch["sample_id"], dtype=np.int64),
        "data": np.array(data, dtype=object),
        "error": np.array(errors, dtype=object),
    }


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _check_version(what: str, loaded: str, expected: str | None) -> None:
    if expected is not None and loaded != expected:
        raise ModelMismatch(
            f"ModelMismatch: the {what} loaded on this Ray node is version {loaded!r}, the job asked "
            f"for {expected!r} (other weights at the same path on this node?)"
        )


class EmbedActor:
    """CLIP image vectors: → ``{"sample_id", "vector" (n, d) float32, "error"}`` (a failed photo
    has a zero vector and its reason)."""

    def __init__(self, *, spec: dict[str, Any], version: str, device: str, weights: dict[str, Any]) -> None:
        from vistudio.ml.embed.clip import load_open_clip
        from vistudio.ml.embed.encoder import ModelSpec
        from vistudio.ml.weights import WeightsPolicy

        self.encoder = load_open_clip(
            ModelSpec.from_dict(spec), device=device, weights=WeightsPolicy(**weights)
        )
        _check_version("CLIP model", self.encoder.info.version, version)

    def __call__(self, batch: Batch) -> Batch:
        import torch

        from vistudio.ml.embed.batch import _reason, encode_batch, open_image

        enc = self.encoder
        ids = [int(i) for i in batch["sample_id"]]
        errors = {sid: str(e) for sid, e in zip(ids, batch["error"], strict=True) if e}
        ok_ids: list[int] = []
        tensors = []
        failures: list[tuple[int, str]] = []
        for sid, data in zip(ids, batch["data"], strict=True):
            if sid in errors:
                failures.append((sid, errors[sid]))
                continue
            try:
                image = open_image(io.BytesIO(data), min_side=enc.info.image_size)
                tensors.append(enc.preprocess(image))
                ok_ids.append(sid)
            except Exception as exc:  # one photo's failure is that photo's
                failures.append((sid, _reason(exc)))
        out = encode_batch(enc, ok_ids, torch.stack(tensors) if tensors else None, failures)
        vectors = np.zeros((len(ids), enc.info.dim), dtype=np.float32)
        reasons = dict(out.failures)
        row = {sid: j for j, sid in enumerate(out.ids.tolist())}
        for k, sid in enumerate(ids):
            if sid in row:
                vectors[k] = out.vectors[row[sid]]
        return {
            "sample_id": np.asarray(ids, dtype=np.int64),
            "vector": vectors,
            "error": _objects(["" if sid in row else reasons.get(sid, "not embedded") for sid in ids]),
        }


class FacesActor:
    """Faces per photo: → ``{"sample_id", "faces" (JSON of ``read_faces``' faces, bytes in
    base64), "error"}``."""

    def __init__(self, *, options: dict[str, Any], max_pixels: int, model: str) -> None:
        from vistudio.ml.faces import provider_from

        self.provider = provider_from(options)
        self.max_pixels = max_pixels
        _check_version("face model", str(self.provider.name), model)

    def __call__(self, batch: Batch) -> Batch:
        from vistudio.ml.faces import read_faces

        ids, faces, errors = [], [], []
        for sid, data, error in zip(batch["sample_id"], batch["data"], batch["error"], strict=True):
            ids.append(int(sid))
            if error:
                faces.append("")
                errors.append(str(error))
                continue
            res = read_faces(self.provider, io.BytesIO(data), max_pixels=self.max_pixels)
            if res["status"] != "ok":
                faces.append("")
                errors.append(str(res["reason"]))
                continue
            faces.append(encode_faces(res["faces"]))
            errors.append("")
        return {
            "sample_id": np.asarray(ids, dtype=np.int64),
            "faces": _objects(faces),
            "error": _objects(errors),
        }


def encode_faces(faces: list[dict[str, Any]]) -> str:
    """``read_faces``' faces as JSON text (embedding and crop bytes in base64)."""
    return json.dumps(
        [
            {
                **f,
                "embedding": base64.b64encode(f["embedding"]).decode(),
                "crop": base64.b64encode(f["crop"]).decode(),
            }
            for f in faces
        ]
    )


def decode_faces(text: str) -> list[dict[str, Any]]:
    """The inverse of ``encode_faces``."""
    return [
        {
            **f,
            "box": tuple(f["box"]),
            "embedding": base64.b64decode(f["embedding"]),
            "crop": base64.b64decode(f["crop"]),
        }
        for f in json.loads(text)
    ]


class CaptionActor:
    """Captions: → ``{"sample_id", "text", "error"}``."""

    def __init__(
        self,
        *,
        model: str,
        version: str,
        device: str,
        weights: dict[str, Any],
        max_side: int,
        max_new_tokens: int,
        num_beams: int,
    ) -> None:
        from vistudio.ml.captions import load_captioner
        from vistudio.ml.weights import WeightsPolicy

        self.captioner = load_captioner(
            model,
            policy=WeightsPolicy(**weights),
            device=device,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
        )
        self.max_side = max_side
        _check_version("captioning model", self.captioner.version, version)

    def __call__(self, batch: Batch) -> Batch:
        from vistudio.ml.captions import caption_image

        ids = [int(i) for i in batch["sample_id"]]
        errors = [str(e) for e in batch["error"]]
        images, at = [], []
        for k, (data, error) in enumerate(zip(batch["data"], errors, strict=True)):
            if error:
                continue
            try:
                images.append(caption_image(bytes(data), max_side=self.max_side))
                at.append(k)
            except Exception as exc:  # an unreadable photo is reported, not fatal
                errors[k] = str(exc)[:300]
        texts = [""] * len(ids)
        for k, text in zip(at, self.captioner.caption(images), strict=True):
            texts[k] = text
        return {
            "sample_id": np.asarray(ids, dtype=np.int64),
            "text": _objects(texts),
            "error": _objects(errors),
        }
