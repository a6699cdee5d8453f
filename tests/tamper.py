"""Writes to a store's tables behind its back, as someone with access to the database
would: one helper for both backends, for the tests that tamper with a log."""

from __future__ import annotations

import sqlite3
from typing import Any

from sealog.ledger import merkle
from sealog.store import Store


class Tamper:
    """A connection of its own to a store's database; each statement commits at once.
    SQL is written with ? parameters and runs on either backend."""

    def __init__(self, store: Store):
        self.url = store.url  # type: ignore[attr-defined]
        self.postgres = self.url.startswith("postgresql://")
        if self.postgres:
            import psycopg

            from sealog.store.postgres.store import split_url

            self._pg = psycopg.connect(split_url(self.url)[0], autocommit=True)
        else:
            self._sqlite = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]

    def execute(self, sql: str, *params: Any) -> list[tuple]:
        """Runs one statement and returns its rows (none for most writes)."""
        if self.postgres:
            cursor = self._pg.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
        return self._sqlite.execute(sql, params).fetchall()

    def close(self) -> None:
        (self._pg if self.postgres else self._sqlite).close()

    def __enter__(self) -> Tamper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the events' tables, whose layout differs by backend -----------------------------

    def _event_key(self) -> str:
        """The condition that finds an event's document row from its event row e."""
        return ("d.org_id = e.org_id AND d.idx = e.idx AND d.received_at = e.received_at"
                if self.postgres else "d.seq = e.seq")

    def doc(self, org_id: str, index: int) -> bytes:
        """The stored canonical document of an org's event at index."""
        (row,) = self.execute(f"SELECT d.doc FROM events e JOIN event_docs d ON "
                              f"{self._event_key()} WHERE e.org_id = ? AND e.idx = ?",
                              org_id, index)
        return bytes(row[0])

    def set_doc(self, org_id: str, index: int, doc: bytes, *, with_leaf: bool = False) -> None:
        """Replaces an event's document; with_leaf, its leaf hash on the event row too."""
        if self.postgres:
            self.execute("UPDATE event_docs SET doc = ? WHERE org_id = ? AND idx = ?",
                         doc, org_id, index)
        else:
            self.execute("UPDATE event_docs SET doc = ? WHERE seq = (SELECT seq FROM events "
                         "WHERE org_id = ? AND idx = ?)", doc, org_id, index)
        if with_leaf:
            self.execute("UPDATE events SET leaf_hash = ? WHERE org_id = ? AND idx = ?",
                         merkle.leaf_hash(doc), org_id, index)

    def delete_event(self, org_id: str, index: int) -> None:
        """Removes an event's row and document (and, on SQLite, its search index entry)."""
        if self.postgres:
            self.execute("DELETE FROM event_docs WHERE org_id = ? AND idx = ?", org_id, index)
        else:
            self.execute("DELETE FROM event_docs WHERE seq = (SELECT seq FROM events "
                         "WHERE org_id = ? AND idx = ?)", org_id, index)
        self.execute("DELETE FROM events WHERE org_id = ? AND idx = ?", org_id, index)

    def swap_events(self, org_id: str, a: int, b: int) -> None:
        """Gives the events at indexes a and b each other's place (with their documents)."""
        tables = ["events", "event_docs"] if self.postgres else ["events"]
        parked = 1 << 40  # an index no event has
        for table in tables:
            for old, new in ((a, parked), (b, a), (parked, b)):
                self.execute(f"UPDATE {table} SET idx = ? WHERE org_id = ? AND idx = ?",
                             new, org_id, old)

    def refuse_inserts(self, table: str, message: str) -> None:
        """From now on every insert into table fails with message, as a constraint would."""
        if self.postgres:
            self.execute(f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql "
                         f"AS $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = "
                         "'check_violation'; END $$")
            self.execute(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                         f"FOR EACH ROW EXECUTE FUNCTION refuse_{table}()")
        else:
            self.execute(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                         f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
