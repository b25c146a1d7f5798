"""One HTTP POST of a delivery, to an address checked just before connecting.

urllib3 connects to the checked IP address itself (never to the name, which could resolve
elsewhere a millisecond later), and the request still names the host: ``Host`` header, TLS SNI and
certificate verification all use the URL's host name. No redirects, no urllib3 retries (Celery
retries, and records each attempt), short timeouts, and at most 1 KB of the answer is read.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import urllib3
from django.conf import settings

from momentry import __version__
from webhooks.addresses import Refused, Target, parse, resolve

USER_AGENT = f"Momentry-Webhooks/{__version__}"
RESPONSE_EXCERPT = 1024


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""
    response_body: str = ""
    duration_ms: int = 0


def _pool(target: Target, address: str) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(connect=min(5.0, settings.MOMENTRY_WEBHOOK_TIMEOUT),
                              read=settings.MOMENTRY_WEBHOOK_TIMEOUT)
    common = {"port": target.port, "timeout": timeout, "retries": False, "maxsize": 1, "block": False}
    if target.scheme == "https":
        try:
            ipaddress.ip_address(target.host)
            names: dict[str, str] = {}
        except ValueError:
            names = {"server_hostname": target.host, "assert_hostname": target.host}
        return urllib3.HTTPSConnectionPool(address, cert_reqs="CERT_REQUIRED", **names, **common)
    return urllib3.HTTPConnectionPool(address, **common)


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
    request_headers = {**headers, "Host": target.host_header, "User-Agent": USER_AGENT,
                       "Content-Type": "application/json"}
    last_error = ""
    for address in addresses[:3]:
        pool = _pool(target, str(address))
        try:
            response = pool.urlopen("POST", target.path, body=body, headers=request_headers, redirect=False,
                                    retries=False, preload_content=False, assert_same_host=False)
        except urllib3.exceptions.NewConnectionError as exc:
            last_error = f"could not connect to {address}: {exc.__class__.__name__}"
            pool.close()
            continue  # the host's next address
        except urllib3.exceptions.HTTPError as exc:
            pool.close()
            return outcome(False, error=_describe(exc))
        try:
            excerpt = response.read(RESPONSE_EXCERPT, decode_content=False).decode("utf-8", "replace")
        except urllib3.exceptions.HTTPError as exc:
            excerpt = f"(answer not read: {_describe(exc)})"
        finally:
            response.release_conn()
            pool.close()
        status = response.status
        if 200 <= status < 300:
            return outcome(True, status_code=status, response_body=excerpt)
        if 300 <= status < 400:
            where = response.headers.get("Location", "")
            error = f"HTTP {status}: redirects are not followed" + (f" (Location: {where[:300]})" if where else "")
        else:
            error = f"HTTP {status}"
        return outcome(False, status_code=status, error=error, response_body=excerpt)
    return outcome(False, error=last_error or "no address to connect to")


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS error: {str(exc)[:200]}"
    return f"{exc.__class__.__name__}: {str(exc)[:200]}"
