"""Export a classifier to ONNX or TorchScript with its metadata, and check it against PyTorch.

Both formats take an N×3×H×W float32 batch (N free) and return N×C logits. The metadata of
:func:`vistudio.ml.inference.onnx.metadata_props` is embedded — ONNX ``metadata_props``,
TorchScript extra file ``vistudio.json`` — so the file alone is enough to use the model.
Files are written atomically (temp file in the same folder → fsync → rename).
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from vistudio.errors import BadRequest, InvalidInput
from vistudio.ml.export import MAX_OPSET, MIN_OPSET
from vistudio.ml.inference.metrics import softmax
from vistudio.storage.atomic import atomic_write_bytes

TORCHSCRIPT_META = "vistudio.json"


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadRequest(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")
    return opset


def export_onnx(
    model: nn.Module,
    dest: Path,
    *,
    input_size: tuple[int, int],
    props: dict[str, str],
    opset: int,
    output_name: str = "logits",
) -> Path:
    """ONNX with a dynamic batch axis (input ``input``, output ``output_name``: a classifier's
    ``logits``, a regressor's ``values``) and ``props`` embedded."""
    import onnx

    check_opset(opset)
    model = model.cpu().eval()
    example = torch.zeros(2, 3, *input_size)
    with tempfile.TemporaryDirectory(prefix="vistudio-onnx-") as tmp, warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of torch.export's, which needs
        # onnxscript; this one is what runs offline with the installed packages
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(raw),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=[output_name],
            dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True,
        )
        proto = onnx.load(str(raw))
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "vistudio"
    onnx.checker.check_model(proto)
    atomic_write_bytes(dest, proto.SerializeToString())
    return dest


def export_torchscript(
    model: nn.Module, dest: Path, *, input_size: tuple[int, int], props: dict[str, str]
) -> Path:
    """A traced TorchScript module with ``props`` in the extra file ``vistudio.json``."""
    model = model.cpu().eval()
    example = torch.zeros(2, 3, *input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still the portable format
        traced = torch.jit.trace(model, example, check_trace=False)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(traced, buf, _extra_files={TORCHSCRIPT_META: json.dumps(props, sort_keys=True)})
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def load_torchscript(path: Path) -> tuple[Any, dict[str, str]]:
    """A TorchScript file written by :func:`export_torchscript` and its metadata."""
    extra = {TORCHSCRIPT_META: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise InvalidInput(f"not a loadable TorchScript file: {path.name}: {exc}") from None
    try:
        props = json.loads(extra[TORCHSCRIPT_META] or "{}")
    except ValueError:
        props = {}
    return module.eval(), props


def onnx_logits(path: Path, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Logits of an ONNX file for a preprocessed batch, with ONNX Runtime on the CPU."""
    from vistudio.ml.inference.onnx import OnnxClassifier

    return OnnxClassifier(path).logits(batch)


def torchscript_logits(path: Path, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    module, _ = load_torchscript(path)
    with torch.inference_mode():
        out: npt.NDArray[np.float32] = module(torch.from_numpy(batch)).float().numpy()
    return out


def parity(reference: npt.NDArray[np.float32], exported: npt.NDArray[np.float32]) -> dict[str, Any]:
    """How far an exported model's logits are from PyTorch's on the same batch.

    ``max_abs_diff`` is over logits, ``max_abs_diff_probs`` over softmax probabilities,
    ``top1_agreement`` the share of images whose best class is the same.
    """
    if reference.shape != exported.shape:
        raise InvalidInput(
            f"exported outputs {exported.shape} differ in shape from PyTorch's {reference.shape}"
        )
    if reference.shape[0] == 0:
        return {"images": 0, "max_abs_diff": None, "max_abs_diff_probs": None, "top1_agreement": None}
    p_ref, p_exp = softmax(reference), softmax(exported)
    agree = np.argmax(p_ref, axis=1) == np.argmax(p_exp, axis=1)
    return {
        "images": int(reference.shape[0]),
        "max_abs_diff": float(np.max(np.abs(reference.astype(np.float64) - exported))),
        "max_abs_diff_probs": float(np.max(np.abs(p_ref - p_exp))),
        "top1_agreement": float(agree.mean()),
    }
