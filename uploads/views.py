"""tus 1.0.0 over DRF: thin views over uploads.services (docs/uploads.md).

Every answer carries ``Tus-Resumable: 1.0.0``; errors are the JSON envelope with the status tus
gives them (409 wrong offset, 410 expired, 412 unsupported tus version (400 when Tus-Resumable is
missing), 413 too long, 415 wrong chunk content type, 460 checksum mismatch, 429 too many unfinished
uploads). Every method but OPTIONS needs the admin role or an API key with write permission (403), like other writes.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import format_datetime
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from momentry.auth import can_write_identities
from momentry.errors import ApiError, BadRequest
from momentry.schema import ERROR, UUID_PATTERN
from uploads import services
from uploads.models import Upload

OCTET_STREAM = "application/offset+octet-stream"
TUS_METHODS = {"POST", "PATCH", "HEAD", "DELETE"}


class PreconditionFailed(ApiError):
    status, code, default_message = 412, "PRECONDITION_FAILED", "Tus-Resumable must be 1.0.0."


class UnsupportedChunkType(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"
    default_message = f"A chunk is sent with Content-Type: {OCTET_STREAM}."


class CanUpload(permissions.BasePermission):
    """OPTIONS (tus discovery) is open; everything else needs the admin role or a write key."""

    message = "Uploads need the admin role or an API key with write permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method == "OPTIONS":
            return True
        if not (request.user and request.user.is_authenticated):
            return False
        return can_write_identities(request.user, request.auth)


def _http_date(value: Any) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)


def _tus_headers(upload: Upload) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length),
               "Cache-Control": "no-store"}
    if upload.state == Upload.State.UPLOADING:
        headers["Upload-Expires"] = _http_date(upload.expires_at)
    return headers


def _empty(status: int, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(status=status)
    for name, value in headers.items():
        response[name] = value
    return response


TUS_RESUMABLE = OpenApiParameter("Tus-Resumable", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
                                 enum=["1.0.0"], description="the tus protocol version (412 otherwise)")
UPLOAD_ID = OpenApiParameter("upload_id", {"type": "string", "pattern": UUID_PATTERN}, OpenApiParameter.PATH,
                             description="The upload: 32 lowercase hex characters (a dashed UUID is accepted too).")
UPLOAD = inline_serializer("Upload", {
    "id": serializers.CharField(),
    "url": serializers.CharField(),
    "filename": serializers.CharField(),
    "length": serializers.IntegerField(),
    "offset": serializers.IntegerField(),
    "state": serializers.ChoiceField([s.value for s in Upload.State]),
    "storage": serializers.ChoiceField(["local", "s3"]),
    "file_uuid": serializers.CharField(allow_null=True),
    "job": inline_serializer("UploadJob", {
        "id": serializers.CharField(), "state": serializers.CharField(), "url": serializers.CharField(),
        "error": serializers.CharField(allow_null=True)}, allow_null=True),
    "error": serializers.CharField(allow_null=True),
    "expires_at": serializers.DateTimeField(allow_null=True),
    "created_at": serializers.DateTimeField(),
})
UPLOAD_DETAIL = inline_serializer("UploadDetail", {"success": serializers.BooleanField(), "upload": UPLOAD})
GONE = OpenApiResponse(ERROR, description="GONE: the upload expired (beat removes it; then 404)")
NOT_TUS = OpenApiResponse(ERROR, description="PRECONDITION_FAILED: Tus-Resumable is not 1.0.0 (Tus-Version lists "
                                             "the versions spoken)")
NOT_WRITER = OpenApiResponse(ERROR, description="FORBIDDEN: uploads need the admin role or a write key")


class _TusView(APIView):
    permission_classes = [CanUpload]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method not in TUS_METHODS or not hasattr(self, request.method.lower()):
            return  # (a method the route lacks answers its 405)
        version = request.META.get("HTTP_TUS_RESUMABLE")
        if version is None:
            raise BadRequest("Tus-Resumable: 1.0.0 is required on tus requests.", param="Tus-Resumable")
        if version != services.TUS_VERSION:
            raise PreconditionFailed(f"Tus-Resumable {version[:20]!r} is not supported; this server speaks 1.0.0.",
                                     headers={"Tus-Version": services.TUS_VERSION})

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = services.TUS_VERSION
        if request.method == "HEAD" and response.status_code >= 400:
            response.content = b""  # a HEAD answer has no body, errors included
        return response

    def options(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return _empty(204, {"Tus-Version": services.TUS_VERSION, "Tus-Extension": services.EXTENSIONS,
                            "Tus-Max-Size": str(settings.MOMENTRY_MAX_UPLOAD_BYTES),
                            "Tus-Checksum-Algorithm": ",".join(services.CHECKSUMS)})


class UploadCollectionView(_TusView):
    @extend_schema(
        operation_id="uploads_create",
        summary="tus creation: start an upload of Upload-Length bytes (then PATCH its chunks to Location)",
        parameters=[
            TUS_RESUMABLE,
            OpenApiParameter("Upload-Length", {"type": "integer", "minimum": 1,
                                               "maximum": settings.MOMENTRY_MAX_UPLOAD_BYTES},
                             OpenApiParameter.HEADER, required=True,
                             description="the whole file's size in bytes (413 over MOMENTRY_MAX_UPLOAD_BYTES)"),
            OpenApiParameter("Upload-Metadata", {"type": "string", "pattern": services.METADATA_PATTERN},
                             OpenApiParameter.HEADER,
                             description="comma-separated `key base64(value)` pairs; `filename` names the file"),
        ],
        request=None,
        responses={
            201: OpenApiResponse(None, description="created: Location is the upload's URL (/api/v1/uploads/{id}), "
                                                   "Upload-Expires when it is removed unless a chunk arrives"),
            403: NOT_WRITER, 412: NOT_TUS,
            413: OpenApiResponse(ERROR, description="PAYLOAD_TOO_LARGE: Upload-Length over MOMENTRY_MAX_UPLOAD_BYTES"),
            429: OpenApiResponse(ERROR, description="TOO_MANY_UPLOADS: the credential has "
                                                    "MOMENTRY_UPLOAD_MAX_INCOMPLETE unfinished uploads; "
                                                    "Retry-After: when the oldest expires"),
        },
        tags=["uploads"],
    )
    def post(self, request: Request) -> HttpResponse:
        if "HTTP_UPLOAD_DEFER_LENGTH" in request.META:
            raise BadRequest("Upload-Defer-Length is not supported: send Upload-Length.", param="Upload-Length")
        length = services.parse_length(request.META.get("HTTP_UPLOAD_LENGTH"), "Upload-Length")
        metadata = services.parse_metadata(request.META.get("HTTP_UPLOAD_METADATA"))
        upload = services.create(request.user, request.auth, length, metadata)
        return _empty(201, {"Location": f"/api/v1/uploads/{upload.pk.hex}",
                            "Upload-Expires": _http_date(upload.expires_at)})


class UploadView(_TusView):
    def _upload(self, request: Request, upload_id: Any) -> Upload:
        return services.upload_for(request.user, request.auth, upload_id)

    @extend_schema(
        operation_id="upload_detail",
        summary="One upload: offset, length, state, the register job and the file_uuid once registered",
        parameters=[UPLOAD_ID],
        responses={200: UPLOAD_DETAIL, 403: NOT_WRITER},
        tags=["uploads"],
    )
    def get(self, request: Request, upload_id: Any) -> Response:
        upload = services.finish_if_stored(self._upload(request, upload_id))
        return Response({"success": True, "upload": services.serialize(upload)},
                        headers={"Cache-Control": "no-store"})

    def head(self, request: Request, upload_id: Any) -> HttpResponse:
        upload = self._upload(request, upload_id)
        services.check_not_expired(upload)
        upload = services.finish_if_stored(services.wait_until_idle(upload))
        return _empty(200, _tus_headers(upload))

    @extend_schema(
        operation_id="upload_chunk",
        summary="tus core: append a chunk at Upload-Offset (a body cut off is kept as far as it arrived)",
        parameters=[
            UPLOAD_ID, TUS_RESUMABLE,
            OpenApiParameter("Upload-Offset", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                             OpenApiParameter.HEADER, required=True,
                             description="the upload's current offset (HEAD); 409 otherwise"),
            OpenApiParameter("Upload-Checksum", {"type": "string", "pattern": services.CHECKSUM_PATTERN},
                             OpenApiParameter.HEADER,
                             description="`sha1|md5|sha256 base64(digest)` of this chunk; 460 when it differs"),
        ],
        request={OCTET_STREAM: OpenApiTypes.BINARY},
        responses={
            204: OpenApiResponse(None, description="stored: Upload-Offset is the new offset (Upload-Expires moved on)"),
            403: NOT_WRITER,
            409: OpenApiResponse(ERROR, description="CONFLICT: Upload-Offset is not the upload's offset "
                                                    "(details.offset), or it is complete"),
            410: GONE, 412: NOT_TUS,
            415: OpenApiResponse(ERROR, description=f"UNSUPPORTED_MEDIA_TYPE: Content-Type is not {OCTET_STREAM}"),
            460: OpenApiResponse(ERROR, description="CHECKSUM_MISMATCH: the chunk was not stored"),
        },
        tags=["uploads"],
    )
    def patch(self, request: Request, upload_id: Any) -> HttpResponse:
        meta = request.META
        if meta.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != OCTET_STREAM:
            raise UnsupportedChunkType(details={"content_type": meta.get("CONTENT_TYPE", "")})
        offset = services.parse_length(meta.get("HTTP_UPLOAD_OFFSET"), "Upload-Offset")
        checksum = services.parse_checksum(meta.get("HTTP_UPLOAD_CHECKSUM"))
        upload = self._upload(request, upload_id)
        services.check_not_expired(upload)
        raw_length = meta.get("CONTENT_LENGTH")
        if raw_length:
            declared = services.parse_length(raw_length, "Content-Length")
            body = request._request  # Django's stream, bounded by Content-Length
        else:  # a chunked body: read to its end (bounded by Upload-Length)
            declared, body = None, meta["wsgi.input"]
        upload = services.receive(upload, offset, body, declared, checksum)
        return _empty(204, _tus_headers(upload))

    @extend_schema(
        operation_id="upload_terminate",
        summary="tus termination: abandon the upload and delete its bytes (a registered file stays)",
        parameters=[UPLOAD_ID, TUS_RESUMABLE],
        responses={204: OpenApiResponse(None, description="deleted"), 403: NOT_WRITER, 412: NOT_TUS},
        tags=["uploads"],
    )
    def delete(self, request: Request, upload_id: Any) -> HttpResponse:
        services.terminate(self._upload(request, upload_id))
        return _empty(204, {})
