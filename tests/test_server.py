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
from sealog.ledger.note import Signer
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


def test_verify_command_against_the_served_log(server, tmp_path):
    base, secret = server
    headers = {"Authorization": f"Bearer {secret}"}
    httpx.post(f"{base}/api/v1/events", headers=headers, timeout=10,
               json={"events": [event(description=f"e{i}") for i in range(20)]})
    key = httpx.get(f"{base}/api/v1/log/key", timeout=10).text.strip()
    state = tmp_path / "state.json"

    def verify(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sealog", "verify", "--url", base, "--api-key", secret,
             "--state", str(state), *extra], capture_output=True, text=True, timeout=60)

    ok = verify("--verifier-key", key)
    assert ok.returncode == 0, ok.stderr
    assert "20/20 events valid" in ok.stdout
    some_id = httpx.get(f"{base}/api/v1/events", headers=headers, timeout=10
                        ).json()["data"][0]["id"]
    one = verify("--verifier-key", key, "--event-id", some_id)
    assert one.returncode == 0 and "1/1 events valid" in one.stdout
    bad = verify("--verifier-key", key.replace(key.split("+")[2][:4], "AAAA"))
    assert bad.returncode == 2  # a key whose ID does not match is refused up front
    wrong = verify("--verifier-key", Signer.generate("sealog.local").verifier.text())
    assert wrong.returncode == 1 and "unknown key" in wrong.stdout
