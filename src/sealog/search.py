"""The search language and tokenisation: one definition that every store backend follows.

Text is split into words: maximal runs of letters and digits, lowercased, so
`alice@acme.com` is `alice acme com` and `guardrail.created` is `guardrail created`.
A term matches an event when one of its words starts with the term (word-prefix); a term
that splits into several words (`acme.com`) or a "quoted phrase" must match consecutive
words within one field.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from sealog import times
from sealog.events import CATEGORIES, RESULTS

_WORD = re.compile(r"[^\W_]+")
FIELD_SEPARATOR = "|"

QUALIFIERS = ("actor", "action", "result", "category", "resource", "method", "path", "ip")
# The stored columns a qualifier's value is tested on, in order (resource: type, then id).
QUALIFIER_COLUMNS = {
    "actor": ("actor_email", "actor_id", "actor_name"),
    "action": ("action",),
    "result": ("result",),
    "category": ("category",),
    "method": ("method",),
    "path": ("path",),
    "ip": ("ip",),
}
# The qualifier columns an event's row stores beside category, result and action.
STORED_COLUMNS = ("actor_id", "actor_email", "actor_name", "resource_type", "resource_id",
                  "method", "path", "ip")


def words(text: str | None) -> list[str]:
    """The searchable words of text, in order."""
    if not text:
        return []
    return _WORD.findall(text.lower())


# For ASCII text a byte translation table gives the same words as _WORD, 3x faster:
# letters and digits stay, \x1f (our field separator) becomes "|", all else a space.
_ASCII_WORDS = bytes(
    b if (48 <= b <= 57 or 97 <= b <= 122) else (124 if b == 31 else 32) for b in range(256)
)


# Consecutive words of one field are also joined into pairs, so that an index of words can
# match a term of several words without reading the event: `agt_0007` is the pair
# agt_0007. "_" is never in a word, and an index must count it as a letter in pairs.
PAIR_JOINER = "_"


def _one_field(value: str) -> tuple[str, str]:
    """The words of one field's value, and their pairs, each joined by spaces."""
    lowered = value.lower()
    if lowered.isascii():
        found = lowered.encode().translate(_ASCII_WORDS).replace(b"|", b" ").split()
        return (b" ".join(found).decode(),
                b" ".join([a + b"_" + b for a, b in pairwise(found)]).decode())
    found_words = _WORD.findall(lowered)
    return " ".join(found_words), " ".join(a + PAIR_JOINER + b for a, b in pairwise(found_words))


# Most field values repeat (descriptions, actions, actors, resource types), so the words of
# short ones are remembered (measured: 7.2 -> 1.7 µs an event when they repeat).
_FIELD_WORDS: dict[str, tuple[str, str]] = {}
_REMEMBERED_CHARS = 200


def _field_words(values: list[str | None]) -> tuple[str, str]:
    texts, pairs = [], []
    for value in values:
        if not value:
            continue
        found = _FIELD_WORDS.get(value)
        if found is None:
            found = _one_field(value)
            if len(value) <= _REMEMBERED_CHARS:
                if len(_FIELD_WORDS) >= 10_000:
                    _FIELD_WORDS.clear()
                _FIELD_WORDS[value] = found
        if found[0]:
            texts.append(found[0])
            if found[1]:
                pairs.append(found[1])
    return " " + f" {FIELD_SEPARATOR} ".join(texts) + " ", " ".join(pairs)


def search_words(doc: dict[str, Any]) -> tuple[str, str]:
    """The free-text words of an event (its search_text: description, action, actor email
    and name, resource type, id and name, request path; fields separated so that phrases
    stay inside one) and the pairs of consecutive words within each field."""
    actor = doc["actor"]
    resource = doc["resource"] or {}
    request = doc["request"] or {}
    return _field_words([
        doc["description"], doc["action"], actor["email"], actor["name"],
        resource.get("type"), resource.get("id"), resource.get("name"), request.get("path"),
    ])


