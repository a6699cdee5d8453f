"""The audit event: catalog, validation, redaction, truncation and canonical form (RFC 8785)."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

import orjson
import rfc8785
import uuid_utils
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from sealog import times

CATEGORIES = (
    "agent_operations",
    "policy_changes",
    "user_actions",
    "security_events",
    "system_events",
)
CATEGORY_LABELS = {
    "agent_operations": "Agent Operations",
    "policy_changes": "Policy Changes",
    "user_actions": "User Actions",
    "security_events": "Security Events",
    "system_events": "System Events",
}
RESULTS = ("success", "failed", "denied", "warning", "approved", "allowed")
ACTOR_TYPES = ("user", "agent", "api_key", "system")

MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 10 * 1024 * 1024
MAX_FUTURE_US = 5 * 60 * 10**6
MAX_BODY_BYTES = 64 * 1024
BODY_PREVIEW_CHARS = 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_SAFE_INTEGER = 2**53 - 1
# Arrays and objects, one level each, that metadata, request.body, request.response and
# context may nest (the field's own object counts): deeper JSON is refused, not stored.
MAX_JSON_DEPTH = 64
REDACTED = "[REDACTED]"
DEFAULT_SECRET_KEYS = (
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "authorization",
    "credentials",
    "cookie",
    "set-cookie",
    "private_key",
    "client_secret",
)

# Matched with fullmatch: in Python, `$` matches before a trailing newline too.
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+$")
UUID_PATTERN = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


@dataclass(frozen=True)
class CatalogEntry:
    """Defaults a built-in action brings: its category, badge label and description."""

    category: str
    event_type: str
    description: str


def _entries(category: str, event_type: str, descriptions: dict[str, str]) -> dict:
    return {a: CatalogEntry(category, event_type, d) for a, d in descriptions.items()}


CATALOG: dict[str, CatalogEntry] = {
    **_entries("agent_operations", "Agent Change", {
        "agent.created": "Created agent",
        "agent.updated": "Updated agent",
        "agent.deleted": "Deleted agent",
        "agent.blocked": "Blocked agent",
        "agent.unblocked": "Unblocked agent",
        "agent.trust_tier_changed": "Changed agent trust tier",
    }),
    **_entries("agent_operations", "Guardrail Change", {
        "guardrail.created": "Created guardrail for agent",
        "guardrail.updated": "Updated guardrail for agent",
        "guardrail.deleted": "Deleted guardrail from agent",
    }),
    **_entries("policy_changes", "Policy Change", {
        "policy.created": "Created OPA policy",
        "policy.updated": "Updated OPA policy",
        "policy.deleted": "Deleted OPA policy",
        "policy.enabled": "Enabled OPA policy",
        "policy.disabled": "Disabled OPA policy",
    }),
    **_entries("user_actions", "Member Change", {
        "member.invited": "Invited member to organization",
        "member.removed": "Removed member from organization",
        "member.role_changed": "Changed member role",
    }),
    **_entries("user_actions", "Settings Change", {
        "settings.updated": "Updated organization settings",
    }),
    **_entries("user_actions", "Approval Decision", {
        "approval.approved": "Approved agent action request",
        "approval.denied": "Denied agent action request",
    }),
    **_entries("user_actions", "Audit Access", {
        "audit_log.viewed": "Viewed audit log",
        "audit_log.exported": "Exported audit log",
        "audit_log.export_downloaded": "Downloaded audit log export",
    }),
    **_entries("user_actions", "Log Stream", {
        "stream.created": "Created log stream",
        "stream.updated": "Updated log stream",
        "stream.paused": "Paused log stream",
        "stream.resumed": "Resumed log stream",
        "stream.replayed": "Replayed log stream",
        "stream.secret_rotated": "Rotated log stream signing secret",
        "stream.deleted": "Deleted log stream",
    }),
    **_entries("user_actions", "Retention", {
        "retention.changed": "Changed audit log retention policy",
        "legal_hold.placed": "Placed legal hold on audit log",
        "legal_hold.released": "Released legal hold on audit log",
    }),
    **_entries("user_actions", "Erasure", {
        "audit_log.erased": "Erased the content of audit log events",
    }),
    **_entries("system_events", "Retention", {
        "audit_log.purged": "Removed events under the retention policy",
        "audit_log.closed": "Closed the organization's log and deleted its data",
    }),
    **_entries("security_events", "Login Attempt", {
        "auth.login_succeeded": "Signed in",
        "auth.login_failed": "Failed sign-in attempt",
        "auth.logout": "Signed out",
    }),
    **_entries("security_events", "API Key", {
        "api_key.created": "Created API key",
        "api_key.revoked": "Revoked API key",
        "api_key.used": "Used API key",
    }),
    **_entries("security_events", "Suspicious Activity", {
        "security.suspicious_activity": "Detected suspicious activity",
    }),
    **_entries("system_events", "Trust Score Change", {
        "trust_score.changed": "Trust score changed automatically",
    }),
}
CATALOG_PREFIXES: dict[str, CatalogEntry] = {
    "job.": CatalogEntry("system_events", "Scheduled Job", "Ran scheduled job"),
    "system.": CatalogEntry("system_events", "System Operation", "System operation"),
}


def catalog_entry(action: str) -> CatalogEntry | None:
    """The built-in defaults for action, or None for an action outside the catalog."""
    entry = CATALOG.get(action)
    if entry is None:
        for prefix, prefixed in CATALOG_PREFIXES.items():
            if action.startswith(prefix):
                return prefixed
    return entry


# The wire model, as TypedDicts: pydantic-core checks a whole batch in one call (twice as
# fast as model instances) and the same types give the OpenAPI schema. Rules that span
# fields (catalog, time bounds, sizes) are checked after it, in `_normalise`.
_STRICT = ConfigDict(extra="forbid", strict=True)
# PostgreSQL text cannot hold NUL, so the indexed strings refuse it on every backend.
_NO_NUL = r"^[^\x00]*$"


def _text(min_length: int, max_length: int, description: str | None = None) -> Any:
    """The constraints of an indexed string field, for Annotated[str, ...]."""
    return Field(min_length=min_length, max_length=max_length, pattern=_NO_NUL,
                 description=description)


@with_config(_STRICT)
class ActorIn(TypedDict):
    id: NotRequired[Annotated[str, _text(1, 256)] | None]
    email: NotRequired[Annotated[str, _text(3, 320)] | None]
    name: NotRequired[Annotated[str, _text(1, 256)] | None]
    type: NotRequired[Literal["user", "agent", "api_key", "system"]]


@with_config(_STRICT)
class ResourceIn(TypedDict):
    type: Annotated[str, _text(1, 64, "Resource Type, e.g. guardrail")]
    id: NotRequired[Annotated[str, _text(1, 256)] | None]
    name: NotRequired[Annotated[str, _text(1, 256)] | None]


@with_config(_STRICT)
class RequestIn(TypedDict):
    method: Annotated[str, _text(1, 16)]
    path: Annotated[str, _text(1, 2048)]
    status: NotRequired[Annotated[int, Field(ge=100, le=599)] | None]
    body: NotRequired[Any]
    response: NotRequired[Any]


@with_config(ConfigDict(extra="allow", strict=True))
class ContextIn(TypedDict):
    ip: NotRequired[Annotated[str, _text(0, 64)] | None]
    user_agent: NotRequired[Annotated[str, _text(0, 1024)] | None]
    session_id: NotRequired[Annotated[str, _text(0, 256)] | None]
    request_id: NotRequired[Annotated[str, _text(0, 256)] | None]


@with_config(_STRICT)
class EventIn(TypedDict):
    """One event as a producer sends it."""

    id: NotRequired[Annotated[str | None, Field(description="UUIDv7; makes retries idempotent")]]
    occurred_at: NotRequired[Annotated[str | None, Field(description="RFC 3339; default: now")]]
    category: NotRequired[Literal[
        "agent_operations", "policy_changes", "user_actions", "security_events", "system_events"
    ] | None]
    event_type: NotRequired[Annotated[str, _text(1, 64)] | None]
    action: Annotated[str, Field(min_length=3, max_length=128, pattern=ACTION_PATTERN.pattern)]
    description: NotRequired[Annotated[str, _text(1, 1000)] | None]
    result: Literal["success", "failed", "denied", "warning", "approved", "allowed"]
    actor: ActorIn
    resource: NotRequired[ResourceIn | None]
    request: NotRequired[RequestIn | None]
    context: NotRequired[ContextIn | None]
    metadata: NotRequired[dict[str, Any] | None]


@with_config(_STRICT)
class EventBatchIn(TypedDict):
    """The body of POST /api/v1/events."""

    events: list[EventIn]


_EVENTS_ADAPTER = TypeAdapter(list[EventIn])
EVENT_BATCH_SCHEMA_ADAPTER = TypeAdapter(EventBatchIn)


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of one event of a batch."""

    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


