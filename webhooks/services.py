"""Webhook work: create one, queue an event's deliveries, make an attempt, schedule the next.

Deliveries go to the workers by task name (``webhooks.tasks.deliver``, like jobs.dispatch) with the
delivery row's id, so nothing here imports task code. Every attempt is a :class:`Delivery` row; a
failed one schedules the next (a new ``pending`` row) after an exponential back-off:
``MOMENTRY_WEBHOOK_RETRY_BASE_SECONDS`` × 2^(attempt-1), at most 6 hours, ±10 % jitter, until
``MOMENTRY_WEBHOOK_MAX_ATTEMPTS`` (defaults 60 s and 13: the last attempt about a day after the first).

A message may arrive twice (late acknowledgement; Redis redelivers a message held past its
visibility timeout, which long countdowns are): an attempt starts with a guarded update from
``pending`` to ``sending``, so only one process makes it.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webhooks import addresses, sender, signing
from webhooks.models import Delivery, Webhook

logger = logging.getLogger("momentry.webhooks")

DELIVER_TASK = "webhooks.tasks.deliver"
MAX_DELAY_SECONDS = 6 * 3600
#: At most this many webhooks (each event is one delivery per webhook).
MAX_WEBHOOKS = 100


class TooMany(Exception):
    pass


def create_webhook(url: str, events: list[str], description: str = "", active: bool = True,
                   user: Any = None) -> Webhook:
    """A new webhook with a fresh secret; :class:`addresses.Refused` when the URL may not receive webhooks."""
    addresses.check(url)
    if Webhook.objects.count() >= MAX_WEBHOOKS:
        raise TooMany(f"at most {MAX_WEBHOOKS} webhooks; delete one first.")
    return Webhook.objects.create(url=url.strip(), events=list(dict.fromkeys(events)), description=description,
                                  active=active, secret=signing.new_secret(),
                                  created_by=user if getattr(user, "pk", None) is not None else None)


# --------------------------------------------------------------------------- queueing


def send(delivery: Delivery, countdown: float = 0.0) -> bool:
    """Put the attempt on the queue; False (logged) when the broker cannot take it (the sweep sends it later)."""
    from momentry.celery import app

    try:
        app.send_task(DELIVER_TASK, args=[delivery.pk], countdown=countdown or None, retry=False)
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; the row stays pending
        logger.warning("could not queue webhook delivery %s now (%s)", delivery.pk, exc)
        return False
    return True


def enqueue_event(event: str, body: dict[str, Any]) -> list[Delivery]:
    """One pending first attempt per active webhook subscribed to ``event``, each sent to the workers."""
    hooks = [hook for hook in Webhook.objects.filter(active=True).only("id", "events", "active") if hook.wants(event)]
    if not hooks:
        return []
    now = timezone.now()
    rows = Delivery.objects.bulk_create([
        Delivery(webhook=hook, event_id=body["id"], event=event, payload=body, scheduled_at=now) for hook in hooks])
    if any(row.pk is None for row in rows):  # a backend without RETURNING
        rows = list(Delivery.objects.filter(event_id=body["id"], attempt=1))
    for row in rows:
        send(row)
    return rows


# --------------------------------------------------------------------------- attempts


def retry_delay(attempt: int) -> float:
    """Seconds between attempt ``attempt`` failing and the next one."""
    base = settings.MOMENTRY_WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    return min(base, MAX_DELAY_SECONDS) * random.uniform(0.9, 1.1)


def _claim(delivery_id: int) -> Delivery | None:
    now = timezone.now()
    if not Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING).update(
            status=Delivery.Status.SENDING, attempted_at=now):
        return None  # made already, being made, or its webhook was deleted
    return Delivery.objects.select_related("webhook").get(pk=delivery_id)


def attempt(delivery_id: int) -> Delivery | None:
    """Make the attempt (once, whoever calls), record it, schedule the next one if it failed."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    webhook = delivery.webhook
    if not webhook.active:
        outcome = sender.Outcome(False, error="not sent: the webhook is inactive")
    else:
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Momentry-Signature": signing.header(webhook.secret, body),
            "Momentry-Event-Id": delivery.event_id,
            "Momentry-Event": delivery.event,
            "Momentry-Delivery-Attempt": str(delivery.attempt),
        }
        try:
            outcome = sender.post(webhook.url, body, headers)
        except Exception as exc:  # noqa: BLE001 - recorded (and retried), never left "sending"
            logger.exception("webhook %s: delivery %s failed unexpectedly", webhook.pk, delivery.pk)
            outcome = sender.Outcome(False, error=f"{exc.__class__.__name__}: {str(exc)[:200]}")
    _record(delivery, outcome, retry=webhook.active)
    return delivery


def _record(delivery: Delivery, outcome: sender.Outcome, retry: bool) -> None:
    delivery.status = Delivery.Status.SUCCEEDED if outcome.ok else Delivery.Status.FAILED
    delivery.status_code, delivery.error = outcome.status_code, outcome.error[:1000]
    delivery.response_body, delivery.duration_ms = outcome.response_body[:sender.RESPONSE_EXCERPT], outcome.duration_ms
    following = None
    with transaction.atomic():
        if not outcome.ok and retry and delivery.attempt < settings.MOMENTRY_WEBHOOK_MAX_ATTEMPTS:
            delivery.next_retry_at = timezone.now() + timedelta(seconds=retry_delay(delivery.attempt))
            following = Delivery.objects.create(
                webhook_id=delivery.webhook_id, event_id=delivery.event_id, event=delivery.event,
                payload=delivery.payload, attempt=delivery.attempt + 1, scheduled_at=delivery.next_retry_at)
        delivery.save(update_fields=["status", "status_code", "error", "response_body", "duration_ms",
                                     "next_retry_at"])
    if not outcome.ok:
        logger.warning("webhook %s: %s attempt %s failed: %s%s", delivery.webhook_id, delivery.event,
                       delivery.attempt, outcome.error, "" if following else " (no more attempts)")
    if following is not None:
        send(following, countdown=max(0.0, (following.scheduled_at - timezone.now()).total_seconds()))


# --------------------------------------------------------------------------- sweeping


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Beat's round: send again attempts whose message was lost, fail attempts whose worker died, forget old ones.

    A pending attempt overdue by ``MOMENTRY_WEBHOOK_RESEND_SECONDS`` is sent again (the guarded claim
    makes a duplicate harmless); one stuck in ``sending`` longer than a request can take is recorded
    as failed (its worker died) and retried; rows older than ``MOMENTRY_WEBHOOK_KEEP_DAYS`` are deleted.
    """
    now = now or timezone.now()
    overdue = now - timedelta(seconds=settings.MOMENTRY_WEBHOOK_RESEND_SECONDS)
    resent = 0
    for delivery in Delivery.objects.filter(status=Delivery.Status.PENDING, scheduled_at__lt=overdue)[:1000]:
        resent += send(delivery)
    stuck = now - timedelta(seconds=3 * settings.MOMENTRY_WEBHOOK_TIMEOUT + 60)
    lost = 0
    for delivery in Delivery.objects.filter(status=Delivery.Status.SENDING, attempted_at__lt=stuck)[:1000]:
        if Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(
                status=Delivery.Status.FAILED):
            _record(delivery, sender.Outcome(False, error="its worker stopped during the attempt"), retry=True)
            lost += 1
    deleted, _ = Delivery.objects.filter(
        created_at__lt=now - timedelta(days=settings.MOMENTRY_WEBHOOK_KEEP_DAYS)).delete()
    return {"resent": resent, "lost": lost, "deleted": deleted}
