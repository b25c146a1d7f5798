"""OpenAPI pieces: security schemes (drf-spectacular extensions), the error envelope, the request
field types whose validation matches their schema, and the response shapes.

What every operation shares (uuid patterns, error statuses, closed bodies) is added afterwards
by :mod:`momentry.schema_hooks`.
"""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field, inline_serializer
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
    "success": S.BooleanField(help_text="always false"),
    "error": inline_serializer("ErrorBody", {
        "code": S.CharField(help_text="BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, …"),
        "message": S.CharField(),
        "details": S.DictField(help_text='e.g. {"parameter": "page_size"} for a 400'),
    }),
})

# The error statuses every operation shares (400, 401, 403, 404, 406, 413, 414, 415, 503) are
# added by momentry.schema_hooks from what the route is; views list only their own special ones.
MEDIA_ERROR = OpenApiResponse(ERROR, description="MEDIA_ERROR: decoding or encoding failed (FFmpeg; logged)")


# --- Request fields: what they accept is exactly what their schema says --------------------------

#: How a file or identity uuid is written in URLs and bodies (the app also accepts dashed UUIDs).
UUID_PATTERN = "^[0-9a-f]{32}$"


class StrictCharField(S.CharField):
    """A JSON string, not a number turned into one (DRF's CharField accepts ``5`` as ``"5"``)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(S.BooleanField):
    """A JSON true or false (DRF's BooleanField also takes 0, 1, "yes", "off"…)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field({"type": "string", "pattern": UUID_PATTERN})
class UuidField(StrictCharField):
    """A file or identity uuid in a request body (normalized and checked by the view)."""


class StrictIntegerField(S.IntegerField):
    """A JSON integer, not a string or float holding one (DRF's IntegerField accepts ``"5"`` and ``5.0``)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


#: The characters ``str.strip()`` removes, spelled out: a pattern's ``\s`` is ECMA's, which
#: lacks \x1c-\x1f and \x85 and adds \ufeff.
STRIPPED = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def trimmed_text_pattern(max_length: int) -> str:
    """What a trimmed CharField (no NUL, not blank once stripped, ``max_length`` once stripped) accepts."""
    return rf"^[{STRIPPED}]*[^{STRIPPED}\x00](?:[^\x00]{{0,{max_length - 2}}}[^{STRIPPED}\x00])?[{STRIPPED}]*$"


def _class_escape(code: int) -> str:
    # \uXXXX is read alike by ECMA and Python patterns; characters beyond the BMP are written as themselves.
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


def character_class(codes: list[int]) -> str:
    """``codes`` (ascending) as the inside of a regex character class, in ranges."""
    parts, start = [], None
    for position, code in enumerate(codes):
        if start is None:
            start = code
        if position + 1 < len(codes) and codes[position + 1] == code + 1:
            continue
        parts.append(_class_escape(start) if start == code else f"{_class_escape(start)}-{_class_escape(code)}")
        start = None
    return "".join(parts)


# --- Query parameters that only go together -----------------------------------------------------
# OpenAPI describes each query parameter on its own, so "start_frame needs end_frame" or "a crop is
# x, y, w and h or nothing" cannot be said of separate parameters: a client (or a fuzzer) reading
# the schema would send a start without its end and be refused. Such parameters are described as
# ONE parameter of type object in the "form" style, exploded, which on the wire is exactly the
# separate parameters (``?start_frame=10&end_frame=20``), and whose schema states the rule.

#: ``name=`` means "not given" for these parameters (as for every optional query parameter).
EMPTY_VALUE = {"type": "string", "maxLength": 0}


def _bare(spec: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in spec.items() if key != "description"}


def _given(names: tuple[str, ...], properties: dict[str, dict]) -> dict[str, Any]:
    return {"required": list(names), "properties": {name: _bare(properties[name]) for name in names}}


def _absent(names: tuple[str, ...]) -> dict[str, Any]:
    return {"properties": {name: EMPTY_VALUE for name in names}}


def all_or_none(names: tuple[str, ...], properties: dict[str, dict]) -> dict[str, Any]:
    """Every one of ``names`` given with a value, or none of them (absent or empty)."""
    return {"anyOf": [_given(names, properties), _absent(names)]}


def grouped_parameter(name: str, properties: dict[str, dict], rules: list[dict[str, Any]], description: str,
                      required: bool = False) -> OpenApiParameter:
    """Query parameters that only go together, as one exploded ``form`` object (see above)."""
    schema = {
        "type": "object",
        "properties": {key: {"anyOf": [_bare(spec), EMPTY_VALUE], **({"description": spec["description"]}
                                                                        if "description" in spec else {})}
                       for key, spec in properties.items()},
        "additionalProperties": False,
        "allOf": rules,
    }
    return OpenApiParameter(name, schema, OpenApiParameter.QUERY, required=required, style="form", explode=True,
                            description=description)


FRAMES, TIMES = ("start_frame", "end_frame"), ("start_time", "end_time")
SPAN_PROPERTIES = {
    "start_frame": {"type": "integer", "minimum": 0, "description": "first frame (inclusive)"},
    "end_frame": {"type": "integer", "minimum": 0, "description": "last frame (inclusive), >= start_frame"},
    "start_time": {"type": "number", "minimum": 0, "description": "seconds from the first frame"},
    "end_time": {"type": "number", "minimum": 0, "description": "seconds from the first frame (exclusive), "
                                                                 "> start_time"},
}


def face_crop_parameter(sizes: tuple[int, ...], default: int) -> OpenApiParameter:
    """``crop=face`` and its ``size`` (a size needs the crop): the trace video's face-following clip."""
    properties = {
        "crop": {"type": "string", "enum": ["face"],
                 "description": "face: a square clip following the trace's face instead of the full frame"},
        "size": {"type": "integer", "enum": list(sizes),
                 "description": f"side of the crop clip in pixels (default {default}); only with crop"},
    }
    return grouped_parameter(
        "face_crop", properties, [{"anyOf": [_absent(("size",)), _given(("crop",), properties)]}],
        "Optional: crop=face, with size, sent as separate query parameters (?crop=face&size=192). A size-by-size "
        "H.264 clip of the trace's frames following its face, without audio or overlays (mode and audio do not "
        "apply). Another crop, a size outside the list, or a size without crop: 400 naming the parameter.",
    )


def span_parameter(required: bool) -> OpenApiParameter:
    """``start_frame``+``end_frame`` and/or ``start_time``+``end_time``, each pair whole; frames win."""
    rules = [all_or_none(FRAMES, SPAN_PROPERTIES), all_or_none(TIMES, SPAN_PROPERTIES)]
    if required:
        rules.append({"anyOf": [_given(FRAMES, SPAN_PROPERTIES), _given(TIMES, SPAN_PROPERTIES)]})
    need = "Required: " if required else "Optional: "
    return grouped_parameter(
        "span", SPAN_PROPERTIES, rules,
        need + "start_frame and end_frame, or start_time and end_time, sent as separate query parameters "
        "(?start_frame=10&end_frame=40). A pair goes together; with both pairs the frames are used. The span "
        "must lie inside the file (its total_frames and duration), end at or after its start, and stay within "
        "the render limit: 400 otherwise, naming the parameter.",
        required=required,
    )


CROP = ("x", "y", "w", "h")
CROP_PROPERTIES = {
    "x": {"type": "integer", "minimum": 0, "description": "left edge"},
    "y": {"type": "integer", "minimum": 0, "description": "top edge"},
    "w": {"type": "integer", "minimum": 1, "description": "width"},
    "h": {"type": "integer", "minimum": 1, "description": "height"},
}
CROP_PARAMETER = grouped_parameter(
    "crop", CROP_PROPERTIES, [all_or_none(CROP, CROP_PROPERTIES)],
    "Optional crop: x, y, w and h (all four or none), sent as separate query parameters (&x=180&y=20&w=160&h=160). "
    "It must lie inside the frame: 400 otherwise, with the frame's size in details.",
)

TRACE_FILTER_PROPERTIES = {
    "identity": {"type": "string", "pattern": UUID_PATTERN,
                 "description": "only traces bound to this identity_uuid (a dashed UUID is accepted too)"},
    "unbound": {"type": "boolean", "description": "true: only traces with no identity; false: only bound ones"},
}
TRACE_FILTER_PARAMETER = grouped_parameter(
    "filter", TRACE_FILTER_PROPERTIES,
    # identity with unbound=true asks for traces bound and unbound at once: refused (400).
    [{"anyOf": [_absent(("identity",)), {"properties": {"unbound": {"anyOf": [{"enum": [False]}, EMPTY_VALUE]}}}]}],
    "Optional filters, sent as separate query parameters: identity=<uuid> and/or unbound=true|false "
    "(identity with unbound=true is a 400).",
)


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 4000, "pattern": "^/",
                      "description": "absolute path of a video under MOMENTRY_MEDIA_ROOTS"})