class EventValidationError(ValueError):
    """Raised when any event of a batch is invalid; `errors` names each field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        first = errors[0]
        where = f"event {first.index}: " if first.index is not None else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}{first.field}: {first.message}{more}")


@dataclass
class Redactor:
    """Replaces secrets with "[REDACTED]" at any depth of free JSON, by what keys mean.

    A key is split into words (at `_`, `-`, `.`, spaces, camelCase and digits; words
    joined without a break, as in `accesstoken`, are split before a name's words), each
    taken in its singular. It is secret when its words contain one of the configured
    names' words consecutively, unless a word after them says what the value describes
    (`token_type`, `secret_name`, `token_count`; but `secret_id` is a credential) or, for a
    plural, a word before them counts (`max_tokens`, `prompt_tokens`). A JSON number under
    a key ending in a plural is a count and kept (`tokens: 1523`; not digits as text, nor
    under a name configured in the plural). The value of a `[name, value]` pair in a list, and of
    a `{"name": …, "value": …}` object, is redacted when the name is secret; in strings,
    a URL's password, the values of secret `name=value` parameters and secrets inside
    JSON text are.
    """

    names: tuple[str, ...] = DEFAULT_SECRET_KEYS
    _patterns: list[tuple[str, ...]] = field(init=False, repr=False)
    _compounds: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    _suffixes: tuple[str, ...] = field(init=False, repr=False)
    _starting: dict[str, list[tuple[str, ...]]] = field(init=False, repr=False)
    _plural_names: frozenset[str] = field(init=False, repr=False)
    _cache: dict[str, int] = field(init=False, repr=False, default_factory=dict)
    _suspect_words: list[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        singular = [p for p in (tuple(_singular(w) for w in _key_words(n)) for n in self.names)
                    if p]
        # A word such as "apikey" or "accesstoken" holds a name's words without a break.
        self._compounds = {}
        for pattern in sorted(singular, key=len):  # "api_key" wins over "apikey"
            self._compounds["".join(pattern)] = pattern
        self._suffixes = tuple(sorted((j for j in self._compounds if len(j) >= _MIN_SUFFIX),
                                      key=len, reverse=True))
        self._patterns = sorted({tuple(x for w in p for x in self._split(w)) for p in singular})
        self._starting = {}
        for pattern in self._patterns:
            self._starting.setdefault(pattern[0], []).append(pattern)
        # The last words of names given in the plural ("credentials"): in a key, such a word
        # is the name itself, not a plural of it.
        self._plural_names = frozenset(
            self._split(_singular(words[-1]))[-1] for words in map(_key_words, self.names)
            if words and _singular(words[-1]) != words[-1])
        # Serialised JSON with none of these words or bytes holds no secret key, no
        # fractional number, no escaped quote and no key that orjson and RFC 8785 sort
        # apart, so it needs no walk: the common case, and the fast one. Each word of a
        # name appears, as it is, in every key, parameter or pair name that matches it.
        self._suspect_words = [w.encode() for w in _suspects(self._patterns)]

    def _split(self, word: str) -> tuple[str, ...]:
        exact = self._compounds.get(word)
        if exact is not None:
            return exact
        if word.endswith(self._suffixes):  # one call for the common word that ends in none
            for joined in self._suffixes:
                if word.endswith(joined):
                    return (word[: -len(joined)], *self._compounds[joined])
        return (word,)

    def secrecy(self, key: str) -> int:
        """PLAIN, SECRET, or SECRET_UNLESS_NUMBER (a key ending in a plural: a number under it
        is a count)."""
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._judge(key)
            # Long keys are judged each time: a cache of them would hold megabytes.
            if len(key) <= _CACHED_KEY_CHARS and len(self._cache) < 10000:
                self._cache[key] = verdict
        return verdict

    def is_secret(self, key: str, value: Any = None) -> bool:
        """Whether the value of key (or of a pair or parameter so named) is redacted."""
        verdict = self.secrecy(key)
        return verdict == SECRET or (verdict == SECRET_UNLESS_NUMBER and not _is_count(value))

    def _judge(self, key: str) -> int:
        words: list[str] = []
        plural: list[bool] = []
        for raw in _key_words(key):
            stem = _singular(raw)
            pieces = self._split(stem)
            words.extend(pieces)
            plural.extend([False] * (len(pieces) - 1))
            plural.append(stem != raw and pieces[-1] not in self._plural_names)
        # Where the last describing and the first counting word are, found once: each match
        # is then judged at once, so a key costs time linear in its length, however long.
        last_describing = -1
        first_counting = len(words)
        for i, word in enumerate(words):
            if word in _DESCRIBING:
                last_describing = i
            if word in _COUNTING and first_counting > i:
                first_counting = i
        starting = self._starting
        for i, word in enumerate(words):
            for pattern in starting.get(word, ()):
                end = i + len(pattern)
                if tuple(words[i:end]) != pattern:
                    continue
                if last_describing > end or (last_describing == end
                                             and (pattern[-1], words[end]) not in _CREDENTIALS):
                    continue  # token_type, secret_name, token_count, password_changed_at
                if plural[end - 1] and first_counting < i:
                    continue  # max_tokens, prompt_tokens, num_tokens
                return SECRET_UNLESS_NUMBER if plural[-1] else SECRET
        return PLAIN

    def redact(self, value: Any) -> Any:
        """A copy of JSON value with the values of secret-looking keys at any depth redacted;
        raises ValueError for what an event cannot hold (e.g. nested past MAX_JSON_DEPTH)."""
        walk = _JsonWalk(self)
        copied = walk.copy(value)
        if walk.problem:
            raise ValueError(walk.problem)
        return copied

    def redact_text(self, text: str) -> str:
        """text with a URL's password and the values of secret `name=value` parameters
        (in a query, a fragment, a form body or `NAME=value` words) redacted."""
        if "@" in text and "://" in text:
            text = _USERINFO.sub(_redact_password, text)
        if "=" in text:
            text = _PARAMETER.sub(self._redact_parameter, text)
        return text

    def _redact_parameter(self, match: re.Match[str]) -> str:
        name, value = match[1], match[2]
        if value and self.is_secret(_PERCENT_ESCAPE.sub(" ", name) if "%" in name else name,
                                    value):
            return f"{name}={REDACTED}"
        return match[0]

    def may_need_walk(self, encoded: bytes, levels: int = MAX_JSON_DEPTH) -> bool:
        """False only when orjson's text `encoded` of a value surely needs no redaction or
        exact JCS, holds no NaN or infinity (which orjson writes as null) and nests at most
        levels deep."""
        if b'\\"' in encoded or b"null" in encoded or _FRACTIONAL.search(encoded) is not None:
            return True
        if not encoded.isascii() and _PAST_U_E000.search(encoded) is not None:
            return True
        if self.mentions_secret(encoded):
            return True
        return not _nests_at_most(encoded, levels)

    def mentions_secret(self, encoded: bytes) -> bool:
        """False only when JSON text without escapes surely holds no key, pair, parameter
        or URL that is redacted: none of the names' words (in any case), no URL password."""
        lowered = encoded.lower()
        for word in self._suspect_words:  # a plain loop: a generator costs 1.3 µs more
            if word in lowered:
                return True
        # A URL's password is redacted whatever the names: any scheme://user:pass@.
        return b"://" in encoded and _USERINFO_BYTES.search(encoded) is not None


PLAIN, SECRET, SECRET_UNLESS_NUMBER = 0, 1, 2
# Keys this long or shorter are judged once; longer ones (rare, or an attack) each time.
_CACHED_KEY_CHARS = 256
# Joined words this long or longer are found at the end of a word ("accesstoken"); shorter
# ones ("pwd", "auth") only as whole words, so that "oauth" is not "o auth".
_MIN_SUFFIX = 5
# Words after a name that make the key describe the secret rather than hold it. (Not
# "url" or "path": a reset link or a presigned URL may carry the secret itself.)
_DESCRIBING = frozenset((
    "count", "num", "number", "total", "max", "min", "limit", "used", "usage", "remaining",
    "budget", "per", "detail", "type", "kind", "name", "id", "ids", "length", "len", "size",
    "policy", "rule", "endpoint", "ref", "arn", "expire", "expiry",
    "expiration", "ttl", "lifetime", "time", "required", "enabled", "valid", "method", "mode",
    "provider", "scheme", "status", "error", "version", "format", "alg", "algorithm",
    "scope", "strength", "created", "changed", "updated", "rotated",
))
# A name's last word and a describing word right after it that together name a credential,
# not describe one: Vault AppRole's secret_id is the secret, where token_id names a token.
_CREDENTIALS = frozenset((("secret", "id"), ("secret", "ids")))
# Words before a plural name that make the key a count ("prompt_tokens: 12").
_COUNTING = frozenset((
    "count", "num", "number", "n", "total", "max", "min", "limit", "used", "remaining",
    "estimated", "generated", "billed", "prompt", "completion", "input", "output", "cached",
    "reasoning", "audio", "image", "text", "context", "prediction",
))
# A URL's userinfo password (RFC 3986 user:password@), up to the authority's last "@"; the
# user name is kept. The bytes form finds every such URL in orjson's text of a value. (A
# scheme is only tried where a run of its characters starts, and each part stops at a "/",
# so that the search stays linear in the text.)
_USERINFO = re.compile(r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*:)"
                       r"([^\s/?#]*)@", re.ASCII)
