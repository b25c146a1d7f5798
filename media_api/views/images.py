"""Image routes: frame thumbnails, trace thumbnails and the representative face (spec §4)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from media_api import selectors
from media_api.models import MediaFile
from media_api.services import representative as faces
from media_api.services import thumbnails
from media_api.services.files import frame_index_for
from media_api.services.image_cache import ImageKey
from media_api.views.stream import ERRORS, MediaStreamView
from media_api.views.traces import trace_for_request
from momentry import schema
from momentry.pagination import int_param


def jpeg_response(data: bytes, key: ImageKey) -> HttpResponse:
    response = HttpResponse(data, content_type="image/jpeg")
    response["ETag"] = key.etag
    response["Cache-Control"] = f"private, max-age={settings.MOMENTRY_CACHE_MAX_AGE}"
    response["Content-Length"] = str(len(data))
    return response


def serialize_representative(media_file: MediaFile, rep: faces.Representative) -> dict[str, Any]:
    face = rep.face
    return {
        "frame_number": face.frame_number,
        "timestamp_secs": round(frame_index_for(media_file).seconds_of(face.frame_number), 6),
        "bbox": {"x": face.box.x, "y": face.box.y, "width": face.box.width, "height": face.box.height},
        "confidence": face.confidence,
        "quality_score": round(face.quality_score, 3),
        "blur_score": None if rep.blur_score is None else round(rep.blur_score, 6),
    }


_JPEG = {
    (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="JPEG"),
    304: OpenApiResponse(description="Not modified (If-None-Match)"),
    **ERRORS,
}


CROP_MINIMUMS = {"x": 0, "y": 0, "w": 1, "h": 1}


class FrameThumbnailView(MediaStreamView):
    """``GET /file/{uuid}/thumbnail?frame=N[&x&y&w&h]``: exactly frame N as JPEG, optionally cropped."""

    @extend_schema(
        summary="JPEG of exactly frame N (keyframe seek), optionally cropped; cached",
        parameters=[
            OpenApiParameter("frame", {"type": "integer", "minimum": 0}, OpenApiParameter.QUERY, required=True,
                             description="Zero-based frame number (presentation order), below the file's "
                                         "total_frames (else 416)."),
            schema.CROP_PARAMETER,  # x, y, w and h go together: one grouped parameter
        ],
        responses={**_JPEG, 416: OpenApiResponse(schema.ERROR, description="FRAME_OUT_OF_RANGE: frame is past the "
                                                                          "last frame")},
        tags=["media"],
    )
    def get(self, request: Request, file_uuid: str) -> HttpResponse:
        media_file = selectors.file_for_request(request, file_uuid)
        # Malformed crop values are a 400 whatever the frame (a frame past the end is a 416).
        for name, minimum in CROP_MINIMUMS.items():
            int_param(request.query_params, name, minimum, minimum)
        frame, crop = thumbnails.parse_frame_request(request.query_params, media_file)
        key = thumbnails.frame_key(media_file, frame, crop)
        return self.not_modified(request, key.etag) or jpeg_response(
            thumbnails.frame_thumbnail(media_file, frame, crop), key
        )


class TraceThumbnailView(MediaStreamView):
    """``GET /file/{uuid}/trace/{id}/thumbnail``: 320×320 JPEG of the representative face."""

    @extend_schema(
        summary="320x320 JPEG of the trace's representative face (square crop, never stretched); cached",
        responses=_JPEG,
        tags=["media"],
    )
    def get(self, request: Request, file_uuid: str, trace_id: int) -> HttpResponse:
        media_file, trace = trace_for_request(request, file_uuid, trace_id)
        rep = faces.representative_for(media_file, trace)
        key = faces.thumbnail_key(media_file.file_uuid, rep.face)
        return self.not_modified(request, key.etag) or jpeg_response(faces.thumbnail_for(media_file, rep), key)


class RepresentativeFaceView(APIView):
    """``GET /file/{uuid}/trace/{id}/representative-face``: the seed's JSON."""

    @extend_schema(
        operation_id="trace_representative_face",
        summary="The trace's best face: top 10 by area x confidence, then the least blurry (blurdetect)",
        responses={200: schema.REPRESENTATIVE_FACE, 500: schema.MEDIA_ERROR},
        tags=["traces"],
    )
    def get(self, request: Request, file_uuid: str, trace_id: int) -> Response:
        media_file, trace = trace_for_request(request, file_uuid, trace_id)
        rep = faces.representative_for(media_file, trace)
        return Response({
            "success": True,
            "file_uuid": media_file.file_uuid,
            "trace_id": trace.trace_id,
            "face_count": trace.face_count,
            "representative": serialize_representative(media_file, rep),
        })
