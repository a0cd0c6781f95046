"""Which proxy carries a request to a URL: one rule for every endpoint notaryd talks to.

The standard variables decide, read the way botocore (the S3 uploads) and urllib read them:
``HTTPS_PROXY`` / ``HTTP_PROXY`` by the URL's scheme (lower-case names win), ``NO_PROXY``
exempting hosts (the host or a domain suffix; ``*`` for all). Loopback is not exempt unless
``NO_PROXY`` names it. With no variable set on macOS, the system's proxy settings apply
(urllib's ``getproxies``), as they do for botocore. ``ALL_PROXY`` is read by neither.

The notary API, log downloads, the ticket lookup and any other non-S3 request pass
``proxy=await proxy_for_request(url)`` on each request. Sessions do not set aiohttp's
``trust_env``: it reads the same variables but also ``~/.netrc``, whose credentials (a
``default`` entry: for every host) would then go to the notary service, S3 and webhook
receivers.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL (credentials included) a request to ``url`` goes through, or None.

    ``environ`` replaces the process environment (and, on macOS, the system settings): for
    reporting on settings other than the ones in effect. May ask the OS: call it off the loop.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if environ is None:
        proxies = urllib.request.getproxies()
        bypassed = bool(host) and bool(urllib.request.proxy_bypass(host))
    else:
        proxies = proxies_in(environ)
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
        bypassed = bool(host) and bool(bypass(host, proxies))
    if bypassed:
        return None
    return proxies.get(parts.scheme) or None


async def proxy_for_request(url: str) -> str | None:
    """``proxy_for(url)`` under the settings in effect, without blocking the loop."""
    return await asyncio.to_thread(proxy_for, url)


def proxy_hosts() -> frozenset[str]:
    """Host names of the proxies in effect: connections to them are the operator's choice."""
    return frozenset(
        (urlsplit(value).hostname or "").lower()
        for scheme, value in urllib.request.getproxies().items() if scheme != "no"
    ) - {""}


def proxies_in(environ: Mapping[str, str]) -> dict[str, str]:
    """``urllib.request.getproxies_environment`` over ``environ``: scheme -> proxy, and "no"."""
    proxies: dict[str, str] = {}
    for name, value in environ.items():  # any case first, then lower case wins
        if value and name.lower().endswith("_proxy"):
            proxies[name[:-6].lower()] = value
    if "REQUEST_METHOD" in environ:  # a CGI request's Proxy: header must not pick the proxy
        proxies.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            if value:
                proxies[name[:-6].lower()] = value
            else:
                proxies.pop(name[:-6].lower(), None)
    return proxies
