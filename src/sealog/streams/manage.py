"""Managing an org's streams: what the API and the CLI call. Each change is an audit event in
the org's own log, written in the change's transaction."""

from __future__ import annotations

import dataclasses
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from sealog import times
from sealog.events import Redactor
from sealog.ingest import record_action
from sealog.store.base import NotFound, Store, StreamRow, WriteTx
from sealog.streams import delivery, destinations, syslog, webhooks
from sealog.streams.delivery import StreamConfig, StreamError
from sealog.streams.secrets import SecretBox

# How long a rotated secret stays valid beside the new one, by default and at most.
DEFAULT_OVERLAP_SECONDS = 86_400
MAX_OVERLAP_SECONDS = 30 * 86_400


@dataclass(frozen=True)
class Policy:
    """What the operator lets streams send to: plain HTTP, private addresses."""

    allow_http: bool = False
    allow_private: bool = False


def create_stream(*, store: Store, box: SecretBox, redactor: Redactor, policy: Policy,
                  org_id: str, actor: dict[str, Any], name: str, url: str,
                  kind: str = "webhook", fmt: str = "sealog",
                  start: Literal["now", "beginning"] = "now",
                  headers: dict[str, str] | None = None, categories: list[str] | None = None,
                  query: str = "", include_proofs: bool = False, ca_bundle: str | None = None,
                  batch_events: int = delivery.DEFAULT_BATCH_EVENTS,
                  batch_bytes: int = delivery.DEFAULT_BATCH_BYTES
                  ) -> tuple[StreamRow, str | None]:
    """Makes an active stream from now (the log's next event) or from its beginning
    (backfill), and returns it with a webhook's signing secret, shown this once (None for
    syslog). Raises StreamError naming a setting it cannot take, or a destination the
    operator does not allow."""
    if start not in ("now", "beginning"):
        raise StreamError(f"start: now or beginning, not {start!r}")
    config = StreamConfig(url=url, batch_events=batch_events, batch_bytes=batch_bytes,
                          categories=tuple(dict.fromkeys(categories or [])),
                          header_names=tuple(headers or {}), query=query,
                          include_proofs=include_proofs, ca_bundle=ca_bundle)
    delivery.check_settings(kind=kind, fmt=fmt, name=name, config=config,
                            headers=dict(headers or {}), allow_http=policy.allow_http)
    _check_destination(kind, url, policy)
    with store.writing() as tx:
        head = tx.lock_log(org_id)
        row, secret = delivery.new_stream(
            org_id=org_id, name=name, config=config, box=box, kind=kind, fmt=fmt,
            start_index=0 if start == "beginning" else head.size, headers=headers,
            created_by=actor.get("id"), allow_http=policy.allow_http)
        tx.insert_stream(row)
        _record(tx, redactor, row, actor, "stream.created",
                {"kind": kind, "format": fmt, "destination": _shown_url(url), "start": start,
                 "categories": list(config.categories), "query": query,
                 "header_names": sorted(headers or {})})
    return row, secret


# What an update may change: the stream's own settings, not its kind, cursor or state.
UPDATABLE = ("name", "url", "format", "headers", "categories", "query", "include_proofs",
             "ca_bundle", "batch_events", "batch_bytes")


