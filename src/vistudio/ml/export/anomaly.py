"""Export an anomaly scorer to ONNX or TorchScript, and check it against PyTorch.

**The graph** is the scorer with its sigmoid (:class:`~vistudio.ml.tasks.anomaly_detection.ScoreOutput`):
input ``input`` — the preprocessed batch ``(N, 3, S, S)`` float32 (N free) — and output ``score``
``(N, 1)``, the anomaly score in 0..1. The metadata is the classifiers' plus
:func:`~vistudio.ml.inference.onnx_anomaly.anomaly_props` (the decision threshold and its source,
the normal class, the defect types).

**The parity check** runs the same preprocessed images through eager PyTorch and the exported file:
the export fails when a score differs by more than ``PARITY_TOLERANCE``; the share of images whose
decision at the threshold agrees is reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vistudio.errors import InvalidInput
from vistudio.ml.export.models import export_onnx, export_torchscript, torchscript_logits
from vistudio.ml.inference.anomaly import OUTPUT_NAME
from vistudio.ml.inference.onnx_anomaly import OnnxAnomalyScorer, score_parity
from vistudio.ml.tasks.anomaly_detection import ScoreOutput

PARITY_BATCH = 32


class ParityFailed(InvalidInput):
    """The exported file's scores differ from PyTorch's beyond the tolerance."""


def export_scorer(
    model: nn.Module,
    dest: Path,
    *,
    format: str,
    input_size: tuple[int, int],
    props: dict[str, str],
    opset: int,
    images: Sequence[npt.NDArray[np.float32]],
    threshold: float,
) -> dict[str, Any]:
    """Write the scorer ``model`` (N×1 logits) with its sigmoid to ``dest`` (``onnx`` or
    ``torchscript``), run ``images`` (preprocessed C×H×W arrays) through it and through PyTorch,
    and return the comparison; ``ParityFailed`` when a score is off by more than the tolerance."""
    graph = ScoreOutput(model).cpu().eval()
    if format == "onnx":
        export_onnx(graph, dest, input_size=input_size, props=props, opset=opset, output_name=OUTPUT_NAME)
        runner = OnnxAnomalyScorer(dest)

        def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return runner.scores(batch)

    else:
        export_torchscript(graph, dest, input_size=input_size, props=props)

        def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return torchscript_logits(dest, batch)[:, 0]

    def reference(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            out: npt.NDArray[np.float32] = graph(torch.from_numpy(batch)).float().numpy()[:, 0]
        return out

    batch = np.stack(list(images))
    chunks = range(0, len(batch), PARITY_BATCH)
    ref = np.concatenate([reference(batch[i : i + PARITY_BATCH]) for i in chunks])
    exported = np.concatenate([run(batch[i : i + PARITY_BATCH]) for i in chunks])
    validation = score_parity(ref, exported, threshold)
    if not validation["passed"]:
        raise ParityFailed(
            f"the exported anomaly model's scores differ from PyTorch's by up to "
            f"{validation['max_abs_diff']:.3g} (tolerance {validation['tolerance']:g})",
            details=validation,
        )
    return validation
