"""Admin for API keys (create: key shown once; revoke) and user file scopes."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.utils import timezone

from momentry import services
from momentry.models import APIKey, UserScope


class APIKeyAddForm(forms.ModelForm):
    days = forms.IntegerField(min_value=1, initial=settings.MOMENTRY_API_KEY_DAYS, help_text="days until expiry")

    class Meta:
        model = APIKey
        fields = ["user", "name", "can_write", "limit_to_files", "files"]


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "kind", "can_write", "limit_to_files", "created_at", "expires_at",
                    "last_used_at", "revoked_at"]
    list_filter = ["kind", "can_write", "limit_to_files", "revoked_at"]
    search_fields = ["prefix", "name", "user__username"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    filter_horizontal = ["files"]
    readonly_fields = ["prefix", "kind", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = APIKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "days", "can_write", "limit_to_files", "files"]
        return ["prefix", "user", "name", "kind", "can_write", "limit_to_files", "files", "created_at",
                "expires_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [*self.readonly_fields, "user"]

    def save_model(self, request, obj, form, change):
        if not change:
            raw = services.new_raw_key()
            obj.prefix, obj.key_hash = raw[: services.PREFIX_LENGTH], services.hash_key(raw)
            obj.expires_at = timezone.now() + timedelta(days=form.cleaned_data["days"])
            self.message_user(request, f"API key (shown once, copy it now): {raw}", messages.WARNING)
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(UserScope)
class UserScopeAdmin(admin.ModelAdmin):
    list_display = ["user"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]
    filter_horizontal = ["files"]