_USERINFO_BYTES = re.compile(rb"://[^\s/?#@:]*:[^\s/?#]*@")
# name=value after the start, a space, ? & # ; or a quote: query, fragment, form or
# cookie parameters and NAME=value words. A value ends where a parameter does, or at "?",
# so that a URL nested in another's query is read too.
_PARAMETER = re.compile(r"(?<![^\s?&#;'\"])([A-Za-z0-9_.\-\[\]%]+)=([^\s?&#;'\"<>]*)",
                        re.ASCII)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _suspects(patterns: list[tuple[str, ...]]) -> list[str]:
    """Words one of which every key matching any of patterns contains, few and long."""
    words = {p[0] for p in patterns if len(p) == 1}
    for pattern in patterns:
        if not words.intersection(pattern):
            words.add(max(pattern, key=len))
    # Text holding "authorization" holds "auth": one search finds both.
    return sorted(w for w in words if not any(o != w and o in w for o in words))


def _is_count(value: Any) -> bool:
    """Whether value is a JSON number; digits as text (a PIN, a one-time code) are not."""
    kind = type(value)
    return kind is int or kind is float


def _redact_password(match: re.Match[str]) -> str:
    return f"{match[1]}{REDACTED}@" if match[2] else match[0]


def _singular(word: str) -> str:
    """word without a plural's s; words in -ss, -us and -is (pass, status, analysis) are kept."""
    if len(word) > 3 and word[-1] == "s" and word[-2] not in "sui":
        return word[:-1]
    return word


