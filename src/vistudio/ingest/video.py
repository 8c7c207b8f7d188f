"""Short videos: probe a file's metadata and pick its keyframes at scene cuts (PyAV).

Plain paths in, plain data out; no database. ``probe`` reads the container header only;
``iter_keyframes`` decodes every frame once and yields the first frame and the first frame after
each scene cut as RGB images, as it finds them (a 200-keyframe video is never held in memory).

The cut detector is our own, on the decoder's frames: each frame is scaled by swscale to a tiny
RGB image (64×36: 6,912 values) and compared with the previous one by the mean absolute
difference of its pixels (0–255). A frame is a cut when that score is both above an absolute floor
(``threshold``, default 30) and ``ratio`` times (default 3) the mean score of the last few frames
of its scene. The floor ignores noise, grain and compression flicker (a few units); the ratio
ignores sustained motion and slow fades, whose frame-to-frame scores stay level (a 40-frame fade
between two colours moves a few units a frame); a minimum scene length drops a flash's second
"cut". Colour (not luma alone) is compared so that two scenes of equal brightness differ. A
histogram would ignore motion better but misses cuts between scenes of similar colours, and the
tiny image is what makes the test cheap: it is made while the frame is decoded, without
converting the full-size frame, which only keyframes pay for.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv"})
# FFmpeg's names of the containers we accept: anything else (an image, a text, an audio file that
# FFmpeg would happily open) is refused even when its name ends in .mp4
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "matroska"}
ANALYSIS_SIZE = (64, 36)
SCORE_WINDOW = 8  # frames of the current scene the ratio test compares with
# MP4's "unset" creation dates: 1904 (its epoch) and 1970 (Unix's) mean the camera had no clock
MIN_CREATION_YEAR = 1980


class VideoError(Exception):
    """A file that is not a usable video; ``reason`` is shown to the user per file."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VideoProbe:
    """What the container says. ``created_source``: ``container`` (its ``creation_time``, UTC) or
    ``file`` (the file's modification time). ``frames`` is the container's count or, when it has
    none, duration × fps rounded."""

    path: str
    size: int
    container: str  # mp4 | matroska
    codec: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float  # seconds
    created_at: datetime  # UTC, naive
    created_source: str

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["created_at"] = self.created_at.isoformat() + "Z"
        return d


@dataclass(frozen=True)
class Limits:
    """What a video may cost. ``max_pixels``: per frame; ``max_decode_seconds``: wall time for the
    whole decode; ``max_frames``: frames decoded at most (a header can lie about its length)."""

    max_duration: float = 900.0
    max_pixels: int = 3840 * 2160
    max_bytes: int = 4 << 30
    max_decode_seconds: float = 300.0
    max_frames: int = 200_000


@dataclass(frozen=True)
class Keyframe:
    index: int  # frame number in presentation order, 0-based
    time: float  # seconds from the start of the video
    image: Image.Image  # RGB, at most ``max_side`` on its longer side, upright
    score: float  # the cut score that made it a keyframe (0 for the first frame)


@dataclass
class KeyframeScan:
    """Filled while ``iter_keyframes`` runs: every cut found (also those thinned out of the
    keyframes) and how many frames were decoded."""

    cuts: list[tuple[int, float]] = field(default_factory=list)  # (frame index, time)
    frames: int = 0
    warnings: list[str] = field(default_factory=list)


def is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def sniff(head: bytes) -> str | None:
    """The video container of a file from its first bytes (``mp4`` or ``matroska``), else None.

    ISO base media files (mp4, mov, m4v) start with a box: a 4-byte size and a type such as
    ``ftyp`` (QuickTime files may start with ``moov``, ``mdat``, ``wide``, ``free`` or ``skip``);
    Matroska and WebM with the EBML magic 1A 45 DF A3."""
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mp4"
    return None


def _what_else(head: bytes) -> str:
    """A name for what a file that is not a video is, for its error."""
    for magic, name in (
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"\x89PNG", "a PNG image"),
        (b"GIF8", "a GIF image"),
        (b"RIFF", "a RIFF file (WAV/AVI/WebP)"),
        (b"ID3", "an MP3 file"),
        (b"%PDF", "a PDF document"),
        (b"PK\x03\x04", "a zip archive"),
    ):
        if head.startswith(magic):
            return name
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "a text file"
    return "not a recognised video format"


