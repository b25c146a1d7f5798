"""Identity routes (spec §5). Reads need any credential; writes need admin or a write key."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identities import selectors, services
from identities.cooccurrence import first_cooccurrence
from identities.fields import NameField
from identities.models import Identity
from media_api import selectors as file_selectors
from media_api.models import Trace
from media_api.services import representative as faces
from media_api.services.files import frame_index_for
from media_api.views.files import serialize_file
from media_api.views.traces import normalize_uuid, trace_urls
from momentry import schema
from momentry.auth import CanWriteIdentities
from momentry.bodies import validated
from momentry.converters import MAX_TRACE_ID
from momentry.errors import BadRequest, NotFound, not_found
from momentry.pagination import PAGE_PARAMETERS, Page, choice_param, paginate
from momentry.parsers import BoundedJSONParser

STATUSES = [s.value for s in Identity.Status]
StrictBooleanField = schema.StrictBooleanField
DUPLICATE_NAME = OpenApiResponse(schema.ERROR, description="CONFLICT: another active person has this name "
                                 "(details.existing); send allow_duplicate: true if this is someone else")
MERGED_PERSON = OpenApiResponse(schema.ERROR, description="CONFLICT: the person was merged into another "
                                "(details.merged_into); bind to the survivor")


class IdentityWriteSerializer(serializers.Serializer):
    name = NameField(trim_whitespace=True)
    identity_type = serializers.ChoiceField(choices=[t.value for t in Identity.IdentityType], allow_null=True,
                                            required=False)
    status = serializers.ChoiceField(choices=STATUSES, required=False)
    metadata = serializers.DictField(required=False, help_text="free JSON object; aliases live in metadata.aliases")
    aliases = serializers.ListField(child=NameField(), required=False,
                                    help_text="shortcut: replaces metadata.aliases")
    allow_duplicate = StrictBooleanField(
        required=False, default=False,
        help_text="true: another active person already has this name and this is someone else (else 409)")


TRACE_ID = {"min_value": 0, "max_value": MAX_TRACE_ID}
MAX_TRACES_AT_ONCE = 1000


class TraceRefSerializer(serializers.Serializer):
    """What the view validates: a file and exactly one of trace_id or trace_ids (checked in :func:`_trace_ref`)."""

    file_uuid = schema.UuidField()
    trace_id = schema.StrictIntegerField(required=False, **TRACE_ID)
    trace_ids = serializers.ListField(child=schema.StrictIntegerField(**TRACE_ID), required=False,
                                      min_length=1, max_length=MAX_TRACES_AT_ONCE,
                                      help_text="several traces of the same file")


# What the schema shows: the two accepted forms (exactly one of trace_id or trace_ids).
class OneTraceSerializer(serializers.Serializer):
    file_uuid = schema.UuidField()
    trace_id = schema.StrictIntegerField(**TRACE_ID)


class SeveralTracesSerializer(serializers.Serializer):
    file_uuid = schema.UuidField()
    trace_ids = serializers.ListField(child=schema.StrictIntegerField(**TRACE_ID), min_length=1, max_length=1000,
                                      help_text="several traces of the same file")


class FileTraceSerializer(OneTraceSerializer):
    """One item of ``traces``: a trace of any file in scope (other keys are a 400, as at the top level)."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["Unknown field."]})
        return super().to_internal_value(data)


class TracesOfFilesSerializer(serializers.Serializer):
    traces = serializers.ListField(child=FileTraceSerializer(), min_length=1, max_length=MAX_TRACES_AT_ONCE,
                                   help_text="traces of several files, bound all or nothing as one undoable change")


TRACE_REF = PolymorphicProxySerializer(component_name="TraceRef", serializers=[OneTraceSerializer,
                                                                              SeveralTracesSerializer,
                                                                              TracesOfFilesSerializer],
                                       resource_type_field_name=None)
BIND_FILES_RESULT = schema.success("BindFilesResult", {
    "identity_uuid": serializers.CharField(),
    "files": serializers.ListField(child=inline_serializer("BoundFile", {
        "file_uuid": serializers.CharField(), "trace_ids": serializers.ListField(child=serializers.IntegerField())})),
    "rows_affected": serializers.IntegerField(help_text="traces matched, all files"),
    "changed": serializers.IntegerField(required=False, help_text="(bind) traces whose identity changed, all files"),
})


