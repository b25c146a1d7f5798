"""``GET /api/v1/file/{uuid}/detections``: every box of a file, in keyset pages or as one NDJSON stream.

Content negotiation picks the form: ``Accept: application/x-ndjson`` streams the whole file (or
the filtered range) as one JSON object per line; anything accepting JSON (or no Accept) gets a
page; an Accept with neither is the 406 envelope. HEAD makes the same checks and answers the
same status and Content-Type without a body, reading no detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as S
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from media_api import selectors
from media_api.models import MediaFile, Trace
from media_api.ranged import streaming_body
from media_api.services import bulk_detections as bulk
from media_api.views.traces import _index_or_none
from momentry import schema
from momentry.converters import MAX_TRACE_ID
from momentry.errors import BadRequest, not_found
from momentry.pagination import int_param

NDJSON = "application/x-ndjson"
MAX_FRAME = 2**31 - 1  # frame_number is a 32-bit column


class NDJSONRenderer(BaseRenderer):
    """Lets content negotiation choose the stream; the view writes the stream itself."""

    media_type = NDJSON
    format = "ndjson"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data) + b"\n"


DETECTION = inline_serializer("Detection", {
    "frame_number": S.IntegerField(),
    "timestamp_secs": S.FloatField(allow_null=True, help_text="the frame's presentation time; null without a frame "
                                                              "index or past its end"),
    "trace_id": S.IntegerField(),
    "bbox": schema.BBOX,
    "confidence": S.FloatField(allow_null=True),
    "label": S.CharField(),
    "origin": S.ChoiceField(["detected", "tracked"], help_text="detector output on this frame, or followed by the "
                            "tracker between detector samples"),
})
DETECTION_PAGE = schema.success("DetectionPage", {
    "file_uuid": S.CharField(),
    "count": S.IntegerField(help_text="rows on this page"),
    "page_size": S.IntegerField(),
    "next_cursor": S.CharField(allow_null=True, help_text="opaque; null on the last page"),
    "next": S.CharField(allow_null=True, help_text="the next page's URL (path and query); null on the last page"),
    "detections": S.ListField(child=DETECTION),
})
PAGE_OR_STREAM = ("application/json: one page (DetectionPage). application/x-ndjson: newline-delimited JSON, one "
                  "Detection object per line (the schema given is that of one line, not of the body), every row of "
                  "the query in one stream, '\\n' after each line; should reading fail midway, the last line is "
                  "the error envelope {\"success\": false, \"error\": {...}}.")
PARAMETERS = [
    OpenApiParameter("start_frame", {"type": "integer", "minimum": 0, "maximum": MAX_FRAME},
                     description="first frame (inclusive)"),
    OpenApiParameter("end_frame", {"type": "integer", "minimum": 0, "maximum": MAX_FRAME},
                     description="last frame (inclusive); before start_frame is a 400"),
    OpenApiParameter("trace_id", {"type": "integer", "minimum": 0, "maximum": MAX_TRACE_ID},
                     description="only this trace's boxes (an unknown trace is a 404)"),
    OpenApiParameter("page_size", {"type": "integer", "minimum": 1, "maximum": bulk.MAX_PAGE_SIZE},
                     description=f"rows per page, 1..{bulk.MAX_PAGE_SIZE} (default {bulk.DEFAULT_PAGE_SIZE}); "
                                 "ignored by the NDJSON stream"),
    OpenApiParameter("format", {"type": "string", "enum": ["json", "ndjson"]},
                     description="instead of the Accept header (for a plain link): ndjson streams, json pages"),
    OpenApiParameter("cursor", {"type": "string", "pattern": "^[A-Za-z0-9_:-]+$"},
                     description="the next_cursor of the previous page (opaque, signed; keep the file and filters "
                                 "of the first page): a changed or foreign cursor is a 400. The NDJSON stream "
                                 "also starts after it"),
]


@dataclass(frozen=True)
class _Asked:
    media_file: MediaFile
    trace_pk: int | None
    where: bulk.DetectionFilter
    page_size: int
    after: tuple[int, int] | None


def _asked(request: Request, file_uuid: str) -> _Asked:
    """Parameters checked before the database, then the file (and trace) in the caller's scope, then the cursor."""
    params = request.query_params
    start = int_param(params, "start_frame", None, 0, MAX_FRAME)
    end = int_param(params, "end_frame", None, 0, MAX_FRAME)
    for name in ("trace_id", "cursor", "format"):  # no empty value means "absent" here (the schema allows none)
        if params.get(name) == "":
            raise BadRequest(f"{name} must not be empty", param=name, value="")
    trace_id = int_param(params, "trace_id", None, 0, MAX_TRACE_ID)
    page_size = int_param(params, "page_size", bulk.DEFAULT_PAGE_SIZE, 1, bulk.MAX_PAGE_SIZE)
    if start is not None and end is not None and end < start:
        raise BadRequest("end_frame must not be before start_frame", param="end_frame", value=params["end_frame"])
    media_file = selectors.file_for_request(request, file_uuid)
    trace = None
    if trace_id is not None:
        trace = Trace.objects.filter(file=media_file, trace_id=trace_id).only("pk", "trace_id").first()
        if trace is None:
            raise not_found("trace", file_uuid=media_file.file_uuid, trace_id=trace_id)
    where = bulk.DetectionFilter(media_file.file_uuid, start, end, trace_id)
    cursor = params.get("cursor")
    after = bulk.decode_cursor(where, cursor) if cursor is not None else None
    return _Asked(media_file, trace.pk if trace else None, where, page_size, after)


class FileDetectionsView(APIView):
    renderer_classes = [JSONRenderer, NDJSONRenderer]

    @extend_schema(
        operation_id="file_detections",
        summary="Every detection of the file in (frame, id) order: keyset pages, or one NDJSON stream",
        description="A page (`application/json`, the default) holds up to `page_size` rows and the `next` link "
                    "(a signed keyset cursor). `Accept: application/x-ndjson` answers the whole file, or the "
                    "filtered rows, as ONE stream: one `Detection` JSON object per line, in the same order, so "
                    "the stream equals the pages concatenated. HEAD: the same checks, status and Content-Type, "
                    "no body.",
        parameters=PARAMETERS,
        responses={
            (200, "application/json"): OpenApiResponse(DETECTION_PAGE, description=PAGE_OR_STREAM),
            (200, NDJSON): OpenApiResponse(DETECTION, description=PAGE_OR_STREAM),
        },
        tags=["traces"],
    )
    def get(self, request: Request, file_uuid: str) -> HttpResponse:
        asked = _asked(request, file_uuid)
        index = _index_or_none(asked.media_file)
        if request.accepted_renderer.media_type == NDJSON:
            lines = bulk.stream_lines(asked.media_file.pk, asked.trace_pk, asked.where, index, asked.after)
            response = StreamingHttpResponse(streaming_body(request, lines), content_type=NDJSON)
            response["X-Accel-Buffering"] = "no"  # nginx passes the lines on as they come
            return response
        page = bulk.read_page(asked.media_file.pk, asked.trace_pk, asked.where, index, asked.page_size, asked.after)
        return HttpResponse(page.body(asked.where, asked.page_size, request.path), content_type="application/json")

    def head(self, request: Request, file_uuid: str) -> HttpResponse:
        _asked(request, file_uuid)
        return HttpResponse(content_type=request.accepted_renderer.media_type)
