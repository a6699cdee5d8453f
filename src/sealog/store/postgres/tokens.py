"""The search tokens of an event as PostgreSQL stores them: sealog.search's own, unsplit.

Each of the SQLite full-text index's columns (search_text, word_pairs, field_tokens) is a
tsvector column of events (words, pairs, fields), built here and sent in binary, each token
whole as a lexeme: PostgreSQL's parser never sees them. A term is asked of a column as a
tsquery lexeme, with `:*` for a word prefix.
"""

from __future__ import annotations

import struct

from sealog.search import FIELD_SEPARATOR

# PostgreSQL refuses a lexeme past 2,047 bytes; a word can be longer (a description of
# 1,000 letters of a 4-byte script is one word). A longer token is stored as its first
# KEPT_BYTES bytes (whole characters) and CUT_MARK, a character no token has (tokens are
# letters, digits and search.PAIR_JOINER): a prefix of it still finds it, and no term
# of KEPT_BYTES or fewer is taken for it. Field tokens are never this long.
KEPT_BYTES = 1023
CUT_MARK = "~"
_EMPTY_TSVECTOR = struct.pack("!i", 0)


def _cut(token: str) -> str | None:
    """token's first KEPT_BYTES bytes of whole characters; None when it fits whole."""
    raw = token.encode()
    if len(raw) <= KEPT_BYTES:
        return None
    return raw[:KEPT_BYTES].decode(errors="ignore")


def lexeme(token: str) -> str:
    """The stored form of one token."""
    cut = _cut(token)
    return token if cut is None else cut + CUT_MARK


def lexemes(text: str) -> list[str]:
    """The stored forms of a space-separated run of tokens (search_text, word_pairs or
    field_tokens), without the field separators; array_to_tsvector takes them as they are."""
    return [lexeme(t) for t in text.split() if t != FIELD_SEPARATOR]


def event_lexemes(search_text: str, word_pairs: str, field_tokens: str
                  ) -> tuple[list[str], list[str], list[str]]:
    """The words, pairs and fields columns of an event's row, as array_to_tsvector input."""
    return lexemes(search_text), lexemes(word_pairs), lexemes(field_tokens)


def tsvector_binary(text: str) -> bytes:
    """A run of tokens (search_text, word_pairs or field_tokens) as a tsvector in
    PostgreSQL's binary form, which a binary COPY hands to the column as it is: the count of
    lexemes, then each lexeme, its NUL and a zero count of positions, sorted and unique as
    array_to_tsvector(lexemes(text)) makes them."""
    unique = set(text.split())
    unique.discard(FIELD_SEPARATOR)
    if not unique:
        return _EMPTY_TSVECTOR
    # A token longer than KEPT_BYTES has over KEPT_BYTES / 4 characters (4 bytes at most
    # each), and so has its run.
    if len(text) * 4 > KEPT_BYTES and max(map(len, unique)) * 4 > KEPT_BYTES:
        unique = {lexeme(t) for t in unique}
    # Code point order is UTF-8's byte order, the order of a tsvector's lexemes; each is
    # followed by its NUL and a zero count of positions.
    entries = "\0\0\0".join(sorted(unique)) + "\0\0\0"
    return struct.pack("!i", len(unique)) + entries.encode()


def query_lexeme(token: str, *, prefix: bool) -> tuple[str, bool]:
    """The tsquery operand that finds token (every stored token starting with it when
    prefix), and whether it finds exactly those: a token past KEPT_BYTES is asked by its cut
    as a prefix, which also finds other long tokens that share it (their rows decide)."""
    cut = _cut(token)
    value, prefix, exact = (token, prefix, True) if cut is None else (cut, True, False)
    quoted = "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return quoted + (":*" if prefix else ""), exact
