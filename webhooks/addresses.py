"""Where a webhook may point: public http(s) addresses only, checked when it is created and at every delivery.

A webhook makes the server send requests to an address a user typed, so without care it is a way
into the internal network (server-side request forgery): ``http://127.0.0.1:6379/``,
``http://169.254.169.254/`` (cloud metadata), ``http://10.0.0.5/admin``. The rules:

- ``http`` and ``https`` only, a host name, no credentials in the URL;
- the host's addresses must all be *public*: no loopback, private (RFC 1918, ULA), link-local,
  site-local (``fec0::/10``), carrier-grade NAT, multicast, reserved, unspecified or documentation
  ranges, including IPv4 addresses wrapped in IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo, NAT64);
- at delivery the host is resolved again and the connection goes to the very address that was
  checked (:func:`webhooks.sender.post`), so a DNS answer that changes between the check and the
  connection (DNS rebinding) cannot redirect it; redirects are never followed.

``MOMENTRY_WEBHOOK_ALLOW_PRIVATE`` lifts the address rule (for receivers on the same network,
and tests); the scheme rules stay.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

#: What a webhook URL looks like (also its OpenAPI pattern): http(s), a host (name, IPv4, [IPv6]) and port
#: without credentials, then printable ASCII without a fragment. Non-ASCII must be encoded (punycode, %XX).
URL_PATTERN = r"^https?://[-A-Za-z0-9._~%!$&'()*+,;=:\[\]]+(?:[/?][!-" + '"' + r"$-~]*)?$"
_URL = re.compile(URL_PATTERN)


class Refused(Exception):
    """The URL or its host's address may not receive webhooks (the message says why, for the client)."""


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what to connect to and what to say in the request."""

    scheme: str
    host: str  # without brackets
    port: int
    path: str  # path and query, at least "/"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse(url: str) -> Target:
    """The URL's parts, or :class:`Refused` when it is not an http(s) URL with a host."""
    if not _URL.match(url):
        raise Refused("the URL must be http(s)://host[:port][/path] in printable ASCII, without credentials or "
                      "#fragment.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("the URL must start with https:// or http://.")
    if not parts.hostname:
        raise Refused("the URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise Refused("credentials in the URL are not supported: check the Momentry-Signature header instead.")
    if parts.fragment:
        raise Refused("the URL must not have a #fragment.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet (and every IPv4 address it wraps)."""
    if not address.is_global or address.is_multicast or address.is_reserved or address.is_unspecified:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        # fec0::/10 (site-local) is deprecated but still routed inside networks that use it, and
        # Python counts it as global: refused like the private ranges it stood for.
        if address.is_site_local:
            return False
        return all(is_public(inner) for inner in _embedded_ipv4(address))
    return True


def resolve(target: Target) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal is itself), checked; :class:`Refused` if one is not public.

    All of them must be public, not just the first: a host with one public and one private address
    would otherwise reach the private one whenever the resolver's order changes.
    """
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise Refused(f"the host {target.host} does not resolve ({exc}).") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise Refused(f"the host {target.host} has no address.")
    if not settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            if not is_public(address):
                raise Refused(f"the host {target.host} is {address}, which is not a public address "
                              "(loopback, private, link-local and reserved addresses are refused; "
                              "MOMENTRY_WEBHOOK_ALLOW_PRIVATE allows them).")
    return addresses


def check(url: str) -> Target:
    """Parse and resolve ``url`` as a webhook's address (at creation); :class:`Refused` says why not."""
    target = parse(url)
    resolve(target)
    return target