# A digit then '.', 'e' or 'E': every fractional JSON number has one (strings may too).
_FRACTIONAL = re.compile(rb"[0-9][.eE]")
# UTF-8 lead bytes of U+E000 and above, where code point and UTF-16 orders differ.
_PAST_U_E000 = re.compile(rb"[\xee-\xf4]")
# What shows the nesting of JSON text: its brackets (all made square) and its quotes.
_NOT_NESTING = bytes(b for b in range(256) if b not in b'"[]{}')
_SQUARE = bytes.maketrans(b"{}", b"[]")
_STRING = re.compile(rb'"[^"]*"')


def _nests_at_most(encoded: bytes, levels: int) -> bool:
    """Whether JSON text with no escaped quote nests at most levels arrays and objects deep."""
    marks = encoded.translate(_SQUARE, _NOT_NESTING)
    if marks.count(b"[") <= levels:
        return True
    if b'"' in marks:
        # Quotes pair up in order: dropping two adjacent ones drops an empty string or
        # joins two, and no bracket outside strings. What is left is rare, and slower.
        marks = marks.replace(b'""', b"")
        if b'"' in marks:
            marks = _STRING.sub(b"", marks)
    # Each pass removes the innermost pairs, one level: few passes for most JSON.
    for _ in range(levels):
        if not marks:
            return True
        marks = marks.replace(b"[]", b"")
    return not marks


