"""Request bodies: JSON only, sent as is or gzip-compressed, within a size limit."""

from __future__ import annotations

import email.message
import zlib
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from sealog.api.problems import Problem
from sealog.events import loads_json

JSON = "application/json"
# The limit of a body whose route names none: sign-in, members, keys and exports send
# a few hundred bytes.
DEFAULT_LIMIT = 64 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _too_large(limit: int, decompressed: bool = False) -> Problem:
    what = "decompressed body" if decompressed else "body"
    return Problem(413, f"the {what} is larger than {limit} bytes", kind="too-large")


def _unsupported_media_type(detail: str) -> Problem:
    return Problem(415, f"{detail}; send Content-Type: {JSON} (UTF-8)",
                   kind="unsupported-media-type")


def _check_media_type(value: str) -> None:
    header = email.message.Message()
    header["content-type"] = value
    charset = header.get_param("charset")
    if header.get_content_type() != JSON or (
            charset is not None and str(charset).lower() != "utf-8"):
        raise _unsupported_media_type(f"Content-Type {value!r} is not accepted")


def _is_gzip(request: Request) -> bool:
    """Whether the body is gzip-compressed; 415 for any other content coding."""
    codings = [c.strip().lower() for value in request.headers.getlist("content-encoding")
               for c in value.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return False
    if codings in (["gzip"], ["x-gzip"]):
        return True
    raise Problem(415, f"Content-Encoding {', '.join(codings)!r} is not accepted; send the "
                       "body as is or with Content-Encoding: gzip",
                  kind="unsupported-encoding", headers={"Accept-Encoding": "gzip"})


class _Gunzip:
    """Decompresses gzip members as they arrive, refusing output past a limit."""

    def __init__(self, limit: int):
        self.room = limit
        self.limit = limit
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._inflate.eof:  # another gzip member follows (RFC 1952 2.2)
                self._inflate = zlib.decompressobj(_GZIP_WBITS)
            self._fed = True
            try:
                # At most one byte past the limit is inflated: a bomb stops here.
                piece = self._inflate.decompress(data, self.room + 1)
            except zlib.error as exc:
                raise Problem(400, f"the body is not valid gzip: {exc}",
                              kind="malformed-gzip") from None
            self.room -= len(piece)
            if self.room < 0:
                raise _too_large(self.limit, decompressed=True)
            out.append(piece)
            data = self._inflate.unused_data if self._inflate.eof else b""
        return b"".join(out)

    def finish(self) -> None:
        if self._fed and not self._inflate.eof:
            raise Problem(400, "the body is not valid gzip: it is cut short",
                          kind="malformed-gzip")


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, decompressed; 415 when it is not JSON or its encoding not gzip,
    413 past limit bytes (as sent or decompressed), 400 for broken gzip."""
    content_type = request.headers.get("content-type")
    declared = request.headers.get("content-length")
    if content_type is not None:
        _check_media_type(content_type)
    elif declared not in (None, "0"):
        raise _unsupported_media_type("a body needs a Content-Type")
    gunzip = _Gunzip(limit) if _is_gzip(request) else None
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, sent = [], 0
    async for chunk in request.stream():
        sent += len(chunk)
        if sent > limit:
            raise _too_large(limit)
        chunks.append(gunzip.feed(chunk) if gunzip is not None else chunk)
    if gunzip is not None:
        gunzip.finish()
    body = b"".join(chunks)
    if body and content_type is None:  # sent without a Content-Length
        raise _unsupported_media_type("a body needs a Content-Type")
    return body


async def read_json_body(request: Request, limit: int) -> object:
    """The request's JSON body (integers exact), read by read_body; 400 when it is not
    JSON."""
    try:
        return loads_json(await read_body(request, limit))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}", kind="malformed-json") from None


class JsonBodyRoute(APIRoute):
    """A route whose declared body is read by read_body (DEFAULT_LIMIT) before FastAPI
    parses it, so every JSON body is refused and decompressed the same way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked_body_handler(request: Request) -> Response:
            # FastAPI parses request.body(), which gives what Starlette keeps in _body.
            request._body = await read_body(request, DEFAULT_LIMIT)
            return await handler(request)

        return checked_body_handler
