"""The real `sealog serve` process on a free port: start, ingest, search, stop."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from sealog.ledger.note import Signer

from conftest import event


@pytest.fixture
def server(served):
    process, secret = served
    return process.base, secret


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


def test_behind_a_tls_proxy_the_session_cookie_is_secure(server):
    base, secret = server
    with httpx.Client(base_url=base, timeout=10) as client:
        made = client.post("/api/v1/members", json={"email": "ana@acme.com", "role": "auditor"},
                           headers={"Authorization": f"Bearer {secret}"}).json()
        https_origin = base.replace("http://", "https://")
        proxied = {"X-Forwarded-Proto": "https", "Origin": https_origin}
        r = client.post("/api/v1/session", headers=proxied,
                        json={"email": "ana@acme.com", "password": made["password"]})
        assert r.status_code == 200, r.text
        assert "Secure" in r.headers["set-cookie"]
        # Without the proxy's word the same Origin is another site.
        r = client.post("/api/v1/session", headers={"Origin": https_origin},
                        json={"email": "ana@acme.com", "password": made["password"]})
        assert r.status_code == 403
