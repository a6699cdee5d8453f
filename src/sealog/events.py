"""The audit event: catalog, validation, redaction, truncation and canonical form (RFC 8785)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import rfc8785
import uuid_utils
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
REDACTED = "[REDACTED]"
DEFAULT_SECRET_KEYS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
    "private_key",
    "client_secret",
)

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


# The wire model. Pydantic checks shapes and types; the rules that need more than one
# field (catalog, time bounds, sizes) are checked after it, in `validate_events`.
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ActorIn(_Strict):
    id: str | None = Field(None, min_length=1, max_length=256)
    email: str | None = Field(None, min_length=3, max_length=320)
    name: str | None = Field(None, min_length=1, max_length=256)
    type: Literal["user", "agent", "api_key", "system"] = "user"


class ResourceIn(_Strict):
    type: str = Field(min_length=1, max_length=64)
    id: str | None = Field(None, min_length=1, max_length=256)
    name: str | None = Field(None, min_length=1, max_length=256)


class RequestIn(_Strict):
    method: str = Field(min_length=1, max_length=16)
    path: str = Field(min_length=1, max_length=2048)
    status: int | None = Field(None, ge=100, le=599)
    body: Any = None
    response: Any = None


class ContextIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    ip: str | None = Field(None, max_length=64)
    user_agent: str | None = Field(None, max_length=1024)
    session_id: str | None = Field(None, max_length=256)
    request_id: str | None = Field(None, max_length=256)


class EventIn(_Strict):
    """One event as a producer sends it."""

    id: str | None = Field(None, description="UUIDv7; supply it to make retries idempotent")
    occurred_at: str | None = Field(None, description="RFC 3339; default: time received")
    category: Literal[
        "agent_operations", "policy_changes", "user_actions", "security_events", "system_events"
    ] | None = None
    event_type: str | None = Field(None, min_length=1, max_length=64)
    action: str = Field(min_length=3, max_length=128)
    description: str | None = Field(None, min_length=1, max_length=1000)
    result: Literal["success", "failed", "denied", "warning", "approved", "allowed"]
    actor: ActorIn
    resource: ResourceIn | None = None
    request: RequestIn | None = None
    context: ContextIn | None = None
    metadata: dict[str, Any] | None = None


class EventBatchIn(_Strict):
    """The body of POST /api/v1/events."""

    events: list[EventIn]


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
    """Replaces the values of secret-looking keys with "[REDACTED]" at any depth.

    A key matches when its words (split at `_`, `-`, `.`, spaces and camelCase) contain
    one of the configured names as consecutive words, so `access_token` and `X-Api-Key`
    match but `max_tokens` does not.
    """

    names: tuple[str, ...] = DEFAULT_SECRET_KEYS
    _patterns: list[tuple[str, ...]] = field(init=False, repr=False)
    _cache: dict[str, bool] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._patterns = [tuple(_key_words(n)) for n in self.names if _key_words(n)]

    def is_secret(self, key: str) -> bool:
        hit = self._cache.get(key)
        if hit is None:
            words = _key_words(key)
            joined = "".join(words)
            hit = any(
                _contains_run(words, p) or (len(p) == 1 and joined == p[0])
                for p in self._patterns
            )
            if len(self._cache) < 10000:
                self._cache[key] = hit
        return hit


_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def _key_words(key: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT.split(key) if w]


def _contains_run(words: list[str], pattern: tuple[str, ...]) -> bool:
    n = len(pattern)
    return any(tuple(words[i : i + n]) == pattern for i in range(len(words) - n + 1))


class _JsonWalk:
    """Copies free JSON, redacting secrets and noting what needs the exact RFC 8785 path."""

    __slots__ = ("redactor", "needs_exact_jcs", "problem")

    def __init__(self, redactor: Redactor):
        self.redactor = redactor
        self.needs_exact_jcs = False
        self.problem: str | None = None

    def copy(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                self.problem = f"integer {value} is outside the interoperable range ±(2^53-1)"
            return value
        if isinstance(value, float):
            self.needs_exact_jcs = True
            return value
        if isinstance(value, dict):
            out = {}
            is_secret = self.redactor.is_secret
            for key, item in value.items():
                if not key.isascii():
                    # orjson sorts keys by code point, RFC 8785 by UTF-16 unit.
                    self.needs_exact_jcs = True
                out[key] = REDACTED if is_secret(key) else self.copy(item)
            return out
        if isinstance(value, list):
            return [self.copy(item) for item in value]
        self.problem = f"{type(value).__name__} is not a JSON value"
        return value


def truncate_json(value: Any) -> Any:
    """value, or the visible truncation marker when its JSON is larger than 64 KiB."""
    if value is None:
        return None
    encoded = orjson.dumps(value)
    if len(encoded) <= MAX_BODY_BYTES:
        return value
    return {
        "_truncated": True,
        "size": len(encoded),
        "preview": encoded.decode("utf-8")[:BODY_PREVIEW_CHARS],
    }


@dataclass
class NewEvent:
    """A validated event, ready to be given its index and sealed into the log."""

    doc: dict[str, Any]
    occurred_us: int
    content_hash: bytes
    needs_exact_jcs: bool


def _pydantic_errors(index: int, exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        message = err["msg"]
        if err["type"] == "literal_error" and err["loc"] and err["loc"][-1] == "category":
            message = f"must be one of {', '.join(CATEGORIES)}"
        errors.append(FieldError(index, loc, message))
    return errors


def validate_events(
    raw_events: list[Any],
    *,
    received_at_us: int,
    redactor: Redactor,
) -> list[NewEvent]:
    """Validated, redacted, normalised events; raises EventValidationError naming every problem."""
    if not isinstance(raw_events, list):
        raise EventValidationError([FieldError(None, "events", "must be a list of events")])
    if not raw_events:
        raise EventValidationError([FieldError(None, "events", "must contain at least one event")])
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise EventValidationError([FieldError(
            None, "events",
            f"a batch holds at most {MAX_BATCH_EVENTS} events; this one has {len(raw_events)}",
        )])
    errors: list[FieldError] = []
    out: list[NewEvent] = []
    for i, raw in enumerate(raw_events):
        try:
            model = EventIn.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(i, exc))
            continue
        event, problems = _normalise(model, received_at_us, redactor)
        if problems:
            errors.extend(FieldError(i, f, m) for f, m in problems)
        else:
            out.append(event)
    if errors:
        raise EventValidationError(errors)
    return out


def _normalise(
    m: EventIn, received_at_us: int, redactor: Redactor
) -> tuple[NewEvent, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    if m.id is not None and not UUID_PATTERN.match(m.id):
        problems.append(("id", "must be a lowercase UUIDv7 string, e.g. 0193f8a0-...-7..."))
    if m.occurred_at is None:
        occurred_us = received_at_us
    else:
        try:
            occurred_us = times.parse_rfc3339(m.occurred_at)
        except times.TimeError as exc:
            problems.append(("occurred_at", str(exc)))
            occurred_us = received_at_us
        if occurred_us - received_at_us > MAX_FUTURE_US:
            problems.append(("occurred_at", "is more than 5 minutes in the future"))
        elif occurred_us < 0:
            problems.append(("occurred_at", "is before 1970-01-01T00:00:00Z"))
    action = m.action
    entry = None
    if not ACTION_PATTERN.match(action):
        problems.append((
            "action",
            "must be a dotted machine name such as guardrail.created "
            "(lowercase letters, digits and _, at least one dot)",
        ))
    else:
        entry = catalog_entry(action)
    category = m.category
    if entry is None:
        if category is None and not problems:
            problems.append((
                "category",
                f"is required for action {action!r}, which is not in the catalog; "
                f"use one of {', '.join(CATEGORIES)}",
            ))
    elif category is not None and category != entry.category:
        problems.append(("category", f"action {action!r} belongs to {entry.category}"))
    else:
        category = entry.category
    event_type = m.event_type or (entry.event_type if entry else None)
    if event_type is None and category is not None:
        event_type = CATEGORY_LABELS[category]
    description = m.description or (entry.description if entry else None)
    if description is None:
        description = action
    actor = m.actor
    if actor.id is None and actor.email is None and actor.name is None:
        problems.append(("actor", "needs at least one of id, email or name"))
    if actor.email is not None and not EMAIL_PATTERN.match(actor.email):
        problems.append(("actor.email", f"{actor.email!r} is not an email address"))

    walk = _JsonWalk(redactor)
    request = None
    if m.request is not None:
        method = m.request.method.upper()
        if method not in HTTP_METHODS:
            problems.append(("request.method", f"must be one of {', '.join(HTTP_METHODS)}"))
        if not m.request.path.startswith("/"):
            problems.append(("request.path", "must start with /"))
        body = truncate_json(walk.copy(m.request.body))
        if walk.problem:
            problems.append(("request.body", walk.problem))
            walk.problem = None
        response = truncate_json(walk.copy(m.request.response))
        if walk.problem:
            problems.append(("request.response", walk.problem))
            walk.problem = None
        request = {
            "method": method,
            "path": m.request.path,
            "status": m.request.status,
            "body": body,
            "response": response,
        }
    context_in = m.context or ContextIn()
    context = {
        "ip": context_in.ip,
        "user_agent": context_in.user_agent,
        "session_id": context_in.session_id,
        "request_id": context_in.request_id,
    }
    extra = context_in.model_extra or {}
    for key, value in extra.items():
        if key in context:
            continue
        context[key] = REDACTED if redactor.is_secret(key) else walk.copy(value)
    if walk.problem:
        problems.append(("context", walk.problem))
        walk.problem = None
    metadata = walk.copy(m.metadata) if m.metadata is not None else {}
    if walk.problem:
        problems.append(("metadata", walk.problem))
    elif len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
        problems.append(("metadata", f"is larger than {MAX_METADATA_BYTES // 1024} KiB of JSON"))
    for name, text in _indexed_strings(m):
        if text is not None and "\x00" in text:
            problems.append((name, "must not contain NUL characters"))
    resource = None
    if m.resource is not None:
        resource = {"type": m.resource.type, "id": m.resource.id, "name": m.resource.name}
    doc = {
        "id": m.id or str(uuid_utils.uuid7()),
        "org_id": None,
        "index": None,
        "occurred_at": times.format_rfc3339(occurred_us),
        "received_at": times.format_rfc3339(received_at_us),
        "category": category,
        "event_type": event_type,
        "action": action,
        "description": description,
        "result": m.result,
        "actor": {"id": actor.id, "email": actor.email, "name": actor.name, "type": actor.type},
        "resource": resource,
        "request": request,
        "context": context,
        "metadata": metadata,
    }
    content = {k: v for k, v in doc.items() if k not in ("org_id", "index", "received_at")}
    if m.occurred_at is None:
        del content["occurred_at"]
    content_hash = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()
    event = NewEvent(
        doc=doc,
        occurred_us=occurred_us,
        content_hash=content_hash,
        needs_exact_jcs=walk.needs_exact_jcs,
    )
    return event, problems


def _indexed_strings(m: EventIn) -> list[tuple[str, str | None]]:
    out = [("event_type", m.event_type), ("description", m.description),
           ("actor.id", m.actor.id), ("actor.email", m.actor.email), ("actor.name", m.actor.name)]
    if m.resource is not None:
        out += [("resource.type", m.resource.type), ("resource.id", m.resource.id),
                ("resource.name", m.resource.name)]
    if m.request is not None:
        out.append(("request.path", m.request.path))
    if m.context is not None:
        out += [("context.ip", m.context.ip), ("context.user_agent", m.context.user_agent),
                ("context.session_id", m.context.session_id),
                ("context.request_id", m.context.request_id)]
    return out


def canonical_bytes(doc: dict[str, Any], *, exact: bool = True) -> bytes:
    """RFC 8785 (JCS) bytes of doc; exact=False allows the orjson fast path.

    orjson with sorted keys gives JCS's bytes for JSON without floats and with ASCII keys
    (property-tested in tests/test_canonical.py); callers pass exact=False only then.
    """
    if exact:
        return rfc8785.dumps(doc)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def leaf_hash(canonical: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || canonical)."""
    return hashlib.sha256(b"\x00" + canonical).digest()