class AbsolutePathField(StrictCharField):
    """A server path: absolute (a relative one is a 400); whether it is a video under the media roots is the
    server's data, checked by the view."""


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


def twin(field: Any) -> Any:
    """A second instance of the same component, for a second field of one object (``a`` and ``b``).

    A field instance binds to one name: the same instance under two names documents only the
    last one.
    """
    return copy.deepcopy(field)


# Built once: a component must be one class wherever it is used.
BBOX = inline_serializer("BBox", {k: S.IntegerField() for k in ("x", "y", "width", "height")})
#: How any answer names a person (``source`` and ``status`` say a curator's name from an automatic cluster).
IDENTITY_SOURCES, IDENTITY_STATUSES = ["auto", "user_defined", "import", "merged"], ["confirmed", "pending", "inactive"]
IDENTITY_SOURCE = S.ChoiceField(IDENTITY_SOURCES,
                                help_text="auto: an automatic cluster; user_defined: named by a curator")
IDENTITY_STATUS = S.ChoiceField(IDENTITY_STATUSES,
                                help_text="pending: an automatic cluster nobody confirmed; inactive: merged away")
IDENTITY_SUMMARY = inline_serializer("IdentitySummary", {
    "identity_uuid": S.CharField(), "name": S.CharField(), "source": IDENTITY_SOURCE, "status": IDENTITY_STATUS,
}, allow_null=True)


