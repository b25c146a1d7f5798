"""File list and detail (only files in the caller's scope)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import schema as job_schema
from jobs import services as job_services
from jobs.models import Job
from jobs.views import RegisterSerializer, accepted, register_file_job
from media_api import selectors
from media_api.models import MediaFile
from media_api.services import files
from media_api.storage import lifecycle
from momentry import schema
from momentry.auth import CanWrite
from momentry.bodies import validated
from momentry.errors import not_found
from momentry.pagination import PAGE_PARAMETERS, paginate
from momentry.parsers import BoundedJSONParser
from momentry.schema import ERROR, StrictCharField


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
        "storage": f.storage,
        "owned": f.owned,
    }
    if hasattr(f, "trace_count"):
        data["trace_count"] = f.trace_count
        data["identity_count"] = f.identity_count
    return data


@extend_schema_field({"type": "string", "minLength": 8, "maxLength": 2048, "pattern": "^s3://[^/]+/.+",
                      "description": "s3://bucket/key of an object in MOMENTRY_STORAGE_URL's bucket or one of "
                                     "MOMENTRY_S3_REGISTER_BUCKETS"})
class ObjectUrlField(StrictCharField):
    """An object's ``s3://bucket/key`` (whether the bucket is configured and the object there: the view checks)."""


class RegisterObjectSerializer(serializers.Serializer):
    url = ObjectUrlField(max_length=2048, min_length=8)


REGISTER_BODY = PolymorphicProxySerializer(component_name="FileRegistration",
                                           serializers=[RegisterSerializer, RegisterObjectSerializer],
                                           resource_type_field_name=None)


class CanDeleteFiles(permissions.BasePermission):
    """DELETE needs the admin role (a staff user; through an API key only one with write permission)."""

    message = "Deleting a file needs the admin role."

    def has_permission(self, request: Request, view: object) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method != "DELETE":
            return True
        from momentry.models import APIKey

        read_only_key = isinstance(request.auth, APIKey) and not request.auth.can_write
        return bool(getattr(request.user, "is_staff", False)) and not read_only_key


FILE_DELETED = schema.success("FileDeleted", {
    "file_uuid": serializers.CharField(), "deleted": serializers.BooleanField(),
    "source": serializers.ChoiceField(["deleted", "kept"], help_text="deleted: the service stored the bytes (an "
                                      "upload) and removed them; kept: registered from elsewhere, left there"),
})


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
        summary="Queue the registration of a video under MOMENTRY_MEDIA_ROOTS ({path}) or an object in a configured "
                "bucket ({url}: s3://bucket/key) (probe, hash, frame index)",
        request=REGISTER_BODY,
        responses={202: job_schema.SUBMITTED},
        tags=["files", "jobs"],
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict) and "url" in request.data:
            url = files.object_to_register(validated(RegisterObjectSerializer, request)["url"])
            return accepted(*job_services.submit(Job.Kind.REGISTER, params={"url": url}, user=request.user))
        return register_file_job(request)


class FileDetailView(APIView):
    permission_classes = [CanDeleteFiles]

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

    @extend_schema(
        operation_id="file_delete",
        summary="Delete a file (admin role): its rows, cached images and renders, and the bytes if the service "
                "stored them (an upload); a file registered from elsewhere is left where it is",
        responses={200: FILE_DELETED,
                   409: OpenApiResponse(ERROR, description="CONFLICT: a job on the file is queued or running "
                                                           "(details.job_id)")},
        tags=["files"],
    )
    def delete(self, request: Request, file_uuid: str) -> Response:
        media_file = selectors.file_for_request(request, file_uuid)
        done = lifecycle.delete_file(media_file)
        return Response({"success": True, "file_uuid": done.file_uuid, "deleted": True, "source": done.source})
