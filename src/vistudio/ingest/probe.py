"""Probe one image file: content hash, size, format, EXIF, perceptual hash and thumbnail.

The file is read once into memory and the same bytes feed every result. JPEGs are decoded
at reduced scale (``Image.draft``) because nothing probed here needs full resolution: the
full size comes from the header, and the thumbnail and perceptual hash are small.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from vistudio.ingest.types import IngestError, Probe

# Registering twice only re-registers the same opener, so import-time registration is safe.
pillow_heif.register_heif_opener()

# Pillow's format name -> the name we store. MPO is what Pillow calls many phone JPEGs.
_FORMATS = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WEBP",
    "TIFF": "TIFF",
    "BMP": "BMP",
    "DIB": "BMP",
    "GIF": "GIF",
    "HEIF": "HEIF",
    "HEIC": "HEIF",
}

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_INTEROP_IFD = 0xA005
_MAKER_NOTE = 0x927C
_MAX_EXIF_VALUE = 200
_MAX_EXIF_TAGS = 200
_DATE_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S")


def probe_image(path: Path, *, thumb_size: int = 256) -> Probe:
    """Read ``path`` once and return its ``Probe``; raise ``IngestError`` if it is not usable.

    ``width``/``height`` are the full dimensions as displayed (EXIF orientation applied).
    The thumbnail is WebP with its longest side at most ``thumb_size``; ``phash`` is the
    64-bit DCT hash of the orientation-corrected small image as 16 hex digits.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"cannot read file: {exc.strerror or exc}") from exc
    return probe_bytes(data, thumb_size=thumb_size)


def probe_bytes(data: bytes, *, thumb_size: int = 256, sha256: str | None = None) -> Probe:
    """``probe_image`` on bytes already in memory (``sha256``: their hash, when already known)."""
    if thumb_size < 8:
        raise ValueError("thumb_size must be at least 8")
    sha = sha256 or hashlib.sha256(data).hexdigest()
    im = _open(data)
    try:
        return _probe_open(im, data, sha, thumb_size)
    finally:
        im.close()


def _open(data: bytes) -> Image.Image:
    if not data:
        raise IngestError("not an image (empty file)")
    try:
        # Between 1x and 2x the pixel limit Pillow only warns; the explicit size check in
        # _probe_open makes that an error too, without touching the process-wide warning
        # filters (warnings.catch_warnings is not thread-safe, and probes run in threads).
        im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise IngestError(_bomb_reason(str(exc))) from exc
    except UnidentifiedImageError as exc:
        raise IngestError("not an image") from exc
    except Exception as exc:  # Pillow plugins raise many types on damaged headers
        raise IngestError(f"truncated or corrupt image: {exc}") from exc
    return im


def _probe_open(im: Image.Image, data: bytes, sha: str, thumb_size: int) -> Probe:
    fmt = _FORMATS.get(im.format or "")
    if fmt is None:
        raise IngestError(f"unsupported format {im.format or 'unknown'}")
    width, height = im.size
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        raise IngestError(_bomb_reason(f"{width * height} pixels"))
    if width <= 0 or height <= 0:
        raise IngestError("truncated or corrupt image: zero size")

    if im.format in ("JPEG", "MPO"):
        # Shrink-on-load: libjpeg decodes at 1/2, 1/4 or 1/8 scale, staying >= thumb_size.
        im.draft("RGB", (thumb_size, thumb_size))
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise IngestError(_bomb_reason(str(exc))) from exc
    except Exception as exc:
        raise IngestError(f"truncated or corrupt image: {exc}") from exc

    # EXIF only after a successful load: for some formats (PNG) getexif() loads the image
    # itself, and a failure swallowed there would leave a half-decoded image behind.
    warn: list[str] = []
    meta = _read_exif(im, warn)
    orientation = meta.get("orientation")
    if isinstance(orientation, int) and orientation >= 5:
        width, height = height, width

    try:
        small = _to_display_mode(im)
        small.thumbnail((thumb_size, thumb_size), Image.Resampling.BICUBIC)
        if isinstance(orientation, int) and orientation in _TRANSPOSE:
            # Transposing after the resize is cheaper and gives the same pixels: the box is square.
            small = small.transpose(_TRANSPOSE[orientation])
        phash = str(imagehash.phash(small))
        buf = io.BytesIO()
        small.save(buf, "WEBP", quality=80, method=3)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"truncated or corrupt image: {exc}") from exc

    return Probe(
        sha256=sha,
        bytes=len(data),
        format=fmt,
        width=width,
        height=height,
        phash=phash,
        thumbnail=buf.getvalue(),
        taken_at=meta.get("taken_at"),
        camera_make=meta.get("camera_make"),
        camera_model=meta.get("camera_model"),
        lens=meta.get("lens"),
        gps_lat=meta.get("gps_lat"),
        gps_lon=meta.get("gps_lon"),
        orientation=orientation if isinstance(orientation, int) else None,
        exif=meta.get("exif", {}),
        warnings=warn,
    )


def _bomb_reason(detail: str) -> str:
    # Pillow's message carries the pixel count ("Image size (N pixels) exceeds ..."); reuse it.
    found = re.search(r"(\d+) pixels", detail)
    pixels = found.group(1) if found else "?"
    return f"image too large ({pixels} pixels, limit {Image.MAX_IMAGE_PIXELS}): possible decompression bomb"


