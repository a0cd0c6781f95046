"""Which URLs the notary client may fetch besides the configured API URL.

The service hands out URLs (the pre-signed log URL) and may answer with redirects. Followed
blindly, a hostile or broken answer could point the client at ``file://``, plain ``http://``, or
services on this machine or its cloud metadata address (loopback, link-local). The rule:

* ``https://`` only, to a host that is not, and does not resolve to, a loopback, link-local,
  unspecified or multicast address;
* the check resolves the host name; ``GuardedResolver`` repeats it when the connection is made,
  so a name that resolved to a public address for the check cannot switch to 127.0.0.1 for the
  connection (DNS rebinding). Only the configured API host may resolve to anything.
* **through a proxy** (``uploader.proxies``): the proxy connects, so the URL's host is not
  resolved here (behind a proxy it often cannot be); the name checks above still apply, and the
  proxy's own host may be anything the operator configured, loopback included.
* **emulator allowance**: when the configured API URL is itself plain ``http://`` on a loopback
  address (the local emulator, tests), ``http://`` URLs on loopback addresses are allowed too.
  Nothing else is relaxed, so a real (https) configuration never gets the allowance.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from uploader.notary.errors import UnsafeUrl
from uploader.proxies import proxy_for_request, proxy_hosts

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
        from uploader.notary.client import redact_url

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
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_internal_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    return _is_internal_address(host)


def _is_internal_address(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_link_local or address.is_unspecified
            or address.is_multicast)


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that never connects to a loopback or link-local address for any host
    other than the configured API host, the proxies in effect (a local proxy such as cntlm is
    the operator's choice) and loopback names under the emulator allowance."""

    def __init__(self, api_url: str) -> None:
        self._api_host = (urlsplit(api_url).hostname or "").lower()
        self._allow_loopback = is_loopback_http(api_url)
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower() == self._api_host or (self._allow_loopback and _is_loopback_name(host)):
            return results
        if host.lower() in await asyncio.to_thread(proxy_hosts):
            return results
        safe = [r for r in results if not _is_internal_address(str(r["host"]))]
        if not safe:
            raise OSError(f"{host} resolves only to loopback or link-local addresses; refused")
        return safe

    async def close(self) -> None:
        await self._inner.close()