# An acronym stays one word ("APIKey", "SSNs"): the name's words are found inside it.
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])"
                         r"|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")


def _key_words(key: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT.split(key) if w]


# orjson refuses (TypeError, so the walk runs and names them) integers past ±(2^53-1),
# dates and times, dataclasses and subclasses of str, int, dict and list: what the walk
# refuses. Tuples, UUIDs and enums it writes as arrays, strings and their values, and the
# walk takes them so too, so that an event is refused or stored alike on either path.
_PLAIN_JSON = (orjson.OPT_STRICT_INTEGER | orjson.OPT_PASSTHROUGH_DATETIME
               | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)


# Values whose JSON is this short are walked at once: the walk costs less than the checks
# that would spare it (measured: 0.6 against 2.5 µs for a 60-byte body).
SMALL_JSON = 256
# What JSON text held in a string starts with, after any white space (RFC 8259): an object,
# an array, or a string (JSON encoded twice).
_JSON_TEXT_STARTS = ("{", "[", '"')
_JSON_SPACES = " \t\n\r"
_JSON_SPACE = tuple(_JSON_SPACES)
# orjson's messages for JSON it reads but will not hold (other errors mean it is not JSON).
_UNREADABLE_JSON = ("depth limit exceeded", "number is infinity")
# Keys naming the value of a {"name": …, "value": …} object (HAR, Postman, AWS tags).
_NAMED_VALUE_KEYS = (("name", "value"), ("key", "value"), ("Name", "Value"), ("Key", "Value"))


