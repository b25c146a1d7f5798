"""URL configuration: / (landing page), /health, /api/v1/ (auth, files, traces, identities, schema, docs), /admin/.

``/favicon.ico`` is a file whitenoise serves from momentry/root (settings ``WHITENOISE_ROOT``).
"""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

import momentry.schema  # noqa: F401 - registers the OpenAPI security schemes
from momentry import views, views_auth

# The schema and the docs pages are public: they describe the API and expose no data.
_public = {"permission_classes": [AllowAny], "authentication_classes": []}

urlpatterns = [
    path("", views.index, name="index"),
    path("health", views.health, name="health"),
    path("health/detailed", views.health_detailed, name="health-detailed"),
    path("api/v1/auth/login", views_auth.LoginView.as_view(), name="auth-login"),
    path("api/v1/auth/logout", views_auth.LogoutView.as_view(), name="auth-logout"),
    path("api/v1/schema/", SpectacularAPIView.as_view(**_public), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema", **_public), name="swagger-ui"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="momentry/redoc.html",
                                                       **_public), name="redoc"),
    path("api/v1/", include("media_api.urls")),
    path("api/v1/", include("identities.urls")),
    path("api/v1/", include("jobs.urls")),
    path("api/v1/", include("webhooks.urls")),  # webhooks (admin)
    path("api/v1/", include("uploads.urls")),  # tus uploads
    path("admin/cast/", include("identities.cast.urls")),  # the cast page (identities/cast/page.py)
    path("admin/", admin.site.urls),
]
