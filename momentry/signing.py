"""Signed URLs, the platform half: a URL that carries its own credential, bound to the one that signed it.

A signed URL ends in ``…&exp=<unix time>&sub=<signer>&sig=<HMAC>``. The HMAC (SHA-256, keyed from
the secret key) covers the path and every byte of the query before ``sig``, so any change to the URL
is a 403, as is a URL past ``exp``. Which routes may be signed is the business of the app that
serves them (``media_api.services.signed_urls``); this module knows only credentials.

A signed URL never outlives, nor survives the revocation of, the credential that signed it:

========== ======================= ============================= ===================================
credential ``sub``                 ``exp`` at most               ends early when
========== ======================= ============================= ===================================
API key    ``k<key id>``           the key's expiry              the key is revoked (or its user
                                                                 deactivated)
JWT        ``j<user id>.<jti>``    the token's ``exp`` (1 h)     the token is logged out
session    ``s<user id>.<digest>`` the session's expiry          the session is logged out
========== ======================= ============================= ===================================

Every use checks the signer again, so the URL acts exactly as that credential would now: the same
user, the same API key and so the same file scope. A session is named by a keyed digest of its key
(the key itself is a secret and never appears in a URL); logging out records that digest, like a
logged-out JWT's ``jti``, in :class:`~momentry.models.RevokedToken` until the session would have
expired anyway.
"""

from __future__ import annotations

import base64
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.utils.crypto import salted_hmac
from rest_framework_simplejwt.tokens import Token

from momentry.errors import Forbidden
from momentry.models import APIKey, RevokedToken

RESERVED = ("exp", "sub", "sig")
_SALT = "momentry.signed-media-url"
_SESSION_SALT = "momentry.signed-url-session"
_SUBJECT = re.compile(r"(?P<kind>[kjs])(?P<number>[0-9]{1,18})(?:\.(?P<token>[0-9A-Za-z_-]{1,56}))?")


@dataclass(frozen=True)
class Signer:
    """Who signs: the ``sub`` that names the credential, and when the credential itself ends."""

    subject: str
    expires_at: int


@dataclass(frozen=True)
class Grant:
    """What a valid signature lets through: the signer (user, and API key if one signed) and until when."""

    user: Any
    auth: APIKey | None
    expires_at: int


def signature(path: str, query: str) -> str:
    digest = salted_hmac(_SALT, f"{path}\n{query}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def session_digest(session_key: str) -> str:
    """A session's name in URLs and in the denylist: keyed, so the key cannot be guessed from it."""
    return salted_hmac(_SESSION_SALT, session_key, algorithm="sha256").hexdigest()[:40]


def _session_denylist_id(digest: str) -> str:
    return f"session:{digest}"


def signer_of(request: Any) -> Signer:
    """The credential of an authenticated request (a DRF ``Request``) as a signer; 403 for any other kind."""
    user, auth = request.user, request.auth
    if isinstance(auth, APIKey):
        return Signer(f"k{auth.pk}", int(auth.expires_at.timestamp()))
    if isinstance(auth, Token):
        return Signer(f"j{user.pk}.{auth['jti']}", int(auth["exp"]))
    session = getattr(request, "session", None)
    if auth is None and session is not None and session.session_key:
        return Signer(f"s{user.pk}.{session_digest(session.session_key)}", int(session.get_expiry_date().timestamp()))
    raise Forbidden("Only a session, a JWT or an API key can sign URLs.")


def sign(path: str, query: str, signer: Signer, lifetime: int) -> tuple[str, int]:
    """``(path?query&exp=&sub=&sig=, exp)``: valid for ``lifetime`` seconds, never past the signer's end.

    ``path`` is the URL's path as it will be requested (decoded, as ``request.path`` gives it).
    """
    expires = min(int(time.time()) + lifetime, signer.expires_at)
    signed_query = f"{query}&" if query else ""
    signed_query += f"exp={expires}&sub={signer.subject}"
    return f"{signed_query}&sig={signature(path, signed_query)}", expires


def _active_user(number: str) -> Any:
    return get_user_model().objects.filter(pk=int(number), is_active=True).first()


def _resolve_signer(subject: str) -> tuple[Any, APIKey | None]:
    """(user, API key or None) of a signed URL's ``sub``, checked now; 403 if it no longer holds."""
    match = _SUBJECT.fullmatch(subject)
    if match is None or (match["kind"] == "k") != (match["token"] is None):
        raise Forbidden("The signed URL is not valid.")
    kind, number, token = match["kind"], match["number"], match["token"]
    if kind == "k":
        key = APIKey.objects.select_related("user").filter(pk=int(number)).first()
        if key is None or not key.is_valid or not key.user.is_active:
            raise Forbidden("The key that signed this URL is no longer valid.")
        return key.user, key
    denylisted = token if kind == "j" else _session_denylist_id(token)
    if RevokedToken.objects.filter(jti=denylisted).exists():
        credential = "token" if kind == "j" else "session"
        raise Forbidden(f"The {credential} that signed this URL was logged out.")
    user = _active_user(number)
    if user is None:
        raise Forbidden("The user who signed this URL is no longer active.")
    return user, None


def verify(path: str, query_string: str) -> Grant | None:
    """The grant of a signed request; None when the URL carries no signature, 403 when it is bad."""
    if "sig" not in (name for name, _ in parse_qsl(query_string, keep_blank_values=True)):
        return None
    head, marker, sig = query_string.rpartition("&sig=")
    if not marker or "&" in sig or not hmac.compare_digest(sig, signature(path, head)):
        raise Forbidden("The signed URL is not valid (it was changed, or signed for another URL).")
    values = dict(parse_qsl(head, keep_blank_values=True))
    expires = values.get("exp", "")
    if not (expires.isascii() and expires.isdigit()) or int(expires) < time.time():
        raise Forbidden("The signed URL has expired.", {"expired_at": expires})
    user, auth = _resolve_signer(values.get("sub", ""))
    return Grant(user=user, auth=auth, expires_at=int(expires))


@receiver(user_logged_out, dispatch_uid="momentry.signing.session_logged_out")
def _session_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out (API or admin) ends the URLs the session signed: its digest is denylisted until it expires."""
    session = getattr(request, "session", None)
    if session is None or not session.session_key:
        return
    RevokedToken.objects.get_or_create(jti=_session_denylist_id(session_digest(session.session_key)),
                                       defaults={"expires_at": session.get_expiry_date()})
