from django.apps import AppConfig


class MomentryConfig(AppConfig):
    """Project-level app: credentials (API keys) and file scope live here."""

    name = "momentry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from momentry import (
            checks,  # noqa: F401 - registers the deploy checks
            signing,  # noqa: F401 - connects the receiver by which logging out ends a session's signed URLs
        )