class _JsonWalk:
    """Copies free JSON, redacting secrets and noting what needs the exact RFC 8785 path."""

    __slots__ = ("redactor", "secrecy", "needs_exact_jcs", "problem", "redacted")

    def __init__(self, redactor: Redactor):
        self.redactor = redactor
        self.secrecy = redactor.secrecy
        self.needs_exact_jcs = False
        self.problem: str | None = None
        self.redacted = False  # whether the copy differs from the value by a secret

    def clean(self, value: Any) -> tuple[Any, int]:
        """value redacted (a copy only when needed) and the size of its JSON text."""
        if value is None:
            return None, 4
        try:
            encoded = orjson.dumps(value, option=_PLAIN_JSON)
        except TypeError:
            encoded = b'\\"'  # forces the walk, which names what is wrong
        if len(encoded) > SMALL_JSON and not self.redactor.may_need_walk(encoded):
            return value, len(encoded)
        copied = self.copy(value)
        if self.problem:
            return copied, 0
        return copied, len(orjson.dumps(copied))

    def plain(self, value: Any, limit: int) -> bool:
        """Whether the list value is JSON of at most limit bytes that surely needs no walk."""
        try:
            encoded = orjson.dumps(value, option=_PLAIN_JSON)
        except TypeError:
            return False
        return (SMALL_JSON < len(encoded) <= limit
                and not self.redactor.may_need_walk(encoded, MAX_JSON_DEPTH + 1))

    def copy(self, value: Any, depth: int = 0) -> Any:
        kind = type(value)
        if kind is str:
            if value.startswith(_JSON_TEXT_STARTS) or (
                    value.startswith(_JSON_SPACE) and value.lstrip(_JSON_SPACES).startswith(
                        _JSON_TEXT_STARTS)):
                value = self._json_text(value)
            if "=" in value or "@" in value:
                redacted = self.redactor.redact_text(value)
                self.redacted |= redacted != value
                return redacted
            return value
        if kind is bool or value is None:
            return value
        if kind is dict:
            if depth == MAX_JSON_DEPTH:
                return self._too_deep(value)
            secrecy = self.secrecy
            named = self._named_secret(value) if "value" in value or "Value" in value else None
            out = {}
            for key, item in value.items():
                if not key.isascii():
                    # orjson sorts keys by code point, RFC 8785 by UTF-16 unit.
                    self.needs_exact_jcs = True
                verdict = secrecy(key)
                if key == named or (verdict and (verdict == SECRET or not _is_count(item))):
                    out[key] = REDACTED
                    self.redacted = True
                else:
                    out[key] = self.copy(item, depth + 1)
            return out
        if kind is list or kind is tuple:
            if depth == MAX_JSON_DEPTH:
                return self._too_deep(value)
            items = []
            for item in value:
                inner = type(item)
                if ((inner is list or inner is tuple) and len(item) == 2
                        and type(item[0]) is str and self.redactor.is_secret(*item)):
                    items.append([self.copy(item[0], depth + 1), REDACTED])  # a [name, value]
                    self.redacted = True
                else:
                    items.append(self.copy(item, depth + 1))
            return items
        if kind is uuid.UUID:
            return str(value)
        if isinstance(value, enum.Enum):
            return self.copy(value.value, depth)
        if kind is int:
            if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                return value
            if value.bit_length() > 1024:
                self.problem = "an integer is beyond the range of JSON numbers (about 1.8e308)"
                return value
            # RFC 8785 numbers are doubles, and JavaScript's JSON.parse rounds such an
            # integer: its exact digits are kept as a string.
            return str(value)
        if kind is float:
            if value != value or value in (float("inf"), float("-inf")):
                self.problem = "NaN and Infinity are not JSON numbers"
            elif MAX_SAFE_INTEGER < abs(value) < 1e21:
                # RFC 8785 writes it as bare digits (1e20 as 100000000000000000000), which
                # JSON readers take for an integer past 2^53: kept as a string of them.
                return rfc8785.dumps(value).decode()
            self.needs_exact_jcs = True
            return value
        self.problem = f"{kind.__name__} is not a JSON value"
        return value

    def _named_secret(self, value: dict) -> str | None:
        """The "value" key of a {"name": <secret name>, "value": …} object, else None."""
        for name_key, value_key in _NAMED_VALUE_KEYS:
            name = value.get(name_key)
            if (type(name) is str and value_key in value
                    and self.redactor.is_secret(name, value[value_key])):
                return value_key
        return None

    def _json_text(self, text: str) -> str:
        """JSON text held in a string (a tool call's arguments, a HAR body) with its
        secrets redacted, rewritten only when it had some; "[REDACTED]" whole when it is
        JSON that cannot be walked (too deep, a number past a double) and may hold one."""
        try:
            parsed = loads_json(text.encode())
        except ValueError as exc:
            if isinstance(exc, orjson.JSONDecodeError) and not exc.msg.startswith(
                    _UNREADABLE_JSON):
                return text  # not JSON: free text
            return self._unreadable(text)
        # Its own walk: numbers inside a string do not make the event need exact JCS, and
        # a string is no nesting of the event's.
        walk = _JsonWalk(self.redactor)
        copied = walk.copy(parsed)
        if walk.problem:
            return self._unreadable(text)
        if not walk.redacted:
            return text  # nothing else in it changes, numbers included
        self.redacted = True
        return orjson.dumps(copied).decode()

    def _unreadable(self, text: str) -> str:
        """JSON text whose secrets cannot be found one by one: "[REDACTED]" unless it surely
        holds none (no string at all, or no escape, name's word or URL password)."""
        if '"' in text and ("\\" in text or self.redactor.mentions_secret(
                text.encode("utf-8", "surrogatepass"))):
            self.redacted = True
            return REDACTED
        return text

    def _too_deep(self, value: Any) -> Any:
        self.problem = f"is nested more than {MAX_JSON_DEPTH} levels deep (arrays and objects)"
        return value


# orjson reads an integer past 64 bits as a float, losing digits (a negative one from 19
# digits); Python's json keeps them. Text with such a run of digits is read by both.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))  # each digit as "0"
_LONG_DIGIT_RUN = b"0" * 19


def loads_json(data: bytes) -> Any:
    """JSON text as Python values, integers exact whatever their length; raises
    orjson.JSONDecodeError (a ValueError) when it is not JSON."""
    value = orjson.loads(data)
    if data.translate(_DIGITS).find(_LONG_DIGIT_RUN) < 0:
        return value
    try:
        return json.loads(data)
    except RecursionError:
        # Nested some 900 levels deep: refused for that (past MAX_JSON_DEPTH) in any case.
        return value


def truncate_json(value: Any, size: int) -> Any:
    """value, or the visible truncation marker when its JSON (size bytes) passes 64 KiB."""
    if size <= MAX_BODY_BYTES:
        return value
    return {
        "_truncated": True,
        "size": size,
        "preview": orjson.dumps(value).decode("utf-8")[:BODY_PREVIEW_CHARS],
    }


@dataclass
class NewEvent:
    """A validated event, ready to be given its index and sealed into the log."""

    doc: dict[str, Any]
    occurred_us: int
    occurred_supplied: bool
    id_supplied: bool
    needs_exact_jcs: bool
    # The received time occurred_at was checked against; the one stored, stamped when the
    # event is appended, is not earlier.
    received_us: int


_SERVER_FIELDS = ("org_id", "index", "received_at", "recorded_by")


def recorded_by_api_key(key_id: str) -> dict[str, Any]:
    """The `recorded_by` of an event an API key sent: which credential wrote it."""
    return {"type": "api_key", "id": key_id}


# The `recorded_by` of what Sealog records itself (sign-ins, key, member and export
# changes) and of events its own tools store without a credential (the demo, the CLI).
RECORDED_BY_SEALOG: dict[str, Any] = {"type": "sealog", "id": None}


