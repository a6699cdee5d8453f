"""A filter's token plan (store.tokenplan) in SQLite FTS5's query syntax, for an org's
index with the columns search_text, word_pairs and field_tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sealog.search import EventFilter
from sealog.store.tokenplan import Part, Token, token_plan


@dataclass(frozen=True)
class Fts5Query:
    """Each side of a TokenPlan as an FTS5 expression, or None when it has no part."""

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


def _token(token: Token) -> str:
    return f'"{token.text}"' + ("*" if token.prefix else "")


def _part(part: Part) -> str:
    groups = [" OR ".join(_token(t) for t in group) for group in part.groups]
    if len(groups) == 1:
        return f"({part.tokens} : ({groups[0]}))"
    return "(" + " AND ".join(f"({part.tokens} : ({g}))" for g in groups) + ")"


def _all(parts: tuple[Part, ...]) -> str | None:
    return " AND ".join(_part(p) for p in parts) if parts else None


def fts5_query(flt: EventFilter) -> Fts5Query | None:
    """The full-text side of flt in FTS5 syntax; None when flt has no search query."""
    plan = token_plan(flt)
    if plan is None:
        return None
    return Fts5Query(
        terms=_all(plan.terms), filters=_all(plan.filters),
        excluded=" OR ".join(_part(p) for p in plan.excluded) if plan.excluded else None,
        exact=plan.exact,
    )
