"""A tiny image-captioning model for the tests: a ``BlipForConditionalGeneration`` of about 200,000
parameters with a word-level tokenizer, trained here on synthetic images that say "a {colour}
{shape}", saved with ``save_pretrained`` (under 1 MB) and loaded by the product's caption code
exactly as a downloaded BLIP is (a folder: config, weights, processor, tokenizer).

    .venv/bin/python tests/caption_model.py [--out DIR] [--steps N]

Built once per machine into ``.cache/caption-model`` (``make test`` builds it before the suite;
the tests call :func:`tiny_blip`); nothing large is committed. Measured on this 2-core machine
(shared): 500 steps → colour 100 %, shape 65 %; 1,500 steps → both 100 % on fresh images
(≈ 60 s on an idle core). Position words are not learnt (the tests ask for colour and shape only).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "caption-model"
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (235, 215, 30)}
SHAPES = ("circle", "square", "triangle")
SIZE = 64
VERSION = "1"  # bump to rebuild cached models after a change here
STEPS = 1500


def draw(colour: str, shape: str, rng: random.Random) -> Any:
    """A ``SIZE``² RGB image of one ``colour`` ``shape`` on a light, slightly noisy background."""
    from PIL import Image, ImageDraw

    bg = tuple(rng.randint(200, 250) for _ in range(3))
    img = Image.new("RGB", (SIZE, SIZE), bg)  # type: ignore[arg-type]
    d = ImageDraw.Draw(img)
    r = rng.randint(12, 22)
    cx, cy = rng.randint(r + 2, SIZE - r - 2), rng.randint(r + 2, SIZE - r - 2)
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)  # type: ignore[arg-type]
    elif shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)  # type: ignore[arg-type]
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)  # type: ignore[arg-type]
    return img


def _vocab() -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", *COLOURS, *SHAPES]


def build(out: Path, *, steps: int = STEPS, seed: int = 0) -> Path:
    """Train the tiny model for ``steps`` batches of 32 and save it (processor included) in ``out``."""
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(tmp / "vocab.txt"), do_lower_case=True)
    (tmp / "vocab.txt").unlink()
    images = BlipImageProcessor(
        size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = BlipProcessor(image_processor=images, tokenizer=tokenizer)
    config = BlipConfig(
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": SIZE,
            "patch_size": 8,
        },
        text_config={
            "vocab_size": len(_vocab()),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "encoder_hidden_size": 64,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
    )
    model = BlipForConditionalGeneration(config)
    model.config.text_config.bos_token_id = tokenizer.cls_token_id
    model.config.decoder_start_token_id = tokenizer.cls_token_id
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        pairs = [(rng.choice(list(COLOURS)), rng.choice(SHAPES)) for _ in range(32)]
        batch = processor(
            images=[draw(c, s, rng) for c, s in pairs],
            text=[f"a {c} {s}" for c, s in pairs],
            return_tensors="pt",
            padding=True,
        )
        out_ = model(
            pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], labels=batch["input_ids"]
        )
        optimiser.zero_grad()
        out_.loss.backward()
        optimiser.step()
    model.eval()
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "vistudio-test-model.json").write_text(
        json.dumps({"version": VERSION, "steps": steps, "seconds": round(time.perf_counter() - start, 1)})
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def tiny_blip() -> Path:
    """The cached tiny model's folder, built on first use (about a minute on one idle core); one
    process builds it while the others (test workers) wait for it."""
    import fcntl

    meta = CACHE / "vistudio-test-model.json"
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / "caption-model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if meta.is_file() and json.loads(meta.read_text()).get("version") == VERSION:
            return CACHE
        return build(CACHE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out", type=Path, help="train into this folder (default: the tests' cache, if not built)"
    )
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()
    t0 = time.perf_counter()
    path = build(args.out, steps=args.steps) if args.out else tiny_blip()
    print(f"{path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