def update_stream(*, store: Store, box: SecretBox, redactor: Redactor, policy: Policy,
                  org_id: str, actor: dict[str, Any], stream_id: str,
                  changes: dict[str, Any]) -> StreamRow:
    """Changes the settings named in changes (of UPDATABLE; headers, when given, replace
    them all), checked as at creation; the cursor and state stay. Raises StreamError
    naming a setting it cannot take."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise StreamError(f"{unknown[0]}: not a setting an update can change (one of "
                          f"{', '.join(UPDATABLE)})")
    with store.writing() as tx:
        row = _locked(tx, org_id, stream_id)
        config = StreamConfig.parse(row.config)
        secrets = box.open(org_id, stream_id, row.sealed)
        headers = dict(changes["headers"]) if "headers" in changes else secrets["headers"]
        fields = {k: v for k, v in changes.items()
                  if k in ("url", "query", "include_proofs", "ca_bundle", "batch_events",
                           "batch_bytes")}
        if "categories" in changes:
            fields["categories"] = tuple(dict.fromkeys(changes["categories"]))
        config = dataclasses.replace(config, **fields, header_names=tuple(headers))
        name = changes.get("name", row.name)
        fmt = changes.get("format", row.format)
        delivery.check_settings(kind=row.kind, fmt=fmt, name=name, config=config,
                                headers=headers, allow_http=policy.allow_http)
        if "url" in changes:
            _check_destination(row.kind, config.url, policy)
        sealed = row.sealed
        if "headers" in changes:
            sealed = box.seal(org_id, stream_id, {**secrets, "headers": headers})
        changed = dataclasses.replace(row, name=name.strip(), format=fmt, config=config.json(),
                                      sealed=sealed, updated_at=times.now_us())
        tx.update_stream(changed)
        shown = {k: v for k, v in changes.items() if k not in ("headers", "url", "ca_bundle")}
        if "url" in changes:
            shown["destination"] = _shown_url(config.url)
        if "headers" in changes:
            shown["header_names"] = sorted(headers)
        _record(tx, redactor, changed, actor, "stream.updated",
                {"changed": sorted(changes), **shown})
    return changed


def _check_destination(kind: str, url: str, policy: Policy) -> None:
    try:
        if kind == "syslog":
            host, port, _ = syslog.parse_url(url)
            destinations.checked_addresses(host, port, allow_private=policy.allow_private)
        else:
            destinations.check_url(url, allow_private=policy.allow_private)
    except destinations.DestinationRefused as exc:
        raise StreamError(f"url: {exc}") from None
    except ValueError as exc:  # not a URL at all
        raise StreamError(f"url: {url!r} is not a URL ({exc})") from None


def set_state(*, store: Store, redactor: Redactor, org_id: str, actor: dict[str, Any],
              stream_id: str, action: Literal["pause", "resume"]) -> StreamRow:
    """Pauses a stream (it keeps its cursor), or resumes a paused, failing or disabled one
    (tried again at once)."""
    with store.writing() as tx:
        row = _locked(tx, org_id, stream_id)
        now = times.now_us()
        if action == "pause":
            changed = dataclasses.replace(row, state="paused", updated_at=now)
        else:
            changed = dataclasses.replace(row, state="active", retry_at=None, attempts=0,
                                          failing_since=None, updated_at=now)
        tx.update_stream(changed)
        _record(tx, redactor, changed, actor, f"stream.{action}d",
                {"state_before": row.state})
    return changed


def replay(*, store: Store, redactor: Redactor, org_id: str, actor: dict[str, Any],
           stream_id: str, index: int | None = None, received_from: str | None = None
           ) -> StreamRow:
    """Moves a stream's cursor back (or on) to index, or to the first event received at or
    after received_from (RFC 3339): received time never falls as the index rises, so that
    is one place in the log."""
    if (index is None) == (received_from is None):
        raise StreamError("replay: give an index or a time (from), one of them")
    if index is None:
        assert received_from is not None
        try:
            since = times.parse_rfc3339(received_from)
        except ValueError as exc:
            raise StreamError(f"from: {exc}") from None
        # Stored events never change: found before the transaction, on the log then.
        index = _first_received_at(store, org_id, store.log_head(org_id).size, since)
    with store.writing() as tx:
        row = _locked(tx, org_id, stream_id)
        size = tx.lock_log(org_id).size
        if not 0 <= index <= size:
            raise StreamError(f"index: the log holds indexes 0 to {size - 1}, not {index}")
        changed = dataclasses.replace(row, next_index=index, retry_at=None, attempts=0,
                                      updated_at=times.now_us())
        tx.update_stream(changed)
        _record(tx, redactor, changed, actor, "stream.replayed",
                {"from_index": index, "cursor_before": row.next_index})
    return changed


def rotate_secret(*, store: Store, box: SecretBox, redactor: Redactor, org_id: str,
                  actor: dict[str, Any], stream_id: str,
                  overlap_seconds: float = DEFAULT_OVERLAP_SECONDS) -> tuple[StreamRow, str]:
    """A new signing secret for the stream, shown this once; the current ones stay valid
    for overlap_seconds more (each request carries a signature by every valid secret, as
    Standard Webhooks allows), so that the receiver can change over without a gap."""
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise StreamError(f"overlap_seconds: from 0 to {MAX_OVERLAP_SECONDS:,}, not "
                          f"{overlap_seconds}")
    with store.writing() as tx:
        row = _locked(tx, org_id, stream_id)
        now = times.now_us()
        until = now + int(overlap_seconds * 1_000_000)
        secrets = box.open(org_id, stream_id, row.sealed)
        kept = [{"secret": s["secret"], "until": min(until, s["until"] or until)}
                for s in secrets["secrets"] if s["until"] is None or s["until"] > now]
        secret = webhooks.new_secret()
        secrets["secrets"] = [{"secret": secret, "until": None}, *kept]
        changed = dataclasses.replace(row, sealed=box.seal(org_id, stream_id, secrets),
                                      updated_at=now)
        tx.update_stream(changed)
        _record(tx, redactor, changed, actor, "stream.secret_rotated",
                {"old_secrets_valid_until": times.format_rfc3339(until)})
    return changed, secret


def delete_stream(*, store: Store, redactor: Redactor, org_id: str, actor: dict[str, Any],
                  stream_id: str) -> None:
    with store.writing() as tx:
        row = _locked(tx, org_id, stream_id)
        tx.delete_stream(org_id, stream_id)
        _record(tx, redactor, row, actor, "stream.deleted", {"cursor": row.next_index})


def get_stream(store: Store, org_id: str, stream_id: str) -> StreamRow:
    row = store.get_stream(org_id, stream_id)
    if row is None:
        raise NotFound(f"stream {stream_id!r} does not exist")
    return row


def lag_seconds(store: Store, row: StreamRow, log_size: int, now_us: int | None = None
                ) -> float:
    """How long the oldest event the stream has not yet sent has been in the log (since
    it was received); 0 when the stream has sent everything."""
    if row.next_index >= log_size:
        return 0.0
    waiting = next(iter(store.iter_events_by_index(row.org_id, row.next_index,
                                                    row.next_index + 1)))
    received = times.parse_rfc3339(orjson.loads(waiting.doc)["received_at"])
    now = times.now_us() if now_us is None else now_us
    return max(0.0, (now - received) / 1_000_000)


def view(store: Store, row: StreamRow, log_size: int | None = None) -> dict[str, Any]:
    """The stream as the API shows it: its settings (no secret), cursor, lag and state;
    log_size is the org's log's, when the caller has it."""
    size = store.log_head(row.org_id).size if log_size is None else log_size
    config = StreamConfig.parse(row.config)
    return {
        "id": row.id, "name": row.name, "kind": row.kind, "format": row.format,
        "url": config.url, "header_names": list(config.header_names),
        "categories": list(config.categories), "query": config.query,
        "include_proofs": config.include_proofs, "ca_bundle": config.ca_bundle,
        "batch_events": config.batch_events,
        "batch_bytes": config.batch_bytes, "state": row.state,
        "next_index": row.next_index,
        "last_delivered_index": row.next_index - 1 if row.next_index else None,
        "lag_events": max(0, size - row.next_index),
        "lag_seconds": round(lag_seconds(store, row, size), 3),
        "delivered": row.delivered, "failures": row.failures, "attempts": row.attempts,
        "last_delivered_at": _time(row.last_delivered_at), "last_error": row.last_error,
        "failing_since": _time(row.failing_since), "retry_at": _time(row.retry_at),
        "created_at": _time(row.created_at), "updated_at": _time(row.updated_at),
    }


def _time(us: int | None) -> str | None:
    return None if us is None else times.format_rfc3339(us)


def _locked(tx: WriteTx, org_id: str, stream_id: str) -> StreamRow:
    row = tx.lock_stream(org_id, stream_id)
    if row is None:
        raise NotFound(f"stream {stream_id!r} does not exist")
    return row


def _first_received_at(store: Store, org_id: str, size: int, since: int) -> int:
    """The index of the org's first event received at or after since (size when none)."""
    low, high = 0, size
    while low < high:
        middle = (low + high) // 2
        doc = next(iter(store.iter_events_by_index(org_id, middle, middle + 1)))
        if times.parse_rfc3339(orjson.loads(doc.doc)["received_at"]) < since:
            low = middle + 1
        else:
            high = middle
    return low


def _shown_url(url: str) -> str:
    """url without its query and credentials, which may hold a receiver's token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _record(tx: WriteTx, redactor: Redactor, row: StreamRow, actor: dict[str, Any],
            action: str, metadata: dict[str, Any]) -> None:
    record_action(tx=tx, redactor=redactor, org_id=row.org_id, action=action, actor=actor,
                  resource={"type": "stream", "id": row.id, "name": row.name},
                  metadata=metadata)
