"""Helpers for the web GUI tests: a temp workspace, the real app under uvicorn, headless Chromium."""

from __future__ import annotations

import colorsys
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vistudio.config import ImportSettings, JobSettings, Settings
from vistudio.studio import Studio

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
SHAPES = ("circle", "square", "triangle")


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread → its base URL; stopped after."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def web_settings(root: Path, **extra: Any) -> Settings:
    extra.setdefault("offline", True)  # tests never download model weights
    return Settings(
        home=root / "ws",
        import_roots=[root],
        allowed_hosts=["localhost", "127.0.0.1", "testserver"],  # TestClient's host
        imports=ImportSettings(workers=1),
        jobs=JobSettings(poll_seconds=0.05, heartbeat_seconds=0.5),
        **extra,
    )


def draw_shape(path: Path, *, shape: str, index: int, size: int = 48) -> Path:
    """A small picture of ``shape`` whose colours vary with ``index`` (so every file is distinct)."""
    hue = (index * 0.123 + SHAPES.index(shape) * 0.31) % 1.0
    fg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.8, 0.9))
    bg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.25, 0.95))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    m = 6 + index % 5
    if shape == "circle":
        d.ellipse((m, m, size - m, size - m), fill=fg)
    elif shape == "square":
        d.rectangle((m, m, size - m, size - m), fill=fg)
    else:
        d.polygon([(size / 2, m), (size - m, size - m), (m, size - m)], fill=fg)
    d.point((index % size, (index * 7) % size), fill=(index % 256, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="PNG")
    return path


def make_shapes_zip(dest: Path, *, per_class: int = 8) -> Path:
    """A zip of class folders: circle/, square/, triangle/ with ``per_class`` PNGs each."""
    work = dest.parent / (dest.stem + "-src")
    with zipfile.ZipFile(dest, "w") as zf:
        for shape in SHAPES:
            for i in range(per_class):
                p = draw_shape(work / shape / f"{shape}_{i:02d}.png", shape=shape, index=i)
                zf.write(p, f"{shape}/{p.name}")
    return dest


def make_tiny_folder(dest: Path, *, count: int, long_name: str | None = None) -> Path:
    """``count`` distinct 8×8 PNGs in one folder (no class folders), plus one with ``long_name``."""
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        colour = (i % 256, (i // 256) * 50 % 256, (i * 37) % 256)
        Image.new("RGB", (8, 8), colour).save(dest / f"tiny_{i:04d}.png")
    if long_name:
        draw_shape(dest / long_name, shape="circle", index=999)
    return dest


def wait_for_job(studio: Studio, job_id: int, timeout: float = 60.0) -> dict[str, Any]:
    from vistudio.jobs.queue import FINISHED, job_dict

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = studio.queue.get(job_id)
        if job.status in FINISHED:
            return job_dict(job)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def make_yolo_obb(dest: Path) -> Path:
    """A YOLO (task: obb) folder with one 160×120 image holding a box, a rotated box and a polygon."""
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "labels").mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (160, 120), (235, 240, 250))
    d = ImageDraw.Draw(im)
    d.rectangle((16, 12, 64, 60), fill=(220, 60, 60))
    d.polygon([(100, 20), (140, 40), (120, 80), (84, 60)], fill=(60, 120, 220))
    d.polygon([(30, 80), (70, 110), (10, 110)], fill=(60, 180, 90))
    im.save(dest / "images" / "scene.png")
    (dest / "data.yaml").write_text("task: obb\nnames: [car, boat]\ntrain: images\n")
    (dest / "labels" / "scene.txt").write_text(
        "0 0.25 0.3 0.3 0.4\n"  # box
        "1 0.625 0.1667 0.875 0.3333 0.75 0.6667 0.525 0.5\n"  # rotated box (8 numbers, obb)
        "0 0.1875 0.6667 0.4375 0.9167 0.0625 0.9167\n"  # triangle polygon (6 numbers)
    )
    return dest


def htmx_settled(page: Any) -> None:
    """Wait until htmx finished its requests and swaps: it wires swapped-in content only after its
    settle delay, so a change made before that would reach a form with no trigger yet."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def alpine_ready(page: Any) -> None:
    """Wait until the deferred scripts ran and Alpine bound its components: a click before that
    would land on an element with no handler yet."""
    page.wait_for_function(
        "() => document.readyState === 'complete' && window.Alpine !== undefined"
        " && [...document.querySelectorAll('[x-data]')].every(el => el._x_dataStack)"
    )


@contextmanager
def checked_page(browser: Any, viewport: dict[str, int]) -> Iterator[Any]:
    """A fresh page of ``browser`` at ``viewport``; a JavaScript error on it fails the test."""
    context = browser.new_context(viewport=viewport)
    p = context.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
