"""Delivering streams: a worker leases a due stream, sends the next batch of its org's log
from the stream's cursor (to a webhook, or to a syslog receiver), and moves the cursor past
it only once the destination took it (at least once, in index order). Each batch carries
the signed checkpoint that covers its last event, so that a receiver can verify every event
with the log's pinned key."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import email.utils
import functools
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import orjson
import uuid_utils

from sealog import events, search, times
from sealog.config import Settings
from sealog.ledger import checkpoint
from sealog.ledger.note import Signer
from sealog.ledger.tree import ProofMaker
from sealog.store.base import Store, StoredDoc, StreamRow
from sealog.streams import destinations, formats, syslog, webhooks
from sealog.streams.formats import Sent
from sealog.streams.secrets import SecretBox

log = logging.getLogger("sealog.streams")

DEFAULT_BATCH_EVENTS = 500
DEFAULT_BATCH_BYTES = 1 << 20
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 16 << 20
MAX_HEADERS = 20
# How long a worker may hold a stream for one batch (µs; SEALOG_STREAM_LEASE_SECONDS): more
# than the request's timeout. A worker that dies holding one delays it this long.
LEASE_US = 60_000_000
# How long a stream whose batch reached the log's head (and was not full) waits before its
# next (µs; SEALOG_STREAM_LINGER_SECONDS): while events arrive, its batches then gather
# them, instead of each commit's few costing a round of reads and writes. Its worker keeps
# the stream's lease that long, so that no other worker sends it meanwhile either.
LINGER_US = 250_000
REQUEST_TIMEOUT = 30.0
# Backoff after a failed attempt: full jitter (a random wait up to the cap), the cap
# doubling from RETRY_BASE_US to RETRY_MAX_US; a receiver's Retry-After is honoured up to
# RETRY_MAX_US.
RETRY_BASE_US = 1_000_000
RETRY_MAX_US = 600_000_000
# A stream failing this long is disabled until an org admin enables it again.
DISABLE_AFTER_US = 3 * 86_400_000_000
# The receiver's answer kept with a failed attempt, at most.
KEPT_ANSWER_CHARS = 1000
# At most this many streams of an org at the same place are sent from one read of the log
# in one round, at once.
ROUND_STREAMS = 8
# How long a round waits for its receivers' answers together; a stream whose receiver takes
# longer is recorded when it answers, apart, and parts from the round's other streams.
ROUND_WAIT_SECONDS = 1.0


# RFC 9110's token (a header's name), and a field value: visible characters, spaces and tabs.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\U0010ffff]*")
# The backoff's own source of randomness, apart from the random module's shared state.
_JITTER = random.SystemRandom()


class StreamError(ValueError):
    """A stream's settings that Sealog cannot take, naming the setting."""


KINDS = ("webhook", "syslog")


