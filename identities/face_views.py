"""``GET /identity/{uuid}/thumbnail`` and ``PUT /identity/{uuid}/face``: the face that shows a person."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from identities import feature_face, selectors
from identities.views import IdentityBase, _trace_ref, serialize_identity
from media_api import selectors as file_selectors
from media_api.services import representative as faces
from media_api.views.images import _JPEG, jpeg_response
from media_api.views.stream import MediaStreamView
from media_api.views.traces import normalize_uuid
from momentry import schema
from momentry.errors import BadRequest, NotFound


class IdentityThumbnailView(MediaStreamView):
    """The person's face, 320x320: the chosen trace's thumbnail, else their trace with the most faces."""

    @extend_schema(
        operation_id="identity_thumbnail",
        summary="320x320 JPEG of the person's face (the chosen feature face, else their biggest trace); cached, "
                "ETag",
        responses=_JPEG,
        tags=["identities"],
    )
    def get(self, request: Request, identity_uuid: str) -> HttpResponse:
        uuid = normalize_uuid(identity_uuid, "identity_uuid")
        identity = selectors.identity_by_uuid(uuid, request.user, request.auth)
        scope = file_selectors.scope_filter(request.user, request.auth, file_field="file_id")
        trace = feature_face.face_trace(identity, scope)
        if trace is None:
            raise NotFound("This person has no face to show: no trace is bound to them (in the files you may see).",
                           {"identity_uuid": uuid})
        rep = faces.representative_for(trace.file, trace)
        key = faces.thumbnail_key(trace.file.file_uuid, rep.face)
        return self.not_modified(request, key.etag) or jpeg_response(faces.thumbnail_for(trace.file, rep), key)


class IdentityFaceView(IdentityBase):
    """Choose which of the person's traces shows them."""

    @extend_schema(
        operation_id="identity_choose_face",
        summary="Choose the person's face: one of their traces (recorded, undoable in the admin)",
        request=inline_serializer("ChooseFace", {"file_uuid": schema.UuidField(),
                                                 "trace_id": serializers.IntegerField(min_value=0)}),
        responses={200: schema.IDENTITY_DETAIL,
                   409: OpenApiResponse(schema.ERROR, description="CONFLICT: the trace is not bound to this person")},
        tags=["identities"],
    )
    def put(self, request: Request, identity_uuid: str) -> Response:
        identity = selectors.identity_by_uuid(normalize_uuid(identity_uuid, "identity_uuid"), request.user,
                                              request.auth)
        traces, several_files = _trace_ref(request)
        media_file, trace_ids = traces[0]
        if several_files or len(traces) != 1 or len(trace_ids) != 1:
            raise BadRequest("give one trace_id: a person has one face", param="trace_ids")
        trace = media_file.traces.filter(trace_id=trace_ids[0]).select_related("file").first()
        if trace is None:
            raise NotFound("Trace not found.", {"file_uuid": media_file.file_uuid, "trace_ids": trace_ids})
        feature_face.choose_face(identity, trace, request.user)
        return Response({"success": True, **serialize_identity(identity),
                         "face_url": f"/api/v1/identity/{identity.identity_uuid}/thumbnail"})