def same_content(stored: dict[str, Any], new: dict[str, Any], *, occurred_supplied: bool) -> bool:
    """Whether the new document repeats the stored one: equal in all but what the server
    sets (and occurred_at, when the new event left it to the server)."""
    ignored = _SERVER_FIELDS if occurred_supplied else (*_SERVER_FIELDS, "occurred_at")

    def content(doc: dict[str, Any]) -> bytes:
        kept = {k: v for k, v in doc.items() if k not in ignored}
        return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)

    return content(stored) == content(new)


ACTION_MESSAGE = (
    "must be a dotted machine name such as guardrail.created "
    "(lowercase letters, digits and _, at least one dot)"
)


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        first = loc[0] if loc else None
        index = first if isinstance(first, int) else None
        if index is not None:
            loc.pop(0)
        path = [str(p) for p in loc if not str(p).startswith(("function-", "nullable"))]
        last = path[-1] if path else None
        if err["type"] == "string_pattern_mismatch":
            # Only two patterns exist: the action's, and the no-NUL one of indexed strings.
            message = ACTION_MESSAGE if last == "action" else "must not contain NUL characters"
        elif err["type"] == "literal_error" and last == "category":
            message = f"must be one of {', '.join(CATEGORIES)}"
        else:
            message = err["msg"]
        errors.append(FieldError(index, ".".join(path) or "event", message))
    return errors


def check_batch(raw_events: Any) -> None:
    """Refuses what is not a batch: not a list, an empty list, or one past MAX_BATCH_EVENTS."""
    if not isinstance(raw_events, list):
        raise EventValidationError([FieldError(None, "events", "must be a list of events")])
    if not raw_events:
        raise EventValidationError([FieldError(None, "events", "must contain at least one event")])
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise EventValidationError([FieldError(
            None, "events",
            f"a batch holds at most {MAX_BATCH_EVENTS} events; this one has {len(raw_events)}",
        )])


def validate_events(
    raw_events: list[Any],
    *,
    received_at_us: int,
    redactor: Redactor,
) -> list[NewEvent]:
    """Validated, redacted, normalised events; raises EventValidationError naming every problem."""
    check_batch(raw_events)
    errors: list[FieldError] = []
    try:
        checked: list[Any] = _EVENTS_ADAPTER.validate_python(raw_events)
    except ValidationError as exc:
        errors = _pydantic_errors(exc)
        bad = {e.index for e in errors}
        checked = [None if i in bad else e for i, e in enumerate(raw_events)]
    received_at = times.format_rfc3339(received_at_us)
    out: list[NewEvent] = []
    for i, raw in enumerate(checked):
        if raw is None:
            continue
        event, problems = _normalise(raw, received_at_us, received_at, redactor)
        if problems:
            errors.extend(FieldError(i, f, m) for f, m in problems)
        else:
            out.append(event)
    if errors:
        errors.sort(key=lambda e: -1 if e.index is None else e.index)
        raise EventValidationError(errors)
    return out


def _is_stored_form(text: str) -> bool:
    """Whether a valid RFC 3339 time is already in the form it is stored in (UTC, six
    fractional digits, e.g. 2026-02-13T10:28:22.000000Z), as producers usually send it."""
    return (len(text) == 27 and text[10] == "T" and text[19] == "." and text[26] == "Z"
            and text[17:19] != "60")  # a leap second is stored as :59


