"""Credentials, checked in order: session cookie, Bearer JWT, X-API-Key.

(Foundation version: session and JWT. The Auth issue adds API keys and scope.)
"""

from __future__ import annotations

from rest_framework import authentication
from rest_framework_simplejwt.authentication import JWTAuthentication as _SimpleJWTAuthentication


class SessionAuthentication(authentication.SessionAuthentication):
    """Django's session cookie (browser, admin)."""


class JWTAuthentication(_SimpleJWTAuthentication):
    """``Authorization: Bearer <JWT>`` (HS256, 1 h) from djangorestframework-simplejwt."""


class APIKeyAuthentication(authentication.BaseAuthentication):
    """Placeholder until API keys land; authenticates nobody."""

    def authenticate(self, request):
        return None
