"""Orgs, API keys and scopes: who may call, on behalf of which org."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass

from sealog import times
from sealog.store.base import ApiKeyRow, NotFound, Org, Store

SCOPES = ("events:write", "events:read", "exports", "admin")
KEY_PREFIX = "slg"
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
_TOUCH_EVERY_US = 60 * 10**6


class AuthError(Exception):
    """Raised for a missing, malformed, unknown or revoked credential (HTTP 401)."""


class ScopeError(Exception):
    """Raised when a valid credential lacks the scope a call needs (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an org and what they may do there."""

    org_id: str
    scopes: frozenset[str]
    key_id: str

    def require(self, scope: str) -> None:
        """Returns when the principal holds scope (or admin); raises ScopeError otherwise."""
        if scope not in self.scopes and "admin" not in self.scopes:
            raise ScopeError(f"this API key lacks the {scope!r} scope")


def _random_id(prefix: str, nbytes: int = 10) -> str:
    return prefix + base64.b32encode(secrets.token_bytes(nbytes)).decode().lower().rstrip("=")


def create_org(*, store: Store, name: str, org_id: str | None = None) -> Org:
    """A new org; raises ValueError for a bad name or id, Conflict if the id is taken."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("org name must be 1 to 200 characters")
    if org_id is None:
        org_id = _random_id("org_")
    elif not _ORG_ID.match(org_id):
        raise ValueError(
            "org id must be 2-63 characters of lowercase letters, digits, '_' and '-', "
            "starting with a letter or digit"
        )
    return store.create_org(org_id=org_id, name=name, created_at=times.now_us())


def _hash_secret(secret: str) -> bytes:
    # API keys carry 256 bits of randomness, so a fast hash is enough (unlike passwords).
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class NewApiKey:
    """A freshly created key: `secret` is shown this once and never stored."""

    row: ApiKeyRow
    secret: str


def create_api_key(
    *, store: Store, org_id: str, scopes: list[str] | tuple[str, ...], name: str = ""
) -> NewApiKey:
    """A new API key for org_id; raises ValueError for unknown scopes, NotFound for the org."""
    store.get_org(org_id)
    if not scopes:
        raise ValueError(f"an API key needs at least one scope: {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; use {', '.join(SCOPES)}")
    if len(name) > 200:
        raise ValueError("key name must be at most 200 characters")
    key_id = _random_id("key_", 8)
    secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKeyRow(
        id=key_id,
        org_id=org_id,
        name=name or key_id,
        secret_hash=_hash_secret(secret),
        scopes=tuple(dict.fromkeys(scopes)),
        created_at=times.now_us(),
        revoked_at=None,
        last_used_at=None,
    )
    store.insert_api_key(row)
    return NewApiKey(row, secret)


def revoke_api_key(*, store: Store, org_id: str, key_id: str) -> ApiKeyRow:
    """Revokes a key of org_id at once; raises NotFound for a key of another org."""
    return store.revoke_api_key(org_id=org_id, key_id=key_id, at=times.now_us())


class KeyAuthenticator:
    """Turns a bearer secret into a Principal; records last use at most once a minute."""

    def __init__(self, store: Store):
        self.store = store
        self._touched: dict[str, int] = {}
        self._lock = threading.Lock()

    def authenticate(self, secret: str) -> Principal:
        """The principal of secret; raises AuthError when it is not a live key."""
        parts = secret.split("_")
        if len(parts) < 4 or parts[0] != KEY_PREFIX or parts[1] != "key":
            raise AuthError("the API key is malformed; expected slg_key_…")
        key_id = f"key_{parts[2]}"
        row = self.store.get_api_key(key_id)
        if row is None or not hmac.compare_digest(row.secret_hash, _hash_secret(secret)):
            raise AuthError("the API key is not valid")
        if row.revoked_at is not None:
            raise AuthError("the API key has been revoked")
        now = times.now_us()
        with self._lock:
            due = now - self._touched.get(key_id, 0) > _TOUCH_EVERY_US
            if due:
                self._touched[key_id] = now
        if due:
            self.store.touch_api_key(key_id, now)
        return Principal(row.org_id, frozenset(row.scopes), key_id)


__all__ = [
    "SCOPES", "AuthError", "KeyAuthenticator", "NewApiKey", "NotFound", "Principal", "ScopeError",
    "create_api_key", "create_org", "revoke_api_key",
]
