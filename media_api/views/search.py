"""``POST /api/v1/faces/search``: who is in this photo — every face of an uploaded picture, matched against
the traces in the caller's scope (the work is in :mod:`media_api.services.face_search`)."""

from __future__ import annotations

import re
import time
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from media_api import selectors
from media_api.ffmpeg.process import media_job_slot
from media_api.services import face_search
from media_api.services.face_search import FaceMatches, QueryFace, TraceMatch
from media_api.views.traces import trace_urls
from momentry import schema
from momentry.bodies import validated

S = serializers


#: Form values are text. An empty value means "not given" (as the query parameters' ``allowEmptyValue``):
#: some multipart encoders drop an empty part altogether, so the two must mean the same.
UUID_OR_EMPTY = r"^([0-9a-f]{32})?$"
LIMIT_PATTERN = rf"^([1-9]|[1-9][0-9]|{face_search.MAX_LIMIT})?$"


class _FormText(S.Field):
    """A text form field checked against ``pattern`` exactly as the schema states it ("" = not given)."""

    pattern = ""
    default_error_messages = {"invalid": "Not a valid value."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def get_value(self, dictionary: Any) -> Any:
        value = dictionary.get(self.field_name, S.empty)
        return S.empty if value == "" else value

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not re.fullmatch(self.pattern, data):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"type": "string", "pattern": UUID_OR_EMPTY})
class FormUuidField(_FormText):
    """A file uuid (32 lowercase hex characters)."""

    pattern = UUID_OR_EMPTY
    default_error_messages = {"invalid": "Must be 32 lowercase hex characters."}


@extend_schema_field({"type": "string", "pattern": LIMIT_PATTERN})
class FormLimitField(_FormText):
    """A whole number 1..MAX_LIMIT written in digits."""

    pattern = LIMIT_PATTERN
    default_error_messages = {"invalid": f"Must be a whole number from 1 to {face_search.MAX_LIMIT}."}

    def to_internal_value(self, data: Any) -> int:
        return int(super().to_internal_value(data))


@extend_schema_field({"type": "string", "format": "binary"})
class ImageField(S.FileField):
    """The uploaded picture: a file part of the form."""


class SearchForm(S.Serializer):
    image = ImageField(help_text="JPEG, PNG or WebP, at most 10 MB and 40 megapixels (EXIF orientation applied)")
    file_uuid = FormUuidField(help_text="search only this file's traces (empty: every file in scope)")
    limit = FormLimitField(help_text=f"identities and traces per face, each: 1..{face_search.MAX_LIMIT} "
                                     f"(empty: {face_search.DEFAULT_LIMIT})")


_TRACE_REF = {
    "file_uuid": S.CharField(), "trace_id": S.IntegerField(),
    "distance": S.FloatField(help_text="embedding distance to the face (0 = identical)"),
    "confident": S.BooleanField(help_text="distance within the calibrated confident threshold"),
    "thumbnail_url": S.CharField(),
}
FACE_SEARCH = schema.success("FaceSearch", {
    "image": schema.inline_serializer("SearchedImage", {
        "width": S.IntegerField(), "height": S.IntegerField(),
        "format": S.ChoiceField(choices=["JPEG", "PNG", "WEBP"]),
    }),
    "file_uuid": S.CharField(allow_null=True, help_text="the file searched, or null for every file in scope"),
    "model": S.CharField(help_text="the embedding model compared (traces of other models are not searched)"),
    "thresholds": schema.inline_serializer("SearchThresholds", {
        "offered": S.FloatField(help_text="largest distance answered"),
        "confident": S.FloatField(help_text="largest distance called a confident match"),
    }),
    "faces": S.ListField(child=schema.inline_serializer("SearchedFace", {
        "bbox": schema.BBOX,
        "confidence": S.FloatField(help_text="the detector's score, 0..1"),
        "searched": S.BooleanField(help_text="false when the face cannot be compared (message says why)"),
        "message": S.CharField(allow_null=True),
        "identities": S.ListField(child=schema.inline_serializer("SearchIdentityMatch", {
            "identity_uuid": S.CharField(), "name": S.CharField(),
            "source": schema.twin(schema.IDENTITY_SOURCE), "status": schema.twin(schema.IDENTITY_STATUS),
            "distance": S.FloatField(help_text="to the identity's nearest trace"),
            "confident": S.BooleanField(),
            "trace": schema.inline_serializer("SearchBestTrace", _TRACE_REF),
        }), help_text="nearest first; each identity once, by its nearest trace"),
        "traces": S.ListField(child=schema.inline_serializer("SearchTraceMatch", _TRACE_REF),
                              help_text="traces bound to nobody, nearest first"),
    }), help_text="every face found, largest first"),
})


