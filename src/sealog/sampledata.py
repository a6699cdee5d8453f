"""Realistic activity of an AI-agent platform, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from sealog import times

DAY_US = 24 * 3600 * 10**6
FIRST_NAMES = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "wendy", "zoe",
]
LAST_NAMES = ["chen", "garcia", "kowalski", "nakamura", "okafor", "silva", "novak", "haddad"]
AGENT_NAMES = [
    "support-triage", "invoice-reader", "code-reviewer", "sales-assistant", "hr-onboarding",
    "security-scanner", "data-pipeline", "meeting-notes", "contract-analyzer", "ticket-router",
    "refund-approver", "kb-writer", "lead-scorer", "log-summarizer", "qa-tester",
    "release-notes", "travel-booker", "expense-auditor", "translation", "research-scout",
]
GUARDRAILS = ["pii-filter", "prompt-injection", "toxicity", "spend-limit", "tool-allowlist",
              "data-residency", "rate-limit", "jailbreak-detector"]
POLICIES = ["deny-external-email", "require-approval-over-1000", "restrict-prod-db",
            "allow-read-only-tools", "block-unknown-domains", "weekend-freeze", "pii-export-ban"]
ROLES = ["owner", "admin", "auditor", "member"]
TIERS = ["untrusted", "restricted", "standard", "trusted", "privileged"]
JOBS = ["job.trust_recompute", "job.retention_sweep", "job.policy_sync", "job.key_rotation_check"]
USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36",
    "governance-cli/2.4.1 python-httpx/0.27",
    "terraform-provider-governance/1.8.0",
]


class World:
    """The people, agents and rules of one sample org, fixed by a seed."""

    def __init__(self, rng: random.Random, domain: str = "acme.com"):
        self.rng = rng
        self.users = []
        for i, first in enumerate(FIRST_NAMES):
            last = LAST_NAMES[i % len(LAST_NAMES)]
            self.users.append({
                "id": f"usr_{i + 1:04d}",
                "email": f"{first}.{last}@{domain}",
                "name": f"{first.title()} {last.title()}",
                "type": "user",
            })
        self.agents = [
            {"id": f"agt_{i + 1:04d}", "name": name, "tier": rng.choice(TIERS)}
            for i, name in enumerate(AGENT_NAMES)
        ]
        self.keys = [{"id": f"key_{i:02d}", "name": f"ci-deploy-{i}"} for i in range(1, 6)]
        self.ips = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                    for _ in range(30)] + ["203.0.113.7", "198.51.100.23", "192.0.2.44"]

    def user(self) -> dict[str, Any]:
        # A few people do most of the work, as in any real org.
        return dict(self.users[min(int(self.rng.expovariate(0.25)), len(self.users) - 1)])

    def agent(self) -> dict[str, Any]:
        return self.rng.choice(self.agents)

    def context(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "ip": rng.choice(self.ips),
            "user_agent": rng.choice(USER_AGENTS),
            "session_id": f"ses_{rng.getrandbits(48):012x}",
            "request_id": f"req_{rng.getrandbits(64):016x}",
        }


def _request(method: str, path: str, status: int, body: Any, response: Any) -> dict[str, Any]:
    return {"method": method, "path": path, "status": status, "body": body, "response": response}


def _guardrail(w: World) -> dict[str, Any]:
    rng = w.rng
    agent = w.agent()
    kind = rng.choice(GUARDRAILS)
    gid = f"grd_{rng.getrandbits(32):08x}"
    verb = rng.choices(["created", "updated", "deleted"], [3, 5, 1])[0]
    denied = rng.random() < 0.06
    config = {"type": kind, "mode": rng.choice(["block", "warn", "log"]),
              "threshold": rng.choice([50, 70, 80, 90])}
    method, path = {
        "created": ("POST", f"/agent/{agent['id']}/guardrails"),
        "updated": ("PUT", f"/agent/{agent['id']}/guardrails/{gid}"),
        "deleted": ("DELETE", f"/agent/{agent['id']}/guardrails/{gid}"),
    }[verb]
    status = 403 if denied else (204 if verb == "deleted" else 200)
    response = ({"error": "forbidden", "message": "role member cannot change guardrails"}
                if denied else None if verb == "deleted" else {"id": gid, **config,
                                                              "agent_id": agent["id"]})
    return {
        "action": f"guardrail.{verb}",
        "description": {
            "created": f"Created {kind} guardrail for agent {agent['name']}",
            "updated": f"Updated {kind} guardrail for agent {agent['name']}",
            "deleted": f"Deleted {kind} guardrail from agent {agent['name']}",
        }[verb],
        "result": "denied" if denied else rng.choices(["success", "warning"], [12, 1])[0],
        "actor": w.user(),
        "resource": {"type": "guardrail", "id": gid, "name": kind},
        "request": _request(method, path, status, None if verb == "deleted" else config, response),
        "metadata": {"agent_id": agent["id"], "agent_name": agent["name"]},
    }


def _agent(w: World) -> dict[str, Any]:
    rng = w.rng
    agent = w.agent()
    verb = rng.choices(["created", "updated", "deleted", "blocked", "unblocked",
                        "trust_tier_changed"], [2, 6, 1, 1, 1, 2])[0]
    path = f"/agent/{agent['id']}"
    if verb == "trust_tier_changed":
        old, new = rng.sample(TIERS, 2)
        body: Any = {"trust_tier": new, "reason": "manual review"}
        response: Any = {"id": agent["id"], "trust_tier": new, "previous_tier": old}
        request = _request("PATCH", f"{path}/trust-tier", 200, body, response)
        description = f"Changed trust tier of {agent['name']} from {old} to {new}"
    elif verb in ("blocked", "unblocked"):
        body = {"reason": rng.choice(["policy violation", "anomalous tool use", "resolved"])}
        request = _request("POST", f"{path}/{verb[:-2]}", 200, body,
                           {"id": agent["id"], "status": verb})
        description = f"{verb.title()} agent {agent['name']}"
    else:
        method = {"created": "POST", "updated": "PUT", "deleted": "DELETE"}[verb]
        body = None if verb == "deleted" else {
            "name": agent["name"], "model": rng.choice(["gpt-4o", "claude-sonnet", "llama-3-70b"]),
            "tools": rng.sample(["search", "email", "sql", "http", "files", "calendar"], 3),
            "max_tokens": rng.choice([1024, 4096, 8192]),
            "api_key": "sk-live-" + "x" * 16,
        }
        request = _request(method, "/agent" if verb == "created" else path,
                           201 if verb == "created" else 200, body,
                           None if verb == "deleted" else {"id": agent["id"], "version": 3})
        description = f"{verb.title()} agent {agent['name']}"
    result = "failed" if rng.random() < 0.03 else "success"
    if result == "failed":
        request["status"] = 500
        request["response"] = {"error": "internal", "message": "agent registry unavailable"}
    return {
        "action": f"agent.{verb}", "description": description, "result": result,
        "actor": w.user(), "resource": {"type": "agent", "id": agent["id"], "name": agent["name"]},
        "request": request,
    }


def _policy(w: World) -> dict[str, Any]:
    rng = w.rng
    name = rng.choice(POLICIES)
    pid = f"pol_{POLICIES.index(name) + 1:03d}"
    verb = rng.choices(["created", "updated", "deleted", "enabled", "disabled"], [1, 4, 1, 2, 2])[0]
    rego = f"package governance.{name.replace('-', '_')}\n\ndefault allow := false\n"
    method, path = {
        "created": ("POST", "/policies"), "updated": ("PUT", f"/policies/{pid}"),
        "deleted": ("DELETE", f"/policies/{pid}"), "enabled": ("POST", f"/policies/{pid}/enable"),
        "disabled": ("POST", f"/policies/{pid}/disable"),
    }[verb]
    invalid = verb in ("created", "updated") and rng.random() < 0.05
    return {
        "action": f"policy.{verb}",
        "description": f"{verb.title()} OPA policy {name}",
        "result": "failed" if invalid else "success",
        "actor": w.user(),
        "resource": {"type": "policy", "id": pid, "name": name},
        "request": _request(
            method, path, 400 if invalid else 200,
            {"name": name, "rego": rego} if verb in ("created", "updated") else None,
            {"error": "rego_parse_error", "line": 3} if invalid
            else {"id": pid, "enabled": verb != "disabled"},
        ),
    }


def _member(w: World) -> dict[str, Any]:
    rng = w.rng
    target = w.user()
    verb = rng.choices(["invited", "removed", "role_changed"], [3, 1, 2])[0]
    role = rng.choice(ROLES)
    method, path, body = {
        "invited": ("POST", "/org/members", {"email": target["email"], "role": role}),
        "removed": ("DELETE", f"/org/members/{target['id']}", None),
        "role_changed": ("PATCH", f"/org/members/{target['id']}", {"role": role}),
    }[verb]
    return {
        "action": f"member.{verb}",
        "description": {"invited": f"Invited {target['email']} as {role}",
                        "removed": f"Removed {target['email']} from the organization",
                        "role_changed": f"Changed role of {target['email']} to {role}"}[verb],
        "result": "success",
        "actor": w.user(),
        "resource": {"type": "member", "id": target["id"], "name": target["email"]},
        "request": _request(method, path, 200, body, {"id": target["id"], "role": role}),
    }


def _settings(w: World) -> dict[str, Any]:
    rng = w.rng
    key = rng.choice(["session_timeout_minutes", "require_mfa", "default_trust_tier",
                      "audit_retention_days"])
    value = {"session_timeout_minutes": 30, "require_mfa": True, "default_trust_tier": "standard",
             "audit_retention_days": 365}[key]
    return {
        "action": "settings.updated", "description": f"Updated organization setting {key}",
        "result": "success", "actor": w.user(),
        "resource": {"type": "settings", "id": "org", "name": key},
        "request": _request("PATCH", "/org/settings", 200, {key: value}, {key: value}),
    }


def _approval(w: World) -> dict[str, Any]:
    rng = w.rng
    agent = w.agent()
    approved = rng.random() < 0.7
    aid = f"apr_{rng.getrandbits(32):08x}"
    what = rng.choice(["send email to external domain", "refund $1,250", "run SQL on prod",
                       "delete 340 records", "book flight $980"])
    return {
        "action": "approval.approved" if approved else "approval.denied",
        "description": f"{'Approved' if approved else 'Denied'} request of {agent['name']} "
                       f"to {what}",
        "result": "approved" if approved else "denied",
        "actor": w.user(),
        "resource": {"type": "approval", "id": aid, "name": what},
        "request": _request("POST", f"/approvals/{aid}/decision", 200,
                            {"decision": "approve" if approved else "deny",
                             "comment": rng.choice(["ok", "looks fine", "too risky", ""])},
                            {"id": aid, "status": "approved" if approved else "denied"}),
        "metadata": {"agent_id": agent["id"]},
    }


def _login(w: World) -> dict[str, Any]:
    rng = w.rng
    user = w.user()
    ok = rng.random() < 0.88
    return {
        "action": "auth.login_succeeded" if ok else "auth.login_failed",
        "description": f"{'Signed in' if ok else 'Failed sign-in'} as {user['email']}",
        "result": "success" if ok else "failed",
        "actor": user,
        "request": _request("POST", "/auth/login", 200 if ok else 401,
                            {"email": user["email"], "password": "hunter2"},
                            {"ok": True, "token": "eyJhbGciOi..."} if ok
                            else {"error": "invalid_credentials"}),
        "metadata": {"mfa": ok and rng.random() < 0.6},
    }


def _api_key_use(w: World) -> dict[str, Any]:
    rng = w.rng
    key = rng.choice(w.keys)
    agent = w.agent()
    allowed = rng.random() < 0.93
    return {
        "action": "api_key.used",
        "description": f"API key {key['name']} called the agent runtime for {agent['name']}",
        "result": "allowed" if allowed else "denied",
        "actor": {"id": key["id"], "name": key["name"], "type": "api_key"},
        "resource": {"type": "agent", "id": agent["id"], "name": agent["name"]},
        "request": _request("POST", f"/agent/{agent['id']}/invoke", 200 if allowed else 403,
                            {"input": "summarize ticket", "authorization": "Bearer abc"},
                            {"output_tokens": rng.randrange(50, 900)} if allowed
                            else {"error": "scope agents:invoke missing"}),
    }


def _suspicious(w: World) -> dict[str, Any]:
    rng = w.rng
    agent = w.agent()
    why = rng.choice(["prompt injection detected in tool output", "unusual data volume",
                      "login from new country", "repeated denied tool calls"])
    return {
        "action": "security.suspicious_activity",
        "description": f"Suspicious activity: {why} ({agent['name']})",
        "result": "warning",
        "actor": {"id": "system", "name": "Sealog detector", "type": "system"},
        "resource": {"type": "agent", "id": agent["id"], "name": agent["name"]},
        "metadata": {"score": rng.randrange(60, 100), "signal": why},
    }


def _trust_score(w: World) -> dict[str, Any]:
    rng = w.rng
    agent = w.agent()
    old = rng.randrange(40, 95)
    new = max(0, min(100, old + rng.randrange(-15, 10)))
    return {
        "action": "trust_score.changed",
        "description": f"Trust score of {agent['name']} changed from {old} to {new}",
        "result": "warning" if new < 50 else "success",
        "actor": {"id": "system", "name": "trust-engine", "type": "system"},
        "resource": {"type": "agent", "id": agent["id"], "name": agent["name"]},
        "metadata": {"previous": old, "current": new, "window": "24h"},
    }


def _job(w: World) -> dict[str, Any]:
    rng = w.rng
    job = rng.choice(JOBS)
    ok = rng.random() < 0.95
    return {
        "action": job,
        "description": f"Scheduled job {job.split('.', 1)[1]} {'finished' if ok else 'failed'}",
        "result": "success" if ok else "failed",
        "actor": {"id": "system", "name": "scheduler", "type": "system"},
        "resource": {"type": "job", "id": job.split(".", 1)[1], "name": job},
        "metadata": {"duration_ms": rng.randrange(200, 90000), "items": rng.randrange(0, 5000)},
    }


def _key_admin(w: World) -> dict[str, Any]:
    rng = w.rng
    key = rng.choice(w.keys)
    created = rng.random() < 0.6
    return {
        "action": "api_key.created" if created else "api_key.revoked",
        "description": f"{'Created' if created else 'Revoked'} API key {key['name']}",
        "result": "success", "actor": w.user(),
        "resource": {"type": "api_key", "id": key["id"], "name": key["name"]},
        "request": _request("POST" if created else "DELETE",
                            "/org/api-keys" if created else f"/org/api-keys/{key['id']}",
                            200, {"name": key["name"], "scopes": ["agents:invoke"]}
                            if created else None, {"id": key["id"]}),
    }


KINDS: list[tuple[Callable[[World], dict[str, Any]], int]] = [
    (_api_key_use, 30), (_login, 14), (_guardrail, 10), (_agent, 8), (_trust_score, 10),
    (_job, 7), (_policy, 6), (_approval, 7), (_member, 3), (_settings, 1), (_suspicious, 2),
    (_key_admin, 2),
]


def generate_events(
    count: int, *, days: float = 45, seed: int = 7, now_us: int | None = None
) -> Iterator[dict[str, Any]]:
    """count events as producers send them, oldest first, over the last `days` days."""
    rng = random.Random(seed)
    world = World(rng)
    now = times.now_us() if now_us is None else now_us
    start = now - int(days * DAY_US)
    moments = sorted(start + int(rng.random() ** 0.9 * days * DAY_US) for _ in range(count))
    makers = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    for moment in moments:
        event = rng.choices(makers, weights)[0](world)
        event["occurred_at"] = times.format_rfc3339(min(moment, now))
        event["context"] = world.context()
        if event["actor"].get("type") == "system":
            event["context"]["ip"] = None
        yield event
