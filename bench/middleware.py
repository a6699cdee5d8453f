"""What AuditMiddleware adds to a request: the example platform with and without it.

Both apps answer the same PUT /agent/{agent_id}/guardrails/{guardrail_id} in process
(ASGI, no network), in alternating rounds; the audited one sends its events to a real
`sealog serve` while it runs. Prints the median time per request of each and the
difference (target: under 1 ms).

    python bench/middleware.py [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sealog import auth  # noqa: E402
from sealog.client import SealogClient  # noqa: E402
from sealog.store import open_store  # noqa: E402

from common import Server, median  # noqa: E402
from examples.governance_app.app import Platform, create_app  # noqa: E402

HEADERS = {"Authorization": "Bearer tok-marcus", "User-Agent": "bench/1.0"}


async def timed_requests(http: httpx.AsyncClient, path: str, count: int) -> list[float]:
    body = {"type": "rate_limit", "config": {"max_requests_per_minute": 30}, "enabled": True}
    out = []
    for _ in range(count):
        start = time.perf_counter()
        response = await http.put(path, json=body, headers=HEADERS)
        out.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return out


async def run(requests: int, client: SealogClient) -> tuple[list[float], list[float]]:
    platforms = {name: Platform() for name in ("plain", "audited")}
    apps = {"plain": create_app(None, platforms["plain"]),
            "audited": create_app(client, platforms["audited"])}
    paths = {}
    for name, platform in platforms.items():
        platform.agents["agt_1"] = {"id": "agt_1", "name": "support-bot", "model": "gpt-4o",
                                    "trust_tier": "limited", "blocked": False}
        platform.guardrails["grd_1"] = {"id": "grd_1", "agent_id": "agt_1",
                                        "type": "rate_limit", "config": {}, "enabled": True}
        paths[name] = "/agent/agt_1/guardrails/grd_1"
    times: dict[str, list[float]] = {"plain": [], "audited": []}
    rounds = 20
    clients = {name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                       base_url="http://platform")
               for name, app in apps.items()}
    for name in clients:  # warm up
        await timed_requests(clients[name], paths[name], 50)
    for _ in range(rounds):
        for name in ("plain", "audited"):
            times[name] += await timed_requests(clients[name], paths[name], requests // rounds)
    for c in clients.values():
        await c.aclose()
    return times["plain"], times["audited"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        setup = open_store(f"sqlite:///{data / 'sealog.db'}")
        auth.create_org(store=setup, name="bench", org_id="bench")
        secret = auth.create_api_key(store=setup, org_id="bench",
                                     scopes=["events:write", "events:read"]).secret
        setup.close()
        with Server(data) as server, SealogClient(server.url, secret) as client:
            plain, audited = asyncio.run(run(args.requests, client))
            client.flush(timeout=120)
            with httpx.Client(base_url=server.url,
                              headers={"Authorization": f"Bearer {secret}"}) as http:
                stored = http.get("/api/v1/events/count").json()
    plain_ms, audited_ms = median(plain) * 1000, median(audited) * 1000
    print(f"requests per app:                    {len(plain):>8,}")
    print(f"median without the middleware (ms):  {plain_ms:>8.3f}  (baseline)")
    print(f"median with the middleware (ms):     {audited_ms:>8.3f}")
    print(f"added per request (ms):              {audited_ms - plain_ms:>8.3f}  (target < 1)")
    print(f"ratio:                               {audited_ms / plain_ms:>8.2f}x")
    print(f"events stored by the server:         {stored}")


if __name__ == "__main__":
    main()
