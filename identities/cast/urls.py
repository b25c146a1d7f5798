"""The cast page's URLs, included at ``admin/cast/`` by momentry.urls (before the admin's own)."""

from django.contrib import admin
from django.urls import path

import momentry.converters  # noqa: F401 - registers <file_uuid:…> (a value that names no file is a 404)
from identities.cast import page

urlpatterns = [
    path("", admin.site.admin_view(page.cast_view), name="cast"),
    path("api/name", page.api_name, name="cast-name"),
    path("api/bind", page.api_bind, name="cast-bind"),
    path("api/hide", page.api_hide, name="cast-hide"),
    path("api/unhide", page.api_unhide, name="cast-unhide"),
    path("api/separate", page.api_separate, name="cast-separate"),
    path("api/undo", page.api_undo, name="cast-undo"),
    path("api/regroup", page.api_regroup, name="cast-regroup"),
    path("api/tiles", page.api_tiles, name="cast-tiles"),
    path("api/summary", page.api_summary, name="cast-summary"),
    path("api/people", page.api_people, name="cast-people"),
    path("<file_uuid:file_uuid>/", admin.site.admin_view(page.cast_view), name="cast-file"),
]
