"""Credentials, checked in order: session cookie, Bearer JWT, X-API-Key.

* A missing credential lets the next class try; a credential that is *present but bad*
  (tampered or expired JWT, unknown/expired/revoked key) is a 401 at once, never a
  silent fall-through to a weaker credential.
* ``request.auth`` is ``None`` for a session, the validated token for a JWT and the
  :class:`~momentry.models.APIKey` row for a key; scope and write permission read it.
* Plain Django views (streaming responses) get the same checks through
  :func:`authenticate_request` (the file selectors call it).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication as _SimpleJWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from momentry.nul import NUL

# momentry.services / momentry.errors import rest_framework.views, which imports this module
# (through DRF settings) while loading: they are imported inside the functions.

WWW_AUTHENTICATE = 'Bearer realm="momentry", X-API-Key realm="momentry"'
API_KEY_HEADER = "HTTP_X_API_KEY"


class SessionAuthentication(authentication.SessionAuthentication):
    """Django's session cookie (browser, admin; 24 h). CSRF is enforced on unsafe methods."""

    def authenticate_header(self, request: Request) -> str:
        # Being first in the list, this decides the challenge of every 401 (DRF turns a
        # 401 into a 403 when the first class has no challenge).
        return WWW_AUTHENTICATE


class JWTAuthentication(_SimpleJWTAuthentication):
    """``Authorization: Bearer <JWT>`` (HS256, 1 h) via simplejwt, plus the logout denylist."""

    def authenticate(self, request: Request):
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None:
            raise exceptions.AuthenticationFailed("Malformed Authorization header; expected 'Bearer <token>'.")
        try:
            token = self.get_validated_token(raw)
        except (InvalidToken, TokenError):
            raise exceptions.AuthenticationFailed("Token is invalid or expired.") from None
        from momentry import services

        if services.jwt_is_revoked(token.get("jti")):
            raise exceptions.AuthenticationFailed("Token was revoked (logged out).")
        try:
            user = self.get_user(token)
        except (InvalidToken, exceptions.AuthenticationFailed):
            raise exceptions.AuthenticationFailed("Token user is unknown or inactive.") from None
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class APIKeyAuthentication(authentication.BaseAuthentication):
    """``X-API-Key: mk_…`` — hashed at rest, constant-time compare, expiry, revocation."""

    def authenticate(self, request: Request):
        raw = request.META.get(API_KEY_HEADER)
        if raw is None:
            return None
        from momentry import services

        api_key = None if NUL in raw else services.find_api_key(raw.strip())  # (PostgreSQL refuses a NUL)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if api_key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("API key was revoked.")
        if not api_key.is_valid:
            raise exceptions.AuthenticationFailed("API key has expired.")
        if not api_key.user.is_active:
            raise exceptions.AuthenticationFailed("API key user is inactive.")
        services.touch_api_key(api_key)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class SignedURLAuthentication(authentication.BaseAuthentication):
    """A URL signed with :mod:`momentry.signing` (``…&exp=&sub=&sig=``), GET/HEAD only.

    The request then acts as the signer (same user, same API key and so the same scope). A
    signature that does not match, an expired URL or a signer no longer valid (revoked key,
    logged-out JWT or session) is a 403. Only views that list this class accept signatures
    (the media routes), so a signature is worth nothing elsewhere.
    """

    def authenticate(self, request: Request):
        from momentry import signing
        from momentry.errors import Forbidden

        grant = signing.verify(request._request.path, request._request.META.get("QUERY_STRING", ""))
        if grant is None:
            return None
        if request.method not in ("GET", "HEAD"):
            raise Forbidden("Signed URLs are for GET and HEAD only.")
        request._request.momentry_signed = grant
        return grant.user, grant.auth

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


AUTHENTICATORS = (SessionAuthentication, JWTAuthentication, APIKeyAuthentication)


def authenticate_request(request: HttpRequest) -> tuple[Any, Any]:
    """(user, auth) for a plain Django request, with the same rules as DRF views.

    Raises :class:`Unauthorized` (with ``WWW-Authenticate``) when no valid credential is
    given. The result is remembered on the request.
    """
    from momentry.errors import Forbidden, Unauthorized, detail_text

    if isinstance(request, Request):
        if not request.user or not request.user.is_authenticated:
            raise Unauthorized(headers={"WWW-Authenticate": WWW_AUTHENTICATE})
        return request.user, request.auth
    cached = getattr(request, "_momentry_auth", None)
    if cached is not None:
        return cached
    drf_request = Request(request, authenticators=[cls() for cls in AUTHENTICATORS])
    try:
        user, auth = drf_request.user, drf_request.auth
    except exceptions.AuthenticationFailed as exc:
        raise Unauthorized(detail_text(exc.detail), headers={"WWW-Authenticate": WWW_AUTHENTICATE}) from None
    except exceptions.PermissionDenied as exc:  # CSRF failure of a session-authenticated unsafe request
        raise Forbidden(detail_text(exc.detail)) from None
    if not user or not user.is_authenticated:
        raise Unauthorized(headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    request._momentry_auth = (user, auth)
    return user, auth


def can_write_identities(user: Any, auth: Any) -> bool:
    """Admin role (staff) or an API key created with write permission."""
    from momentry.models import APIKey

    if getattr(user, "is_staff", False):
        return True
    return isinstance(auth, APIKey) and auth.can_write


class CanWrite(permissions.BasePermission):
    """Reads need any credential; unsafe methods need admin role or a write key (403)."""

    message = "Changes need the admin role or an API key with write permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS or not hasattr(view, request.method.lower()):
            return True  # reads; and a method the route lacks, so the answer is its 405, not a 403
        return can_write_identities(request.user, request.auth)


class CanWriteIdentities(CanWrite):
    message = "Identity changes need the admin role or an API key with write permission."
