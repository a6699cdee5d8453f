"""The embedded store: one SQLite file in WAL mode, one writer, a reader connection per thread."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson

from sealog import times
from sealog.search import (
    FIELD_LETTERS,
    Cursor,
    EventFilter,
    Query,
    QueryTooCostly,
    field_tokens,
    word_pairs,
)
from sealog.store.base import (
    ApiKeyRow,
    CheckpointRow,
    Conflict,
    EventRow,
    ExportRow,
    HoldRow,
    LogHead,
    NotFound,
    OneCallWrites,
    Org,
    RetentionRow,
    SessionRow,
    StorageFull,
    StoredDoc,
    StreamRow,
    UserRow,
    closed_message,
    erased_tokens,
    stored_event_row,
    wait_after,
)
from sealog.store.sqlfilter import Dialect, base_where, match_where, occurred_in
from sealog.store.sqlite.fts5 import Fts5Query, fts5_query
from sealog.times import TimeRange

DIALECT = Dialect(param="?", contains="instr({column}, {param}) > 0")
log = logging.getLogger("sealog.store")
# How many of the newest rows in the window a text search checks one by one before it
# asks the full-text index: a common term fills its page from them at once.
PROBE_ROWS = 2000
# How many index hits the index-led path checks first (then four times more each round).
FIRST_HITS = 256
# Events are keyed by time: seq = occurred_at in milliseconds * 2^TIME_KEY_BITS + the
# event's place among those of the same millisecond, so that a time window is a range of
# keys in the events table and in the org's full-text index alike. Keys last until 2109.
TIME_KEY_BITS = 21
PER_MILLISECOND = 1 << TIME_KEY_BITS
# "_" is a letter to the tokenizer: it joins word pairs (search.PAIR_JOINER), and no word
# or field token has one.
FTS_SCHEMA = (
    "CREATE VIRTUAL TABLE {table} USING fts5(search_text, word_pairs, field_tokens, "
    "content='', tokenize=\"unicode61 remove_diacritics 0 tokenchars '_'\", detail=column, "
    "columnsize=0)"
)
# FTS5 merges an index's segments once this many of one size gather (its default is 4).
# With one segment a commit, 8 rewrites each entry fewer times: the store's insert ~8%
# faster over 200,000 events, queries over 1,000,000 as fast (docs/performance.md).
FTS_AUTOMERGE = 8
# Pages a step of a merge of an org's whole full-text index writes where nothing was
# deleted (release_emptied_storage): about 30 ms of the writer's time each. An org that
# keeps at most FTS_REINDEX_MAX events, and deleted 50 times as many, is indexed again.
FTS_MERGE_PAGES = 250
FTS_REINDEX_MAX = 5000
# Past this many pages in the WAL the writer copies it back into the database itself, in
# its commit; until then a thread of the store does it (see _WalCheckpointer).
WAL_WRITER_CHECKPOINT_PAGES = 20_000
# The checkpoint thread runs at most this often (seconds).
WAL_CHECKPOINT_PAUSE = 0.05
# Once the WAL is all copied back, a file past this size is cut down to it (to nothing by
# the thread, to this by the writer when it starts the WAL over): the WAL grows under load,
# and without this the file would keep the size of its busiest moment.
WAL_REST_BYTES = 4 * 2**20
# How long the thread's truncation waits for readers, holding new writers back (ms).
WAL_TRUNCATE_WAIT_MS = 100
# A search on a budget has its thread's CPU time checked once every this many steps of
# SQLite's virtual machine: every few milliseconds, at no cost that can be measured.
BUDGET_CHECK_STEPS = 10_000
_ORDER = "ORDER BY occurred_at DESC, id DESC"
_ORDER_E = "ORDER BY e.occurred_at DESC, e.id DESC"
_DOC_COLUMNS = "d.doc, e.leaf_hash, e.occurred_at, e.id, e.idx"
_EVENT_COLUMNS = (
    "seq, org_id, idx, id, occurred_at, category, result, action, actor_id, actor_email, "
    "actor_name, resource_type, resource_id, method, path, ip, leaf_hash, search_text"
)
_EXPORT_COLUMNS = (
    "id, org_id, name, format, params, snapshot_size, status, progress, row_count, "
    "size_bytes, sha256, error, created_by, created_at, started_at, finished_at, expires_at, "
    "lease_owner, lease_expires_at, attempts, file_path"
)
_STREAM_COLUMNS = (
    "id, org_id, name, kind, format, config, sealed, state, next_index, delivered, failures, "
    "attempts, last_delivered_at, last_error, failing_since, retry_at, lease_owner, "
    "lease_expires_at, created_by, created_at, updated_at"
)
# The streams (alias s) with events to deliver now, given now twice.
_DUE_STREAMS = (
    "streams s JOIN orgs o ON o.id = s.org_id WHERE s.state IN ('active', 'failing') "
    "AND coalesce(s.retry_at, 0) <= ? AND (s.lease_owner IS NULL OR s.lease_expires_at < ?) "
    "AND s.next_index < o.log_size")
_KEY_COLUMNS = ("id, org_id, name, secret_hash, scopes, created_at, revoked_at, "
                "last_used_at, created_by")
_USER_COLUMNS = "id, org_id, email, name, role, password_hash, created_at, removed_at"
_SESSION_COLUMNS = "id, user_id, csrf_token, created_at, expires_at, revoked_at"
_CHECKPOINT_COLUMNS = "org_id, size, root, note, key_id, created_at"
# An events row as stored_event_row takes it (EventRow's fields but the rebuilt tokens).
_ROW_COLUMNS = ("e.org_id, e.idx, e.id, e.occurred_at, e.category, e.result, e.action, "
                "e.actor_id, e.actor_email, e.actor_name, e.resource_type, e.resource_id, "
                "e.method, e.path, e.ip, e.leaf_hash, e.search_text, d.doc")
# The tables Store.row_counts counts, by base.ROW_KINDS' names.
_COUNTED = {"orgs": "orgs", "users": "users", "API keys": "api_keys", "sessions": "sessions",
            "failed sign-ins": "login_failures", "events": "events",
            "tree nodes": "tree_nodes", "checkpoints": "checkpoints", "log keys": "log_keys",
            "exports": "exports", "streams": "streams", "retention": "retention",
            "legal holds": "legal_holds"}
_RETENTION_COLUMNS = ("org_id, days, locked_at, pruned_before, purge_to, purge_record, "
                      "updated_at")
_HOLD_COLUMNS = ("org_id, id, name, reason, occurred_from, occurred_to, created_by, "
                 "created_at, released_at, released_by")
_HEAD_COLUMNS = "log_size, compact_range, last_received_at"
# The extended result codes of a write that a UNIQUE index or a PRIMARY KEY refused.
_UNIQUE_VIOLATIONS = (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)


# The columns of an events row that search.field_tokens makes tokens of.
_TOKEN_COLUMNS = tuple(FIELD_LETTERS)


# Chunk sizes of multi-row INSERTs: few distinct statements, so each stays prepared.
_CHUNKS = (256, 64, 16, 4, 1)


def _insert_rows(conn: sqlite3.Connection, into: str, rows: list[tuple]) -> None:
    """INSERT INTO `into` the rows, many a statement: faster than executemany, and Python
    lets go of the GIL once a statement instead of once a row."""
    if not rows:
        return
    width = len(rows[0])
    row_marks = "(" + ", ".join("?" * width) + ")"
    done = 0
    for size in _CHUNKS:
        if len(rows) - done < size:
            continue
        sql = f"INSERT INTO {into} VALUES " + ", ".join([row_marks] * size)
        while len(rows) - done >= size:
            conn.execute(sql, [v for row in rows[done : done + size] for v in row])
            done += size


def _columns(columns: str, table: str) -> str:
    """columns, each prefixed with a table's alias."""
    return ", ".join(f"{table}.{c.strip()}" for c in columns.split(","))


def fts_table(org_num: int) -> str:
    """The name of an org's full-text index."""
    return f"events_fts_{org_num}"


