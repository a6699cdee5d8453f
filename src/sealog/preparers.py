"""Processes that validate and prepare events beside the one that stores them.

Validating, redacting, indexing and canonicalising an event is Python work that holds the
interpreter's lock; storing it is mostly SQLite's, which does not. In one process the two
take turns. With preparers, ingest hands a batch to a preparing process, which sends it
back prepared a chunk at a time, and stores each chunk while the next is prepared: both
halves run at once, on two cores. The result is the same as preparing in-process (tested
byte for byte); a batch is still stored in one transaction, or not at all.
"""

from __future__ import annotations

import collections
import contextlib
import marshal
import multiprocessing
import os
import pickle
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from sealog import events
from sealog.events import EventValidationError, FieldError, Redactor
from sealog.sealing import Sealable, prepare_events

# Events a preparing process takes at a time: 16 first, so that storing starts soon,
# then 32, then 64, so that messages are few.
CHUNK_EVENTS = (16, 32, 64)
# Chunks sent ahead to a preparing process, so that it always has the next to work on.
IN_FLIGHT = 4
# Events this process prepares at a time itself, the next not yet sent, rather than wait.
HERE_EVENTS = 16
# Batches this small are prepared in-process: the round trip would cost more than it saves.
MIN_EVENTS = 32
# Pipe capacity asked for, so that a preparing process can send its replies ahead
# without waiting for the storing process to read (Linux; elsewhere the default stays).
_PIPE_BYTES = 1 << 20


class PreparerFailed(RuntimeError):
    """Raised when a preparing process fails or exits before finishing a batch; nothing
    of the batch is stored, and the next batch gets a new process."""


def default_processes() -> int:
    """One preparing process where there is a second core to run it on, else none."""
    return 1 if (os.cpu_count() or 1) >= 2 else 0


class _Preparer:
    """One preparing process and the two pipes to it."""

    def __init__(self, secret_keys: tuple[str, ...]):
        context = multiprocessing.get_context("spawn")  # safe beside threads, on every OS
        jobs_in, self.jobs = context.Pipe(duplex=False)
        self.results, results_out = context.Pipe(duplex=False)
        for conn in (self.jobs, self.results):
            _widen(conn)
        self.process = context.Process(
            target=_serve, args=(jobs_in, results_out, secret_keys),
            name="sealog-preparer", daemon=True,
        )
        self.process.start()
        # The child holds its own ends now; closing ours lets a read see the child's exit.
        jobs_in.close()
        results_out.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.jobs.send_bytes(b"")
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.jobs.close()
        self.results.close()


def _widen(conn: Connection) -> None:
    try:
        import fcntl
    except ImportError:  # not a Unix
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(conn.fileno(), set_size, _PIPE_BYTES)


