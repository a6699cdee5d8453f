"""Where a stream may send: by default not to this machine or its private networks (a
destination URL is the org admin's to choose, the network the operator's). Checked when a
stream is made and again at each connection, on the address actually connected to, so
that a name that resolves elsewhere later (DNS rebinding) does not get around it."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


class DestinationRefused(ValueError):
    """A destination this deployment does not send to, and why."""


def refusal(address: str) -> str | None:
    """Why address may not be sent to without the operator's leave, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for what, test in (("a loopback", ip.is_loopback), ("a link-local", ip.is_link_local),
                       ("a private", ip.is_private), ("an unspecified", ip.is_unspecified),
                       ("a multicast", ip.is_multicast), ("a reserved", ip.is_reserved)):
        if test:
            return f"{address} is {what} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses host resolves to that may be sent to; raises DestinationRefused when
    it resolves to none, or to a refused one (SEALOG_STREAMS_ALLOW_PRIVATE=1 allows them)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"{host} does not resolve: {exc.strerror}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise DestinationRefused(
                    f"{host} resolves to {reason}; streams send only to public addresses "
                    "unless the operator sets SEALOG_STREAMS_ALLOW_PRIVATE=1")
    return addresses


def check_url(url: str, *, allow_private: bool) -> None:
    """Raises DestinationRefused unless url's host may be sent to."""
    parts = httpx.URL(url)
    checked_addresses(parts.host, parts.port or (443 if parts.scheme == "https" else 80),
                      allow_private=allow_private)


class _CheckedBackend(httpcore.NetworkBackend):
    """Connects only to the addresses checked_addresses allows, by address."""

    def __init__(self, allow_private: bool):
        self.allow_private = allow_private
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            addresses = checked_addresses(host, port, allow_private=self.allow_private)
        except DestinationRefused as exc:
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return self._sockets.connect_tcp(address, port, timeout, local_address,
                                                 socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("streams do not connect to Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


def client(*, allow_private: bool) -> httpx.Client:
    """An HTTP client that connects only where checked_addresses allows (TLS still checks
    the certificate against the URL's host name), follows no redirect, and ignores proxy
    settings of the environment, which would connect for it."""
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(  # the same pool, connecting through the check
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=_CheckedBackend(allow_private))
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False)
