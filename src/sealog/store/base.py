"""The storage interface every backend implements, and the rows that cross it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from sealog import search, times
from sealog.search import Cursor, EventFilter


def wait_after(started: float, pause: float, stop: threading.Event) -> None:
    """After a background transaction begun at started (time.monotonic()): waits pause
    seconds and at least as long as it took, when pause is given, so that background work
    holds a single writer (SQLite's) at most half the time, whatever its steps cost."""
    if pause > 0:
        stop.wait(max(pause, time.monotonic() - started))


class NotFound(LookupError):
    """Raised when a row does not exist (or belongs to another org)."""


class Conflict(ValueError):
    """Raised when a write contradicts what is stored, e.g. a re-used id with other content."""


class StorageFull(Exception):
    """Raised when a write finds the database's disk full; nothing of it was stored, and
    the same write succeeds once space is freed."""


class Unavailable(Exception):
    """Raised when the database could not do the work now (unreachable, its connection
    lost, no free connection in time, a deadlock it broke); nothing of a write was stored,
    and the same call may succeed when made again."""


def closed_message(org_id: str, closed_at: int) -> str:
    """Why nothing more can be written to a closed org's log."""
    return (f"the log of org {org_id!r} was closed at {times.format_rfc3339(closed_at)}; "
            "nothing more can be written to it")


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    created_at: int
    log_size: int
    closed_at: int | None = None  # its log closed: nothing more is written to it


@dataclass(frozen=True)
class ApiKeyRow:
    id: str
    org_id: str
    name: str
    secret_hash: bytes
    scopes: tuple[str, ...]
    created_at: int
    revoked_at: int | None
    last_used_at: int | None
    created_by: str | None  # the user whose authority bounds the key; None: the operator's


@dataclass(frozen=True)
class UserRow:
    id: str
    org_id: str
    email: str
    name: str
    role: str
    password_hash: str
    created_at: int
    removed_at: int | None


@dataclass(frozen=True)
class SessionRow:
    id: str
    user_id: str
    csrf_token: str
    created_at: int
    expires_at: int
    revoked_at: int | None


class EventRow(NamedTuple):
    """One sealed event as stored: index columns, hashes and the canonical document."""

    org_id: str
    index: int  # type: ignore[assignment]  # the log's word; shadows tuple.index
    id: str
    occurred_us: int
    category: str
    result: str
    action: str
    actor_id: str | None
    actor_email: str | None
    actor_name: str | None
    resource_type: str | None
    resource_id: str | None
    method: str | None
    path: str | None
    ip: str | None
    leaf_hash: bytes
    search_text: str
    word_pairs: str
    field_tokens: str
    doc: bytes


# The columns of an EventRow that search.field_tokens makes tokens of, in its order (the
# order ingest gives them in).
_TOKEN_FIELDS = EventRow._fields[4:15]


def stored_event_row(columns: Sequence[Any]) -> EventRow:
    """An EventRow from its stored columns (every field but word_pairs and field_tokens, in
    EventRow's order), with those two, which no backend keeps as text, made from the row as
    ingest makes them."""
    tokens = search.field_tokens(zip(_TOKEN_FIELDS, columns[4:15], strict=True))
    return EventRow._make((*columns[:17], search.word_pairs(columns[16]), tokens, columns[17]))


def erased_tokens(category: str, result: str) -> str:
    """The field tokens of an erased event: its category and result, and action erased."""
    return search.field_tokens((("category", category), ("result", result),
                                ("action", "erased")))


class StoredDoc(NamedTuple):
    """What reads return: the canonical document and its leaf hash."""

    doc: bytes
    leaf_hash: bytes
    occurred_us: int
    id: str
    index: int  # type: ignore[assignment]  # the log's word; shadows tuple.index


@dataclass(frozen=True)
class LogHead:
    """The size of an org's log, the compact range (right edge) of its Merkle tree, and the
    received_at of its last event (0 before the first), which the next may not go below."""

    size: int
    compact_range: tuple[bytes, ...]
    last_received_us: int = 0


@dataclass(frozen=True)
class CheckpointRow:
    org_id: str
    size: int
    root: bytes
    note: str
    key_id: str
    created_at: int


@dataclass(frozen=True)
class ExportRow:
    """An export job as stored."""

    id: str
    org_id: str
    name: str
    format: str
    params: str
    snapshot_size: int
    status: str
    progress: float
    row_count: int | None
    size_bytes: int | None
    sha256: str | None
    error: str | None
    created_by: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None
    expires_at: int | None
    lease_owner: str | None
    lease_expires_at: int | None
    attempts: int
    file_path: str | None


@dataclass(frozen=True)
class StreamRow:
    """A stream of an org's log to a destination, as stored: what it sends where (config,
    a JSON object; sealed, its secrets encrypted by sealog.streams.secrets), its cursor
    (next_index, the index of the next event to deliver) and its delivery state."""

    id: str
    org_id: str
    name: str
    kind: str  # "webhook"
    format: str  # "sealog"
    config: str
    sealed: bytes
    state: str  # "active", "paused", "failing" or "disabled"
    next_index: int
    delivered: int  # events delivered (matching the filters), all told
    failures: int  # failed attempts, all told
    attempts: int  # failed attempts since the last delivery
    last_delivered_at: int | None
    last_error: str | None
    failing_since: int | None
    retry_at: int | None
    lease_owner: str | None
    lease_expires_at: int | None
    created_by: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class RetentionRow:
    """An org's retention policy and how far purges have gone: events with an index below
    pruned_before are gone, a purge under way removes them up to purge_to, ordered by the
    audit_log.purged event at index purge_record. days None: kept forever."""

    org_id: str
    days: int | None = None
    locked_at: int | None = None
    pruned_before: int = 0
    purge_to: int = 0
    purge_record: int | None = None
    updated_at: int = 0


@dataclass(frozen=True)
class HoldRow:
    """A legal hold: while it is not released, no event it covers is removed (the whole
    org's when both bounds are None, else those that occurred in [occurred_from,
    occurred_to), an open bound reaching to the log's start or end)."""

    org_id: str
    id: str
    name: str
    reason: str
    occurred_from: int | None
    occurred_to: int | None
    created_by: str | None
    created_at: int
    released_at: int | None = None
    released_by: str | None = None


# What Store.row_counts counts: every kind of row a deployment holds.
ROW_KINDS = ("orgs", "users", "API keys", "sessions", "failed sign-ins", "events",
             "tree nodes", "checkpoints", "log keys", "exports", "streams", "retention",
             "legal holds")


class WriteTx(Protocol):
    """One write transaction, for use inside its `with store.writing()` block: its writes,
    and every read a write depends on, on one connection, each read with the lock it names.

    A write the database refuses raises Conflict (naming what is taken, for a unique key);
    no driver exception leaves the store."""

    def lock_log(self, org_id: str) -> LogHead:
        """The org's log head, locked until the transaction ends (PostgreSQL: the org row,
        SELECT … FOR NO KEY UPDATE, which a row naming the org by a foreign key, such as a
        checkpoint, does not wait on); raises NotFound, and Conflict for a closed log."""

    def existing_events(self, org_id: str, ids: list[str]) -> dict[str, bytes]:
        """Of ids, those already stored: id -> canonical document (read under lock_log)."""

    def insert_events(self, rows: list[EventRow]) -> None:
        """Stores rows of one org whose log this transaction locked, and their full-text
        entries. Each row's key is one past the largest stored in its millisecond, read
        here, so the keys read stay locked until commit: SQLite's writer lock does it; on
        PostgreSQL, keys of each org's own (covered by lock_log) or a lock on the table."""

    def insert_tree_nodes(self, org_id: str, nodes: list[tuple[int, int, bytes]]) -> None:
        """Stores tree nodes (level, index, hash): leaves and complete subtrees."""

    def set_log_head(self, org_id: str, head: LogHead) -> None:
        """Records the org's new log head."""

    def lock_checkpoints(self, org_id: str) -> CheckpointRow | None:
        """The org's latest checkpoint, read under the org's signing lock, held until the
        transaction ends: a checkpoint is stored only after the one it was checked against
        (PostgreSQL: an advisory lock keyed by the org, which lock_log does not wait on and
        which does not wait on it; SQLite: the writer lock)."""

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        """Stores a checkpoint; False when one of that size was already stored."""

    def insert_log_key(self, vkey: str, created_at: int, retired_at: int | None) -> None:
        """Records a verifier key of the log as given; raises Conflict when it is known."""

    def create_org(self, *, org_id: str, name: str, created_at: int) -> Org:
        """A new org; raises Conflict if the id is taken. Its number (which names its
        full-text index) is the largest stored plus one, read here: the orgs table must stay
        locked against other new orgs until the transaction ends (SQLite: the writer lock)."""

    def lock_members(self, org_id: str) -> list[UserRow]:
        """The org's live users, oldest first, locked until the transaction ends
        (PostgreSQL: SELECT … FOR UPDATE), so that a rule checked over them (the org keeps
        an owner) still holds when the transaction commits."""

    def get_user(self, user_id: str) -> UserRow | None:
        """The user (live or removed), locked against change until the transaction ends
        (PostgreSQL: SELECT … FOR SHARE)."""

    def insert_user(self, row: UserRow) -> None:
        """Raises Conflict when a live user of the same org already has the email."""

    def set_user_role(self, *, org_id: str, user_id: str, role: str) -> UserRow:
        """Raises NotFound for a user of another org or one removed."""

    def remove_user(self, *, org_id: str, user_id: str, at: int) -> UserRow:
        """Marks the user removed and revokes their sessions; NotFound as set_user_role."""

    def insert_api_key(self, row: ApiKeyRow) -> None:
        """Stores the row as given (revoked_at and last_used_at too); raises Conflict when
        the key's id is taken."""

    def revoke_api_key(self, *, org_id: str, key_id: str, at: int) -> ApiKeyRow:
        """The key, revoked (at once, or already); raises NotFound for another org's key."""

    def revoke_api_keys_created_by(self, *, org_id: str, user_id: str,
                                   at: int) -> list[ApiKeyRow]:
        """Revokes the live keys of org_id that user_id made; returns them, oldest first."""

    def insert_session(self, token_hash: bytes, row: SessionRow) -> None:
        """Raises Conflict when the token or the session id is taken."""

    def revoke_session(self, token_hash: bytes, at: int) -> None: ...

    def record_login_attempt(self, org_id: str, email: str, at: int, *, since: int) -> int:
        """Counts a sign-in attempt for email in org_id as failed (until
        clear_login_failures) and returns how many failures of that org's email since
        `since` came before it; forgets older ones of every org.

        Concurrent attempts for the org's email wait on this transaction (SQLite: the writer
        lock; PostgreSQL: a lock on a row of the org and email, taken before the count), so
        that each attempt sees every attempt before it."""

    def clear_login_failures(self, org_id: str, email: str) -> None:
        """Forgets the failed sign-ins of email in org_id, and of no other org."""

    def insert_export(self, row: ExportRow) -> None:
        """Raises Conflict when the export's id is taken."""

    def lock_export(self, org_id: str, export_id: str) -> ExportRow | None:
        """The org's export, locked until the transaction ends (PostgreSQL: SELECT … FOR
        UPDATE); None when there is none."""

    def insert_stream(self, row: StreamRow) -> None:
        """Conflict when the org has a stream of row's id."""

    def lock_stream(self, org_id: str, stream_id: str) -> StreamRow | None:
        """The stream, its row locked until the transaction ends; None when there is none."""

    def update_stream(self, row: StreamRow) -> None:
        """Stores every column of row over the stream of its org and id (locked first)."""

    def delete_stream(self, org_id: str, stream_id: str) -> None: ...

    def lock_retention(self, org_id: str) -> RetentionRow:
        """The org's retention row, locked until the transaction ends (made with the
        defaults when it has none): whoever purges, or changes the policy, holds it."""

    def put_retention(self, row: RetentionRow) -> None:
        """Stores row over the org's retention row (locked first)."""

    def insert_hold(self, row: HoldRow) -> None:
        """Conflict when the org has a hold of row's id."""

    def lock_hold(self, org_id: str, hold_id: str) -> HoldRow | None: ...

    def update_hold(self, row: HoldRow) -> None: ...

    def list_holds(self, org_id: str) -> list[HoldRow]:
        """The org's legal holds, as Store.list_holds, on this transaction's connection."""

    def received_at(self, org_id: str, index: int) -> int | None:
        """When the org's event at index was received (µs), None when there is none."""

    def first_index_occurred_in(self, org_id: str, start: int, stop: int,
                                ranges: list[tuple[int | None, int | None]]) -> int | None:
        """The lowest index in [start, stop) of an event that occurred in one of ranges
        ([from, to), None open), or None."""

    def docs_at(self, org_id: str, indexes: list[int]) -> dict[int, StoredDoc]:
        """The org's events at those indexes that exist, on this transaction's connection."""

    def erase_events(self, org_id: str, tombstones: list[tuple[int, bytes]]) -> None:
        """Replaces each (index, tombstone) event's document by the tombstone and empties
        what its row holds of it (actor, resource, request, search tokens, search index
        entries); its id, times, category, result and leaf hash stay."""

    def close_org(self, org_id: str, at: int) -> None:
        """Marks the org's log closed (lock_log refuses it from then on) and deletes its API
        keys and sessions, so that nobody reaches it again."""

    def delete_org_rows(self, org_id: str) -> list[str]:
        """Deletes the org's users, exports, streams, retention policy, legal holds and
        sign-in failures (not its events, tree or checkpoints); returns the paths of the
        export files, for the caller to delete."""

    def delete_events(self, org_id: str, start: int, stop: int) -> int:
        """Removes the org's events of indexes [start, stop): rows, documents and search
        index entries (not their tree nodes: delete_tree_nodes); how many there were."""

    def checkpoint_sizes(self, org_id: str, start: int, stop: int,
                         limit: int | None = None) -> list[int]:
        """The sizes in [start, stop) of the org's checkpoints, smallest first, at most
        limit of them."""

    def delete_tree_nodes(self, org_id: str, ranges: list[tuple[int, int, int]]) -> int:
        """Deletes the org's tree nodes of indexes [start, stop) at each (level, start,
        stop); how many there were."""

    def cancel_export(self, *, org_id: str, export_id: str, now: int) -> ExportRow:
        """Cancels a queued or running job, its status read under lock_export; raises
        NotFound, or Conflict for a job that has ended."""

    def withdraw_export(self, org_id: str, export_id: str, now: int) -> ExportRow | None:
        """Ends an export whose file may hold what an erasure removed: a completed one
        expires, a queued or running one is cancelled; the row as it then is, None when it
        had ended otherwise."""


class Store(Protocol):
    """A Sealog database: SQLite file or PostgreSQL."""

    url: str
    # Events a purge transaction removes unless the operator says: few enough that ingest
    # never waits long behind one (SQLite's one writer: 250; PostgreSQL: 1,000).
    purge_batch: int

    def close(self) -> None: ...

    def ping(self) -> None:
        """Returns when the database answers; raises otherwise."""

    def writing(self, *, durable: bool = True, scrub: bool = False
                ) -> AbstractContextManager[WriteTx]:
        """A write transaction: committed on normal exit, rolled back on an exception;
        raises StorageFull when the disk is full, Conflict for a write the database refuses.

        durable=False commits without waiting for the disk: a crash of the machine may lose
        that commit (and others like it after the last durable one), never leave half of
        one. For bookkeeping that is redone when lost, such as a stream's cursor.
        scrub=True overwrites what the transaction deletes or replaces, where the backend
        can (SQLite's secure_delete), for erasure.

        Raises RuntimeError when this thread already has one open: what must be stored in
        a caller's transaction (a change and its audit event) takes that transaction."""

    def create_org(self, *, org_id: str, name: str, created_at: int) -> Org:
        """WriteTx.create_org in a transaction of its own."""

    def get_org(self, org_id: str) -> Org: ...

    def list_orgs(self) -> list[Org]: ...

    def insert_api_key(self, row: ApiKeyRow) -> None:
        """WriteTx.insert_api_key in a transaction of its own."""

    def get_api_key(self, key_id: str) -> ApiKeyRow | None: ...

    def list_api_keys(self, org_id: str) -> list[ApiKeyRow]: ...

    def revoke_api_key(self, *, org_id: str, key_id: str, at: int) -> ApiKeyRow:
        """WriteTx.revoke_api_key in a transaction of its own."""

    def touch_api_key(self, key_id: str, at: int) -> None: ...

    def insert_user(self, row: UserRow) -> None:
        """WriteTx.insert_user in a transaction of its own."""

    def get_user(self, user_id: str) -> UserRow | None: ...

    def user_with_email(self, org_id: str, email: str) -> UserRow | None:
        """The org's live user with this (lowercased) email; None when there is none."""

    def list_users(self, org_id: str) -> list[UserRow]:
        """The org's live users, oldest first (for display: a rule over them reads
        WriteTx.lock_members)."""

    def list_all_users(self, org_id: str) -> list[UserRow]:
        """The org's users, live and removed, oldest first."""

    def get_session(self, token_hash: bytes) -> SessionRow | None: ...

    def list_sessions(self, org_id: str) -> list[tuple[bytes, SessionRow]]:
        """(token hash, session) of every session of the org's users, ended ones too,
        oldest first."""

    def login_failures(self) -> list[tuple[str, str, int]]:
        """(org id, email, time) of every failed sign-in still counted, oldest first."""

    def record_login_attempt(self, org_id: str, email: str, at: int, *, since: int) -> int:
        """WriteTx.record_login_attempt in a transaction of its own."""

    def clear_login_failures(self, org_id: str, email: str) -> None:
        """WriteTx.clear_login_failures in a transaction of its own."""

    def get_event(self, org_id: str, event_id: str) -> StoredDoc | None: ...

    def list_events(
        self, flt: EventFilter, *, cursor: Cursor | None, limit: int,
        budget: float | None = None,
    ) -> list[StoredDoc]:
        """Up to limit events newest first (occurred_at desc, id desc) after cursor; raises
        QueryTooCostly past budget seconds of database work (None: no limit)."""

    def count_events(self, flt: EventFilter, *, budget: float | None = None) -> int:
        """The number of events flt selects; raises QueryTooCostly as list_events does."""

    def iter_events_by_index(
        self, org_id: str, start: int, stop: int
    ) -> Iterator[StoredDoc]:
        """Events with start <= index < stop in index order."""

    def iter_event_rows(self, org_id: str, start: int, stop: int) -> Iterator[EventRow]:
        """Events with start <= index < stop in index order, as whole rows that insert_events
        takes (see stored_event_row), in pages."""

    def prepare_for_events(self, *, received_from: int, received_until: int) -> None:
        """Readies the database for many events received between these times (PostgreSQL:
        the partition of each month between, made now, where upkeep would otherwise move
        them out of the DEFAULT partition later; SQLite: nothing to do)."""

    def log_head(self, org_id: str) -> LogHead:
        """The org's log head as committed; raises NotFound."""

    def read_tree_nodes(
        self, org_id: str, wanted: list[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Stored hashes of the (level, index) tree nodes asked for."""

    def read_tree_range(
        self, org_id: str, level: int, start: int, stop: int
    ) -> dict[tuple[int, int], bytes]:
        """Stored nodes of one level with start <= index < stop."""

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        """WriteTx.insert_checkpoint in a transaction of its own, without the signing lock
        (ledger.checkpoint.sign_latest takes it)."""

    def latest_checkpoint(self, org_id: str) -> CheckpointRow | None: ...

    def iter_checkpoints(self, org_id: str) -> Iterator[CheckpointRow]:
        """Every checkpoint of the org, smallest first, in pages."""

    def orgs_behind_checkpoint(self) -> list[str]:
        """Orgs whose log has grown past their latest checkpoint."""

    def add_log_key(self, vkey: str, at: int) -> None:
        """Records a verifier key of the log (no-op when known)."""

    def retire_log_key(self, vkey: str, at: int) -> None: ...

    def log_keys(self) -> list[tuple[str, int, int | None]]:
        """(verifier key, created_at, retired_at) of every key the log has used."""

    def row_counts(self) -> dict[str, int]:
        """How many of each kind of thing the database holds, by ROW_KINDS' names (failed
        sign-ins counted one by one)."""

    def iter_events_ascending(self, flt: EventFilter, *, batch: int = 1000
                              ) -> Iterator[StoredDoc]:
        """Every event flt selects, oldest first (occurred_at, then id), in pages."""

    def iter_events_in_index_order(self, flt: EventFilter, *, batch: int = 1000
                                   ) -> Iterator[StoredDoc]:
        """Every event flt selects, in index order (the log's own), in pages."""

    def get_export(self, org_id: str, export_id: str) -> ExportRow | None: ...

    def list_exports(self, org_id: str) -> list[ExportRow]:
        """The org's exports, newest first."""

    def claim_export(self, *, owner: str, now: int, lease_us: int) -> ExportRow | None:
        """Atomically leases the oldest queued job, or one whose lease expired: one
        statement, whose choice of job locks it against other workers (PostgreSQL: FOR
        UPDATE SKIP LOCKED)."""

    def renew_export(self, *, export_id: str, owner: str, now: int, lease_us: int,
                     progress: float) -> bool:
        """Extends owner's lease and records progress; False once the job is not owner's
        (one conditional update, so a cancel or a takeover in between wins)."""

    def finish_export(self, *, export_id: str, owner: str, status: str, finished_at: int,
                      progress: float | None = None, row_count: int | None = None,
                      size_bytes: int | None = None, sha256: str | None = None,
                      error: str | None = None, expires_at: int | None = None,
                      file_path: str | None = None) -> bool:
        """Ends owner's job with status and these values (progress None: as it was); False
        when it was not owner's (one conditional update, as renew_export)."""

    def expire_exports(self, now: int) -> list[ExportRow]:
        """Marks completed exports past their expiry as expired; returns them."""

    def get_stream(self, org_id: str, stream_id: str) -> StreamRow | None: ...

    def list_streams(self, org_id: str) -> list[StreamRow]:
        """The org's streams, oldest first."""

    def get_retention(self, org_id: str) -> RetentionRow | None:
        """The org's retention row; None when it has none (keep forever, nothing removed)."""

    def scrub_erased(self, org_id: str, received_us: list[int]) -> None:
        """After an erasure committed, removes what is left of the erased content outside the
        tables' live rows: SQLite's old search index segments and write-ahead log;
        PostgreSQL's dead row versions in the partitions of those received times (VACUUM)."""

    def release_emptied_storage(self, *, pause: float = 0,
                                stop: threading.Event | None = None,
                                scrub: bool = False) -> list[str]:
        """Makes the storage that purges emptied reusable, or gives it back, where the
        backend does not by itself (PostgreSQL: drops the month partitions that no longer
        hold a row, vacuums the tree's table once purges deleted a tenth of it; SQLite:
        merges a full-text index that deletes left holding a quarter more entries, or
        indexes an org's few kept events again, a transaction at a time, pause seconds
        apart, until stop is set; scrub: overwriting what it frees); what it released,
        named."""

    def retention_work(self) -> list[str]:
        """The orgs whose policy keeps less than forever, or whose purge is under way."""

    def list_holds(self, org_id: str) -> list[HoldRow]:
        """The org's legal holds, released ones too, oldest first."""

    def claim_streams(self, *, owner: str, now: int, lease_us: int, limit: int
                      ) -> list[StreamRow]:
        """Atomically leases a stream with events to deliver (active or failing, due: no
        retry_at in the future, its lease free or expired, its cursor behind its org's log;
        the one due longest), and the other due streams of its org whose cursor is at the
        same index, up to limit in all, that no other worker holds; none when none is due."""


class OneCallWrites:
    """The Store methods that are one WriteTx call in a transaction of their own, written
    once for every backend on top of its writing()."""

    def writing(self, *, durable: bool = True, scrub: bool = False
                ) -> AbstractContextManager[WriteTx]:
        raise NotImplementedError

    def create_org(self, *, org_id: str, name: str, created_at: int) -> Org:
        with self.writing() as tx:
            return tx.create_org(org_id=org_id, name=name, created_at=created_at)

    def insert_api_key(self, row: ApiKeyRow) -> None:
        with self.writing() as tx:
            tx.insert_api_key(row)

    def revoke_api_key(self, *, org_id: str, key_id: str, at: int) -> ApiKeyRow:
        with self.writing() as tx:
            return tx.revoke_api_key(org_id=org_id, key_id=key_id, at=at)

    def insert_user(self, row: UserRow) -> None:
        with self.writing() as tx:
            tx.insert_user(row)

    def insert_checkpoint(self, row: CheckpointRow) -> bool:
        with self.writing() as tx:
            return tx.insert_checkpoint(row)

    def record_login_attempt(self, org_id: str, email: str, at: int, *, since: int) -> int:
        with self.writing() as tx:
            return tx.record_login_attempt(org_id, email, at, since=since)

    def clear_login_failures(self, org_id: str, email: str) -> None:
        with self.writing() as tx:
            tx.clear_login_failures(org_id, email)
