"""The embedded store: one SQLite file in WAL mode, one writer, a reader connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from sealog.search import Cursor, EventFilter
from sealog.store.base import (
    EXPORT_COLUMNS,
    ApiKeyRow,
    CheckpointRow,
    Conflict,
    EventRow,
    ExportRow,
    LogHead,
    NotFound,
    Org,
    SessionRow,
    StoredDoc,
    UserRow,
)
from sealog.store.sqlfilter import Dialect, base_where, fts5_expression, match_where

DIALECT = Dialect(param="?", contains="instr({column}, {param}) > 0")
# How many of the newest rows in the window a text search checks one by one before it
# asks the full-text index; past FTS_LEAD_MAX candidates the index would be slower than a
# wider probe. Together they bound the cost of common and rare terms alike.
PROBE_ROWS = 2000
WIDE_PROBE_ROWS = 25000
FTS_LEAD_MAX = 30000
_ORDER = "ORDER BY occurred_at DESC, id DESC"
_ORDER_E = "ORDER BY e.occurred_at DESC, e.id DESC"
_DOC_COLUMNS = "d.doc, e.leaf_hash, e.occurred_at, e.id, e.idx"
_EVENT_COLUMNS = (
    "seq, org_id, idx, id, occurred_at, category, result, action, actor_id, actor_email, "
    "actor_name, resource_type, resource_id, method, path, ip, leaf_hash, "
    "search_text, keys_text"
)


def path_from_url(url: str) -> Path:
    """The file a sqlite:///path URL names; refuses other URLs."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"{url!r} is not a SQLite URL; write sqlite:///path/to/sealog.db")
    # As in SQLAlchemy: sqlite:///relative.db, sqlite:////absolute/path.db
    return Path(url[len(prefix) :])


