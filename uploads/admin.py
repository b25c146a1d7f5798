"""Uploads in the admin: who is sending what, how far it got, and why one failed."""

from __future__ import annotations

from django.contrib import admin

from uploads.models import Upload


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ["created_at", "filename", "owner", "state", "offset", "length", "storage", "file_uuid",
                    "expires_at"]
    list_filter = ["state", "storage"]
    search_fields = ["=id", "filename", "file_uuid", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = [f.name for f in Upload._meta.fields]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False  # uploads arrive over tus (/api/v1/uploads)

    def has_change_permission(self, request, obj=None):
        return False
