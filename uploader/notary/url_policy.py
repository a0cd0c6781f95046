"""Which URLs the notary client may fetch besides the configured API URL.

The service hands out URLs (the pre-signed log URL) and may answer with redirects. Followed
blindly, a hostile or broken answer could point the client at ``file://``, plain ``http://``, or
services on this machine or its cloud metadata address (loopback, link-local). The rule:

* ``https://`` only, to a host that is not, and does not resolve to, a loopback, link-local,
  unspecified or multicast address;
* the check resolves the host name; ``GuardedConnector`` repeats it when each connection is made,
  so a name that resolved to a public address for the check cannot switch to 127.0.0.1 for the
  connection (DNS rebinding). It checks every host the session connects to, on every redirect
  hop aiohttp follows by itself: names (as resolved, cached or not) and IP literals alike
  (``127.0.0.1``, ``[::1]``, ``[::ffff:127.0.0.1]``: aiohttp never asks a resolver about a
  literal, so a resolver alone would miss them). Only a configured host and port (the API's,
  the ticket lookup's) may be anything.
* **through a proxy** (``uploader.proxies``): the proxy connects, so the URL's host is not
  resolved here (behind a proxy it often cannot be); the name checks above still apply, and the
  proxy's own host may be anything the operator configured, loopback included.
* **emulator allowance**: when the configured API URL is itself plain ``http://`` on a loopback
  address (the local emulator, tests), ``http://`` URLs on loopback addresses are allowed too.
  Nothing else is relaxed, so a real (https) configuration never gets the allowance.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.tracing import Trace

from uploader.notary.errors import UnsafeUrl
from uploader.proxies import proxy_for_request, proxy_hosts
from uploader.redaction import redact_url

Resolver = Callable[[str, int], Awaitable[list[str]]]
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


async def resolve(host: str, port: int) -> list[str]:
    """Addresses ``host`` resolves to, through the event loop's (threaded) resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_loopback_http(url: str) -> bool:
    """True for ``http://`` URLs on a loopback host: the configured emulator."""
    parts = urlsplit(url)
    return parts.scheme == "http" and _is_loopback_name(parts.hostname or "")


class UrlPolicy:
    def __init__(self, api_url: str, resolver: Resolver = resolve) -> None:
        self.allow_loopback_http = is_loopback_http(api_url)
        self._resolve = resolver

    async def check(self, url: str, endpoint: str) -> None:
        """Raise ``UnsafeUrl`` unless ``url`` may be fetched; resolves its host name."""
        def refuse(reason: str) -> UnsafeUrl:
            return UnsafeUrl(endpoint=endpoint, url=redact_url(url), reason=reason)

        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise refuse("it is not a valid URL") from None
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https"):
            raise refuse(f"it uses {parts.scheme or 'no'}:// instead of https://")
        if not host:
            raise refuse("it has no host")
        if self.allow_loopback_http and _is_loopback_name(host):
            return  # the emulator on this machine
        if parts.scheme != "https":
            raise refuse("it uses http:// instead of https://")
        if _is_internal_name(host):
            raise refuse("it points at this machine or a link-local address")
        if await proxy_for_request(url):
            return  # the proxy resolves and connects; our resolver's answer would not be used
        try:
            addresses = await self._resolve(host, port or 443)
        except (OSError, UnicodeError) as error:
            raise refuse(f"its host does not resolve ({error})") from None
        if any(_is_internal_address(address) for address in addresses):
            raise refuse(f"its host {host} resolves to this machine or a link-local address")


def _is_loopback_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False  # no name the emulator goes by (and Python >= 3.13 calls it loopback)
    return address.is_loopback


def _is_internal_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    return _is_internal_address(host)


def _is_internal_address(text: str) -> bool:
    """Loopback, link-local, unspecified or multicast, an IPv4-mapped IPv6 one included."""
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_link_local or address.is_unspecified
            or address.is_multicast)


class AddressGuard:
    """Which addresses a host may connect to: any for the configured hosts (the API's, and any
    other configured URL's such as NOTARYD_TICKET_URL) and for loopback names under the emulator
    allowance; for every other host none that is loopback, link-local, unspecified or multicast
    (IPv4-mapped IPv6 included)."""

    def __init__(self, api_url: str, *configured_urls: str) -> None:
        self._configured = {_origin(url) for url in (api_url, *configured_urls)}
        self._allow_loopback = is_loopback_http(api_url)

    def allowed(self, host: str, port: int, results: list[ResolveResult],
                proxies: frozenset[str] = frozenset()) -> list[ResolveResult]:
        """``results`` of resolving ``host`` that may be connected to on ``port``; raises when
        none. Only a configured host *and port* may be anything: another service on the same
        machine is not trusted for sharing its host name. So may the ``proxies`` in effect
        (``uploader.proxies.proxy_hosts``): a local proxy such as cntlm is the operator's choice."""
        bare = host.lower().strip("[]")
        if (bare, port) in self._configured or (self._allow_loopback and _is_loopback_name(bare)):
            return results
        if bare in proxies:
            return results
        safe = [r for r in results if not _is_internal_address(str(r["host"]))]
        if not safe:
            raise OSError(errno.EACCES, f"{host} is, or resolves only to, a loopback or "
                          "link-local address; refused")
        return safe


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port or (443 if parts.scheme == "https" else 80)


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector whose every connection, IP literals included, passes the guard.

    aiohttp resolves a literal without its resolver, so the check sits where the connector
    turns any host into addresses (``_resolve_host``): once per connection attempt, whichever
    redirect hop it is for. A refusal is a ``ClientConnectorError`` naming the host.
    """

    def __init__(self, api_url: str, *configured_urls: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = AddressGuard(api_url, *configured_urls)

    async def _resolve_host(self, host: str, port: int,
                            traces: Sequence[Trace] | None = None) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces)
        return self._guard.allowed(host, port, results, await asyncio.to_thread(proxy_hosts))
