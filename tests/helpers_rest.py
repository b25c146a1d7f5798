"""Shared helpers for the REST/auth test modules: keys, clients, traces made by the importer."""

from __future__ import annotations

from rest_framework.test import APIClient

from media_api.models import MediaFile
from media_api.services.detections_import import import_detections
from momentry.services import create_api_key


def key_client(user, **kwargs) -> tuple[APIClient, str]:
    """An APIClient sending a fresh X-API-Key of ``user`` (kwargs go to create_api_key)."""
    key = create_api_key(user, **kwargs).key
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client, key


def load_traces(media_file: MediaFile, spans: dict[int, tuple[int, int, int]], identity: dict[int, str] | None = None):
    """Import detections through the real importer: ``{trace_id: (first_frame, last_frame, step)}``."""
    rows = []
    identity = identity or {}
    for trace_id, (first, last, step) in spans.items():
        for frame in range(first, last + 1, step):
            row = {"trace_id": trace_id, "frame_number": frame, "x": 10 + trace_id, "y": 20, "width": 64,
                   "height": 64, "confidence": 0.5 + (frame % 5) / 10}
            if trace_id in identity:
                row["identity"] = identity[trace_id]
            rows.append(row)
    return import_detections(media_file, rows)
