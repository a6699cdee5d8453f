"""GET /metrics on both backends: Prometheus's own parser reads it, and each figure is what
the store says (log sizes, checkpoints, exports by status, each stream's lag, counts and
state); without the operator's token it is off (404) or refused (401)."""

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sealog import auth
from sealog.api.app import create_app
from sealog.config import Settings
from sealog.events import Redactor
from sealog.exports import jobs
from sealog.ingest import ingest
from sealog.ledger import checkpoint
from sealog.streams.delivery import StreamConfig, new_stream
from sealog.streams.secrets import SecretBox

from conftest import event

TOKEN = "metrics-t0ken"


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_say_what_the_store_says_and_need_the_operators_token(store, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", metrics_token=TOKEN)
    app = create_app(settings, store=store, run_workers=False)
    for org_id in ("acme", "beta"):
        auth.create_org(store=store, name=org_id.title(), org_id=org_id)
    ingest(store=store, org_id="acme", raw_events=[event()] * 12, redactor=Redactor())
    signed = checkpoint.sign_latest(store=store, signer=app.state.signer,
                                    host=settings.log_host, org_id="acme")
    ingest(store=store, org_id="acme", raw_events=[event()] * 3, redactor=Redactor())
    jobs.create_export(store=store, redactor=Redactor(), org_id="acme",
                       actor=jobs.Actor(id="usr_1", name="A", type="user", email=None),
                       name="week", format="csv", range_preset="7d")
    row, _ = new_stream(org_id="acme", name="SIEM", box=SecretBox.load(tmp_path / "k"),
                        config=StreamConfig("https://siem.example.com/x"), start_index=5)
    with store.writing() as tx:
        tx.insert_stream(dataclasses.replace(row, delivered=5, failures=2, state="failing",
                                             last_delivered_at=1_700_000_000_000_000))
    size = store.log_head("acme").size

    client = TestClient(app)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    got = _samples(answer.text)
    acme = frozenset({("org", "acme")})
    assert got[("sealog_log_events_total", acme)] == size
    assert got[("sealog_log_events_total", frozenset({("org", "beta")}))] == store.log_head(
        "beta").size
    assert got[("sealog_checkpoint_tree_size", acme)] == signed.size
    assert got[("sealog_log_unsigned_events", acme)] == size - signed.size
    assert got[("sealog_exports", acme | {("status", "queued")})] == 1
    assert got[("sealog_exports", acme | {("status", "completed")})] == 0
    labels = acme | {("stream", row.id), ("name", "SIEM"), ("kind", "webhook")}
    assert got[("sealog_stream_lag_events", labels)] == size - 5
    assert got[("sealog_stream_lag_seconds", labels)] > 0
    assert got[("sealog_stream_delivered_events_total", labels)] == 5
    assert got[("sealog_stream_failures_total", labels)] == 2
    assert got[("sealog_stream_last_delivered_timestamp_seconds", labels)] == 1_700_000_000
    assert got[("sealog_stream_state", labels | {("state", "failing")})] == 1
    assert got[("sealog_stream_state", labels | {("state", "active")})] == 0

    off = create_app(Settings(data_dir=tmp_path / "data"), store=store, run_workers=False)
    refused = TestClient(off).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 404 and "SEALOG_METRICS_TOKEN" in refused.json()["detail"]
