"""SQL WHERE clauses for an EventFilter, written once for every SQL backend.

The conditions here are exact: they decide what matches. A backend's full-text index
narrows the candidates before these conditions run (store.tokenplan, rendered by each
backend), and counts alone only the parts that its tokens decide exactly
(TokenPlan.exact, held to these conditions by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealog.search import QUALIFIER_COLUMNS, Cursor, EventFilter, FieldMatch, TextMatch


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
        for column in QUALIFIER_COLUMNS[match.field]:
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


def occurred_in(ranges: list[tuple[int | None, int | None]], dialect: Dialect
                ) -> tuple[str, list[int]]:
    """A condition true of an event that occurred in one of ranges ([from, to) in µs, a
    None bound open), and its parameters; FALSE for no range."""
    clauses, params = [], []
    for start, stop in ranges:
        parts = []
        if start is not None:
            parts.append(f"occurred_at >= {dialect.param}")
            params.append(start)
        if stop is not None:
            parts.append(f"occurred_at < {dialect.param}")
            params.append(stop)
        clauses.append("(" + (" AND ".join(parts) or "TRUE") + ")")
    return " OR ".join(clauses) or "FALSE", params
