"""The two numerical details that make an exported detector agree with PyTorch: the resize traced
in float64 (as eager PyTorch computes the resized size), and the region pooling's scales fixed
once per model rather than inferred from whichever image comes first."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vistudio.ml.detectors import build_detector
from vistudio.ml.export.detection import _eager_resize

# sizes whose resized side torchvision's float32 trace gets one pixel wrong (96 / 109 × 109 rounds
# down in float32; 96 / 200 × 200 rounds down in float64 unless computed as eager does)
SIZES = [(55, 109), (200, 90), (87, 173), (96, 96), (133, 61), (31, 240)]


class _Resize(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.models.detection import transform

        return transform._resize_image_and_masks(image, 96, 96)[0]


def test_the_traced_resize_gives_eager_pytorchs_size_and_pixels(tmp_path: Path) -> None:
    import onnxruntime as ort

    module = _Resize().eval()
    path = tmp_path / "resize.onnx"
    with _eager_resize(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.rand(3, 96, 96),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {1: "h", 2: "w"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for h, w in SIZES:
        x = torch.rand(3, h, w, generator=generator)
        with torch.no_grad():
            eager = module(x).numpy()  # outside the context: torchvision's own eager code
        traced = session.run(None, {"x": x.numpy()})[0]
        assert traced.shape == eager.shape, (h, w)
        assert np.abs(traced - eager).max() < 1e-4
    from torchvision.models.detection import transform

    assert transform._resize_image_and_masks.__name__ == "_resize_image_and_masks"  # put back


@pytest.mark.parametrize("name", ["maskrcnn_resnet18_fpn64", "fasterrcnn_mobilenet_v3_large_320_fpn"])
def test_results_do_not_depend_on_the_first_image_seen(name: str) -> None:
    torch.manual_seed(0)
    model, _ = build_detector(name, 3, image_size=128, score_threshold=0.0, detections_per_image=20)
    state = model.state_dict()
    generator = torch.Generator().manual_seed(1)
    landscape = torch.rand(3, 100, 144, generator=generator)
    square = torch.rand(3, 128, 128, generator=generator)
    runs = []
    for first in (landscape, square):
        fresh, _ = build_detector(name, 3, image_size=128, score_threshold=0.0, detections_per_image=20)
        fresh.load_state_dict(state)
        fresh.eval()
        with torch.no_grad():
            fresh([first])
            runs.append(fresh([square])[0])
    assert torch.equal(runs[0]["boxes"], runs[1]["boxes"]) and torch.equal(
        runs[0]["scores"], runs[1]["scores"]
    )
    pools = [model.roi_heads.box_roi_pool]
    for pool in pools:
        assert pool.scales is not None and pool.scales[0] <= 0.25  # the finest level's stride, ≥ 4
