"""Beat task: remove uploads abandoned past their ``expires_at`` (bytes first, then the row), and the bytes of
completed uploads whose register job ended without registering them."""

from __future__ import annotations

from celery import shared_task
from django.db import close_old_connections


@shared_task(name="uploads.tasks.expire_uploads")
def expire_uploads() -> int:
    close_old_connections()
    from uploads.services import expire_uploads as expire

    return expire()
