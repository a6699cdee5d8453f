"""A small AI-agent governance platform that audits itself through Sealog's middleware.

Agents with trust tiers, guardrails, OPA policies, members and roles, approvals; state is
kept in memory. Every change goes through AuditMiddleware, so each call becomes the
event the Audit Log shows (e.g. PUT /agent/{agent_id}/guardrails/{guardrail_id} →
guardrail.updated, with its request body and response).

Run it:  SEALOG_URL=http://127.0.0.1:8000 SEALOG_API_KEY=slg_key_… \\
         uvicorn examples.governance_app.app:app --port 8100
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from sealog.client import SealogClient
from sealog.middleware import AuditMiddleware, Route

TrustTier = Literal["untrusted", "limited", "trusted", "privileged"]
Role = Literal["owner", "admin", "auditor", "member"]

USERS = {
    "tok-sarah": {"id": "u-sarah", "email": "sarah.chen@acme.com", "name": "Sarah Chen",
                  "role": "owner"},
    "tok-marcus": {"id": "u-marcus", "email": "marcus.johnson@acme.com",
                   "name": "Marcus Johnson", "role": "admin"},
    "tok-priya": {"id": "u-priya", "email": "priya.patel@acme.com", "name": "Priya Patel",
                  "role": "admin"},
    "tok-dan": {"id": "u-dan", "email": "dan.wilson@acme.com", "name": "Dan Wilson",
                "role": "member"},
}

# The audited routes: route template → action (the catalog gives category and wording).
AUDITED_ROUTES: dict[str, str | Route] = {
    "POST /agents": Route("agent.created", resource_type="agent"),
    "PUT /agents/{agent_id}": "agent.updated",
    "DELETE /agents/{agent_id}": "agent.deleted",
    "PUT /agents/{agent_id}/trust-tier": "agent.trust_tier_changed",
    "POST /agents/{agent_id}/block": "agent.blocked",
    "POST /agents/{agent_id}/unblock": "agent.unblocked",
    "POST /agent/{agent_id}/guardrails": Route("guardrail.created",
                                               resource_type="guardrail"),
    "PUT /agent/{agent_id}/guardrails/{guardrail_id}": "guardrail.updated",
    "DELETE /agent/{agent_id}/guardrails/{guardrail_id}": "guardrail.deleted",
    "POST /policies": Route("policy.created", resource_type="policy"),
    "PUT /policies/{policy_id}": "policy.updated",
    "POST /policies/{policy_id}/enable": "policy.enabled",
    "POST /policies/{policy_id}/disable": "policy.disabled",
    "POST /members": Route("member.invited", resource_type="member"),
    "PUT /members/{member_id}/role": "member.role_changed",
    "DELETE /members/{member_id}": "member.removed",
    "POST /approvals/{approval_id}/approve": "approval.approved",
    "POST /approvals/{approval_id}/deny": "approval.denied",
}


class AgentIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    model: str = "gpt-4o"
    trust_tier: TrustTier = "limited"


class TrustTierIn(BaseModel):
    trust_tier: TrustTier
    reason: str = ""


class GuardrailIn(BaseModel):
    type: Literal["content_filter", "rate_limit", "tool_allowlist", "pii_redaction"]
    config: dict[str, Any] = {}
    enabled: bool = True


class PolicyIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    rego: str
    enabled: bool = False


class MemberIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    role: Role = "member"


class RoleIn(BaseModel):
    role: Role


class ApprovalIn(BaseModel):
    comment: str = ""


class Platform:
    """The platform's state: in memory, enough to answer like the real thing."""

    def __init__(self) -> None:
        self.agents: dict[str, dict[str, Any]] = {}
        self.guardrails: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, Any]] = {
            u["id"]: {"id": u["id"], "email": u["email"], "role": u["role"]}
            for u in USERS.values()
        }
        self.approvals: dict[str, dict[str, Any]] = {}

    def request_approval(self, agent_id: str, action: str) -> dict[str, Any]:
        approval = {"id": _new_id("apr"), "agent_id": agent_id, "action": action,
                    "status": "pending"}
        self.approvals[approval["id"]] = approval
        return approval


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _found(table: dict[str, dict[str, Any]], key: str, what: str) -> dict[str, Any]:
    if key not in table:
        raise HTTPException(404, f"{what} {key} not found")
    return table[key]


