"""``POST /api/v1/file/{uuid}/sign``: a media URL a player can use without headers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from media_api import selectors
from media_api.services import signed_urls
from momentry import schema
from momentry.bodies import validated
from momentry.parsers import BoundedJSONParser

SIGNABLE_URL = (r"^/api/v1/file/[0-9a-f]{32}/(video|video/bbox|clip|thumbnail|trace/[0-9]+/thumbnail"
                r"|trace/[0-9]+/video)(\?[^#\x00]*)?$")


@extend_schema_field({"type": "string", "maxLength": 4000, "pattern": SIGNABLE_URL,
                      "description": "path and query of a media route of this file (without exp, sub or sig), e.g. "
                                     "/api/v1/file/<uuid>/clip?start_frame=0&end_frame=47"})
class SignableUrlField(schema.StrictCharField):
    pass


class SignSerializer(serializers.Serializer):
    url = SignableUrlField(max_length=4000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built per instance: the limit is a setting (and the schema is generated from an instance too).
        longest = settings.MOMENTRY_SIGNED_URL_MAX_SECONDS
        self.fields["expires_in"] = schema.StrictIntegerField(
            required=False, min_value=1, max_value=longest,
            help_text=f"seconds (default MOMENTRY_SIGNED_URL_SECONDS, at most {longest})")


class SignView(APIView):
    parser_classes = [BoundedJSONParser]  # the body is a JSON object (415 otherwise)

    @extend_schema(
        operation_id="file_sign_url",
        summary="Sign a media URL of this file (video, clip, thumbnails, overlay videos) for use without headers",
        description="The signed URL acts as the caller (same user, key and file scope) until it expires, works only "
                    "for exactly that route and parameters (any change is a 403), never outlives the credential "
                    "that signed it (expires_at is at most the API key's, JWT's or session's own expiry) and ends "
                    "when that credential is revoked or logged out. Responses to it are cacheable by shared caches "
                    "(Cache-Control: public).",
        request=SignSerializer,
        responses={200: schema.success("SignedUrl", {
            "url": serializers.CharField(help_text="the signed path and query"),
            "absolute_url": serializers.CharField(),
            "expires_at": serializers.DateTimeField(),
        })},
        examples=[OpenApiExample("clip", request_only=True, value={
            "url": "/api/v1/file/0b5ff4c55a4cd69f79956f3126817308/clip?start_frame=0&end_frame=47",
            "expires_in": 3600})],
        tags=["media"],
    )
    def post(self, request: Request, file_uuid: str) -> Response:
        media_file = selectors.file_for_request(request, file_uuid)
        data = validated(SignSerializer, request)
        signed = signed_urls.sign(data["url"], media_file.file_uuid, request, data.get("expires_in"))
        return Response({"success": True, "url": signed.url, "absolute_url": request.build_absolute_uri(signed.url),
                         "expires_at": signed.expires_at.isoformat()})