def _check_head(path: Path, size: int) -> str:
    if size == 0:
        raise VideoError("empty file (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(64)
    kind = sniff(head)
    if kind is None:
        raise VideoError(f"not a video: the file is {_what_else(head)}")
    return kind


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"cannot read video: {_ffmpeg_reason(exc)}") from None


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(": '", 1)[0][:300]


def _creation_time(container: Any, stream: Any, mtime: float) -> tuple[datetime, str]:
    for meta in (container.metadata, stream.metadata):
        raw = (meta or {}).get("creation_time")
        if not raw:
            continue
        try:
            when = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        if when.year >= MIN_CREATION_YEAR:
            return when, "container"
    return datetime.fromtimestamp(mtime, UTC).replace(tzinfo=None), "file"


def _probe_open(path: Path, container: Any, *, size: int, mtime: float) -> VideoProbe:
    fmt = container.format.name
    kind = CONTAINERS.get(fmt)
    if kind is None:
        raise VideoError(f"not a video container FFmpeg accepts here ({fmt})")
    videos = list(container.streams.video)
    if not videos:
        audio = bool(container.streams.audio)
        raise VideoError("no video stream (an audio-only file)" if audio else "no video stream")
    stream = videos[0]
    cc = stream.codec_context
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0:
        raise VideoError("the video stream has no picture size (corrupt header?)")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    frames = int(stream.frames or 0) or (round(duration * fps) if fps else 0)
    if not fps and frames and duration > 0:
        fps = frames / duration
    created_at, source = _creation_time(container, stream, mtime)
    return VideoProbe(
        path=str(path),
        size=size,
        container=kind,
        codec=cc.name or "unknown",
        width=width,
        height=height,
        fps=round(fps, 4),
        frames=frames,
        duration=round(max(duration, 0.0), 4),
        created_at=created_at,
        created_source=source,
    )


def probe(path: str | Path) -> VideoProbe:
    """Duration, frame rate, frame count, size in pixels and bytes, codec and creation time.

    Raises ``VideoError`` (with a reason for the user) for an empty file, a file whose bytes are
    not an MP4/QuickTime or Matroska/WebM container (whatever its name), a file without a video
    stream (audio only) and a file FFmpeg cannot open."""
    path = Path(path)
    try:
        st = path.stat()
        _check_head(path, st.st_size)
    except OSError as exc:
        raise VideoError(f"cannot read file: {exc.strerror or exc}") from None
    with _open(path) as container:
        return _probe_open(path, container, size=st.st_size, mtime=st.st_mtime)


def check_limits(p: VideoProbe, limits: Limits) -> None:
    """Refuse a video that would cost too much to decode, before decoding it."""
    if p.size > limits.max_bytes:
        raise VideoError(f"file too large ({p.size} bytes, limit {limits.max_bytes})")
    if p.duration > limits.max_duration:
        raise VideoError(
            f"video too long ({p.duration:.0f} s, limit {limits.max_duration:.0f} s: "
            "setting VISTUDIO_VIDEOS__MAX_DURATION)"
        )
    if p.width * p.height > limits.max_pixels:
        raise VideoError(
            f"video frames too large ({p.width}×{p.height}, limit {limits.max_pixels} pixels: "
            "setting VISTUDIO_VIDEOS__MAX_PIXELS)"
        )


def _upright(image: Image.Image, rotation: float) -> Image.Image:
    """Apply a frame's display rotation (PyAV's ``frame.rotation``: degrees counter-clockwise)."""
    turn = round(rotation / 90) % 4
    if turn == 1:
        return image.transpose(Image.Transpose.ROTATE_90)
    if turn == 2:
        return image.transpose(Image.Transpose.ROTATE_180)
    if turn == 3:
        return image.transpose(Image.Transpose.ROTATE_270)
    return image


def _keyframe_image(frame: Any, max_side: int) -> Image.Image:
    w, h = frame.width, frame.height
    scale = min(1.0, max_side / max(w, h))
    if scale < 1.0:
        img = frame.to_image(width=max(1, round(w * scale)), height=max(1, round(h * scale)))
    else:
        img = frame.to_image()
    rotation = 0.0
    with contextlib.suppress(Exception):
        rotation = float(frame.rotation or 0)
    return _upright(img.convert("RGB"), rotation)