def _connect(path: Path, synchronous: str, *, cache_mb: int, mmap_mb: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA cache_size = -{cache_mb * 1024}")
    conn.execute("PRAGMA temp_store = MEMORY")
    # Mapped pages count as the process's resident memory: the writer maps none, readers
    # a bounded window (none in export workers, whose memory must stay flat).
    conn.execute(f"PRAGMA mmap_size = {mmap_mb * 1024 * 1024}")
    return conn


class _Tx:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def lock_log(self, org_id: str) -> LogHead:
        row = self.conn.execute(
            "SELECT log_size, compact_range FROM orgs WHERE id = ?", (org_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        return _head(*row)

    def existing_events(self, org_id: str, ids: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for event_id, doc in self.conn.execute(
                "SELECT e.id, d.doc FROM events e JOIN event_docs d ON d.seq = e.seq "
                f"WHERE e.org_id = ? AND e.id IN ({marks})",
                (org_id, *chunk),
            ):
                found[event_id] = doc
        return found

    def insert_events(self, rows: list[EventRow]) -> None:
        if not rows:
            return
        (last,) = self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        seqs = range(last + 1, last + 1 + len(rows))
        self.conn.executemany(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (s, r.org_id, r.index, r.id, r.occurred_us, r.category, r.result, r.action,
                 r.actor_id, r.actor_email, r.actor_name, r.resource_type, r.resource_id,
                 r.method, r.path, r.ip, r.leaf_hash, r.search_text, r.keys_text)
                for s, r in zip(seqs, rows, strict=True)
            ],
        )
        self.conn.executemany(
            "INSERT INTO event_docs (seq, doc) VALUES (?, ?)",
            [(s, r.doc) for s, r in zip(seqs, rows, strict=True)],
        )
        self.conn.executemany(
            "INSERT INTO events_fts (rowid, search_text, keys_text) VALUES (?, ?, ?)",
            [(s, r.search_text, r.keys_text) for s, r in zip(seqs, rows, strict=True)],
        )

    def insert_tree_nodes(self, org_id: str, nodes: list[tuple[int, int, bytes]]) -> None:
        self.conn.executemany(
            "INSERT INTO tree_nodes (org_id, level, idx, hash) VALUES (?, ?, ?, ?)",
            [(org_id, level, index, h) for level, index, h in nodes],
        )

    def set_log_head(self, org_id: str, head: LogHead) -> None:
        self.conn.execute(
            "UPDATE orgs SET log_size = ?, compact_range = ? WHERE id = ?",
            (head.size, b"".join(head.compact_range), org_id),
        )


def _head(size: int, packed: bytes) -> LogHead:
    return LogHead(size, tuple(packed[i : i + 32] for i in range(0, len(packed), 32)))


class SQLiteStore:
    """A Sealog database in one SQLite file; safe to share between threads."""

    def __init__(self, url: str, *, synchronous: str = "FULL", reader_mmap_mb: int = 1024):
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("SQLite synchronous must be OFF, NORMAL, FULL or EXTRA")
        self.url = url
        self.path = path_from_url(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous.upper()
        self._reader_mmap_mb = reader_mmap_mb
        self._writer = _connect(self.path, self._synchronous, cache_mb=32, mmap_mb=0)
        self._writer.execute("PRAGMA journal_mode = WAL")
        # Reentrant, so that a transaction opened inside another (by the same thread) joins it.
        self._write_lock = threading.RLock()
        self._in_transaction = False
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._migrate()

    # -- connections ---------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._synchronous, cache_mb=32,
                            mmap_mb=self._reader_mmap_mb)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        """Closes every connection; the store cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    @contextmanager
    def writing(self) -> Iterator[_Tx]:
        if self._closed:
            raise RuntimeError("the store is closed")
        with self._write_lock:
            if self._in_transaction:  # this thread's outer transaction commits or rolls back
                yield _Tx(self._writer)
                return
            self._writer.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            try:
                yield _Tx(self._writer)
                self._writer.execute("COMMIT")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction = False

    def _migrate(self) -> None:
        folder = resources.files("sealog.store") / "migrations" / "sqlite"
        scripts = sorted(
            (p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql")
        )
        with self._write_lock:
            conn = self._writer
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for name, sql in scripts:
                if name in done:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, datetime('now'))", (name,)
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")

    # -- orgs and keys ---------------------------------------------------------------

    def create_org(self, *, org_id: str, name: str, created_at: int) -> Org:
        with self.writing() as tx:
            try:
                tx.conn.execute(
                    "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)",
                    (org_id, name, created_at),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"org {org_id!r} already exists") from None
        return Org(org_id, name, created_at, 0)

    def get_org(self, org_id: str) -> Org:
        row = self._reader().execute(
            "SELECT id, name, created_at, log_size FROM orgs WHERE id = ?", (org_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        return Org(*row)

    def list_orgs(self) -> list[Org]:
        rows = self._reader().execute(
            "SELECT id, name, created_at, log_size FROM orgs ORDER BY created_at, id"
        )
        return [Org(*r) for r in rows]

    def insert_api_key(self, row: ApiKeyRow) -> None:
        with self.writing() as tx:
            tx.conn.execute(
                "INSERT INTO api_keys (id, org_id, name, secret_hash, scopes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (row.id, row.org_id, row.name, row.secret_hash, " ".join(row.scopes),
                 row.created_at),
            )

    _KEY_COLUMNS = "id, org_id, name, secret_hash, scopes, created_at, revoked_at, last_used_at"

    @staticmethod
    def _key_row(r: tuple) -> ApiKeyRow:
        return ApiKeyRow(r[0], r[1], r[2], r[3], tuple(r[4].split()), r[5], r[6], r[7])

    def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        r = self._reader().execute(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
        ).fetchone()
        return self._key_row(r) if r else None

    def list_api_keys(self, org_id: str) -> list[ApiKeyRow]:
        rows = self._reader().execute(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE org_id = ? ORDER BY created_at, id",
            (org_id,),
        )
        return [self._key_row(r) for r in rows]

    def revoke_api_key(self, *, org_id: str, key_id: str, at: int) -> ApiKeyRow:
        with self.writing() as tx:
            tx.conn.execute(
                "UPDATE api_keys SET revoked_at = ? "
                "WHERE id = ? AND org_id = ? AND revoked_at IS NULL",
                (at, key_id, org_id),
            )
            r = tx.conn.execute(
                f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = ? AND org_id = ?",
                (key_id, org_id),
            ).fetchone()
        if r is None:
            raise NotFound(f"API key {key_id!r} does not exist in org {org_id!r}")
        return self._key_row(r)

    def touch_api_key(self, key_id: str, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    # -- users and sessions ----------------------------------------------------------

    _USER_COLUMNS = "id, org_id, email, name, role, password_hash, created_at, removed_at"

    def insert_user(self, row: UserRow) -> None:
        with self.writing() as tx:
            try:
                tx.conn.execute(
                    f"INSERT INTO users ({self._USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (row.id, row.org_id, row.email, row.name, row.role, row.password_hash,
                     row.created_at, row.removed_at),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"a user with email {row.email!r} already exists") from None

    def get_user(self, user_id: str) -> UserRow | None:
        r = self._reader().execute(
            f"SELECT {self._USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        return UserRow(*r) if r else None

    def find_user_by_email(self, email: str) -> UserRow | None:
        r = self._reader().execute(
            f"SELECT {self._USER_COLUMNS} FROM users WHERE email = ? AND removed_at IS NULL",
            (email,),
        ).fetchone()
        return UserRow(*r) if r else None

    def list_users(self, org_id: str) -> list[UserRow]:
        rows = self._reader().execute(
            f"SELECT {self._USER_COLUMNS} FROM users WHERE org_id = ? AND removed_at IS NULL "
            "ORDER BY created_at, id", (org_id,),
        )
        return [UserRow(*r) for r in rows]

    def _live_user(self, conn: sqlite3.Connection, org_id: str, user_id: str) -> UserRow:
        r = conn.execute(
            f"SELECT {self._USER_COLUMNS} FROM users "
            "WHERE id = ? AND org_id = ? AND removed_at IS NULL", (user_id, org_id),
        ).fetchone()
        if r is None:
            raise NotFound(f"user {user_id!r} does not exist in org {org_id!r}")
        return UserRow(*r)

    def set_user_role(self, *, org_id: str, user_id: str, role: str) -> UserRow:
        with self.writing() as tx:
            self._live_user(tx.conn, org_id, user_id)
            tx.conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
            return self._live_user(tx.conn, org_id, user_id)

    def remove_user(self, *, org_id: str, user_id: str, at: int) -> UserRow:
        with self.writing() as tx:
            user = self._live_user(tx.conn, org_id, user_id)
            tx.conn.execute("UPDATE users SET removed_at = ? WHERE id = ?", (at, user_id))
            tx.conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                (at, user_id),
            )
        return user

    def insert_session(self, token_hash: bytes, row: SessionRow) -> None:
        with self.writing() as tx:
            tx.conn.execute(
                "INSERT INTO sessions (token_hash, id, user_id, csrf_token, created_at, "
                "expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash, row.id, row.user_id, row.csrf_token, row.created_at,
                 row.expires_at, row.revoked_at),
            )

    def get_session(self, token_hash: bytes) -> SessionRow | None:
        r = self._reader().execute(
            "SELECT id, user_id, csrf_token, created_at, expires_at, revoked_at FROM sessions "
            "WHERE token_hash = ?", (token_hash,),
        ).fetchone()
        return SessionRow(*r) if r else None

    def revoke_session(self, token_hash: bytes, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                (at, token_hash),
            )

    def add_login_failure(self, email: str, at: int, *, forget_before: int) -> None:
        with self.writing() as tx:
            tx.conn.execute("DELETE FROM login_failures WHERE at < ?", (forget_before,))
            tx.conn.execute("INSERT INTO login_failures (email, at) VALUES (?, ?)", (email, at))

    def count_login_failures(self, email: str, since: int) -> int:
        return self._reader().execute(
            "SELECT count(*) FROM login_failures WHERE email = ? AND at >= ?", (email, since)
        ).fetchone()[0]

    def clear_login_failures(self, email: str) -> None:
        with self.writing() as tx:
            tx.conn.execute("DELETE FROM login_failures WHERE email = ?", (email,))

    # -- events ----------------------------------------------------------------------

    def get_event(self, org_id: str, event_id: str) -> StoredDoc | None:
        row = self._reader().execute(
            f"SELECT {_DOC_COLUMNS} FROM events e JOIN event_docs d ON d.seq = e.seq "
            "WHERE e.org_id = ? AND e.id = ?",
            (org_id, event_id),
        ).fetchone()
        return StoredDoc(*row) if row else None

    def list_events(
        self, flt: EventFilter, *, cursor: Cursor | None, limit: int
    ) -> list[StoredDoc]:
        conn = self._reader()
        base = base_where(flt, cursor, DIALECT)
        match = match_where(flt, DIALECT)
        fts = fts5_expression(flt)
        if fts is None:
            seqs = conn.execute(
                f"SELECT seq FROM events WHERE {base.sql()} AND {match.sql()} {_ORDER} LIMIT ?",
                (*base.params, *match.params, limit),
            ).fetchall()
            return self._docs(conn, seqs)
        # A common term fills the page from the newest rows of the window; a rare one is
        # found faster by the full-text index. Neither path reads more than it must.
        seqs = self._probe(conn, base, match, PROBE_ROWS, limit)
        if len(seqs) < limit:
            (candidates,) = conn.execute(
                "SELECT count(*) FROM events_fts WHERE events_fts MATCH ?", (fts,)
            ).fetchone()
            if candidates > FTS_LEAD_MAX:
                seqs = self._probe(conn, base, match, WIDE_PROBE_ROWS, limit)
            if len(seqs) < limit:
                seqs = conn.execute(
                    "SELECT e.seq FROM (SELECT rowid AS seq FROM events_fts "
                    "WHERE events_fts MATCH ?) AS m CROSS JOIN events e ON e.seq = m.seq "
                    f"WHERE {base.sql()} AND {match.sql()} {_ORDER_E} LIMIT ?",
                    (fts, *base.params, *match.params, limit),
                ).fetchall()
        return self._docs(conn, seqs)

    @staticmethod
    def _probe(conn: sqlite3.Connection, base, match, rows: int, limit: int) -> list:
        """Matches among the newest `rows` rows of the window, newest first."""
        return conn.execute(
            f"SELECT e.seq FROM (SELECT seq FROM events WHERE {base.sql()} {_ORDER} LIMIT ?) "
            f"AS w CROSS JOIN events e ON e.seq = w.seq WHERE {match.sql()} {_ORDER_E} LIMIT ?",
            (*base.params, rows, *match.params, limit),
        ).fetchall()

    @staticmethod
    def _docs(conn: sqlite3.Connection, seqs: list) -> list[StoredDoc]:
        """The documents of the page's rows, in the page's order."""
        if not seqs:
            return []
        marks = ", ".join("?" * len(seqs))
        rows = conn.execute(
            f"SELECT {_DOC_COLUMNS} FROM events e JOIN event_docs d ON d.seq = e.seq "
            f"WHERE e.seq IN ({marks}) {_ORDER_E}",
            [s for (s,) in seqs],
        ).fetchall()
        return [StoredDoc(*r) for r in rows]

    def count_events(self, flt: EventFilter) -> int:
        conn = self._reader()
        base = base_where(flt, None, DIALECT)
        match = match_where(flt, DIALECT)
        fts = fts5_expression(flt)
        if fts is None:
            sql = f"SELECT count(*) FROM events WHERE {base.sql()} AND {match.sql()}"
            return conn.execute(sql, (*base.params, *match.params)).fetchone()[0]
        sql = (
            "SELECT count(*) FROM (SELECT rowid AS seq FROM events_fts WHERE events_fts MATCH ?) "
            f"AS m CROSS JOIN events e ON e.seq = m.seq WHERE {base.sql()} AND {match.sql()}"
        )
        return conn.execute(sql, (fts, *base.params, *match.params)).fetchone()[0]

    def iter_events_by_index(self, org_id: str, start: int, stop: int) -> Iterator[StoredDoc]:
        conn = self._reader()
        position = start
        while position < stop:
            rows = conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM events e JOIN event_docs d ON d.seq = e.seq "
                "WHERE e.org_id = ? AND e.idx >= ? AND e.idx < ? ORDER BY e.idx LIMIT 1000",
                (org_id, position, stop),
            ).fetchall()
            if not rows:
                return
            for r in rows:
                yield StoredDoc(*r)
            position = rows[-1][4] + 1


    # -- the Merkle tree and its checkpoints -------------------------------------------

    def log_head(self, org_id: str) -> LogHead:
        row = self._reader().execute(
            "SELECT log_size, compact_range FROM orgs WHERE id = ?", (org_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        return _head(*row)

    def read_tree_nodes(
        self, org_id: str, wanted: list[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        conn = self._reader()
        found: dict[tuple[int, int], bytes] = {}
        by_level: dict[int, list[int]] = {}
        for level, index in wanted:
            by_level.setdefault(level, []).append(index)
        # One primary-key range per level: (org_id, level, idx IN …) uses the index, where a
        # row-value IN over VALUES made SQLite scan the table.
        for level, indexes in by_level.items():
            for start in range(0, len(indexes), 500):
                chunk = indexes[start : start + 500]
                for index, h in conn.execute(
                    f"SELECT idx, hash FROM tree_nodes WHERE org_id = ? AND level = ? "
                    f"AND idx IN ({', '.join('?' * len(chunk))})", (org_id, level, *chunk),
                ):
                    found[(level, index)] = h
        return found

    def read_tree_range(
        self, org_id: str, level: int, start: int, stop: int
    ) -> dict[tuple[int, int], bytes]:
        rows = self._reader().execute(
            "SELECT idx, hash FROM tree_nodes WHERE org_id = ? AND level = ? "
            "AND idx >= ? AND idx < ?", (org_id, level, start, stop),
        )
        return {(level, index): h for index, h in rows}

    _CHECKPOINT_COLUMNS = "org_id, size, root, note, key_id, created_at"

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        with self.writing() as tx:
            cursor = tx.conn.execute(
                f"INSERT OR IGNORE INTO checkpoints ({self._CHECKPOINT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (row.org_id, row.size, row.root, row.note, row.key_id, row.created_at),
            )
            return cursor.rowcount == 1

    def latest_checkpoint(self, org_id: str) -> CheckpointRow | None:
        row = self._reader().execute(
            f"SELECT {self._CHECKPOINT_COLUMNS} FROM checkpoints WHERE org_id = ? "
            "ORDER BY size DESC LIMIT 1", (org_id,),
        ).fetchone()
        return CheckpointRow(*row) if row else None

    def orgs_behind_checkpoint(self) -> list[str]:
        rows = self._reader().execute(
            "SELECT o.id FROM orgs o WHERE o.log_size > coalesce("
            "(SELECT max(c.size) FROM checkpoints c WHERE c.org_id = o.id), -1)"
        )
        return [r[0] for r in rows]

    def add_log_key(self, vkey: str, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute(
                "INSERT OR IGNORE INTO log_keys (vkey, created_at) VALUES (?, ?)", (vkey, at)
            )

    def retire_log_key(self, vkey: str, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute(
                "UPDATE log_keys SET retired_at = ? WHERE vkey = ? AND retired_at IS NULL",
                (at, vkey),
            )

    def log_keys(self) -> list[tuple[str, int, int | None]]:
        return list(self._reader().execute(
            "SELECT vkey, created_at, retired_at FROM log_keys ORDER BY created_at"
        ))


    # -- exports -----------------------------------------------------------------------

    def iter_events_ascending(self, flt: EventFilter, *, batch: int = 1000
                              ) -> Iterator[StoredDoc]:
        conn = self._reader()
        match = match_where(flt, DIALECT)
        after: tuple[int, str] | None = None
        make = StoredDoc._make
        while True:
            # Batches keep each read transaction short, so a long export never holds back
            # the WAL checkpoint; the keyset makes each batch start where the last ended.
            base = base_where(flt, None, DIALECT, after)
            rows = conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM events e JOIN event_docs d ON d.seq = e.seq "
                f"WHERE {base.sql()} AND {match.sql()} "
                "ORDER BY e.occurred_at, e.id LIMIT ?", (*base.params, *match.params, batch),
            ).fetchall()
            if not rows:
                return
            yield from map(make, rows)
            last = rows[-1]
            after = (last[2], last[3])
            if len(rows) < batch:
                return

    def insert_export(self, row: ExportRow) -> None:
        with self.writing() as tx:
            tx.conn.execute(
                f"INSERT INTO exports ({EXPORT_COLUMNS}) VALUES ({', '.join('?' * 21)})",
                tuple(row.__dict__.values()),
            )

    def get_export(self, org_id: str, export_id: str) -> ExportRow | None:
        r = self._reader().execute(
            f"SELECT {EXPORT_COLUMNS} FROM exports WHERE org_id = ? AND id = ?",
            (org_id, export_id),
        ).fetchone()
        return ExportRow(*r) if r else None

    def list_exports(self, org_id: str) -> list[ExportRow]:
        rows = self._reader().execute(
            f"SELECT {EXPORT_COLUMNS} FROM exports WHERE org_id = ? "
            "ORDER BY created_at DESC, id DESC", (org_id,),
        )
        return [ExportRow(*r) for r in rows]

    def claim_export(self, *, owner: str, now: int, lease_us: int) -> ExportRow | None:
        with self.writing() as tx:
            r = tx.conn.execute(
                "UPDATE exports SET status = 'running', lease_owner = ?, "
                "lease_expires_at = ?, attempts = attempts + 1, progress = 0, "
                "started_at = coalesce(started_at, ?) WHERE id = ("
                "SELECT id FROM exports WHERE status = 'queued' OR (status = 'running' "
                "AND lease_expires_at < ?) ORDER BY created_at LIMIT 1) "
                f"RETURNING {EXPORT_COLUMNS}",
                (owner, now + lease_us, now, now),
            ).fetchone()
        return ExportRow(*r) if r else None

    def renew_export(self, *, export_id: str, owner: str, now: int, lease_us: int,
                     progress: float) -> bool:
        with self.writing() as tx:
            cursor = tx.conn.execute(
                "UPDATE exports SET lease_expires_at = ?, progress = ? "
                "WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (now + lease_us, progress, export_id, owner),
            )
            return cursor.rowcount == 1

    def finish_export(self, *, export_id: str, owner: str, status: str,
                      fields: dict[str, object]) -> bool:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.writing() as tx:
            cursor = tx.conn.execute(
                f"UPDATE exports SET status = ?, lease_owner = NULL, lease_expires_at = NULL"
                f"{', ' + sets if sets else ''} "
                "WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (status, *fields.values(), export_id, owner),
            )
            return cursor.rowcount == 1

    def cancel_export(self, *, org_id: str, export_id: str, now: int) -> ExportRow:
        with self.writing() as tx:
            r = tx.conn.execute(
                f"SELECT {EXPORT_COLUMNS} FROM exports WHERE org_id = ? AND id = ?",
                (org_id, export_id),
            ).fetchone()
            if r is None:
                raise NotFound(f"export {export_id!r} does not exist")
            if r[6] not in ("queued", "running"):
                raise Conflict(f"export {export_id} is {r[6]}; only a queued or running "
                               "export can be cancelled")
            tx.conn.execute(
                "UPDATE exports SET status = 'cancelled', finished_at = ?, lease_owner = NULL, "
                "lease_expires_at = NULL WHERE id = ?", (now, export_id),
            )
            r = tx.conn.execute(
                f"SELECT {EXPORT_COLUMNS} FROM exports WHERE id = ?", (export_id,)
            ).fetchone()
        return ExportRow(*r)

    def expire_exports(self, now: int) -> list[ExportRow]:
        with self.writing() as tx:
            rows = tx.conn.execute(
                "UPDATE exports SET status = 'expired' WHERE status = 'completed' "
                f"AND expires_at <= ? RETURNING {EXPORT_COLUMNS}", (now,),
            ).fetchall()
        return [ExportRow(*r) for r in rows]


def _statements(sql: str) -> list[str]:
    """The statements of a migration script (split at semicolons that end a line)."""
    out, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current))
            current = []
    if "".join(current).strip():
        out.append("\n".join(current))
    return out

