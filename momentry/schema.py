"""OpenAPI security schemes for the three credentials (drf-spectacular extensions)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "momentry.auth.SessionAuthentication"
    name = "cookieAuth"
    priority = 10

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid",
                "description": "Django session from POST /api/v1/auth/login or /admin/ (24 h). "
                               "Unsafe methods also need the X-CSRFToken header."}


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "momentry.auth.JWTAuthentication"
    name = "bearerAuth"
    priority = 10

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "The `jwt` from POST /api/v1/auth/login (HS256, 1 h)."}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "momentry.auth.APIKeyAuthentication"
    name = "apiKeyAuth"
    priority = 10

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-API-Key",
                "description": "A key from login or `manage.py create_api_key` (90 days by default)."}


class SignedURLScheme(OpenApiAuthenticationExtension):
    target_class = "momentry.auth.SignedURLAuthentication"
    name = "signedUrl"
    priority = 10

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "query", "name": "sig",
                "description": "A media URL signed by POST /api/v1/file/{file_uuid}/sign (with its exp and sub "
                               "parameters): needs no header; any change to it is a 403."}


# --- Response shapes, for the docs only (views build plain dicts) ------------------------------
S = serializers

ERROR = inline_serializer("Error", {
    "success": S.BooleanField(default=False),
    "error": inline_serializer("ErrorBody", {
        "code": S.CharField(help_text="BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, …"),
        "message": S.CharField(),
        "details": S.DictField(help_text='e.g. {"parameter": "page_size"} for a 400'),
    }),
})

ERRORS = {400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR}


def success(name: str, fields: dict[str, Any]) -> S.Serializer:
    return inline_serializer(name, {"success": S.BooleanField(), **fields})


def page_of(name: str, key: str, item: S.Serializer, **extra: Any) -> S.Serializer:
    """``{success, count, total, page, page_size, num_pages, <key>: [item]}``."""
    return success(name, {
        **extra,
        "count": S.IntegerField(help_text="items on this page"),
        "total": S.IntegerField(help_text="items matching"),
        "page": S.IntegerField(),
        "page_size": S.IntegerField(),
        "num_pages": S.IntegerField(),
        key: S.ListField(child=item),
    })


# Built once: a component must be one class wherever it is used.
BBOX = inline_serializer("BBox", {k: S.IntegerField() for k in ("x", "y", "width", "height")})
IDENTITY_SUMMARY = inline_serializer("IdentitySummary", {
    "identity_uuid": S.CharField(), "name": S.CharField(), "status": S.CharField(),
}, allow_null=True)


def file_fields() -> dict[str, Any]:
    return {
        "file_uuid": S.CharField(), "name": S.CharField(), "size": S.IntegerField(),
        "container": S.CharField(), "video_codec": S.CharField(), "width": S.IntegerField(),
        "height": S.IntegerField(), "fps": S.FloatField(), "fps_rational": S.CharField(),
        "total_frames": S.IntegerField(), "duration": S.FloatField(), "has_audio": S.BooleanField(),
        "audio_codec": S.CharField(allow_null=True), "created_at": S.DateTimeField(),
        "trace_count": S.IntegerField(), "identity_count": S.IntegerField(),
    }


def trace_fields() -> dict[str, Any]:
    return {
        "trace_id": S.IntegerField(), "face_count": S.IntegerField(),
        "start_frame": S.IntegerField(allow_null=True), "end_frame": S.IntegerField(allow_null=True),
        "start_time": S.FloatField(allow_null=True), "end_time": S.FloatField(allow_null=True),
        "avg_confidence": S.FloatField(allow_null=True),
        "identity": IDENTITY_SUMMARY,
        "thumbnail_url": S.CharField(), "video_url": S.CharField(),
        "representative_face_url": S.CharField(), "faces_url": S.CharField(),
    }


def identity_fields() -> dict[str, Any]:
    return {
        "identity_uuid": S.CharField(), "name": S.CharField(), "identity_type": S.CharField(allow_null=True),
        "source": S.CharField(), "status": S.CharField(), "metadata": S.DictField(),
        "aliases": S.ListField(child=S.CharField()), "merged_into": S.CharField(allow_null=True),
        "created_at": S.DateTimeField(), "updated_at": S.DateTimeField(),
        "trace_count": S.IntegerField(help_text="traces in files in your scope"),
        "file_count": S.IntegerField(help_text="files in your scope"),
    }



FILE_PAGE = page_of("FilePage", "files", inline_serializer("File", file_fields()))
FILE_DETAIL = success("FileDetail", file_fields())
TRACE_PAGE = page_of("TracePage", "traces", inline_serializer("Trace", trace_fields()), file_uuid=S.CharField())
TRACE_DETAIL = success("TraceDetail", {
    "file_uuid": S.CharField(), **trace_fields(),
    "representative": inline_serializer("CachedRepresentative", {
        "frame_number": S.IntegerField(), "bbox": BBOX, "confidence": S.FloatField(),
        "quality_score": S.FloatField(allow_null=True), "blur_score": S.FloatField(allow_null=True),
    }, allow_null=True, help_text="null until the representative face has been computed"),
})
FACE_PAGE = page_of("FacePage", "faces", inline_serializer("Face", {
    "frame_number": S.IntegerField(), "timestamp_secs": S.FloatField(allow_null=True), "bbox": BBOX,
    "confidence": S.FloatField(), "label": S.CharField(),
    "origin": S.ChoiceField(["detected", "tracked"], help_text="detector output on this frame, or followed by the "
                            "tracker between detector samples"),
}), file_uuid=S.CharField(), trace_id=S.IntegerField())
IDENTITY_PAGE = page_of("IdentityPage", "identities", inline_serializer("Identity", identity_fields()))
IDENTITY_DETAIL = success("IdentityDetail", identity_fields())
IDENTITY_FILES = page_of("IdentityFilePage", "files", inline_serializer("IdentityFile", {
    **file_fields(), "trace_count": S.IntegerField(help_text="this identity's traces in the file"),
}), identity_uuid=S.CharField())
BIND_RESULT = success("BindResult", {
    "identity_uuid": S.CharField(), "file_uuid": S.CharField(), "trace_ids": S.ListField(child=S.IntegerField()),
    "rows_affected": S.IntegerField(help_text="traces matched"),
    "changed": S.IntegerField(required=False, help_text="(bind) traces whose identity changed"),
})
MERGE_RESULT = success("MergeResult", {
    "identity_uuid": S.CharField(), "merged": S.ListField(child=S.CharField()), "traces_moved": S.IntegerField(),
    "moved_per_identity": S.DictField(child=S.IntegerField()),
    "change_id": S.IntegerField(help_text="the recorded change (undo in the admin)"),
})
DELETE_RESULT = success("DeleteResult", {
    "identity_uuid": S.CharField(), "deleted": S.BooleanField(), "traces_unbound": S.IntegerField(),
})
LOGOUT_RESULT = success("LogoutResult", {"session_ended": S.BooleanField(), "jwt_revoked": S.BooleanField()})
REPRESENTATIVE_FACE = success("RepresentativeFace", {
    "file_uuid": S.CharField(), "trace_id": S.IntegerField(), "face_count": S.IntegerField(),
    "representative": inline_serializer("Representative", {
        "frame_number": S.IntegerField(), "timestamp_secs": S.FloatField(), "bbox": BBOX,
        "confidence": S.FloatField(),
        "quality_score": S.FloatField(help_text="pre-selection score: area x confidence"),
        "blur_score": S.FloatField(help_text="FFmpeg blurdetect on the face (lower = sharper)"),
    }),
})
_COOCCUR_IDENTITY = inline_serializer("CooccurrenceIdentity", {
    "identity_uuid": S.CharField(), "name": S.CharField(),
    "trace_id": S.IntegerField(help_text="the identity's trace present at the first co-occurrence frame"),
})
_COOCCUR_FACE = inline_serializer("CooccurrenceFace", {
    "frame_number": S.IntegerField(), "bbox": BBOX, "confidence": S.FloatField(), "thumbnail_url": S.CharField(),
})
COOCCURRENCE = success("Cooccurrence", {
    "file_uuid": S.CharField(), "identity_a": _COOCCUR_IDENTITY, "identity_b": _COOCCUR_IDENTITY,
    "first_cooccurrence": inline_serializer("FirstCooccurrence", {
        "frame_number": S.IntegerField(), "timestamp_secs": S.FloatField(),
        "total_cooccurrence_frames": S.IntegerField(),
        "representative_face_a": _COOCCUR_FACE, "representative_face_b": _COOCCUR_FACE,
    }),
})
