"""The client's address, seen through the reverse proxies the operator says to trust.

Without ``--trusted-proxy`` it is the socket's peer, and ``X-Forwarded-For`` is ignored: anyone
can send that header. With it, the header is read from the right, hop by hop, for as long as the
hop that handed the request on is a trusted proxy; the first address not vouched for that way is
the client. Rate limits count by this address, so behind a proxy it has to be configured, or every
client would share the proxy's address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.1``, ``10.0.0.0/8``, ``::1``... (raises ValueError on anything else)."""
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in specs if s.strip())


def address_resolver(trusted: tuple[Network, ...]) -> Callable[[web.Request], str]:
    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        ip = getattr(ip, "ipv4_mapped", None) or ip
        return any(ip in net for net in trusted)

    def client_address(request: web.Request) -> str:
        address = request.remote or "?"
        if not trusted:
            return address
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
        for hop in reversed(hops):
            if not is_trusted(address):
                break
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # garbage from further out: stop at the last proxy that vouched
            address = hop
        return address

    return client_address
