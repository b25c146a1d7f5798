"""Webhook subscriptions and the record of every delivery attempt.

A :class:`Delivery` row is one attempt: it is created ``pending`` when the attempt is scheduled
(the first by :func:`webhooks.events.emit`, each retry by the attempt before it) and filled in when a
worker makes it. The event's JSON body lives on the row, so a retry needs nothing from the queue
message but the row's id, and a lost message leaves a visible ``pending`` row.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Webhook(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000, help_text="http(s) address that receives the signed JSON POSTs")
    events = models.JSONField(default=list, help_text="the event types it receives, e.g. [\"job.succeeded\"]")
    #: the signing secret (``whsec_`` + 43 URL-safe characters); shown once, when the webhook is created
    secret = models.CharField(max_length=100, editable=False)
    description = models.CharField(max_length=200, blank=True, default="")
    active = models.BooleanField(default=True, help_text="inactive webhooks receive nothing")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event: str) -> bool:
        return self.active and event in (self.events or [])


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    #: ``evt_`` + 32 hex, the same for every attempt (and every webhook) of one event: receivers
    #: deduplicate on it (header ``Momentry-Event-Id``)
    event_id = models.CharField(max_length=40, db_index=True)
    event = models.CharField(max_length=40)
    payload = models.JSONField(help_text="the JSON body sent")
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="the receiver's HTTP status")
    error = models.TextField(blank=True, default="", help_text="why the attempt failed, in one line")
    response_body = models.TextField(blank=True, default="", help_text="the first 1 KB of the answer")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    #: when the attempt is due (scheduled) and when it was made
    scheduled_at = models.DateTimeField()
    attempted_at = models.DateTimeField(null=True, blank=True)
    #: set on a failed attempt that will be retried: when the next attempt is due
    next_retry_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["webhook", "-created_at", "-id"], name="delivery_webhook_recent"),
                   models.Index(fields=["status", "scheduled_at"], name="delivery_status_due")]

    def __str__(self) -> str:
        return f"{self.event} #{self.attempt} ({self.status})"
