"""The search box's query syntax: what parses, what does not (and where), and the round trip."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vistudio.errors import InvalidInput
from vistudio.query_syntax import (
    EXAMPLE,
    KEYS,
    MAX_QUERY,
    Filter,
    Query,
    QuerySyntaxError,
    Term,
    date_range,
    parse,
)


def test_the_documented_example() -> None:
    q = parse(EXAMPLE)
    assert q.terms == (Term("beach"), Term("sunset"))
    assert q.filters == (
        Filter("person", "Alice"),
        Filter("after", "2023-05"),
        Filter("before", "2023-09"),
        Filter("place", "Lisbon"),
        Filter("camera", "X100"),
        Filter("tag", "keep"),
        Filter("tag", "hidden", negated=True),
    )
    assert q.text == "beach sunset"
    assert date_range(q) == (datetime(2023, 5, 1), datetime(2023, 9, 1))


def test_phrases_prefixes_aliases_and_escapes() -> None:
    q = parse('"sunset  over\tthe sea" sun* class:cat people:"Zoë Ångström" name:"a \\"b\\" c\\\\" 12:30')
    assert q.terms == (Term("sunset over the sea", phrase=True), Term("sun", prefix=True), Term("12:30"))
    assert q.filters == (
        Filter("label", "cat"),
        Filter("person", "Zoë Ångström"),
        Filter("name", 'a "b" c\\'),
    )
    assert parse("TAG:x").filters == (Filter("tag", "x"),)  # keys ignore case, values do not
    assert parse("").terms == () and parse("   ").filters == ()
    assert parse('a ""').terms == (Term("a"),)  # an empty phrase says nothing


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("beach colour:red", 7, "unknown key 'colour'; known keys: person, tag"),
        ("-foo:bar", 2, "unknown key 'foo'"),
        ('sunset "over the', 8, "this quote is not closed"),
        ('tag:"keep', 5, "this quote is not closed"),
        ("tag:", 5, "tag: needs a value"),
        ("tag: keep", 5, "tag: needs a value"),
        ('person:""', 8, "person: needs a value"),
        ("after:2023-13", 7, "a date is YYYY, YYYY-MM or YYYY-MM-DD"),
        ("before:2023-02-30", 8, "a date is YYYY"),
        ("on:yesterday", 4, "a date is YYYY"),
        ("-after:2023", 1, "after: cannot be negated"),
        ("beach -sunset", 7, "'-' excludes a key:value filter"),
        ("beach - tag:x", 7, "a lone '-'"),
        ("a\x00b", 2, "a control character (U+0000)"),
        ("a\u202eb", 2, "a control character (U+202E)"),
        ("x" * (MAX_QUERY + 1), MAX_QUERY + 1, "too long"),
        ("tag:" + "x" * 201, 5, "the value is too long"),
        (" ".join(["w"] * 65), 129, "too many words"),
    ],
)
def test_bad_syntax_is_a_clear_error_at_its_column(text: str, column: int, words: str) -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse(text)
    assert err.value.column == column
    assert err.value.details["column"] == column
    assert words in err.value.message and f"(column {column})" in err.value.message
    assert isinstance(err.value, InvalidInput) and err.value.status == 422


def test_every_key_is_listed_in_the_unknown_key_error() -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse("zzz:1")
    assert all(k in err.value.message for k in KEYS)


def test_fts_and_sql_operators_are_words() -> None:
    q = parse('NEAR(a b) AND OR NOT ^start 1:x * ( ) \' ; "--" "DROP TABLE samples;"')
    assert [t.text for t in q.terms] == [
        "NEAR(a",
        "b)",
        "AND",
        "OR",
        "NOT",
        "^start",
        "1:x",
        "*",
        "(",
        ")",
        "'",
        ";",
        "--",
        "DROP TABLE samples;",
    ]
    assert q.filters == ()  # a key is letters only: 1:x is a word


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("after:2023", (datetime(2023, 1, 1), None)),
        ("before:2023-03", (None, datetime(2023, 3, 1))),
        ("on:2024-02", (datetime(2024, 2, 1), datetime(2024, 3, 1))),
        ("on:2023-12-31", (datetime(2023, 12, 31), datetime(2024, 1, 1))),
        ("after:2020 after:2022-06 before:2024 before:2023", (datetime(2022, 6, 1), datetime(2023, 1, 1))),
        ("on:2023 after:2023-04", (datetime(2023, 4, 1), datetime(2024, 1, 1))),
        ("after:2023-09 before:2023-05", (datetime(2023, 9, 1), datetime(2023, 5, 1))),  # empty: AND
    ],
)
def test_date_ranges(text: str, expected: tuple[datetime | None, datetime | None]) -> None:
    assert date_range(parse(text)) == expected


# --- round trip --------------------------------------------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn")), min_size=1, max_size=12
).map(lambda s: " ".join(s.split()))
_word = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"), blacklist_characters='"'
    ),
    min_size=1,
    max_size=10,
).filter(lambda w: not w.startswith("-") and not re.match(r"[A-Za-z_]+:", w) and w.strip() == w)
_date = st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2100, 1, 1).date()).flatmap(
    lambda d: st.sampled_from([f"{d:%Y}", f"{d:%Y-%m}", f"{d:%Y-%m-%d}"])
)
_plain_keys = [k for k in KEYS if k not in ("after", "before", "on")]
_filter = st.one_of(
    st.builds(Filter, st.sampled_from(_plain_keys), _text.filter(bool), st.booleans()),
    st.builds(Filter, st.sampled_from(["after", "before", "on"]), _date, st.just(False)),
)
_term = st.one_of(
    _word.map(lambda w: Term(w.rstrip("*"), prefix=True) if w.endswith("*") and w.rstrip("*") else Term(w)),
    _text.filter(bool).map(lambda t: Term(t, phrase=True)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_term, max_size=6), st.lists(_filter, max_size=6))
def test_a_query_written_back_parses_to_itself(terms: list[Term], filters: list[Filter]) -> None:
    q = Query(tuple(terms), tuple(filters))
    assert parse(str(q)) == q


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_fails_with_a_column(text: str) -> None:
    try:
        q = parse(text)
    except QuerySyntaxError as err:
        assert 1 <= err.column <= len(text) + 1
    else:
        assert parse(str(q)) == q
