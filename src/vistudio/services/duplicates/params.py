"""The parameters of duplicate review: levels, actions, thresholds, paging, and small helpers
the other modules share."""

from __future__ import annotations

import math
import re
from datetime import datetime

from vistudio.errors import InvalidInput
from vistudio.studio import Studio

LEVELS = ("exact", "perceptual", "semantic")
ACTIONS = ("keep", "hide", "remove")
STATUSES = ("all", "open", "reviewed")
DEFAULT_SIMILARITY = 0.95
MIN_SIMILARITY = 0.8  # below this, unrelated photos of one scene chain into huge groups
MAX_BITS = 16  # beyond 16 of 64 bits, unrelated images start to match
MAX_LIMIT = 200
IN_CHUNK = 500
GROUP_KEY = re.compile(r"^[eps]-[0-9a-f]{12}$")


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise InvalidInput(f"unknown level {str(level)[:40]!r}; use one of {', '.join(LEVELS)}")
    return level


def check_threshold(studio: Studio, level: str, threshold: float | None) -> float | int | None:
    """The threshold to use at ``level``: bits (perceptual), cosine similarity (semantic), none (exact)."""
    check_level(level)
    if threshold is not None and (not isinstance(threshold, int | float) or not math.isfinite(threshold)):
        raise InvalidInput("the threshold must be a finite number")
    if level == "exact":
        if threshold not in (None, 0):
            raise InvalidInput("the exact level takes no threshold: its duplicates have identical bytes")
        return None
    if level == "perceptual":
        if threshold is None:
            return int(min(MAX_BITS, max(0, studio.settings.imports.near_duplicate_distance)))
        if float(threshold) != int(threshold) or not 0 <= threshold <= MAX_BITS:
            raise InvalidInput(
                f"the perceptual threshold is a whole number of bits between 0 and {MAX_BITS} "
                f"(got {threshold:g})"
            )
        return int(threshold)
    if threshold is None:
        return DEFAULT_SIMILARITY
    if not MIN_SIMILARITY <= threshold <= 1.0:
        raise InvalidInput(
            f"the semantic threshold is a cosine similarity between {MIN_SIMILARITY} and 1 (got {threshold:g})"
        )
    return float(threshold)


def _paging(offset: int, limit: int | None) -> None:
    """``limit`` None (every row) is for callers inside the process, like the CLI."""
    if not 0 <= offset <= 2**62 or (limit is not None and not 1 <= limit <= MAX_LIMIT):
        raise InvalidInput(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def _chunks(values: list[int], n: int = IN_CHUNK) -> list[list[int]]:
    return [values[i : i + n] for i in range(0, len(values), n)]
