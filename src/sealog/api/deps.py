"""FastAPI dependencies: the store, the settings and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sealog.auth import AuthError, KeyAuthenticator, Principal
from sealog.config import Settings
from sealog.events import Redactor
from sealog.store.base import Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_redactor(request: Request) -> Redactor:
    return request.app.state.redactor


def get_principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <api key>`; 401 when absent or not valid."""
    header = request.headers.get("authorization")
    if not header:
        raise AuthError("missing credentials: send Authorization: Bearer <api key>")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthError("the Authorization header must be 'Bearer <api key>'")
    authenticator: KeyAuthenticator = request.app.state.authenticator
    return authenticator.authenticate(secret.strip())


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RedactorDep = Annotated[Redactor, Depends(get_redactor)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