class Preparers:
    """A pool of preparing processes for ingest(preparers=...); safe to share between
    threads. Each batch is prepared by one process; with none free, a batch waits."""

    def __init__(self, processes: int = 1, *, redactor: Redactor):
        if processes < 1:
            raise ValueError("preparers need at least one process")
        self.redactor = redactor
        self._idle: queue.SimpleQueue[_Preparer | None] = queue.SimpleQueue()
        self._all: list[_Preparer] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(processes):
            self._idle.put(None)  # started when first needed

    def takes(self, raw_events: Any, redactor: Redactor) -> bool:
        """Whether a batch is worth sending to a preparing process (else prepare in-process)."""
        if redactor.names != self.redactor.names:
            raise ValueError("these preparers redact other keys than the redactor given")
        return isinstance(raw_events, list) and MIN_EVENTS <= len(raw_events)

    @contextlib.contextmanager
    def preparing(self, raw_events: list[Any], *, org_id: str, received_at_us: int,
                  recorded_by: dict[str, Any]) -> Iterator[Iterator[list[Sealable]]]:
        """The batch's prepared events, a chunk at a time, as a preparing process makes them.

        The iterator raises EventValidationError (naming every problem of the batch) after
        the last good chunk when any event is invalid, and PreparerFailed when the process
        fails. The process is free for the next batch once the last chunk is read, before
        the caller commits. Leaving early (an error while storing) reads the replies still
        due first.
        """
        events.check_batch(raw_events)
        batch = _Batch(self._take(), raw_events, org_id, received_at_us, recorded_by,
                       self.redactor, release=self._release)
        try:
            # The process starts on the batch while the caller waits for the write lock
            # (another batch may be committing).
            batch.feed()
            yield batch.chunks()
        finally:
            batch.finish()

    def _release(self, preparer: _Preparer, *, broken: bool) -> None:
        if broken or not preparer.process.is_alive():
            self._discard(preparer)
        else:
            self._idle.put(preparer)

    def _take(self) -> _Preparer:
        if self._closed:
            raise RuntimeError("the preparers are closed")
        preparer = self._idle.get()
        if preparer is None:
            try:
                preparer = _Preparer(self.redactor.names)
            except BaseException:
                self._idle.put(None)
                raise
            with self._lock:
                self._all.append(preparer)
        return preparer

    def _discard(self, preparer: _Preparer) -> None:
        with self._lock:
            if preparer in self._all:
                self._all.remove(preparer)
        preparer.close()
        self._idle.put(None)

    def close(self) -> None:
        """Stops the processes; batches after this are refused."""
        self._closed = True
        with self._lock:
            running, self._all = self._all, []
        for preparer in running:
            preparer.close()

    def __enter__(self) -> Preparers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Batch:
    """One batch on its way through a preparing process, in pieces taken in order: the
    process gets the next piece while it has fewer than IN_FLIGHT to work on, and whenever
    this process would wait for one, it prepares the next piece itself. The pieces are
    stored in order, as they come."""

    def __init__(self, preparer: _Preparer, raw_events: list[Any], org_id: str,
                 received_at_us: int, recorded_by: dict[str, Any], redactor: Redactor, *,
                 release: Callable[..., None]):
        self.preparer = preparer
        self.raw_events = raw_events
        self.org_id = org_id
        self.received_at_us = received_at_us
        self.recorded_by = recorded_by
        self.redactor = redactor
        self.release = release
        self.released = False
        self.end = len(raw_events)
        self.taken = 0  # events before it are sent to the process or prepared here
        # In batch order: each piece's bounds and, once prepared here, its reply (None
        # while the process has it).
        self.pieces: collections.deque[tuple[int, int, tuple | None]] = collections.deque()
        self.sent = 0
        self.in_flight = 0
        self.broken = False

    def chunks(self) -> Iterator[list[Sealable]]:
        errors: list[FieldError] = []
        while self.pieces:
            start, stop, reply = self.pieces.popleft()
            if reply is None:
                # Stored in its turn, after the pieces the process already has to work on.
                while self.taken < self.end and not self._reply_ready():
                    here, self.taken = self.taken, min(self.end, self.taken + HERE_EVENTS)
                    self.pieces.append((here, self.taken, self._prepare_here(here, self.taken)))
                reply = self._receive()
                self.feed()
            if not self.in_flight and self.taken == self.end:
                self.finish()  # the process is free for the next batch while this one stores
            yield from self._take(start, stop, reply, errors)
        if errors:
            raise EventValidationError(errors)

    def _take(self, start: int, stop: int, reply: tuple,
              errors: list[FieldError]) -> Iterator[list[Sealable]]:
        kind, payload = reply
        if kind == "unreadable":  # the process could not unpickle the chunk
            kind, payload = self._prepare_here(start, stop)
        if kind == "crashed":
            self.broken = True
            self.finish()
            raise PreparerFailed(f"the preparing process failed:\n{payload}")
        if kind == "invalid":
            errors += [FieldError(None if i is None else start + i, f, m)
                       for i, f, m in payload]
        elif not errors:  # once one is invalid, the batch is refused: store no more
            yield payload

    def _reply_ready(self) -> bool:
        """Whether the process's next reply has come."""
        return self.preparer.results.poll()

    def feed(self) -> None:
        """Sends the next pieces until the process has IN_FLIGHT to work on; the first
        ones small, so that storing starts soon."""
        while self.taken < self.end and not self.broken and self.in_flight < IN_FLIGHT:
            start = self.taken
            size = CHUNK_EVENTS[min(len(CHUNK_EVENTS) - 1, self.sent)]
            self.sent += 1
            stop = self.taken = min(self.end, start + size)
            try:
                request = pickle.dumps((self.raw_events[start:stop], self.org_id,
                                        self.received_at_us, self.recorded_by),
                                       pickle.HIGHEST_PROTOCOL)
            except Exception:  # not plain data: preparing it here names what is wrong
                self.pieces.append((start, stop, self._prepare_here(start, stop)))
                continue
            try:
                self.preparer.jobs.send_bytes(request)
            except OSError as exc:
                self.broken = True
                raise PreparerFailed(f"the preparing process is gone: {exc}") from None
            self.pieces.append((start, stop, None))
            self.in_flight += 1

    def _prepare_here(self, start: int, stop: int) -> tuple:
        return _prepare(self.raw_events[start:stop], self.org_id, self.received_at_us,
                        self.recorded_by, self.redactor)

    def _receive(self) -> tuple:
        self.in_flight -= 1
        try:
            return _load_reply(self.preparer.results.recv_bytes())
        except (EOFError, OSError) as exc:
            self.broken = True
            raise PreparerFailed(
                f"the preparing process exited before finishing the batch ({exc!r})"
            ) from None

    def finish(self) -> None:
        """Reads the replies still due (so the process is free again) and gives it back."""
        if self.released:
            return
        while self.in_flight and not self.broken:
            with contextlib.suppress(PreparerFailed):
                self._receive()
        self.released = True
        self.release(self.preparer, broken=self.broken)


