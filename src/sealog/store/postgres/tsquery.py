"""A filter's token plan (store.tokenplan) as tsquery conditions on the events columns
words, pairs and fields, which hold the same tokens as the SQLite index's search_text,
word_pairs and field_tokens (store/postgres/tokens.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sealog.search import EventFilter
from sealog.store.postgres.tokens import query_lexeme
from sealog.store.tokenplan import FIELDS, PAIRS, TEXT, Part, Token, token_plan

# The events column that holds each token set of the plan.
COLUMNS = {TEXT: "words", PAIRS: "pairs", FIELDS: "fields"}


@dataclass(frozen=True)
class TokenConditions:
    """`narrowing`: (column, tsquery text) pairs every event of the filter satisfies, at
    most one a column; `excluded`: pairs none satisfies (its negated parts); `exact`:
    whether the two alone select exactly the filter's query matches, so that sqlfilter's
    row conditions need not be tested."""

    narrowing: list[tuple[str, str]]
    excluded: list[tuple[str, str]]
    exact: bool


def _group(tokens: tuple[Token, ...]) -> tuple[str, bool]:
    operands = [query_lexeme(t.text, prefix=t.prefix) for t in tokens]
    text = " | ".join(o for o, _ in operands)
    return (text if len(operands) == 1 else f"({text})"), all(e for _, e in operands)


def _part(part: Part) -> tuple[str, str, bool]:
    groups = [_group(g) for g in part.groups]
    return COLUMNS[part.tokens], " & ".join(g for g, _ in groups), all(e for _, e in groups)


def token_conditions(flt: EventFilter) -> TokenConditions | None:
    """flt's search as tsquery conditions; None when flt has no search query."""
    plan = token_plan(flt)
    if plan is None:
        return None
    exact = plan.exact
    by_column: dict[str, list[str]] = {}
    for part in plan.terms:
        column, query, part_exact = _part(part)
        by_column.setdefault(column, []).append(query)
        exact = exact and part_exact
    excluded = []
    for part in plan.excluded:
        column, query, part_exact = _part(part)
        excluded.append((column, query))
        exact = exact and part_exact
    narrowing = [(column, " & ".join(queries)) for column, queries in by_column.items()]
    return TokenConditions(narrowing, excluded, exact)
