"""Export a regressor to ONNX or TorchScript, and check it against PyTorch.

**The graph** is the whole :class:`~vistudio.ml.tasks.regression.Regressor`: input ``input`` — the
preprocessed batch ``(N, 3, S, S)`` float32 (N free; the shared evaluation preprocessing of
:mod:`vistudio.ml.preprocess`, whose parameters the metadata holds) — and output ``values``
``(N, T)``, already in the targets' units: the training z-score is undone inside the graph (a
multiply and an add by the training subset's ``target_std`` and ``target_mean``, constants of the
graph), so any runtime gets the values without knowing about the normalisation. The metadata is
the classifiers' (:func:`~vistudio.ml.inference.onnx.metadata_props`: targets as ``class_names``,
preprocess, task, model…) plus :func:`~vistudio.ml.inference.regression.regression_props` (the
output's name, the targets, the mean and std, for the record).

**The parity check** runs the same preprocessed images through eager PyTorch and the exported file
and compares the values (:func:`~vistudio.ml.inference.regression.value_parity`): the export fails
when a value differs by more than ``PARITY_TOLERANCE`` of its target's standard deviation.
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
from vistudio.ml.inference.regression import OUTPUT_NAME, OnnxRegressor, value_parity

PARITY_BATCH = 32


class ParityFailed(InvalidInput):
    """The exported file's values differ from PyTorch's beyond the tolerance."""


def pytorch_values(model: nn.Module, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The eager model's N×T values of a preprocessed batch, on the CPU (the reference)."""
    model = model.cpu().eval()
    with torch.inference_mode():
        out: npt.NDArray[np.float32] = model(torch.from_numpy(batch)).float().numpy()
    return out


def export_regressor(
    model: nn.Module,
    dest: Path,
    *,
    format: str,
    input_size: tuple[int, int],
    props: dict[str, str],
    opset: int,
    images: Sequence[npt.NDArray[np.float32]],
    target_std: Sequence[float],
) -> dict[str, Any]:
    """Write ``model`` to ``dest`` (``onnx`` or ``torchscript``), run ``images`` (preprocessed
    C×H×W arrays) through it and through PyTorch, and return the comparison; ``ParityFailed``
    when a value is off by more than the tolerance (the file is left for the caller to remove)."""
    if format == "onnx":
        export_onnx(model, dest, input_size=input_size, props=props, opset=opset, output_name=OUTPUT_NAME)
        runner = OnnxRegressor(dest)

        def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return runner.values(batch)

    else:
        export_torchscript(model, dest, input_size=input_size, props=props)

        def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return torchscript_logits(dest, batch)

    batch = np.stack(list(images))
    chunks = range(0, len(batch), PARITY_BATCH)
    reference = np.concatenate([pytorch_values(model, batch[i : i + PARITY_BATCH]) for i in chunks])
    exported = np.concatenate([run(batch[i : i + PARITY_BATCH]) for i in chunks])
    validation = value_parity(reference, exported, target_std)
    if not validation["passed"]:
        raise ParityFailed(
            f"the exported regressor's values differ from PyTorch's by up to {validation['max_abs_diff']:.3g} "
            f"({validation['max_std_diff']:.3g} target standard deviations; tolerance "
            f"{validation['tolerance']:g})",
            details=validation,
        )
    return validation
