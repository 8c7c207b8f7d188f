"""Small wording helpers shared by the CLI, the pages and the reports."""

from __future__ import annotations

_IRREGULAR = {"person": "people", "child": "children", "index": "indexes"}


def _plural_form(word: str) -> str:
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR:
        form = _IRREGULAR[last]
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        form = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        form = last + "es"
    else:
        form = last + "s"
    return f"{head} {form}" if head else form


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``"1 mistake"``, ``"2 mistakes"``, ``"1,200 extra copies"``: a count with its noun in the right number.

    ``many`` overrides the plural form; integers get thousands separators.
    """
    form = word if n == 1 else (many or _plural_form(word))
    count = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{count} {form}"
