"""Video keyframe benchmark: keyframe extraction throughput on generated clips (default 3 clips of
30 s, 640×360, 25 fps, H.264, a cut every 3 s with moving, noisy scenes), against the baseline in
the same run:

- baseline (the naive approach): decode every frame single-threaded, convert it to full-size RGB
  and take the mean absolute difference with the previous frame (the same threshold and ratio
  test, so it finds the same cuts);
- vistudio (``ingest.video.iter_keyframes``): the decoder's frame and slice threads, and each frame
  scaled by swscale to 64×36 RGB before the difference; only keyframes are converted full-size.

    .venv/bin/python benchmarks/video.py [--clips 3] [--seconds 30] [--width 640] [--height 360]

Prints one JSON document: frames/s and videos/s of each path, their ratio, and the cuts each found.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vistudio.ingest import video


def make_clip(path: Path, *, seconds: int, width: int, height: int, fps: int, seed: int) -> list[int]:
    """A clip of scenes (3 s each): drifting coloured blocks with noise; returns the cut frames."""
    import av

    rng = np.random.default_rng(seed)
    scene = 3 * fps
    n = seconds * fps
    cuts = list(range(scene, n, scene))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "veryfast", "crf": "23"}
        base: np.ndarray = np.zeros(1)
        for i in range(n):
            if i % scene == 0:
                blocks = rng.integers(0, 256, (height // 40 + 2, (width + n) // 40 + 2, 3)).astype(np.uint8)
                base = np.kron(blocks, np.ones((40, 40, 1), np.uint8))
            x = (i % scene) * 2  # a slow pan
            img = base[:height, x : x + width].astype(np.int16) + rng.integers(-6, 7, (height, width, 1))
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return cuts


def naive(path: Path, *, threshold: float = 30.0, ratio: float = 3.0) -> tuple[int, list[int]]:
    """Every frame decoded single-threaded and converted full-size; returns (frames, cut frames)."""
    import av

    cuts: list[int] = []
    scores: deque[float] = deque(maxlen=video.SCORE_WINDOW)
    prev = None
    n = 0
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(c.streams.video[0])):
            rgb = frame.to_ndarray(format="rgb24").astype(np.int16)
            if prev is not None:
                score = float(np.abs(rgb - prev).mean())
                level = sum(scores) / len(scores) if scores else 0.0
                if score >= threshold and score >= ratio * max(level, 1.0):
                    cuts.append(i)
                    scores.clear()
                else:
                    scores.append(score)
            prev = rgb
            n = i + 1
    return n, cuts


def ours(path: Path) -> tuple[int, list[int], int]:
    scan = video.KeyframeScan()
    kept = sum(1 for _ in video.iter_keyframes(path, scan=scan, min_gap_seconds=0.0))
    return scan.frames, [i for i, _ in scan.cuts], kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vistudio-video-bench-") as tmp:
        clips: list[tuple[Path, list[int]]] = []
        t0 = time.perf_counter()
        for k in range(args.clips):
            path = Path(tmp) / f"clip{k}.mp4"
            cuts = make_clip(
                path, seconds=args.seconds, width=args.width, height=args.height, fps=args.fps, seed=k
            )
            clips.append((path, cuts))
        made = time.perf_counter() - t0

        results: dict[str, Any] = {}
        for name in ("baseline", "vistudio"):
            frames = 0
            found_ok = 0
            wanted = 0
            kept = 0
            start = time.perf_counter()
            for path, cuts in clips:
                if name == "baseline":
                    n, got = naive(path)
                else:
                    n, got, k = ours(path)
                    kept += k
                frames += n
                wanted += len(cuts)
                found_ok += sum(any(abs(g - c) <= 1 for g in got) for c in cuts)
                found_ok -= max(0, len(got) - len(cuts))  # a false cut costs one
            seconds = time.perf_counter() - start
            results[name] = {
                "seconds": round(seconds, 3),
                "frames": frames,
                "frames_per_s": round(frames / seconds, 1),
                "videos_per_s": round(len(clips) / seconds, 3),
                "cuts_found_within_1_frame": f"{found_ok}/{wanted}",
                **({"keyframes": kept} if name == "vistudio" else {}),
            }
    print(
        json.dumps(
            {
                "benchmark": "video keyframes",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "av": _av_version()},
                "clips": {
                    "count": args.clips,
                    "seconds": args.seconds,
                    "size": f"{args.width}x{args.height}",
                    "fps": args.fps,
                    "codec": "h264",
                    "generated_in_s": round(made, 1),
                },
                **results,
                "speedup": round(results["baseline"]["seconds"] / results["vistudio"]["seconds"], 2),
            },
            indent=2,
        )
    )


def _av_version() -> str:
    import av

    return str(av.__version__)


if __name__ == "__main__":
    main()