@dataclass(frozen=True)
class StreamConfig:
    """Where and what a stream sends: its destination (an https URL, or tcp:// or tls://
    host:port for syslog), batch limits, filters (categories, all when empty; a query in
    the search language), whether each batch carries inclusion proofs, the CA certificates
    a syslog TLS connection trusts (the system's when None), and the names of a webhook's
    custom headers (their values are secret)."""

    url: str
    batch_events: int = DEFAULT_BATCH_EVENTS
    batch_bytes: int = DEFAULT_BATCH_BYTES
    categories: tuple[str, ...] = ()
    header_names: tuple[str, ...] = ()
    query: str = ""
    include_proofs: bool = False
    ca_bundle: str | None = None

    @functools.cached_property
    def parsed_query(self) -> search.Query:
        return search.parse_query(self.query)

    @property
    def filtered(self) -> bool:
        """Whether the stream leaves any event out."""
        return bool(self.categories or self.parsed_query.text or self.parsed_query.fields)

    def json(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def parse(cls, text: str) -> StreamConfig:
        raw = orjson.loads(text)
        return cls(raw["url"], raw["batch_events"], raw["batch_bytes"],
                   tuple(raw["categories"]), tuple(raw["header_names"]),
                   raw.get("query", ""), raw.get("include_proofs", False),
                   raw.get("ca_bundle"))


def check_settings(*, kind: str, fmt: str, name: str, config: StreamConfig,
                   headers: dict[str, str], allow_http: bool) -> None:
    """Raises StreamError naming the first of a stream's settings it cannot take."""
    if kind not in KINDS:
        raise StreamError(f"kind: one of {', '.join(KINDS)}, not {kind!r}")
    if fmt not in formats.FORMATS:
        raise StreamError(f"format: one of {', '.join(formats.FORMATS)}, not {fmt!r}")
    if kind == "webhook":
        parts = urllib.parse.urlsplit(config.url)
        schemes = ("https", "http") if allow_http else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            raise StreamError(f"url: {config.url!r} is not an {' or '.join(schemes)} URL "
                              "with a host")
        if config.ca_bundle is not None:
            raise StreamError("ca_bundle: only a syslog stream over TLS takes one")
    else:
        try:
            _, _, tls = syslog.parse_url(config.url)
            if config.ca_bundle is not None:
                if not tls:
                    raise StreamError("ca_bundle: only a tls:// destination takes one")
                syslog.check_ca_bundle(config.ca_bundle)
        except syslog.SyslogError as exc:
            raise StreamError(str(exc)) from None
        if headers:
            raise StreamError("headers: a syslog stream sends no headers")
    if not name.strip():
        raise StreamError("name: a stream needs a name")
    if not 1 <= config.batch_events <= MAX_BATCH_EVENTS:
        raise StreamError(f"batch_events: from 1 to {MAX_BATCH_EVENTS:,}, not "
                          f"{config.batch_events}")
    if not 1024 <= config.batch_bytes <= MAX_BATCH_BYTES:
        raise StreamError(f"batch_bytes: from 1,024 to {MAX_BATCH_BYTES:,}, not "
                          f"{config.batch_bytes}")
    unknown = [c for c in config.categories if c not in events.CATEGORIES]
    if unknown:
        raise StreamError(f"categories: {', '.join(unknown)} is not one of "
                          f"{', '.join(events.CATEGORIES)}")
    try:
        search.parse_query(config.query)
    except search.SearchSyntaxError as exc:
        raise StreamError(f"query: {exc}") from None
    if len(headers) > MAX_HEADERS:
        raise StreamError(f"headers: at most {MAX_HEADERS}, not {len(headers)}")
    for header, value in headers.items():
        if not _HEADER_NAME.fullmatch(header):
            raise StreamError(f"headers: {header!r} is not a header name (letters, digits "
                              "and !#$%&'*+-.^_`|~)")
        if header.lower().startswith("webhook-") or header.lower() in (
                "content-type", "content-length", "host"):
            raise StreamError(f"headers: {header} is Sealog's to set")
        if not _HEADER_VALUE.fullmatch(value):
            raise StreamError(f"headers: the value of {header} holds a control character "
                              "(a line break, say), which no request may carry")


def new_stream(*, org_id: str, name: str, config: StreamConfig, box: SecretBox,
               start_index: int, kind: str = "webhook", fmt: str = "sealog",
               headers: dict[str, str] | None = None, created_by: str | None = None,
               allow_http: bool = False, now_us: int | None = None
               ) -> tuple[StreamRow, str | None]:
    """A new active stream starting at start_index (0: the log's beginning; its size: from
    now), and a webhook's signing secret, which is shown once and stored only sealed (None
    for syslog). Raises StreamError naming a setting it cannot take."""
    headers = dict(headers or {})
    config = dataclasses.replace(config, header_names=tuple(headers),
                                 categories=tuple(dict.fromkeys(config.categories)))
    check_settings(kind=kind, fmt=fmt, name=name, config=config, headers=headers,
                   allow_http=allow_http)
    now = times.now_us() if now_us is None else now_us
    stream_id = f"str_{uuid_utils.uuid7().hex}"
    secret = webhooks.new_secret() if kind == "webhook" else None
    secrets = [{"secret": secret, "until": None}] if secret else []
    sealed = box.seal(org_id, stream_id, {"secrets": secrets, "headers": headers})
    row = StreamRow(
        id=stream_id, org_id=org_id, name=name.strip(), kind=kind, format=fmt,
        config=config.json(), sealed=sealed, state="active", next_index=start_index,
        delivered=0, failures=0, attempts=0, last_delivered_at=None, last_error=None,
        failing_since=None, retry_at=None, lease_owner=None, lease_expires_at=None,
        created_by=created_by, created_at=now, updated_at=now)
    return row, secret


@dataclass(frozen=True)
class Batch:
    """The events of [start, stop) of the org's log that the stream sends (those its
    filters let through), each in the stream's format."""

    start: int
    stop: int
    events: list[Sent]

    def until(self, stop: int) -> Batch:
        """The part of the batch before index stop."""
        return Batch(self.start, stop, [e for e in self.events if e.stored.index < stop])


def read_ahead(stream: StreamRow, config: StreamConfig, size: int) -> int:
    """The index before which the stream's next batch reads, its log being size events long:
    filtered-out events only move the cursor, so a filtered stream reads further ahead."""
    return min(size, stream.next_index + config.batch_events * (20 if config.filtered else 1))


def take_batch(stream: StreamRow, config: StreamConfig, stored: Iterable[StoredDoc],
               stop_before: int, render: Callable[[StoredDoc], bytes]) -> Batch:
    """The stream's next batch out of stored (the org's events in index order from its
    cursor): up to batch_events events sent, or batch_bytes of them (at least one), none at
    or past index stop_before; render gives an event in the stream's format."""
    sent: list[Sent] = []
    held = 0
    stop = stream.next_index
    wanted = set(config.categories)
    query = config.parsed_query
    filtered = config.filtered
    for event in stored:
        if event.index >= stop_before:
            break
        if filtered:
            doc = orjson.loads(event.doc)
            if (wanted and doc["category"] not in wanted) or not search.matches(query, doc):
                stop = event.index + 1
                continue
        body = render(event)
        if sent and held + len(body) > config.batch_bytes:
            break
        sent.append(Sent(event, body))
        held += len(body)
        stop = event.index + 1
        if len(sent) == config.batch_events:
            break
    return Batch(stream.next_index, stop, sent)


def next_batch(store: Store, stream: StreamRow, config: StreamConfig, source: str) -> Batch:
    """The stream's next batch from its cursor, no further than the log's head. source is
    the log's origin, named by CloudEvents."""
    stop_before = read_ahead(stream, config, store.log_head(stream.org_id).size)
    return take_batch(stream, config,
                      store.iter_events_by_index(stream.org_id, stream.next_index, stop_before),
                      stop_before, lambda e: formats.render(stream.format, e, source))


class SharedRead:
    """The org's events from one index on, read from the store once for every stream of a
    round, and only as far as the stream that reads furthest takes them."""

    def __init__(self, events: Iterator[StoredDoc]):
        self._source = events
        self._read: list[StoredDoc] = []

    def __iter__(self) -> Iterator[StoredDoc]:
        position = 0
        while True:
            if position == len(self._read):
                event = next(self._source, None)
                if event is None:
                    return
                self._read.append(event)
            yield self._read[position]
            position += 1


@dataclass(frozen=True)
class Attempt:
    """How sending a batch went: delivered, or an error, whether to try again, and when a
    receiver asked to be tried again (µs from now)."""

    delivered: bool
    error: str | None = None
    retryable: bool = True
    retry_after_us: int | None = None
    status: int | None = None  # the receiver's HTTP status, when it answered


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str],
         timeout: float = REQUEST_TIMEOUT) -> Attempt:
    """Sends one batch and says how it went: a 2xx is delivered; a network error, 408, 429
    and 5xx are tried again; another answer puts the stream in failing, kept."""
    try:
        answer = client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Attempt(False, f"{type(exc).__name__}: {exc}"[:KEPT_ANSWER_CHARS])
    if 200 <= answer.status_code < 300:
        return Attempt(True, status=answer.status_code)
    error = f"HTTP {answer.status_code}: {answer.text}"[:KEPT_ANSWER_CHARS]
    retryable = answer.status_code in (408, 429) or answer.status_code >= 500
    return Attempt(False, error, retryable, _retry_after_us(answer.headers.get("retry-after")),
                   answer.status_code)