_Value = str | None
StoredValues = tuple[_Value, _Value, _Value, _Value, _Value, _Value, _Value, _Value]


def stored_columns(doc: dict[str, Any]) -> StoredValues:
    """The values of an event's STORED_COLUMNS, as its row stores them: lowercased, but
    the request's method as sent."""
    actor = doc["actor"]
    resource = doc["resource"] or {}
    request = doc["request"] or {}
    return (_lower(actor["id"]), _lower(actor["email"]), _lower(actor["name"]),
            _lower(resource.get("type")), _lower(resource.get("id")), request.get("method"),
            _lower(request.get("path")), _lower(doc["context"]["ip"]))


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def word_pairs(text: str) -> str:
    """The word pairs of a search_text (as search_words gives them)."""
    pairs = []
    for field_text in text.split(FIELD_SEPARATOR):
        found = field_text.split()
        pairs += [a + PAIR_JOINER + b for a, b in pairwise(found)]
    return " ".join(pairs)


# Exact field tokens: one token per qualifier field of an event, so that an index of words
# can answer `action:policy.*` or `result:denied` alone. A token is the field's letter and
# the hex of its value's UTF-8 (letters and digits only, so any word tokenizer keeps it
# whole; a string prefix is a token prefix). Values past FIELD_TOKEN_BYTES are cut there and
# marked with "x", so a query value within the limit is still answered exactly.
FIELD_TOKEN_BYTES = 128
FIELD_LETTERS = {
    "category": "c", "result": "r", "action": "a", "actor_email": "e", "actor_id": "u",
    "actor_name": "n", "resource_type": "t", "resource_id": "d", "method": "m", "path": "p",
    "ip": "h",
}


def field_token(column: str, value: str) -> str:
    """The exact token of a (lowercased, as stored) field value."""
    raw = value.encode()
    if len(raw) > FIELD_TOKEN_BYTES:
        return FIELD_LETTERS[column] + raw[:FIELD_TOKEN_BYTES].hex() + "x"
    return FIELD_LETTERS[column] + raw.hex()


# Most field values repeat (categories, actions, actors), so their tokens are remembered.
_TOKENS: dict[tuple[str, str], str] = {}


def field_tokens(fields: Iterable[tuple[str, str | None]]) -> str:
    """The exact tokens of an event's qualifier fields, given as (column, stored value)."""
    found = []
    for key in fields:
        if key[1]:
            token = _TOKENS.get(key)  # type: ignore[arg-type]
            if token is None:
                token = field_token(*key)  # type: ignore[arg-type]
                if len(_TOKENS) >= 50_000:
                    _TOKENS.clear()
                _TOKENS[key] = token  # type: ignore[index]
            found.append(token)
    return " ".join(found)


# What one query may ask for, so that its cost stays bounded whatever is typed: the
# terms, phrases and qualifiers of a query, and the shortest word-prefix a term may be (a
# one-character prefix expands to a large part of the index: measured 2.5 times the entries
# of the costliest two-character one). Repeated parts count once in the work done.
MAX_QUERY_CHARS = 1000
MAX_QUERY_PARTS = 20
MIN_PREFIX_CHARS = 2


class SearchSyntaxError(ValueError):
    """Raised for a malformed query; `token` and `position` point at the culprit."""

    def __init__(self, message: str, token: str, position: int):
        self.token = token
        self.position = position
        super().__init__(f"{message} (at character {position + 1}: {token!r})")


@dataclass(frozen=True)
class TextMatch:
    """Free text: consecutive words within one field, the last a prefix unless quoted."""

    words: tuple[str, ...]
    prefix: bool
    negated: bool = False

    def needle(self) -> str:
        """The substring of search_text whose presence means a match."""
        return " " + " ".join(self.words) + ("" if self.prefix else " ")


