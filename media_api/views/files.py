"""File list and detail (only files in the caller's scope)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import schema as job_schema
from jobs.views import RegisterSerializer, register_file_job
from media_api import selectors
from media_api.models import MediaFile
from momentry import schema
from momentry.auth import CanWrite
from momentry.errors import not_found
from momentry.pagination import PAGE_PARAMETERS, paginate
from momentry.parsers import BoundedJSONParser


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
        "truncated": f.truncated,
        "warnings": list(f.warnings),
        "created_at": f.created_at.isoformat(),
    }
    if hasattr(f, "trace_count"):
        data["trace_count"] = f.trace_count
        data["identity_count"] = f.identity_count
    return data


class FileListView(APIView):
    permission_classes = [CanWrite]
    parser_classes = [BoundedJSONParser]  # POST: a JSON object (415 otherwise)

    @extend_schema(
        operation_id="files_list",
        summary="Files in the caller's scope (newest first), with trace and identity counts",
        parameters=PAGE_PARAMETERS,
        responses={200: schema.FILE_PAGE},
        tags=["files"],
    )
    def get(self, request: Request) -> Response:
        queryset = selectors.files_with_counts(selectors.files_visible_to(request))
        return Response(paginate(queryset, request.query_params, "files", serialize_file))

    @extend_schema(
        operation_id="files_register",
        summary="Queue the registration of a video lying under MOMENTRY_MEDIA_ROOTS (probe, hash, frame index)",
        request=RegisterSerializer,
        responses={202: job_schema.SUBMITTED},
        tags=["files", "jobs"],
    )
    def post(self, request: Request) -> Response:
        return register_file_job(request)


class FileDetailView(APIView):
    @extend_schema(
        operation_id="file_detail",
        summary="Probe fields, trace and identity counts of one file",
        responses={200: schema.FILE_DETAIL},
        tags=["files"],
    )
    def get(self, request: Request, file_uuid: str) -> Response:
        annotated = selectors.files_with_counts(selectors.files_visible_to(request)).filter(
            file_uuid=str(file_uuid).lower()
        ).first()
        if annotated is None:
            raise not_found("file", file_uuid=file_uuid)
        return Response({"success": True, **serialize_file(annotated)})
