"""The landing page and health checks (no credentials needed)."""

from __future__ import annotations

import subprocess

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from momentry import __version__


def index(request: HttpRequest) -> HttpResponse:
    """``/``: where the admin's "View site" lands — links to the API docs and the admin."""
    return render(request, "momentry/index.html", {"version": __version__})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"success": True, "status": "ok", "version": __version__})


def _database_status() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"status": "ok", "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - any failure is a "down" status
        return {"status": "error", "vendor": connection.vendor, "message": str(exc).splitlines()[0][:200]}


def _ffmpeg_status() -> dict:
    try:
        out = subprocess.run(
            [settings.FFMPEG_BINARY, "-hide_banner", "-version"], capture_output=True, timeout=10, check=True
        )
        return {"status": "ok", "version": out.stdout.decode(errors="replace").split("\n", 1)[0]}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"status": "error", "message": str(exc)[:200]}


def health_detailed(request: HttpRequest) -> JsonResponse:
    import av

    checks = {"database": _database_status(), "ffmpeg": _ffmpeg_status(),
              "pyav": {"status": "ok", "ffmpeg_libraries": av.ffmpeg_version_info}}
    healthy = all(c["status"] == "ok" for c in checks.values())
    body = {"success": healthy, "status": "ok" if healthy else "degraded", "version": __version__, **checks}
    return JsonResponse(body, status=200 if healthy else 503)
