from django.apps import AppConfig


class UploadsConfig(AppConfig):
    """tus 1.0.0 uploads at /api/v1/uploads (docs/uploads.md)."""

    name = "uploads"
    verbose_name = "Uploads"
    default_auto_field = "django.db.models.BigAutoField"
