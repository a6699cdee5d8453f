"""The PostgreSQL schema's migrations: applied in order, each once, whoever runs them.

Every schema change (a migration, partition upkeep) runs in a transaction that first takes
one advisory lock, so processes started together take turns: the first applies what is
pending, the others find it applied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import psycopg

from sealog.store.postgres import partitions

log = logging.getLogger("sealog.store")

# The advisory lock of schema changes ("sealog-m" in ASCII); per database, so databases on
# one server do not wait on each other.
SCHEMA_LOCK = int.from_bytes(b"sealog-m", "big")


def migration_scripts() -> list[tuple[str, str]]:
    """Every migration as (file name, SQL), in the order they apply."""
    folder = resources.files("sealog.store") / "migrations" / "postgres"
    return sorted((p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql"))


@contextmanager
def schema_change(conn: psycopg.Connection) -> Iterator[None]:
    """A transaction holding the schema lock; conn must be in autocommit mode."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        yield


def migrate(conninfo: str) -> list[str]:
    """Applies the pending migrations, each in a transaction of its own, then makes the
    partitions that are due (partitions.ensure_partitions); returns the names applied.
    Upkeep that cannot take its locks in time is left to the next run, with a warning:
    until then a row of a month without a partition waits in the DEFAULT partition."""
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        scripts = migration_scripts()
        while True:
            with schema_change(conn):
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT COLLATE \"C\" "
                    "PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
                pending = [(name, sql) for name, sql in scripts if name not in done]
                if not pending:
                    break
                # One at a time, looking again under the lock: another process may have
                # applied the next one meanwhile.
                name, sql = pending[0]
                conn.execute(sql.encode())  # no parameters: the script's statements as one
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (name,))
                applied.append(name)
        keep_partitions(conn)
    return applied


def keep_partitions(conn: psycopg.Connection) -> None:
    """Makes the partitions that are due (partitions.ensure_partitions) under the schema
    lock, on a connection in autocommit; one that cannot take its locks in time is left to
    the next run, with a warning."""
    try:
        with schema_change(conn):
            partitions.ensure_partitions(conn)
    except psycopg.errors.LockNotAvailable as exc:
        log.warning("partition upkeep gave up after %s waiting for queries on the "
                    "events tables (%s); the next run will try again",
                    partitions.LOCK_TIMEOUT, exc)
