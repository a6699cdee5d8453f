"""Orgs, API keys, users, sessions, scopes and roles: who may call, for which org."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sealog import times
from sealog.events import EMAIL_PATTERN, Redactor
from sealog.ingest import record_action
from sealog.store.base import (
    ApiKeyRow,
    Conflict,
    NotFound,
    Org,
    SessionRow,
    StorageFull,
    Store,
    UserRow,
    closed_message,
)

SCOPES = ("events:write", "events:read", "exports", "admin")
ROLES = ("owner", "admin", "auditor", "member")
# What each role may do through the API; a member may sign in but sees nothing.
ROLE_SCOPES = {
    "owner": frozenset({"events:read", "exports", "admin"}),
    "admin": frozenset({"events:read", "exports", "admin"}),
    "auditor": frozenset({"events:read", "exports"}),
    "member": frozenset(),
}
# The scopes a user of each role may give an API key they make, and so the most a key made
# by such a user may use. Owners and admins provision service keys, so theirs include
# events:write, which they may not use themselves.
DELEGABLE_SCOPES = {
    "owner": frozenset(SCOPES),
    "admin": frozenset(SCOPES),
    "auditor": frozenset({"events:read", "exports"}),
    "member": frozenset(),
}
SESSION_COOKIE = "sealog_session"
SESSION_SECONDS = 12 * 3600
MIN_PASSWORD_LENGTH = 10
KEY_PREFIX = "slg"
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
_TOUCH_EVERY_US = 60 * 10**6


class AuthError(Exception):
    """Raised for a missing, malformed, unknown or revoked credential (HTTP 401)."""


class ScopeError(Exception):
    """Raised when a valid credential lacks the scope a call needs (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an org and what they may do there, by API key or signed-in user."""

    org_id: str
    scopes: frozenset[str]
    key_id: str | None = None
    user: UserRow | None = None
    session_id: str | None = None
    key_creator: UserRow | None = None  # the user whose current role bounds this key
    key_withheld: frozenset[str] = frozenset()  # given to the key, but beyond that role

    def require(self, scope: str) -> None:
        """Returns when the principal may use scope; raises ScopeError otherwise.

        An API key's admin scope grants every scope; a user's role grants what ROLE_SCOPES
        lists (so no user may write events)."""
        if scope in self.scopes or (self.user is None and "admin" in self.scopes):
            return
        if self.user is not None:
            raise ScopeError(f"the {self.user.role} role may not do this ({scope!r})")
        if scope in self.key_withheld and self.key_creator is not None:
            raise ScopeError(
                f"this API key may no longer use the {scope!r} scope: the user who made it "
                f"({self.key_creator.id}) is now {self.key_creator.role}")
        raise ScopeError(f"this API key lacks the {scope!r} scope")

    @property
    def delegable(self) -> frozenset[str]:
        """The scopes a key this principal makes may have: its role's, or this key's own."""
        if self.user is not None:
            return DELEGABLE_SCOPES[self.user.role]
        return frozenset(SCOPES) if "admin" in self.scopes else self.scopes

    @property
    def actor(self) -> dict[str, Any]:
        """The caller as an audit event's actor."""
        if self.user is not None:
            return {"id": self.user.id, "email": self.user.email, "name": self.user.name,
                    "type": "user"}
        return {"id": self.key_id, "name": f"API key {self.key_id}", "type": "api_key"}


def _random_id(prefix: str, nbytes: int = 10) -> str:
    return prefix + base64.b32encode(secrets.token_bytes(nbytes)).decode().lower().rstrip("=")


def create_org(*, store: Store, name: str, org_id: str | None = None) -> Org:
    """A new org; raises ValueError for a bad name or id, Conflict if the id is taken."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("org name must be 1 to 200 characters")
    if org_id is None:
        org_id = _random_id("org_")
    elif not _ORG_ID.fullmatch(org_id):  # `$` alone would take "acme\n"
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
    *, store: Store, org_id: str, scopes: list[str] | tuple[str, ...], name: str = "",
    created_by: str | None = None,
) -> NewApiKey:
    """A new API key for org_id, bounded by the role of user created_by (None: the
    operator's); raises ValueError for unknown scopes, NotFound for the org."""
    new = _new_api_key(store=store, org_id=org_id, scopes=scopes, name=name,
                       created_by=created_by)
    store.insert_api_key(new.row)
    return new


def _open_org(store: Store, org_id: str) -> None:
    """Raises NotFound for no such org, Conflict for one whose log was closed (deleted)."""
    org = store.get_org(org_id)
    if org.closed_at is not None:
        raise Conflict(closed_message(org_id, org.closed_at))


def _new_api_key(*, store: Store, org_id: str, scopes: list[str] | tuple[str, ...],
                 name: str, created_by: str | None) -> NewApiKey:
    """The row and secret of a new key, checked as create_api_key says; not stored."""
    _open_org(store, org_id)
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
        created_by=created_by,
    )
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
        creator = None
        scopes = frozenset(row.scopes)
        if row.created_by is not None:
            creator = self.store.get_user(row.created_by)
            if creator is None or creator.removed_at is not None:
                raise AuthError("the API key no longer works: the user who made it has been "
                                "removed from the org")
            if "admin" in scopes:  # a key's admin implies every scope, and so is bounded
                scopes = frozenset(SCOPES)
        if row.revoked_at is not None:
            raise AuthError("the API key has been revoked")
        now = times.now_us()
        with self._lock:
            due = now - self._touched.get(key_id, 0) > _TOUCH_EVERY_US
            if due:
                self._touched[key_id] = now
        if due:
            try:
                self.store.touch_api_key(key_id, now)
            except StorageFull:
                pass  # last use is a hint: a full disk must not stop the key's reads
        if creator is None:
            return Principal(row.org_id, scopes, key_id)
        allowed = DELEGABLE_SCOPES[creator.role]
        return Principal(row.org_id, scopes & allowed, key_id, key_creator=creator,
                         key_withheld=scopes - allowed)


# -- users and passwords -----------------------------------------------------------------

_HASHER = PasswordHasher()  # Argon2id, the library's (RFC 9106) default parameters
# Checked when the org has no account of the email, so that answer takes as long as a wrong
# password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def _password_matches(user: UserRow | None, password: str) -> bool:
    """Whether password is user's; one Argon2 computation either way, on a dummy hash when
    there is no such user."""
    try:
        _HASHER.verify(_DUMMY_HASH if user is None else user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def _check_user_fields(email: str, role: str, password: str | None, name: str) -> None:
    if not EMAIL_PATTERN.fullmatch(email) or len(email) > 320:
        raise ValueError(f"{email!r} is not an email address")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(name) > 200:
        raise ValueError("a name has at most 200 characters")


def _new_user(*, store: Store, org_id: str, email: str, role: str, password: str,
              name: str) -> UserRow:
    """The row of a new user, password hashed (slow on purpose: done before any lock)."""
    email = email.strip().lower()
    _check_user_fields(email, role, password, name)
    _open_org(store, org_id)
    return UserRow(id=_random_id("usr_", 8), org_id=org_id, email=email,
                   name=name.strip() or email.split("@")[0], role=role,
                   password_hash=_HASHER.hash(password), created_at=times.now_us(),
                   removed_at=None)


def create_user(*, store: Store, org_id: str, email: str, role: str, password: str,
                name: str = "") -> UserRow:
    """A new user of org_id; ValueError for a bad field, Conflict for an email the org has."""
    row = _new_user(store=store, org_id=org_id, email=email, role=role, password=password,
                    name=name)
    store.insert_user(row)
    return row


def _member_resource(user: UserRow) -> dict[str, Any]:
    return {"type": "member", "id": user.id, "name": user.email}


def require_owner(by: Principal, what: str) -> None:
    """Refuses what to every API key, whoever made it, and to users who are not owners."""
    if by.user is None:
        raise ScopeError(f"only an owner, signed in, may {what}; no API key may, "
                         "whoever made it")
    if by.user.role != "owner":
        raise ScopeError(f"only an owner may {what}")


def _check_owner_rules(members: list[UserRow], by: Principal, target: UserRow,
                       new_role: str | None) -> None:
    """members: the org's live users, locked (WriteTx.lock_members) until the change commits.
    The caller's own role is read from them: it may have changed since it signed in."""
    if "owner" in (target.role, new_role):
        what = "grant, change or remove the owner role"
        require_owner(by, what)
        assert by.user is not None
        if not any(u.id == by.user.id and u.role == "owner" for u in members):
            raise ScopeError(f"only an owner may {what}; you are no longer one")
    if target.role == "owner" and new_role != "owner":
        owners = [u for u in members if u.role == "owner"]
        if len(owners) == 1:
            raise Conflict("the org's last owner cannot be demoted or removed")


def add_member(*, store: Store, redactor: Redactor, by: Principal, email: str, role: str,
               name: str = "", password: str | None = None,
               context: dict[str, Any] | None = None) -> tuple[UserRow, str | None]:
    """A new user in by's org, and the generated password when none was given (shown once)."""
    if role == "owner":
        require_owner(by, "grant the owner role")
    generated = generate_password() if password is None else None
    user = _new_user(store=store, org_id=by.org_id, email=email, role=role,
                     password=password or generated or "", name=name)
    with store.writing() as tx:  # the change and its audit event, together or not at all
        tx.insert_user(user)
        record_action(tx=tx, redactor=redactor, org_id=by.org_id,
                      action="member.invited", actor=by.actor, resource=_member_resource(user),
                      context=context, metadata={"role": role})
    return user, generated


def change_role(*, store: Store, redactor: Redactor, by: Principal, user_id: str, role: str,
                context: dict[str, Any] | None = None) -> UserRow:
    """The user with the new role; NotFound for another org's user."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    with store.writing() as tx:  # checked on the members, locked, changed, and audited
        members = tx.lock_members(by.org_id)
        target = _user_of(members, by.org_id, user_id)
        _check_owner_rules(members, by, target, role)
        updated = tx.set_user_role(org_id=by.org_id, user_id=user_id, role=role)
        record_action(tx=tx, redactor=redactor, org_id=by.org_id,
                      action="member.role_changed", actor=by.actor,
                      resource=_member_resource(updated), context=context,
                      metadata={"from": target.role, "to": role})
    return updated


def remove_member(*, store: Store, redactor: Redactor, by: Principal, user_id: str,
                  context: dict[str, Any] | None = None) -> UserRow:
    """Removes the user, ends their sessions and revokes the API keys they made (each
    recorded as api_key.revoked); NotFound for another org's user."""
    if by.user is not None and by.user.id == user_id:
        raise Conflict("you cannot remove yourself; ask another admin")
    with store.writing() as tx:
        members = tx.lock_members(by.org_id)
        target = _user_of(members, by.org_id, user_id)
        _check_owner_rules(members, by, target, None)
        now = times.now_us()
        removed = tx.remove_user(org_id=by.org_id, user_id=user_id, at=now)
        record_action(tx=tx, redactor=redactor, org_id=by.org_id,
                      action="member.removed", actor=by.actor,
                      resource=_member_resource(removed), context=context,
                      metadata={"role": removed.role})
        for key in tx.revoke_api_keys_created_by(org_id=by.org_id, user_id=user_id, at=now):
            record_action(tx=tx, redactor=redactor, org_id=by.org_id,
                          action="api_key.revoked", actor=by.actor, context=context,
                          resource=_key_resource(key),
                          metadata={"reason": "the user who made it was removed"})
    return removed


def _user_of(members: list[UserRow], org_id: str, user_id: str) -> UserRow:
    for user in members:
        if user.id == user_id:
            return user
    raise NotFound(f"user {user_id!r} does not exist in org {org_id!r}")


def _key_resource(row: ApiKeyRow) -> dict[str, Any]:
    return {"type": "api_key", "id": row.id, "name": row.name}


def issue_api_key(*, store: Store, redactor: Redactor, by: Principal, scopes: list[str],
                  name: str = "", context: dict[str, Any] | None = None) -> NewApiKey:
    """create_api_key in by's org, made by by's user (a key's: its creator), recorded as
    api_key.created; ScopeError for a scope by may not give (Principal.delegable)."""
    beyond = [s for s in scopes if s in SCOPES and s not in by.delegable]
    if beyond:
        who = f"the {by.user.role} role" if by.user is not None else "this API key"
        raise ScopeError(f"{who} may not give a key the {beyond[0]!r} scope")
    creator = by.user if by.user is not None else by.key_creator
    new = _new_api_key(store=store, org_id=by.org_id, scopes=scopes, name=name,
                       created_by=creator.id if creator is not None else None)
    with store.writing() as tx:
        tx.insert_api_key(new.row)
        record_action(tx=tx, redactor=redactor, org_id=by.org_id,
                      action="api_key.created", actor=by.actor, context=context,
                      resource=_key_resource(new.row),
                      metadata={"scopes": list(new.row.scopes)})
    return new


def withdraw_api_key(*, store: Store, redactor: Redactor, by: Principal, key_id: str,
                     context: dict[str, Any] | None = None) -> ApiKeyRow:
    """revoke_api_key in by's org, recorded as api_key.revoked; a key an owner made may be
    revoked only by an owner, signed in."""
    # A key's org and creator never change: only the creator's role is read in the transaction.
    key = store.get_api_key(key_id)
    with store.writing() as tx:
        if key is not None and key.org_id == by.org_id and key.created_by is not None:
            creator = tx.get_user(key.created_by)
            if creator is not None and creator.role == "owner":
                require_owner(by, "revoke a key an owner made")
        row = tx.revoke_api_key(org_id=by.org_id, key_id=key_id, at=times.now_us())
        record_action(tx=tx, redactor=redactor, org_id=by.org_id,
                      action="api_key.revoked", actor=by.actor, context=context,
                      resource=_key_resource(row))
    return row


# -- sign-in and sessions ----------------------------------------------------------------

class SignInError(AuthError):
    """Raised for a wrong org, email or password (HTTP 401); it never says which."""


class SignInLocked(Exception):
    """Raised while an org's email is locked after too many failed sign-ins (HTTP 429)."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-ins for this email; try again in "
                         f"{max(1, retry_after // 60)} minute(s)")


@dataclass
class LoginThrottle:
    """Failed sign-ins per org and email within window_seconds: from slow_after on, each
    attempt waits delay_seconds; from lock_after on, attempts are refused until the window
    passes."""

    window_seconds: int = 15 * 60
    slow_after: int = 3
    delay_seconds: float = 1.0
    lock_after: int = 10
    sleep: Any = field(default=time.sleep, repr=False)


@dataclass(frozen=True)
class NewSession:
    """A signed-in session: `token` goes in the cookie and is stored only as a hash."""

    token: str
    row: SessionRow
    user: UserRow


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def sign_in(*, store: Store, redactor: Redactor, throttle: LoginThrottle, org_id: str,
            email: str, password: str, context: dict[str, Any] | None = None) -> NewSession:
    """A new session for org_id's account of email, if this is its password; raises
    SignInError (an unknown org or email too) or SignInLocked. Recorded in org_id's log:
    auth.login_succeeded, or auth.login_failed when the org has an account of the email."""
    org_id = org_id.strip().lower()
    email = email.strip().lower()
    now = times.now_us()
    # The attempt counts as failed before its password is checked, in the same step that
    # reads the count: concurrent attempts then cannot check more passwords than the limit.
    # The count is the org's account's alone: what happens in another org neither adds to
    # it nor clears it.
    failures = store.record_login_attempt(org_id, email, now,
                                          since=now - throttle.window_seconds * 10**6)
    user = store.user_with_email(org_id, email)

    def failed(result: str, reason: str) -> None:
        if user is None:  # no such account (or org) has a log to tell: only counted
            return
        with store.writing() as tx:
            record_action(tx=tx, redactor=redactor, org_id=org_id,
                          action="auth.login_failed", result=result, context=context,
                          actor={"id": user.id, "email": user.email, "name": user.name,
                                 "type": "user"},
                          metadata={"reason": reason, "recent_failures": failures + 1})

    if failures >= throttle.lock_after:
        failed("denied", "locked: too many failed sign-ins")
        raise SignInLocked(throttle.window_seconds)
    if failures >= throttle.slow_after:
        throttle.sleep(throttle.delay_seconds)
    matches = _password_matches(user, password)  # one Argon2 computation, account or not
    if user is None or not matches:
        failed("failed", "wrong password")
        raise SignInError("the organization, email or password is wrong")
    token = secrets.token_urlsafe(32)
    row = SessionRow(id=_random_id("ses_", 8), user_id=user.id,
                     csrf_token=secrets.token_urlsafe(24), created_at=now,
                     expires_at=now + SESSION_SECONDS * 10**6, revoked_at=None)
    with store.writing() as tx:  # no session without its audit event
        tx.clear_login_failures(org_id, email)
        tx.insert_session(_token_hash(token), row)
        record_action(tx=tx, redactor=redactor, org_id=user.org_id,
                      action="auth.login_succeeded",
                      context={**(context or {}), "session_id": row.id},
                      actor={"id": user.id, "email": user.email, "name": user.name,
                             "type": "user"})
    return NewSession(token, row, user)


@dataclass(frozen=True)
class SessionPrincipal:
    """A live session and the principal it makes."""

    principal: Principal
    session: SessionRow


def authenticate_session(store: Store, token: str) -> SessionPrincipal:
    """The session's principal; raises AuthError when it is unknown, ended or expired."""
    session = store.get_session(_token_hash(token))
    if session is None or session.revoked_at is not None:
        raise AuthError("you are signed out; sign in again")
    if session.expires_at <= times.now_us():
        raise AuthError("your session has expired; sign in again")
    user = store.get_user(session.user_id)
    if user is None or user.removed_at is not None:
        raise AuthError("this account no longer exists")
    principal = Principal(org_id=user.org_id, scopes=ROLE_SCOPES[user.role], user=user,
                          session_id=session.id)
    return SessionPrincipal(principal, session)


def sign_out(*, store: Store, redactor: Redactor, principal: Principal, token: str,
             context: dict[str, Any] | None = None) -> None:
    """Ends the session whose cookie holds token, which authenticated principal; recorded
    as auth.logout."""
    with store.writing() as tx:
        tx.revoke_session(_token_hash(token), times.now_us())
        record_action(tx=tx, redactor=redactor, org_id=principal.org_id,
                      action="auth.logout", actor=principal.actor,
                      context={**(context or {}), "session_id": principal.session_id})


__all__ = [
    "DELEGABLE_SCOPES", "ROLES", "SCOPES", "AuthError", "KeyAuthenticator", "LoginThrottle",
    "NewApiKey", "NotFound", "Principal", "ScopeError", "SignInError",
    "SignInLocked",
    "add_member", "authenticate_session", "change_role", "create_api_key", "create_org",
    "create_user", "issue_api_key", "remove_member", "revoke_api_key", "sign_in", "sign_out",
    "withdraw_api_key",
]
