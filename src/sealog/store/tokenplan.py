"""Which index tokens a filter's search needs: one plan that each backend renders in its
own full-text syntax (FTS5 on SQLite, tsquery on PostgreSQL).

The index holds, per event, the tokens of sealog.search: `search_text` (its words),
`word_pairs` (consecutive words joined) and `field_tokens` (qualifier values). A plan
only narrows the candidates; the exact conditions are sqlfilter's.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from sealog.search import (
    FIELD_TOKEN_BYTES,
    PAIR_JOINER,
    QUALIFIER_COLUMNS,
    EventFilter,
    FieldMatch,
    TextMatch,
    field_token,
)

# The index's token sets, as the index names them.
TEXT, PAIRS, FIELDS = "search_text", "word_pairs", "field_tokens"


@dataclass(frozen=True)
class Token:
    """One token of the index; with prefix, any token that starts with it."""

    text: str
    prefix: bool = False


@dataclass(frozen=True)
class Part:
    """Tokens of one token set: every group must match, a group by any of its tokens."""

    tokens: str  # TEXT, PAIRS or FIELDS
    groups: tuple[tuple[Token, ...], ...]


@dataclass(frozen=True)
class TokenPlan:
    """The full-text side of a filter. `terms`: parts every match has (the query's positive
    terms and qualifiers); `filters`: the category and result filters, each a part;
    `excluded`: parts no match has (the negated ones). `exact`: whether the tokens decide
    each part exactly, so that the index alone can count."""

    terms: tuple[Part, ...]
    filters: tuple[Part, ...]
    excluded: tuple[Part, ...]
    exact: bool


def _text_part(match: TextMatch) -> tuple[Part, bool]:
    if len(match.words) == 1:
        part = Part(TEXT, ((Token(match.words[0], match.prefix),),))
    else:
        pairs = [a + PAIR_JOINER + b for a, b in pairwise(match.words)]
        tokens = [Token(p) for p in pairs[:-1]] + [Token(pairs[-1], match.prefix)]
        part = Part(PAIRS, tuple((t,) for t in tokens))
    # One word, or two consecutive ones, are decided by the index alone (three need the
    # pairs to be one run); an index may fold some non-ASCII letters that Python keeps apart.
    exact = len(match.words) <= 2 and all(w.isascii() for w in match.words)
    return part, exact


def _field_token(column: str, value: str, prefix: bool) -> tuple[Token, bool]:
    within = len(value.encode()) <= FIELD_TOKEN_BYTES
    # A longer value is narrowed by its cut token and decided on the row.
    return Token(field_token(column, value).rstrip("x"), prefix or not within), within


def _field_part(match: FieldMatch) -> tuple[Part, bool]:
    if match.field == "resource":
        type_token, exact = _field_token("resource_type", match.value, False)
        groups = [(type_token,)]
        if match.resource_id is not None:
            id_token, id_exact = _field_token("resource_id", match.resource_id, match.prefix)
            groups.append((id_token,))
            exact = exact and id_exact
        return Part(FIELDS, tuple(groups)), exact
    tokens = [_field_token(c, match.value, match.prefix)
              for c in QUALIFIER_COLUMNS[match.field]]
    return Part(FIELDS, (tuple(t for t, _ in tokens),)), all(e for _, e in tokens)


def _one_of(column: str, values: tuple[str, ...]) -> Part:
    return Part(FIELDS, (tuple(Token(field_token(column, v)) for v in values),))


def token_plan(flt: EventFilter) -> TokenPlan | None:
    """The full-text side of flt; None when flt has no search query."""
    if not flt.query.text and not flt.query.fields:
        return None
    terms: list[Part] = []
    excluded: list[Part] = []
    exact = flt.max_index is None
    planned: list[tuple[TextMatch | FieldMatch, tuple[Part, bool]]] = [
        *((m, _text_part(m)) for m in flt.query.text),
        *((m, _field_part(m)) for m in flt.query.fields),
    ]
    for match, (part, part_exact) in planned:
        (excluded if match.negated else terms).append(part)
        exact = exact and part_exact
    filters = []
    if flt.categories:
        filters.append(_one_of("category", tuple(flt.categories)))
    if flt.results:
        filters.append(_one_of("result", tuple(flt.results)))
    return TokenPlan(tuple(terms), tuple(filters), tuple(excluded), exact)
