"""Storage: one interface (`Store`), chosen by database URL."""

from __future__ import annotations

from sealog.store.base import Conflict, NotFound, StorageFull, Store


def open_store(url: str, *, sqlite_synchronous: str = "FULL", reader_mmap_mb: int = 1024
               ) -> Store:
    """The store a database URL names (sqlite:///path); migrations run on open.
    reader_mmap_mb: memory-mapped window of each SQLite reader (0 keeps memory flat)."""
    if url.startswith("sqlite:///"):
        from sealog.store.sqlite import SQLiteStore

        return SQLiteStore(url, synchronous=sqlite_synchronous, reader_mmap_mb=reader_mmap_mb)
    if url.startswith(("postgresql://", "postgres://")):
        raise ValueError("the PostgreSQL backend is not available yet; use sqlite:///path.db")
    raise ValueError(f"unsupported database URL {url!r}; use sqlite:///path/to/sealog.db")


def migrate(url: str) -> list[str]:
    """Applies the migrations the database a URL names lacks; returns their names, in
    order. Safe beside other processes opening it: each migration is applied once."""
    if url.startswith(("postgresql://", "postgres://")):
        from sealog.store.postgres.migrations import migrate as migrate_postgres

        return migrate_postgres(url)
    from sealog.store.sqlite import SQLiteStore

    store = SQLiteStore(url)  # refuses a URL that is not SQLite's, naming both forms
    store.close()
    return store.applied_migrations


__all__ = ["Conflict", "NotFound", "StorageFull", "Store", "migrate", "open_store"]
