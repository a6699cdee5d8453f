"""A filter's token plan (store.tokenplan) as tsquery conditions on the events columns
words, pairs and fields, which hold the same tokens as the SQLite index's search_text,
word_pairs and field_tokens (store/postgres/tokens.py)."""

from __future__ import annotations

from sealog.search import EventFilter
from sealog.store.postgres.tokens import query_lexeme
from sealog.store.tokenplan import FIELDS, PAIRS, TEXT, Part, token_plan

# The events column that holds each token set of the plan.
COLUMNS = {TEXT: "words", PAIRS: "pairs", FIELDS: "fields"}


def _group(tokens) -> str:
    operands = [query_lexeme(t.text, prefix=t.prefix)[0] for t in tokens]
    return operands[0] if len(operands) == 1 else "(" + " | ".join(operands) + ")"


def narrowing(flt: EventFilter) -> list[tuple[str, str]]:
    """(column, tsquery text) pairs that every event flt selects satisfies, at most one a
    column; empty when flt's query has no positive term. They only narrow: the exact
    conditions are sqlfilter's, tested on each row found."""
    plan = token_plan(flt)
    if plan is None:
        return []
    by_column: dict[str, list[str]] = {}
    part: Part
    for part in plan.terms:
        by_column.setdefault(COLUMNS[part.tokens], []).extend(
            _group(group) for group in part.groups)
    return [(column, " & ".join(groups)) for column, groups in by_column.items()]