def current_user(request: Request) -> dict[str, Any]:
    """The signed-in user (from the bearer token); kept in request.state for the audit."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    user = USERS.get(token)
    if user is None:
        raise HTTPException(401, "sign in first")
    request.state.user = user
    return user


def admin_user(user: Annotated[dict[str, Any], Depends(current_user)]) -> dict[str, Any]:
    if user["role"] not in ("owner", "admin"):
        raise HTTPException(403, "only owners and admins may change this")
    return user


def audit_actor(scope: dict[str, Any]) -> dict[str, Any]:
    """The actor of a request for the audit event: the signed-in user, or anonymous."""
    user = scope.get("state", {}).get("user")
    if user is None:
        return {"type": "user", "name": "anonymous"}
    return {"id": user["id"], "email": user["email"], "name": user["name"], "type": "user"}


Admin = Annotated[dict[str, Any], Depends(admin_user)]


def create_app(client: SealogClient | None, platform: Platform | None = None) -> FastAPI:
    """The platform's API; audited through client unless client is None."""
    state = platform or Platform()
    app = FastAPI(title="Governance platform (Sealog example)")

    @app.post("/agents", status_code=201)
    def create_agent(body: AgentIn, _: Admin) -> dict[str, Any]:
        agent = {"id": _new_id("agt"), **body.model_dump(), "blocked": False}
        state.agents[agent["id"]] = agent
        return agent

    @app.get("/agents")
    def list_agents(_: Annotated[dict, Depends(current_user)]) -> list[dict[str, Any]]:
        return list(state.agents.values())

    @app.put("/agents/{agent_id}")
    def update_agent(agent_id: str, body: AgentIn, _: Admin) -> dict[str, Any]:
        agent = _found(state.agents, agent_id, "agent")
        agent.update(body.model_dump())
        return agent

    @app.delete("/agents/{agent_id}", status_code=204)
    def delete_agent(agent_id: str, _: Admin) -> None:
        _found(state.agents, agent_id, "agent")
        del state.agents[agent_id]

    @app.put("/agents/{agent_id}/trust-tier")
    def change_trust_tier(agent_id: str, body: TrustTierIn, _: Admin) -> dict[str, Any]:
        agent = _found(state.agents, agent_id, "agent")
        previous, agent["trust_tier"] = agent["trust_tier"], body.trust_tier
        return {**agent, "previous_trust_tier": previous}

    @app.post("/agents/{agent_id}/block")
    def block_agent(agent_id: str, _: Admin) -> dict[str, Any]:
        agent = _found(state.agents, agent_id, "agent")
        agent["blocked"] = True
        return agent

    @app.post("/agents/{agent_id}/unblock")
    def unblock_agent(agent_id: str, _: Admin) -> dict[str, Any]:
        agent = _found(state.agents, agent_id, "agent")
        agent["blocked"] = False
        return agent

    @app.post("/agent/{agent_id}/guardrails", status_code=201)
    def create_guardrail(agent_id: str, body: GuardrailIn, _: Admin) -> dict[str, Any]:
        _found(state.agents, agent_id, "agent")
        guardrail = {"id": _new_id("grd"), "agent_id": agent_id, **body.model_dump()}
        state.guardrails[guardrail["id"]] = guardrail
        return guardrail

    @app.put("/agent/{agent_id}/guardrails/{guardrail_id}")
    def update_guardrail(agent_id: str, guardrail_id: str, body: GuardrailIn,
                         _: Admin) -> dict[str, Any]:
        guardrail = _found(state.guardrails, guardrail_id, "guardrail")
        if guardrail["agent_id"] != agent_id:
            raise HTTPException(404, f"guardrail {guardrail_id} not found on {agent_id}")
        guardrail.update(body.model_dump())
        return guardrail

    @app.delete("/agent/{agent_id}/guardrails/{guardrail_id}", status_code=204)
    def delete_guardrail(agent_id: str, guardrail_id: str, _: Admin) -> None:
        _found(state.guardrails, guardrail_id, "guardrail")
        del state.guardrails[guardrail_id]

    @app.post("/policies", status_code=201)
    def create_policy(body: PolicyIn, _: Admin) -> dict[str, Any]:
        policy = {"id": _new_id("pol"), **body.model_dump()}
        state.policies[policy["id"]] = policy
        return policy

    @app.put("/policies/{policy_id}")
    def update_policy(policy_id: str, body: PolicyIn, _: Admin) -> dict[str, Any]:
        policy = _found(state.policies, policy_id, "policy")
        policy.update(body.model_dump())
        return policy

    @app.post("/policies/{policy_id}/enable")
    def enable_policy(policy_id: str, _: Admin) -> dict[str, Any]:
        policy = _found(state.policies, policy_id, "policy")
        policy["enabled"] = True
        return policy

    @app.post("/policies/{policy_id}/disable")
    def disable_policy(policy_id: str, _: Admin) -> dict[str, Any]:
        policy = _found(state.policies, policy_id, "policy")
        policy["enabled"] = False
        return policy

    @app.post("/members", status_code=201)
    def invite_member(body: MemberIn, _: Admin) -> dict[str, Any]:
        member = {"id": _new_id("usr"), **body.model_dump(), "status": "invited"}
        state.members[member["id"]] = member
        return member

    @app.put("/members/{member_id}/role")
    def change_role(member_id: str, body: RoleIn, _: Admin) -> dict[str, Any]:
        member = _found(state.members, member_id, "member")
        previous, member["role"] = member["role"], body.role
        return {**member, "previous_role": previous}

    @app.delete("/members/{member_id}", status_code=204)
    def remove_member(member_id: str, _: Admin) -> None:
        _found(state.members, member_id, "member")
        del state.members[member_id]

    @app.post("/approvals/{approval_id}/approve")
    def approve(approval_id: str, body: ApprovalIn, _: Admin) -> dict[str, Any]:
        approval = _found(state.approvals, approval_id, "approval request")
        approval.update(status="approved", comment=body.comment)
        return approval

    @app.post("/approvals/{approval_id}/deny")
    def deny(approval_id: str, body: ApprovalIn, _: Admin) -> dict[str, Any]:
        approval = _found(state.approvals, approval_id, "approval request")
        approval.update(status="denied", comment=body.comment)
        return approval

    if client is not None:
        app.add_middleware(AuditMiddleware, client=client, actor=audit_actor,
                           routes=AUDITED_ROUTES)
    app.state.platform = state
    return app


def _app_from_env() -> FastAPI:
    url, key = os.environ.get("SEALOG_URL"), os.environ.get("SEALOG_API_KEY")
    client = SealogClient(url, key) if url and key else None
    return create_app(client)


def __getattr__(name: str) -> Any:
    # `uvicorn examples.governance_app.app:app` builds the app only when asked for.
    if name == "app":
        return _app_from_env()
    raise AttributeError(name)
