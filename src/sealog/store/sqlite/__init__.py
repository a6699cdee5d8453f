"""The embedded backend: one SQLite file in WAL mode (store.py), its full-text queries
in FTS5's syntax (fts5.py); migrations in store/migrations/sqlite/."""

from sealog.store.sqlite.store import SQLiteStore, path_from_url

__all__ = ["SQLiteStore", "path_from_url"]