def _create_fts_index(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(FTS_SCHEMA.format(table=table))
    _set_fts_automerge(conn, table)


def _set_fts_automerge(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('automerge', ?)",
                 (FTS_AUTOMERGE,))


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _received_at(conn: sqlite3.Connection, org_id: str, index: int) -> int | None:
    """When the org's event at index was received (its document says), or None."""
    r = conn.execute("SELECT json_extract(CAST(d.doc AS TEXT), '$.received_at') FROM "
                     "events e JOIN event_docs d ON d.seq = e.seq WHERE e.org_id = ? "
                     "AND e.idx = ?", (org_id, index)).fetchone()
    return None if r is None else times.parse_rfc3339(r[0])


def _org_fts_table(conn: sqlite3.Connection, org_id: str) -> str | None:
    """The name of org_id's full-text index; None when there is no such org."""
    row = conn.execute("SELECT num FROM orgs WHERE id = ?", (org_id,)).fetchone()
    return None if row is None else fts_table(row[0])


_MIN_KEY, _MAX_KEY = -(2**63), 2**63 - 1


def window_keys(flt: EventFilter, cursor: Cursor | None = None) -> tuple[int, int | None]:
    """The keys of the whole milliseconds that flt's window (before cursor) touches."""
    upper = None if flt.time_range.end_us is None else flt.time_range.end_us - 1
    if cursor is not None:
        upper = cursor.occurred_us if upper is None else min(upper, cursor.occurred_us)
    high = None if upper is None else ((upper // 1000 + 1) << TIME_KEY_BITS) - 1
    low = (flt.time_range.start_us // 1000) << TIME_KEY_BITS
    # A window can reach past the years a key can stand for (from year 1, say); SQLite's
    # integers end there, and so do the keys of every event stored.
    return max(low, _MIN_KEY), None if high is None else min(high, _MAX_KEY)


def _time_keys(conn: sqlite3.Connection, occurred: list[int]) -> list[int]:
    """A free key for each of these occurred_at times, in order: read from the keys stored,
    so only in the write transaction that inserts them (the writer lock keeps others out)."""
    (top,) = conn.execute("SELECT max(seq) FROM events").fetchone()
    next_free: dict[int, int] = {}
    keys = []
    for us in occurred:
        ms = us // 1000
        key = next_free.get(ms)
        if key is None:
            key = ms << TIME_KEY_BITS
            if top is not None and top >= key:  # a late event: others may share its millisecond
                (last,) = conn.execute(
                    "SELECT max(seq) FROM events WHERE seq >= ? AND seq < ?",
                    (key, key + PER_MILLISECOND),
                ).fetchone()
                key = key if last is None else last + 1
        if key >> TIME_KEY_BITS != ms:
            raise Conflict(f"more than {PER_MILLISECOND:,} events occurred at one millisecond")
        keys.append(key)
        next_free[ms] = key + 1
    return keys


SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass(frozen=True)
class SQLiteOptions:
    """What a sqlite:/// URL's query may set: ?synchronous=FULL (the durability of each
    commit) and ?mmap_mb=1024 (each reader's memory-mapped window; 0 keeps memory flat)."""

    synchronous: str = "FULL"
    mmap_mb: int = 1024


def split_url(url: str) -> tuple[Path, SQLiteOptions]:
    """The file a sqlite:///path[?options] URL names and its options; refuses other URLs
    and options it does not know."""
    prefix = "sqlite:///"
    path, _, query = url.partition("?")
    if not path.startswith(prefix) or len(path) == len(prefix):
        raise ValueError(f"{url!r} is not a SQLite URL; write sqlite:///path/to/sealog.db")
    options: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name in options:
            raise ValueError(f"{name} is given twice in the database URL")
        options[name] = value
    synchronous = options.pop("synchronous", "FULL").upper()
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError("synchronous in a SQLite URL must be OFF, NORMAL, FULL or EXTRA, "
                         f"not {synchronous!r}")
    mmap = options.pop("mmap_mb", "1024")
    if not mmap.isdigit():
        raise ValueError(f"mmap_mb in a SQLite URL must be a whole number of MiB, not {mmap!r}")
    if options:
        raise ValueError(f"unknown option(s) {', '.join(sorted(options))} in a SQLite URL; "
                         "it takes synchronous and mmap_mb")
    # As in SQLAlchemy: sqlite:///relative.db, sqlite:////absolute/path.db
    return Path(path[len(prefix) :]), SQLiteOptions(synchronous, int(mmap))


def with_option(url: str, name: str, value: str) -> str:
    """url with option name set to value, unless url already sets it."""
    _, _, query = url.partition("?")
    if name in dict(urllib.parse.parse_qsl(query, keep_blank_values=True)):
        return url
    return f"{url}{'&' if query else '?'}{urllib.parse.urlencode({name: value})}"


@contextmanager
def _taken(message: str) -> Iterator[None]:
    """Raises Conflict(message) when a write in the block finds its unique key taken."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode not in _UNIQUE_VIOLATIONS:
            raise
        raise Conflict(message) from None


def _key_row(r: tuple) -> ApiKeyRow:
    return ApiKeyRow(r[0], r[1], r[2], r[3], tuple(r[4].split()), r[5], r[6], r[7], r[8])


def _is_disk_full(exc: BaseException) -> bool:
    """Whether exc is SQLite's SQLITE_FULL ("database or disk is full")."""
    return (isinstance(exc, sqlite3.OperationalError)
            and getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL)


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


class _WalCheckpointer:
    """Copies the WAL back into the database after commits, on a thread and a connection
    of its own, so that a commit does not pay for it (measured: a quarter of the store's
    insert time). PASSIVE checkpoints never block the writer or a reader."""

    def __init__(self, path: Path, synchronous: str):
        # Opened here, not on the thread: a file that cannot be opened fails the store's
        # opening, rather than the thread after it (e.g. once a caller removed the folder).
        self._conn = _connect(path, synchronous, cache_mb=2, mmap_mb=0)
        self._path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sealog-wal-checkpoint",
                                        daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Says a commit added to the WAL."""
        self._wake.set()

    def _run(self) -> None:
        conn = self._conn
        try:
            while not self._stop.is_set():
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    busy, frames, copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if not busy and frames == copied and self._wal_bytes() > WAL_REST_BYTES:
                        self._truncate(conn)
                except sqlite3.OperationalError:
                    pass  # another process checkpoints; the next commit pokes again
                self._stop.wait(WAL_CHECKPOINT_PAUSE)
        finally:
            conn.close()

    def _wal_bytes(self) -> int:
        try:
            return self._path.with_name(self._path.name + "-wal").stat().st_size
        except FileNotFoundError:
            return 0

    @staticmethod
    def _truncate(conn: sqlite3.Connection) -> None:
        # All is copied back, so this only waits (briefly) for readers of older snapshots;
        # new writers wait meanwhile, hence the short timeout: busy, it is tried next time.
        conn.execute(f"PRAGMA busy_timeout = {WAL_TRUNCATE_WAIT_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute("PRAGMA busy_timeout = 30000")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()


class _Tx:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def lock_log(self, org_id: str) -> LogHead:
        row = self.conn.execute(
            f"SELECT {_HEAD_COLUMNS}, closed_at FROM orgs WHERE id = ?", (org_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        if row[-1] is not None:
            raise Conflict(closed_message(org_id, row[-1]))
        return _head(*row[:-1])

    def close_org(self, org_id: str, at: int) -> None:
        self.conn.execute("UPDATE orgs SET closed_at = ? WHERE id = ?", (at, org_id))
        self.conn.execute("DELETE FROM sessions WHERE user_id IN "
                          "(SELECT id FROM users WHERE org_id = ?)", (org_id,))
        self.conn.execute("DELETE FROM api_keys WHERE org_id = ?", (org_id,))

    def delete_org_rows(self, org_id: str) -> list[str]:
        files = [r[0] for r in self.conn.execute(
            "SELECT file_path FROM exports WHERE org_id = ? AND file_path IS NOT NULL",
            (org_id,))]
        self.conn.execute("DELETE FROM sessions WHERE user_id IN "
                          "(SELECT id FROM users WHERE org_id = ?)", (org_id,))
        self.conn.execute("DELETE FROM api_keys WHERE org_id = ?", (org_id,))  # made since
        for table in ("exports", "streams", "retention", "legal_holds", "login_failures",
                      "users"):
            self.conn.execute(f"DELETE FROM {table} WHERE org_id = ?", (org_id,))
        return files

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
        org_id = rows[0].org_id
        if any(r.org_id != org_id for r in rows):
            raise ValueError("insert_events takes the rows of one org")
        table = _org_fts_table(self.conn, org_id)
        if table is None:
            raise NotFound(f"org {org_id!r} does not exist")
        seqs = _time_keys(self.conn, [r.occurred_us for r in rows])
        _insert_rows(self.conn, f"events ({_EVENT_COLUMNS})", [
            (s, r.org_id, r.index, r.id, r.occurred_us, r.category, r.result, r.action,
             r.actor_id, r.actor_email, r.actor_name, r.resource_type, r.resource_id,
             r.method, r.path, r.ip, r.leaf_hash, r.search_text)
            for s, r in zip(seqs, rows, strict=True)
        ])
        _insert_rows(self.conn, "event_docs (seq, doc)",
                     [(s, r.doc) for s, r in zip(seqs, rows, strict=True)])
        _insert_rows(self.conn, f"{table} (rowid, search_text, word_pairs, field_tokens)", [
            (s, r.search_text, r.word_pairs, r.field_tokens)
            for s, r in zip(seqs, rows, strict=True)
        ])

    def insert_tree_nodes(self, org_id: str, nodes: list[tuple[int, int, bytes]]) -> None:
        _insert_rows(self.conn, "tree_nodes (org_id, level, idx, hash)",
                     [(org_id, level, index, h) for level, index, h in nodes])

    def set_log_head(self, org_id: str, head: LogHead) -> None:
        self.conn.execute(
            "UPDATE orgs SET log_size = ?, compact_range = ?, last_received_at = ? WHERE id = ?",
            (head.size, b"".join(head.compact_range), head.last_received_us, org_id),
        )

    def lock_checkpoints(self, org_id: str) -> CheckpointRow | None:
        # The signing lock is the writer lock, held from BEGIN IMMEDIATE.
        row = self.conn.execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE org_id = ? "
            "ORDER BY size DESC LIMIT 1", (org_id,),
        ).fetchone()
        return CheckpointRow(*row) if row else None

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        cursor = self.conn.execute(
            f"INSERT OR IGNORE INTO checkpoints ({_CHECKPOINT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (row.org_id, row.size, row.root, row.note, row.key_id, row.created_at),
        )
        return cursor.rowcount == 1

    def insert_log_key(self, vkey: str, created_at: int, retired_at: int | None) -> None:
        with _taken(f"the log key {vkey!r} is already recorded"):
            self.conn.execute(
                "INSERT INTO log_keys (vkey, created_at, retired_at) VALUES (?, ?, ?)",
                (vkey, created_at, retired_at),
            )

    # The writer lock, held from BEGIN IMMEDIATE, is every lock the reads below name.

    def create_org(self, *, org_id: str, name: str, created_at: int) -> Org:
        (num,) = self.conn.execute("SELECT coalesce(max(num), 0) + 1 FROM orgs").fetchone()
        with _taken(f"org {org_id!r} already exists"):
            self.conn.execute(
                "INSERT INTO orgs (id, name, created_at, num) VALUES (?, ?, ?, ?)",
                (org_id, name, created_at, num),
            )
        _create_fts_index(self.conn, fts_table(num))
        return Org(org_id, name, created_at, 0)

    def lock_members(self, org_id: str) -> list[UserRow]:
        rows = self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE org_id = ? AND removed_at IS NULL "
            "ORDER BY created_at, id", (org_id,),
        )
        return [UserRow(*r) for r in rows]

    def get_user(self, user_id: str) -> UserRow | None:
        r = self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        return UserRow(*r) if r else None

    def insert_user(self, row: UserRow) -> None:
        with _taken(f"a user with email {row.email!r} already exists in this org"):
            self.conn.execute(
                f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.org_id, row.email, row.name, row.role, row.password_hash,
                 row.created_at, row.removed_at),
            )

    def _live_user(self, org_id: str, user_id: str) -> UserRow:
        r = self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users "
            "WHERE id = ? AND org_id = ? AND removed_at IS NULL", (user_id, org_id),
        ).fetchone()
        if r is None:
            raise NotFound(f"user {user_id!r} does not exist in org {org_id!r}")
        return UserRow(*r)

    def set_user_role(self, *, org_id: str, user_id: str, role: str) -> UserRow:
        self._live_user(org_id, user_id)
        self.conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))
        return self._live_user(org_id, user_id)

    def remove_user(self, *, org_id: str, user_id: str, at: int) -> UserRow:
        user = self._live_user(org_id, user_id)
        self.conn.execute("UPDATE users SET removed_at = ? WHERE id = ?", (at, user_id))
        self.conn.execute(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (at, user_id),
        )
        return user

    def insert_api_key(self, row: ApiKeyRow) -> None:
        with _taken(f"an API key with id {row.id!r} already exists"):
            self.conn.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.org_id, row.name, row.secret_hash, " ".join(row.scopes),
                 row.created_at, row.revoked_at, row.last_used_at, row.created_by),
            )

    def revoke_api_key(self, *, org_id: str, key_id: str, at: int) -> ApiKeyRow:
        self.conn.execute(
            "UPDATE api_keys SET revoked_at = ? "
            "WHERE id = ? AND org_id = ? AND revoked_at IS NULL",
            (at, key_id, org_id),
        )
        r = self.conn.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ? AND org_id = ?",
            (key_id, org_id),
        ).fetchone()
        if r is None:
            raise NotFound(f"API key {key_id!r} does not exist in org {org_id!r}")
        return _key_row(r)

    def revoke_api_keys_created_by(self, *, org_id: str, user_id: str,
                                   at: int) -> list[ApiKeyRow]:
        rows = self.conn.execute(
            "UPDATE api_keys SET revoked_at = ? "
            "WHERE created_by = ? AND org_id = ? AND revoked_at IS NULL "
            f"RETURNING {_KEY_COLUMNS}", (at, user_id, org_id),
        ).fetchall()
        return sorted((_key_row(r) for r in rows), key=lambda k: (k.created_at, k.id))

    def insert_session(self, token_hash: bytes, row: SessionRow) -> None:
        with _taken(f"a session with this token or id ({row.id!r}) already exists"):
            self.conn.execute(
                "INSERT INTO sessions (token_hash, id, user_id, csrf_token, created_at, "
                "expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash, row.id, row.user_id, row.csrf_token, row.created_at,
                 row.expires_at, row.revoked_at),
            )

    def revoke_session(self, token_hash: bytes, at: int) -> None:
        self.conn.execute(
            "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
            (at, token_hash),
        )

    def record_login_attempt(self, org_id: str, email: str, at: int, *, since: int) -> int:
        self.conn.execute("DELETE FROM login_failures WHERE at < ?", (since,))
        (before,) = self.conn.execute(
            "SELECT count(*) FROM login_failures WHERE org_id = ? AND email = ?",
            (org_id, email),
        ).fetchone()
        self.conn.execute("INSERT INTO login_failures (org_id, email, at) VALUES (?, ?, ?)",
                          (org_id, email, at))
        return before

    def clear_login_failures(self, org_id: str, email: str) -> None:
        self.conn.execute("DELETE FROM login_failures WHERE org_id = ? AND email = ?",
                          (org_id, email))

    def insert_export(self, row: ExportRow) -> None:
        with _taken(f"an export with id {row.id!r} already exists"):
            self.conn.execute(
                f"INSERT INTO exports ({_EXPORT_COLUMNS}) VALUES ({', '.join('?' * 21)})",
                tuple(row.__dict__.values()),
            )

    def lock_export(self, org_id: str, export_id: str) -> ExportRow | None:
        r = self.conn.execute(
            f"SELECT {_EXPORT_COLUMNS} FROM exports WHERE org_id = ? AND id = ?",
            (org_id, export_id),
        ).fetchone()
        return ExportRow(*r) if r else None

    def insert_stream(self, row: StreamRow) -> None:
        with _taken(f"a stream with id {row.id!r} already exists"):
            self.conn.execute(
                f"INSERT INTO streams ({_STREAM_COLUMNS}) VALUES ({', '.join('?' * 21)})",
                tuple(row.__dict__.values()))

    def lock_stream(self, org_id: str, stream_id: str) -> StreamRow | None:
        r = self.conn.execute(
            f"SELECT {_STREAM_COLUMNS} FROM streams WHERE org_id = ? AND id = ?",
            (org_id, stream_id)).fetchone()
        return StreamRow(*r) if r else None

    def update_stream(self, row: StreamRow) -> None:
        values = row.__dict__
        assignments = ", ".join(f"{c} = ?" for c in values if c not in ("id", "org_id"))
        self.conn.execute(
            f"UPDATE streams SET {assignments} WHERE org_id = ? AND id = ?",
            (*(v for c, v in values.items() if c not in ("id", "org_id")), row.org_id,
             row.id))

    def lock_retention(self, org_id: str) -> RetentionRow:
        self.conn.execute("INSERT OR IGNORE INTO retention (org_id, updated_at) VALUES (?, 0)",
                          (org_id,))
        r = self.conn.execute(f"SELECT {_RETENTION_COLUMNS} FROM retention WHERE org_id = ?",
                              (org_id,)).fetchone()
        return RetentionRow(*r)

    def put_retention(self, row: RetentionRow) -> None:
        values = {c: v for c, v in row.__dict__.items() if c != "org_id"}
        assignments = ", ".join(f"{c} = ?" for c in values)
        self.conn.execute(f"UPDATE retention SET {assignments} WHERE org_id = ?",
                          (*values.values(), row.org_id))

    def insert_hold(self, row: HoldRow) -> None:
        with _taken(f"a legal hold with id {row.id!r} already exists"):
            self.conn.execute(
                f"INSERT INTO legal_holds ({_HOLD_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                tuple(row.__dict__.values()))

    def lock_hold(self, org_id: str, hold_id: str) -> HoldRow | None:
        r = self.conn.execute(f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE org_id = ? "
                              "AND id = ?", (org_id, hold_id)).fetchone()
        return HoldRow(*r) if r else None

    def update_hold(self, row: HoldRow) -> None:
        values = {c: v for c, v in row.__dict__.items() if c not in ("id", "org_id")}
        assignments = ", ".join(f"{c} = ?" for c in values)
        self.conn.execute(f"UPDATE legal_holds SET {assignments} WHERE org_id = ? AND id = ?",
                          (*values.values(), row.org_id, row.id))

    def list_holds(self, org_id: str) -> list[HoldRow]:
        rows = self.conn.execute(f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE org_id = ? "
                                 "ORDER BY created_at, id", (org_id,))
        return [HoldRow(*r) for r in rows]

    def received_at(self, org_id: str, index: int) -> int | None:
        return _received_at(self.conn, org_id, index)

    def first_index_occurred_in(self, org_id: str, start: int, stop: int,
                                ranges: list[tuple[int | None, int | None]]) -> int | None:
        if not ranges:
            return None
        conditions, params = occurred_in(ranges, DIALECT)
        return self.conn.execute(
            f"SELECT min(idx) FROM events WHERE org_id = ? AND idx >= ? AND idx < ? "
            f"AND ({conditions})", (org_id, start, stop, *params)).fetchone()[0]

    def docs_at(self, org_id: str, indexes: list[int]) -> dict[int, StoredDoc]:
        found: dict[int, StoredDoc] = {}
        for chunk in _chunks(indexes, 500):
            marks = ", ".join("?" * len(chunk))
            for r in self.conn.execute(
                    f"SELECT {_DOC_COLUMNS} FROM events e JOIN event_docs d ON d.seq = e.seq "
                    f"WHERE e.org_id = ? AND e.idx IN ({marks})", (org_id, *chunk)):
                found[r[4]] = StoredDoc(*r)
        return found

    def erase_events(self, org_id: str, tombstones: list[tuple[int, bytes]]) -> None:
        table = _org_fts_table(self.conn, org_id)
        if table is None:
            raise NotFound(f"org {org_id!r} does not exist")
        for chunk in _chunks(tombstones, 500):
            marks = ", ".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT e.seq, {_ROW_COLUMNS} FROM events e JOIN event_docs d "
                f"ON d.seq = e.seq WHERE e.org_id = ? AND e.idx IN ({marks})",
                (org_id, *(index for index, _ in chunk))).fetchall()
            _insert_rows(self.conn, f"{table} ({table}, rowid, search_text, word_pairs, "
                         "field_tokens)", [
                             ("delete", r[0], e.search_text, e.word_pairs, e.field_tokens)
                             for r, e in ((r, stored_event_row(r[1:])) for r in rows)])
            # What stays findable of an erased event: action:erased, its category, result.
            _insert_rows(self.conn, f"{table} (rowid, search_text, word_pairs, field_tokens)",
                         [(r[0], "", "", erased_tokens(r[5], r[6])) for r in rows])
            seqs = {r[2]: r[0] for r in rows}
            self.conn.executemany("UPDATE event_docs SET doc = ? WHERE seq = ?",
                                  [(doc, seqs[index]) for index, doc in chunk
                                   if index in seqs])
            self.conn.executemany(
                "UPDATE events SET action = 'erased', actor_id = NULL, actor_email = NULL, "
                "actor_name = NULL, resource_type = NULL, resource_id = NULL, method = NULL, "
                "path = NULL, ip = NULL, search_text = '' WHERE seq = ?",
                [(seq,) for seq in seqs.values()])

    def delete_events(self, org_id: str, start: int, stop: int) -> int:
        table = _org_fts_table(self.conn, org_id)
        if table is None:
            raise NotFound(f"org {org_id!r} does not exist")
        rows = self.conn.execute(
            f"SELECT e.seq, {_ROW_COLUMNS} FROM events e JOIN event_docs d ON d.seq = e.seq "
            "WHERE e.org_id = ? AND e.idx >= ? AND e.idx < ?", (org_id, start, stop)).fetchall()
        # The full-text index keeps no copy of what it indexed: an entry is deleted by
        # giving it the values it was made of, which the row makes again as ingest did.
        _insert_rows(self.conn, f"{table} ({table}, rowid, search_text, word_pairs, "
                     "field_tokens)", [
                         ("delete", r[0], e.search_text, e.word_pairs, e.field_tokens)
                         for r, e in ((r, stored_event_row(r[1:])) for r in rows)])
        seqs = [(r[0],) for r in rows]
        self.conn.executemany("DELETE FROM event_docs WHERE seq = ?", seqs)
        self.conn.executemany("DELETE FROM events WHERE seq = ?", seqs)
        self.conn.execute("INSERT INTO fts_deleted (org_id, deleted) VALUES (?, ?) ON CONFLICT "
                          "(org_id) DO UPDATE SET deleted = deleted + excluded.deleted",
                          (org_id, len(rows)))
        return len(rows)

    def checkpoint_sizes(self, org_id: str, start: int, stop: int,
                         limit: int | None = None) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT size FROM checkpoints WHERE org_id = ? AND size >= ? AND size < ? "
            "ORDER BY size LIMIT ?", (org_id, start, stop, -1 if limit is None else limit))]

    def delete_tree_nodes(self, org_id: str, ranges: list[tuple[int, int, int]]) -> int:
        deleted = 0
        for level, start, stop in ranges:
            deleted += self.conn.execute(
                "DELETE FROM tree_nodes WHERE org_id = ? AND level = ? AND idx >= ? "
                "AND idx < ?", (org_id, level, start, stop)).rowcount
        return deleted

    def delete_stream(self, org_id: str, stream_id: str) -> None:
        self.conn.execute("DELETE FROM streams WHERE org_id = ? AND id = ?",
                          (org_id, stream_id))

    def withdraw_export(self, org_id: str, export_id: str, now: int) -> ExportRow | None:
        r = self.conn.execute(
            "UPDATE exports SET status = CASE status WHEN 'completed' THEN 'expired' "
            "ELSE 'cancelled' END, finished_at = coalesce(finished_at, ?), "
            "lease_owner = NULL, lease_expires_at = NULL WHERE org_id = ? AND id = ? "
            "AND status IN ('completed', 'queued', 'running') "
            f"RETURNING {_EXPORT_COLUMNS}", (now, org_id, export_id)).fetchone()
        return ExportRow(*r) if r else None

    def cancel_export(self, *, org_id: str, export_id: str, now: int) -> ExportRow:
        row = self.lock_export(org_id, export_id)
        if row is None:
            raise NotFound(f"export {export_id!r} does not exist")
        if row.status not in ("queued", "running"):
            raise Conflict(f"export {export_id} is {row.status}; only a queued or running "
                           "export can be cancelled")
        r = self.conn.execute(
            "UPDATE exports SET status = 'cancelled', finished_at = ?, lease_owner = NULL, "
            f"lease_expires_at = NULL WHERE id = ? RETURNING {_EXPORT_COLUMNS}",
            (now, export_id),
        ).fetchone()
        return ExportRow(*r)


def _head(size: int, packed: bytes, last_received_us: int) -> LogHead:
    return LogHead(size, tuple(packed[i : i + 32] for i in range(0, len(packed), 32)),
                   last_received_us)


class SQLiteStore(OneCallWrites):
    """A Sealog database in one SQLite file (sqlite:///path[?options], SQLiteOptions); safe
    to share between threads."""

    # Ingest waits for the one writer behind a purge transaction: over 1,000,000 events
    # one of 1,000 took 110 ms, and ingest's p99 beside purges 280 ms; of 250, 204 ms.
    purge_batch = 250

    def __init__(self, url: str):
        self.url = url
        self.path, options = split_url(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = options.synchronous
        self._reader_mmap_mb = options.mmap_mb
        self._writer = _connect(self.path, self._synchronous, cache_mb=32, mmap_mb=0)
        self._writer.execute("PRAGMA journal_mode = WAL")
        self._writer.execute(f"PRAGMA wal_autocheckpoint = {WAL_WRITER_CHECKPOINT_PAGES}")
        self._writer.execute(f"PRAGMA journal_size_limit = {WAL_REST_BYTES}")
        self._write_lock = threading.Lock()
        self._writing_thread: int | None = None  # the thread whose transaction is open
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.applied_migrations: list[str] = []  # by this opening, in order
        self._migrate()
        self._wal_checkpointer = _WalCheckpointer(self.path, self._synchronous)

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
        self._wal_checkpointer.stop()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    @contextmanager
    def writing(self, *, durable: bool = True, scrub: bool = False) -> Iterator[_Tx]:
        if self._closed:
            raise RuntimeError("the store is closed")
        thread = threading.get_ident()
        if self._writing_thread == thread:  # else this thread would wait on itself
            raise RuntimeError("this thread already has a write transaction open; pass that "
                               "transaction to what must be stored in it")
        with self._write_lock:
            # In WAL mode, NORMAL commits without syncing the log; the next sync (a durable
            # commit's, or a checkpoint's) takes this commit to disk with it.
            lighter = not durable and self._synchronous in ("FULL", "EXTRA")
            if lighter:
                self._writer.execute("PRAGMA synchronous = NORMAL")
            if scrub:
                self._writer.execute("PRAGMA secure_delete = ON")
            try:
                yield from self._transaction(thread)
            finally:
                if lighter:
                    self._writer.execute(f"PRAGMA synchronous = {self._synchronous}")
                if scrub:
                    self._writer.execute("PRAGMA secure_delete = OFF")

    def _transaction(self, thread: int) -> Iterator[_Tx]:
        """The writer's transaction, for this thread; under the write lock."""
        self._writer.execute("BEGIN IMMEDIATE")
        self._writing_thread = thread
        try:
            yield _Tx(self._writer)
            self._writer.execute("COMMIT")
            self._wal_checkpointer.poke()
        except BaseException as exc:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            if _is_disk_full(exc):
                raise StorageFull(f"no room to write {self.path}: {exc}") from exc
            if isinstance(exc, sqlite3.IntegrityError):
                raise Conflict(f"the database refused the write: {exc}") from exc
            raise
        finally:
            self._writing_thread = None

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
                # Another process opening the file at the same time may have applied it
                # while this one waited for the lock: read again under it.
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                                (name,)).fetchone():
                    conn.execute("COMMIT")
                    continue
                try:
                    for statement in _statements(sql):
                        conn.execute(statement)
                    if name in _AFTER_MIGRATION:
                        _AFTER_MIGRATION[name](conn)
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, datetime('now'))", (name,)
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                self.applied_migrations.append(name)

    # -- orgs and keys ---------------------------------------------------------------

    def get_org(self, org_id: str) -> Org:
        row = self._reader().execute(
            "SELECT id, name, created_at, log_size, closed_at FROM orgs WHERE id = ?", (org_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        return Org(*row)

    def list_orgs(self) -> list[Org]:
        rows = self._reader().execute(
            "SELECT id, name, created_at, log_size, closed_at FROM orgs ORDER BY created_at, id"
        )
        return [Org(*r) for r in rows]

    def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        r = self._reader().execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
        ).fetchone()
        return _key_row(r) if r else None

    def list_api_keys(self, org_id: str) -> list[ApiKeyRow]:
        rows = self._reader().execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE org_id = ? ORDER BY created_at, id",
            (org_id,),
        )
        return [_key_row(r) for r in rows]

    def touch_api_key(self, key_id: str, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    # -- users and sessions ----------------------------------------------------------

    def get_user(self, user_id: str) -> UserRow | None:
        r = self._reader().execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        return UserRow(*r) if r else None

    def user_with_email(self, org_id: str, email: str) -> UserRow | None:
        r = self._reader().execute(
            f"SELECT {_USER_COLUMNS} FROM users "
            "WHERE org_id = ? AND email = ? AND removed_at IS NULL", (org_id, email),
        ).fetchone()
        return UserRow(*r) if r else None

    def list_users(self, org_id: str) -> list[UserRow]:
        rows = self._reader().execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE org_id = ? AND removed_at IS NULL "
            "ORDER BY created_at, id", (org_id,),
        )
        return [UserRow(*r) for r in rows]

    def list_all_users(self, org_id: str) -> list[UserRow]:
        rows = self._reader().execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE org_id = ? ORDER BY created_at, id",
            (org_id,),
        )
        return [UserRow(*r) for r in rows]

    def get_session(self, token_hash: bytes) -> SessionRow | None:
        r = self._reader().execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE token_hash = ?", (token_hash,),
        ).fetchone()
        return SessionRow(*r) if r else None

    def list_sessions(self, org_id: str) -> list[tuple[bytes, SessionRow]]:
        rows = self._reader().execute(
            f"SELECT s.token_hash, {_columns(_SESSION_COLUMNS, 's')} FROM sessions s "
            "JOIN users u ON u.id = s.user_id WHERE u.org_id = ? ORDER BY s.created_at, s.id",
            (org_id,),
        )
        return [(r[0], SessionRow(*r[1:])) for r in rows]

    def login_failures(self) -> list[tuple[str, str, int]]:
        return list(self._reader().execute(
            "SELECT org_id, email, at FROM login_failures ORDER BY at, org_id, email"
        ))

    # -- events ----------------------------------------------------------------------

    def get_event(self, org_id: str, event_id: str) -> StoredDoc | None:
        row = self._reader().execute(
            f"SELECT {_DOC_COLUMNS} FROM events e JOIN event_docs d ON d.seq = e.seq "
            "WHERE e.org_id = ? AND e.id = ?",
            (org_id, event_id),
        ).fetchone()
        return StoredDoc(*row) if row else None

    def list_events(
        self, flt: EventFilter, *, cursor: Cursor | None, limit: int,
        budget: float | None = None,
    ) -> list[StoredDoc]:
        conn = self._reader()
        with _snapshot(conn), _budgeted(conn, budget):
            return self._list_events(conn, flt, cursor, limit)

    def _list_events(self, conn: sqlite3.Connection, flt: EventFilter, cursor: Cursor | None,
                     limit: int) -> list[StoredDoc]:
        base = base_where(flt, cursor, DIALECT)
        match = match_where(flt, DIALECT)
        fts = fts5_query(flt)
        table = None if fts is None or fts.narrow is None else _org_fts_table(conn, flt.org_id)
        if fts is None or fts.narrow is None or table is None:
            # No positive term (or no such org): the rows' index alone.
            seqs = conn.execute(
                f"SELECT seq FROM events WHERE {base.sql()} AND {match.sql()} {_ORDER} LIMIT ?",
                (*base.params, *match.params, limit),
            ).fetchall()
            return self._docs(conn, seqs)
        # A common term fills the page from the newest rows of the window; a rarer one is
        # found through the org's full-text index, newest first.
        seqs = self._probe(conn, base, match, PROBE_ROWS, limit)
        if len(seqs) < limit:
            keys = window_keys(flt, cursor)
            seqs = self._index_led(conn, table, fts.narrow, keys, base, match, limit)
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
    def _index_led(conn: sqlite3.Connection, table: str, expression: str,
                   keys: tuple[int, int | None], base, match, limit: int) -> list:
        """The page's rows from the full-text index's hits, read newest key first and
        checked on their rows, until no later hit can belong to the page."""
        sql, params = _fts_hits(table, expression, keys)
        hits = conn.execute(f"{sql} ORDER BY rowid DESC", params)
        found: list[tuple[int, str, int]] = []
        chunk = FIRST_HITS
        try:
            while True:
                seqs = [seq for (seq,) in hits.fetchmany(chunk)]
                if not seqs:
                    break
                # Each hit looked up by key (a plain IN lets the planner scan the window
                # instead).
                found += conn.execute(
                    f"WITH hits(hit) AS (VALUES {', '.join(['(?)'] * len(seqs))}) "
                    "SELECT occurred_at, id, seq FROM hits CROSS JOIN events ON seq = hit "
                    f"WHERE {base.sql()} AND {match.sql()}",
                    (*seqs, *base.params, *match.params),
                ).fetchall()
                # Hits come in key order, which is millisecond order: every hit still
                # unread occurred at or before the last one read, so later than its
                # millisecond is final.
                edge_ms = seqs[-1] >> TIME_KEY_BITS
                if len(seqs) < chunk or sum(f[0] // 1000 > edge_ms for f in found) >= limit:
                    break
                chunk = min(chunk * 4, 16384)
        finally:
            hits.close()
        found.sort(reverse=True)
        return [(seq,) for _, _, seq in found[:limit]]

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

    def count_events(self, flt: EventFilter, *, budget: float | None = None) -> int:
        conn = self._reader()
        with _snapshot(conn), _budgeted(conn, budget):
            return self._count_events(conn, flt)

    @staticmethod
    def _count_events(conn: sqlite3.Connection, flt: EventFilter) -> int:
        fts = fts5_query(flt)
        table = None if fts is None else _org_fts_table(conn, flt.org_id)
        if fts is None or table is None:
            return _count_rows(conn, flt)
        if not fts.exact:
            if fts.narrow is None:
                return _count_rows(conn, flt)
            base = base_where(flt, None, DIALECT)
            match = match_where(flt, DIALECT)
            sql, params = _fts_hits(table, fts.narrow, window_keys(flt))
            return conn.execute(
                f"SELECT count(*) FROM ({sql}) AS m CROSS JOIN events e ON e.seq = m.seq "
                f"WHERE {base.sql()} AND {match.sql()}",
                (*params, *base.params, *match.params),
            ).fetchone()[0]
        return _count_by_index(conn, table, flt, fts)

    def iter_events_by_index(self, org_id: str, start: int, stop: int) -> Iterator[StoredDoc]:
        for rows in self._pages_by_index(_DOC_COLUMNS, org_id, start, stop):
            yield from map(StoredDoc._make, rows)

    def iter_event_rows(self, org_id: str, start: int, stop: int) -> Iterator[EventRow]:
        for rows in self._pages_by_index(_ROW_COLUMNS, org_id, start, stop):
            yield from map(stored_event_row, rows)

    def _pages_by_index(self, columns: str, org_id: str, start: int, stop: int
                        ) -> Iterator[list[tuple]]:
        """columns (e.idx among them) of the org's events with start <= index < stop, in
        index order, a page of 1,000 a statement."""
        conn = self._reader()
        position = start
        while position < stop:
            rows = conn.execute(
                f"SELECT e.idx, {columns} FROM events e JOIN event_docs d ON d.seq = e.seq "
                "WHERE e.org_id = ? AND e.idx >= ? AND e.idx < ? ORDER BY e.idx LIMIT 1000",
                (org_id, position, stop),
            ).fetchall()
            if not rows:
                return
            yield [r[1:] for r in rows]
            position = rows[-1][0] + 1

    def release_emptied_storage(self, *, pause: float = 0,
                                stop: threading.Event | None = None,
                                scrub: bool = False) -> list[str]:
        # Freed pages of the rows hold the next events as they are; the full-text index
        # frees the pages of what purges deleted once its segments merge. Done once the
        # deleted entries are a quarter of those kept, that costs about a rewrite of the
        # index every quarter of a retention period.
        stop = stop or threading.Event()
        # A closed log keeps its closing record alone.
        kept = ("CASE WHEN o.closed_at IS NULL THEN o.log_size - coalesce(r.pruned_before, 0) "
                "ELSE 1 END")
        due = self._reader().execute(
            f"SELECT f.org_id, o.num, f.deleted, {kept} FROM fts_deleted f "
            "JOIN orgs o ON o.id = f.org_id LEFT JOIN retention r ON r.org_id = f.org_id "
            f"WHERE f.deleted > 0 AND 4 * f.deleted >= {kept} ORDER BY o.num").fetchall()
        released = []
        for org_id, num, deleted, kept in due:
            if kept <= FTS_REINDEX_MAX and 50 * kept < deleted:
                self._reindex_fts(org_id, num)
            elif not self._merge_fts(org_id, fts_table(num), kept, deleted, pause, stop):
                continue
            released.append(f"the full-text index of org {org_id}")
        for (name,) in self._reader().execute("SELECT name FROM fts_retired").fetchall():
            if self._drop_fts(name, pause, stop, scrub):
                released.append(f"the retired full-text index {name}")
        return released

    def _reindex_fts(self, org_id: str, num: int) -> None:
        """Gives the org a new full-text index of its few kept events and retires the old
        one: a merge would read all that was deleted in one step, writing nothing."""
        with self.writing() as tx:
            (new,) = tx.conn.execute("SELECT max(num) + 1 FROM orgs").fetchone()
            table = fts_table(new)
            _create_fts_index(tx.conn, table)
            rows = tx.conn.execute(
                f"SELECT e.seq, {_ROW_COLUMNS} FROM events e JOIN event_docs d "
                "ON d.seq = e.seq WHERE e.org_id = ?", (org_id,)).fetchall()
            _insert_rows(tx.conn, f"{table} (rowid, search_text, word_pairs, field_tokens)", [
                (r[0], e.search_text, e.word_pairs, e.field_tokens)
                for r, e in ((r, stored_event_row(r[1:])) for r in rows)])
            tx.conn.execute("UPDATE orgs SET num = ? WHERE id = ?", (new, org_id))
            tx.conn.execute("INSERT INTO fts_retired (name) VALUES (?)", (fts_table(num),))
            tx.conn.execute("DELETE FROM fts_deleted WHERE org_id = ?", (org_id,))

    def _drop_fts(self, name: str, pause: float, stop: threading.Event, scrub: bool) -> bool:
        """Empties a retired full-text index, FTS_MERGE_PAGES of its blocks a transaction,
        then drops it; False when stopped first."""
        while not stop.is_set():
            started = time.monotonic()
            with self.writing(scrub=scrub) as tx:
                # Nothing reads a retired index: its blocks go without FTS5's bookkeeping.
                emptied = tx.conn.execute(
                    f"DELETE FROM {name}_data WHERE rowid IN (SELECT rowid FROM {name}_data "
                    "LIMIT ?)", (FTS_MERGE_PAGES,)).rowcount < FTS_MERGE_PAGES
                if emptied:
                    tx.conn.execute(f"DROP TABLE {name}")
                    tx.conn.execute("DELETE FROM fts_retired WHERE name = ?", (name,))
                    return True
            wait_after(started, pause, stop)
        return False

    def _merge_fts(self, org_id: str, table: str, kept: int, deleted: int, pause: float,
                   stop: threading.Event) -> bool:
        """Merges the org's full-text index into one segment (FTS5's 'merge' with a negative
        page count), a step a transaction, pause seconds apart; False when stopped first."""
        # A step writes about `pages` pages of what is kept, reading the deleted entries
        # among them too: fewer pages where more was deleted, for steps of a like length.
        pages = max(16, FTS_MERGE_PAGES * kept // (kept + deleted))
        # Ingest adds segments meanwhile, which a merge takes in too: bounded by the index's
        # size, the merge ends whatever arrives.
        (size,) = self._reader().execute(f"SELECT count(*) FROM {table}_data").fetchone()
        for _ in range(2 * size // FTS_MERGE_PAGES + 10):
            if stop.is_set():
                return False
            started = time.monotonic()
            with self.writing() as tx:
                before = tx.conn.total_changes
                tx.conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('merge', ?)",
                                (-pages,))
                done = tx.conn.total_changes - before < 2  # FTS5: no work left
                if done:
                    tx.conn.execute("DELETE FROM fts_deleted WHERE org_id = ?", (org_id,))
            if done:
                return True
            wait_after(started, pause, stop)
        return False

    def scrub_erased(self, org_id: str, received_us: list[int]) -> None:
        # The full-text index keeps what it indexed in segments that a delete only marks:
        # merged into one, the old segments' pages are freed, and overwritten (secure_delete).
        with self.writing(scrub=True) as tx:
            table = _org_fts_table(tx.conn, org_id)
            if table is not None:
                tx.conn.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
                tx.conn.execute("DELETE FROM fts_deleted WHERE org_id = ?", (org_id,))
        # Frames of the write-ahead log written before the erasure may still hold the old
        # pages: copied back and truncated, the file holds none.
        for _ in range(50):
            busy, _, _ = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)
        log.warning("the write-ahead log could not be truncated after an erasure: readers "
                    "held it; the next checkpoint of the log will")

    def prepare_for_events(self, *, received_from: int, received_until: int) -> None:
        return None  # one table holds every event


    # -- the Merkle tree and its checkpoints -------------------------------------------

    def log_head(self, org_id: str) -> LogHead:
        row = self._reader().execute(
            f"SELECT {_HEAD_COLUMNS} FROM orgs WHERE id = ?", (org_id,)
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

    def latest_checkpoint(self, org_id: str) -> CheckpointRow | None:
        row = self._reader().execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE org_id = ? "
            "ORDER BY size DESC LIMIT 1", (org_id,),
        ).fetchone()
        return CheckpointRow(*row) if row else None

    def iter_checkpoints(self, org_id: str) -> Iterator[CheckpointRow]:
        conn = self._reader()
        after = -1
        while True:
            rows = conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE org_id = ? AND size > ? "
                "ORDER BY size LIMIT 1000", (org_id, after),
            ).fetchall()
            yield from (CheckpointRow(*r) for r in rows)
            if len(rows) < 1000:
                return
            after = rows[-1][1]

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

    def row_counts(self) -> dict[str, int]:
        conn = self._reader()
        return {kind: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for kind, table in _COUNTED.items()}


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

    def iter_events_in_index_order(self, flt: EventFilter, *, batch: int = 1000
                                   ) -> Iterator[StoredDoc]:
        conn = self._reader()
        base = base_where(flt, None, DIALECT)
        match = match_where(flt, DIALECT)
        where = f"{base.sql()} AND {match.sql()}"
        params = (*base.params, *match.params)
        # The time index finds the first and last index selected; the walk between them
        # then goes along the index of positions, so nothing is sorted and each batch
        # starts where the last ended. Events whose times are out of order in that span
        # are read and passed over.
        low, high = conn.execute(
            f"SELECT min(idx), max(idx) FROM events e WHERE {where}", params).fetchone()
        if low is None:
            return
        make = StoredDoc._make
        while True:
            rows = conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM events e INDEXED BY events_org_index "
                f"JOIN event_docs d ON d.seq = e.seq WHERE {where} AND e.idx >= ? "
                "AND e.idx <= ? ORDER BY e.idx LIMIT ?", (*params, low, high, batch),
            ).fetchall()
            yield from map(make, rows)
            if len(rows) < batch:
                return
            low = rows[-1][4] + 1

    def get_export(self, org_id: str, export_id: str) -> ExportRow | None:
        r = self._reader().execute(
            f"SELECT {_EXPORT_COLUMNS} FROM exports WHERE org_id = ? AND id = ?",
            (org_id, export_id),
        ).fetchone()
        return ExportRow(*r) if r else None

    def list_exports(self, org_id: str) -> list[ExportRow]:
        rows = self._reader().execute(
            f"SELECT {_EXPORT_COLUMNS} FROM exports WHERE org_id = ? "
            "ORDER BY created_at DESC, id DESC", (org_id,),
        )
        return [ExportRow(*r) for r in rows]

    def get_stream(self, org_id: str, stream_id: str) -> StreamRow | None:
        r = self._reader().execute(
            f"SELECT {_STREAM_COLUMNS} FROM streams WHERE org_id = ? AND id = ?",
            (org_id, stream_id)).fetchone()
        return StreamRow(*r) if r else None

    def list_streams(self, org_id: str) -> list[StreamRow]:
        rows = self._reader().execute(
            f"SELECT {_STREAM_COLUMNS} FROM streams WHERE org_id = ? "
            "ORDER BY created_at, id", (org_id,))
        return [StreamRow(*r) for r in rows]

    def get_retention(self, org_id: str) -> RetentionRow | None:
        r = self._reader().execute(
            f"SELECT {_RETENTION_COLUMNS} FROM retention WHERE org_id = ?", (org_id,)
        ).fetchone()
        return RetentionRow(*r) if r else None

    def retention_work(self) -> list[str]:
        return [r[0] for r in self._reader().execute(
            "SELECT r.org_id FROM retention r JOIN orgs o ON o.id = r.org_id "
            "WHERE (r.days IS NOT NULL OR r.purge_to > r.pruned_before) "
            "AND o.closed_at IS NULL ORDER BY r.org_id")]

    def list_holds(self, org_id: str) -> list[HoldRow]:
        rows = self._reader().execute(
            f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE org_id = ? "
            "ORDER BY created_at, id", (org_id,))
        return [HoldRow(*r) for r in rows]

    def claim_streams(self, *, owner: str, now: int, lease_us: int, limit: int
                      ) -> list[StreamRow]:
        # Asked first of a reader: workers poll often, and most polls find nothing due,
        # which then takes no writer lock from ingest.
        if self._reader().execute(f"SELECT 1 FROM {_DUE_STREAMS} LIMIT 1", (now, now)
                                  ).fetchone() is None:
            return []
        with self.writing(durable=False) as tx:  # a lease lost in a crash is free anyway
            first = tx.conn.execute(
                f"SELECT s.org_id, s.rowid, s.next_index FROM {_DUE_STREAMS} "
                "ORDER BY coalesce(s.retry_at, 0), s.updated_at LIMIT 1", (now, now)).fetchone()
            if first is None:
                return []
            org_id, first_rowid, cursor = first
            rows = tx.conn.execute(
                "UPDATE streams SET lease_owner = ?, lease_expires_at = ? WHERE rowid IN ("
                f"SELECT s.rowid FROM {_DUE_STREAMS} AND s.org_id = ? AND s.next_index = ? "
                "ORDER BY s.rowid = ? DESC, coalesce(s.retry_at, 0), s.updated_at LIMIT ?) "
                f"RETURNING rowid, {_STREAM_COLUMNS}",
                (owner, now + lease_us, now, now, org_id, cursor, first_rowid, limit)
            ).fetchall()
        return [StreamRow(*r[1:]) for r in sorted(rows, key=lambda r: r[0] != first_rowid)]

    def claim_export(self, *, owner: str, now: int, lease_us: int) -> ExportRow | None:
        with self.writing() as tx:
            r = tx.conn.execute(
                "UPDATE exports SET status = 'running', lease_owner = ?, "
                "lease_expires_at = ?, attempts = attempts + 1, progress = 0, "
                "started_at = coalesce(started_at, ?) WHERE id = ("
                "SELECT id FROM exports WHERE status = 'queued' OR (status = 'running' "
                "AND lease_expires_at < ?) ORDER BY created_at LIMIT 1) "
                f"RETURNING {_EXPORT_COLUMNS}",
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

    def finish_export(self, *, export_id: str, owner: str, status: str, finished_at: int,
                      progress: float | None = None, row_count: int | None = None,
                      size_bytes: int | None = None, sha256: str | None = None,
                      error: str | None = None, expires_at: int | None = None,
                      file_path: str | None = None) -> bool:
        with self.writing() as tx:
            cursor = tx.conn.execute(
                "UPDATE exports SET status = ?, finished_at = ?, progress = coalesce(?, "
                "progress), row_count = ?, size_bytes = ?, sha256 = ?, error = ?, "
                "expires_at = ?, file_path = ?, lease_owner = NULL, lease_expires_at = NULL "
                "WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (status, finished_at, progress, row_count, size_bytes, sha256, error,
                 expires_at, file_path, export_id, owner),
            )
            return cursor.rowcount == 1

    def expire_exports(self, now: int) -> list[ExportRow]:
        with self.writing() as tx:
            rows = tx.conn.execute(
                "UPDATE exports SET status = 'expired' WHERE status = 'completed' "
                f"AND expires_at <= ? RETURNING {_EXPORT_COLUMNS}", (now,),
            ).fetchall()
        return [ExportRow(*r) for r in rows]


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: its statements see one state of the file (a search names the
    org's full-text index in one statement and reads it in the next, while a purge may
    give the org a new one and drop the old)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")  # it read only: nothing to roll back


