from django.apps import AppConfig


class MomentryConfig(AppConfig):
    """Project-level app: credentials (API keys) and file scope live here."""

    name = "momentry"
    default_auto_field = "django.db.models.BigAutoField"
