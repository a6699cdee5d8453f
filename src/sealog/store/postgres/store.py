"""The PostgreSQL store: a pool of connections, many writers at once, each write transaction
READ COMMITTED with the row locks its reads name (base.WriteTx)."""

from __future__ import annotations

import logging
import math
import queue
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from sealog import times
from sealog.search import Cursor, EventFilter, QueryTooCostly
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
    Unavailable,
    UserRow,
    closed_message,
    erased_tokens,
    stored_event_row,
)
from sealog.store.postgres import partitions
from sealog.store.postgres.migrations import keep_partitions, migrate, schema_change
from sealog.store.postgres.tokens import lexemes, tsvector_binary
from sealog.store.postgres.tsquery import token_conditions
from sealog.store.sqlfilter import Dialect, Where, base_where, match_where, occurred_in

log = logging.getLogger("sealog.store")

# Connections a store keeps at most (the URL's ?pool_size= sets it): each thread that reads
# or writes holds one while it does, and waits for one when all are taken.
DEFAULT_POOL_SIZE = 8
# How often an open store makes the partitions that have come due (seconds); each is made
# partitions.MONTHS_AHEAD months ahead of need.
UPKEEP_SECONDS = 6 * 3600.0
# How long a read or a write waits for a free connection before it fails (seconds).
POOL_TIMEOUT = 30.0

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
    "AND coalesce(s.retry_at, 0) <= %s "
    "AND (s.lease_owner IS NULL OR s.lease_expires_at < %s) AND s.next_index < o.log_size")
_KEY_COLUMNS = ("id, org_id, name, secret_hash, scopes, created_at, revoked_at, "
                "last_used_at, created_by")
_USER_COLUMNS = "id, org_id, email, name, role, password_hash, created_at, removed_at"
_SESSION_COLUMNS = "id, user_id, csrf_token, created_at, expires_at, revoked_at"
_CHECKPOINT_COLUMNS = "org_id, size, root, note, key_id, created_at"
# An events row as stored_event_row takes it (EventRow's fields but the rebuilt tokens).
_ROW_COLUMNS = ("e.org_id, e.idx, e.id, e.occurred_at, e.category, e.result, e.action, "
                "e.actor_id, e.actor_email, e.actor_name, e.resource_type, e.resource_id, "
                "e.method, e.path, e.ip, e.leaf_hash, e.search_text, d.doc")
# What Store.row_counts counts, by base.ROW_KINDS' names: (table, count expression); a row
# of login_failures holds an org's email's failures.
_COUNTED = {"orgs": ("orgs", "count(*)"), "users": ("users", "count(*)"),
            "API keys": ("api_keys", "count(*)"), "sessions": ("sessions", "count(*)"),
            "failed sign-ins": ("login_failures", "coalesce(sum(cardinality(failed_at)), 0)"),
            "events": ("events", "count(*)"), "tree nodes": ("tree_nodes", "count(*)"),
            "checkpoints": ("checkpoints", "count(*)"), "log keys": ("log_keys", "count(*)"),
            "exports": ("exports", "count(*)"), "streams": ("streams", "count(*)"),
            "retention": ("retention", "count(*)"), "legal holds": ("legal_holds", "count(*)")}
_RETENTION_COLUMNS = ("org_id, days, locked_at, pruned_before, purge_to, purge_record, "
                      "updated_at")
_HOLD_COLUMNS = ("org_id, id, name, reason, occurred_from, occurred_to, created_by, "
                 "created_at, released_at, released_by")
_HEAD_COLUMNS = "log_size, compact_range, last_received_at"
# The first key of the advisory locks on signing an org's checkpoints ("ckpt" in ASCII);
# the second is a hash of the org's id. Two 32-bit keys: a key space apart from the
# schema lock's single 64-bit one.
_SIGNING_LOCK = int.from_bytes(b"ckpt", "big")
# The events columns a batch writes as they are; words, pairs and fields are made from
# token arrays by array_to_tsvector.
_EVENT_COLUMNS = ("org_id, idx, id, received_at, occurred_at, category, result, action, "
                  "actor_id, actor_email, actor_name, resource_type, resource_id, method, "
                  "path, ip, leaf_hash, search_text")
_DOC_COLUMNS = "d.doc, e.leaf_hash, e.occurred_at, e.id, e.idx"
# Events read by index a statement (_pages_by_index).
PAGE = 1000
# A document is found by (org_id, idx, received_at): received_at names its partition. The
# join of event rows (alias e) to their documents:
_PAGE_DOCS = ("JOIN event_docs d ON d.org_id = e.org_id AND d.idx = e.idx "
              "AND d.received_at = e.received_at")
_DOC_JOIN = f"events e {_PAGE_DOCS}"
DIALECT = Dialect(param="%s", contains="strpos({column}, {param}) > 0")
_ORDER = "ORDER BY occurred_at DESC, id DESC"
_ORDER_E = "ORDER BY e.occurred_at DESC, e.id DESC"
# How many of the newest rows in the window a search checks one by one before it asks the
# token index (as on SQLite).
PROBE_ROWS = 2000
# When the first probe finds some matches but too few, a second reads the rows the first's
# share of matches says would fill the page, PROBE_MARGIN times over, if that is at most
# MAX_PROBE_ROWS; a rarer match is found through the token index.
PROBE_MARGIN = 2
MAX_PROBE_ROWS = 20_000
# The event columns a page is chosen by, then joined to its documents.
_PAGE_COLUMNS = "org_id, idx, received_at, occurred_at, id, leaf_hash"
# How many batches a stream's fetching thread reads ahead of their use.
STREAM_AHEAD = 2
# The tsvectors go as the bytes of their binary form (tokens.tsvector_binary), which
# psycopg's bytea dumper passes on as they are: a binary COPY's column decides their type.
_EVENT_COPY_TYPES = ["text", "int8", "text", "int8", "int8", "text", "text", "text", "text",
                     "text", "text", "text", "text", "text", "text", "text", "bytea", "text",
                     "bytea", "bytea", "bytea"]


def _columns(columns: str, table: str) -> str:
    """columns, each prefixed with a table's alias."""
    return ", ".join(f"{table}.{c.strip()}" for c in columns.split(","))