@contextmanager
def _budgeted(conn: sqlite3.Connection, budget: float | None) -> Iterator[None]:
    """Stops what conn runs once this thread has spent budget seconds of CPU time in the
    block, raising QueryTooCostly. CPU time, not the clock: a search is refused for the work
    it does, not for the other work it waits on."""
    if budget is None:
        yield
        return
    deadline = time.thread_time() + budget
    conn.set_progress_handler(lambda: time.thread_time() > deadline, BUDGET_CHECK_STEPS)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if str(exc) != "interrupted":
            raise
        raise QueryTooCostly(budget) from None
    finally:
        conn.set_progress_handler(None, 0)


def _fts_hits(table: str, expression: str, keys: tuple[int, int | None]) -> tuple[str, list]:
    """SQL for the row ids of an org's full-text index that match expression within keys."""
    sql = f"SELECT rowid AS seq FROM {table} WHERE {table} MATCH ? AND rowid >= ?"
    params: list = [expression, keys[0]]
    if keys[1] is not None:
        sql += " AND rowid <= ?"
        params.append(keys[1])
    return sql, params


def _count_rows(conn: sqlite3.Connection, flt: EventFilter) -> int:
    """flt's count from the event rows (an index range, and each row of it when queried)."""
    base = base_where(flt, None, DIALECT)
    match = match_where(flt, DIALECT)
    sql = f"SELECT count(*) FROM events WHERE {base.sql()} AND {match.sql()}"
    return conn.execute(sql, (*base.params, *match.params)).fetchone()[0]


