"""Host names and resolvers for the tests of the notary client's address guard."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable


def fake_resolver(table: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver that answers from ``table`` (and fails for any other name)."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]
    return resolve


def loopback_alias() -> str | None:
    """A host name (not 'localhost') that this machine resolves to a loopback address."""
    for name in (socket.gethostname(), "ip6-loopback", "localhost6"):
        try:
            infos = socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if infos and all(ipaddress.ip_address(str(i[4][0])).is_loopback for i in infos):
            return name
    return None