def split_url(url: str) -> tuple[str, int]:
    """The connection string a postgresql:// URL names, without its pool_size parameter,
    and the pool size (DEFAULT_POOL_SIZE when absent); refuses other URLs."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{url!r} is not a PostgreSQL URL; write postgresql://host/dbname")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    sizes = [v for k, v in query if k == "pool_size"]
    size = DEFAULT_POOL_SIZE
    if sizes:
        if len(sizes) > 1 or not sizes[0].isdigit() or int(sizes[0]) < 1:
            raise ValueError(f"pool_size in the database URL must be one whole number of "
                             f"connections, 1 or more, not {', '.join(sizes)!r}")
        size = int(sizes[0])
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "pool_size"])
    return parts._replace(query=rest).geturl(), size


@contextmanager
def _refusals() -> Iterator[None]:
    """The store's exceptions for a write the database refused: Conflict, StorageFull when
    its disk is full, Unavailable as _unavailable says."""
    try:
        with _unavailable():
            yield
    except psycopg.errors.DiskFull as exc:
        raise StorageFull(f"no room to write the PostgreSQL database: {exc}") from exc
    except psycopg.IntegrityError as exc:
        raise Conflict(f"the database refused the write: {exc}") from exc


@contextmanager
def _unavailable() -> Iterator[None]:
    """Unavailable for a database that could not do the work now: unreachable, a connection
    lost, none free in time, or a transaction it rolled back to break a deadlock."""
    try:
        yield
    except psycopg.errors.DiskFull:
        raise
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise Unavailable(f"the PostgreSQL database could not answer: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from exc


def _selection(flt: EventFilter, cursor: Cursor | None = None,
               after: tuple[int, str] | None = None, *, tokens: bool = True) -> Where:
    """The conditions on events that select flt's events (after cursor, or after the
    oldest-first position after): sqlfilter's window conditions, the tsquery conditions
    that let the token index find the query's matches, sqlfilter's exact ones unless the
    tokens decide alone, and a received_at bound that leaves out older partitions.
    Without tokens: only the window's (the time, category, result and position ones)."""
    where = base_where(flt, cursor, DIALECT, after)
    where.add("received_at >= ?", partitions.received_lower_bound(flt.time_range.start_us))
    conditions = token_conditions(flt)
    if not tokens or conditions is None:
        return where
    for column, query in conditions.narrowing:
        where.add(f"{column} @@ ?::tsquery", query)
    if conditions.exact:
        for column, query in conditions.excluded:
            where.add(f"NOT {column} @@ ?::tsquery", query)
        return where
    matches = match_where(flt, DIALECT)
    where.clauses += matches.clauses
    where.params += matches.params
    return where


def _key_row(r: tuple) -> ApiKeyRow:
    return ApiKeyRow(r[0], r[1], r[2], r[3], tuple(r[4].split()), r[5], r[6], r[7], r[8])


def _head(size: int, packed: bytes, last_received_us: int) -> LogHead:
    return LogHead(size, tuple(packed[i : i + 32] for i in range(0, len(packed), 32)),
                   last_received_us)


def _received_at(doc: bytes) -> int:
    """The received_at of a canonical document, in microseconds (the partition key)."""
    return times.parse_rfc3339(orjson.loads(doc)["received_at"])


