"""SQL WHERE clauses for an EventFilter, written once for every SQL backend.

The conditions here are exact: they decide what matches. A backend's full-text index
narrows the candidates before these conditions run, and counts alone only the parts that
its tokens decide exactly (Fts5Query.exact, held to these conditions by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from sealog.search import (
    FIELD_TOKEN_BYTES,
    PAIR_JOINER,
    Cursor,
    EventFilter,
    FieldMatch,
    TextMatch,
    field_token,
)


@dataclass(frozen=True)
class Dialect:
    """How a backend spells a parameter and a substring test."""

    param: str  # "?" or "%s"
    contains: str  # e.g. "instr({column}, {param}) > 0"


@dataclass
class Where:
    """Conditions joined with AND, and their parameters in order."""

    dialect: Dialect
    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> None:
        self.clauses.append(clause.replace("?", self.dialect.param))
        self.params.extend(params)

    def sql(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "TRUE"


def _like_prefix(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


_FIELD_COLUMNS = {
    "actor": ("actor_email", "actor_id", "actor_name"),
    "action": ("action",),
    "result": ("result",),
    "category": ("category",),
    "method": ("method",),
    "path": ("path",),
    "ip": ("ip",),
}


def _value_test(column: str, value: str, prefix: bool) -> tuple[str, str]:
    if prefix:
        return f"coalesce({column}, '') LIKE ? ESCAPE '\\'", _like_prefix(value)
    return f"coalesce({column}, '') = ?", value


def _field_clause(where: Where, match: FieldMatch) -> None:
    tests: list[str] = []
    params: list[Any] = []
    if match.field == "resource":
        test, param = _value_test("resource_type", match.value, False)
        tests.append(test)
        params.append(param)
        if match.resource_id is not None:
            test, param = _value_test("resource_id", match.resource_id, match.prefix)
            tests.append(test)
            params.append(param)
        clause = " AND ".join(tests)
    else:
        for column in _FIELD_COLUMNS[match.field]:
            test, param = _value_test(column, match.value, match.prefix)
            tests.append(test)
            params.append(param)
        clause = " OR ".join(tests)
    where.add(f"{'NOT ' if match.negated else ''}({clause})", *params)


def _text_clause(where: Where, match: TextMatch) -> None:
    test = where.dialect.contains.format(column="search_text", param="?")
    where.add(f"NOT ({test})" if match.negated else test, match.needle())


def base_where(
    flt: EventFilter, cursor: Cursor | None, dialect: Dialect,
    after: tuple[int, str] | None = None,
) -> Where:
    """Org, time window, categories, results, snapshot bound and keyset position (cursor
    for newest-first pages, after for oldest-first ones): what indexes serve."""
    where = Where(dialect)
    where.add("org_id = ?", flt.org_id)
    # One lower and one upper time bound, tightened by the keyset position, so that the
    # index seeks to the page instead of scanning up to it.
    lower = flt.time_range.start_us
    upper = None if flt.time_range.end_us is None else flt.time_range.end_us - 1
    if cursor is not None:
        upper = cursor.occurred_us if upper is None else min(upper, cursor.occurred_us)
    if after is not None:
        lower = max(lower, after[0])
    where.add("occurred_at >= ?", lower)
    if upper is not None:
        where.add("occurred_at <= ?", upper)
    if flt.categories:
        where.add(f"category IN ({', '.join('?' * len(flt.categories))})", *flt.categories)
    if flt.results:
        where.add(f"result IN ({', '.join('?' * len(flt.results))})", *flt.results)
    if flt.max_index is not None:
        where.add("idx < ?", flt.max_index)
    if cursor is not None:
        where.add("(occurred_at, id) < (?, ?)", cursor.occurred_us, cursor.event_id)
    if after is not None:
        where.add("(occurred_at, id) > (?, ?)", after[0], after[1])
    return where


def match_where(flt: EventFilter, dialect: Dialect) -> Where:
    """The search query's exact conditions (terms, phrases, qualifiers)."""
    where = Where(dialect)
    for text in flt.query.text:
        _text_clause(where, text)
    for match in flt.query.fields:
        _field_clause(where, match)
    return where