def _retry_after_us(value: str | None) -> int | None:
    if value is None:
        return None
    if value.strip().isdigit():
        return int(value) * 1_000_000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int((when.timestamp() - time.time()) * 1_000_000))


def backoff_us(attempts: int, retry_after_us: int | None) -> int:
    """The wait before attempt attempts + 1: the receiver's Retry-After when it gave one,
    else full jitter under a cap that doubles with each failed attempt."""
    if retry_after_us is not None:
        return min(retry_after_us, RETRY_MAX_US)
    cap = min(RETRY_MAX_US, RETRY_BASE_US << min(attempts, 30))
    return _JITTER.randint(0, cap)


def signed_headers(box: SecretBox, stream: StreamRow, msg_id: str, body: bytes,
                   content_type: str = "application/json") -> dict[str, str]:
    """The headers of one request of the stream: its custom headers, then the Standard
    Webhooks ones, signed by each of its secrets still valid."""
    secrets = box.open(stream.org_id, stream.id, stream.sealed)
    now_us = times.now_us()
    valid = [s["secret"] for s in secrets["secrets"]
             if s["until"] is None or s["until"] > now_us]
    return {**secrets["headers"], "content-type": content_type,
            **webhooks.headers(valid, msg_id, now_us // 1_000_000, body)}


def send_test(*, store: Store, box: SecretBox, signer: Signer, host: str, stream: StreamRow,
              allow_private: bool) -> Attempt:
    """Sends the stream's destination a test message, sent as a batch is (signed, for a
    webhook) and carrying the org's latest checkpoint but no event, and says how it went;
    the stream's cursor and state are left as they are."""
    note = checkpoint.sign_latest(store=store, signer=signer, host=host,
                                  org_id=stream.org_id).note
    record = {"type": "sealog.test", "org_id": stream.org_id, "stream_id": stream.id,
              "checkpoint": note}
    config = StreamConfig.parse(stream.config)
    if stream.kind == "syslog":
        message = syslog.checkpoint_message(record, host, times.format_rfc3339(times.now_us()),
                                            msgid="test")
        return _send_syslog(config, [message], allow_private, REQUEST_TIMEOUT)
    body = orjson.dumps({**record, "events": []})
    headers = signed_headers(box, stream, f"{stream.id}_test_{uuid.uuid4().hex}", body)
    with destinations.client(allow_private=allow_private) as client:
        return post(client, config.url, body, headers)


def _send_syslog(config: StreamConfig, messages: list[bytes], allow_private: bool,
                 timeout: float) -> Attempt:
    try:
        syslog.send(config.url, messages, ca_bundle=config.ca_bundle,
                    allow_private=allow_private, timeout=timeout)
    except (OSError, destinations.DestinationRefused) as exc:
        return Attempt(False, f"{type(exc).__name__}: {exc}"[:KEPT_ANSWER_CHARS])
    return Attempt(True)


class Deliverer:
    """Delivers due streams, one round a call, as owner (one worker of one process)."""

    def __init__(self, *, store: Store, box: SecretBox, signer: Signer, host: str,
                 owner: str | None = None, allow_private: bool = False,
                 lease_us: int = LEASE_US, linger_us: int = LINGER_US,
                 round_streams: int = ROUND_STREAMS):
        self.store, self.box, self.signer, self.host = store, box, signer, host
        self.lease_us, self.linger_us = lease_us, linger_us
        self.round_streams = round_streams
        # A request ends well inside the lease, so that no other worker sends meanwhile; a
        # round's streams are sent to at once, so the round ends inside it too.
        self.timeout = min(REQUEST_TIMEOUT, lease_us / 2_000_000)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.allow_private = allow_private
        self.client = destinations.client(allow_private=allow_private)
        self._senders: ThreadPoolExecutor | None = None
        # Streams whose request is still out after their round: never released by a round
        # that fails, since another worker would then send beside it.
        self._in_flight: set[str] = set()

    def deliver_round(self) -> list[StreamRow]:
        """Leases a due stream and the other due streams of its org at the same place, and
        sends each its next batch, all read from one read of the log; the streams as they
        then are (none when none was due)."""
        streams = self.store.claim_streams(owner=self.owner, now=times.now_us(),
                                           lease_us=self.lease_us, limit=self.round_streams)
        if not streams:
            return []
        try:
            return self._deliver(streams)
        except Exception:
            self._release(streams)
            raise

    def _deliver(self, streams: list[StreamRow]) -> list[StreamRow]:
        org_id, start = streams[0].org_id, streams[0].next_index
        source = checkpoint.origin(self.host, org_id)
        configs = [StreamConfig.parse(s.config) for s in streams]
        size = self.store.log_head(org_id).size
        stops = [read_ahead(s, c, size) for s, c in zip(streams, configs, strict=True)]
        events = self.store.iter_events_by_index(org_id, start, max(stops))
        if len(streams) == 1:  # nothing to share
            batches = [take_batch(streams[0], configs[0], events, stops[0],
                                  lambda e: formats.render(streams[0].format, e, source))]
        else:
            read = SharedRead(events)
            rendered: dict[tuple[str, int], bytes] = {}

            def render(fmt: str) -> Callable[[StoredDoc], bytes]:
                def one(event: StoredDoc) -> bytes:
                    key = (fmt, event.index)
                    if key not in rendered:
                        rendered[key] = formats.render(fmt, event, source)
                    return rendered[key]
                return one

            batches = [take_batch(s, c, read, stop, render(s.format))
                       for s, c, stop in zip(streams, configs, stops, strict=True)]
        # A batch goes as far as the latest checkpoint where that covers part of it (the rest
        # goes next): while the log grows, streams and the checkpointer then share
        # checkpoints, instead of each batch of each stream signing its own.
        latest = self.store.latest_checkpoint(org_id)
        if latest is not None:
            batches = [b.until(latest.size) if b.start < latest.size < b.stop else b
                       for b in batches]
        lingers = [b.stop >= size and len(b.events) < c.batch_events
                   for b, c in zip(batches, configs, strict=True)]
        attempts = [Attempt(True)] * len(streams)
        sending = [i for i, b in enumerate(batches) if b.events]
        if sending:
            signed = checkpoint.sign_latest(store=self.store, signer=self.signer,
                                            host=self.host, org_id=org_id,
                                            covering=max(batches[i].stop for i in sending))
            maker = ProofMaker(store=self.store, org_id=org_id, size=signed.size) \
                if any(configs[i].include_proofs for i in sending) else None
            # Built here, sent at once: only the sending waits on the network. What goes
            # wrong for one stream (its secrets, a header the client cannot encode) is that
            # stream's failed attempt, never the round's.
            outgoing: dict[int, Callable[[], Attempt]] = {}
            for i in sending:
                try:
                    outgoing[i] = self._request(streams[i], configs[i], batches[i],
                                                signed.note, maker, source)
                except Exception as exc:  # noqa: BLE001 - kept as the stream's error
                    attempts[i] = _broken(streams[i], exc)
            if len(outgoing) == 1:
                [(i, send)] = outgoing.items()
                attempts[i] = _guarded(streams[i], send)
            elif outgoing:
                late = self._send_at_once(streams, outgoing, attempts)
                if late:  # each recorded when its receiver answers, the round goes on
                    for i, future in late.items():
                        self._in_flight.add(streams[i].id)
                        future.add_done_callback(functools.partial(
                            self._record_late, streams[i], batches[i], lingers[i]))
                    kept = [i for i in range(len(streams)) if i not in late]
                    return self._record([streams[i] for i in kept], [batches[i] for i in kept],
                                        [attempts[i] for i in kept], [lingers[i] for i in kept])
        return self._record(streams, batches, attempts, lingers)

    def _record_late(self, leased: StreamRow, batch: Batch, linger: bool,
                     sent: Future[Attempt]) -> None:
        try:
            self._record([leased], [batch], [sent.result()], [linger])
        finally:
            self._in_flight.discard(leased.id)

    def _send_at_once(self, streams: list[StreamRow], outgoing: dict[int, Callable[[], Attempt]],
                      attempts: list[Attempt]) -> dict[int, Future[Attempt]]:
        """Sends the round's requests at once, setting attempts[i] for those answered within
        ROUND_WAIT_SECONDS; the others' futures, by i: a slow receiver does not hold its
        round's other streams to its pace."""
        if self._senders is None:
            # Room for a round beside the slow sends of the round before.
            self._senders = ThreadPoolExecutor(2 * self.round_streams,
                                               thread_name_prefix="sealog-stream-send")
        futures = {i: self._senders.submit(_guarded, streams[i], send)
                   for i, send in outgoing.items()}
        concurrent.futures.wait(futures.values(), timeout=ROUND_WAIT_SECONDS)
        late: dict[int, Future[Attempt]] = {}
        for i, future in futures.items():
            if future.done():  # asked once: one answered now is not also late
                attempts[i] = future.result()
            else:
                late[i] = future
        return late

    def _request(self, stream: StreamRow, config: StreamConfig, batch: Batch, note: str,
                 maker: ProofMaker | None, source: str) -> Callable[[], Attempt]:
        """What sends the stream its batch with the signed checkpoint note covering it."""
        proofs = None
        if config.include_proofs:
            assert maker is not None
            proofs = [{"index": e.stored.index, "leaf_hash": e.stored.leaf_hash.hex(),
                       "hashes": maker.inclusion_b64(e.stored.index)} for e in batch.events]
        record = formats.checkpoint_record(
            org_id=stream.org_id, stream_id=stream.id, start=batch.start, stop=batch.stop,
            note=note, proofs=proofs)
        if stream.kind == "syslog":
            messages = [syslog.event_message(e, self.host) for e in batch.events]
            messages.append(syslog.checkpoint_message(
                record, self.host, times.format_rfc3339(times.now_us())))
            return lambda: _send_syslog(config, messages, self.allow_private, self.timeout)
        body, content_type = formats.webhook_body(stream.format, batch.events, record, source)
        headers = signed_headers(self.box, stream, f"{stream.id}_{batch.start}_{batch.stop}",
                                 body, content_type)
        return lambda: post(self.client, config.url, body, headers, self.timeout)

    def _record(self, leased: list[StreamRow], batches: list[Batch], attempts: list[Attempt],
                lingers: list[bool]) -> list[StreamRow]:
        """Moves each stream's cursor past its delivered batch, or records its failed
        attempt, if the stream is still this worker's; releases the leases, but keeps for
        the linger those of delivered batches that lingers marks (they reached the log's
        head). One transaction for the round."""
        now = times.now_us()
        after: list[StreamRow] = []
        # Not waiting for the disk: a cursor move lost in a crash only sends that batch
        # again, which at least once allows; waiting, each batch's commit held up ingest's.
        with self.store.writing(durable=False) as tx:
            # Locked in id order, as any other worker holding some of them would.
            for mine, batch, attempt, linger in sorted(
                    zip(leased, batches, attempts, lingers, strict=True),
                    key=lambda round_: round_[0].id):
                stream = tx.lock_stream(mine.org_id, mine.id)
                if stream is None or stream.lease_owner != self.owner:
                    if stream is not None:  # taken over after the lease ran out
                        after.append(stream)
                    continue
                updated = _moved(stream, mine, batch, attempt, now)
                if attempt.delivered and linger and self.linger_us > 0 \
                        and stream.next_index == mine.next_index:  # not replayed meanwhile
                    updated = dataclasses.replace(updated, lease_owner=self.owner,
                                                  lease_expires_at=now + self.linger_us)
                tx.update_stream(updated)
                after.append(updated)
        for mine, attempt in zip(leased, attempts, strict=True):
            if not attempt.delivered:
                log.warning("stream %s of org %s: %s", mine.id, mine.org_id, attempt.error)
        return after

    def _release(self, leased: list[StreamRow]) -> None:
        with self.store.writing(durable=False) as tx:
            for mine in leased:
                if mine.id in self._in_flight:
                    continue
                stream = tx.lock_stream(mine.org_id, mine.id)
                if stream is not None and stream.lease_owner == self.owner:
                    tx.update_stream(dataclasses.replace(stream, lease_owner=None,
                                                         lease_expires_at=None))

    def close(self) -> None:
        if self._senders is not None:
            self._senders.shutdown()  # waits for sends still going on, and records them
        self.client.close()


def _broken(stream: StreamRow, exc: Exception) -> Attempt:
    """A stream's attempt that failed in Sealog, not at the receiver: kept as its error (the
    stream then shows failing), and logged with its traceback."""
    log.exception("stream %s of org %s: its batch could not be sent", stream.id,
                  stream.org_id)
    return Attempt(False, f"{type(exc).__name__}: {exc}"[:KEPT_ANSWER_CHARS], retryable=False)


def _guarded(stream: StreamRow, send: Callable[[], Attempt]) -> Attempt:
    try:
        return send()
    except Exception as exc:  # noqa: BLE001 - kept as the stream's error
        return _broken(stream, exc)


def _moved(stream: StreamRow, leased: StreamRow, batch: Batch, attempt: Attempt, now: int
           ) -> StreamRow:
    """The stream (as locked now; leased: as this worker leased it) after its batch's
    attempt, its lease released: its cursor past the batch if delivered, else the failure
    recorded and the next attempt put off."""
    if stream.next_index != leased.next_index:  # replayed meanwhile: send again
        return dataclasses.replace(stream, lease_owner=None, lease_expires_at=None)
    if attempt.delivered:
        return dataclasses.replace(
            stream, next_index=batch.stop, delivered=stream.delivered + len(batch.events),
            attempts=0, last_delivered_at=now if batch.events else stream.last_delivered_at,
            failing_since=None, retry_at=None,
            state="active" if stream.state == "failing" else stream.state,
            lease_owner=None, lease_expires_at=None, updated_at=now)
    failing_since = stream.failing_since or now
    state = stream.state
    if state in ("active", "failing"):
        if now - failing_since >= DISABLE_AFTER_US:
            state = "disabled"
        elif not attempt.retryable:
            state = "failing"
    return dataclasses.replace(
        stream, failures=stream.failures + 1, attempts=stream.attempts + 1,
        last_error=attempt.error, failing_since=failing_since, state=state,
        retry_at=now + backoff_us(stream.attempts, attempt.retry_after_us),
        lease_owner=None, lease_expires_at=None, updated_at=now)


def stream_workers(*, settings: Settings, store: Store, signer: Signer) -> list[StreamWorker]:
    """The stream workers settings asks of a serve or worker process (not started)."""
    box = SecretBox.load(settings.resolved_streams_key_file)
    return [StreamWorker(Deliverer(
        store=store, box=box, signer=signer, host=settings.log_host,
        allow_private=settings.streams_allow_private,
        lease_us=int(settings.stream_lease_seconds * 1_000_000),
        linger_us=int(settings.stream_linger_seconds * 1_000_000)))
        for _ in range(settings.stream_workers)]


class StreamWorker:
    """A thread that delivers due streams until stopped, in serve and in worker."""

    def __init__(self, deliverer: Deliverer, poll_seconds: float = 0.2):
        self.deliverer = deliverer
        self.poll = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="sealog-stream-worker",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT + 5)
        self.deliverer.close()

    def run(self) -> None:
        """Delivers batches while streams are due; waits poll_seconds when none is."""
        while not self._stop.is_set():
            try:
                delivered = bool(self.deliverer.deliver_round())
            except Exception:  # noqa: BLE001 - the worker outlives one bad round
                log.exception("stream worker: the round failed; trying again")
                delivered = False
            if not delivered:
                self._stop.wait(self.poll)