class _Tx:
    """A write transaction on one pooled connection (base.WriteTx)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.tree_nodes_deleted = 0

    def _one(self, sql: str, params: tuple | dict = ()) -> tuple | None:
        return self.conn.execute(sql, params).fetchone()

    # -- the log ---------------------------------------------------------------------

    def lock_log(self, org_id: str) -> LogHead:
        # NO KEY: the key share lock that a foreign key's check takes (inserting a
        # checkpoint, a user, an export of the org) neither waits for it nor holds it up.
        row = self._one(f"SELECT {_HEAD_COLUMNS}, closed_at FROM orgs WHERE id = %s "
                        "FOR NO KEY UPDATE", (org_id,))
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        if row[-1] is not None:
            raise Conflict(closed_message(org_id, row[-1]))
        return _head(*row[:-1])

    def close_org(self, org_id: str, at: int) -> None:
        self.conn.execute("UPDATE orgs SET closed_at = %s WHERE id = %s", (at, org_id))
        self.conn.execute("DELETE FROM sessions WHERE org_id = %s", (org_id,))
        self.conn.execute("DELETE FROM api_keys WHERE org_id = %s", (org_id,))

    def delete_org_rows(self, org_id: str) -> list[str]:
        files = [r[0] for r in self.conn.execute(
            "SELECT file_path FROM exports WHERE org_id = %s AND file_path IS NOT NULL",
            (org_id,))]
        self.conn.execute("DELETE FROM sessions WHERE org_id = %s", (org_id,))
        self.conn.execute("DELETE FROM api_keys WHERE org_id = %s", (org_id,))  # made since
        for table in ("exports", "streams", "retention", "legal_holds", "login_failures",
                      "users"):
            self.conn.execute(f"DELETE FROM {table} WHERE org_id = %s", (org_id,))
        return files

    def existing_events(self, org_id: str, ids: list[str]) -> dict[str, bytes]:
        if not ids:
            return {}
        rows = self.conn.execute(
            f"SELECT e.id, d.doc FROM {_DOC_JOIN} WHERE e.org_id = %s AND e.id = ANY(%s)",
            (org_id, ids))
        return {event_id: doc for event_id, doc in rows}

    def insert_events(self, rows: list[EventRow]) -> None:
        # Indexes come from the head lock_log holds on the org's row: no other key to read.
        if not rows:
            return
        org_id = rows[0].org_id
        if any(r.org_id != org_id for r in rows):
            raise ValueError("insert_events takes the rows of one org")
        received = [_received_at(r.doc) for r in rows]
        with self.conn.cursor() as cursor:
            with cursor.copy(f"COPY events ({_EVENT_COLUMNS}, words, pairs, fields) "
                             "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_EVENT_COPY_TYPES)
                for r, at in zip(rows, received, strict=True):
                    copy.write_row((
                        r.org_id, r.index, r.id, at, r.occurred_us, r.category, r.result,
                        r.action, r.actor_id, r.actor_email, r.actor_name, r.resource_type,
                        r.resource_id, r.method, r.path, r.ip, r.leaf_hash, r.search_text,
                        tsvector_binary(r.search_text), tsvector_binary(r.word_pairs),
                        tsvector_binary(r.field_tokens)))
            with cursor.copy("COPY event_docs (org_id, idx, received_at, doc) "
                             "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int8", "int8", "bytea"])
                for r, at in zip(rows, received, strict=True):
                    copy.write_row((r.org_id, r.index, at, r.doc))

    def insert_tree_nodes(self, org_id: str, nodes: list[tuple[int, int, bytes]]) -> None:
        if not nodes:
            return
        with self.conn.cursor() as cursor, cursor.copy(
                "COPY tree_nodes (org_id, level, idx, hash) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int4", "int8", "bytea"])
            for level, index, h in nodes:
                copy.write_row((org_id, level, index, h))

    def set_log_head(self, org_id: str, head: LogHead) -> None:
        self.conn.execute(
            "UPDATE orgs SET log_size = %s, compact_range = %s, last_received_at = %s "
            "WHERE id = %s", (head.size, b"".join(head.compact_range), head.last_received_us,
                              org_id))

    def lock_checkpoints(self, org_id: str) -> CheckpointRow | None:
        # Not a lock on the org's row, which ingest holds while it appends. The checkpoint
        # is read by a statement of its own, after the lock is taken: under READ COMMITTED
        # it then sees what the lock's last holder committed.
        self.conn.execute("SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))",
                          (_SIGNING_LOCK, org_id))
        row = self._one(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE org_id = %s "
            "ORDER BY size DESC LIMIT 1", (org_id,))
        return CheckpointRow(*row) if row else None

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        cursor = self.conn.execute(
            f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (row.org_id, row.size, row.root, row.note, row.key_id, row.created_at))
        return cursor.rowcount == 1

    def insert_log_key(self, vkey: str, created_at: int, retired_at: int | None) -> None:
        cursor = self.conn.execute(
            "INSERT INTO log_keys (vkey, created_at, retired_at) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING", (vkey, created_at, retired_at))
        if cursor.rowcount != 1:
            raise Conflict(f"the log key {vkey!r} is already recorded")

    # -- orgs, users, keys, sessions and exports --------------------------------------

    # An insert whose key is taken inserts nothing (ON CONFLICT DO NOTHING): a failed
    # statement would abort the whole transaction, where SQLite's lets it go on. Ids that
    # SQLite keys alone are keyed by org here, so the insert also looks the id up across orgs.

    def create_org(self, *, org_id: str, name: str, created_at: int) -> Org:
        cursor = self.conn.execute(
            "INSERT INTO orgs (id, name, created_at) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING", (org_id, name, created_at))
        if cursor.rowcount != 1:
            raise Conflict(f"org {org_id!r} already exists")
        return Org(org_id, name, created_at, 0)

    def lock_members(self, org_id: str) -> list[UserRow]:
        rows = self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE org_id = %s AND removed_at IS NULL "
            "ORDER BY created_at, id FOR UPDATE", (org_id,))
        return [UserRow(*r) for r in rows]

    def get_user(self, user_id: str) -> UserRow | None:
        r = self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s FOR SHARE", (user_id,))
        return UserRow(*r) if r else None

    def insert_user(self, row: UserRow) -> None:
        cursor = self.conn.execute(
            f"INSERT INTO users ({_USER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (row.id, row.org_id, row.email, row.name, row.role, row.password_hash,
             row.created_at, row.removed_at))
        if cursor.rowcount != 1:
            raise Conflict(f"a user with email {row.email!r} already exists in this org")

    def _lock_live_user(self, org_id: str, user_id: str) -> UserRow:
        r = self._one(
            f"SELECT {_USER_COLUMNS} FROM users "
            "WHERE org_id = %s AND id = %s AND removed_at IS NULL FOR UPDATE",
            (org_id, user_id))
        if r is None:
            raise NotFound(f"user {user_id!r} does not exist in org {org_id!r}")
        return UserRow(*r)

    def set_user_role(self, *, org_id: str, user_id: str, role: str) -> UserRow:
        r = self._one(
            f"UPDATE users SET role = %s WHERE org_id = %s AND id = %s AND removed_at IS NULL "
            f"RETURNING {_USER_COLUMNS}", (role, org_id, user_id))
        if r is None:
            raise NotFound(f"user {user_id!r} does not exist in org {org_id!r}")
        return UserRow(*r)

    def remove_user(self, *, org_id: str, user_id: str, at: int) -> UserRow:
        user = self._lock_live_user(org_id, user_id)  # returned as it was, as on SQLite
        self.conn.execute("UPDATE users SET removed_at = %s WHERE org_id = %s AND id = %s",
                          (at, org_id, user_id))
        self.conn.execute(
            "UPDATE sessions SET revoked_at = %s "
            "WHERE org_id = %s AND user_id = %s AND revoked_at IS NULL", (at, org_id, user_id))
        return user

    def insert_api_key(self, row: ApiKeyRow) -> None:
        cursor = self.conn.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) SELECT %(id)s, %(org)s, %(name)s, "
            "%(hash)s, %(scopes)s, %(at)s, %(revoked)s, %(used)s, %(by)s "
            "WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE id = %(id)s) "
            "ON CONFLICT DO NOTHING",
            {"id": row.id, "org": row.org_id, "name": row.name, "hash": row.secret_hash,
             "scopes": " ".join(row.scopes), "at": row.created_at, "revoked": row.revoked_at,
             "used": row.last_used_at, "by": row.created_by})
        if cursor.rowcount != 1:
            raise Conflict(f"an API key with id {row.id!r} already exists")

    def revoke_api_key(self, *, org_id: str, key_id: str, at: int) -> ApiKeyRow:
        self.conn.execute(
            "UPDATE api_keys SET revoked_at = %s "
            "WHERE org_id = %s AND id = %s AND revoked_at IS NULL", (at, org_id, key_id))
        r = self._one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE org_id = %s AND id = %s",
                      (org_id, key_id))
        if r is None:
            raise NotFound(f"API key {key_id!r} does not exist in org {org_id!r}")
        return _key_row(r)

    def revoke_api_keys_created_by(self, *, org_id: str, user_id: str,
                                   at: int) -> list[ApiKeyRow]:
        rows = self.conn.execute(
            "UPDATE api_keys SET revoked_at = %s "
            "WHERE org_id = %s AND created_by = %s AND revoked_at IS NULL "
            f"RETURNING {_KEY_COLUMNS}", (at, org_id, user_id)).fetchall()
        return sorted((_key_row(r) for r in rows), key=lambda k: (k.created_at, k.id))

    def insert_session(self, token_hash: bytes, row: SessionRow) -> None:
        # The session's org is its user's; no such user leaves org_id NULL, which the
        # database refuses (a Conflict, as SQLite's foreign key).
        cursor = self.conn.execute(
            "INSERT INTO sessions (org_id, token_hash, id, user_id, csrf_token, created_at, "
            "expires_at, revoked_at) SELECT (SELECT org_id FROM users WHERE id = %(user)s), "
            "%(token)s, %(id)s, %(user)s, %(csrf)s, %(created)s, %(expires)s, %(revoked)s "
            "WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE token_hash = %(token)s) "
            "ON CONFLICT DO NOTHING",
            {"user": row.user_id, "token": token_hash, "id": row.id, "csrf": row.csrf_token,
             "created": row.created_at, "expires": row.expires_at, "revoked": row.revoked_at})
        if cursor.rowcount != 1:
            raise Conflict(f"a session with this token or id ({row.id!r}) already exists")

    def revoke_session(self, token_hash: bytes, at: int) -> None:
        self.conn.execute(
            "UPDATE sessions SET revoked_at = %s WHERE token_hash = %s AND revoked_at IS NULL",
            (at, token_hash))

    def record_login_attempt(self, org_id: str, email: str, at: int, *, since: int) -> int:
        # The upsert locks the org's email row first (a new row: the unique key), so that a
        # concurrent attempt waits and then sees this one.
        counted = self._one(
            "INSERT INTO login_failures AS f (org_id, email, failed_at, last_failed_at) "
            "VALUES (%(org)s, %(email)s, ARRAY[%(at)s::bigint], %(at)s) "
            "ON CONFLICT (org_id, email) DO UPDATE SET failed_at = ARRAY(SELECT t FROM "
            "unnest(f.failed_at) AS t WHERE t >= %(since)s) || %(at)s::bigint, "
            "last_failed_at = greatest(f.last_failed_at, %(at)s) "
            "RETURNING cardinality(f.failed_at) - 1",
            {"org": org_id, "email": email, "at": at, "since": since})
        assert counted is not None  # an upsert returns its row
        # Other accounts' old rows: those another attempt holds are left for a later one,
        # since waiting on them could deadlock with it.
        self.conn.execute(
            "DELETE FROM login_failures WHERE (org_id, email) IN (SELECT org_id, email "
            "FROM login_failures WHERE last_failed_at < %s FOR UPDATE SKIP LOCKED)", (since,))
        return counted[0]

    def clear_login_failures(self, org_id: str, email: str) -> None:
        self.conn.execute("DELETE FROM login_failures WHERE org_id = %s AND email = %s",
                          (org_id, email))

    def insert_export(self, row: ExportRow) -> None:
        values = dict(row.__dict__)
        marks = ", ".join(f"%({name})s" for name in values)
        cursor = self.conn.execute(
            f"INSERT INTO exports ({_EXPORT_COLUMNS}) SELECT {marks} WHERE NOT EXISTS "
            "(SELECT 1 FROM exports WHERE id = %(id)s) ON CONFLICT DO NOTHING", values)
        if cursor.rowcount != 1:
            raise Conflict(f"an export with id {row.id!r} already exists")

    def lock_export(self, org_id: str, export_id: str) -> ExportRow | None:
        r = self._one(
            f"SELECT {_EXPORT_COLUMNS} FROM exports WHERE org_id = %s AND id = %s FOR UPDATE",
            (org_id, export_id))
        return ExportRow(*r) if r else None

    def insert_stream(self, row: StreamRow) -> None:
        cursor = self.conn.execute(
            f"INSERT INTO streams ({_STREAM_COLUMNS}) VALUES ({', '.join(['%s'] * 21)}) "
            "ON CONFLICT (org_id, id) DO NOTHING", tuple(row.__dict__.values()))
        if cursor.rowcount != 1:
            raise Conflict(f"a stream with id {row.id!r} already exists")

    def lock_stream(self, org_id: str, stream_id: str) -> StreamRow | None:
        r = self._one(f"SELECT {_STREAM_COLUMNS} FROM streams WHERE org_id = %s AND id = %s "
                      "FOR UPDATE", (org_id, stream_id))
        return StreamRow(*r) if r else None

    def update_stream(self, row: StreamRow) -> None:
        values = {c: v for c, v in row.__dict__.items() if c not in ("id", "org_id")}
        assignments = ", ".join(f"{c} = %s" for c in values)
        self.conn.execute(f"UPDATE streams SET {assignments} WHERE org_id = %s AND id = %s",
                          (*values.values(), row.org_id, row.id))

    def delete_stream(self, org_id: str, stream_id: str) -> None:
        self.conn.execute("DELETE FROM streams WHERE org_id = %s AND id = %s",
                          (org_id, stream_id))

    def lock_retention(self, org_id: str) -> RetentionRow:
        self.conn.execute("INSERT INTO retention (org_id, updated_at) VALUES (%s, 0) "
                          "ON CONFLICT (org_id) DO NOTHING", (org_id,))
        r = self._one(f"SELECT {_RETENTION_COLUMNS} FROM retention WHERE org_id = %s "
                      "FOR UPDATE", (org_id,))
        assert r is not None
        return RetentionRow(*r)

    def put_retention(self, row: RetentionRow) -> None:
        values = {c: v for c, v in row.__dict__.items() if c != "org_id"}
        assignments = ", ".join(f"{c} = %s" for c in values)
        self.conn.execute(f"UPDATE retention SET {assignments} WHERE org_id = %s",
                          (*values.values(), row.org_id))

    def insert_hold(self, row: HoldRow) -> None:
        cursor = self.conn.execute(
            f"INSERT INTO legal_holds ({_HOLD_COLUMNS}) VALUES ({', '.join(['%s'] * 10)}) "
            "ON CONFLICT (org_id, id) DO NOTHING", tuple(row.__dict__.values()))
        if cursor.rowcount != 1:
            raise Conflict(f"a legal hold with id {row.id!r} already exists")

    def lock_hold(self, org_id: str, hold_id: str) -> HoldRow | None:
        r = self._one(f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE org_id = %s AND id = %s "
                      "FOR UPDATE", (org_id, hold_id))
        return HoldRow(*r) if r else None

    def update_hold(self, row: HoldRow) -> None:
        values = {c: v for c, v in row.__dict__.items() if c not in ("id", "org_id")}
        assignments = ", ".join(f"{c} = %s" for c in values)
        self.conn.execute(f"UPDATE legal_holds SET {assignments} WHERE org_id = %s AND id = %s",
                          (*values.values(), row.org_id, row.id))

    def list_holds(self, org_id: str) -> list[HoldRow]:
        rows = self.conn.execute(f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE org_id = %s "
                                 "ORDER BY created_at, id", (org_id,)).fetchall()
        return [HoldRow(*r) for r in rows]

    def received_at(self, org_id: str, index: int) -> int | None:
        r = self._one("SELECT received_at FROM events WHERE org_id = %s AND idx = %s",
                      (org_id, index))
        return None if r is None else r[0]

    def first_index_occurred_in(self, org_id: str, start: int, stop: int,
                                ranges: list[tuple[int | None, int | None]]) -> int | None:
        if not ranges:
            return None
        conditions, params = occurred_in(ranges, DIALECT)
        r = self._one(f"SELECT min(idx) FROM events WHERE org_id = %s AND idx >= %s "
                      f"AND idx < %s AND ({conditions})", (org_id, start, stop, *params))
        return None if r is None else r[0]

    def docs_at(self, org_id: str, indexes: list[int]) -> dict[int, StoredDoc]:
        rows = self.conn.execute(f"SELECT {_DOC_COLUMNS} FROM {_DOC_JOIN} WHERE e.org_id = %s "
                                 "AND e.idx = ANY(%s)", (org_id, indexes)).fetchall()
        return {r[4]: StoredDoc(*r) for r in rows}

    def erase_events(self, org_id: str, tombstones: list[tuple[int, bytes]]) -> None:
        indexes = [index for index, _ in tombstones]
        rows = self.conn.execute(
            "UPDATE events SET action = 'erased', actor_id = NULL, actor_email = NULL, "
            "actor_name = NULL, resource_type = NULL, resource_id = NULL, method = NULL, "
            "path = NULL, ip = NULL, search_text = '', words = ''::tsvector, "
            "pairs = ''::tsvector WHERE org_id = %s AND idx = ANY(%s) "
            "RETURNING idx, category, result", (org_id, indexes)).fetchall()
        with self.conn.cursor() as cursor:
            # What stays findable of an erased event: action:erased, its category, result.
            cursor.executemany(
                "UPDATE events SET fields = array_to_tsvector(%s::text[]) WHERE org_id = %s "
                "AND idx = %s", [(lexemes(erased_tokens(category, result)), org_id, index)
                                 for index, category, result in rows])
            cursor.executemany("UPDATE event_docs SET doc = %s WHERE org_id = %s AND idx = %s",
                               [(doc, org_id, index) for index, doc in tombstones])

    def delete_events(self, org_id: str, start: int, stop: int) -> int:
        self.conn.execute("DELETE FROM event_docs WHERE org_id = %s AND idx >= %s AND idx < %s",
                          (org_id, start, stop))
        return self.conn.execute("DELETE FROM events WHERE org_id = %s AND idx >= %s "
                                 "AND idx < %s", (org_id, start, stop)).rowcount

    def checkpoint_sizes(self, org_id: str, start: int, stop: int,
                         limit: int | None = None) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT size FROM checkpoints WHERE org_id = %s AND size >= %s AND size < %s "
            "ORDER BY size LIMIT %s", (org_id, start, stop, limit))]  # LIMIT NULL: all

    def delete_tree_nodes(self, org_id: str, ranges: list[tuple[int, int, int]]) -> int:
        deleted = 0
        for level, start, stop in ranges:
            deleted += self.conn.execute(
                "DELETE FROM tree_nodes WHERE org_id = %s AND level = %s AND idx >= %s "
                "AND idx < %s", (org_id, level, start, stop)).rowcount
        self.tree_nodes_deleted += deleted
        return deleted

    def withdraw_export(self, org_id: str, export_id: str, now: int) -> ExportRow | None:
        r = self.conn.execute(
            "UPDATE exports SET status = CASE status WHEN 'completed' THEN 'expired' "
            "ELSE 'cancelled' END, finished_at = coalesce(finished_at, %s), "
            "lease_owner = NULL, lease_expires_at = NULL WHERE org_id = %s AND id = %s "
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
        r = self._one(
            "UPDATE exports SET status = 'cancelled', finished_at = %s, lease_owner = NULL, "
            "lease_expires_at = NULL WHERE org_id = %s AND id = %s "
            f"RETURNING {_EXPORT_COLUMNS}", (now, org_id, export_id))
        assert r is not None  # locked above
        return ExportRow(*r)


class PostgresStore(OneCallWrites):
    """A Sealog database on PostgreSQL (postgresql://…[?pool_size=N]); safe to share
    between threads. Migrations run on open."""

    purge_batch = 1000  # writers do not wait on a purge transaction here

    def __init__(self, url: str):
        self.url = url
        conninfo, size = split_url(url)
        migrate(conninfo)
        self._pool = ConnectionPool(
            conninfo, min_size=1, max_size=size, timeout=POOL_TIMEOUT, open=True,
            kwargs={"autocommit": True}, configure=self._configure, name="sealog")
        self._local = threading.local()
        # Tree nodes that committed purges deleted since this store last vacuumed the
        # tree; only the one purging thread adds to it.
        self._tree_nodes_deleted = 0
        self._closed = False
        self._stop_upkeep = threading.Event()
        self._upkeep = threading.Thread(target=self._keep_partitions, daemon=True,
                                        name="sealog-partition-upkeep")
        self._upkeep.start()

    def _keep_partitions(self) -> None:
        """Makes the months' partitions as they come due, for as long as the store is open
        (migrating made those due at opening)."""
        while not self._stop_upkeep.wait(UPKEEP_SECONDS):
            try:
                with self._pool.connection() as conn:
                    keep_partitions(conn)
            except psycopg.Error as exc:  # the next round tries again, months ahead of need
                log.warning("partition upkeep failed: %s", exc)

    @staticmethod
    def _configure(conn: psycopg.Connection) -> None:
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        # Compiling a plan (JIT) costs tens of milliseconds that a search of a million rows
        # does not win back: counts over 1,000,000 events took 89 ms at p95 with it, 65 ms
        # without (bench/query.py).
        conn.execute("SET jit = off")

    def close(self) -> None:
        """Closes every connection; the store cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._stop_upkeep.set()
            self._upkeep.join()
            self._pool.close()

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit: each statement sees what was committed."""
        if self._closed:
            raise RuntimeError("the store is closed")
        with _unavailable(), self._pool.connection() as conn:
            yield conn

    def _one(self, sql: str, params: tuple = ()) -> tuple | None:
        with self._reading() as conn:
            return conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._reading() as conn:
            return conn.execute(sql, params).fetchall()

    def ping(self) -> None:
        self._one("SELECT 1")

    @contextmanager
    def writing(self, *, durable: bool = True, scrub: bool = False) -> Iterator[_Tx]:
        if self._closed:
            raise RuntimeError("the store is closed")
        if getattr(self._local, "writing", False):  # else a second connection of this
            # thread would wait on the rows the first locked
            raise RuntimeError("this thread already has a write transaction open; pass that "
                               "transaction to what must be stored in it")
        self._local.writing = True
        try:
            with _refusals(), self._pool.connection() as conn, conn.transaction():
                if not durable:
                    conn.execute("SET LOCAL synchronous_commit = off")
                tx = _Tx(conn)
                yield tx
            if tx.tree_nodes_deleted:  # committed
                self._tree_nodes_deleted += tx.tree_nodes_deleted
        finally:
            self._local.writing = False

    # -- orgs and log keys -----------------------------------------------------------

    def get_org(self, org_id: str) -> Org:
        row = self._one("SELECT id, name, created_at, log_size, closed_at FROM orgs "
                        "WHERE id = %s", (org_id,))
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        return Org(*row)

    def list_orgs(self) -> list[Org]:
        rows = self._all("SELECT id, name, created_at, log_size, closed_at FROM orgs "
                         "ORDER BY created_at, id")
        return [Org(*r) for r in rows]

    def log_head(self, org_id: str) -> LogHead:
        row = self._one(f"SELECT {_HEAD_COLUMNS} FROM orgs WHERE id = %s", (org_id,))
        if row is None:
            raise NotFound(f"org {org_id!r} does not exist")
        return _head(*row)

    def read_tree_nodes(
        self, org_id: str, wanted: list[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        if not wanted:
            return {}
        levels, indexes = zip(*wanted, strict=True)
        rows = self._all(
            "SELECT t.level, t.idx, t.hash FROM unnest(%s::int4[], %s::int8[]) AS w(level, idx) "
            "JOIN tree_nodes t ON t.org_id = %s AND t.level = w.level AND t.idx = w.idx",
            (list(levels), list(indexes), org_id))
        return {(level, index): h for level, index, h in rows}

    def read_tree_range(
        self, org_id: str, level: int, start: int, stop: int
    ) -> dict[tuple[int, int], bytes]:
        rows = self._all(
            "SELECT idx, hash FROM tree_nodes WHERE org_id = %s AND level = %s "
            "AND idx >= %s AND idx < %s", (org_id, level, start, stop))
        return {(level, index): h for index, h in rows}

    def latest_checkpoint(self, org_id: str) -> CheckpointRow | None:
        row = self._one(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE org_id = %s "
            "ORDER BY size DESC LIMIT 1", (org_id,))
        return CheckpointRow(*row) if row else None

    def iter_checkpoints(self, org_id: str) -> Iterator[CheckpointRow]:
        after = -1
        while True:
            rows = self._all(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE org_id = %s "
                "AND size > %s ORDER BY size LIMIT 1000", (org_id, after))
            yield from (CheckpointRow(*r) for r in rows)
            if len(rows) < 1000:
                return
            after = rows[-1][1]

    def orgs_behind_checkpoint(self) -> list[str]:
        rows = self._all(
            "SELECT o.id FROM orgs o WHERE o.log_size > coalesce("
            "(SELECT max(c.size) FROM checkpoints c WHERE c.org_id = o.id), -1) ORDER BY o.id")
        return [r[0] for r in rows]

    def add_log_key(self, vkey: str, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute("INSERT INTO log_keys (vkey, created_at) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING", (vkey, at))

    def retire_log_key(self, vkey: str, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute(
                "UPDATE log_keys SET retired_at = %s WHERE vkey = %s AND retired_at IS NULL",
                (at, vkey))

    def log_keys(self) -> list[tuple[str, int, int | None]]:
        return [(r[0], r[1], r[2]) for r in self._all(
            "SELECT vkey, created_at, retired_at FROM log_keys ORDER BY created_at, vkey")]

    def row_counts(self) -> dict[str, int]:
        with self._reading() as conn:
            return {kind: conn.execute(f"SELECT {count} FROM {table}").fetchall()[0][0]
                    for kind, (table, count) in _COUNTED.items()}

    # -- events by id and by index --------------------------------------------------

    def get_event(self, org_id: str, event_id: str) -> StoredDoc | None:
        r = self._one(f"SELECT {_DOC_COLUMNS} FROM {_DOC_JOIN} WHERE e.org_id = %s "
                      "AND e.id = %s", (org_id, event_id))
        return StoredDoc(*r) if r else None

    def iter_events_by_index(self, org_id: str, start: int, stop: int) -> Iterator[StoredDoc]:
        for rows in self._pages_by_index(_DOC_COLUMNS, org_id, start, stop):
            yield from map(StoredDoc._make, rows)

    def _pages_by_index(self, columns: str, org_id: str, start: int, stop: int
                        ) -> Iterator[list[tuple]]:
        """columns of the org's events with start <= index < stop, in index order, a page
        of 1,000 a statement, each on a connection taken for it: a slow reader holds none."""
        position = start
        while position < stop:
            # Indexes are dense, so a page is the range of its 1,000 indexes: bounded so, the
            # planner expects 1,000 rows, not the whole rest of the log (a hash join of it).
            # Parallel workers take longer to start than such a page takes to read: 2.7 ms a
            # page without them, 11 ms with (43 ms unbounded), over 50,000 events. In binary,
            # the documents (bytea) arrive as they are, not as hex: 4.0 ms a page, not 6.3.
            page_stop = min(stop, position + PAGE)
            with self._reading() as conn, conn.transaction():
                conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                rows = conn.execute(
                    f"SELECT e.idx, {columns} FROM {_DOC_JOIN} WHERE e.org_id = %s "
                    "AND e.idx >= %s AND e.idx < %s ORDER BY e.idx",
                    (org_id, position, page_stop), binary=True).fetchall()
            if not rows:  # none in this page's range: go on from the next index there is
                after = self._one("SELECT min(idx) FROM events WHERE org_id = %s AND idx >= %s "
                                  "AND idx < %s", (org_id, page_stop, stop))
                if after is None or after[0] is None:
                    return
                position = after[0]
                continue
            yield [r[1:] for r in rows]
            position = rows[-1][0] + 1

    # -- search ----------------------------------------------------------------------

    @contextmanager
    def _budgeted(self, budget: float | None) -> Iterator[psycopg.Connection]:
        """A connection whose statements are cancelled past budget seconds, raising
        QueryTooCostly (PostgreSQL's statement_timeout: the clock, not the CPU, on this
        backend)."""
        with self._reading() as conn:
            if budget is None:
                yield conn
                return
            if budget <= 0:  # statement_timeout 0 would mean no limit, not none at all
                raise QueryTooCostly(budget)
            try:
                with conn.transaction():
                    conn.execute("SELECT set_config('statement_timeout', %s, true)",
                                 (f"{math.ceil(budget * 1000)}ms",))
                    yield conn
            except psycopg.errors.QueryCanceled:
                raise QueryTooCostly(budget) from None

    def list_events(
        self, flt: EventFilter, *, cursor: Cursor | None, limit: int,
        budget: float | None = None,
    ) -> list[StoredDoc]:
        with self._budgeted(budget) as conn:
            match = match_where(flt, DIALECT)
            if match.clauses:
                # A common term fills its page from the newest rows of the window (read
                # along the time index); a rarer one is found through the token index.
                # The first probe's matches tell how many rows a second would need.
                window = _selection(flt, cursor, tokens=False)
                rows = self._probe(conn, window, match, PROBE_ROWS, limit)
                if 0 < len(rows) < limit:
                    wanted = math.ceil(PROBE_ROWS * limit / len(rows) * PROBE_MARGIN)
                    if wanted <= MAX_PROBE_ROWS:
                        rows = self._probe(conn, window, match, wanted, limit)
                if len(rows) == limit:  # every later match is older than these
                    return [StoredDoc(*r) for r in rows]
            where = _selection(flt, cursor)
            rows = conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM (SELECT {_PAGE_COLUMNS} FROM events "
                f"WHERE {where.sql()} {_ORDER} LIMIT %s) AS e {_PAGE_DOCS} {_ORDER_E}",
                (*where.params, limit)).fetchall()
        return [StoredDoc(*r) for r in rows]

    @staticmethod
    def _probe(conn: psycopg.Connection, window: Where, match: Where, rows: int,
               limit: int) -> list[tuple]:
        """The first limit rows of the window's newest rows that match."""
        return conn.execute(
            f"SELECT {_DOC_COLUMNS} FROM (SELECT {_PAGE_COLUMNS} FROM (SELECT * "
            f"FROM events WHERE {window.sql()} {_ORDER} LIMIT %s) AS newest WHERE "
            f"{match.sql()} {_ORDER} LIMIT %s) AS e {_PAGE_DOCS} {_ORDER_E}",
            (*window.params, rows, *match.params, limit)).fetchall()

    def count_events(self, flt: EventFilter, *, budget: float | None = None) -> int:
        where = _selection(flt)
        with self._budgeted(budget) as conn:
            row = conn.execute(f"SELECT count(*) FROM events WHERE {where.sql()}",
                               where.params).fetchone()
        assert row is not None
        return row[0]

    def iter_events_ascending(self, flt: EventFilter, *, batch: int = 1000
                              ) -> Iterator[StoredDoc]:
        where = _selection(flt)
        yield from self._stream(
            f"SELECT {_DOC_COLUMNS} FROM (SELECT {_PAGE_COLUMNS} FROM events WHERE "
            f"{where.sql()}) AS e {_PAGE_DOCS} ORDER BY e.occurred_at, e.id", where.params, batch)

    def iter_events_in_index_order(self, flt: EventFilter, *, batch: int = 1000
                                   ) -> Iterator[StoredDoc]:
        where = _selection(flt)
        yield from self._stream(
            f"SELECT {_DOC_COLUMNS} FROM (SELECT {_PAGE_COLUMNS} FROM events WHERE "
            f"{where.sql()}) AS e {_PAGE_DOCS} ORDER BY e.idx", where.params, batch)

    def _stream(self, sql: str, params: list, batch: int) -> Iterator[StoredDoc]:
        """The rows of one statement, batch at a time through a server-side cursor, as
        binary (documents are not sent as hex). A thread of the store fetches the next
        batches while the caller uses one: the server's part and the caller's overlap,
        where each FETCH kept the caller waiting a third of an export's time. One statement
        sees one snapshot, and holds a connection until the iteration ends or is dropped."""
        batches: queue.Queue[list[tuple] | BaseException] = queue.Queue(maxsize=STREAM_AHEAD)
        stop = threading.Event()

        def put(item: list[tuple] | BaseException) -> None:
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def fetch() -> None:
            try:
                with self._reading() as conn, conn.transaction(), conn.cursor(
                        name="sealog_stream", binary=True) as cursor:
                    cursor.execute(sql, params)
                    while not stop.is_set():
                        rows = cursor.fetchmany(batch)
                        put(rows)
                        if not rows:
                            return
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                put(exc)

        fetcher = threading.Thread(target=fetch, name="sealog-stream", daemon=True)
        fetcher.start()
        try:
            while True:
                item = batches.get()
                if isinstance(item, BaseException):
                    raise item
                if not item:
                    return
                yield from (StoredDoc(*r) for r in item)
        finally:
            stop.set()
            fetcher.join()

    def iter_event_rows(self, org_id: str, start: int, stop: int) -> Iterator[EventRow]:
        for rows in self._pages_by_index(_ROW_COLUMNS, org_id, start, stop):
            yield from map(stored_event_row, rows)

    def scrub_erased(self, org_id: str, received_us: list[int]) -> None:
        months = sorted({partitions.month_of(us) for us in received_us})
        names = [partitions.partition_name(table, month) for month in months
                 for table in partitions.PARTITIONED_TABLES]
        with self._reading() as conn:
            existing = [n for n in (*names, "events_default", "event_docs_default")
                        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (n,)
                                        ).fetchone() == (True,)]
            # The erased rows' old versions stay in the table until vacuumed: then their
            # space is free for new rows, and no query or index can reach them.
            conn.execute(f"VACUUM {', '.join(existing)}")

    def release_emptied_storage(self, *, pause: float = 0,
                                stop: threading.Event | None = None,
                                scrub: bool = False) -> list[str]:
        released = []
        try:
            with self._reading() as conn, schema_change(conn):
                released += [f"partition {name}" for name in partitions.drop_emptied(conn)]
        except psycopg.errors.LockNotAvailable as exc:  # the next purge tries again
            log.warning("dropping emptied partitions gave up after %s waiting for queries "
                        "on the events tables (%s)", partitions.LOCK_TIMEOUT, exc)
        # Only once purges have deleted a tenth of the tree since this store last vacuumed
        # it: each vacuum reads the tree's whole index, and a vacuum that finds no dead row
        # recycles the index's emptied pages only when they are over 5% of it.
        deleted = self._tree_nodes_deleted
        if not (stop and stop.is_set()) and deleted and deleted >= self._tree_rows() / 10:
            try:
                self._vacuum_tree(stop)
                released.append("the tree's emptied pages")
            except psycopg.Error as exc:  # autovacuum will, in its time
                log.warning("vacuuming the tree after a purge failed: %s", exc)
        return released

    def _tree_rows(self) -> float:
        """How many rows the tree's table held when last vacuumed or analysed (0: unknown)."""
        row = self._one("SELECT reltuples FROM pg_class WHERE oid = 'tree_nodes'::regclass")
        return max(0.0, row[0]) if row else 0.0

    def _vacuum_tree(self, stop: threading.Event | None) -> None:
        """Makes the space of the tree nodes purges deleted reusable now, not at autovacuum's
        next visits: VACUUM frees the rows and empties index pages, which it hands out again
        only if transactions moved past them meanwhile; else a second VACUUM does.
        Paced as autovacuum is, so writers beside it keep their pace."""
        with self._pool.connection() as conn:
            conn.execute("SET vacuum_cost_delay = '2ms'")
            # Behind a lock on the table (another vacuum by hand, a schema change), give up
            # rather than hold the purger.
            conn.execute(f"SET lock_timeout = '{partitions.LOCK_TIMEOUT}'")
            try:
                conn.execute("VACUUM tree_nodes")
                self._tree_nodes_deleted = 0
                if not (stop and stop.is_set()):
                    # On a quiet database no other transaction would take an id.
                    conn.execute("SELECT pg_current_xact_id()")
                    conn.execute("VACUUM tree_nodes")
            finally:
                if not conn.closed:
                    conn.execute("RESET vacuum_cost_delay")
                    conn.execute("RESET lock_timeout")

    def prepare_for_events(self, *, received_from: int, received_until: int) -> None:
        try:
            with self._reading() as conn, schema_change(conn):
                partitions.ensure_months(conn, received_from, received_until)
        except psycopg.errors.LockNotAvailable as exc:  # the rows wait in DEFAULT for upkeep
            log.warning("making the partitions of the months events arrive in gave up after "
                        "%s waiting for queries on the events tables (%s)",
                        partitions.LOCK_TIMEOUT, exc)

    # -- API keys --------------------------------------------------------------------

    def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        r = self._one(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
        return _key_row(r) if r else None

    def list_api_keys(self, org_id: str) -> list[ApiKeyRow]:
        rows = self._all(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE org_id = %s ORDER BY created_at, id",
            (org_id,))
        return [_key_row(r) for r in rows]

    def touch_api_key(self, key_id: str, at: int) -> None:
        with self.writing() as tx:
            tx.conn.execute("UPDATE api_keys SET last_used_at = %s WHERE id = %s", (at, key_id))

    # -- users, sessions and sign-in attempts ----------------------------------------

    def get_user(self, user_id: str) -> UserRow | None:
        r = self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
        return UserRow(*r) if r else None

    def user_with_email(self, org_id: str, email: str) -> UserRow | None:
        r = self._one(
            f"SELECT {_USER_COLUMNS} FROM users "
            "WHERE org_id = %s AND email = %s AND removed_at IS NULL", (org_id, email))
        return UserRow(*r) if r else None

    def list_users(self, org_id: str) -> list[UserRow]:
        rows = self._all(
            f"SELECT {_USER_COLUMNS} FROM users WHERE org_id = %s AND removed_at IS NULL "
            "ORDER BY created_at, id", (org_id,))
        return [UserRow(*r) for r in rows]

    def list_all_users(self, org_id: str) -> list[UserRow]:
        rows = self._all(
            f"SELECT {_USER_COLUMNS} FROM users WHERE org_id = %s ORDER BY created_at, id",
            (org_id,))
        return [UserRow(*r) for r in rows]

    def get_session(self, token_hash: bytes) -> SessionRow | None:
        r = self._one(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE token_hash = %s",
                      (token_hash,))
        return SessionRow(*r) if r else None

    def list_sessions(self, org_id: str) -> list[tuple[bytes, SessionRow]]:
        rows = self._all(
            f"SELECT token_hash, {_SESSION_COLUMNS} FROM sessions WHERE org_id = %s "
            "ORDER BY created_at, id", (org_id,))
        return [(r[0], SessionRow(*r[1:])) for r in rows]

    def login_failures(self) -> list[tuple[str, str, int]]:
        return [(r[0], r[1], r[2]) for r in self._all(
            "SELECT f.org_id, f.email, t.at FROM login_failures f "
            "CROSS JOIN unnest(f.failed_at) AS t(at) ORDER BY t.at, f.org_id, f.email")]

    # -- exports ---------------------------------------------------------------------

    def get_export(self, org_id: str, export_id: str) -> ExportRow | None:
        r = self._one(f"SELECT {_EXPORT_COLUMNS} FROM exports WHERE org_id = %s AND id = %s",
                      (org_id, export_id))
        return ExportRow(*r) if r else None

    def list_exports(self, org_id: str) -> list[ExportRow]:
        rows = self._all(
            f"SELECT {_EXPORT_COLUMNS} FROM exports WHERE org_id = %s "
            "ORDER BY created_at DESC, id DESC", (org_id,))
        return [ExportRow(*r) for r in rows]

    def get_stream(self, org_id: str, stream_id: str) -> StreamRow | None:
        r = self._one(f"SELECT {_STREAM_COLUMNS} FROM streams WHERE org_id = %s AND id = %s",
                      (org_id, stream_id))
        return StreamRow(*r) if r else None

    def list_streams(self, org_id: str) -> list[StreamRow]:
        rows = self._all(f"SELECT {_STREAM_COLUMNS} FROM streams WHERE org_id = %s "
                         "ORDER BY created_at, id", (org_id,))
        return [StreamRow(*r) for r in rows]

    def get_retention(self, org_id: str) -> RetentionRow | None:
        r = self._one(f"SELECT {_RETENTION_COLUMNS} FROM retention WHERE org_id = %s",
                      (org_id,))
        return RetentionRow(*r) if r else None

    def retention_work(self) -> list[str]:
        return [r[0] for r in self._all(
            "SELECT r.org_id FROM retention r JOIN orgs o ON o.id = r.org_id "
            "WHERE (r.days IS NOT NULL OR r.purge_to > r.pruned_before) "
            "AND o.closed_at IS NULL ORDER BY r.org_id")]

    def list_holds(self, org_id: str) -> list[HoldRow]:
        rows = self._all(f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE org_id = %s "
                         "ORDER BY created_at, id", (org_id,))
        return [HoldRow(*r) for r in rows]

    def claim_streams(self, *, owner: str, now: int, lease_us: int, limit: int
                      ) -> list[StreamRow]:
        # Asked first without a transaction: workers poll often, and most polls find
        # nothing due.
        if self._one(f"SELECT 1 FROM {_DUE_STREAMS} LIMIT 1", (now, now)) is None:
            return []
        with self.writing(durable=False) as tx:  # a lease lost in a crash is free anyway
            first = tx.conn.execute(
                f"SELECT s.org_id, s.id, s.next_index FROM {_DUE_STREAMS} "
                "ORDER BY coalesce(s.retry_at, 0), s.updated_at "
                "LIMIT 1 FOR UPDATE OF s SKIP LOCKED", (now, now)).fetchone()
            if first is None:
                return []
            org_id, first_id, cursor = first
            # The first is locked by this transaction already, so SKIP LOCKED keeps it.
            rows = tx.conn.execute(
                "UPDATE streams t SET lease_owner = %s, lease_expires_at = %s "
                f"FROM (SELECT s.org_id, s.id FROM {_DUE_STREAMS} "
                "AND s.org_id = %s AND s.next_index = %s "
                "ORDER BY s.id = %s DESC, coalesce(s.retry_at, 0), s.updated_at "
                "LIMIT %s FOR UPDATE OF s SKIP LOCKED) AS due "
                "WHERE t.org_id = due.org_id AND t.id = due.id "
                f"RETURNING {_columns(_STREAM_COLUMNS, 't')}",
                (owner, now + lease_us, now, now, org_id, cursor, first_id, limit)).fetchall()
        return sorted((StreamRow(*r) for r in rows), key=lambda r: r.id != first_id)

    def claim_export(self, *, owner: str, now: int, lease_us: int) -> ExportRow | None:
        with self.writing() as tx:
            r = tx.conn.execute(
                "UPDATE exports e SET status = 'running', lease_owner = %(owner)s, "
                "lease_expires_at = %(until)s, attempts = e.attempts + 1, progress = 0, "
                "started_at = coalesce(e.started_at, %(now)s) FROM (SELECT org_id, id "
                "FROM exports WHERE status = 'queued' OR (status = 'running' "
                "AND lease_expires_at < %(now)s) ORDER BY created_at LIMIT 1 "
                "FOR UPDATE SKIP LOCKED) AS job WHERE e.org_id = job.org_id AND e.id = job.id "
                f"RETURNING {_columns(_EXPORT_COLUMNS, 'e')}",
                {"owner": owner, "until": now + lease_us, "now": now}).fetchone()
        return ExportRow(*r) if r else None

    def renew_export(self, *, export_id: str, owner: str, now: int, lease_us: int,
                     progress: float) -> bool:
        with self.writing() as tx:
            cursor = tx.conn.execute(
                "UPDATE exports SET lease_expires_at = %s, progress = %s "
                "WHERE id = %s AND lease_owner = %s AND status = 'running'",
                (now + lease_us, progress, export_id, owner))
            return cursor.rowcount == 1

    def finish_export(self, *, export_id: str, owner: str, status: str, finished_at: int,
                      progress: float | None = None, row_count: int | None = None,
                      size_bytes: int | None = None, sha256: str | None = None,
                      error: str | None = None, expires_at: int | None = None,
                      file_path: str | None = None) -> bool:
        with self.writing() as tx:
            cursor = tx.conn.execute(
                "UPDATE exports SET status = %s, finished_at = %s, progress = coalesce("
                "%s::double precision, progress), row_count = %s, size_bytes = %s, "
                "sha256 = %s, error = %s, expires_at = %s, file_path = %s, lease_owner = NULL, "
                "lease_expires_at = NULL WHERE id = %s AND lease_owner = %s "
                "AND status = 'running'",
                (status, finished_at, progress, row_count, size_bytes, sha256, error,
                 expires_at, file_path, export_id, owner))
            return cursor.rowcount == 1

    def expire_exports(self, now: int) -> list[ExportRow]:
        with self.writing() as tx:
            rows = tx.conn.execute(
                "UPDATE exports SET status = 'expired' WHERE status = 'completed' "
                f"AND expires_at <= %s RETURNING {_EXPORT_COLUMNS}", (now,)).fetchall()
        return [ExportRow(*r) for r in rows]
