"""Send audit events to a Sealog server: batching, retries, a bounded buffer, an optional spool.

`record()` only checks and queues an event; a background thread sends batches to
`POST /api/v1/events`, retrying network errors, 429 and 5xx with exponential backoff
and jitter (honouring Retry-After) and never retrying a 4xx. Ids are UUIDv7 made here,
so a batch re-sent after an unknown outcome is stored once (the server answers
`duplicate: true`).
"""

from __future__ import annotations

import asyncio
import atexit
import email.utils
import gzip
import logging
import random
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import uuid_utils

from sealog import __version__, times
from sealog.events import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, Redactor, validate_events

log = logging.getLogger("sealog.client")

WhenFull = Literal["block", "raise"]
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507})
# Room for the batch envelope `{"events":[...]}` and commas inside the server's 10 MiB.
_MAX_BATCH_BODY = MAX_BATCH_BYTES - 64 * 1024


class BufferFull(Exception):
    """Raised by record() when the buffer is full (at once, or after block_timeout)."""


class EventTooLarge(ValueError):
    """Raised by record() for an event whose JSON alone passes the server's batch limit."""


@dataclass(frozen=True)
class Rejection:
    """An event the server refused (a 4xx), with the server's problem details."""

    event: dict[str, Any]
    status: int
    message: str
    problem: dict[str, Any]


class DeliveryError(Exception):
    """Raised by flush() and close() when the server refused events since the last flush."""

    def __init__(self, rejections: list[Rejection]):
        self.rejections = rejections
        first = rejections[0]
        super().__init__(
            f"the server refused {len(rejections)} event(s); first: {first.status} "
            f"{first.message} (event {first.event.get('id')})"
        )


class _MemoryQueue:
    """Events in memory, oldest first; lost if the process ends before they are sent."""

    def __init__(self) -> None:
        self._items: deque[tuple[int, bytes]] = deque()
        self._next = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, body: bytes) -> None:
        self._items.append((self._next, body))
        self._next += 1

    def peek(self, count: int) -> list[tuple[int, bytes]]:
        return [self._items[i] for i in range(min(count, len(self._items)))]

    def remove(self, keys: list[int]) -> None:
        gone = set(keys)
        while self._items and self._items[0][0] in gone:
            gone.discard(self._items.popleft()[0])
        if gone:
            self._items = deque(item for item in self._items if item[0] not in gone)

    def close(self) -> None:
        pass


class _SpoolQueue:
    """Events in a SQLite file, oldest first; they survive a restart of the process."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB)"
        )
        self._count = self._db.execute("SELECT count(*) FROM spool").fetchone()[0]

    def __len__(self) -> int:
        return self._count

    def put(self, body: bytes) -> None:
        self._db.execute("INSERT INTO spool (body) VALUES (?)", (body,))
        self._count += 1

    def peek(self, count: int) -> list[tuple[int, bytes]]:
        return self._db.execute(
            "SELECT seq, body FROM spool ORDER BY seq LIMIT ?", (count,)
        ).fetchall()

    def remove(self, keys: list[int]) -> None:
        self._db.executemany("DELETE FROM spool WHERE seq = ?", [(k,) for k in keys])
        self._count -= len(keys)

    def close(self) -> None:
        self._db.close()


def _dumps(event: dict[str, Any]) -> bytes:
    """The event's JSON; integers past 64 bits, which orjson refuses, written exactly too."""
    try:
        return orjson.dumps(event)
    except TypeError as exc:
        try:
            return orjson.dumps(_exact_big_integers(event))
        except (TypeError, ValueError, RecursionError):
            raise exc from None


