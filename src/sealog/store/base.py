"""The storage interface every backend implements, and the rows that cross it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from sealog.search import Cursor, EventFilter


class NotFound(LookupError):
    """Raised when a row does not exist (or belongs to another org)."""


class Conflict(ValueError):
    """Raised when a write contradicts what is stored, e.g. a re-used id with other content."""


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    created_at: int
    log_size: int


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


class EventRow(NamedTuple):
    """One sealed event as stored: index columns, hashes and the canonical document."""

    org_id: str
    index: int
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
    keys_text: str
    doc: bytes


@dataclass(frozen=True)
class StoredDoc:
    """What reads return: the canonical document and its leaf hash."""

    doc: bytes
    leaf_hash: bytes
    occurred_us: int
    id: str
    index: int


class WriteTx(Protocol):
    """One write transaction; on PostgreSQL the org row stays locked until commit."""

    def lock_log(self, org_id: str) -> int:
        """The org's log size, locked for this transaction; raises NotFound."""

    def existing_events(self, org_id: str, ids: list[str]) -> dict[str, bytes]:
        """Of ids, those already stored: id -> canonical document."""

    def insert_events(self, rows: list[EventRow]) -> None:
        """Stores rows and their full-text entries."""

    def set_log_size(self, org_id: str, size: int) -> None:
        """Records the org's new log size."""


class Store(Protocol):
    """A Sealog database: SQLite file or PostgreSQL."""

    url: str

    def close(self) -> None: ...

    def ping(self) -> None:
        """Returns when the database answers; raises otherwise."""

    def writing(self) -> AbstractContextManager[WriteTx]:
        """A write transaction: committed on normal exit, rolled back on an exception."""

    def create_org(self, *, org_id: str, name: str, created_at: int) -> Org: ...

    def get_org(self, org_id: str) -> Org: ...

    def list_orgs(self) -> list[Org]: ...

    def insert_api_key(self, row: ApiKeyRow) -> None: ...

    def get_api_key(self, key_id: str) -> ApiKeyRow | None: ...

    def list_api_keys(self, org_id: str) -> list[ApiKeyRow]: ...

    def revoke_api_key(self, *, org_id: str, key_id: str, at: int) -> ApiKeyRow: ...

    def touch_api_key(self, key_id: str, at: int) -> None: ...

    def get_event(self, org_id: str, event_id: str) -> StoredDoc | None: ...

    def list_events(
        self, flt: EventFilter, *, cursor: Cursor | None, limit: int
    ) -> list[StoredDoc]:
        """Up to limit events newest first (occurred_at desc, id desc) after cursor."""

    def count_events(self, flt: EventFilter) -> int: ...

    def iter_events_by_index(
        self, org_id: str, start: int, stop: int
    ) -> Iterator[StoredDoc]:
        """Events with start <= index < stop in index order."""
