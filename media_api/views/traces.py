"""Trace list, detail and faces (detections) of one file in the caller's scope."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identities.suggestions import has_comparable_embedding
from media_api import selectors
from media_api.ffmpeg.index import FrameIndexData
from media_api.models import Detection, MediaFile, Trace
from media_api.services.files import frame_index_for
from media_api.services.representative import measured
from momentry import schema
from momentry.errors import BadRequest, not_found
from momentry.pagination import PAGE_PARAMETERS, Page, bool_param, choice_param, paginate

SORTS = ["trace_id", "-trace_id", "face_count", "-face_count", "start_frame", "-start_frame"]
_ORDERING = {
    "trace_id": ["trace_id"],
    "-trace_id": ["-trace_id"],
    "face_count": ["face_count", "trace_id"],
    "-face_count": ["-face_count", "trace_id"],
    "start_frame": ["start_frame", "trace_id"],
    "-start_frame": ["-start_frame", "trace_id"],
}


def normalize_uuid(value: str, param: str) -> str:
    """32 lowercase hex chars; dashed UUIDs are accepted. Anything else is a 400."""
    cleaned = str(value).strip().replace("-", "").lower()
    if len(cleaned) != 32 or any(c not in "0123456789abcdef" for c in cleaned):
        raise BadRequest(f"{param} must be 32 hex characters", param=param, value=str(value))
    return cleaned


def _seconds(index: FrameIndexData | None, frame: int | None) -> float | None:
    if index is None or frame is None or not 0 <= frame < len(index):
        return None
    return round(index.seconds_of(frame), 6)


def trace_urls(file_uuid: str, trace_id: int) -> dict[str, str]:
    base = f"/api/v1/file/{file_uuid}/trace/{trace_id}"
    return {
        "thumbnail_url": f"{base}/thumbnail",
        "video_url": f"{base}/video",
        "representative_face_url": f"{base}/representative-face",
        "faces_url": f"{base}/faces",
    }


def serialize_trace(trace: Trace, media_file: MediaFile, index: FrameIndexData | None) -> dict[str, Any]:
    identity = trace.identity
    data = {
        "trace_id": trace.trace_id,
        "face_count": trace.face_count,
        "start_frame": trace.start_frame,
        "end_frame": trace.end_frame,
        "start_time": _seconds(index, trace.start_frame),
        "end_time": _seconds(index, trace.end_frame),
        "avg_confidence": trace.avg_confidence,
        "has_embedding": has_comparable_embedding(trace),
        "identity": None if identity is None else {
            "identity_uuid": identity.identity_uuid,
            "name": identity.name,
            "source": identity.source,
            "status": identity.status,
        },
        **trace_urls(media_file.file_uuid, trace.trace_id),
    }
    return data


def _index_or_none(media_file: MediaFile) -> FrameIndexData | None:
    try:
        return frame_index_for(media_file)
    except Exception:  # noqa: BLE001 - a missing index only drops the seconds fields
        return None


def trace_for_request(request: Request, file_uuid: str, trace_id: int) -> tuple[MediaFile, Trace]:
    media_file = selectors.file_for_request(request, file_uuid)
    trace = Trace.objects.select_related("identity").filter(file=media_file, trace_id=trace_id).first()
    if trace is None:
        raise not_found("trace", file_uuid=media_file.file_uuid, trace_id=trace_id)
    return media_file, trace


class TraceListView(APIView):
    @extend_schema(
        operation_id="file_traces",
        summary="Trace summaries of a file, with identity and thumbnail_url",
        parameters=[
            schema.TRACE_FILTER_PARAMETER,  # identity and unbound=true exclude each other: one grouped parameter
            OpenApiParameter("sort", OpenApiTypes.STR, enum=SORTS, description="default trace_id"),
            *PAGE_PARAMETERS,
        ],
        responses={200: schema.TRACE_PAGE},
        tags=["traces"],
    )
    def get(self, request: Request, file_uuid: str) -> Response:
        params = request.query_params
        sort = choice_param(params, "sort", SORTS, "trace_id")
        unbound = bool_param(params, "unbound")
        identity = params.get("identity")
        Page.from_params(params)  # validate before touching the database
        media_file = selectors.file_for_request(request, file_uuid)
        queryset = Trace.objects.filter(file=media_file).select_related("identity").order_by(*_ORDERING[sort])
        if identity:
            if unbound:
                raise BadRequest("identity and unbound=true exclude each other", param="unbound")
            queryset = queryset.filter(identity__identity_uuid=normalize_uuid(identity, "identity"))
        elif unbound is not None:
            queryset = queryset.filter(identity__isnull=unbound)
        index = _index_or_none(media_file)
        body = paginate(queryset, params, "traces", lambda t: serialize_trace(t, media_file, index))
        return Response({"success": True, "file_uuid": media_file.file_uuid, **body})


class TraceDetailView(APIView):
    @extend_schema(
        operation_id="trace_detail",
        summary="One trace: summary, identity, cached representative face, URLs",
        responses={200: schema.TRACE_DETAIL},
        tags=["traces"],
    )
    def get(self, request: Request, file_uuid: str, trace_id: int) -> Response:
        media_file, trace = trace_for_request(request, file_uuid, trace_id)
        data = serialize_trace(trace, media_file, _index_or_none(media_file))
        representative = None
        if trace.has_current_representative:
            representative = {
                "frame_number": trace.rep_frame_number,
                "bbox": {"x": trace.rep_x, "y": trace.rep_y, "width": trace.rep_width, "height": trace.rep_height},
                "confidence": trace.rep_confidence,
                "quality_score": trace.rep_quality_score,
                "blur_score": measured(trace.rep_blur_score),
            }
        return Response({"success": True, "file_uuid": media_file.file_uuid, **data,
                         "representative": representative})


class TraceFacesView(APIView):
    @extend_schema(
        operation_id="trace_faces",
        summary="The trace's detections (boxes) in frame order, paginated",
        parameters=PAGE_PARAMETERS,
        responses={200: schema.FACE_PAGE},
        tags=["traces"],
    )
    def get(self, request: Request, file_uuid: str, trace_id: int) -> Response:
        page = Page.from_params(request.query_params)
        media_file, trace = trace_for_request(request, file_uuid, trace_id)
        index = _index_or_none(media_file)
        queryset = Detection.objects.filter(trace=trace).order_by("frame_number", "id")

        def serialize(d: Detection) -> dict[str, Any]:
            return {
                "frame_number": d.frame_number,
                "timestamp_secs": _seconds(index, d.frame_number),
                "bbox": {"x": d.x, "y": d.y, "width": d.width, "height": d.height},
                "confidence": d.confidence,
                "label": d.label,
                "origin": Detection.Origin(d.origin).label,
            }

        # face_count is the trace's detection count, kept by refresh_trace_summaries on every
        # import: no COUNT(*) over a trace that may hold a million boxes.
        body = page.envelope("faces", [serialize(d) for d in page.slice(queryset, trace.face_count)], trace.face_count)
        return Response({"success": True, "file_uuid": media_file.file_uuid, "trace_id": trace.trace_id, **body})