@dataclass(frozen=True)
class Fts5Query:
    """The full-text side of a filter, for an index with columns search_text and word_pairs
    (search.search_words) and field_tokens (search.field_tokens). Each part is an FTS5
    expression or None: `terms` every match satisfies (the query's positive terms and
    qualifiers), `filters` the category and result filters, `excluded` the negated ones.
    `exact`: whether the index decides each part exactly, so that it alone can count.
    """

    terms: str | None
    filters: str | None
    excluded: str | None
    exact: bool

    @property
    def narrow(self) -> str | None:
        """An expression every match satisfies, or None when the query has no positive part."""
        if self.terms is None:
            return None
        return self.terms if self.filters is None else f"{self.filters} AND {self.terms}"


def _quoted(token: str, prefix: bool) -> str:
    return f'"{token}"' + ("*" if prefix else "")


def _any(column: str, tokens: list[str]) -> str:
    return f"({column} : ({' OR '.join(tokens)}))"


def _all(parts: list[str]) -> str | None:
    return " AND ".join(parts) if parts else None


def _text_part(match: TextMatch) -> tuple[str, bool]:
    if len(match.words) == 1:
        column = "search_text"
        tokens = [_quoted(match.words[0], match.prefix)]
    else:
        column = "word_pairs"
        pairs = [a + PAIR_JOINER + b for a, b in pairwise(match.words)]
        tokens = [_quoted(p, False) for p in pairs[:-1]] + [_quoted(pairs[-1], match.prefix)]
    # One word, or two consecutive ones, are decided by the index alone (three need the
    # pairs to be one run); the index folds some non-ASCII letters that Python keeps apart.
    exact = len(match.words) <= 2 and all(w.isascii() for w in match.words)
    return f"({column} : ({' AND '.join(tokens)}))", exact


def _field_part(match: FieldMatch) -> tuple[str, bool]:
    def token(column: str, value: str, prefix: bool) -> tuple[str, bool]:
        within = len(value.encode()) <= FIELD_TOKEN_BYTES
        # A longer value is narrowed by its cut token and decided on the row.
        return _quoted(field_token(column, value).rstrip("x"), prefix or not within), within

    if match.field == "resource":
        type_token, exact = token("resource_type", match.value, False)
        parts = [_any("field_tokens", [type_token])]
        if match.resource_id is not None:
            id_token, id_exact = token("resource_id", match.resource_id, match.prefix)
            parts.append(_any("field_tokens", [id_token]))
            exact = exact and id_exact
        return f"({' AND '.join(parts)})", exact
    tokens = [token(c, match.value, match.prefix) for c in _FIELD_COLUMNS[match.field]]
    return _any("field_tokens", [t for t, _ in tokens]), all(e for _, e in tokens)


def fts5_query(flt: EventFilter) -> Fts5Query | None:
    """The full-text side of flt; None when flt has no search query."""
    if not flt.query.text and not flt.query.fields:
        return None
    terms: list[str] = []
    excluded: list[str] = []
    exact = flt.max_index is None
    parts: list[tuple[TextMatch | FieldMatch, tuple[str, bool]]] = [
        *((m, _text_part(m)) for m in flt.query.text),
        *((m, _field_part(m)) for m in flt.query.fields),
    ]
    for match, (part, part_exact) in parts:
        (excluded if match.negated else terms).append(part)
        exact = exact and part_exact
    filters = []
    if flt.categories:
        filters.append(_any("field_tokens", [
            _quoted(field_token("category", c), False) for c in flt.categories]))
    if flt.results:
        filters.append(_any("field_tokens", [
            _quoted(field_token("result", r), False) for r in flt.results]))
    return Fts5Query(
        terms=_all(terms), filters=_all(filters),
        excluded=" OR ".join(excluded) if excluded else None, exact=exact,
    )
