from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Background jobs on Celery: registration, face analysis, prewarm and clustering."""

    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"
