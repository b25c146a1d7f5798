"""Admin: webhooks (the secret is shown once, after adding) and every delivery attempt (read-only)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from webhooks import addresses, signing
from webhooks.events import EVENTS
from webhooks.models import Delivery, Webhook

_COLOURS = {"pending": "#777", "sending": "#2a6fb0", "succeeded": "#2e7d32", "failed": "#c62828"}


class WebhookForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=[(e, e) for e in EVENTS], widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Webhook
        fields = ["url", "events", "description", "active"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            addresses.check(url)
        except addresses.Refused as exc:
            raise forms.ValidationError(str(exc)) from None
        return url.strip()


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    form = WebhookForm
    list_display = ["url", "event_list", "active", "created_at", "created_by", "deliveries_link"]
    list_filter = ["active"]
    search_fields = ["url", "description"]
    readonly_fields = ["id", "created_by", "created_at", "deliveries_link"]
    list_select_related = ["created_by"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(delivery_count=Count("deliveries"))

    @admin.display(description="events")
    def event_list(self, webhook: Webhook) -> str:
        return ", ".join(webhook.events or [])

    @admin.display(description="deliveries")
    def deliveries_link(self, webhook: Webhook) -> str:
        if webhook.pk is None:
            return "—"
        url = reverse("admin:webhooks_delivery_changelist") + f"?webhook__id__exact={webhook.pk}"
        count = getattr(webhook, "delivery_count", None)
        label = "delivery attempts" if count is None else f"{count} delivery attempt{'s' * (count != 1)}"
        return format_html('<a href="{}">{}</a>', url, label)

    def save_model(self, request, obj: Webhook, form, change: bool) -> None:
        if not change:
            obj.secret = signing.new_secret()
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(request, format_html(
                "Signing secret of this webhook (shown only now; copy it to the receiver): <code>{}</code>",
                obj.secret))


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event", "event_id", "attempt", "status_badge", "status_code", "duration_ms",
                    "short_error", "next_retry_at", "webhook"]
    list_filter = ["status", "event", "webhook"]
    search_fields = ["=event_id"]
    list_select_related = ["webhook"]
    list_per_page = 50
    readonly_fields = ["webhook", "event_id", "event", "attempt", "status", "status_code", "error", "response_body",
                       "duration_ms", "scheduled_at", "attempted_at", "next_retry_at", "created_at", "body"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, delivery: Delivery) -> str:
        return format_html('<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>',
                           _COLOURS.get(delivery.status, "#777"), delivery.status)

    @admin.display(description="error")
    def short_error(self, delivery: Delivery) -> str:
        return delivery.error[:120]

    @admin.display(description="body sent")
    def body(self, delivery: Delivery) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(delivery.payload, indent=2))