def iter_keyframes(
    path: str | Path,
    *,
    threshold: float = 30.0,
    ratio: float = 3.0,
    min_scene_seconds: float = 0.5,
    min_gap_seconds: float = 2.0,
    max_keyframes: int = 200,
    max_side: int = 1280,
    limits: Limits | None = None,
    scan: KeyframeScan | None = None,
    probed: VideoProbe | None = None,
) -> Iterator[Keyframe]:
    """Decode ``path`` once and yield its keyframes in order: the first frame, then the first
    frame after each scene cut, at most one per ``min_gap_seconds`` (stretched so that the whole
    video fits in ``max_keyframes``). Every cut found is recorded in ``scan.cuts``, kept or not.

    Raises ``VideoError`` for files ``probe`` refuses, videos over ``limits`` (before decoding)
    and a decode that runs past ``limits.max_decode_seconds`` or ``limits.max_frames``. A decode
    error after some frames ends the video there with a warning in ``scan.warnings``; before the
    first frame it is a ``VideoError``."""
    import av

    limits = limits or Limits()
    scan = scan if scan is not None else KeyframeScan()
    path = Path(path)
    p = probed or probe(path)
    check_limits(p, limits)
    # long videos: spread the keyframes over the whole video rather than stopping at the cap
    gap = max(min_gap_seconds, p.duration / max_keyframes if max_keyframes > 0 else 0.0)
    fps = p.fps if p.fps > 0 else 25.0
    min_scene = max(1, math.ceil(min_scene_seconds * fps - 1e-6))
    started = time.monotonic()
    yielded = 0
    last_kept = -math.inf
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: the decoder is most of the cost
        start = stream.start_time or 0
        tb = float(stream.time_base) if stream.time_base else 1.0 / fps
        prev: np.ndarray[Any, Any] | None = None
        scores: deque[float] = deque(maxlen=SCORE_WINDOW)
        scene_start = 0
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index >= limits.max_frames:
                    raise VideoError(
                        f"more than {limits.max_frames} frames (setting VISTUDIO_VIDEOS__MAX_FRAMES)"
                    )
                if time.monotonic() - started > limits.max_decode_seconds:
                    raise VideoError(
                        f"decoding took longer than {limits.max_decode_seconds:.0f} s "
                        "(setting VISTUDIO_VIDEOS__MAX_DECODE_SECONDS)"
                    )
                t = (frame.pts - start) * tb if frame.pts is not None else index / fps
                small = frame.reformat(
                    width=ANALYSIS_SIZE[0], height=ANALYSIS_SIZE[1], format="rgb24"
                ).to_ndarray()
                small = small.astype(np.int16)
                score = 0.0
                cut = False
                if prev is not None:
                    score = float(np.abs(small - prev).mean())
                    level = sum(scores) / len(scores) if scores else 0.0
                    cut = (
                        score >= threshold
                        and score >= ratio * max(level, 1.0)
                        and index - scene_start >= min_scene
                    )
                prev = small
                if cut:
                    scan.cuts.append((index, round(t, 4)))
                    scene_start = index
                    scores.clear()
                else:
                    scores.append(score)
                if (index == 0 or cut) and yielded < max_keyframes and t - last_kept >= gap - 1e-6:
                    yielded += 1
                    last_kept = t
                    yield Keyframe(
                        index=index,
                        time=round(max(t, 0.0), 4),
                        image=_keyframe_image(frame, max_side),
                        score=score,
                    )
        except av.FFmpegError as exc:
            if index < 0:
                raise VideoError(f"cannot decode video: {_ffmpeg_reason(exc)}") from None
            scan.warnings.append(f"decoding stopped at frame {index + 1}: {_ffmpeg_reason(exc)}")
        scan.frames = index + 1
    if index < 0:
        raise VideoError("the video stream has no decodable frame")


def keyframes(path: str | Path, **options: Any) -> tuple[VideoProbe, KeyframeScan, list[Keyframe]]:
    """``probe`` and ``iter_keyframes`` at once, as lists (tests and small videos)."""
    p = probe(path)
    scan = KeyframeScan()
    frames = list(iter_keyframes(path, probed=p, scan=scan, **options))
    return p, scan, frames


def format_time(seconds: float) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` past an hour): a keyframe's place in its video."""
    tenths = round(max(seconds, 0.0) * 10)
    s, tenth = divmod(tenths, 10)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}.{tenth}" if h else f"{m:02d}:{s:02d}.{tenth}"