def _prepare(raw_events: list[Any], org_id: str, received_at_us: int,
             recorded_by: dict[str, Any], redactor: Redactor) -> tuple[str, Any]:
    """A preparing process's reply to a chunk: ("prepared", the chunk's events) or
    ("invalid", (index in the chunk, field, message) of every problem)."""
    try:
        return "prepared", prepare_events(raw_events, org_id=org_id,
                                          received_at_us=received_at_us,
                                          recorded_by=recorded_by, redactor=redactor)
    except EventValidationError as exc:
        return "invalid", [(e.index, e.field, e.message) for e in exc.errors]


def _dump_reply(reply: tuple[str, Any]) -> bytes:
    """A reply's bytes. Marshal, several times faster than pickle here: a reply holds only
    tuples, lists, str, bytes, int, bool and None (validation gives plain str, not the
    subclasses it was given)."""
    kind, payload = reply
    if kind == "prepared":
        payload = [tuple(item) for item in payload]
    return marshal.dumps((kind, payload))


def _load_reply(data: bytes) -> tuple[str, Any]:
    kind, payload = marshal.loads(data)
    if kind == "prepared":
        payload = list(map(Sealable._make, payload))
    return kind, payload


def _serve(jobs: Connection, results: Connection, secret_keys: tuple[str, ...]) -> None:
    """A preparing process: prepares chunks of events and sends each back, in order.
    Stops at an empty message or when the pipe closes."""
    redactor = Redactor(secret_keys)
    # Requests are read as they come, by a thread of their own: then the sender never
    # waits on a full pipe while this process waits to send it a reply (a deadlock).
    requests: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(jobs, requests), daemon=True).start()
    while request := requests.get():
        try:
            try:
                raw_events, org_id, received_at_us, recorded_by = pickle.loads(request)
            except Exception:  # noqa: BLE001 - e.g. a class this process cannot import
                results.send_bytes(_dump_reply(("unreadable", traceback.format_exc())))
                continue
            results.send_bytes(_dump_reply(_prepare(raw_events, org_id, received_at_us,
                                                    recorded_by, redactor)))
        except (BrokenPipeError, EOFError):
            return
        except BaseException:  # reported to the batch's caller, which stores nothing
            results.send_bytes(_dump_reply(("crashed", traceback.format_exc())))


def _read_requests(jobs: Connection, requests: queue.SimpleQueue[bytes]) -> None:
    try:
        while request := jobs.recv_bytes():
            requests.put(request)
    except (EOFError, OSError):
        pass
    requests.put(b"")
