"""The search box's query syntax: free words, "quoted phrases" and ``key:value`` filters.

    beach sunset person:"Alice" after:2023-05 before:2023-09 place:Lisbon camera:X100 tag:keep -tag:hidden

- A **word** is a run of characters up to a space or a quote; a **phrase** is ``"…"`` (``\\"`` and
  ``\\\\`` escape a quote and a backslash inside it). A word ending in ``*`` is a prefix (``sun*``);
  a word starting with ``-`` must be quoted (``-`` excludes a filter).
  Words and phrases are matched by the full-text index (all of them) and, joined, are the CLIP text.
- A **filter** is ``key:value`` or ``key:"quoted value"``; ``-key:value`` keeps what does *not*
  match (not for dates). ``key`` is letters only, so ``12:30`` stays a word. Repeated keys combine
  with AND (``tag:a tag:b``: both tags; ``person:A person:B``: both people in the photo).
- Dates: ``after:D`` keeps photos taken from the start of D on (D included), ``before:D`` those
  taken before the start of D (D excluded), ``on:D`` those taken within D; D is ``YYYY``,
  ``YYYY-MM`` or ``YYYY-MM-DD``. So ``after:2023-05 before:2023-09`` is May to August 2023.

A pure library (no database): :func:`parse` gives a :class:`Query` or raises
:class:`QuerySyntaxError` (an ``InvalidInput``: HTTP 422) naming the 1-based column of the problem.
``str(query)`` writes a query back in a canonical form that parses to the same query.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from vistudio.errors import InvalidInput

MAX_QUERY = 1000  # characters
MAX_TERMS = 64  # words, phrases and filters together
MAX_VALUE = 200

# key → what it matches (the help line and the error for an unknown key list them in this order)
KEYS: dict[str, str] = {
    "person": "a person in the photo (name or id)",
    "tag": "a tag (exactly)",
    "label": "a class label (exactly); also class:",
    "camera": "the camera's make or model contains it",
    "lens": "the lens contains it",
    "place": "the place's city, region, country or country code (exactly, any case)",
    "name": "the file name or folder contains it",
    "after": "taken from the start of YYYY[-MM[-DD]] on",
    "before": "taken before the start of YYYY[-MM[-DD]]",
    "on": "taken within YYYY[-MM[-DD]]",
}
ALIASES = {"class": "label", "people": "person"}
DATE_KEYS = frozenset({"after", "before", "on"})
EXAMPLE = (
    'beach sunset person:"Alice" after:2023-05 before:2023-09 place:Lisbon camera:X100 tag:keep -tag:hidden'
)

_KEY = re.compile(r"[A-Za-z_]+")
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


class QuerySyntaxError(InvalidInput):
    """A query that does not parse; ``column`` is 1-based (``details["column"]``)."""

    def __init__(self, message: str, *, column: int) -> None:
        super().__init__(f"{message} (column {column})", details={"column": column, "problem": message})
        self.column = column


@dataclass(frozen=True)
class Term:
    """A free word (``phrase`` False) or a quoted phrase; ``prefix``: the word ended in ``*``."""

    text: str
    phrase: bool = False
    prefix: bool = False

    def __str__(self) -> str:
        if self.phrase:
            return _quote(self.text)
        return self.text + ("*" if self.prefix else "")


@dataclass(frozen=True)
class Filter:
    key: str  # one of KEYS
    value: str
    negated: bool = False

    def __str__(self) -> str:
        value = self.value if _bare(self.value) else _quote(self.value)
        return f"{'-' if self.negated else ''}{self.key}:{value}"


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...] = ()
    filters: tuple[Filter, ...] = ()

    def __str__(self) -> str:
        return " ".join([*map(str, self.terms), *map(str, self.filters)])

    @property
    def text(self) -> str:
        """The words and phrases as one text (the CLIP query)."""
        return " ".join(t.text for t in self.terms)

    def values(self, key: str, *, negated: bool = False) -> list[str]:
        return [f.value for f in self.filters if f.key == key and f.negated == negated]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bare(value: str) -> bool:
    """A value that reads back the same without quotes."""
    return bool(value) and not any(c.isspace() or c in '"\\' for c in value) and value[-1] != "*"


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and c not in " \t\n\r"


def parse(query: str) -> Query:
    """Parse the search box's text (see the module docstring); ``QuerySyntaxError`` on bad syntax."""
    if len(query) > MAX_QUERY:
        raise QuerySyntaxError(
            f"the query is too long ({MAX_QUERY} characters at most)", column=MAX_QUERY + 1
        )
    for i, c in enumerate(query):
        if _is_control(c):
            raise QuerySyntaxError(f"a control character (U+{ord(c):04X}) is not allowed", column=i + 1)
    return _Parser(query).parse()


