"""Syslog streams: each event an RFC 5424 message (its identity in structured data, the
event in the stream's format as the message), then the batch's checkpoint record as one
more, over TCP with octet-counting framing (RFC 6587), optionally TLS (RFC 5425)."""

from __future__ import annotations

import socket
import ssl
import urllib.parse
from typing import Any

import orjson

from sealog.streams import destinations
from sealog.streams.formats import Sent

SCHEMES = {"tcp": False, "tls": True}  # scheme -> TLS
# The SD-ID of Sealog's structured data. Sealog has no IANA private enterprise number of
# its own: 32473 is the one RFC 5612 sets aside for examples, which no registered
# number can collide with.
SD_ID = "sealog@32473"
FACILITY = 13  # log audit (RFC 5424, table 1)
SEVERITIES = {"success": 6, "approved": 6, "allowed": 6, "warning": 4, "failed": 5,
              "denied": 5}  # informational, warning, notice
APP_NAME = "sealog"
BOM = b"\xef\xbb\xbf"


class SyslogError(ValueError):
    """A syslog destination Sealog cannot use, naming what is wrong."""


def parse_url(url: str) -> tuple[str, int, bool]:
    """Host, port and whether TLS, of tcp://host:port or tls://host:port."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise SyslogError(f"url: {url!r} has a bad port ({exc})") from None
    if parts.scheme not in SCHEMES or not parts.hostname or port is None or (
            parts.path not in ("", "/")) or parts.query or parts.username:
        raise SyslogError(f"url: {url!r} is not tcp://host:port or tls://host:port")
    return parts.hostname, port, SCHEMES[parts.scheme]


def check_ca_bundle(pem: str) -> None:
    """Raises SyslogError unless pem holds CA certificates a TLS connection can trust."""
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise SyslogError(f"ca_bundle: not PEM certificates ({exc})") from None


def _sd_value(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _message(*, severity: int, timestamp: str, hostname: str, msgid: str,
             params: dict[str, Any], body: bytes) -> bytes:
    sd = " ".join(f'{k}="{_sd_value(v)}"' for k, v in params.items() if v is not None)
    head = (f"<{FACILITY * 8 + severity}>1 {timestamp} {hostname} {APP_NAME} - {msgid} "
            f"[{SD_ID} {sd}] ")
    return head.encode() + BOM + body


def event_message(event: Sent, hostname: str) -> bytes:
    """One event's RFC 5424 message: its time, its identity and what a SIEM routes on in
    structured data, the event in the stream's format as the message."""
    doc = orjson.loads(event.stored.doc)
    return _message(
        severity=SEVERITIES[doc["result"]], timestamp=doc["occurred_at"], hostname=hostname,
        msgid="event", body=event.body,
        params={"org": doc["org_id"], "index": event.stored.index, "id": doc["id"],
                "leaf_hash": event.stored.leaf_hash.hex(), "action": doc["action"],
                "category": doc["category"], "result": doc["result"]})


def checkpoint_message(record: dict[str, Any], hostname: str, timestamp: str,
                       msgid: str = "checkpoint") -> bytes:
    """The batch's checkpoint record as a message of its own, after the batch's events."""
    return _message(
        severity=6, timestamp=timestamp, hostname=hostname, msgid=msgid,
        body=orjson.dumps(record),
        params={"org": record["org_id"], "stream": record["stream_id"],
                "from_index": record.get("from_index"), "to_index": record.get("to_index")})


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the message's length in bytes, a space, the message."""
    return str(len(message)).encode() + b" " + message


def send(url: str, messages: list[bytes], *, ca_bundle: str | None, allow_private: bool,
         timeout: float) -> None:
    """Sends messages in one connection and returns once the receiver read them all (it
    closed its side after ours, in order); raises OSError (or DestinationRefused) else.
    Syslog has no acknowledgement: a receiver's orderly close is the only one there is."""
    host, port, tls = parse_url(url)
    failure: OSError | None = None
    for address in destinations.checked_addresses(host, port, allow_private=allow_private):
        try:
            raw = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            failure = exc
            continue
        with raw:
            if tls:
                context = ssl.create_default_context(cadata=ca_bundle) if ca_bundle \
                    else ssl.create_default_context()
                with context.wrap_socket(raw, server_hostname=host) as secure:
                    secure.sendall(b"".join(map(frame, messages)))
                    _close_tls(secure)
            else:
                raw.sendall(b"".join(map(frame, messages)))
                raw.shutdown(socket.SHUT_WR)
                _await_close(raw)
        return
    assert failure is not None
    raise failure


def _await_close(sock: socket.socket) -> None:
    while sock.recv(4096):
        pass  # a syslog receiver sends nothing; anything it does is ignored


def _close_tls(secure: ssl.SSLSocket) -> None:
    """Ends the TLS session (close_notify) and waits for the receiver to close."""
    try:
        secure.unwrap()
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        pass  # closed its side without a close_notify of its own: it read ours
