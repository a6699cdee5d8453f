"""Shared fixtures: real SQLite stores in tmp_path and in-process API clients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from sealog import auth
from sealog.api.app import create_app
from sealog.config import Settings
from sealog.store import NotFound, Store, open_store

ALL_SCOPES = list(auth.SCOPES)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With SEALOG_FAIL_ON_SKIP=1 (set by .ci/run) a skipped test fails: CI skips nothing."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("SEALOG_FAIL_ON_SKIP") == "1" and not hasattr(
        report, "wasxfail"
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, and SEALOG_FAIL_ON_SKIP=1 forbids skips: {report.longrepr}"


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'sealog.db'}")
    yield s
    s.close()


@dataclass
class Tenant:
    """An org with an all-scopes API client."""

    org_id: str
    secret: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def app(store, settings):
    return create_app(settings, store=store)


@pytest.fixture
def tenant_factory(store, app) -> Callable[..., Tenant]:
    """Makes an org and a client that authenticates as it (scopes: all unless given)."""
    clients: list[TestClient] = []

    def make(org_id: str = "acme", scopes: list[str] | None = None) -> Tenant:
        try:
            store.get_org(org_id)
        except NotFound:
            auth.create_org(store=store, name=org_id.title(), org_id=org_id)
        secret = auth.create_api_key(store=store, org_id=org_id,
                                     scopes=scopes or ALL_SCOPES).secret
        client = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
        clients.append(client)
        return Tenant(org_id, secret, client)

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def tenant(tenant_factory) -> Tenant:
    return tenant_factory("acme")


def event(**overrides) -> dict:
    """A minimal valid event, with overrides."""
    base = {
        "action": "guardrail.created",
        "result": "success",
        "actor": {"id": "usr_1", "email": "alice@acme.com", "name": "Alice Chen"},
    }
    base.update(overrides)
    return base