def _count_by_index(conn: sqlite3.Connection, table: str, flt: EventFilter,
                    fts: Fts5Query) -> int:
    """flt's count from the org's full-text index alone over the window's whole
    milliseconds, and from the rows for the partial milliseconds at its edges."""
    window = flt.time_range
    first_ms = -(-window.start_us // 1000)
    end_ms = None if window.end_us is None else window.end_us // 1000
    if end_ms is not None and first_ms >= end_ms:
        return _count_rows(conn, flt)

    def rows_within(start_us: int, end_us: int | None, **changes) -> int:
        return _count_rows(conn, dataclasses.replace(
            flt, time_range=TimeRange(start_us, end_us), **changes))

    total = rows_within(window.start_us, first_ms * 1000)
    if end_ms is not None:
        total += rows_within(end_ms * 1000, window.end_us)
    high = None if end_ms is None else min((end_ms << TIME_KEY_BITS) - 1, _MAX_KEY)
    keys = (max(first_ms << TIME_KEY_BITS, _MIN_KEY), high)

    def hits(expression: str) -> int:
        sql, params = _fts_hits(table, expression, keys)
        return conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]

    if fts.narrow is not None:
        excluded = "" if fts.excluded is None else f" NOT ({fts.excluded})"
        return total + hits(f"({fts.narrow}){excluded}")
    # Only exclusions: the window's events less those the index finds excluded.
    assert fts.excluded is not None
    inner = rows_within(first_ms * 1000, None if end_ms is None else end_ms * 1000,
                        query=Query())
    excluded = fts.excluded if fts.filters is None else f"{fts.filters} AND ({fts.excluded})"
    return total + inner - hits(excluded)


