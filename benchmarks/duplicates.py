"""Duplicates benchmark: how well the perceptual layer finds transformed copies, and how fast.

Quality — 20 distinct photos (scikit-image's samples, longest side 512 px) are each copied eight
ways: resized to half, re-encoded as JPEG quality 60, turned by 90°, 180° and 270°, mirrored left-
right and up-down, and cropped (5 % of the width and height cut, 2.5 % per side). Twenty unrelated
generated pictures (gradients, drawn shapes, noise textures) join them: 200 images. Every image
goes through the import's probe (``probe_bytes``: the stored perceptual hash and the thumbnail),
then is grouped three ways at several thresholds:

- ``plain`` (the baseline, in the same run): the import's near-duplicate grouping of the stored
  hashes (``near_dups.near_duplicate_groups``), which knows nothing of turns and mirrors;
- ``dihedral``: vistudio's perceptual layer with the eight variant hashes from the thumbnail;
- ``derived``: the same with variants predicted from the stored hash alone (the fallback used
  until thumbnails are hashed).

Pairs are scored: a pair is true when both images come from the same photo. Per transform,
recall is the share of photos whose copy landed in its original's group, and precision the share
of the copy's grouped pairs that are true.

Similar but distinct (``--skip-digits`` leaves it out) — scikit-learn's 1,797 digits drawn as
the demo draws them (8×8 → 32×32 grey PNGs: similar pictures, none a copy of another; digits
with identical pixels count as one picture) plus ``DIGIT_COPIES`` true copies (doubled in size,
or turned by 90°). Grouped at several thresholds two ways in the same run: ``single linkage``
(connected components of the near pairs, how groups were formed before: A–B and B–C near puts
A, B and C in one group) and ``keeper centre`` (vistudio: every member within the threshold of
the group's keeper). Reported: groups, the largest, extra copies (what "remove others" would
remove), pairwise precision, recall of the planted copies, and the largest distance of a member
to its keeper and between two members of one group.

Speed — ``--samples`` N synthetic hashes (1 % planted as turned or mirrored copies with up to 3
flipped bits) grouped by ``perceptual_groups``; the baseline is brute force (every pair, all eight
variants, numpy popcount) timed on ``--brute`` items and scaled by (N / brute)². With ``--service``
the same N samples are written into a workspace and ``list_groups`` is timed end to end (the first
call, then from the cache) with one decision. With ``--semantic`` N: semantic pairs (cosine >=
0.95) on N clustered vectors against the exact flat range search, scaled the same way.

    .venv/bin/python benchmarks/duplicates.py [--samples 100000] [--brute 4000] [--service]
        [--semantic 100000 --dim 512] [--thresholds 4,6,8,10] [--side 512] [--skip-quality]
        [--skip-digits] [--out FILE]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vistudio.ingest import dedup
from vistudio.ingest.near_dups import _popcount, near_duplicate_groups
from vistudio.ingest.probe import probe_bytes

PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "colorwheel", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket",
    "text", "clock",
)  # fmt: skip
T = Image.Transpose


def _encode(im: Image.Image, fmt: str = "PNG", **kw: Any) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        kw.setdefault("compress_level", 1)  # lossless either way; fast
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _crop(im: Image.Image, share: float) -> Image.Image:
    dx, dy = round(im.width * share / 2), round(im.height * share / 2)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize_50": lambda im: _encode(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "jpeg_q60": lambda im: _encode(im, "JPEG", quality=60),
    "rot90": lambda im: _encode(im.transpose(T.ROTATE_90)),
    "rot180": lambda im: _encode(im.transpose(T.ROTATE_180)),
    "rot270": lambda im: _encode(im.transpose(T.ROTATE_270)),
    "flip_h": lambda im: _encode(im.transpose(T.FLIP_LEFT_RIGHT)),
    "flip_v": lambda im: _encode(im.transpose(T.FLIP_TOP_BOTTOM)),
    "crop_5pct": lambda im: _encode(_crop(im, 0.05)),
}


def photo(name: str, side: int = 512) -> Image.Image:
    from skimage import data

    a = getattr(data, name)()
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    im = Image.fromarray(a).convert("RGB")
    im.thumbnail((side, side))
    return im


def unrelated(seed: int, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A generated picture: a two-colour gradient, drawn shapes, or a noise texture."""
    rng = np.random.default_rng(1000 + seed)
    w, h = size
    kind = seed % 3
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h + 1) / 2
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        arr = (a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]).astype(np.uint8)
        return Image.fromarray(arr)
    if kind == 1:
        im = Image.new("RGB", size, tuple(int(x) for x in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            x1, y1 = x0 + int(rng.integers(30, w // 2)), y0 + int(rng.integers(30, h // 2))
            fill = tuple(int(x) for x in rng.integers(0, 256, 3))
            (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=fill)
        return im
    scale = int(rng.integers(4, 40))
    small = rng.integers(0, 256, (max(2, h // scale), max(2, w // scale), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    return im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2))))


def evaluation_set(side: int = 512) -> list[dict[str, Any]]:
    """200 probed images (photos at ``side`` px): ``origin`` (a photo index, or a unique negative number), ``kind``,
    ``phash`` (int), ``variants`` (8 exact hashes from the thumbnail)."""
    items = []

    def add(data: bytes, origin: int, kind: str) -> None:
        probe = probe_bytes(data)
        with Image.open(io.BytesIO(probe.thumbnail)) as thumb:
            thumb.load()
            variants = dedup.dihedral_hashes(thumb)
        items.append({"origin": origin, "kind": kind, "phash": int(probe.phash, 16), "variants": variants})

    for i, name in enumerate(PHOTOS):
        im = photo(name, side)
        add(_encode(im), i, "original")
        for kind, make in TRANSFORMS.items():
            add(make(im), i, kind)
    for j in range(20):
        add(_encode(unrelated(j)), -1 - j, "unrelated")
    return items


def _groups_of(n: int, groups: list[Any]) -> np.ndarray:
    label = np.arange(n) + n  # singletons: distinct labels
    for g, members in enumerate(groups):
        label[np.asarray(members, dtype=np.int64)] = g
    return label


def score(items: list[dict[str, Any]], label: np.ndarray) -> dict[str, Any]:
    """Pairwise precision and recall, overall and per transform."""
    origin = np.array([it["origin"] for it in items])
    kinds = np.array([it["kind"] for it in items])
    same_group = label[:, None] == label[None, :]
    same_origin = origin[:, None] == origin[None, :]
    upper = np.triu(np.ones_like(same_group), k=1)
    predicted, true = same_group & upper, same_origin & upper
    tp = int((predicted & true).sum())
    out: dict[str, Any] = {
        "precision": round(tp / max(1, int(predicted.sum())), 4),
        "recall": round(tp / max(1, int(true.sum())), 4),
        "predicted_pairs": int(predicted.sum()),
        "true_pairs": int(true.sum()),
        "false_pairs": int((predicted & ~true).sum()),
        "per_transform": {},
    }
    originals = {int(origin[i]): i for i in range(len(items)) if kinds[i] == "original"}
    for kind in TRANSFORMS:
        rows = np.flatnonzero(kinds == kind)
        found = sum(bool(same_group[r, originals[int(origin[r])]]) for r in rows)
        pairs = same_group[rows].copy()
        pairs[np.arange(len(rows)), rows] = False
        grouped = int(pairs.sum())
        good = int((pairs & same_origin[rows]).sum())
        out["per_transform"][kind] = {
            "recall": round(found / len(rows), 4),
            "precision": round(good / grouped, 4) if grouped else None,
        }
    unrelated_grouped = sum(bool(same_group[i].sum() > 1) for i in np.flatnonzero(kinds == "unrelated"))
    out["unrelated_in_a_group"] = unrelated_grouped
    return out


def quality(thresholds: list[int], *, side: int = 512) -> dict[str, Any]:
    t0 = time.perf_counter()
    items = evaluation_set(side)
    n = len(items)
    exact = np.array([it["variants"] for it in items], dtype=np.uint64)
    derived = dedup.derived_variants([it["phash"] for it in items])
    results: dict[str, Any] = {
        "images": n,
        "photos": len(PHOTOS),
        "photo_side_px": side,
        "unrelated": 20,
        "thresholds": {},
    }
    for t in thresholds:
        plain = near_duplicate_groups(
            {i: f"{it['phash']:016x}" for i, it in enumerate(items)}, max_distance=t
        )
        results["thresholds"][str(t)] = {
            "plain (baseline)": score(items, _groups_of(n, plain)),
            "dihedral": score(items, _groups_of(n, dedup.perceptual_groups(exact, max_distance=t))),
            "derived": score(items, _groups_of(n, dedup.perceptual_groups(derived, max_distance=t))),
        }
    results["seconds"] = round(time.perf_counter() - t0, 2)
    return results


# --- similar but distinct ------------------------------------------------------------------------

DIGIT_COPIES = 40


def digits_set() -> list[dict[str, Any]]:
    """The demo's digits through the import's probe, plus ``DIGIT_COPIES`` true copies."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    items: list[dict[str, Any]] = []
    origin_of: dict[bytes, int] = {}

    def add(im: Image.Image, origin: int, kind: str) -> None:
        probe = probe_bytes(_encode(im))
        with Image.open(io.BytesIO(probe.thumbnail)) as thumb:
            thumb.load()
            variants = dedup.dihedral_hashes(thumb)
        items.append({"origin": origin, "kind": kind, "phash": int(probe.phash, 16), "variants": variants})

    drawn = []
    for k, img in enumerate(images):
        arr = (255 - img * (255 / 16)).clip(0, 255).astype(np.uint8)  # as services/demo.py draws them
        im = Image.fromarray(arr, "L").resize((32, 32), Image.Resampling.NEAREST)
        origin = origin_of.setdefault(arr.tobytes(), k)  # identical pixels: one picture
        drawn.append((im, origin))
        add(im, origin, "digit")
    rng = np.random.default_rng(5)
    for n, k in enumerate(rng.choice(len(images), size=DIGIT_COPIES, replace=False).tolist()):
        im, origin = drawn[k]
        if n % 2:
            add(im.transpose(T.ROTATE_90), origin, "copy_rot90")
        else:
            add(im.resize((64, 64), Image.Resampling.BICUBIC), origin, "copy_resize_2x")
    return items


def _spread(variants: np.ndarray, groups: list[Any]) -> tuple[int, int]:
    """(largest distance of a member to its group's best-ranked member, largest distance between
    two members of one group)."""
    to_keeper = within = 0
    for g in groups:
        g = np.asarray(g)
        keeper = int(g[0])
        if len(g) > 1:
            to_keeper = max(to_keeper, int(dedup.distances_to(variants, keeper, g[1:]).max()))
        for m in g.tolist():
            within = max(within, int(dedup.distances_to(variants, m, g).max()))
    return to_keeper, within


def similar_but_distinct(thresholds: list[int]) -> dict[str, Any]:
    t0 = time.perf_counter()
    items = digits_set()
    n = len(items)
    variants = np.array([it["variants"] for it in items], dtype=np.uint64)
    origin = np.array([it["origin"] for it in items])
    copies = [k for k, it in enumerate(items) if it["kind"] != "digit"]
    first_of = {}
    for k, it in enumerate(items):
        first_of.setdefault(it["origin"], k)
    out: dict[str, Any] = {
        "images": n,
        "distinct_pictures": len(set(origin.tolist())),
        "planted_copies": len(copies),
        "thresholds": {},
    }
    for t in thresholds:
        i, j, _ = dedup.dihedral_pairs(variants, max_distance=t)
        methods = {
            "single linkage (before)": dedup.components(n, i, j),
            "keeper centre": dedup.perceptual_groups(variants, max_distance=t),
        }
        row: dict[str, Any] = {}
        for name, groups in methods.items():
            label = _groups_of(n, groups)
            same_group = label[:, None] == label[None, :]
            upper = np.triu(np.ones((n, n), dtype=bool), k=1)
            predicted = same_group & upper
            true = (origin[:, None] == origin[None, :]) & upper
            tp = int((predicted & true).sum())
            to_keeper, within = _spread(variants, groups)
            row[name] = {
                "groups": len(groups),
                "largest_group": max((len(g) for g in groups), default=0),
                "grouped_images": int(sum(len(g) for g in groups)),
                "extra_copies": int(sum(len(g) - 1 for g in groups)),
                "predicted_pairs": int(predicted.sum()),
                "false_pairs": int((predicted & ~true).sum()),
                "precision": round(tp / max(1, int(predicted.sum())), 4),
                "copy_recall": round(
                    sum(bool(label[c] == label[first_of[int(origin[c])]]) for c in copies)
                    / max(1, len(copies)),
                    4,
                ),
                "max_bits_to_keeper": to_keeper,
                "max_bits_within_group": within,
            }
        out["thresholds"][str(t)] = row
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


# --- speed ---------------------------------------------------------------------------------------


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """n×8 variant hashes; 1 % of rows are turned/mirrored copies (≤ 3 flipped bits) of others."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    base |= rng.integers(0, 2, size=n).astype(np.uint64)
    planted = []
    copies = rng.choice(n, size=n // 100, replace=False)
    for c in copies:
        src = int(rng.integers(0, n))
        if src == c:
            continue
        v = int(dedup.derived_variants([int(base[src])])[0, int(rng.integers(0, 8))])
        for b in rng.integers(0, 64, size=int(rng.integers(0, 4))):
            v ^= 1 << int(b)
        base[c] = np.uint64(v)
        planted.append((min(src, int(c)), max(src, int(c))))
    return dedup.derived_variants(base), planted


def brute_pairs(variants: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    found = set()
    base = variants[:, 0]
    for i in range(len(variants)):
        d = _popcount(variants[i][:, None] ^ base[None, i + 1 :]).min(axis=0)
        d2 = _popcount(variants[i + 1 :] ^ base[i]).min(axis=1)
        for j in np.flatnonzero(np.minimum(d, d2) <= max_distance):
            found.add((i, i + 1 + int(j)))
    return found


def speed(n: int, brute: int, max_distance: int) -> dict[str, Any]:
    variants, planted = synthetic(n)
    t = time.perf_counter()
    groups = dedup.perceptual_groups(variants, max_distance=max_distance)
    fast = time.perf_counter() - t
    i, j, _ = dedup.dihedral_pairs(variants, max_distance=max_distance)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    # a planted copy may itself have been overwritten by a later copy: count those still near
    near = [p for p in planted if dedup.dihedral_distance(variants[p[0]], variants[p[1]]) <= max_distance]
    components = {int(x): k for k, g in enumerate(groups) for x in g}
    small = variants[:brute]
    t = time.perf_counter()
    expected = brute_pairs(small, max_distance)
    slow = time.perf_counter() - t
    si, sj, _ = dedup.dihedral_pairs(small, max_distance=max_distance)
    same = set(zip(si.tolist(), sj.tolist(), strict=True)) == expected
    scaled = slow * (n / brute) ** 2
    return {
        "samples": n,
        "max_distance": max_distance,
        "vistudio_s": round(fast, 3),
        "groups": len(groups),
        "planted_pairs": len(near),
        "planted_grouped": round(
            sum(components.get(a, -1) == components.get(b, -2) for a, b in near) / max(1, len(near)), 4
        ),
        "pairs_found": len(found),
        "brute_force_items": brute,
        "brute_force_s": round(slow, 3),
        "brute_force_scaled_s": round(scaled, 1),
        "ratio": round(scaled / fast, 1),
        "same_pairs_as_brute_force": same,
    }


def service(n: int, repeat: int = 3) -> dict[str, Any]:
    """list_groups end to end on n samples written straight into a workspace."""
    from sqlalchemy import insert

    from vistudio.config import Settings
    from vistudio.db import Sample
    from vistudio.db.duplicates import DuplicateHash
    from vistudio.services import duplicates, projects
    from vistudio.studio import open_studio

    variants, _ = synthetic(n, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        studio = open_studio(Settings(home=Path(tmp)))
        p = projects.create_project(studio, name="big", task="library")
        with studio.sessions.begin() as s:
            for lo in range(0, n, 20_000):
                hi = min(n, lo + 20_000)
                ids = s.scalars(
                    insert(Sample).returning(Sample.id, sort_by_parameter_order=True),
                    [
                        {
                            "project_id": p["id"],
                            "sha256": f"{k:064x}",
                            "name": f"photos/{k}.jpg",
                            "storage": "reference",
                            "path": f"/photos/{k}.jpg",
                            "width": 4000,
                            "height": 3000,
                            "format": "JPEG",
                            "bytes": 3_000_000,
                            "phash": f"{int(variants[k, 0]):016x}",
                            "exif": {},
                        }
                        for k in range(lo, hi)
                    ],
                ).all()
                s.execute(
                    insert(DuplicateHash),
                    [
                        {"sample_id": sid, "variants": dedup.pack_variants([int(x) for x in variants[k]])}
                        for sid, k in zip(ids, range(lo, hi), strict=True)
                    ],
                )
        t = time.perf_counter()
        out = duplicates.list_groups(studio, project="big", level="perceptual", limit=50)
        cold = time.perf_counter() - t
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            duplicates.list_groups(studio, project="big", level="perceptual", limit=50)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        duplicates.decide(studio, project="big", group=out["items"][0]["id"], action="hide")
        decide = time.perf_counter() - t
        studio.close()
    return {
        "samples": n,
        "groups": out["total"],
        "list_groups_first_s": round(cold, 3),
        "list_groups_cached_s": round(sorted(times)[len(times) // 2], 3),
        "decide_hide_s": round(decide, 3),
    }


def semantic_speed(n: int, dim: int, brute: int) -> dict[str, Any]:
    """Semantic pairs at cosine >= 0.95 on clustered unit vectors with 1 % planted near copies; the
    baseline is the exact flat range search on ``brute`` vectors scaled by (n / brute)²."""
    from vistudio.ml.embed.dedup import similar_pairs

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((100, dim)).astype(np.float32)
    x = centers[rng.integers(0, 100, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    copies = n // 100
    x[:copies] = x[copies : 2 * copies] + 0.012 * rng.standard_normal((copies, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    i, j, _ = similar_pairs(x, threshold=0.95)
    fast = time.perf_counter() - t
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    t = time.perf_counter()
    similar_pairs(x[:brute], threshold=0.95, exact_below=brute + 1)
    slow = time.perf_counter() - t
    scaled = slow * (n / brute) ** 2
    return {
        "vectors": n,
        "dim": dim,
        "vistudio_s": round(fast, 2),
        "planted_found": round(sum((k, k + copies) in found for k in range(copies)) / copies, 4),
        "exact_items": brute,
        "exact_s": round(slow, 2),
        "exact_scaled_s": round(scaled, 1),
        "ratio": round(scaled / fast, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--brute", type=int, default=4000)
    ap.add_argument("--thresholds", default="4,6,8,10")
    ap.add_argument("--side", type=int, default=512, help="longest side of the photos")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-digits", action="store_true", help="leave out the similar-but-distinct case")
    ap.add_argument("--service", action="store_true", help="also time list_groups on --samples samples")
    ap.add_argument("--semantic", type=int, default=0, help="also time semantic pairs on N vectors")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result: dict[str, Any] = {
        "benchmark": "duplicates",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }
    if not args.skip_quality:
        print("quality: probing 200 images", file=sys.stderr)
        result["quality"] = quality([int(x) for x in args.thresholds.split(",")], side=args.side)
    if not args.skip_digits:
        print("similar but distinct: probing the digits", file=sys.stderr)
        result["similar_but_distinct"] = similar_but_distinct([int(x) for x in args.thresholds.split(",")])
    print(f"speed: {args.samples} hashes", file=sys.stderr)
    result["speed"] = speed(args.samples, min(args.brute, args.samples), 6)
    if args.service:
        print(f"service: {args.samples} samples", file=sys.stderr)
        result["service"] = service(args.samples)
    if args.semantic:
        print(f"semantic: {args.semantic} vectors", file=sys.stderr)
        result["semantic"] = semantic_speed(args.semantic, args.dim, min(10_000, args.semantic))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