class _Parser:
    """A tokenizer and a recursive descent over ``query := item*``,
    ``item := ['-'] (key ':' value | word | phrase)``, ``value := word | phrase``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def parse(self) -> Query:
        terms: list[Term] = []
        filters: list[Filter] = []
        while True:
            self._skip_space()
            if self.i >= len(self.text):
                break
            if len(terms) + len(filters) >= MAX_TERMS:
                raise QuerySyntaxError(f"too many words and filters ({MAX_TERMS} at most)", column=self.i + 1)
            item = self._item()
            if isinstance(item, Filter):
                filters.append(item)
            elif item is not None:
                terms.append(item)
        return Query(tuple(terms), tuple(filters))

    def _skip_space(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def _item(self) -> Term | Filter | None:
        start = self.i
        negated = self.text[self.i] == "-"
        if negated:
            self.i += 1
        key = _KEY.match(self.text, self.i)
        if key and key.end() < len(self.text) and self.text[key.end()] == ":":
            return self._filter(key.group(), negated=negated, start=start, key_end=key.end())
        if negated:
            if self.i >= len(self.text) or self.text[self.i].isspace():
                raise QuerySyntaxError("a lone '-': write -key:value to exclude", column=start + 1)
            raise QuerySyntaxError(
                "'-' excludes a key:value filter (like -tag:hidden), not a word (quote a word that starts with -)",
                column=start + 1,
            )
        if self.text[self.i] == '"':
            phrase = self._quoted()
            return Term(" ".join(phrase.split()), phrase=True) if phrase.strip() else None
        word = self._word()
        prefix = word.endswith("*") and len(word.rstrip("*")) > 0
        return Term(word.rstrip("*") if prefix else word, prefix=prefix)

    def _filter(self, raw_key: str, *, negated: bool, start: int, key_end: int) -> Filter:
        key = ALIASES.get(raw_key.lower(), raw_key.lower())
        if key not in KEYS:
            raise QuerySyntaxError(
                f"unknown key {raw_key!r}; known keys: {', '.join(KEYS)} (quote a word with a colon)",
                column=start + 1 + negated,
            )
        self.i = key_end + 1
        value_at = self.i
        if self.i >= len(self.text) or self.text[self.i].isspace():
            raise QuerySyntaxError(f"{key}: needs a value", column=value_at + 1)
        value = " ".join(self._quoted().split()) if self.text[self.i] == '"' else self._word()
        if not value:
            raise QuerySyntaxError(f"{key}: needs a value", column=value_at + 1)
        if len(value) > MAX_VALUE:
            raise QuerySyntaxError(
                f"{key}: the value is too long ({MAX_VALUE} characters at most)", column=value_at + 1
            )
        if key in DATE_KEYS:
            if negated:
                raise QuerySyntaxError(f"{key}: cannot be negated (use after:/before:)", column=start + 1)
            _period(value, key=key, column=value_at + 1)
        return Filter(key, value, negated)

    def _word(self) -> str:
        start = self.i
        while self.i < len(self.text) and not self.text[self.i].isspace() and self.text[self.i] != '"':
            self.i += 1
        return self.text[start : self.i]

    def _quoted(self) -> str:
        opening = self.i
        self.i += 1
        out: list[str] = []
        while self.i < len(self.text):
            c = self.text[self.i]
            if c == "\\" and self.i + 1 < len(self.text) and self.text[self.i + 1] in '"\\':
                out.append(self.text[self.i + 1])
                self.i += 2
                continue
            self.i += 1
            if c == '"':
                return "".join(out)
            out.append(c)
        raise QuerySyntaxError("this quote is not closed", column=opening + 1)


def _period(value: str, *, key: str, column: int) -> tuple[datetime, datetime]:
    """The period a date names: [start, end) — ``2023`` → 2023-01-01 … 2024-01-01."""
    m = _DATE.fullmatch(value)
    problem = f"{key}: a date is YYYY, YYYY-MM or YYYY-MM-DD (got {value[:40]!r})"
    if not m:
        raise QuerySyntaxError(problem, column=column)
    y, mo, d = int(m[1]), m[2], m[3]
    try:
        if y < 1 or y >= 9999:
            raise ValueError
        if d is not None:
            start = datetime(y, int(mo), int(d))
            return start, start + timedelta(days=1)
        if mo is not None:
            start = datetime(y, int(mo), 1)
            return start, start + timedelta(days=calendar.monthrange(y, int(mo))[1])
        return datetime(y, 1, 1), datetime(y + 1, 1, 1)
    except ValueError:
        raise QuerySyntaxError(problem, column=column) from None


def period(value: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a date value that :func:`parse` accepted (``2023-05`` → May 2023)."""
    return _period(value, key="date", column=1)


def date_range(query: Query) -> tuple[datetime | None, datetime | None]:
    """The query's dates as one half-open range ``[start, end)`` (``None``: unbounded); repeated
    date filters combine with AND, so the range may be empty (start ≥ end)."""
    start: datetime | None = None
    end: datetime | None = None
    for f in query.filters:
        if f.key not in DATE_KEYS:
            continue
        lo, hi = period(f.value)
        if f.key == "after":
            start = lo if start is None else max(start, lo)
        elif f.key == "before":
            end = lo if end is None else min(end, lo)
        else:
            start = lo if start is None else max(start, lo)
            end = hi if end is None else min(end, hi)
    return start, end


def help_text() -> str:
    """One line per key, for ``--help`` and the page's popover."""
    return "\n".join(f"{k}:  {v}" for k, v in KEYS.items())
