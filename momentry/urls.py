"""URL configuration: /health, /api/v1/, /admin/."""

from django.contrib import admin
from django.urls import include, path

from momentry import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/detailed", views.health_detailed, name="health-detailed"),
    path("api/v1/", include("media_api.urls")),
    path("admin/", admin.site.urls),
]
