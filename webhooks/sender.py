"""One HTTP POST of a delivery, to an address checked just before connecting.

urllib3's connection class connects to the checked IP address itself (never to the name, which could
resolve elsewhere a millisecond later), and the request still names the host: ``Host`` header, TLS SNI
and certificate verification all use the URL's host name. No redirects (a single connection follows
nothing), no urllib3 retries (Celery retries, and records each attempt), and a hard limit on the whole
attempt: ``MOMENTRY_WEBHOOK_TIMEOUT`` seconds from the first connection on (connecting at most 5 of
them), enforced by a watchdog that shuts the socket, so a receiver that answers one byte at a time
cannot hold a worker. At most 1 KB of the answer is read.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection

from momentry import __version__
from webhooks.addresses import Refused, Target, parse, resolve

USER_AGENT = f"Momentry-Webhooks/{__version__}"
RESPONSE_EXCERPT = 1024
MAX_CONNECT_SECONDS = 5.0


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""
    response_body: str = ""
    duration_ms: int = 0


class _Watchdog:
    """Shuts a connection's socket when the attempt's time is up (a blocked read then ends at once)."""

    def __init__(self, connection: HTTPConnection, deadline: float) -> None:
        self.connection, self.fired = connection, False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _connection(target: Target, address: str, connect_timeout: float) -> HTTPConnection:
    if target.scheme == "https":
        try:
            ipaddress.ip_address(target.host)
            names: dict[str, str] = {}
        except ValueError:
            names = {"server_hostname": target.host, "assert_hostname": target.host}
        return HTTPSConnection(address, target.port, timeout=connect_timeout, cert_reqs="CERT_REQUIRED", **names)
    return HTTPConnection(address, target.port, timeout=connect_timeout)


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST ``body`` to ``url``; a 2xx answer is success, anything else (a redirect too) a failure."""
    started = time.monotonic()

    def outcome(ok: bool, **fields: object) -> Outcome:
        return Outcome(ok, duration_ms=int((time.monotonic() - started) * 1000), **fields)  # type: ignore[arg-type]

    try:
        target = parse(url)
        addresses = resolve(target)
    except Refused as exc:
        return outcome(False, error=f"refused: {exc}")
    limit = settings.MOMENTRY_WEBHOOK_TIMEOUT
    deadline = time.monotonic() + limit
    request_headers = {**headers, "Host": target.host_header, "User-Agent": USER_AGENT,
                       "Content-Type": "application/json"}
    last_error = ""
    for address in addresses[:3]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection = _connection(target, str(address), min(MAX_CONNECT_SECONDS, remaining))
        with _Watchdog(connection, deadline) as watchdog:
            try:
                try:
                    connection.connect()
                except (ssl.SSLError, urllib3.exceptions.SSLError) as exc:
                    return outcome(False, error=_describe(exc))
                except (OSError, urllib3.exceptions.HTTPError) as exc:
                    if watchdog.fired:
                        break
                    last_error = f"could not connect to {address}: {_describe(exc)}"
                    continue  # the host's next address
                connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
                connection.request("POST", target.path, body=body, headers=request_headers, preload_content=False)
                response = connection.getresponse()
                try:
                    excerpt = response.read(RESPONSE_EXCERPT, decode_content=False).decode("utf-8", "replace")
                except (OSError, urllib3.exceptions.HTTPError) as exc:
                    excerpt = f"(answer not read: {_describe(exc)})"
                status, location = response.status, response.headers.get("Location", "")
            except Exception as exc:  # noqa: BLE001 - http.client and ssl raise many kinds; all are a failed attempt
                error = f"timed out after {limit:g} s" if watchdog.fired else _describe(exc)
                return outcome(False, error=error)
            finally:
                connection.close()
        if 200 <= status < 300:
            return outcome(True, status_code=status, response_body=excerpt)
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed" + (f" (Location: {location[:300]})"
                                                                    if location else "")
        else:
            error = f"HTTP {status}"
        return outcome(False, status_code=status, error=error, response_body=excerpt)
    return outcome(False, error=last_error or f"timed out after {limit:g} s")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return f"TLS error: {str(exc)[:200]}"
    return f"{exc.__class__.__name__}: {str(exc)[:200]}"
