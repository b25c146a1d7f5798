"""``GET /identity/{uuid}/appearances``: when a person is on screen, per file (thin over identities.appearances).

Scope as everywhere: an identity the caller may not see is the 404 of an unknown one, a
``file_uuid`` outside the caller's scope the 404 of an unknown file, and only files in scope are
listed. Files are paginated like every list (by name); a file's intervals come whole.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as S
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identities import appearances as ap
from identities import selectors
from media_api import selectors as file_selectors
from media_api.views.traces import normalize_uuid
from momentry import schema
from momentry.pagination import PAGE_PARAMETERS, Page, number_param

SECONDS_DECIMALS = 6

_APPEARANCE_FILE = inline_serializer("AppearanceFile", {
    "file_uuid": S.CharField(), "name": S.CharField(),
    "screen_frames": S.IntegerField(help_text="frames with at least one of the person's detections"),
    "screen_secs": S.FloatField(help_text="seconds of those frames (a frame lasts until the next one starts); "
                                          "the short gaps joined into intervals are not counted"),
    "intervals": S.ListField(child=inline_serializer("AppearanceInterval", {
        "start_frame": S.IntegerField(), "end_frame": S.IntegerField(help_text="inclusive"),
        "start_secs": S.FloatField(help_text="start of the first frame, from the file's first frame"),
        "end_secs": S.FloatField(help_text="end of the last frame"),
        "trace_ids": S.ListField(child=S.IntegerField(), help_text="the person's traces in the interval, ascending"),
    }), help_text="in frame order; gaps shorter than min_gap_seconds are joined"),
})
# The list envelope (schema.page_of) plus the identity; written out because page_of's own first
# argument is called ``name``.
APPEARANCES = schema.success("AppearancePage", {
    "identity_uuid": S.CharField(), "name": S.CharField(), "source": schema.twin(schema.IDENTITY_SOURCE),
    "status": schema.twin(schema.IDENTITY_STATUS), "min_gap_seconds": S.FloatField(),
    "count": S.IntegerField(help_text="files on this page"), "total": S.IntegerField(help_text="files matching"),
    "page": S.IntegerField(), "page_size": S.IntegerField(), "num_pages": S.IntegerField(),
    "files": S.ListField(child=_APPEARANCE_FILE, help_text="files in scope where the person appears, by name"),
})


def _secs(value: float) -> float:
    return round(value, SECONDS_DECIMALS)


def _file(found: ap.FileAppearances) -> dict[str, Any]:
    return {
        "file_uuid": found.file_uuid,
        "name": found.name,
        "screen_frames": found.screen_frames,
        "screen_secs": _secs(found.screen_seconds),
        "intervals": [{"start_frame": i.start_frame, "end_frame": i.end_frame, "start_secs": _secs(i.start_seconds),
                       "end_secs": _secs(i.end_seconds), "trace_ids": i.trace_ids} for i in found.intervals],
    }


class IdentityAppearancesView(APIView):
    @extend_schema(
        operation_id="identity_appearances",
        summary="When the person is on screen: per file in scope, intervals (with their traces) and screen time",
        parameters=[
            OpenApiParameter("file_uuid", {"type": "string", "pattern": schema.UUID_PATTERN},
                             description="only this file (a dashed UUID is accepted too); out of scope: 404"),
            OpenApiParameter("min_gap_seconds", {"type": "number", "minimum": 0,
                                                 "maximum": ap.MAX_MIN_GAP_SECONDS},
                             description=f"join intervals separated by less than this (default "
                                         f"{ap.DEFAULT_MIN_GAP_SECONDS}; 0 joins nothing)"),
            *PAGE_PARAMETERS,
        ],
        responses={200: APPEARANCES},
        tags=["identities"],
    )
    def get(self, request: Request, identity_uuid: str) -> Response:
        params = request.query_params
        min_gap = number_param(params, "min_gap_seconds", ap.DEFAULT_MIN_GAP_SECONDS, 0.0, ap.MAX_MIN_GAP_SECONDS)
        page = Page.from_params(params)
        raw_file = params.get("file_uuid")  # an empty value is a 400, like any malformed one
        file_uuid = normalize_uuid(raw_file, "file_uuid") if raw_file is not None else None
        identity = selectors.identity_by_uuid(identity_uuid, request.user, request.auth)
        if file_uuid is not None:  # one file: its traces are the only other query
            found = ap.appearances(identity.pk, [file_selectors.file_for_request(request, file_uuid)], min_gap)
            found = [f for f in found if f.intervals]
            total, found = len(found), found if page.page == 1 else []
        else:
            listed = ap.files_with_appearances(identity.pk, file_selectors.files_visible_to(request)).only(
                "pk", "file_uuid", "name", "fps", "total_frames")
            total = listed.count()
            found = ap.appearances(identity.pk, page.slice(listed, total), min_gap)
        return Response({
            **page.envelope("files", [_file(f) for f in found], total),
            "identity_uuid": identity.identity_uuid,
            "name": identity.name,
            "source": identity.source,
            "status": identity.status,
            "min_gap_seconds": min_gap,
        })
