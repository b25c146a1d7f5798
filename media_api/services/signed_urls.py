"""Signed media URLs: a ``<video src>`` or ``<img src>`` cannot send ``X-API-Key``.

``POST /api/v1/file/{uuid}/sign`` turns a media URL of that file into one that carries its own
credential: ``…&exp=<unix time>&sub=<signer>&sig=<HMAC>``. This module decides *what* may be
signed — the media routes of :data:`SIGNABLE_ROUTES`, of the file signed for, within
``MOMENTRY_SIGNED_URL_MAX_SECONDS`` — and how responses to signed URLs are cached; the signature,
and the binding of the URL to the credential that signed it (a URL never outlives, nor survives
the revocation of, its API key, JWT or session), are the platform's: :mod:`momentry.signing`.
Only GET and HEAD of the media routes accept a signature.

Responses to signed URLs may be cached by shared caches (``Cache-Control: public``, setting
``MOMENTRY_SIGNED_URL_PUBLIC``), for no longer than the URL is valid: the URL is the credential.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings
from django.http import Http404
from django.urls import resolve

from momentry import signing
from momentry.converters import NoSuchValue
from momentry.errors import BadRequest

#: The routes whose URLs can be signed (names in media_api/urls.py): those answering media bytes.
SIGNABLE_ROUTES = frozenset({"file-video", "file-video-bbox", "file-clip", "file-thumbnail", "trace-thumbnail",
                             "trace-video"})


@dataclass(frozen=True)
class SignedURL:
    url: str
    expires_at: datetime


def sign(url: str, file_uuid: str, request: Any, expires_in: int | None = None) -> SignedURL:
    """Sign ``url`` (path and query of a :data:`SIGNABLE_ROUTES` route of ``file_uuid``) as the caller."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.fragment or not parts.path.startswith("/"):
        raise BadRequest("url must be a path with query, e.g. /api/v1/file/<uuid>/clip?start_frame=0&end_frame=47",
                         param="url")
    path = unquote(parts.path)
    try:
        match = resolve(path)
    except Http404:
        raise BadRequest("url is not a route of this API.", param="url") from None
    if match.url_name not in SIGNABLE_ROUTES:
        raise BadRequest("Only media routes can be signed.", param="url", signable=sorted(SIGNABLE_ROUTES))
    if match.kwargs.get("file_uuid") != file_uuid or any(
            isinstance(value, NoSuchValue) for value in match.kwargs.values()):
        raise BadRequest("url must name the file being signed for (and a trace of it).", param="url")
    if any(name in signing.RESERVED for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise BadRequest(f"url must not carry {', '.join(signing.RESERVED)} (they are added by signing).",
                         param="url")
    lifetime = settings.MOMENTRY_SIGNED_URL_SECONDS if expires_in is None else expires_in
    if not 1 <= lifetime <= settings.MOMENTRY_SIGNED_URL_MAX_SECONDS:
        raise BadRequest(f"expires_in must be between 1 and {settings.MOMENTRY_SIGNED_URL_MAX_SECONDS} seconds.",
                         param="expires_in", maximum=settings.MOMENTRY_SIGNED_URL_MAX_SECONDS)
    query, expires = signing.sign(path, parts.query, signing.signer_of(request), lifetime)
    return SignedURL(f"{parts.path}?{query}", datetime.fromtimestamp(expires, tz=UTC))


def cache_control(grant: signing.Grant) -> str:
    """Cache-Control for a response to a signed URL: shared caches may keep it while the URL is valid."""
    max_age = max(0, min(int(settings.MOMENTRY_CACHE_MAX_AGE), grant.expires_at - int(time.time())))
    visibility = "public" if settings.MOMENTRY_SIGNED_URL_PUBLIC else "private"
    return f"{visibility}, max-age={max_age}"