def _trace(match: TraceMatch) -> dict[str, Any]:
    return {"file_uuid": match.file_uuid, "trace_id": match.trace_id, "distance": match.distance,
            "confident": match.confident,
            "thumbnail_url": trace_urls(match.file_uuid, match.trace_id)["thumbnail_url"]}


def _face(face: QueryFace, found: FaceMatches | None) -> dict[str, Any]:
    found = found or FaceMatches()
    return {
        "bbox": {"x": face.x, "y": face.y, "width": face.width, "height": face.height},
        "confidence": face.confidence, "searched": face.vector is not None, "message": face.reason,
        "identities": [{"identity_uuid": m.identity_uuid, "name": m.name, "source": m.source, "status": m.status,
                        "distance": m.distance, "confident": m.best.confident, "trace": _trace(m.best)}
                       for m in found.identities],
        "traces": [_trace(m) for m in found.traces],
    }


class FaceSearchView(APIView):
    parser_classes = [MultiPartParser]  # a multipart form (415 otherwise)

    @extend_schema(
        operation_id="faces_search",
        summary="Search by photo: every face of an uploaded picture with the identities and traces it matches",
        description=(
            "The picture (multipart field `image`: JPEG, PNG or WebP, at most 10 MB and 40 megapixels) is searched "
            "with the face pipeline's own detector and embedding, against every trace in the caller's file scope "
            "(or `file_uuid`'s only). For each face, largest first: its box in the picture's pixels (after EXIF "
            "orientation), the identities it matches (each by its nearest trace) and the traces bound to nobody, "
            "nearest first, within the calibrated offered distance; `confident` marks matches within the "
            "confident one. A picture without faces answers `faces: []`. Server-Timing gives decode, detect and "
            "search times."),
        request={"multipart/form-data": SearchForm},
        responses={200: FACE_SEARCH, 404: OpenApiResponse(schema.ERROR, description=(
            "NOT_FOUND: file_uuid names no file in the caller's scope")),
            413: OpenApiResponse(schema.ERROR, description=(
                "PAYLOAD_TOO_LARGE: the image is larger than 10 MB or declares more than 40 megapixels"))},
        tags=["faces"],
    )
    def post(self, request: Request) -> Response:
        form = validated(SearchForm, request)
        limit = form.get("limit", face_search.DEFAULT_LIMIT)
        media_file = None
        if form.get("file_uuid") is not None:
            media_file = selectors.file_for_request(request, form["file_uuid"])
        upload = form["image"]
        face_search.check_upload_size(upload.size)
        clock = time.perf_counter()
        with media_job_slot():  # decoding and the networks are CPU work: bounded like every media job
            picture = face_search.read_image(upload)
            decoded = time.perf_counter()
            faces = face_search.faces_in(picture)
        detected = time.perf_counter()
        searched = [face for face in faces if face.vector is not None]
        files = None
        if media_file is not None:
            files = [media_file.pk]
        elif selectors.is_scoped(request.user, request.auth):
            files = selectors.files_visible_to(request).values_list("pk", flat=True)
        found = face_search.match(
            [face.vector for face in searched], limit=limit,
            files=None if files is None else face_search.as_pks(files),
            trace_scope=selectors.scope_filter(request.user, request.auth, file_field="file_id"))
        matches = dict(zip(map(id, searched), found, strict=True))
        done = time.perf_counter()
        response = Response({
            "success": True,
            "image": {"width": picture.width, "height": picture.height, "format": picture.format},
            "file_uuid": None if media_file is None else media_file.file_uuid,
            "model": face_search.MODEL_NAME,
            "thresholds": {"offered": face_search.OFFERED_DISTANCE, "confident": face_search.CONFIDENT_DISTANCE},
            "faces": [_face(face, matches.get(id(face))) for face in faces],
        })
        response["Server-Timing"] = (f"decode;dur={(decoded - clock) * 1000:.1f}, "
                                     f"detect;dur={(detected - decoded) * 1000:.1f}, "
                                     f"search;dur={(done - detected) * 1000:.1f}")
        return response
