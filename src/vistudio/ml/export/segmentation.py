"""Export a semantic segmentation model to ONNX (or TorchScript), and check it against PyTorch.

**The graph** is the network alone, as for classifiers: input ``input`` — the preprocessed batch
``(N, 3, S, S)`` float32 (N free; the shared evaluation preprocessing of :mod:`vistudio.ml.preprocess`,
whose parameters the metadata holds) — and output ``logits`` ``(N, K, S, S)``, ``K`` the model's
classes, background (0) first. The metadata is the classifiers' (:func:`~vistudio.ml.inference.
onnx.metadata_props`: classes, preprocess, task, model…) plus :func:`segmenter_props`.

**The label map is made after the graph**, by the function the evaluation uses
(``ml.tasks.semantic_segmentation.predict_label_map``: the logits upsampled bilinearly to the
image's own size, ``align_corners=False``, then the argmax; see
:mod:`vistudio.ml.inference.onnx_segmentation`). Inside the graph it could not be exact: the output
size differs per image, so the graph would run one image per call and take the size as an input,
and ONNX Runtime's ``Resize`` and ``ArgMax`` compute in their own order — a pixel whose two best
classes are nearly tied could come out differently from the evaluation's map. Outside, the same
code gives the same map from the same logits; a batch of images of any sizes runs in one call;
large photos are resized a few classes at a time (``predict_label_map`` chunks); and the raw
logits stay available to whoever wants probabilities. The exported file's only difference from
PyTorch is then its logits, which the check below measures.

**The parity check** (:func:`segmentation_parity`) runs the same preprocessed images through eager
PyTorch and the exported file and reports the largest logit difference (``max_abs_diff``, at
``S``×``S``), the largest difference of the per-pixel softmax probabilities, and — through
``predict_label_map`` at each image's own size, i.e. the label maps evaluation and predict give —
the number and share of pixels whose label differs (``pixels_differing``,
``pixel_disagreement``; ``top1_agreement`` is its complement, the name the classifiers' check and
pages use). The export fails when more than ``PIXEL_TOLERANCE`` of the pixels differ.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vistudio.ml.export.models import check_opset
from vistudio.ml.inference.onnx_segmentation import (
    BACKGROUND_INDEX,
    IGNORE_INDEX,
    INPUT_NAME,
    OUTPUT_NAME,
    label_maps,
)
from vistudio.storage.atomic import atomic_write_bytes

# the share of pixels whose label may differ between PyTorch and the exported file before the export
# fails: differences come only from float rounding of logits, which flips nearly tied pixels alone
PIXEL_TOLERANCE = 1e-3
PARITY_BATCH = 8

POSTPROCESS = (
    "logits upsampled bilinearly (align_corners=False) to the image's own size, then the argmax over "
    "classes (the lowest index on a tie): ml.tasks.semantic_segmentation.predict_label_map"
)

Logits = npt.NDArray[np.float32]
Sample = tuple[npt.NDArray[np.float32], tuple[int, int]]  # (3, S, S) preprocessed, (width, height)


def segmenter_props(
    meta: dict[str, Any], *, colours: Sequence[tuple[int, int, int]] | None = None
) -> dict[str, Any]:
    """What a segmenter's file says about its outputs and their post-processing; ``colours``: each
    class's colour on the project's pages, for the label-map PNGs predict writes (the evaluation's)."""
    config = meta.get("config") or {}
    extra: dict[str, Any] = {"class_colours": [list(c) for c in colours]} if colours is not None else {}
    return extra | {
        "output_name": OUTPUT_NAME,
        "output_layout": "NKHW",
        "background_index": str(BACKGROUND_INDEX),
        "ignore_index": str(int(meta.get("ignore_index", IGNORE_INDEX))),
        "postprocess": POSTPROCESS,
        "family": str(meta.get("family") or config.get("family") or ""),
    }


def export_segmenter_onnx(
    model: nn.Module,
    dest: Path,
    *,
    input_size: tuple[int, int],
    num_classes: int,
    props: dict[str, str],
    opset: int,
) -> Path:
    """ONNX of a segmenter: ``input`` ``(N, 3, H, W)`` → ``logits`` ``(N, K, H, W)`` with a dynamic
    batch axis and the other axes fixed to ``input_size`` and ``num_classes``; ``props`` embedded."""
    import onnx

    check_opset(opset)
    model = model.cpu().eval()
    height, width = input_size
    example = torch.zeros(2, 3, height, width)
    with (
        tempfile.TemporaryDirectory(prefix="vistudio-onnx-") as tmp,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        # the TorchScript-based exporter (dynamo=False): the one that runs offline with the installed
        # packages, as for classifiers
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(raw),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
        proto = onnx.load(str(raw))
    # the exporter names the output's axes after the last Resize ("Resizelogits_dim_1"…): say what
    # they are, so that a reader of the file (Netron, onnxruntime's get_outputs) sees (batch, K, H, W)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    for dim, side in zip(list(dims)[1:], (num_classes, height, width), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = int(side)
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "vistudio"
    onnx.checker.check_model(proto)
    atomic_write_bytes(dest, proto.SerializeToString())
    return dest


def pytorch_logits(model: nn.Module, batch: npt.NDArray[np.float32]) -> Logits:
    """Eager PyTorch's logits ``(N, K, S, S)`` of a preprocessed batch, on the CPU."""
    model = model.cpu().eval()
    with torch.inference_mode():
        out: Logits = model(torch.from_numpy(np.ascontiguousarray(batch))).float().numpy()
    return out


def _softmax(logits: Logits) -> npt.NDArray[np.float64]:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    result: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return result


def segmentation_parity(
    samples: Sequence[Sample],
    reference: Callable[[npt.NDArray[np.float32]], Logits],
    exported: Callable[[npt.NDArray[np.float32]], Logits],
    *,
    batch_size: int = PARITY_BATCH,
    check_cancelled: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Compare two runtimes' logits and label maps on ``samples`` (each a preprocessed image and the
    ``(width, height)`` its label map gets), a batch at a time.

    ``max_abs_diff``: the largest |logit difference|; ``max_abs_diff_probs``: of the softmax
    probabilities; ``pixels``: pixels compared (every image at its own size);
    ``pixels_differing`` and ``pixel_disagreement`` (their share): pixels whose label differs in
    the two label maps; ``top1_agreement``: 1 − that share; ``images_identical``: images whose maps
    are equal; ``worst_image_disagreement``: the largest share of one image; ``passed``: at most
    ``PIXEL_TOLERANCE`` of the pixels differ."""
    max_diff = max_probs = worst = 0.0
    pixels = differing = identical = 0
    shape: list[int] | None = None
    for start in range(0, len(samples), batch_size):
        if check_cancelled is not None:
            check_cancelled()
        chunk = samples[start : start + batch_size]
        batch = np.stack([a for a, _ in chunk]).astype(np.float32, copy=False)
        ref, exp = reference(batch), exported(batch)
        if ref.shape != exp.shape:
            raise ValueError(f"exported logits {exp.shape} differ in shape from PyTorch's {ref.shape}")
        shape = list(ref.shape[1:])
        max_diff = max(max_diff, float(np.max(np.abs(ref.astype(np.float64) - exp))))
        max_probs = max(max_probs, float(np.max(np.abs(_softmax(ref) - _softmax(exp)))))
        sizes = [size for _, size in chunk]
        for a, b in zip(label_maps(ref, sizes), label_maps(exp, sizes), strict=True):
            n, d = int(a.size), int(np.count_nonzero(a != b))
            pixels += n
            differing += d
            identical += d == 0
            worst = max(worst, d / max(1, n))
    share = differing / pixels if pixels else None
    return {
        "images": len(samples),
        "logits_shape": shape,  # (K, S, S) of one image
        "max_abs_diff": max_diff if samples else None,
        "max_abs_diff_probs": max_probs if samples else None,
        "pixels": pixels,
        "pixels_differing": differing,
        "pixel_disagreement": share,
        "top1_agreement": None if share is None else 1.0 - share,
        "images_identical": identical,
        "worst_image_disagreement": worst if samples else None,
        "tolerance": {"pixel_disagreement": PIXEL_TOLERANCE},
        "passed": share is None or share <= PIXEL_TOLERANCE,
    }


def noise_samples(input_size: tuple[int, int], count: int = 4) -> list[Sample]:
    """Seeded standard-normal inputs (already "normalised") with label maps of assorted sizes: the
    check's inputs when a split has no readable image."""
    rng = np.random.default_rng(0)
    sizes = [(input_size[1], input_size[0]), (97, 61), (40, 130), (256, 192)]
    return [
        (rng.standard_normal((3, *input_size)).astype(np.float32), sizes[i % len(sizes)])
        for i in range(count)
    ]


class ParityFailed(ValueError):
    """The exported file labels more pixels otherwise than PyTorch than the tolerance allows."""


def export_segmenter(
    model: nn.Module,
    dest: Path,
    *,
    fmt: str,
    input_size: tuple[int, int],
    preprocess: dict[str, Any],
    props: dict[str, str],
    opset: int,
    images: Sequence[str | Path],
    check_cancelled: Callable[[], None] | None = None,
    on_validating: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Write ``model`` to ``dest`` as ``fmt`` (``onnx`` or ``torchscript``, the latter the generic
    traced module of :func:`~vistudio.ml.export.models.export_torchscript`), then check it against
    eager PyTorch on ``images`` decoded as evaluation decodes them (unreadable ones skipped; seeded
    noise when none is readable) → the validation dict of :func:`segmentation_parity` with its
    ``source``, ``against`` and ``runtime``. Raises :class:`ParityFailed` when it does not pass
    (the file stays: the caller decides what to do with it)."""
    from vistudio.ml.export.models import export_torchscript, torchscript_logits
    from vistudio.ml.inference.onnx_segmentation import OnnxSegmenter, segmentation_input

    exported: Callable[[npt.NDArray[np.float32]], Logits]
    if fmt == "onnx":
        num_classes = int(props["num_classes"])
        export_segmenter_onnx(
            model, dest, input_size=input_size, num_classes=num_classes, props=props, opset=opset
        )
        exported = OnnxSegmenter(dest).logits
    elif fmt == "torchscript":
        export_torchscript(model, dest, input_size=input_size, props=props)

        def exported(batch: npt.NDArray[np.float32]) -> Logits:
            return torchscript_logits(dest, batch)
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    if check_cancelled is not None:
        check_cancelled()
    if on_validating is not None:
        on_validating()
    samples: list[Sample] = []
    for path in images:
        try:
            samples.append(segmentation_input(path, preprocess))
        except Exception:  # an unreadable image is simply not used for the check
            continue
    source = "split images"
    if not samples:  # no readable image: check on seeded noise rather than not at all
        samples = noise_samples(input_size)
        source = "random inputs (the split has no readable images)"
    validation = {
        **segmentation_parity(
            samples,
            lambda batch: pytorch_logits(model, batch),
            exported,
            check_cancelled=check_cancelled,
        ),
        "source": source,
        "against": "PyTorch (eager, CPU)",
        "runtime": "onnxruntime (CPU)" if fmt == "onnx" else "torch.jit (CPU)",
    }
    if not validation["passed"]:
        raise ParityFailed(
            f"the exported segmenter labels {validation['pixels_differing']} of {validation['pixels']} "
            f"pixels ({validation['pixel_disagreement']:.3%}) of {validation['images']} image(s) "
            f"otherwise than PyTorch (max |Δlogit| {validation['max_abs_diff']:.2e}); tolerance: "
            f"{PIXEL_TOLERANCE:.1%} of the pixels"
        )
    return validation