def _normalise(
    m: dict[str, Any], received_at_us: int, received_at: str, redactor: Redactor
) -> tuple[NewEvent, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    event_id = m.get("id")
    if event_id is not None and not UUID_PATTERN.fullmatch(event_id):
        problems.append(("id", "must be a lowercase UUIDv7 string, e.g. 0193f8a0-...-7..."))
    occurred_at = m.get("occurred_at")
    if occurred_at is None:
        occurred_us = received_at_us
    else:
        try:
            occurred_us = times.parse_rfc3339(occurred_at)
        except times.TimeError as exc:
            problems.append(("occurred_at", str(exc)))
            occurred_us = received_at_us
        if occurred_us - received_at_us > MAX_FUTURE_US:
            problems.append(("occurred_at", "is more than 5 minutes in the future"))
        elif occurred_us < 0:
            problems.append(("occurred_at", "is before 1970-01-01T00:00:00Z"))
    action = m["action"]
    entry = catalog_entry(action)
    category = m.get("category")
    if entry is None:
        if category is None:
            problems.append((
                "category",
                f"is required for action {action!r}, which is not in the catalog; "
                f"use one of {', '.join(CATEGORIES)}",
            ))
    elif category is not None and category != entry.category:
        problems.append(("category", f"action {action!r} belongs to {entry.category}"))
    else:
        category = entry.category
    event_type = m.get("event_type") or (entry.event_type if entry else None)
    if event_type is None and category is not None:
        event_type = CATEGORY_LABELS[category]
    description = redactor.redact_text(m.get("description") or (entry.description if entry
                                                                else action))
    actor_in = m["actor"]
    actor = {
        "id": actor_in.get("id"),
        "email": actor_in.get("email"),
        "name": actor_in.get("name"),
        "type": actor_in.get("type", "user"),
    }
    if actor["id"] is None and actor["email"] is None and actor["name"] is None:
        problems.append(("actor", "needs at least one of id, email or name"))
    if actor["email"] is not None and not EMAIL_PATTERN.fullmatch(actor["email"]):
        problems.append(("actor.email", f"{actor['email']!r} is not an email address"))

    walk = _JsonWalk(redactor)
    request = None
    request_in = m.get("request")
    metadata_in = m.get("metadata")
    # The common case, checked in one piece: body, response and metadata together are
    # within the smallest limit and plainly need no redaction or exact JCS.
    free_json = None if request_in is None else (request_in.get("body"),
                                                 request_in.get("response"))
    parts = [p for p in (*(free_json or ()), metadata_in) if p is not None]
    plain = walk.plain(parts, MAX_METADATA_BYTES)
    if request_in is not None:
        method = request_in["method"].upper()
        if method not in HTTP_METHODS:
            problems.append(("request.method", f"must be one of {', '.join(HTTP_METHODS)}"))
        path = redactor.redact_text(request_in["path"])
        if not path.startswith("/"):
            problems.append(("request.path", "must start with /"))
        if plain:
            body, response = free_json  # type: ignore[misc]
        else:
            body = truncate_json(*walk.clean(request_in.get("body")))
            if walk.problem:
                problems.append(("request.body", walk.problem))
                walk.problem = None
            response = truncate_json(*walk.clean(request_in.get("response")))
            if walk.problem:
                problems.append(("request.response", walk.problem))
                walk.problem = None
        request = {
            "method": method,
            "path": path,
            "status": request_in.get("status"),
            "body": body,
            "response": response,
        }
    context_in = m.get("context") or {}
    context = {
        "ip": context_in.get("ip"),
        "user_agent": context_in.get("user_agent"),
        "session_id": context_in.get("session_id"),
        "request_id": context_in.get("request_id"),
    }
    if len(context_in) > 4 or any(k not in context for k in context_in):
        for key, value in walk.copy(context_in).items():
            if key not in context:
                context[key] = value
        if walk.problem:
            problems.append(("context", walk.problem))
            walk.problem = None
    if plain:
        metadata = metadata_in or {}
    else:
        metadata, metadata_size = walk.clean(metadata_in) if metadata_in else ({}, 2)
        if walk.problem:
            problems.append(("metadata", walk.problem))
        elif metadata_size > MAX_METADATA_BYTES:
            problems.append(
                ("metadata", f"is larger than {MAX_METADATA_BYTES // 1024} KiB of JSON"))
    resource_in = m.get("resource")
    resource = None
    if resource_in is not None:
        resource = {
            "type": resource_in["type"],
            "id": resource_in.get("id"),
            "name": resource_in.get("name"),
        }
    doc = {
        "id": event_id or str(uuid_utils.uuid7()),
        "org_id": None,
        "index": None,
        "occurred_at": (occurred_at if occurred_at is not None and _is_stored_form(occurred_at)
                        else times.format_rfc3339(occurred_us)),
        "received_at": received_at,
        "category": category,
        "event_type": event_type,
        "action": action,
        "description": description,
        "result": m["result"],
        "actor": actor,
        "resource": resource,
        "request": request,
        "context": context,
        "metadata": metadata,
    }
    event = NewEvent(
        doc=doc,
        occurred_us=occurred_us,
        occurred_supplied=occurred_at is not None,
        id_supplied=event_id is not None,
        needs_exact_jcs=walk.needs_exact_jcs,
        received_us=received_at_us,
    )
    return event, problems


def canonical_bytes(doc: dict[str, Any], *, exact: bool = True) -> bytes:
    """RFC 8785 (JCS) bytes of doc; exact=False allows the orjson fast path.

    orjson with sorted keys gives JCS's bytes for JSON without floats and with ASCII keys
    (property-tested in tests/test_canonical.py); callers pass exact=False only then.
    """
    if exact:
        # The round trip gives the JSON types rfc8785 takes (a tuple, a UUID or an enum in a
        # body that needed no walk is written as orjson writes it); floats come back equal.
        return rfc8785.dumps(orjson.loads(orjson.dumps(doc)))
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def canonical_parts(doc: dict[str, Any], *, exact: bool = True) -> tuple[bytes, bytes, bytes]:
    """RFC 8785 bytes of a stored event's document cut where the values of its top-level
    "index" and "received_at" go: the bytes before, between and after them, so that both
    can be given later (the document is head, index, middle, received_at's string, tail)."""
    # JCS writes an object's members in key order, one after another, so the members
    # before "index", those between it and "received_at", and those after are each the
    # bytes of an object of them alone. (The top-level keys are ASCII: code point and
    # UTF-16 orders agree on them.) Every stored event has members in all three.
    before = canonical_bytes({k: v for k, v in doc.items() if k < "index"}, exact=exact)
    between = canonical_bytes({k: v for k, v in doc.items() if "index" < k < "received_at"},
                              exact=exact)
    after = canonical_bytes({k: v for k, v in doc.items() if k > "received_at"}, exact=exact)
    return (before[:-1] + b',"index":', b"," + between[1:-1] + b',"received_at":"',
            b'",' + after[1:])


def leaf_hash(canonical: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || canonical)."""
    return hashlib.sha256(b"\x00" + canonical).digest()
