"""Helpers shared by the benchmark scripts: data, a served process, statistics, and the
throwaway PostgreSQL databases each script measures beside SQLite."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import httpx

# The server each script makes its PostgreSQL databases on, unless --postgres says.
DEFAULT_POSTGRES = (os.environ.get("SEALOG_BENCH_POSTGRES_URL")
                    or "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def rss_peak_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_peak_tree_mb(pid: int) -> tuple[float, int]:
    """The peak resident set sizes of a process and of all its descendants, added up (an
    upper bound of the tree's peak), in MB, and how many processes that counts."""
    pids, total = [pid], 0.0
    for current in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        total += rss_peak_mb(current)
    return total, len(pids)


class Server:
    """`python -m sealog serve` on a free port, for as long as the with-block lasts; args
    are more of serve's flags, env more variables (SEALOG_DATABASE_URL for PostgreSQL)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {})}
        self.args = args

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sealog", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), *self.args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError(self.proc.stdout.read().decode() if self.proc.stdout else "no start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def http_org(data_dir: Path, url: str | None, scopes: tuple[str, ...] = ("events:write",)
             ) -> str:
    """An org `http` in url's database (None: the data folder's SQLite file), made ready for
    a server on data_dir; the secret of its key with those scopes."""
    from sealog import auth
    from sealog.store import open_store

    data_dir.mkdir()
    setup = open_store(url or f"sqlite:///{data_dir.resolve() / 'sealog.db'}")
    auth.create_org(store=setup, name="http", org_id="http")
    secret = auth.create_api_key(store=setup, org_id="http", scopes=list(scopes)).secret
    setup.close()
    return secret


def send(server: Server, secret: str, bodies: list[bytes], clients: int) -> float:
    """Seconds for `clients` connections to post every body (at most one at a time each)."""
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def post() -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = client.post("/api/v1/events", content=body)
                if r.status_code != 201:
                    failures.append(r.text[:300])

    threads = [threading.Thread(target=post) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"HTTP ingest failed: {failures[0]}")
    return elapsed


def add_postgres_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, metavar="ADMIN_URL",
        help="a PostgreSQL server's URL, as a role that may CREATE DATABASE: the script "
             "measures PostgreSQL in throwaway databases there, beside SQLite (env "
             "SEALOG_BENCH_POSTGRES_URL; default postgresql://postgres@127.0.0.1:5432/"
             "postgres); 'none' measures SQLite alone")


def postgres_admin(args: argparse.Namespace) -> str | None:
    """The --postgres URL, or None (saying so) when PostgreSQL is skipped; refuses a URL
    whose server does not answer."""
    if args.postgres.lower() == "none":
        print("PostgreSQL: skipped (--postgres none)", flush=True)
        return None
    import psycopg

    try:
        with psycopg.connect(args.postgres, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        raise SystemExit(f"no PostgreSQL at --postgres {args.postgres}: {exc}; pass "
                         "--postgres none to measure SQLite alone") from None
    return args.postgres


class Databases:
    """Throwaway PostgreSQL databases on one server, made by new() and all dropped (WITH
    (FORCE), closing whatever is still connected) when the with-block ends."""

    def __init__(self, admin_url: str, prefix: str):
        self.admin_url = admin_url
        self.prefix = f"{prefix}_{os.getpid()}"
        self.names: list[str] = []

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def new(self, name: str) -> str:
        """The URL of a new, empty database (one left behind by a killed run is replaced)."""
        full = f"{self.prefix}_{name}"
        self._admin(f'DROP DATABASE IF EXISTS "{full}" WITH (FORCE)')
        self._admin(f'CREATE DATABASE "{full}"')
        self.names.append(full)
        return urllib.parse.urlsplit(self.admin_url)._replace(path=f"/{full}").geturl()

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.names:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def vacuum_analyze(url: str) -> None:
    """VACUUM ANALYZE of a database just built: what autovacuum would have done by the time
    an operator's database is queried (the bench's server may run without it), so that the
    planner knows the tables' sizes and the visibility map allows index-only scans."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")

