"""File list and detail."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from media_api import selectors
from media_api.models import MediaFile
from momentry.errors import NotFound


def serialize_file(f: MediaFile) -> dict:
    data = {
        "file_uuid": f.file_uuid,
        "name": f.name,
        "size": f.size,
        "container": f.container,
        "video_codec": f.video_codec,
        "width": f.width,
        "height": f.height,
        "fps": f.fps,
        "fps_rational": f.fps_rational,
        "total_frames": f.total_frames,
        "duration": f.duration,
        "has_audio": f.has_audio,
        "audio_codec": f.audio_codec or None,
        "created_at": f.created_at.isoformat(),
    }
    if hasattr(f, "trace_count"):
        data["trace_count"] = f.trace_count
        data["identity_count"] = f.identity_count
    return data


class FileDetailView(APIView):
    def get(self, request: Request, file_uuid: str) -> Response:
        media_file = selectors.file_for_request(request, file_uuid)
        annotated = selectors.files_with_counts(type(media_file).objects.filter(pk=media_file.pk)).first()
        if annotated is None:
            raise NotFound("File not found.")
        return Response({"success": True, **serialize_file(annotated)})