def _bind_result(name: str) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(component_name=name, serializers=[schema.BIND_RESULT, BIND_FILES_RESULT],
                                      resource_type_field_name=None)


class MergeSerializer(serializers.Serializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword, so the field is added by name.
        self.fields["from"] = serializers.ListField(child=schema.UuidField(), min_length=1, max_length=1000,
                                                    help_text="identity_uuids to merge into this one")


def serialize_identity(identity: Identity) -> dict[str, Any]:
    data = {
        "identity_uuid": identity.identity_uuid,
        "name": identity.name,
        "identity_type": identity.identity_type,
        "source": identity.source,
        "status": identity.status,
        "metadata": identity.metadata,
        "aliases": identity.aliases,
        "merged_into": identity.merged_into.identity_uuid if identity.merged_into_id else None,
        "created_at": identity.created_at.isoformat(),
        "updated_at": identity.updated_at.isoformat(),
    }
    if hasattr(identity, "trace_count"):
        data["trace_count"] = identity.trace_count
        data["file_count"] = identity.file_count
    return data


def _scope(request: Request):
    return file_selectors.scope_filter(request.user, request.auth, file_field="file_id")


def _identity(request: Request, identity_uuid: str) -> Identity:
    """The identity with its counts in scope, or the 404 of an unknown (or invisible) one.

    ``identity_uuid`` comes from the URL, already canonical (``momentry.converters``).
    """
    queryset = selectors.visible_identities(Identity.objects.filter(identity_uuid=identity_uuid), request.user,
                                            request.auth)
    identity = selectors.with_counts(queryset, _scope(request)).first()
    if identity is None:
        raise not_found("identity", identity_uuid=identity_uuid)
    return identity


def _visible(request: Request, identity_uuid: str) -> Identity:
    """The identity named in the URL (canonical, ``momentry.converters``), if the caller may see it (else 404)."""
    return selectors.identity_by_uuid(identity_uuid, request.user, request.auth)


class IdentityBase(APIView):
    permission_classes = [CanWriteIdentities]
    parser_classes = [BoundedJSONParser]  # bodies are JSON objects (415 otherwise)


class IdentityListView(IdentityBase):
    @extend_schema(
        operation_id="identities_list",
        summary="Identities, optionally searched by name or alias, with trace/file counts in scope",
        parameters=[
            OpenApiParameter("search", {"type": "string", "pattern": "^[^\\x00]*$"},
                             description="substring of the name or an alias (a NUL character is a 400)"),
            OpenApiParameter("status", OpenApiTypes.STR, enum=STATUSES),
            *PAGE_PARAMETERS,
        ],
        responses={200: schema.IDENTITY_PAGE},
        tags=["identities"],
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        status = choice_param(params, "status", STATUSES, None)
        Page.from_params(params)
        visible = selectors.visible_identities(Identity.objects.all(), request.user, request.auth)
        queryset = selectors.search(visible, params.get("search", ""))
        if status:
            queryset = queryset.filter(status=status)
        queryset = selectors.with_counts(queryset.order_by("name", "id"), _scope(request))
        return Response(paginate(queryset, params, "identities", serialize_identity))

    @extend_schema(
        operation_id="identities_create",
        summary="Create a (user-defined) identity",
        request=IdentityWriteSerializer,
        responses={201: schema.IDENTITY_DETAIL, 409: DUPLICATE_NAME},
        tags=["identities"],
    )
    def post(self, request: Request) -> Response:
        data = validated(IdentityWriteSerializer, request)
        identity = services.create_identity(**data)
        identity = _identity(request, identity.identity_uuid)
        return Response({"success": True, **serialize_identity(identity)}, status=201)


class IdentityDetailView(IdentityBase):
    @extend_schema(operation_id="identity_detail", summary="One identity with trace/file counts in scope",
                   responses={200: schema.IDENTITY_DETAIL}, tags=["identities"])
    def get(self, request: Request, identity_uuid: str) -> Response:
        return Response({"success": True, **serialize_identity(_identity(request, identity_uuid))})

    @extend_schema(operation_id="identity_update", summary="Rename; change type, status, metadata or aliases",
                   request=IdentityWriteSerializer,
                   responses={200: schema.IDENTITY_DETAIL, 409: DUPLICATE_NAME},
                   tags=["identities"])
    def patch(self, request: Request, identity_uuid: str) -> Response:
        identity = _identity(request, identity_uuid)
        data = validated(IdentityWriteSerializer, request, partial=True)
        services.update_identity(identity, data, allow_duplicate=data.pop("allow_duplicate", False))
        return Response({"success": True, **serialize_identity(_identity(request, identity_uuid))})

    @extend_schema(operation_id="identity_delete", summary="Delete (its traces become unbound; undoable in admin)",
                   responses={200: schema.DELETE_RESULT},
                   tags=["identities"])
    def delete(self, request: Request, identity_uuid: str) -> Response:
        identity = _visible(request, identity_uuid)
        unbound = services.delete_identity(identity, request.user)
        return Response({"success": True, "identity_uuid": identity.identity_uuid, "deleted": True,
                         "traces_unbound": unbound})


FileTraces = list[tuple[Any, list[int]]]


def _traces_of_files(request: Request) -> FileTraces:
    """``{"traces": [{file_uuid, trace_id}, ...]}``: every file must be in scope (else its 404)."""
    by_file: dict[str, list[int]] = {}
    for item in validated(TracesOfFilesSerializer, request)["traces"]:
        by_file.setdefault(normalize_uuid(item["file_uuid"], "traces"), []).append(item["trace_id"])
    visible = {f.file_uuid: f for f in file_selectors.files_visible_to(request).filter(file_uuid__in=list(by_file))}
    unknown = [file_uuid for file_uuid in by_file if file_uuid not in visible]
    if unknown:
        raise not_found("file", file_uuid=unknown[0])
    return [(visible[file_uuid], trace_ids) for file_uuid, trace_ids in by_file.items()]


def _trace_ref(request: Request) -> tuple[FileTraces, bool]:
    """The traces named by the body (any of the three forms) and whether it was the several-files form."""
    if isinstance(request.data, dict) and "traces" in request.data:
        return _traces_of_files(request), True
    data = validated(TraceRefSerializer, request)
    if ("trace_id" in data) == ("trace_ids" in data):
        raise BadRequest("give exactly one of trace_id or trace_ids", param="trace_id")
    media_file = file_selectors.file_for_request(request, normalize_uuid(data["file_uuid"], "file_uuid"))
    return [(media_file, data["trace_ids"] if "trace_ids" in data else [data["trace_id"]])], False


def _bind_body(identity: Identity, traces: FileTraces, several_files: bool, result: Any) -> dict[str, Any]:
    files = [{"file_uuid": media_file.file_uuid, "trace_ids": sorted(set(trace_ids))}
             for media_file, trace_ids in traces]
    where = {"files": files} if several_files else files[0]
    return {"success": True, "identity_uuid": identity.identity_uuid, **where, "rows_affected": result.rows_affected}


class IdentityBindView(IdentityBase):
    @extend_schema(operation_id="identity_bind_trace",
                   summary="Bind a trace, several of one file, or several of several files to this identity",
                   request=TRACE_REF,
                   responses={200: _bind_result("BindTraceResult"), 409: MERGED_PERSON},
                   tags=["identities"])
    def post(self, request: Request, identity_uuid: str) -> Response:
        identity = _visible(request, identity_uuid)
        traces, several_files = _trace_ref(request)
        result = services.bind_traces_of_files(identity, traces, request.user)
        return Response({**_bind_body(identity, traces, several_files, result), "changed": result.changed})


class IdentityUnbindView(IdentityBase):
    @extend_schema(operation_id="identity_unbind_trace", summary="Unbind traces (of one or several files)",
                   request=TRACE_REF,
                   responses={200: _bind_result("UnbindTraceResult")},
                   tags=["identities"])
    def post(self, request: Request, identity_uuid: str) -> Response:
        identity = _visible(request, identity_uuid)
        traces, several_files = _trace_ref(request)
        result = services.unbind_traces_of_files(identity, traces, request.user)
        return Response(_bind_body(identity, traces, several_files, result))


class IdentityMergeView(IdentityBase):
    @extend_schema(operation_id="identity_merge",
                   summary="Merge other identities into this one (all their traces move; they become inactive)",
                   request=MergeSerializer,
                   responses={200: schema.MERGE_RESULT},
                   tags=["identities"])
    def post(self, request: Request, identity_uuid: str) -> Response:
        target = _visible(request, identity_uuid)
        data = validated(MergeSerializer, request)
        sources = [normalize_uuid(u, "from") for u in data["from"]]
        visible = set(selectors.visible_identities(Identity.objects.filter(identity_uuid__in=sources), request.user,
                                                   request.auth).values_list("identity_uuid", flat=True))
        hidden = [u for u in sources if u not in visible and u != target.identity_uuid]
        if hidden:  # unknown, or out of the caller's scope: the same 404
            raise NotFound("Identity not found.", {"identity_uuids": hidden})
        result = services.merge_identities(target, sources, request.user)
        return Response({
            "success": True,
            "identity_uuid": target.identity_uuid,
            "merged": [s.identity_uuid for s in result.sources],
            "traces_moved": result.traces_moved,
            "moved_per_identity": {uuid: len(pks) for uuid, pks in result.moved.items()},
            "change_id": result.change.pk if result.change else None,
        })


class IdentityFilesView(IdentityBase):
    @extend_schema(operation_id="identity_files", summary="Files (in scope) where this identity has traces",
                   parameters=PAGE_PARAMETERS,
                   responses={200: schema.IDENTITY_FILES},
                   tags=["identities"])
    def get(self, request: Request, identity_uuid: str) -> Response:
        Page.from_params(request.query_params)
        identity = _visible(request, identity_uuid)
        # The counts of every file item (trace_count is then replaced by this identity's own count).
        files = selectors.files_of(identity, file_selectors.files_visible_to(request))
        queryset = file_selectors.files_with_counts(files)

        def serialize(f) -> dict[str, Any]:
            return {**serialize_file(f), "trace_count": f.identity_trace_count}

        body = paginate(queryset, request.query_params, "files", serialize)
        return Response({"success": True, "identity_uuid": identity.identity_uuid, **body})


def _cooccurrence_face(media_file, trace) -> dict[str, Any] | None:
    try:
        rep = faces.representative_for(media_file, trace)
    except NotFound:  # a trace whose boxes all lie outside the picture
        return None
    box = rep.face.box
    return {
        "frame_number": rep.face.frame_number,
        "bbox": {"x": box.x, "y": box.y, "width": box.width, "height": box.height},
        "confidence": rep.face.confidence,
        "thumbnail_url": trace_urls(media_file.file_uuid, trace.trace_id)["thumbnail_url"],
    }


class CooccurrenceView(APIView):
    """``GET /file/{uuid}/identities/{a}/co-occur-with/{b}``: the first frame where both appear."""

    @extend_schema(operation_id="identities_cooccurrence",
                   summary="First frame of the file where two identities appear together, with their faces",
                   responses={200: schema.COOCCURRENCE, 500: schema.MEDIA_ERROR}, tags=["identities"])
    def get(self, request: Request, file_uuid: str, identity_uuid_a: str, identity_uuid_b: str) -> Response:
        media_file = file_selectors.file_for_request(request, file_uuid)
        uuid_a, uuid_b = identity_uuid_a, identity_uuid_b
        if uuid_a == uuid_b:
            raise BadRequest("An identity cannot co-occur with itself: give two different identities.",
                             param="identity_uuid_b")
        identity_a, identity_b = _visible(request, uuid_a), _visible(request, uuid_b)
        found = first_cooccurrence(media_file.pk, identity_a.pk, identity_b.pk)
        if found is None:
            raise NotFound(f"{identity_a.name} and {identity_b.name} never appear together in this file.",
                           {"file_uuid": media_file.file_uuid, "identity_uuid_a": uuid_a, "identity_uuid_b": uuid_b})
        traces = {t.trace_id: t for t in Trace.objects.filter(file=media_file,
                                                               trace_id__in=[found.trace_id_a, found.trace_id_b])}
        trace_a, trace_b = traces[found.trace_id_a], traces[found.trace_id_b]
        return Response({
            "success": True,
            "file_uuid": media_file.file_uuid,
            "identity_a": {"identity_uuid": uuid_a, "name": identity_a.name, "source": identity_a.source,
                           "status": identity_a.status, "trace_id": found.trace_id_a},
            "identity_b": {"identity_uuid": uuid_b, "name": identity_b.name, "source": identity_b.source,
                           "status": identity_b.status, "trace_id": found.trace_id_b},
            "first_cooccurrence": {
                "frame_number": found.frame_number,
                "timestamp_secs": round(frame_index_for(media_file).seconds_of(found.frame_number), 6),
                "total_cooccurrence_frames": found.total_frames,
                "representative_face_a": _cooccurrence_face(media_file, trace_a),
                "representative_face_b": _cooccurrence_face(media_file, trace_b),
            },
        })