def _to_display_mode(im: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit ``RGB`` or ``RGBA`` (when the image has alpha)."""
    mode = im.mode
    if mode in ("RGB", "RGBA"):
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Scale high bit depths into 0..255; a plain convert("L") would clip at 255.
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr8 = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        elif mode == "I":
            arr32 = arr.astype(np.int64)
            hi = int(arr32.max()) if arr32.size else 0
            lo = int(arr32.min()) if arr32.size else 0
            if lo >= 0 and hi <= 255:
                arr8 = arr32.astype(np.uint8)
            elif lo >= 0 and hi <= 65535:
                arr8 = (arr32 >> 8).astype(np.uint8)
            else:
                arr8 = _stretch(arr32.astype(np.float64))
        else:
            arr8 = _stretch(arr.astype(np.float64))
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("LA", "La", "PA", "RGBa", "RGBX") or "A" in mode:
        return im.convert("RGBA") if mode != "RGBX" else im.convert("RGB")
    if mode in ("L", "1") and "transparency" in im.info:
        return im.convert("RGBA")
    return im.convert("RGB")


def _stretch(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, dtype=np.uint8)
    lo = float(arr[finite].min())
    hi = float(arr[finite].max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.where(finite, (arr - lo) * scale, 0.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _read_exif(im: Image.Image, warn: list[str]) -> dict[str, Any]:
    """Pull the fields we keep out of EXIF; anything malformed becomes a warning, never a failure."""
    out: dict[str, Any] = {}
    try:
        exif = im.getexif()
    except Exception as exc:
        warn.append(f"malformed EXIF: {exc}")
        return out
    if not exif:
        return out
    try:
        base = dict(exif.items())
    except Exception as exc:
        warn.append(f"malformed EXIF: {exc}")
        return out
    sub = _safe_ifd(exif, _EXIF_IFD, warn)
    gps = _safe_ifd(exif, _GPS_IFD, warn)

    try:
        out["camera_make"] = _text(base.get(0x010F))
        out["camera_model"] = _text(base.get(0x0110))
        out["lens"] = _text(sub.get(0xA434))
        raw_orientation = base.get(0x0112)
        if raw_orientation is not None:
            try:
                value = int(raw_orientation)
            except (TypeError, ValueError):
                value = 0
            if 1 <= value <= 8:
                out["orientation"] = value
            else:
                warn.append(f"malformed EXIF: orientation {raw_orientation!r} ignored")
        raw_date = sub.get(0x9003) or base.get(0x0132)
        if raw_date is not None:
            out["taken_at"] = _parse_date(raw_date, warn)
        if gps:
            lat = _gps_coord(gps.get(2), gps.get(1), ("N", "S"), 90.0, warn)
            lon = _gps_coord(gps.get(4), gps.get(3), ("E", "W"), 180.0, warn)
            if lat is not None and lon is not None:
                out["gps_lat"], out["gps_lon"] = lat, lon
        out["exif"] = _human_tags(base, sub, gps)
    except Exception as exc:  # whatever a broken file throws, the image itself is still good
        warn.append(f"malformed EXIF: {exc}")
    return out


def _safe_ifd(exif: Image.Exif, tag: int, warn: list[str]) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag).items())
    except Exception as exc:
        warn.append(f"malformed EXIF: cannot read IFD 0x{tag:04X}: {exc}")
        return {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text[:_MAX_EXIF_VALUE] or None


def _parse_date(value: Any, warn: list[str]) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    warn.append(f"unparsable EXIF date {text!r}")
    return None


def _rational(value: Any) -> float | None:
    """A float from an IFDRational, a (num, den) pair or a number; None for 0/0 or junk."""
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        if not den:
            return None
        result = float(num) / float(den)
    else:
        try:
            result = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
    return result if math.isfinite(result) else None


def _gps_coord(value: Any, ref: Any, refs: tuple[str, str], bound: float, warn: list[str]) -> float | None:
    if value is None:
        return None
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    if not parts or len(parts) > 3:
        warn.append(f"malformed EXIF GPS value {value!r}")
        return None
    numbers = [_rational(p) for p in parts]
    if any(n is None for n in numbers):
        warn.append("malformed EXIF GPS value (zero or invalid denominator)")
        return None
    degrees = sum(n / 60**i for i, n in enumerate(numbers) if n is not None)
    ref_text = (_text(ref) or "").upper()[:1]
    if ref_text == refs[1]:
        degrees = -degrees
    elif ref_text and ref_text != refs[0]:
        warn.append(f"malformed EXIF GPS reference {ref_text!r}")
        return None
    if not -bound <= degrees <= bound:
        warn.append(f"malformed EXIF GPS value out of range: {degrees}")
        return None
    return round(degrees, 7)


def _human_tags(base: dict[int, Any], sub: dict[int, Any], gps: dict[int, Any]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for table, names in ((base, ExifTags.TAGS), (sub, ExifTags.TAGS), (gps, ExifTags.GPSTAGS)):
        for tag, value in table.items():
            if len(tags) >= _MAX_EXIF_TAGS:
                return tags
            name = names.get(tag)
            if name is None or tag in (_EXIF_IFD, _GPS_IFD, _INTEROP_IFD, _MAKER_NOTE):
                continue
            if isinstance(value, (bytes, bytearray, dict)):
                continue
            text = str(value).replace("\x00", "").strip()
            if text:
                tags[name] = text[:_MAX_EXIF_VALUE]
    return tags
