"""``GET /file/{uuid}/shots``: the file's shots (between hard cuts), in order, with their seconds.

Paginated with the list envelope, but with larger pages than other lists (default
:data:`DEFAULT_PAGE_SIZE`, at most :data:`MAX_PAGE_SIZE`): a shot is five numbers, and a player
or editor wants a whole film's ~2 000 shots in one request. A file nobody analysed has no
shots (``total`` 0): face analysis or a ``detect_shots`` job stores them.
"""

from __future__ import annotations

import numpy as np
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as S
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identities.cooccurrence import FrameClock
from media_api import selectors
from media_api.models import Shot
from momentry import schema
from momentry.pagination import Page, page_parameters

DEFAULT_PAGE_SIZE = 2000
MAX_PAGE_SIZE = 10000
SECONDS_DECIMALS = 6

SHOT_PAGE = schema.page_of("ShotPage", "shots", inline_serializer("Shot", {
    "index": S.IntegerField(help_text="0, 1, … in frame order"),
    "start_frame": S.IntegerField(), "end_frame": S.IntegerField(help_text="inclusive"),
    "start_secs": S.FloatField(help_text="start of the first frame, from the file's first frame"),
    "end_secs": S.FloatField(help_text="end of the last frame (the next shot's start)"),
}), file_uuid=S.CharField())

SHOT_PAGE_PARAMETERS = page_parameters(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, items="shots")


class FileShotsView(APIView):
    @extend_schema(
        operation_id="file_shots",
        summary="The file's shots between hard cuts (found by face analysis or a detect_shots job), in order",
        parameters=SHOT_PAGE_PARAMETERS,
        responses={200: SHOT_PAGE},
        tags=["files"],
    )
    def get(self, request: Request, file_uuid: str) -> Response:
        page = Page.from_params(request.query_params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        media_file = selectors.file_for_request(request, file_uuid)
        shots = Shot.objects.filter(file=media_file).order_by("index")
        total = shots.count()
        rows = page.slice(shots.values_list("index", "start_frame", "end_frame"), total)
        seconds = FrameClock.for_file(media_file).cumulative
        frames = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        starts = np.round(seconds[frames[:, 1]], SECONDS_DECIMALS).tolist()
        ends = np.round(seconds[frames[:, 2] + 1], SECONDS_DECIMALS).tolist()
        items = [{"index": index, "start_frame": start, "end_frame": end, "start_secs": start_secs,
                  "end_secs": end_secs}
                 for (index, start, end), start_secs, end_secs in zip(rows, starts, ends, strict=True)]
        return Response({**page.envelope("shots", items, total), "file_uuid": media_file.file_uuid})
