"""The real `sealog serve` process on a free port: start, ingest, search, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sealog import auth
from sealog.store import open_store

from conftest import event


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path):
    data = tmp_path / "data"
    store = open_store(f"sqlite:///{data.resolve() / 'sealog.db'}")
    auth.create_org(store=store, name="Acme", org_id="acme")
    secret = auth.create_api_key(store=store, org_id="acme", scopes=["admin"]).secret
    store.close()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealog", "serve", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("server did not start")
            time.sleep(0.1)
        yield base, secret
    except BaseException:
        proc.kill()
        print(proc.stdout.read().decode() if proc.stdout else "")
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()


def test_served_process_ingests_and_searches(server):
    base, secret = server
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.post("/api/v1/events", json={"events": [
            event(description="Created pii-filter guardrail"), event(action="policy.enabled")]})
        assert r.status_code == 201
        page = client.get("/api/v1/events", params={"q": "pii"}).json()
        assert [e["description"] for e in page["data"]] == ["Created pii-filter guardrail"]
        assert client.get("/api/v1/events/count").json() == {"count": 2}
        assert client.get("/").status_code == 200
        assert client.get("/api/v1/openapi.json").status_code == 200
