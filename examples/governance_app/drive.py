"""Drive the example platform to build a realistic audit history in a Sealog server.

    python -m examples.governance_app.drive --sealog-url http://127.0.0.1:8000 \\
        --api-key slg_key_… --requests 500

It calls the platform's API in process (as its admins, and now and then as a member who
is refused), and the platform's AuditMiddleware sends each change to Sealog.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from sealog.client import SealogClient

from examples.governance_app.app import Platform, create_app

ADMINS = ("tok-sarah", "tok-marcus", "tok-priya")
GUARDRAIL_TYPES = ("content_filter", "rate_limit", "tool_allowlist", "pii_redaction")
TIERS = ("untrusted", "limited", "trusted", "privileged")
AGENT_NAMES = ("support-bot", "billing-agent", "research-assistant", "code-reviewer",
               "sales-copilot", "data-analyst", "triage-agent", "scheduler")


async def drive(http: httpx.AsyncClient, platform: Platform, requests: int,
                seed: int = 7) -> dict[int, int]:
    """Make `requests` calls against the platform; gives how many answered each status."""
    rng = random.Random(seed)
    statuses: dict[int, int] = {}

    def as_user(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "User-Agent": "governance-console/2.4"}

    async def call(method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        response = await http.request(method, path, json=body,
                                      headers=as_user(token or rng.choice(ADMINS)))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        return response.json() if response.content else None

    def some(table: dict[str, dict[str, Any]]) -> str | None:
        return rng.choice(list(table)) if table else None

    async def new_agent() -> None:
        await call("POST", "/agents", {"name": f"{rng.choice(AGENT_NAMES)}-{rng.randint(1, 99)}",
                                       "trust_tier": rng.choice(TIERS)})

    async def guardrail() -> None:
        agent = some(platform.agents)
        if agent is None:
            return await new_agent()
        mine = [g for g, v in platform.guardrails.items() if v["agent_id"] == agent]
        kind = rng.choice(GUARDRAIL_TYPES)
        config = {"max_requests_per_minute": rng.choice((30, 60, 120))} \
            if kind == "rate_limit" else {"threshold": round(rng.uniform(0.5, 0.95), 2)}
        if mine and rng.random() < 0.7:
            await call("PUT", f"/agent/{agent}/guardrails/{rng.choice(mine)}",
                       {"type": kind, "config": config, "enabled": rng.random() < 0.9})
        else:
            await call("POST", f"/agent/{agent}/guardrails", {"type": kind, "config": config})

    async def trust_tier() -> None:
        agent = some(platform.agents)
        if agent:
            await call("PUT", f"/agents/{agent}/trust-tier",
                       {"trust_tier": rng.choice(TIERS), "reason": "quarterly review"})

    async def policy() -> None:
        target = some(platform.policies)
        if target is None or rng.random() < 0.3:
            await call("POST", "/policies", {
                "name": f"deny-{rng.choice(('pii', 'prod-db', 'wire-transfer'))}-access",
                "rego": "package sealog.example\ndefault allow := false",
            })
        else:
            await call("POST", f"/policies/{target}/{rng.choice(('enable', 'disable'))}")

    async def member() -> None:
        if rng.random() < 0.5:
            name = rng.choice(("lee", "ana", "omar", "kim", "yuki", "ravi"))
            await call("POST", "/members", {"email": f"{name}{rng.randint(1, 999)}@acme.com",
                                            "role": rng.choice(("member", "auditor"))})
        elif (target := some(platform.members)) is not None:
            await call("PUT", f"/members/{target}/role",
                       {"role": rng.choice(("member", "auditor", "admin"))})

    async def approval() -> None:
        agent = some(platform.agents)
        if agent:
            pending = platform.request_approval(agent, "send_email")
            verb = rng.choice(("approve", "deny"))
            await call("POST", f"/approvals/{pending['id']}/{verb}", {"comment": "reviewed"})

    async def refused() -> None:
        agent = some(platform.agents) or "agt_missing"
        await call("POST", f"/agents/{agent}/block", token="tok-dan")

    async def not_found() -> None:
        await call("PUT", "/agents/agt_0000000000/trust-tier", {"trust_tier": "trusted"})

    steps: list[tuple[float, Callable[[], Awaitable[None]]]] = [
        (0.10, new_agent), (0.30, guardrail), (0.10, trust_tier), (0.15, policy),
        (0.12, member), (0.13, approval), (0.06, refused), (0.04, not_found),
    ]
    for _ in range(3):
        await new_agent()
    for _ in range(max(0, requests - 3)):
        await rng.choices([s for _, s in steps], weights=[w for w, _ in steps])[0]()
    return statuses


async def _main(args: argparse.Namespace) -> None:
    platform = Platform()
    with SealogClient(args.sealog_url, args.api_key) as client:
        app = create_app(client, platform)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as http:
            statuses = await drive(http, platform, args.requests, args.seed)
        client.flush(timeout=60)
    print(f"{sum(statuses.values())} requests made; statuses: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sealog-url", required=True)
    parser.add_argument("--api-key", required=True, help="a key with events:write")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
