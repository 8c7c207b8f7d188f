"""Helpers of the DDP training tests: a tiny convolutional classifier without batch norm,
registered in the model catalog of the test process and of every DDP process it starts.

PyTorch's SyncBatchNorm runs on GPUs only: on CPU, DDP processes normalise over their own part of
the batch, so a catalog model (all have batch norm) trains a little differently with 2 processes
than with one. Without batch norm, DDP over 2 processes computes the same steps as one process
(same batches, gradients averaged over equal halves), up to the order of float sums — which is
what the comparison test checks, tightly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

TEST_MODEL = "ddp_test_cnn"


def _build(weights: Any = None, num_classes: int = 1000) -> nn.Module:
    net = nn.Sequential()
    net.add_module(
        "features",
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        ),
    )
    net.add_module("fc", nn.Linear(16, num_classes))
    return net


def register_test_model() -> bool:
    """Register :data:`TEST_MODEL` unless it is there; True when this call added it."""
    from torchvision.models import ResNet18_Weights

    from vistudio.ml.models import MODELS, ModelSpec, _fc

    if TEST_MODEL in MODELS.entries:
        return False
    # the weights entry only lends its normalisation (mean/std): the model is never pretrained
    spec = ModelSpec(
        TEST_MODEL, "test", _build, ResNet18_Weights.DEFAULT, _fc, min_image_size=16, total_stride=4
    )
    MODELS.add(TEST_MODEL, spec)
    return True


@contextmanager
def catalog_test_model() -> Iterator[str]:
    """:data:`TEST_MODEL` in this process's catalog for the duration (removed afterwards, so that
    tests that list the catalog never see it)."""
    from vistudio.ml.models import MODELS

    added = register_test_model()
    try:
        yield TEST_MODEL
    finally:
        if added:
            MODELS.entries.pop(TEST_MODEL, None)


def rank_main(*args: Any) -> None:
    """A DDP child's entry point: the test model registered, then the real ``_child_main``."""
    from vistudio.ml.training.process import _child_main

    register_test_model()
    _child_main(*args)


class _NeverSet:
    def is_set(self) -> bool:
        return False


def rank_main_deaf(spec: Any, conn: Any, stop: Any, env: Any = None) -> None:
    """As :func:`rank_main`, but only rank 0 ever sees the stop flag: the other ranks learn of a
    stop from rank 0 alone (a flag read a moment later than rank 0 did, made certain)."""
    rank_main(spec, conn, stop if spec.rank == 0 else _NeverSet(), env)
