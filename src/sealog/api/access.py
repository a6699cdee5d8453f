"""Routes of the web UI's access: sign-in sessions, members and API keys of an org."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from sealog import auth, times
from sealog.api.bodies import JsonBodyRoute
from sealog.api.deps import (
    ContextDep,
    CurrentPrincipal,
    RedactorDep,
    StoreDep,
    check_same_origin,
)
from sealog.api.problems import Problem
from sealog.api.schemas import PROBLEM_RESPONSES
from sealog.store.base import ApiKeyRow, UserRow

router = APIRouter(prefix="/api/v1", tags=["access"], route_class=JsonBodyRoute)
Role = Literal["owner", "admin", "auditor", "member"]
Scope = Literal["events:write", "events:read", "exports", "admin"]


class SignInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: Annotated[str, Field(
        min_length=1, max_length=63, description="the id of the org to sign in to, e.g. "
        "`acme`; an org that does not exist is answered as a wrong password (401)")]
    email: Annotated[str, Field(max_length=320)]
    password: Annotated[str, Field(max_length=1024)]


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    created_at: str


class OrgOut(BaseModel):
    id: str
    name: str


class SessionOut(BaseModel):
    user: UserOut
    org: OrgOut
    csrf_token: str
    expires_at: str
    permissions: list[str]


def _user_view(user: UserRow) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role,
            "created_at": times.format_rfc3339(user.created_at)}


def _session_view(store, user: UserRow, session) -> dict[str, Any]:
    org = store.get_org(user.org_id)
    return {"user": _user_view(user), "org": {"id": org.id, "name": org.name},
            "csrf_token": session.csrf_token,
            "expires_at": times.format_rfc3339(session.expires_at),
            "permissions": sorted(auth.ROLE_SCOPES[user.role])}


def _value_error(exc: ValueError) -> Problem:
    return Problem(422, str(exc), kind="validation")


@router.post("/session", response_model=SessionOut,
             responses={**PROBLEM_RESPONSES, 429: PROBLEM_RESPONSES[422]},
             summary="Sign in: sets the session cookie")
def sign_in(body: SignInIn, request: Request, response: Response, store: StoreDep,
            redactor: RedactorDep, context: ContextDep) -> dict[str, Any]:
    check_same_origin(request)
    new = auth.sign_in(store=store, redactor=redactor,
                       throttle=request.app.state.login_throttle, org_id=body.org_id,
                       email=body.email, password=body.password, context=context)
    response.set_cookie(auth.SESSION_COOKIE, new.token, max_age=auth.SESSION_SECONDS,
                        httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return _session_view(store, new.user, new.row)


@router.get("/session", response_model=SessionOut, responses=PROBLEM_RESPONSES,
            summary="The signed-in user, org and CSRF token")
def current_session(request: Request, store: StoreDep) -> dict[str, Any]:
    token = request.cookies.get(auth.SESSION_COOKIE)
    if not token:
        raise auth.AuthError("not signed in")
    current = auth.authenticate_session(store, token)
    assert current.principal.user is not None
    return _session_view(store, current.principal.user, current.session)


@router.delete("/session", status_code=204, responses=PROBLEM_RESPONSES,
               summary="Sign out: ends the session")
def sign_out(request: Request, store: StoreDep, redactor: RedactorDep, context: ContextDep,
             principal: CurrentPrincipal) -> Response:
    token = request.cookies.get(auth.SESSION_COOKIE)
    if token and principal.session_id is not None:  # not when called with an API key
        auth.sign_out(store=store, redactor=redactor, principal=principal, token=token,
                      context=context)
    response = Response(status_code=204)
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- members ---------------------------------------------------------------------------

class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Annotated[str, Field(max_length=320)]
    role: Role
    name: Annotated[str, Field(max_length=200)] = ""
    password: Annotated[str | None, Field(max_length=1024)] = None


class MemberCreated(BaseModel):
    member: UserOut
    password: str | None = Field(description="the generated password, shown this once")


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


class MemberList(BaseModel):
    data: list[UserOut]


@router.get("/members", response_model=MemberList, responses=PROBLEM_RESPONSES,
            summary="The org's members")
def list_members(principal: CurrentPrincipal, store: StoreDep) -> dict[str, Any]:
    principal.require("admin")
    return {"data": [_user_view(u) for u in store.list_users(principal.org_id)]}


@router.post("/members", status_code=201, response_model=MemberCreated,
             responses=PROBLEM_RESPONSES, summary="Add a member (member.invited)")
def add_member(body: MemberIn, principal: CurrentPrincipal, store: StoreDep,
               redactor: RedactorDep, context: ContextDep) -> dict[str, Any]:
    principal.require("admin")
    try:
        user, password = auth.add_member(store=store, redactor=redactor, by=principal,
                                         email=body.email, role=body.role, name=body.name,
                                         password=body.password, context=context)
    except ValueError as exc:
        if isinstance(exc, auth.Conflict):
            raise
        raise _value_error(exc) from None
    return {"member": _user_view(user), "password": password}


@router.patch("/members/{user_id}", response_model=UserOut, responses=PROBLEM_RESPONSES,
              summary="Change a member's role (member.role_changed)")
def change_role(user_id: str, body: RoleIn, principal: CurrentPrincipal, store: StoreDep,
                redactor: RedactorDep, context: ContextDep) -> dict[str, Any]:
    principal.require("admin")
    return _user_view(auth.change_role(store=store, redactor=redactor, by=principal,
                                       user_id=user_id, role=body.role, context=context))


@router.delete("/members/{user_id}", status_code=204, responses=PROBLEM_RESPONSES,
               summary="Remove a member and end their sessions (member.removed)")
def remove_member(user_id: str, principal: CurrentPrincipal, store: StoreDep,
                  redactor: RedactorDep, context: ContextDep) -> Response:
    principal.require("admin")
    auth.remove_member(store=store, redactor=redactor, by=principal, user_id=user_id,
                       context=context)
    return Response(status_code=204)


# -- API keys ----------------------------------------------------------------------------

class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(max_length=200)] = ""
    scopes: Annotated[list[Scope], Field(min_length=1)]


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[Scope]
    created_at: str
    revoked_at: str | None
    last_used_at: str | None
    created_by: str | None = Field(description=(
        "the id of the user who made the key, signed in or with a key they made; the key may "
        "use only what that user's role allows now, and is revoked when the user is "
        "removed. null: made by the operator (`sealog keys create`) or before creators were "
        "recorded"))


class KeyCreated(BaseModel):
    key: KeyOut
    secret: str = Field(description="the key itself, shown this once and never stored")


class KeyList(BaseModel):
    data: list[KeyOut]


def _key_view(row: ApiKeyRow) -> dict[str, Any]:
    def at(us: int | None) -> str | None:
        return None if us is None else times.format_rfc3339(us)
    return {"id": row.id, "name": row.name, "scopes": list(row.scopes),
            "created_at": at(row.created_at), "revoked_at": at(row.revoked_at),
            "last_used_at": at(row.last_used_at), "created_by": row.created_by}


@router.get("/keys", response_model=KeyList, responses=PROBLEM_RESPONSES,
            summary="The org's API keys (never their secrets)")
def list_keys(principal: CurrentPrincipal, store: StoreDep) -> dict[str, Any]:
    principal.require("admin")
    rows = sorted(store.list_api_keys(principal.org_id), key=lambda r: -r.created_at)
    return {"data": [_key_view(r) for r in rows]}


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=PROBLEM_RESPONSES,
             summary="Create an API key (api_key.created); its secret is shown once")
def create_key(body: KeyIn, principal: CurrentPrincipal, store: StoreDep,
               redactor: RedactorDep, context: ContextDep) -> dict[str, Any]:
    principal.require("admin")
    try:
        new = auth.issue_api_key(store=store, redactor=redactor, by=principal,
                                 scopes=list(body.scopes), name=body.name, context=context)
    except ValueError as exc:
        raise _value_error(exc) from None
    return {"key": _key_view(new.row), "secret": new.secret}


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=PROBLEM_RESPONSES,
               summary="Revoke an API key at once (api_key.revoked)")
def revoke_key(key_id: str, principal: CurrentPrincipal, store: StoreDep,
               redactor: RedactorDep, context: ContextDep) -> dict[str, Any]:
    principal.require("admin")
    return _key_view(auth.withdraw_api_key(store=store, redactor=redactor, by=principal,
                                           key_id=key_id, context=context))