def _exact_big_integers(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _exact_big_integers(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_exact_big_integers(v) for v in value]
    if kind is int and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value).encode())
    return value


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class SealogClient:
    """A thread-safe producer of audit events for one org (the API key's).

    The buffer holds at most max_buffer events; when it is full, record() waits up to
    block_timeout seconds (when_full="block") or raises BufferFull at once ("raise").
    With spool set to a file path, the buffer lives in that SQLite file instead of memory,
    so events recorded while the server is down survive a restart of the app.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        when_full: WhenFull = "block",
        block_timeout: float = 5.0,
        spool: str | Path | None = None,
        validate: bool = True,
        timeout: float = 10.0,
        max_backoff: float = 30.0,
        exit_timeout: float = 5.0,
        on_rejected: Callable[[Rejection], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        compress: bool = False,
    ):
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_EVENTS}, not {batch_size}")
        if max_buffer < batch_size:
            raise ValueError(f"max_buffer ({max_buffer}) must be at least batch_size "
                             f"({batch_size})")
        if when_full not in ("block", "raise"):
            raise ValueError(f'when_full must be "block" or "raise", not {when_full!r}')
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.when_full = when_full
        self.block_timeout = block_timeout
        self.validate = validate
        self.max_backoff = max_backoff
        self.on_rejected = on_rejected or _log_rejection
        self.compress = compress
        self.requests_sent = 0
        self._queue: _MemoryQueue | _SpoolQueue = (
            _SpoolQueue(Path(spool)) if spool is not None else _MemoryQueue()
        )
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1/",
            headers={"Authorization": f"Bearer {api_key}",
                     "Content-Type": "application/json",
                     "User-Agent": f"sealog-python/{__version__}",
                     **({"Content-Encoding": "gzip"} if compress else {})},
            timeout=timeout, transport=transport,
        )
        self._redactor = Redactor()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._oldest_at: float | None = time.monotonic() if len(self._queue) else None
        self._in_flight = 0
        self._flush_wanted = 0
        self._closing = False
        self._give_up = threading.Event()
        self._rejections: list[Rejection] = []
        self._sender = threading.Thread(target=self._run, name="sealog-client", daemon=True)
        self._sender.start()
        self._exit_timeout = exit_timeout
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- recording ---------------------------------------------------------------------

    def record(
        self,
        action: str,
        *,
        actor: dict[str, Any],
        result: str = "success",
        category: str | None = None,
        event_type: str | None = None,
        description: str | None = None,
        resource: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        occurred_at: str | None = None,
        id: str | None = None,
    ) -> str:
        """Queue one event and give its id; raises EventValidationError for a bad event."""
        event = {"action": action, "actor": actor, "result": result}
        optional = {"category": category, "event_type": event_type,
                    "description": description, "resource": resource, "request": request,
                    "context": context, "metadata": metadata, "occurred_at": occurred_at,
                    "id": id}
        event.update((k, v) for k, v in optional.items() if v is not None)
        return self.record_event(event)

    def record_event(self, event: dict[str, Any], *, block: bool | None = None) -> str:
        """Queue an event given as the API's JSON object; block overrides when_full."""
        body, event_id = self._encode(event)
        self._put(body, self.when_full == "block" if block is None else block)
        return event_id

    def _encode(self, event: dict[str, Any]) -> tuple[bytes, str]:
        event = dict(event)
        event.setdefault("id", str(uuid_utils.uuid7()))
        now = times.now_us()
        event.setdefault("occurred_at", times.format_rfc3339(now))
        if self.validate:
            validate_events([event], received_at_us=now, redactor=self._redactor)
        body = _dumps(event)
        if len(body) > _MAX_BATCH_BODY:
            raise EventTooLarge(f"event {event['id']} is {len(body)} bytes of JSON; a batch "
                                f"holds at most {_MAX_BATCH_BODY}")
        return body, event["id"]

    def _put(self, body: bytes, block: bool) -> None:
        with self._changed:
            if self._closing:
                raise RuntimeError("this SealogClient is closed")
            if len(self._queue) >= self.max_buffer:
                if not block:
                    raise BufferFull(f"the buffer holds {self.max_buffer} unsent events")
                deadline = time.monotonic() + self.block_timeout
                while len(self._queue) >= self.max_buffer:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closing:
                        raise BufferFull(f"the buffer stayed full ({self.max_buffer} unsent "
                                         f"events) for {self.block_timeout} s")
                    self._changed.wait(left)
            self._queue.put(body)
            if self._oldest_at is None:
                self._oldest_at = time.monotonic()
                self._changed.notify_all()  # the sender now has a deadline to wait for
            elif len(self._queue) >= self.batch_size:
                self._changed.notify_all()

    @property
    def pending(self) -> int:
        """Events recorded and not yet delivered or refused."""
        with self._lock:
            return len(self._queue)

    # -- flushing and closing ----------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event recorded so far is delivered or refused.

        Raises TimeoutError if events are still unsent after timeout seconds, and
        DeliveryError if the server refused any event since the last flush.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._flush_wanted += 1
            self._changed.notify_all()
            try:
                while len(self._queue) or self._in_flight:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"{len(self._queue)} event(s) not yet delivered "
                                           f"after {timeout} s")
                    if not self._sender.is_alive():
                        raise RuntimeError("the sender thread has stopped")
                    self._changed.wait(left)
            finally:
                self._flush_wanted -= 1
            rejections, self._rejections = self._rejections, []
        if rejections:
            raise DeliveryError(rejections)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush (up to timeout seconds), then stop; unsent spooled events stay in the spool.

        Raises like flush(); events still in a memory buffer then are lost, and said so.
        """
        with self._lock:
            if self._closing:
                return
        try:
            self.flush(timeout)
        finally:
            with self._changed:
                self._closing = True
                self._give_up.set()
                self._changed.notify_all()
            self._sender.join()
            self._http.close()
            left = len(self._queue)
            if left and isinstance(self._queue, _MemoryQueue):
                log.error("sealog client closed with %d undelivered event(s); they are lost "
                          "(set spool= to keep them across restarts)", left)
            elif left:
                log.warning("sealog client closed with %d event(s) kept in the spool", left)
            self._queue.close()

    def __enter__(self) -> SealogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending (the background thread) -----------------------------------------------

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closing and not self._batch_due():
                    self._changed.wait(self._wait_time())
                if self._closing:
                    return
                batch = self._queue.peek(self.batch_size)
                self._in_flight = len(batch)
            try:
                self._deliver(batch)
            except Exception:  # a bug here must not stop delivery for good
                log.exception("sealog client: unexpected error while sending; will retry")
                self._give_up.wait(1.0)
            finally:
                with self._changed:
                    self._in_flight = 0
                    self._oldest_at = time.monotonic() if len(self._queue) else None
                    self._changed.notify_all()

    def _batch_due(self) -> bool:
        if not len(self._queue):
            return False
        if self._flush_wanted or len(self._queue) >= self.batch_size:
            return True
        return time.monotonic() - (self._oldest_at or 0) >= self.flush_interval

    def _wait_time(self) -> float | None:
        if self._oldest_at is None:
            return None
        return max(0.001, self.flush_interval - (time.monotonic() - self._oldest_at))

    def _deliver(self, batch: list[tuple[int, bytes]]) -> None:
        """Send batch until each event is stored or refused; split it to fit the size limit."""
        chunks: list[list[tuple[int, bytes]]] = [[]]
        size = 0
        for item in batch:
            if chunks[-1] and size + len(item[1]) + 1 > _MAX_BATCH_BODY:
                chunks.append([])
                size = 0
            chunks[-1].append(item)
            size += len(item[1]) + 1
        for chunk in chunks:
            unsent: list[tuple[int, bytes]] | None = chunk
            while unsent:
                unsent = self._post(unsent)
                if unsent is None:
                    return  # closing: the rest stays queued

    def _post(self, chunk: list[tuple[int, bytes]]) -> list[tuple[int, bytes]] | None:
        """Post chunk, retrying transient failures; gives the events left to re-send."""
        body = b'{"events":[' + b",".join(b for _, b in chunk) + b"]}"
        if self.compress:  # the server's size limit is on the decompressed body
            body = gzip.compress(body, compresslevel=1, mtime=0)
        attempt = 0
        while True:
            try:
                self.requests_sent += 1
                response = self._http.post("events", content=body)
            except httpx.TransportError as exc:
                delay, why = None, f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    self._done([k for k, _ in chunk])
                    return []
                if response.status_code not in _RETRY_STATUSES:
                    return self._refused(chunk, response)
                delay, why = _retry_after(response), f"HTTP {response.status_code}"
            attempt += 1
            if delay is None:
                delay = random.uniform(0, min(self.max_backoff, 0.25 * 2 ** min(attempt, 16)))
            log.warning("sealog client: sending %d event(s) failed (%s); retry %d in %.2f s",
                        len(chunk), why, attempt, delay)
            if self._give_up.wait(delay):
                return None

    def _refused(self, chunk: list[tuple[int, bytes]],
                 response: httpx.Response) -> list[tuple[int, bytes]]:
        """Report the events a 4xx names (all of them if it names none); give the rest."""
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            problem = {"status": response.status_code, "detail": response.text[:500]}
        named: dict[int, str] = {}
        for error in problem.get("errors") or []:
            index = error.get("index") if isinstance(error, dict) else None
            if isinstance(index, int) and 0 <= index < len(chunk):
                message = f"{error.get('field')}: {error.get('message')}"
                named[index] = f"{named[index]}; {message}" if index in named else message
        if not named:
            detail = problem.get("detail") or problem.get("title") or response.reason_phrase
            named = dict.fromkeys(range(len(chunk)), str(detail))
        rejections = [
            Rejection(orjson.loads(chunk[i][1]), response.status_code, message, problem)
            for i, message in sorted(named.items())
        ]
        self._done([chunk[i][0] for i in named])
        with self._lock:
            self._rejections.extend(rejections)
        for rejection in rejections:
            try:
                self.on_rejected(rejection)
            except Exception:
                log.exception("sealog client: on_rejected raised")
        return [item for i, item in enumerate(chunk) if i not in named]

    def _done(self, keys: list[int]) -> None:
        with self._changed:
            self._queue.remove(keys)
            self._in_flight -= len(keys)
            self._changed.notify_all()


def _log_rejection(rejection: Rejection) -> None:
    log.error("sealog refused event %s (%s %s): %s", rejection.event.get("id"),
              rejection.event.get("action"), rejection.status, rejection.message)


def _close_at_exit(ref: weakref.ref[SealogClient]) -> None:
    client = ref()
    if client is None:
        return
    try:
        client.close(timeout=client._exit_timeout)
    except Exception as exc:
        log.error("sealog client at exit: %s", exc)


class AsyncSealogClient:
    """The asyncio face of SealogClient: awaiting never blocks the event loop.

    Sending runs on the client's own thread (as in SealogClient), so batches keep going
    out while the loop is busy and are flushed at interpreter exit even after it stops.
    """

    def __init__(self, url: str, api_key: str, **options: Any):
        self._client = SealogClient(url, api_key, **options)

    @property
    def pending(self) -> int:
        return self._client.pending

    @property
    def requests_sent(self) -> int:
        return self._client.requests_sent

    async def record(self, action: str, *, actor: dict[str, Any], **fields: Any) -> str:
        """Queue one event and give its id; waits (without blocking the loop) when full."""
        event = {"action": action, "actor": actor, "result": fields.pop("result", "success")}
        event.update((k, v) for k, v in fields.items() if v is not None)
        return await self.record_event(event)

    async def record_event(self, event: dict[str, Any]) -> str:
        """Queue an event given as the API's JSON object."""
        try:
            return self._client.record_event(event, block=False)
        except BufferFull:
            if self._client.when_full == "raise":
                raise
        return await asyncio.to_thread(self._client.record_event, event, block=True)

    async def flush(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self._client.flush, timeout)

    async def close(self, timeout: float | None = 10.0) -> None:
        await asyncio.to_thread(self._client.close, timeout)

    async def __aenter__(self) -> AsyncSealogClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
