"""Shared fixtures: real stores on both backends (SQLite files in tmp_path, databases of a
real PostgreSQL server) and in-process API clients."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from sealog import auth
from sealog.api.app import create_app
from sealog.config import Settings
from sealog.store import NotFound, Store, migrate, open_store

ALL_SCOPES = list(auth.SCOPES)


def _fail_if_skipped(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and os.environ.get("SEALOG_FAIL_ON_SKIP") == "1" and not hasattr(
        report, "wasxfail"
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, and SEALOG_FAIL_ON_SKIP=1 forbids skips: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With SEALOG_FAIL_ON_SKIP=1 (set by .ci/run) a skipped test fails: CI skips nothing."""
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """The same for a whole module skipped while it is collected (pytest.importorskip, or
    pytest.skip(allow_module_level=True), as when chromium is missing)."""
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An empty store on each backend (store_url)."""
    s = open_store(store_url)
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

    @property
    def key_id(self) -> str:
        return "key_" + self.secret.split("_")[2]


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


def verify_online(app, secret: str, state_path: Path | None = None, pinned=None):
    """`sealog verify` of the key's org as an auditor runs it, over app's API, pinning
    `pinned` (default: the app's log key now): its report."""
    from sealog.ledger import audit

    client = TestClient(app, base_url="http://testserver/api/v1")
    server = audit.Server("", secret, client=client)
    try:
        return audit.verify_server(server, [pinned or app.state.signer.verifier],
                                   state_path=state_path)
    finally:
        server.close()


def event(**overrides) -> dict:
    """A minimal valid event, with overrides."""
    base = {
        "action": "guardrail.created",
        "result": "success",
        "actor": {"id": "usr_1", "email": "alice@acme.com", "name": "Alice Chen"},
    }
    base.update(overrides)
    return base


def wait_for(predicate, timeout: float, what: str):
    """predicate's first true value, asked every 50 ms; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def all_at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Each call's result or exception, all started together on threads of their own."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(slot: int, call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            outcomes[slot] = call()
        except Exception as exc:  # noqa: BLE001 - the outcome the test checks
            outcomes[slot] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SealogProcess:
    """A real `sealog serve` on a free port; start() waits until /readyz answers.

    Its output goes to a file beside the data folder, printed when a test fails.
    """

    def __init__(self, data: Path, *, port: int | None = None, env: dict | None = None,
                 database_url: str | None = None, args: tuple[str, ...] = ()):
        self.data = data
        self.args = args  # more of serve's flags
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        if database_url is not None:  # else the SQLite file in the data folder
            self.env["SEALOG_DATABASE_URL"] = database_url
        self.log_path = data.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it open)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sealog", "serve", "--port", str(self.port),
             "--data-dir", str(self.data), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sealog serve did not start:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on an 8 MiB filesystem of its own (tmpfs, which takes root to mount)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


# A PostgreSQL server the tests may create databases in: scripts/test starts one it owns
# and sets this; by hand, any server where the URL's role may CREATE DATABASE.
POSTGRES_ADMIN_URL = (os.environ.get("SEALOG_TEST_POSTGRES_URL")
                      or "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server; skips (a failure in CI) without one."""
    psycopg = pytest.importorskip("psycopg")
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at SEALOG_TEST_POSTGRES_URL ({POSTGRES_ADMIN_URL}): {exc}")
    return POSTGRES_ADMIN_URL


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """The URL of a new database name on admin_url's server (replacing one left behind)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return urllib.parse.urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _database_name(request: pytest.FixtureRequest) -> str:
    return f"sealog_test_{os.getpid()}_{zlib.crc32(request.node.nodeid.encode())}"


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database of its own, dropped after the test."""
    name = _database_name(request)
    try:
        yield create_database(postgres_server, name)
    finally:
        drop_database(postgres_server, name)


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """A database with every migration applied, which migrated_postgres_url copies."""
    name = f"sealog_template_{os.getpid()}"
    url = create_database(postgres_server, name)
    migrate(url)
    try:
        yield name
    finally:
        drop_database(postgres_server, name)


@pytest.fixture
def migrated_postgres_url(postgres_server: str, postgres_template: str,
                          request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new database of its own with the schema made (a copy of the migrated
    template: much faster than migrating each), dropped after the test."""
    name = _database_name(request)
    try:
        yield create_database(postgres_server, name, template=postgres_template)
    finally:
        drop_database(postgres_server, name)


BACKENDS = ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes a store (store_url, or the store, app and tenant fixtures made on
    it) runs once on each backend: BACKENDS, or those its backends marker names (tests of
    one backend's own workings), or its module's BACKENDS."""
    if "store_url" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        backends = (list(marker.args) if marker is not None
                    else getattr(metafunc.module, "BACKENDS", BACKENDS))
        metafunc.parametrize("store_url", backends, indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database on one backend (see pytest_generate_tests)."""
    if request.param == "postgresql":
        return request.getfixturevalue("migrated_postgres_url")
    return f"sqlite:///{tmp_path / 'sealog.db'}"


def fill_disk(folder: Path, *, leave: int = 0) -> Path:
    """A ballast file in folder that fills its filesystem, up to about `leave` bytes."""
    ballast = folder / "ballast"
    with ballast.open("wb", buffering=0) as f:
        while True:
            stats = os.statvfs(folder)
            room = stats.f_bavail * stats.f_frsize - leave
            if room <= 0:
                return ballast
            try:
                f.write(bytes(min(room, 1 << 20)))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return ballast


def empty_wal(database: Path) -> None:
    """Copies the database's WAL back and truncates it, so that the next write must grow it
    (else a full disk may still leave room in the WAL for small writes)."""
    conn = sqlite3.connect(database)
    try:
        # A server's background threads (checkpointer, workers) write now and then; a
        # checkpoint that meets one of them is tried again.
        deadline = time.monotonic() + 10
        while (busy := conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        conn.close()
    assert busy == 0, "the WAL could not be truncated"


def acme_data_folder(data: Path, database_url: str | None = None) -> str:
    """Makes org acme in a data folder's database (or in database_url's); returns its
    all-scopes key's secret."""
    store = open_store(database_url or f"sqlite:///{data.resolve() / 'sealog.db'}")
    try:
        auth.create_org(store=store, name="Acme", org_id="acme")
        return auth.create_api_key(store=store, org_id="acme", scopes=ALL_SCOPES).secret
    finally:
        store.close()


@pytest.fixture
def served(tmp_path: Path, store_url: str) -> Iterator[tuple[SealogProcess, str]]:
    """A started SealogProcess on store_url's database with org acme and its all-scopes
    API key."""
    data = tmp_path / "data"
    secret = acme_data_folder(data, store_url)
    process = SealogProcess(data, database_url=store_url)
    process.start()
    try:
        yield process, secret
    finally:
        process.stop()
        print(process.output())  # pytest shows it only for a failed test
