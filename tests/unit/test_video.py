"""ingest.video: probing, cuts found within one frame, no false cuts on fades, noise and motion, and
a clear error for every file that is not a usable video."""

from __future__ import annotations

import io
import itertools
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from video_factories import FPS, H, W, fade, pattern, scenes_video, solid, write_video
from vistudio.ingest import video
from vistudio.ingest.video import Limits, VideoError


@pytest.mark.parametrize(
    ("codec", "suffix", "container", "codec_name"),
    [
        ("libx264", ".mp4", "mp4", "h264"),
        ("mpeg4", ".mov", "mp4", "mpeg4"),
        ("libvpx-vp9", ".webm", "matroska", "vp9"),
        ("libx264", ".mkv", "matroska", "h264"),
    ],
)
def test_cuts_are_found_within_one_frame_and_the_fade_is_not_one(
    tmp_path: Path, codec: str, suffix: str, container: str, codec_name: str
) -> None:
    path, cuts = scenes_video(tmp_path / f"clip{suffix}", codec=codec)
    p, scan, frames = video.keyframes(path, min_gap_seconds=0.0)
    assert (p.container, p.codec, p.width, p.height) == (container, codec_name, W, H)
    assert p.fps == pytest.approx(FPS)
    assert p.frames == 120 and p.duration == pytest.approx(12.0, abs=0.15)
    found = [i for i, _ in scan.cuts]
    assert len(found) == len(cuts), found  # no false cut: not in the fade, the noise or the drift
    for want, got in zip(cuts, found, strict=True):
        assert abs(got - want) <= 1, (want, got)
    assert scan.frames == 120
    # keyframes: the first frame, then the first frame of each scene, with their times
    assert [k.index for k in frames] == [0, *found]
    for k in frames:
        assert k.time == pytest.approx(k.index / FPS, abs=0.051)
        assert k.image.mode == "RGB" and k.image.size == (W, H)
    # the keyframe is the new scene's picture, not the old one's: the solid green scene at 45
    green = np.asarray(frames[2].image).reshape(-1, 3).mean(axis=0)
    assert green[1] > 120 and green[0] < 80 and green[2] < 80


def test_the_gap_and_the_cap_thin_keyframes_but_every_cut_is_recorded(tmp_path: Path) -> None:
    path, cuts = scenes_video(tmp_path / "clip.mp4")
    _, scan, frames = video.keyframes(path, min_gap_seconds=3.0)
    assert [i for i, _ in scan.cuts] == cuts
    times = [k.time for k in frames]
    assert times[0] == 0 and all(b - a >= 3.0 - 1e-6 for a, b in itertools.pairwise(times))
    assert [k.index for k in frames] == [0, 45, 100]  # 20 is 2 s after 0, 110 is 1 s after 100
    _, scan, frames = video.keyframes(path, min_gap_seconds=0.0, max_keyframes=2)
    # the cap spreads keyframes over the whole video (one per duration / cap) rather than stopping
    assert [k.index for k in frames] == [0, 100] and len(scan.cuts) == 4


def test_a_flash_is_one_cut_not_two(tmp_path: Path) -> None:
    frames = solid((40, 40, 40), 30) + solid((250, 250, 250), 1) + solid((40, 40, 40), 30)
    path = write_video(tmp_path / "flash.mp4", frames)
    _, scan, _ = video.keyframes(path, min_scene_seconds=0.5)
    assert [i for i, _ in scan.cuts] == [30]


def test_steady_noise_and_motion_are_not_cuts(tmp_path: Path) -> None:
    frames = pattern(7, 40, noise=20.0) + pattern(8, 40, drift=2)
    path = write_video(tmp_path / "noisy.mp4", frames)
    _, scan, _ = video.keyframes(path)
    assert [i for i, _ in scan.cuts] == [40]


def test_a_slow_fade_alone_is_no_cut(tmp_path: Path) -> None:
    path = write_video(tmp_path / "fade.mp4", fade((0, 0, 0), (255, 255, 255), 60))
    _, scan, frames = video.keyframes(path)
    assert scan.cuts == [] and [k.index for k in frames] == [0]


