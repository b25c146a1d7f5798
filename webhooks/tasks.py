"""Celery tasks of webhooks: thin, idempotent (webhooks.services says why a duplicate is harmless)."""

from __future__ import annotations

from celery import shared_task
from django.db import close_old_connections

from webhooks import services


@shared_task(name="webhooks.tasks.deliver")
def deliver(delivery_id: int) -> None:
    close_old_connections()
    services.attempt(int(delivery_id))


@shared_task(name="webhooks.tasks.sweep")
def sweep() -> None:
    close_old_connections()
    services.sweep()
