"""System checks for a production deploy (``manage.py check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def generated_secret_key(app_configs, **kwargs) -> list[Warning]:
    """A key generated into the data directory is fine for a demo, not for production."""
    if getattr(settings, "MOMENTRY_SECRET_KEY_SOURCE", "environment") != "generated":
        return []
    return [Warning(
        "The signing key was generated into MOMENTRY_DATA_DIR/secret_key.",
        hint="Set MOMENTRY_SECRET_KEY from your secret store; every web node and worker must share it, and a key "
             "kept beside the image cache is exposed by a mis-served data directory or a backup.",
        id="momentry.W001",
    )]


@register(Tags.caches, deploy=True)
def shared_cache(app_configs, **kwargs) -> list[Warning]:
    """Login lockout and rate limits only hold across workers with a shared cache."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [Warning("The default cache is per process.", hint="Set MOMENTRY_REDIS_URL (or keep the database "
                        "cache) so that login lockout holds on every worker.", id="momentry.W002")]
    return []
