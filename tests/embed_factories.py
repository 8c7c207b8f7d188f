"""Helpers for the embedding and search tests: a tiny open_clip architecture registered under its
own name, settings that use it, shape pictures with captions, and a tiny CLIP trained on them."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vistudio.config import EmbedSettings, Settings
from vistudio.studio import Studio

TINY = "vistudio-test-tiny"
# A CLIP small enough to train in seconds on a CPU: 32-px images in 8-px patches, 2 narrow layers.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")


def register_tiny(name: str = TINY, config: dict[str, Any] | None = None) -> str:
    """Register a tiny open_clip model config (open_clip's own mechanism: a JSON file)."""
    import open_clip

    if name not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="vistudio-openclip-"))
        path = folder / f"{name}.json"
        path.write_text(json.dumps(config or TINY_CONFIG))
        open_clip.add_model_config(path)
    return name


def tiny_embed_settings(**extra: Any) -> EmbedSettings:
    """The tiny model with untrained weights (asked for explicitly), decoding in-process."""
    register_tiny()
    return EmbedSettings(**{"model": TINY, "pretrained": "none", "workers": 0, "batch_size": 8, **extra})


def with_embed(settings: Settings, **extra: Any) -> Settings:
    return settings.model_copy(update={"embed": tiny_embed_settings(**extra)})


def run_embedding(studio: Studio, project: str, **spec: Any) -> dict[str, Any]:
    """Start an embedding job and run it here; returns the finished job as a dict."""
    from vistudio.jobs.queue import job_dict
    from vistudio.jobs.worker import Worker
    from vistudio.services.embeddings import start_embedding

    job = start_embedding(studio, project=project, **spec)
    Worker(studio).run_one(job_id=job["id"])
    return job_dict(studio.queue.get(job["id"]))


def draw_captioned(colour: str, shape: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A ``colour`` ``shape`` at a random place and size on a light background ("a red circle")."""
    im = Image.new("RGB", (size, size), tuple(int(x) for x in rng.integers(200, 256, 3)))
    d = ImageDraw.Draw(im)
    r = int(rng.integers(size // 4, size * 7 // 16))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[colour])
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    return im


def captioned_folder(root: Path, *, per_pair: int = 5, seed: int = 1) -> Path:
    """``root/<colour>_<shape>/<i>.png``: ``per_pair`` pictures of every colour × shape."""
    rng = np.random.default_rng(seed)
    for colour in COLOURS:
        for shape in SHAPES:
            folder = root / f"{colour}_{shape}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_pair):
                draw_captioned(colour, shape, rng).save(folder / f"{colour}_{shape}_{i}.png")
    return root


def train_tiny_clip(dest: Path, *, steps: int = 400, seed: int = 0) -> Path:
    """Train the tiny CLIP on captioned shapes with the standard CLIP contrastive loss and save it
    as a self-describing checkpoint (``model_cfg`` + ``state_dict``). Deterministic for a seed."""
    import open_clip
    import torch
    from open_clip.loss import ClipLoss
    from open_clip.model import CLIP

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = CLIP(**json.loads(json.dumps(TINY_CONFIG)))
        tokenizer = open_clip.tokenizer.SimpleTokenizer(
            context_length=TINY_CONFIG["text_cfg"]["context_length"]
        )
        preprocess = open_clip.image_transform(TINY_CONFIG["vision_cfg"]["image_size"], is_train=False)
        pairs = [(c, s) for c in COLOURS for s in SHAPES]
        captions = tokenizer([f"a {c} {s}" for c, s in pairs])
        groups = 4  # four independent batches of every caption once: no duplicate captions in a batch
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
        loss_fn = ClipLoss()
        rng = np.random.default_rng(seed)
        n = len(pairs)
        model.train()
        for _ in range(steps):
            images = torch.stack(
                [preprocess(draw_captioned(c, s, rng)) for _ in range(groups) for c, s in pairs]
            )
            img_f, txt_f, scale = model(images, torch.cat([captions] * groups))
            loss = sum(
                loss_fn(img_f[g * n : (g + 1) * n], txt_f[g * n : (g + 1) * n], scale) for g in range(groups)
            )
            opt.zero_grad()
            (loss / groups).backward()
            opt.step()
            sched.step()
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"model_name": "tiny-shapes-clip", "model_cfg": TINY_CONFIG, "state_dict": model.state_dict()},
            dest,
        )
    finally:
        torch.set_num_threads(threads)
    return dest


def dated_jpeg(path: Path, *, colour: tuple[int, int, int], when: Any) -> Path:
    """A small JPEG whose EXIF says it was taken at ``when`` (a datetime)."""
    im = Image.new("RGB", (48, 36), colour)
    ImageDraw.Draw(im).ellipse((8, 6, 30, 28), fill=(255 - colour[0], 255 - colour[1], 255 - colour[2]))
    exif = Image.Exif()
    stamp = when.strftime("%Y:%m:%d %H:%M:%S")
    exif[0x0132] = stamp
    exif.get_ifd(0x8769)[0x9003] = stamp
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=90, exif=exif)
    return path


def crash_after(batches: int) -> Any:
    """A stand-in for ``embed_images`` that dies (like a killed worker) after ``batches`` batches."""
    from vistudio.ml.embed import batch as batch_module

    real = batch_module.embed_images

    def dying(*args: Any, **kwargs: Any) -> Any:
        for i, b in enumerate(real(*args, **kwargs)):
            if i == batches:
                raise RuntimeError("worker killed mid-embedding")
            yield b

    return dying
