"""OpenAPI security schemes for the three credentials (drf-spectacular extensions)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "momentry.auth.SessionAuthentication"
    name = "cookieAuth"
    priority = 10

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid",
                "description": "Django session from POST /api/v1/auth/login or /admin/ (24 h). "
                               "Unsafe methods also need the X-CSRFToken header."}


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "momentry.auth.JWTAuthentication"
    name = "bearerAuth"
    priority = 10

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "The `jwt` from POST /api/v1/auth/login (HS256, 1 h)."}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "momentry.auth.APIKeyAuthentication"
    name = "apiKeyAuth"
    priority = 10

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-API-Key",
                "description": "A key from login or `manage.py create_api_key` (90 days by default)."}
