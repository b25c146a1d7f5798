from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Outgoing webhooks: subscriptions, signed deliveries on Celery with retries, every attempt recorded."""

    name = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"
