"""Signed media URLs: a ``<video src>`` or ``<img src>`` cannot send ``X-API-Key``.

``POST /api/v1/file/{uuid}/sign`` turns a media URL of that file into one that carries its own
credential: ``…&exp=<unix time>&sub=<signer>&sig=<HMAC>``. The HMAC (SHA-256, keyed from the
secret key) covers the path and every byte of the query before ``sig`` — route, parameters,
expiry and signer — so any change to the URL is a 403, as is a URL past its expiry.

The URL acts as its signer: ``sub`` is ``k<id>`` for an API key or ``u<id>`` for a user
(session or JWT). On every use the signer is checked again — a revoked or expired key, or an
inactive user, ends all its URLs — and the file scope is the signer's, exactly as if the
request carried the key. Only GET and HEAD of the media routes accept a signature, and a URL
never outlives the key that signed it.

Responses to signed URLs may be cached by shared caches (``Cache-Control: public``, setting
``MOMENTRY_SIGNED_URL_PUBLIC``), for no longer than the URL is valid: the URL is the credential.
"""

from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import Resolver404, resolve
from django.utils.crypto import salted_hmac

from momentry.errors import BadRequest, Forbidden
from momentry.models import APIKey

#: The routes whose URLs can be signed (names in media_api/urls.py): those answering media bytes.
SIGNABLE_ROUTES = frozenset({"file-video", "file-video-bbox", "file-clip", "file-thumbnail", "trace-thumbnail",
                             "trace-video"})
RESERVED = ("exp", "sub", "sig")
_SALT = "momentry.signed-media-url"


@dataclass(frozen=True)
class SignedURL:
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class Grant:
    """What a valid signature lets through: the signer and until when."""

    user: Any
    auth: APIKey | None
    expires_at: int


def _signature(path: str, query: str) -> str:
    digest = salted_hmac(_SALT, f"{path}\n{query}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _subject(user: Any, auth: Any) -> tuple[str, float | None]:
    """``sub`` for the caller and the latest expiry it allows (its key's, if any)."""
    if isinstance(auth, APIKey):
        return f"k{auth.pk}", auth.expires_at.timestamp()
    return f"u{user.pk}", None


def sign(url: str, file_uuid: str, user: Any, auth: Any, expires_in: int | None = None) -> SignedURL:
    """Sign ``url`` (a path with query, one of :data:`SIGNABLE_ROUTES` of ``file_uuid``) for the caller."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.fragment or not parts.path.startswith("/"):
        raise BadRequest("url must be a path with query, e.g. /api/v1/file/<uuid>/clip?start_frame=0&end_frame=47",
                         param="url")
    path = unquote(parts.path)
    try:
        match = resolve(path)
    except Resolver404:
        raise BadRequest("url is not a route of this API.", param="url") from None
    if match.url_name not in SIGNABLE_ROUTES:
        raise BadRequest("Only media routes can be signed.", param="url", signable=sorted(SIGNABLE_ROUTES))
    if str(match.kwargs.get("file_uuid", "")).replace("-", "").lower() != file_uuid:
        raise BadRequest("url must name the file being signed for.", param="url")
    if any(name in RESERVED for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        raise BadRequest(f"url must not carry {', '.join(RESERVED)} (they are added by signing).", param="url")
    lifetime = settings.MOMENTRY_SIGNED_URL_SECONDS if expires_in is None else expires_in
    if not 1 <= lifetime <= settings.MOMENTRY_SIGNED_URL_MAX_SECONDS:
        raise BadRequest(f"expires_in must be between 1 and {settings.MOMENTRY_SIGNED_URL_MAX_SECONDS} seconds.",
                         param="expires_in", maximum=settings.MOMENTRY_SIGNED_URL_MAX_SECONDS)
    subject, latest = _subject(user, auth)
    expires = int(time.time()) + lifetime
    if latest is not None:
        expires = min(expires, int(latest))
    query = f"{parts.query}&" if parts.query else ""
    query += f"exp={expires}&sub={subject}"
    signed = f"{parts.path}?{query}&sig={_signature(path, query)}"
    return SignedURL(signed, datetime.fromtimestamp(expires, tz=UTC))


def _signer(subject: str) -> tuple[Any, APIKey | None]:
    kind, _, number = subject[:1], None, subject[1:]
    if not number.isdigit() or len(number) > 18:
        raise Forbidden("The signed URL is not valid.")
    if kind == "k":
        key = APIKey.objects.select_related("user").filter(pk=int(number)).first()
        if key is None or not key.is_valid or not key.user.is_active:
            raise Forbidden("The key that signed this URL is no longer valid.")
        return key.user, key
    if kind == "u":
        user = get_user_model().objects.filter(pk=int(number), is_active=True).first()
        if user is None:
            raise Forbidden("The user who signed this URL is no longer active.")
        return user, None
    raise Forbidden("The signed URL is not valid.")


def verify(path: str, query_string: str) -> Grant | None:
    """The grant of a signed request; None when the URL carries no signature, 403 when it is bad."""
    if "sig" not in (name for name, _ in parse_qsl(query_string, keep_blank_values=True)):
        return None
    head, marker, sig = query_string.rpartition("&sig=")
    if not marker or "&" in sig or not hmac.compare_digest(sig, _signature(path, head)):
        raise Forbidden("The signed URL is not valid (it was changed, or signed for another URL).")
    values = dict(parse_qsl(head, keep_blank_values=True))
    expires = values.get("exp", "")
    if not expires.isdigit() or int(expires) < time.time():
        raise Forbidden("The signed URL has expired.", {"expired_at": expires})
    user, auth = _signer(values.get("sub", ""))
    return Grant(user=user, auth=auth, expires_at=int(expires))


def cache_control(grant: Grant) -> str:
    """Cache-Control for a response to a signed URL: shared caches may keep it while the URL is valid."""
    max_age = max(0, min(int(settings.MOMENTRY_CACHE_MAX_AGE), grant.expires_at - int(time.time())))
    visibility = "public" if settings.MOMENTRY_SIGNED_URL_PUBLIC else "private"
    return f"{visibility}, max-age={max_age}"