def test_creation_time_from_the_container_else_the_file(tmp_path: Path) -> None:
    path, _ = scenes_video(tmp_path / "dated.mp4", creation_time=datetime(2024, 5, 1, 12, 30, 5))
    p = video.probe(path)
    assert (p.created_at, p.created_source) == (datetime(2024, 5, 1, 12, 30, 5), "container")
    assert p.size == path.stat().st_size
    assert p.to_dict()["created_at"] == "2024-05-01T12:30:05Z"
    bare, _ = scenes_video(tmp_path / "bare.mp4")
    q = video.probe(bare)
    assert q.created_source == "file"
    assert abs(q.created_at.timestamp() - datetime.utcfromtimestamp(bare.stat().st_mtime).timestamp()) < 1
    # an "unset" date (MP4's 1904 epoch, or 1970) is no date
    old, _ = scenes_video(tmp_path / "epoch.mp4", creation_time=datetime(1970, 1, 1))
    assert video.probe(old).created_source == "file"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 8000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_hostile_files_get_clear_reasons(tmp_path: Path) -> None:
    good, _ = scenes_video(tmp_path / "good.mp4")
    data = good.read_bytes()
    cases = {
        "empty.mp4": (b"", "empty file"),
        "photo.mp4": (_jpeg(), "not a video: the file is a JPEG image"),
        "notes.mov": (b"hello, this is text\n" * 20, "not a video: the file is a text file"),
        "random.webm": (
            bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
            "not a video",
        ),
        "header-only.mp4": (data[:40], "cannot"),
        "ebml-junk.mkv": (b"\x1a\x45\xdf\xa3" + b"\x00" * 100, "cannot"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(VideoError) as exc:
            video.keyframes(path)
        assert reason in exc.value.reason, (name, exc.value.reason)
    with pytest.raises(VideoError, match="audio-only"):
        video.probe(_audio_only(tmp_path / "song.mp4"))
    with pytest.raises(VideoError, match="cannot read file"):
        video.probe(tmp_path / "missing.mp4")


def test_a_truncated_video_keeps_the_frames_before_the_damage_or_fails_clearly(tmp_path: Path) -> None:
    good, _ = scenes_video(tmp_path / "good.mkv", codec="libx264")
    data = good.read_bytes()
    cut = tmp_path / "cut.mkv"  # Matroska has its index at the end: the start still plays
    cut.write_bytes(data[: len(data) * 2 // 3])
    _, scan, frames = video.keyframes(cut)
    assert 0 < scan.frames < 120 and frames[0].index == 0
    mp4, _ = scenes_video(tmp_path / "good.mp4")
    head = tmp_path / "cut.mp4"  # this MP4's index (moov) is at its end: nothing to play
    head.write_bytes(mp4.read_bytes()[: mp4.stat().st_size * 2 // 3])
    with pytest.raises(VideoError, match="cannot read video"):
        video.keyframes(head)
    flipped = bytearray(mp4.read_bytes())
    for i in np.random.default_rng(3).integers(200, len(flipped), 300):
        flipped[int(i)] ^= 0xFF
    damaged = tmp_path / "bits.mp4"
    damaged.write_bytes(bytes(flipped))
    try:  # FFmpeg decodes what it can: a warning and the frames before the damage, or a reason
        _, scan, frames = video.keyframes(damaged)
    except VideoError as exc:
        assert exc.reason.startswith("cannot")
    else:
        assert scan.warnings and frames and scan.frames < 120


def test_limits_refuse_before_decoding(tmp_path: Path) -> None:
    path, _ = scenes_video(tmp_path / "clip.mp4")
    with pytest.raises(VideoError, match="too long"):
        video.keyframes(path, limits=Limits(max_duration=5))
    with pytest.raises(VideoError, match="too large"):
        video.keyframes(path, limits=Limits(max_pixels=W * H - 1))
    with pytest.raises(VideoError, match="more than 50 frames"):
        video.keyframes(path, limits=Limits(max_frames=50))
    with pytest.raises(VideoError, match="longer than"):
        video.keyframes(path, limits=Limits(max_decode_seconds=0))


def test_keyframe_images_are_scaled_to_max_side(tmp_path: Path) -> None:
    frames = solid((10, 200, 10), 5, w=320, h=240)
    path = write_video(tmp_path / "big.mp4", frames)
    _, _, kfs = video.keyframes(path, max_side=100)
    assert kfs[0].image.size == (100, 75)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x00\x00\x00\x18ftypmp42", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x00", "mp4"),
        (b"\x1a\x45\xdf\xa3\x9f", "matroska"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", None),
        (b"", None),
        (b"ftyp", None),
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    assert video.sniff(head) == kind


def test_format_time() -> None:
    assert video.format_time(0) == "00:00.0"
    assert video.format_time(12.44) == "00:12.4"
    assert video.format_time(75.96) == "01:16.0"
    assert video.format_time(3725.0) == "1:02:05.0"
    assert video.format_time(-1) == "00:00.0"
    assert video.is_video_name("A.MP4") and not video.is_video_name("a.jpg")
