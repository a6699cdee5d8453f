"""The embedded backend: one SQLite file in WAL mode (store.py), its full-text queries
in FTS5's syntax (fts5.py); migrations in store/migrations/sqlite/."""

from sealog.store.sqlite.store import SQLiteOptions, SQLiteStore, split_url, with_option

__all__ = ["SQLiteOptions", "SQLiteStore", "split_url", "with_option"]
