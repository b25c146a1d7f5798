"""Who appears with whom: the cast graph of a file, and one pair of people across files.

Both are computed from the traces' presence (:mod:`identities.cooccurrence`) and paginated like
every list. Scope as everywhere: an out-of-scope file is the 404 of an unknown one, an identity
the caller may not see is the 404 of an unknown identity, and only files in scope are counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identities import cooccurrence as co
from identities import selectors
from identities.models import Identity
from media_api import selectors as file_selectors
from media_api.views.traces import normalize_uuid
from momentry import schema
from momentry.errors import BadRequest
from momentry.pagination import PAGE_PARAMETERS, Page, bool_param

SECONDS_DECIMALS = 6


def _strict_bool(params: Mapping[str, str], name: str) -> bool:
    """``true``/``false``; absent is false. An empty value is refused (the schema allows none)."""
    if params.get(name) == "":
        raise BadRequest(f"{name} must be true or false", param=name, value="")
    return bool(bool_param(params, name))


def _secs(value: float) -> float:
    return round(value, SECONDS_DECIMALS)


Kinds = dict[str, tuple[str, str]]


def _kinds(pairs: list[co.CastPair]) -> Kinds:
    """``{identity_uuid: (source, status)}`` of the people on a page: one query."""
    uuids = {m.identity_uuid for p in pairs for m in (p.a, p.b) if m.identity_uuid}
    rows = Identity.objects.filter(identity_uuid__in=uuids).values_list("identity_uuid", "source", "status")
    return {uuid: (source, status) for uuid, source, status in rows} if uuids else {}


def _member(member: co.CastMember, kinds: Kinds) -> dict[str, Any]:
    source, status = kinds.get(member.identity_uuid or "", (None, None))
    return {
        "identity_uuid": member.identity_uuid,
        "name": member.name,
        "source": source,
        "status": status,
        "trace_ids": member.trace_ids,
        "screen_frames": member.screen_frames,
        "screen_secs": _secs(member.screen_seconds),
    }


def _pair(pair: co.CastPair, clock: co.FrameClock, kinds: Kinds) -> dict[str, Any]:
    return {
        "a": _member(pair.a, kinds),
        "b": _member(pair.b, kinds),
        "first_frame_number": pair.first_frame,
        "first_timestamp_secs": _secs(clock.at(pair.first_frame)),
        "shared_frames": pair.shared_frames,
        "shared_secs": _secs(pair.shared_seconds),
    }


class FileCastGraphView(APIView):
    """``GET /file/{uuid}/cooccurrence``: every pair of people who share frames in the file."""

    @extend_schema(
        operation_id="file_cooccurrence",
        summary="The cast graph: every pair of people who appear together in the file, most shared time first",
        parameters=[
            OpenApiParameter("identity", {"type": "string", "pattern": schema.UUID_PATTERN},
                             description="only this identity's partners (it is then always `a`); a dashed UUID "
                                         "is accepted too"),
            OpenApiParameter("include_unbound", {"type": "boolean"},
                             description="also unbound traces, grouped as clustering groups them (default false)"),
            *PAGE_PARAMETERS,
        ],
        responses={200: schema.CAST_GRAPH},
        tags=["identities"],
    )
    def get(self, request: Request, file_uuid: str) -> Response:
        params = request.query_params
        include_unbound = _strict_bool(params, "include_unbound")
        page = Page.from_params(params)
        raw_identity = params.get("identity") or None
        uuid = normalize_uuid(raw_identity, "identity") if raw_identity else None
        media_file = file_selectors.file_for_request(request, file_uuid)
        identity = selectors.identity_by_uuid(uuid, request.user, request.auth) if uuid else None
        graph = co.cast_graph(media_file, include_unbound=include_unbound)
        if identity is not None:
            graph = graph.partners_of(identity.pk)
        clock = co.FrameClock.for_file(media_file)
        start = (page.page - 1) * page.page_size
        pairs = list(graph.pairs(slice(start, start + page.page_size)))
        kinds = _kinds(pairs)
        items = [_pair(p, clock, kinds) for p in pairs]
        return Response({
            **page.envelope("pairs", items, len(graph)),
            "file_uuid": media_file.file_uuid,
            "include_unbound": include_unbound,
            "identity_uuid": uuid,
        })


def _file_item(found: co.FilePair) -> dict[str, Any]:
    figures, media_file = found.figures, found.media_file
    clock = co.FrameClock.for_file(media_file)
    first = figures.first
    return {
        "file_uuid": media_file.file_uuid,
        "name": media_file.name,
        "first_frame_number": first.frame_number,
        "first_timestamp_secs": _secs(clock.at(first.frame_number)),
        "shared_frames": first.total_frames,
        "shared_secs": _secs(figures.shared_seconds),
        "a": {"trace_id": first.trace_id_a, "screen_frames": figures.screen_frames[0],
              "screen_secs": _secs(figures.screen_seconds[0])},
        "b": {"trace_id": first.trace_id_b, "screen_frames": figures.screen_frames[1],
              "screen_secs": _secs(figures.screen_seconds[1])},
    }


class IdentityPairFilesView(APIView):
    """``GET /identity/{a}/co-occur-with/{b}``: every file in scope where the two appear together."""

    @extend_schema(
        operation_id="identity_cooccurrence_files",
        summary="Files (in scope) where two identities appear together, with the per-file figures",
        parameters=PAGE_PARAMETERS,
        responses={200: schema.PAIR_FILES},
        tags=["identities"],
    )
    def get(self, request: Request, identity_uuid_a: str, identity_uuid_b: str) -> Response:
        page = Page.from_params(request.query_params)
        uuid_a = normalize_uuid(identity_uuid_a, "identity_uuid_a")
        uuid_b = normalize_uuid(identity_uuid_b, "identity_uuid_b")
        if uuid_a == uuid_b:
            raise BadRequest("An identity cannot co-occur with itself: give two different identities.",
                             param="identity_uuid_b")
        identity_a = selectors.identity_by_uuid(uuid_a, request.user, request.auth)
        identity_b = selectors.identity_by_uuid(uuid_b, request.user, request.auth)
        found = co.cooccurrence_across_files(identity_a.pk, identity_b.pk, file_selectors.files_visible_to(request))
        items = [_file_item(f) for f in page.slice(found, len(found))]
        return Response({
            **page.envelope("files", items, len(found)),
            "identity_a": _identity(identity_a),
            "identity_b": _identity(identity_b),
        })


def _identity(identity: Identity) -> dict[str, str]:
    return {"identity_uuid": identity.identity_uuid, "name": identity.name, "source": identity.source,
            "status": identity.status}