@dataclass(frozen=True)
class FieldMatch:
    """A qualifier: field equals value (case-insensitive), or starts with it when prefix."""

    field: str
    value: str
    prefix: bool = False
    negated: bool = False
    resource_id: str | None = None


@dataclass(frozen=True)
class Query:
    """A parsed `q`: every match must hold."""

    text: tuple[TextMatch, ...] = ()
    fields: tuple[FieldMatch, ...] = ()


def _split(q: str) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = []
    i, n = 0, len(q)
    while i < n:
        if q[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not q[i].isspace():
            if q[i] == '"':
                close = q.find('"', i + 1)
                if close < 0:
                    raise SearchSyntaxError("unclosed quote", q[i:], i)
                i = close + 1
            else:
                i += 1
        items.append((q[start:i], start))
    return items


def _unquote(text: str) -> tuple[str, bool]:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1], True
    if '"' in text:
        raise ValueError("quotes must enclose the whole term or value")
    return text, False


def parse_query(q: str | None) -> Query:
    """The Query that q says; raises SearchSyntaxError naming the bad token."""
    if not q or not q.strip():
        return Query()
    if len(q) > MAX_QUERY_CHARS:
        raise SearchSyntaxError(f"query is longer than {MAX_QUERY_CHARS:,} characters",
                                q[:20] + "…", 0)
    text: list[TextMatch] = []
    fields: list[FieldMatch] = []
    parts = _split(q)
    if len(parts) > MAX_QUERY_PARTS:
        token, pos = parts[MAX_QUERY_PARTS]
        raise SearchSyntaxError(
            f"a query takes at most {MAX_QUERY_PARTS} terms and qualifiers, this one has "
            f"{len(parts)}: remove some, or narrow with category, result or range instead",
            token, pos)
    for token, pos in parts:
        body = token
        negated = body.startswith("-")
        if negated:
            body = body[1:]
            if not body:
                raise SearchSyntaxError("'-' must be followed by a term to exclude", token, pos)
        name, sep, value = body.partition(":")
        if sep and not name.startswith('"') and re.fullmatch(r"[A-Za-z_]+", name):
            fields.append(_qualifier(name.lower(), value, negated, token, pos))
            continue
        try:
            raw, quoted = _unquote(body)
        except ValueError as exc:
            raise SearchSyntaxError(str(exc), token, pos) from None
        found = words(raw)
        if not found:
            raise SearchSyntaxError("term has no letters or digits to search for", token, pos)
        if not quoted and len(found) == 1 and len(found[0]) < MIN_PREFIX_CHARS:
            raise SearchSyntaxError(
                f"a term matches the words that start with it, and needs at least "
                f"{MIN_PREFIX_CHARS} characters for that; quote it "
                f"({'-' if negated else ''}\"{found[0]}\") to match the whole word", token, pos)
        text.append(TextMatch(tuple(found), prefix=not quoted, negated=negated))
    # A part written twice asks nothing more; the index would do its work twice.
    return Query(tuple(dict.fromkeys(text)), tuple(dict.fromkeys(fields)))


def _qualifier(name: str, value: str, negated: bool, token: str, pos: int) -> FieldMatch:
    if name not in QUALIFIERS:
        raise SearchSyntaxError(
            f"unknown qualifier {name!r}; use one of {', '.join(QUALIFIERS)}", token, pos
        )
    try:
        value, quoted = _unquote(value)
    except ValueError as exc:
        raise SearchSyntaxError(str(exc), token, pos) from None
    prefix = not quoted and value.endswith("*")
    if prefix:
        value = value[:-1]
    value = value.lower()
    if not value:
        raise SearchSyntaxError(f"{name}: needs a value", token, pos)
    if "*" in value:
        raise SearchSyntaxError("'*' is allowed only at the end of a value", token, pos)
    if name in ("result", "category"):
        allowed = RESULTS if name == "result" else CATEGORIES
        if prefix or value not in allowed:
            raise SearchSyntaxError(f"{name}: must be one of {', '.join(allowed)}", token, pos)
    if name == "method":
        value = value.upper()
    if name == "resource":
        rtype, colon, rid = value.partition(":")
        if not rtype or (colon and not rid):
            raise SearchSyntaxError("resource: takes type or type:id", token, pos)
        if not colon and prefix:
            raise SearchSyntaxError("resource: takes a prefix only on the id", token, pos)
        return FieldMatch("resource", rtype, prefix, negated, rid if colon else None)
    return FieldMatch(name, value, prefix, negated)


