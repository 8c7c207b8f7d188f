from __future__ import annotations

import hashlib
import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from ingest_factories import bilevel_png, jpeg_bytes, pattern, write_image
from PIL import Image, TiffImagePlugin

from vistudio.ingest.near_dups import hamming
from vistudio.ingest.probe import probe_image
from vistudio.ingest.types import IngestError
from vistudio.storage.blobs import sha256_file


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def thumb_of(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "WEBP"
    im.load()
    return im


@pytest.mark.parametrize(
    ("suffix", "fmt"),
    [
        (".jpg", "JPEG"),
        (".png", "PNG"),
        (".webp", "WEBP"),
        (".tif", "TIFF"),
        (".bmp", "BMP"),
        (".gif", "GIF"),
    ],
)
def test_probe_common_formats(tmp_path: Path, suffix: str, fmt: str) -> None:
    path = write_image(tmp_path / f"x{suffix}", size=(300, 200))
    probe = probe_image(path)
    data = path.read_bytes()
    assert probe.format == fmt
    assert (probe.width, probe.height) == (300, 200)
    assert probe.sha256 == hashlib.sha256(data).hexdigest() == sha256_file(path)
    assert probe.bytes == len(data)
    assert len(probe.phash) == 16 and int(probe.phash, 16) >= 0
    assert thumb_of(probe.thumbnail).size == (256, 171)
    assert probe.warnings == []


def test_probe_large_jpeg_reports_full_size_and_small_thumbnail(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    pattern(2400, 1600).save(path, quality=85)
    probe = probe_image(path, thumb_size=128)
    assert (probe.width, probe.height) == (2400, 1600)
    assert thumb_of(probe.thumbnail).size == (128, 85)


def test_probe_png_16_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (64, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    probe = probe_image(path)
    assert (probe.format, probe.width, probe.height) == ("PNG", 256, 64)
    grey = np.asarray(thumb_of(probe.thumbnail).convert("L"), dtype=np.float64)
    # Clipping to 8 bits would make nearly everything white; scaling keeps the ramp.
    assert grey[:, :16].mean() < 30
    assert grey[:, -16:].mean() > 225
    assert 100 < grey.mean() < 155


def test_probe_rgba_png_keeps_alpha(tmp_path: Path) -> None:
    image = pattern(40, 30).convert("RGBA")
    image.putalpha(Image.new("L", (40, 30), 0))
    path = tmp_path / "alpha.png"
    image.save(path)
    thumb = thumb_of(probe_image(path).thumbnail)
    assert thumb.mode == "RGBA"
    assert pixel(thumb, (5, 5))[3] == 0


def test_probe_palette_png_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (20, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    for x in range(10, 20):
        for y in range(10):
            image.putpixel((x, y), 1)
    path = tmp_path / "pal.png"
    image.save(path, transparency=0)
    probe = probe_image(path)
    assert (probe.format, probe.width, probe.height) == ("PNG", 20, 10)
    thumb = thumb_of(probe.thumbnail)
    assert thumb.mode == "RGBA"
    assert pixel(thumb, (2, 5))[3] == 0
    red = pixel(thumb, (15, 5))
    assert red[0] > 200 and red[3] == 255


def test_probe_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    probe = probe_image(path)
    assert (probe.format, probe.width, probe.height) == ("GIF", 32, 32)
    r, _g, b = pixel(thumb_of(probe.thumbnail).convert("RGB"), (16, 16))
    assert r > 200 and b < 60


def test_probe_heif(tmp_path: Path) -> None:
    path = tmp_path / "photo.heic"
    try:
        pattern(64, 48).save(path, format="HEIF")
    except (KeyError, OSError, ValueError) as exc:  # pragma: no cover - encoder missing from the build
        pytest.skip(f"pillow-heif cannot encode here: {exc}")
    probe = probe_image(path)
    assert (probe.format, probe.width, probe.height) == ("HEIF", 64, 48)
    assert thumb_of(probe.thumbnail).size == (64, 48)


def _exif_jpeg(path: Path, exif: Image.Exif, size: tuple[int, int] = (40, 20)) -> Path:
    pattern(*size).save(path, exif=exif)
    return path


def test_probe_orientation_swaps_width_and_height(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    probe = probe_image(_exif_jpeg(tmp_path / "rot.jpg", exif, size=(400, 200)))
    assert probe.orientation == 6
    assert (probe.width, probe.height) == (200, 400)
    assert thumb_of(probe.thumbnail).size == (128, 256)

    exif[0x0112] = 3  # 180 degrees: no swap
    probe = probe_image(_exif_jpeg(tmp_path / "upside.jpg", exif, size=(400, 200)))
    assert (probe.width, probe.height, probe.orientation) == (400, 200, 3)


def test_probe_exif_fields(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R5"
    exif[0x0132] = "2020:01:01 00:00:00"
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2023:06:01 12:34:56"
    sub[0xA434] = "RF24-105mm F4 L IS USM"
    sub[0x927C] = b"\x00maker-secret"
    gps = exif.get_ifd(0x8825)
    gps[1] = "S"
    gps[2] = (TiffImagePlugin.IFDRational(33, 1), TiffImagePlugin.IFDRational(51, 1), 54.0)
    gps[3] = "E"
    gps[4] = (151.0, 12.0, TiffImagePlugin.IFDRational(36, 1))
    probe = probe_image(_exif_jpeg(tmp_path / "cam.jpg", exif))
    assert probe.camera_make == "Canon"
    assert probe.camera_model == "EOS R5"
    assert probe.lens == "RF24-105mm F4 L IS USM"
    assert probe.taken_at == datetime(2023, 6, 1, 12, 34, 56)
    assert probe.gps_lat == pytest.approx(-(33 + 51 / 60 + 54 / 3600), abs=1e-6)
    assert probe.gps_lon == pytest.approx(151 + 12 / 60 + 36 / 3600, abs=1e-6)
    assert probe.exif["Make"] == "Canon"
    assert probe.exif["LensModel"].startswith("RF24")
    assert "MakerNote" not in probe.exif
    assert all(len(v) <= 200 for v in probe.exif.values())
    assert probe.warnings == []


def test_probe_exif_date_falls_back_and_bad_date_warns(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0132] = "2019:12:31 23:59:58"
    assert probe_image(_exif_jpeg(tmp_path / "a.jpg", exif)).taken_at == datetime(2019, 12, 31, 23, 59, 58)
    exif[0x0132] = "0000:00:00 00:00:00"
    probe = probe_image(_exif_jpeg(tmp_path / "b.jpg", exif))
    assert probe.taken_at is None
    assert any("date" in w for w in probe.warnings)


def test_probe_long_exif_values_are_truncated(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010E] = "x" * 1000  # ImageDescription
    probe = probe_image(_exif_jpeg(tmp_path / "long.jpg", exif))
    assert probe.exif["ImageDescription"] == "x" * 200


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_probe_garbage_app1_exif_does_not_fail(tmp_path: Path) -> None:
    data = jpeg_bytes(pattern(50, 40))
    payload = b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + b"\xff\x13\x99garbage" * 20
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    path = tmp_path / "bad_exif.jpg"
    path.write_bytes(data[:2] + segment + data[2:])
    probe = probe_image(path)
    assert (probe.format, probe.width, probe.height) == ("JPEG", 50, 40)
    assert probe.taken_at is None and probe.gps_lat is None


def test_probe_non_tiff_app1_exif_does_not_fail(tmp_path: Path) -> None:
    data = jpeg_bytes(pattern(50, 40))
    payload = b"Exif\x00\x00" + bytes(range(256)) * 3
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    path = tmp_path / "bad_exif2.jpg"
    path.write_bytes(data[:2] + segment + data[2:])
    probe = probe_image(path)
    assert (probe.width, probe.height) == (50, 40)
    assert probe.exif == {} and probe.orientation is None


def test_probe_bad_gps_rationals_do_not_fail(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Nikon"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    zero = TiffImagePlugin.IFDRational
    gps[2] = (zero(52, 0), zero(0, 0), zero(1, 0))  # zero denominators
    gps[3] = "Q"  # not a reference
    gps[4] = (1.0, 2.0, 3.0)
    probe = probe_image(_exif_jpeg(tmp_path / "gps.jpg", exif))
    assert probe.camera_make == "Nikon"
    assert probe.gps_lat is None and probe.gps_lon is None
    assert any("GPS" in w for w in probe.warnings)


def test_probe_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 10)
    with pytest.raises(IngestError, match="not an image"):
        probe_image(path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(IngestError, match="not an image"):
        probe_image(empty)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_probe_truncated_image(tmp_path: Path, suffix: str) -> None:
    full = tmp_path / f"full{suffix}"
    write_image(full, size=(200, 150))
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="truncated or corrupt"):
        probe_image(cut)


def test_probe_corrupt_png_body(tmp_path: Path) -> None:
    data = bytearray(write_image(tmp_path / "ok.png", size=(80, 60)).read_bytes())
    start = data.index(b"IDAT") + 4
    data[start : start + 40] = b"\x00" * 40
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(IngestError, match="truncated or corrupt"):
        probe_image(path)


def test_probe_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "x.ppm"
    pattern(10, 10).save(path)
    with pytest.raises(IngestError, match="unsupported format PPM"):
        probe_image(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [10_000, 20_000])  # 1x-2x the limit (a warning in Pillow) and above
def test_probe_decompression_bomb(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(bilevel_png(side, side))
    assert path.stat().st_size < 200_000
    with pytest.raises(
        IngestError,
        match=rf"image too large \({side * side} pixels, limit \d+\): possible decompression bomb",
    ):
        probe_image(path)


def test_phash_is_stable_for_near_copies_and_far_for_others(tmp_path: Path) -> None:
    original = pattern(640, 480, seed=3)
    original.save(tmp_path / "a.jpg", quality=90)
    original.resize((320, 240), Image.Resampling.LANCZOS).save(tmp_path / "a_small.png")
    original.save(tmp_path / "a_low.webp", quality=40)
    pattern(640, 480, seed=4).save(tmp_path / "b.jpg", quality=90)
    h = {p.name: probe_image(p).phash for p in tmp_path.iterdir()}
    assert hamming(h["a.jpg"], h["a_small.png"]) <= 6
    assert hamming(h["a.jpg"], h["a_low.webp"]) <= 6
    assert hamming(h["a.jpg"], h["b.jpg"]) > 12


def test_phash_follows_orientation(tmp_path: Path) -> None:
    upright = pattern(300, 200, seed=5)
    upright.save(tmp_path / "upright.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated; a viewer turns it back to upright
    upright.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "stored.jpg", quality=90, exif=exif)
    a, b = probe_image(tmp_path / "upright.jpg"), probe_image(tmp_path / "stored.jpg")
    assert (b.width, b.height) == (300, 200)
    assert hamming(a.phash, b.phash) <= 6
