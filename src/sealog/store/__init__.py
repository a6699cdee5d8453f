"""Storage: one interface (`Store`), chosen by database URL."""

from __future__ import annotations

from sealog.store.base import Conflict, NotFound, StorageFull, Store, Unavailable

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(url: str) -> Store:
    """The store a database URL names, with that backend's options in the URL:
    sqlite:///path.db[?synchronous=FULL&mmap_mb=1024] or
    postgresql://user@host/dbname[?pool_size=8&<libpq parameters>]. Migrations run on open."""
    if url.startswith("sqlite:///"):
        from sealog.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(POSTGRES_SCHEMES):
        from sealog.store.postgres.store import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported database URL {url!r}; use sqlite:///path/to/sealog.db or "
                     "postgresql://user@host/dbname")


def migrate(url: str) -> list[str]:
    """Applies the migrations the database a URL names lacks; returns their names, in
    order. Safe beside other processes opening it: each migration is applied once."""
    if url.startswith(POSTGRES_SCHEMES):
        from sealog.store.postgres.migrations import migrate as migrate_postgres
        from sealog.store.postgres.store import split_url

        return migrate_postgres(split_url(url)[0])
    if not url.startswith("sqlite:///"):
        raise ValueError(f"unsupported database URL {url!r}; use sqlite:///path/to/sealog.db "
                         "or postgresql://user@host/dbname")
    from sealog.store.sqlite import SQLiteStore

    store = SQLiteStore(url)
    store.close()
    return store.applied_migrations


__all__ = ["Conflict", "NotFound", "StorageFull", "Store", "Unavailable", "migrate",
           "open_store"]