def matches(query: Query, doc: dict[str, Any]) -> bool:
    """Whether the event doc holds every part of query: what the stores' exact conditions
    (store.sqlfilter) decide, for one event in hand."""
    if query.text:
        text = search_words(doc)[0]
        for match in query.text:
            if (match.needle() in text) == match.negated:
                return False
    if query.fields:
        values = dict(zip(STORED_COLUMNS, stored_columns(doc), strict=True),
                      category=doc["category"], result=doc["result"], action=doc["action"])
        for field_match in query.fields:
            if field_match.field == "resource":
                hit = values["resource_type"] == field_match.value and (
                    field_match.resource_id is None or _value_holds(
                        values["resource_id"], field_match.resource_id, field_match.prefix))
            else:
                hit = any(_value_holds(values[column], field_match.value, field_match.prefix)
                          for column in QUALIFIER_COLUMNS[field_match.field])
            if hit == field_match.negated:
                return False
    return True


def _value_holds(stored: str | None, value: str, prefix: bool) -> bool:
    if stored is None:
        return False
    return stored.startswith(value) if prefix else stored == value


class QueryTooCostly(ValueError):
    """Raised by a store when one search needs more than `budget` seconds of database work."""

    def __init__(self, budget: float):
        self.budget = budget
        super().__init__(
            f"the search took more than its limit of {budget:g} s of database work; narrow "
            "it with a shorter time range, a category or result filter, or longer terms")


class FilterError(ValueError):
    """Raised for a filter value that does not exist (category, result)."""


class CursorError(ValueError):
    """Raised for a cursor this API did not hand out."""


@dataclass(frozen=True)
class EventFilter:
    """Which events of one org a list, count or export takes."""

    org_id: str
    time_range: times.TimeRange
    categories: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    query: Query = field(default_factory=Query)
    max_index: int | None = None


def build_filter(
    *,
    org_id: str,
    range_preset: str | None = None,
    start: str | None = None,
    end: str | None = None,
    tz: str | None = None,
    categories: list[str] | tuple[str, ...] = (),
    results: list[str] | tuple[str, ...] = (),
    q: str | None = None,
    now_us: int | None = None,
) -> EventFilter:
    """An EventFilter from API-shaped parameters; raises TimeError, SearchSyntaxError or
    FilterError."""
    for category in categories:
        if category not in CATEGORIES:
            raise FilterError(f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
    for result in results:
        if result not in RESULTS:
            raise FilterError(f"unknown result {result!r}; use one of {', '.join(RESULTS)}")
    return EventFilter(
        org_id=org_id,
        time_range=times.resolve_range(range_preset, start=start, end=end, tz=tz, now=now_us),
        categories=tuple(dict.fromkeys(categories)),
        results=tuple(dict.fromkeys(results)),
        query=parse_query(q),
    )


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last event's occurred_at and id (newest-first order)."""

    occurred_us: int
    event_id: str

    def encode(self) -> str:
        raw = f"v1:{self.occurred_us}:{self.event_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor text stands for; raises CursorError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            version, occurred, event_id = raw.split(":", 2)
            if version != "v1" or not event_id:
                raise ValueError
            cursor = cls(int(occurred), event_id)
            # int() takes " 12", "+12", "1_2" and other scripts' digits: only the exact
            # text a cursor encodes to is one this API returned.
            if cursor.encode() != text:
                raise ValueError
            return cursor
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise CursorError("cursor is not one this API returned") from None