def _index_existing_events(conn: sqlite3.Connection) -> None:
    """Builds each org's full-text index from its stored events (migration 0004)."""
    for org_id, num in conn.execute("SELECT id, num FROM orgs").fetchall():
        table = fts_table(num)
        _create_fts_index(conn, table)
        rows = conn.execute(
            f"SELECT seq, search_text, {', '.join(_TOKEN_COLUMNS)} FROM events WHERE org_id = ?",
            (org_id,),
        )
        while batch := rows.fetchmany(5000):
            conn.executemany(
                f"INSERT INTO {table} (rowid, search_text, word_pairs, field_tokens) "
                "VALUES (?, ?, ?, ?)",
                [(r[0], r[1], word_pairs(r[1]),
                  field_tokens(zip(_TOKEN_COLUMNS, r[2:], strict=True))) for r in batch],
            )


def _merge_fts_less_often(conn: sqlite3.Connection) -> None:
    """Gives each org's full-text index the FTS_AUTOMERGE setting (migration 0005)."""
    for (num,) in conn.execute("SELECT num FROM orgs").fetchall():
        _set_fts_automerge(conn, fts_table(num))


def _note_last_received(conn: sqlite3.Connection) -> None:
    """Gives each org's log head the received_at of its newest event (migration 0009)."""
    for org_id, size in conn.execute("SELECT id, log_size FROM orgs WHERE log_size > 0"
                                     ).fetchall():
        (doc,) = conn.execute(
            "SELECT d.doc FROM events e JOIN event_docs d ON d.seq = e.seq "
            "WHERE e.org_id = ? AND e.idx = ?", (org_id, size - 1)).fetchone()
        conn.execute("UPDATE orgs SET last_received_at = ? WHERE id = ?",
                     (times.parse_rfc3339(orjson.loads(doc)["received_at"]), org_id))


# Steps a migration needs beyond its SQL, run in its transaction.
_AFTER_MIGRATION = {
    "0004_time_keys.sql": _index_existing_events,
    "0005_fts_automerge.sql": _merge_fts_less_often,
    "0009_last_received.sql": _note_last_received,
}


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