def file_fields() -> dict[str, Any]:
    return {
        "file_uuid": S.CharField(), "name": S.CharField(), "size": S.IntegerField(),
        "container": S.CharField(), "video_codec": S.CharField(), "width": S.IntegerField(),
        "height": S.IntegerField(), "fps": S.FloatField(), "fps_rational": S.CharField(),
        "total_frames": S.IntegerField(), "duration": S.FloatField(), "has_audio": S.BooleanField(),
        "audio_codec": S.CharField(allow_null=True),
        "truncated": S.BooleanField(help_text="the file ends before the duration its container declares (a cut-off "
                                              "copy): only the frames present are counted and served"),
        "warnings": S.ListField(child=S.CharField(), help_text="what is wrong with the file, e.g. how much of it "
                                                               "is missing; empty for a whole file"),
        "created_at": S.DateTimeField(),
        "storage": S.ChoiceField(["local", "s3"], help_text="where the bytes are: a local path, or an object in an "
                                                            "S3-compatible store (read with ranged requests)"),
        "owned": S.BooleanField(help_text="the service stored the bytes itself (an upload): deleting the file "
                                          "deletes them"),
        "trace_count": S.IntegerField(), "identity_count": S.IntegerField(),
    }


def trace_fields() -> dict[str, Any]:
    return {
        "trace_id": S.IntegerField(), "face_count": S.IntegerField(),
        "start_frame": S.IntegerField(allow_null=True), "end_frame": S.IntegerField(allow_null=True),
        "start_time": S.FloatField(allow_null=True), "end_time": S.FloatField(allow_null=True),
        "avg_confidence": S.FloatField(allow_null=True),
        "has_embedding": S.BooleanField(help_text="the trace has a face embedding of the current model (usable by "
                                                  "suggestions, clustering and search); false for imported boxes"),
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
        "blur_score": S.FloatField(allow_null=True, help_text="FFmpeg blurdetect on the face (lower = sharper); "
                                                              "null when it finds no edge to measure (a dark, "
                                                              "flat face)"),
    }),
})
_COOCCUR_IDENTITY = inline_serializer("CooccurrenceIdentity", {
    "identity_uuid": S.CharField(), "name": S.CharField(), "source": twin(IDENTITY_SOURCE),
    "status": twin(IDENTITY_STATUS),
    "trace_id": S.IntegerField(help_text="the identity's trace present at the first co-occurrence frame"),
})
_COOCCUR_FACE = inline_serializer("CooccurrenceFace", {
    "frame_number": S.IntegerField(), "bbox": BBOX, "confidence": S.FloatField(), "thumbnail_url": S.CharField(),
}, allow_null=True, help_text="null when every box of the trace lies outside the picture")
COOCCURRENCE = success("Cooccurrence", {
    "file_uuid": S.CharField(), "identity_a": _COOCCUR_IDENTITY, "identity_b": twin(_COOCCUR_IDENTITY),
    "first_cooccurrence": inline_serializer("FirstCooccurrence", {
        "frame_number": S.IntegerField(), "timestamp_secs": S.FloatField(),
        "total_cooccurrence_frames": S.IntegerField(),
        "representative_face_a": _COOCCUR_FACE, "representative_face_b": twin(_COOCCUR_FACE),
    }),
})
SUGGESTIONS = success("TraceSuggestions", {
    "file_uuid": S.CharField(), "trace_id": S.IntegerField(),
    "has_embedding": S.BooleanField(help_text="false for imported detections: nothing to compare"),
    "confident_match": S.BooleanField(help_text="the nearest suggestion is a confident match"),
    "message": S.CharField(allow_null=True, help_text="why there is no confident match; null when there is one"),
    "thresholds": inline_serializer("SuggestionThresholds", {
        "offered": S.FloatField(help_text="largest distance suggested"),
        "confident": S.FloatField(help_text="largest distance called a confident match"),
    }),
    "suggestions": S.ListField(child=inline_serializer("Suggestion", {
        "identity_uuid": S.CharField(), "name": S.CharField(), "source": twin(IDENTITY_SOURCE),
        "status": twin(IDENTITY_STATUS),
        "distance": S.FloatField(help_text="embedding distance, nearest first"), "confident": S.BooleanField(),
    })),
})
_CAST_MEMBER = inline_serializer("CastMember", {
    "identity_uuid": S.CharField(allow_null=True, help_text="null for a group of unbound traces"),
    "name": S.CharField(allow_null=True, help_text="null for a group of unbound traces"),
    "source": S.ChoiceField(IDENTITY_SOURCES, allow_null=True, help_text="null for a group of unbound traces"),
    "status": S.ChoiceField(IDENTITY_STATUSES, allow_null=True, help_text="null for a group of unbound traces"),
    "trace_ids": S.ListField(child=S.IntegerField(), help_text="this person's traces in the file, ascending"),
    "screen_frames": S.IntegerField(help_text="frames with at least one of its detections"),
    "screen_secs": S.FloatField(help_text="seconds of those frames (a frame lasts until the next one starts)"),
})
CAST_GRAPH = page_of("CastGraphPage", "pairs", inline_serializer("CastPair", {
    "a": _CAST_MEMBER, "b": twin(_CAST_MEMBER),
    "first_frame_number": S.IntegerField(), "first_timestamp_secs": S.FloatField(),
    "shared_frames": S.IntegerField(), "shared_secs": S.FloatField(),
}), file_uuid=S.CharField(), include_unbound=S.BooleanField(),
    identity_uuid=S.CharField(allow_null=True, help_text="the identity whose partners are listed, or null"))
_PAIR_SIDE = inline_serializer("PairSide", {
    "trace_id": S.IntegerField(help_text="its lowest trace id on the first shared frame"),
    "screen_frames": S.IntegerField(), "screen_secs": S.FloatField(),
})
_PAIR_IDENTITY = inline_serializer("PairIdentity", {"identity_uuid": S.CharField(), "name": S.CharField(),
                                                    "source": twin(IDENTITY_SOURCE), "status": twin(IDENTITY_STATUS)})
PAIR_FILES = page_of("PairFilePage", "files", inline_serializer("PairFile", {
    "file_uuid": S.CharField(), "name": S.CharField(),
    "first_frame_number": S.IntegerField(), "first_timestamp_secs": S.FloatField(),
    "shared_frames": S.IntegerField(), "shared_secs": S.FloatField(),
    "a": _PAIR_SIDE, "b": twin(_PAIR_SIDE),
}), identity_a=_PAIR_IDENTITY, identity_b=twin(_PAIR_IDENTITY))
