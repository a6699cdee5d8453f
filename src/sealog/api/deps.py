"""FastAPI dependencies: the store, the settings and the calling principal."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request

from sealog.auth import (
    SESSION_COOKIE,
    AuthError,
    KeyAuthenticator,
    Principal,
    ScopeError,
    authenticate_session,
)
from sealog.config import Settings
from sealog.events import Redactor
from sealog.store.base import Store

CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_redactor(request: Request) -> Redactor:
    return request.app.state.redactor


def check_same_origin(request: Request) -> None:
    """Refuses a browser request sent from another site (its Origin header says so)."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise ScopeError(f"requests from {origin} are not accepted")


def get_principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <api key>` or the UI's session cookie.

    401 when neither is valid; a state-changing request by cookie also needs the session's
    CSRF token in X-CSRF-Token (403 otherwise)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError("the Authorization header must be 'Bearer <api key>'")
        authenticator: KeyAuthenticator = request.app.state.authenticator
        return authenticator.authenticate(secret.strip())
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise AuthError("missing credentials: send Authorization: Bearer <api key>, or sign in")
    current = authenticate_session(request.app.state.store, token)
    if request.method not in _SAFE_METHODS:
        check_same_origin(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), current.session.csrf_token.encode()):
            raise ScopeError(f"missing or wrong {CSRF_HEADER} header for this session")
    return current.principal


def request_context(request: Request) -> dict[str, Any]:
    """The caller's IP and user agent, for the audit events a request causes."""
    return {"ip": request.client.host if request.client else None,
            "user_agent": (request.headers.get("user-agent") or "")[:1024] or None}


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RedactorDep = Annotated[Redactor, Depends(get_redactor)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
ContextDep = Annotated[dict[str, Any], Depends(request_context)]
