"""Videos written by the tests (PyAV): solid-colour and pattern scenes with cuts at known frames, a
slow fade that is not a cut, noise within a scene."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

W, H, FPS = 64, 48, 10


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int = FPS,
    codec: str = "libx264",
    creation_time: datetime | None = None,
) -> Path:
    """Encode RGB ``frames`` (H×W×3 uint8) into ``path`` (the container from its suffix)."""
    import av

    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        if creation_time is not None:
            out.metadata["creation_time"] = creation_time.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def solid(colour: tuple[int, int, int], n: int, *, w: int = W, h: int = H) -> list[np.ndarray]:
    return [np.full((h, w, 3), colour, np.uint8) for _ in range(n)]


def pattern(
    seed: int, n: int, *, w: int = W, h: int = H, noise: float = 0.0, drift: int = 0
) -> list[np.ndarray]:
    """Blocks of random colours (one layout per ``seed``), with per-frame Gaussian ``noise`` and a
    horizontal ``drift`` of pixels a frame (motion within the scene)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (h // 8 + 1, (w + n * drift) // 8 + 2, 3)).astype(np.float32)
    base = np.kron(blocks, np.ones((8, 8, 1), np.float32))
    noise_rng = np.random.default_rng(seed + 1000)
    out = []
    for i in range(n):
        x = i * drift
        img = base[:h, x : x + w]
        if noise:
            img = img + noise_rng.normal(0, noise, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def fade(
    a: tuple[int, int, int], b: tuple[int, int, int], n: int, *, w: int = W, h: int = H
) -> list[np.ndarray]:
    """A linear dissolve from colour ``a`` to ``b`` over ``n`` frames (not a cut)."""
    ca, cb = np.array(a, np.float32), np.array(b, np.float32)
    return [np.full((h, w, 3), ca + (cb - ca) * (i + 1) / n, np.float32).astype(np.uint8) for i in range(n)]


def scenes_video(path: Path, **kwargs: object) -> tuple[Path, list[int]]:
    """The standard test clip (10 fps, 12 s): red, a noisy pattern, a 40-frame fade, a drifting
    pattern, blue; returns it with the frame numbers of its 4 cuts (the fade is not one)."""
    parts = [
        solid((200, 30, 30), 20),  # 0-19
        pattern(1, 25, noise=12.0),  # 20-44 (cut at 20)
        solid((30, 160, 40), 15),  # 45-59 (cut at 45)
        fade((30, 160, 40), (40, 40, 200), 40),  # 60-99: slow dissolve, no cut
        pattern(2, 10, drift=1),  # 100-109 (cut at 100)
        solid((40, 40, 200), 10),  # 110-119 (cut at 110)
    ]
    frames = [f for part in parts for f in part]
    write_video(path, frames, **kwargs)  # type: ignore[arg-type]
    return path, [20, 45, 100, 110]
