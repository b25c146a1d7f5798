"""Streaming routes: original bytes with ranges, segments, clips and overlay videos (spec §4).

DRF ``APIView``s, so the session / JWT / API-key authentication classes and the permission
from settings apply, and errors become the JSON envelope. Content negotiation is skipped:
players send ``Accept: video/*`` and the body is never rendered by DRF anyway. Each
streaming body is an :class:`~media_api.ffmpeg.process.FFmpegStream`; Django closes it when
the response is closed (client gone or done), which kills and reaps FFmpeg.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotModified, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from media_api import selectors
from media_api.disconnect import disconnect_check
from media_api.ffmpeg.encode import Span
from media_api.ffmpeg.process import FFmpegStream, watching_client
from media_api.ranged import content_type_for, etag_matches, ranged_file_response, streaming_body
from media_api.services import signed_urls, streaming
from media_api.storage.serve import object_response
from momentry import schema
from momentry.auth import SignedURLAuthentication
from momentry.pagination import int_param, number_param


class AnyAcceptNegotiation(BaseContentNegotiation):
    """Media routes answer bytes whatever ``Accept`` says (errors are JSON regardless)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MediaStreamView(APIView):
    """Base of the routes answering media bytes; they also accept signed URLs (no header needed)."""

    content_negotiation_class = AnyAcceptNegotiation
    authentication_classes = [SignedURLAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        grant = getattr(request._request, "momentry_signed", None)
        if grant is not None and response.status_code in (200, 206, 304):
            current = response.get("Cache-Control", "")
            if "no-cache" not in current and "no-store" not in current:  # one-off renders stay uncached
                response["Cache-Control"] = signed_urls.cache_control(grant)
        return response

    def dispatch(self, request, *args, **kwargs):
        # A request still waiting for a media job slot when its client leaves starts no FFmpeg.
        with watching_client(disconnect_check(request)):
            return super().dispatch(request, *args, **kwargs)

    @staticmethod
    def is_head(request: Request) -> bool:
        """HEAD answers the headers without starting FFmpeg."""
        return request.method == "HEAD"

    def not_modified(self, request: Request, etag: str) -> HttpResponse | None:
        """304 for a render the client already has (same file content, same parameters)."""
        match = request.headers.get("If-None-Match")
        if match is None or not etag_matches(match, etag, weak=True):
            return None
        response = HttpResponseNotModified()  # no Content-Type (Django's 304 drops it)
        response["ETag"] = etag
        response["Cache-Control"] = f"private, max-age={settings.MOMENTRY_CACHE_MAX_AGE}"
        return response

    def stream_response(self, stream: FFmpegStream | None, content_type: str, filename: str,
                        cacheable: bool = False, headers: dict[str, str] | None = None) -> HttpResponse:
        if stream is None:
            response: HttpResponse = HttpResponse(content_type=content_type)
        else:
            response = StreamingHttpResponse(streaming_body(self.request, stream), content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        response["X-Accel-Buffering"] = "no"  # let nginx pass chunks on as they are encoded
        response["Cache-Control"] = (
            f"private, max-age={settings.MOMENTRY_CACHE_MAX_AGE}" if cacheable else "private, no-cache"
        )
        for name, value in (headers or {}).items():
            response[name] = value
        return response


def _q(name: str, kind, description: str, enum: list[str] | None = None, **limits: float) -> OpenApiParameter:
    """A query parameter; ``limits`` (minimum, maximum) go into its JSON schema."""
    spec = {"type": "integer" if kind == OpenApiTypes.INT else "number", **limits} if limits else kind
    return OpenApiParameter(name, spec, OpenApiParameter.QUERY, required=False, description=description, enum=enum)


MODE = _q("mode", OpenApiTypes.STR, "normal (default) or debug: overlays + frame/time panel.", ["normal", "debug"])
AUDIO = _q("audio", OpenApiTypes.STR, "on (default) or off.", ["on", "off"])
FACE_CROP = schema.face_crop_parameter(streaming.crop.SIZES, streaming.crop.DEFAULT_SIZE)
SPAN = [schema.span_parameter(required=False)]  # the pairs go together: one grouped parameter (momentry.schema)
RENDER_LIMIT_NOTE = " Re-encoded spans are limited to MOMENTRY_MAX_CLIP_SECONDS (400 beyond, naming a span that fits)."
# The JSON error envelope of the media routes (their successes are video or JPEG bytes); the
# statuses every route shares (401, 414, 503...) are added by momentry.schema_hooks.
ERRORS = {
    400: OpenApiResponse(schema.ERROR, description="BAD_REQUEST: a parameter is invalid (named in details), e.g. "
                                                   "a span past the end or longer than the render limit"),
    403: OpenApiResponse(schema.ERROR, description="FORBIDDEN: a signed URL that was changed or has expired, or "
                                                   "whose signer is no longer valid"),
    404: OpenApiResponse(schema.ERROR, description="NOT_FOUND: unknown or out-of-scope file / trace"),
    500: schema.MEDIA_ERROR,
    503: OpenApiResponse(schema.ERROR, description="BUSY: media job pool saturated; retry after Retry-After seconds"),
}


def check_number_syntax(params, numbers: tuple[str, ...] = ()) -> None:
    """The span parameters (and ``numbers``) given must be well formed, also the pair that is not used.

    ``parse_span`` reads frames when both pairs are given and ignores the times; a malformed
    time next to good frames is still a 400 rather than silently dropped. Numbers are ASCII
    decimals ("1_000" or "nan" are refused). An empty value means "not given", as everywhere.
    The ranges that depend on the file or on each other are checked by the streaming service.
    """
    for name in ("start_frame", "end_frame"):
        int_param(params, name, 0, 0)
    for name in ("start_time", "end_time", *numbers):
        number_param(params, name, 0.0, 0.0)


#: What the original bytes of a file are served as (``mimetypes`` from its name).
ORIGINAL_TYPES = ("video/mp4", "video/*", "application/octet-stream")


def _video(description: str, media_type: str = "video/mp4") -> dict:
    return {(200, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=description), **ERRORS}


def _span_name(span: Span) -> str:
    return f"{span.start_frame}-{span.end_frame}"


class FileVideoView(MediaStreamView):
    """``GET /file/{uuid}/video``: original bytes, or a segment / debug render of a span."""

    @extend_schema(
        summary="Original video bytes (Range, HEAD, ETag) or a stream-copied fMP4 segment",
        description="With a span: a stream-copied segment from the keyframe at or before it. mode=debug re-encodes "
                    "with overlays." + RENDER_LIMIT_NOTE,
        parameters=[*SPAN, MODE, AUDIO],
        responses={**_video("The original bytes, or a fragmented MP4 segment (a span, audio=off or mode=debug); "
                            "the original's type follows its file name (video/*, or application/octet-stream)"),
                   **{(status, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=description)
                      for status, description in ((200, "The original bytes"), (206, "Partial content (Range)"))
                      for media_type in ORIGINAL_TYPES if (status, media_type) != (200, "video/mp4")},
                   302: OpenApiResponse(description="A file in object storage with MOMENTRY_S3_VIDEO_REDIRECT on: "
                                                    "Location is a presigned URL of the object (it answers Range)"),
                   304: OpenApiResponse(description="Not modified"),
                   416: OpenApiResponse(schema.ERROR, description="RANGE_NOT_SATISFIABLE, Content-Range: "
                                                                  "bytes */size")},
    )
    def get(self, request: Request, file_uuid: str) -> HttpResponse:
        media_file = selectors.file_for_request(request, file_uuid)
        options = streaming.parse_stream_options(request.query_params)
        check_number_syntax(request.query_params)
        span = streaming.parse_span(request.query_params, media_file, required=False)
        if span is None and not options.debug and options.audio:
            if media_file.storage == "s3":  # proxied ranged GetObject, or 302 with MOMENTRY_S3_VIDEO_REDIRECT
                return object_response(request._request, media_file, content_type=content_type_for(media_file.name))
            return ranged_file_response(request._request, media_file.path,
                                        content_type=content_type_for(media_file.name))
        span = span or streaming.whole_file(media_file)
        if options.debug:  # a re-encode: bounded like every render
            streaming.check_render_length(media_file, span)
        stream, first = None, streaming.segment_first_frame(media_file, span, options)
        if not self.is_head(request):
            stream, first = streaming.segment_stream(media_file, span, options)
        return self.stream_response(
            stream, "video/mp4", f"{media_file.file_uuid}_{_span_name(span)}.mp4", cacheable=not options.debug,
            headers={"X-Momentry-Start-Frame": str(first), "X-Momentry-End-Frame": str(span.end_frame)},
        )


class TraceVideoView(MediaStreamView):
    """``GET /file/{uuid}/trace/{trace_id}/video``: the trace's span ± padding, its box highlighted."""

    @extend_schema(
        summary="The trace's span with its box (interpolated) and label, fragmented MP4 (Range, HEAD, ETag)",
        description="The trace's frames plus padding; start/end narrow it (e.g. to a part of a long trace). Rendered "
                    "once into the server's cache (the first request waits for the render), then served with "
                    "Range, so a player can seek. With crop=face: a size x size clip following the trace's face "
                    "(its box smoothed over 0.5 s, squared with margin, kept inside the frame), H.264 without audio "
                    "or overlays, one frame per source frame at the file's frame rate." + RENDER_LIMIT_NOTE,
        parameters=[_q("padding", OpenApiTypes.NUMBER, "Seconds before/after the trace (default 2.0, max 60; "
                                                          "0 with crop).", minimum=0, maximum=60),
                    *SPAN,
                    MODE, AUDIO, FACE_CROP],
        responses={**_video("Fragmented MP4, H.264 (+AAC), with a global sidx index"),
                   (206, "video/mp4"): OpenApiResponse(OpenApiTypes.BINARY, description="Partial content (Range)"),
                   304: OpenApiResponse(description="Not modified"),
                   416: OpenApiResponse(schema.ERROR, description="RANGE_NOT_SATISFIABLE")},
    )
    def get(self, request: Request, file_uuid: str, trace_id: int) -> HttpResponse:
        media_file = selectors.file_for_request(request, file_uuid)
        options = streaming.parse_stream_options(request.query_params)
        check_number_syntax(request.query_params, ("padding",))
        crop_size = streaming.parse_crop(request.query_params)
        padding = streaming.parse_padding(request.query_params, default=2.0 if crop_size is None else 0.0)
        trace = streaming.trace_for(media_file, trace_id)
        span = streaming.trace_span(media_file, trace, padding)
        asked = streaming.parse_span(request.query_params, media_file, required=False)
        if asked is not None:
            span = streaming.narrow_span(span, asked)
        streaming.check_render_length(media_file, span)
        if crop_size is None:
            path = streaming.trace_video_file(media_file, trace, span, options)
            filename = f"{media_file.file_uuid}_trace{trace.trace_id}.mp4"
        else:
            path = streaming.face_crop_file(media_file, trace, span, crop_size)
            filename = f"{media_file.file_uuid}_trace{trace.trace_id}_face{crop_size}.mp4"
        response = ranged_file_response(request._request, path, content_type="video/mp4", filename=filename)
        response["Cache-Control"] = f"private, max-age={settings.MOMENTRY_CACHE_MAX_AGE}"
        response["X-Momentry-Start-Frame"] = str(span.start_frame)
        response["X-Momentry-End-Frame"] = str(span.end_frame)
        return response


class BboxVideoView(MediaStreamView):
    """``GET /file/{uuid}/video/bbox``: every detection boxed and labelled."""

    @extend_schema(
        summary="Every detection boxed and labelled, fragmented MP4",
        description="Without a span: the whole file." + RENDER_LIMIT_NOTE,
        parameters=[*SPAN, MODE, AUDIO],
        responses=_video("Fragmented MP4, H.264 (+AAC)"),
    )
    def get(self, request: Request, file_uuid: str) -> HttpResponse:
        media_file = selectors.file_for_request(request, file_uuid)
        options = streaming.parse_stream_options(request.query_params)
        check_number_syntax(request.query_params)
        span = streaming.parse_span(request.query_params, media_file, required=False) or streaming.whole_file(
            media_file
        )
        streaming.check_render_length(media_file, span)
        return self.stream_response(
            None if self.is_head(request) else streaming.bbox_stream(media_file, span, options), "video/mp4",
            f"{media_file.file_uuid}_bbox_{_span_name(span)}.mp4",
            headers={"X-Momentry-Start-Frame": str(span.start_frame), "X-Momentry-End-Frame": str(span.end_frame)},
        )


class ClipView(MediaStreamView):
    """``GET /file/{uuid}/clip``: frame-exact MPEG-TS (H.264 + AAC), streamed while encoding."""

    @extend_schema(
        summary="Frame-exact MPEG-TS clip (H.264 + AAC)",
        description="A span is required: start_frame and end_frame, or start_time and end_time (frames win when "
                    "both are given; without either pair the answer is a 400). Times are seconds whatever fps says; "
                    "fps converts frame numbers to time." + RENDER_LIMIT_NOTE,
        parameters=[schema.span_parameter(required=True),
                    _q("fps", OpenApiTypes.NUMBER, "Rate used to convert frames to time (1..240).", minimum=1,
                       maximum=240), MODE, AUDIO],
        responses=_video("MPEG-TS", "video/mp2t"),
    )
    def get(self, request: Request, file_uuid: str) -> HttpResponse:
        media_file = selectors.file_for_request(request, file_uuid)
        options = streaming.parse_stream_options(request.query_params)
        check_number_syntax(request.query_params, ("fps",))
        fps = streaming.parse_fps(request.query_params)
        span = streaming.parse_span(request.query_params, media_file, required=True, fps_override=fps,
                                    max_seconds=settings.MOMENTRY_MAX_CLIP_SECONDS)
        # The clip depends only on the file's content (file_uuid is its hash) and these values.
        etag = (f'W/"{media_file.file_uuid}-clip-{_span_name(span)}-{int(options.audio)}{int(options.debug)}'
                f'-{streaming.RENDER_VERSION}"')
        cached = self.not_modified(request, etag)
        if cached is not None:
            return cached
        return self.stream_response(
            None if self.is_head(request) else streaming.clip_stream(media_file, span, options), "video/mp2t",
            f"{media_file.file_uuid}_{_span_name(span)}.ts", cacheable=True,
            headers={"X-Momentry-Start-Frame": str(span.start_frame), "X-Momentry-End-Frame": str(span.end_frame),
                     "X-Momentry-Frame-Count": str(span.frame_count), "ETag": etag},
        )
