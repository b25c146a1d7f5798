"""The cast page's URLs, included at ``admin/cast/`` by momentry.urls (before the admin's own)."""

from django.contrib import admin
from django.urls import path

import momentry.converters  # noqa: F401 - registers <file_uuid:…> (a value that names no file is a 404)
from identities import cast_page

urlpatterns = [
    path("", admin.site.admin_view(cast_page.cast_view), name="cast"),
    path("api/name", cast_page.api_name, name="cast-name"),
    path("api/bind", cast_page.api_bind, name="cast-bind"),
    path("api/hide", cast_page.api_hide, name="cast-hide"),
    path("api/unhide", cast_page.api_unhide, name="cast-unhide"),
    path("api/separate", cast_page.api_separate, name="cast-separate"),
    path("api/undo", cast_page.api_undo, name="cast-undo"),
    path("api/regroup", cast_page.api_regroup, name="cast-regroup"),
    path("api/tiles", cast_page.api_tiles, name="cast-tiles"),
    path("api/summary", cast_page.api_summary, name="cast-summary"),
    path("api/people", cast_page.api_people, name="cast-people"),
    path("<file_uuid:file_uuid>/", admin.site.admin_view(cast_page.cast_view), name="cast-file"),
]
