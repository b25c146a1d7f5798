"""The client's address, seen through trusted reverse proxies only.

Behind nginx every request comes from the proxy's address, so a per-address limit would lock
out everyone at once. ``X-Forwarded-For`` is believed only when the direct peer is listed in
``MOMENTRY_TRUSTED_PROXIES``; then the header is read from the right, skipping further trusted
proxies, and the first untrusted address is the client. A client cannot forge its way past
this: whatever it puts at the left of the header is never reached while an untrusted hop
(its own real address, appended by the proxy) stands to the right of it.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(request: HttpRequest) -> str:
    """The address to attribute the request to (a string; ``"unknown"`` when there is none)."""
    peer = _parse(request.META.get("REMOTE_ADDR", ""))
    networks = _networks(tuple(settings.MOMENTRY_TRUSTED_PROXIES))
    if not _trusted(peer, networks):
        return str(peer) if peer is not None else "unknown"
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # a garbled hop: stop at the last address we could trust
        if not _trusted(address, networks):
            return str(address)
        peer = address
    return str(peer)
