"""POST /api/v1/auth/login and /api/v1/auth/logout.

Both run without DRF authentication classes, hence without CSRF checks, so that curl and
scripts can call them with no token. A forged cross-site logout only logs someone out; a
forged login would need the password. Every other unsafe call authenticated by the session
cookie keeps DRF's CSRF enforcement.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.contrib.auth import SESSION_KEY, authenticate, login, logout
from django.core.cache import cache
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from momentry import schema, services
from momentry.auth import WWW_AUTHENTICATE
from momentry.bodies import validated
from momentry.client_address import client_address
from momentry.errors import Unauthorized, Unavailable
from momentry.schema import StrictCharField

# Password guessing: after this many failed attempts for one username from one client, login
# answers 429 until the window has passed. Attempts are counted in Django's cache, which is
# shared by every worker (Redis or the database, never per process; see settings.CACHES), and
# per (username, client address) so that a stranger cannot lock a user out for everyone.
MAX_LOGIN_FAILURES = 10
LOGIN_LOCKOUT_SECONDS = 15 * 60
#: Retry-After of a login refused because the attempt counter (the cache) cannot be reached.
COUNTER_DOWN_RETRY_SECONDS = 30

logger = logging.getLogger("momentry.auth")


def _failures_key(request: Request, username: str) -> str:
    client = client_address(request._request)
    digest = hashlib.sha256(f"{username.lower()}|{client}".encode()).hexdigest()
    return f"login-failures:{digest}"


def _count_attempt(key: str) -> int:
    """Count one attempt before the password is checked, so parallel guesses cannot slip past.

    The lockout fails closed: when the cache cannot count (Redis down or not answering within
    its socket timeout), no password is checked and login answers 503 ``UNAVAILABLE`` with
    ``Retry-After`` — an uncounted attempt would be an unlimited guess. Routes that do not log
    in do not use the cache and go on working.
    """
    try:
        cache.add(key, 0, LOGIN_LOCKOUT_SECONDS)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, LOGIN_LOCKOUT_SECONDS)
            return 1
    except Exception as exc:  # noqa: BLE001 - whatever the backend raises, the attempt is not counted
        logger.error("login refused: the attempt counter (cache) is unavailable: %s", exc)
        raise Unavailable("Login is unavailable for a moment (the login-attempt counter cannot be reached); "
                          "retry shortly.", retry_after=COUNTER_DOWN_RETRY_SECONDS) from None


def _forget_failures(key: str) -> None:
    """After a successful login; if the cache has just gone away the count simply expires."""
    try:
        cache.delete(key)
    except Exception as exc:  # noqa: BLE001 - the login itself succeeded
        logger.warning("could not reset the login-attempt counter: %s", exc)


@extend_schema_field({"type": "string", "pattern": "^[^\\x00]+$", "description": "not empty, no NUL character"})
class Credential(StrictCharField):
    """A username or password exactly as typed: not empty, not trimmed (a NUL character is a 400)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)


class LoginSerializer(serializers.Serializer):
    username = Credential()
    password = Credential(style={"input_type": "password"})


class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_login",
        summary="Log in: a session cookie, a 1-hour JWT and a new API key",
        request=LoginSerializer,
        responses={200: inline_serializer("LoginResponse", {
            "success": serializers.BooleanField(),
            "jwt": serializers.CharField(),
            "api_key": serializers.CharField(),
            "api_key_expires_at": serializers.DateTimeField(),
            "user": inline_serializer("LoginUser", {"username": serializers.CharField(),
                                                    "role": serializers.ChoiceField(["admin", "user"])}),
            "expires_at": serializers.DateTimeField(help_text="JWT expiry"),
            "session_expires_at": serializers.DateTimeField(),
        }), 401: OpenApiResponse(schema.ERROR, description="UNAUTHORIZED: wrong username or password"),
            429: OpenApiResponse(schema.ERROR, description="THROTTLED: too many failed logins for this username "
                                                           "from this client; retry after Retry-After seconds"),
            503: OpenApiResponse(schema.ERROR, description="UNAVAILABLE: the login-attempt counter (the cache) "
                                                           "cannot be reached, so no password is checked; retry "
                                                           "after Retry-After seconds")},
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        # JSON, form or multipart; a missing, empty or unknown field is a 400 naming it.
        data = validated(LoginSerializer, request)
        failures_key = _failures_key(request, data["username"])
        if _count_attempt(failures_key) > MAX_LOGIN_FAILURES:
            raise exceptions.Throttled(wait=LOGIN_LOCKOUT_SECONDS, detail="Too many failed logins; retry later.")
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            raise Unauthorized("Invalid username or password.", headers={"WWW-Authenticate": WWW_AUTHENTICATE})
        _forget_failures(failures_key)
        login(request._request, user)
        credentials = services.issue_login_credentials(user)
        session_expiry = request._request.session.get_expiry_date()
        return Response({
            "success": True,
            "jwt": credentials.jwt,
            "api_key": credentials.api_key.key,
            "api_key_expires_at": credentials.api_key.api_key.expires_at.isoformat(),
            "user": {"username": user.get_username(), "role": services.role_of(user)},
            "expires_at": credentials.jwt_expires_at.isoformat(),
            "session_expires_at": session_expiry.isoformat(),
        })


class LogoutView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_logout",
        summary="Log out: ends the session; a Bearer JWT sent along is revoked with its login API key",
        request=None,
        responses={200: schema.LOGOUT_RESULT},
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        django_request = request._request
        # (DRF has already set request.user to anonymous: no authentication classes here.)
        had_session = SESSION_KEY in django_request.session
        logout(django_request)
        jwt_revoked = False
        header = django_request.META.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Bearer "):
            try:
                token = AccessToken(header[len("Bearer "):].strip())
            except TokenError:
                token = None  # expired or invalid: nothing left to revoke
            if token is not None:
                services.revoke_jwt(token)
                jwt_revoked = True
        return Response({"success": True, "session_ended": had_session, "jwt_revoked": jwt_revoked})
