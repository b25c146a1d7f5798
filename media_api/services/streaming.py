"""Streaming work behind the video routes: parameter rules, overlay files, starting FFmpeg.

Views stay thin: they call :func:`parse_stream_options` / :func:`parse_span` and one of the
``*_stream`` functions, and wrap the returned :class:`~media_api.ffmpeg.process.FFmpegStream`
in a ``StreamingHttpResponse``. All FFmpeg arguments are built by ``media_api.ffmpeg``.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from django.conf import settings

from media_api.ffmpeg import crop, encode, overlays
from media_api.ffmpeg.index import FrameIndexData
from media_api.ffmpeg.process import FFmpegStream, open_stream, run_ffmpeg
from media_api.models import Detection, MediaFile, Trace
from media_api.services import image_cache
from media_api.services.files import frame_index_for
from momentry.errors import BadRequest, not_found

MODES = ("normal", "debug")
# Part of the ETag of cacheable renders: bump when the encoding settings change the output.
RENDER_VERSION = 1
AUDIO = ("on", "off")
MAX_PADDING_SECONDS = 60.0
DETECTION_FIELDS = (
    "frame_number", "x", "y", "width", "height", "confidence", "label", "trace__trace_id", "trace__identity__name",
)


@dataclass(frozen=True)
class StreamOptions:
    debug: bool
    audio: bool


def _choice(params: Any, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise BadRequest(f"{name} must be one of: {', '.join(allowed)}.", param=name, allowed=list(allowed))
    return value


def parse_stream_options(params: Any) -> StreamOptions:
    """``mode`` = normal|debug, ``audio`` = on|off; anything else is a 400."""
    mode = _choice(params, "mode", MODES, "normal")
    audio = _choice(params, "audio", AUDIO, "on")
    return StreamOptions(debug=mode == "debug", audio=audio == "on")


def _int_param(params: Any, name: str) -> int:
    raw = params.get(name, "")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer.", param=name) from None
    if value < 0:
        raise BadRequest(f"{name} must be >= 0.", param=name)
    return value


def _float_param(params: Any, name: str, *, positive: bool = False) -> float:
    raw = params.get(name, "")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a number.", param=name) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise BadRequest(f"{name} must be a {'positive' if positive else 'non-negative'} number.", param=name)
    return value


MIN_FPS, MAX_FPS = 1.0, 240.0


def parse_fps(params: Any) -> Fraction | None:
    """The ``fps`` override of /clip: a rate between 1 and 240 frames per second."""
    if params.get("fps") in (None, ""):
        return None
    value = _float_param(params, "fps", positive=True)
    if not MIN_FPS <= value <= MAX_FPS:
        raise BadRequest(f"fps must be between {MIN_FPS:g} and {MAX_FPS:g}.", param="fps", minimum=MIN_FPS,
                         maximum=MAX_FPS)
    return Fraction(value).limit_denominator(1001)


def _pair(params: Any, first: str, second: str) -> bool:
    """True when the pair is given; a half-given pair is a 400 naming the missing one."""
    has_first, has_second = params.get(first) not in (None, ""), params.get(second) not in (None, "")
    if has_first != has_second:
        missing = second if has_first else first
        raise BadRequest(f"{first} and {second} must be given together.", param=missing)
    return has_first


def _end_frame_for_time(index: FrameIndexData, seconds: float) -> int:
    """Last frame that starts strictly before ``seconds`` (end times are exclusive)."""
    target = int(index.pts[0]) + (Fraction(seconds).limit_denominator(10**9) / index.time_base)
    return int(index.pts.searchsorted(math.ceil(target), side="left")) - 1


def parse_span(
    params: Any,
    media_file: MediaFile,
    *,
    required: bool,
    fps_override: Fraction | None = None,
    max_seconds: float | None = None,
) -> encode.Span | None:
    """The frame span asked for: ``start_frame``+``end_frame`` (inclusive) or ``start_time``+``end_time``.

    Frames win when both forms are given. Times are seconds from the first frame; the end
    time is exclusive. ``fps_override`` converts frame numbers to time at that rate
    (frame N → N/fps seconds → the frame on screen then); it never changes what a time means.
    None when nothing is given and ``required`` is False. Every invalid case is a 400 naming the parameter.
    """
    has_frames, has_times = _pair(params, "start_frame", "end_frame"), _pair(params, "start_time", "end_time")
    if not (has_frames or has_times):
        if required:
            raise BadRequest("Give start_frame and end_frame (or start_time and end_time).", param="start_frame")
        return None
    index = frame_index_for(media_file)
    total = len(index)
    if has_frames:
        start, end = _int_param(params, "start_frame"), _int_param(params, "end_frame")
        if end < start:
            raise BadRequest("end_frame must be >= start_frame.", param="end_frame")
        if fps_override is not None:
            duration = index.duration_seconds(media_file.fps_fraction)
            if float(end / fps_override) >= duration:
                raise BadRequest(f"end_frame at {float(fps_override):g} fps is beyond the end ({duration:.3f}s).",
                                 param="end_frame", duration=duration)
            start = index.frame_at_seconds(float(start / fps_override))
            end = index.frame_at_seconds(float(end / fps_override))
        elif end >= total:
            raise BadRequest(f"end_frame is beyond the last frame ({total - 1}).", param="end_frame",
                             total_frames=total)
    else:
        start_time, end_time = _float_param(params, "start_time"), _float_param(params, "end_time")
        if end_time <= start_time:
            raise BadRequest("end_time must be greater than start_time.", param="end_time")
        duration = index.duration_seconds(media_file.fps_fraction)
        if start_time >= duration:
            raise BadRequest(f"start_time is beyond the end ({duration:.3f}s).", param="start_time", duration=duration)
        if end_time > duration + 1e-6:
            raise BadRequest(f"end_time is beyond the end ({duration:.3f}s).", param="end_time", duration=duration)
        # Seconds are seconds: fps only converts frame numbers, never times.
        start = index.frame_at_seconds(start_time)
        end = max(start, _end_frame_for_time(index, end_time))
    span = encode.Span(start, min(end, total - 1))
    if span.start_frame >= total:
        raise BadRequest(f"start_frame is beyond the last frame ({total - 1}).", param="start_frame")
    if max_seconds is not None:
        check_render_length(media_file, span, max_seconds)
    return span


def whole_file(media_file: MediaFile) -> encode.Span:
    return encode.Span(0, len(frame_index_for(media_file)) - 1)


def render_limit() -> float:
    """Longest span any re-encoding route renders (``MOMENTRY_MAX_CLIP_SECONDS``)."""
    return float(settings.MOMENTRY_MAX_CLIP_SECONDS)


def check_render_length(media_file: MediaFile, span: encode.Span, max_seconds: float | None = None,
                        param: str = "end_frame") -> encode.Span:
    """``span`` if it fits the render limit; else a 400 naming the limit and a span that fits.

    Every re-encoding route calls this — with the span asked for, or the one it would render
    by default (the whole file, a trace ± padding) — so no request can start an unbounded
    render.
    """
    limit = render_limit() if max_seconds is None else max_seconds
    index = frame_index_for(media_file)
    fps = media_file.fps_fraction
    seconds = float(encode.span_duration(index, span, fps))
    if seconds <= limit + 1e-6:
        return span
    end = max(span.start_frame, index.frame_at_seconds(index.seconds_of(span.start_frame) + limit))
    while end > span.start_frame and float(encode.span_duration(index, encode.Span(span.start_frame, end), fps)) \
            > limit + 1e-6:
        end -= 1
    raise BadRequest(
        f"The span is {seconds:.1f}s; re-encoded video is limited to {limit:g}s (MOMENTRY_MAX_CLIP_SECONDS). "
        f"Ask for a shorter span, e.g. start_frame={span.start_frame}&end_frame={end}.",
        param=param, max_seconds=limit, span_seconds=round(seconds, 3),
        suggested_span={"start_frame": span.start_frame, "end_frame": end},
    )


# --------------------------------------------------------------------------- overlay files


def _scratch_base() -> Path:
    return Path(settings.CACHE_DIR) / "overlays"


class _Scratch:
    """A private temporary directory for one render (overlay file), removed when the stream closes.

    Its name carries the owner's pid (``ov-<pid>-…``), so a folder left by a killed worker is
    recognised and removed by :func:`clean_stale_scratch` at the next start-up.
    """

    def __init__(self) -> None:
        base = _scratch_base()
        base.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"ov-{os.getpid()}-", dir=base))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def clean_stale_scratch() -> int:
    """Remove what renders of processes that are gone left behind (a killed worker cannot clean up).

    Overlay work folders, and half-written videos in the clip cache (``.tmp-…``); run at start-up.
    Returns how many were removed.
    """
    base = _scratch_base()
    removed = image_cache.remove_dead_temp_files(("clips",))
    for folder in base.glob("ov-*") if base.is_dir() else ():
        owner = folder.name.split("-")[1] if folder.name.count("-") >= 2 else ""
        if owner.isdigit() and image_cache.process_alive(int(owner)):
            continue
        if not owner.isdigit() and time.time() - folder.stat().st_mtime < settings.MOMENTRY_FFMPEG_TIMEOUT:
            continue  # an old-style name: only once no render could still be using it
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _detection_rows(media_file: MediaFile, span: encode.Span, exclude_trace: int | None = None):
    """Every detection in the span with its trace number and identity name (one indexed query)."""
    qs = Detection.objects.filter(
        file=media_file, frame_number__gte=span.start_frame, frame_number__lte=span.end_frame
    )
    if exclude_trace is not None:
        qs = qs.exclude(trace_id=exclude_trace)
    return qs.order_by("frame_number").values_list(*DETECTION_FIELDS).iterator(chunk_size=5000)


def _trace_boxes(media_file: MediaFile, trace: Trace, span: encode.Span) -> list[overlays.Box]:
    """The trace's box on every frame it spans inside ``span``, interpolated between detections."""
    import numpy as np

    rows = list(
        Detection.objects.filter(trace=trace).order_by("frame_number").values_list("frame_number", "x", "y", "width",
                                                                                   "height")
    )
    if not rows:
        return []
    data = np.asarray(rows, dtype=np.int64)
    frames, boxes, real = overlays.interpolate_track(data[:, 0], data[:, 1:], span.start_frame, span.end_frame)
    label = trace.identity.name if trace.identity_id and trace.identity.name else f"trace {trace.trace_id}"
    return [
        overlays.Box(int(f), int(b[0]), int(b[1]), int(b[2]), int(b[3]),
                     overlays.thickness_for(media_file.height, bool(r)), overlays.HIGHLIGHT, label, layer=1)
        for f, b, r in zip(frames, boxes, real, strict=True)
    ]


def _write_overlay(scratch: _Scratch, media_file: MediaFile, span: encode.Span,
                   boxes: Iterable[overlays.Box] | None, panels: list[str] | None) -> Path:
    return overlays.write_ass(
        scratch.path / "overlay.ass",
        media_file.width,
        media_file.height,
        encode.relative_times(frame_index_for(media_file), span),
        boxes or (),
        span.start_frame,
        panels,
    )


def _render_args(media_file: MediaFile, span: encode.Span, overlay: Path | None, *, audio: bool, container: str,
                 output: Path | None = None) -> list[str]:
    return encode.reencode_args(
        media_file.path, frame_index_for(media_file), span, media_file.fps_fraction,
        audio=audio, has_audio=media_file.has_audio, filters=[overlays.ass_filter(overlay)] if overlay else [],
        container=container, output=output,
    )


def _render_stream(
    media_file: MediaFile,
    span: encode.Span,
    boxes: Iterable[overlays.Box] | None,
    panels: list[str] | None,
    *,
    audio: bool,
    container: str,
) -> FFmpegStream:
    if boxes is None and not panels:
        return open_stream(_render_args(media_file, span, None, audio=audio, container=container))
    scratch = _Scratch()
    try:
        overlay = _write_overlay(scratch, media_file, span, boxes, panels)
        args = _render_args(media_file, span, overlay, audio=audio, container=container)
    except BaseException:
        scratch.remove()
        raise
    return open_stream(args, on_close=[scratch.remove])


# --------------------------------------------------------------------------- the streams


def segment_first_frame(media_file: MediaFile, span: encode.Span, options: StreamOptions) -> int:
    """The first frame a segment actually starts at: the keyframe at/before the start, exact in debug."""
    if options.debug:
        return span.start_frame
    return frame_index_for(media_file).keyframe_at_or_before(span.start_frame) or 0


def segment_stream(media_file: MediaFile, span: encode.Span, options: StreamOptions) -> tuple[FFmpegStream, int]:
    """Normal: stream-copied fMP4 from the keyframe at/before the start. Debug: exact re-encode with overlays."""
    index = frame_index_for(media_file)
    if options.debug:
        boxes = overlays.iter_boxes(_detection_rows(media_file, span), media_file.height, thin=True)
        panels = overlays.panel_lines(index, span.start_frame, span.frame_count, "")
        return _render_stream(media_file, span, boxes, panels, audio=options.audio, container="mp4"), span.start_frame
    args, first = encode.segment_args(media_file.path, index, span, media_file.fps_fraction, audio=options.audio)
    return open_stream(args), first


def clip_stream(media_file: MediaFile, span: encode.Span, options: StreamOptions) -> FFmpegStream:
    """Frame-exact MPEG-TS; debug draws the ``CLIP`` panel with the source frame number."""
    panels = None
    if options.debug:
        panels = overlays.panel_lines(frame_index_for(media_file), span.start_frame, span.frame_count, "CLIP  ")
    return _render_stream(media_file, span, None, panels, audio=options.audio, container="mpegts")


def bbox_stream(media_file: MediaFile, span: encode.Span, options: StreamOptions) -> FFmpegStream:
    """Every detection in the span boxed and labelled (identity name or ``trace N``, label, confidence)."""
    boxes = overlays.iter_boxes(_detection_rows(media_file, span), media_file.height)
    panels = None
    if options.debug:
        panels = overlays.panel_lines(frame_index_for(media_file), span.start_frame, span.frame_count, "")
    return _render_stream(media_file, span, boxes, panels, audio=options.audio, container="mp4")


def trace_for(media_file: MediaFile, trace_id: int) -> Trace:
    trace = Trace.objects.select_related("identity").filter(file=media_file, trace_id=trace_id).first()
    if trace is None or trace.start_frame is None or trace.end_frame is None:
        raise not_found("trace", file_uuid=media_file.file_uuid, trace_id=trace_id)
    return trace


def trace_span(media_file: MediaFile, trace: Trace, padding: float) -> encode.Span:
    """The trace's frames widened by ``padding`` seconds each side, clamped to the file."""
    index = frame_index_for(media_file)
    last = len(index) - 1
    start_time = index.seconds_of(min(trace.start_frame, last)) - padding
    end_time = index.seconds_of(min(trace.end_frame, last)) + padding
    start = index.frame_at_seconds(max(0.0, start_time))
    end = index.frame_at_seconds(end_time)
    return encode.Span(min(start, trace.start_frame), max(end, min(trace.end_frame, last)))


def narrow_span(span: encode.Span, asked: encode.Span) -> encode.Span:
    """The part of ``span`` inside ``asked`` (400 when they do not overlap)."""
    start, end = max(span.start_frame, asked.start_frame), min(span.end_frame, asked.end_frame)
    if end < start:
        raise BadRequest(f"The span asked for does not overlap the trace's frames {span.start_frame}-{span.end_frame}.",
                         param="start_frame", trace_span={"start_frame": span.start_frame,
                                                          "end_frame": span.end_frame})
    return encode.Span(start, end)


def parse_padding(params: Any, default: float = 2.0) -> float:
    if params.get("padding") in (None, ""):
        return default
    value = _float_param(params, "padding")
    if value > MAX_PADDING_SECONDS:
        raise BadRequest(f"padding must be at most {MAX_PADDING_SECONDS:g} seconds.", param="padding")
    return value


def _trace_overlay(media_file: MediaFile, trace: Trace, span: encode.Span,
                   options: StreamOptions) -> tuple[Iterable[overlays.Box], list[str] | None]:
    """The trace highlighted (thick on real detections); debug adds other detections thin and a panel."""
    boxes: Iterable[overlays.Box] = _trace_boxes(media_file, trace, span)
    if not options.debug:
        return boxes, None
    others = overlays.iter_boxes(_detection_rows(media_file, span, exclude_trace=trace.pk), media_file.height,
                                 colour=overlays.OTHER, thin=True, with_confidence=False)
    who = trace.identity.name if trace.identity_id else "unbound"
    prefix = f"trace {trace.trace_id} ({who})  "
    panels = overlays.panel_lines(frame_index_for(media_file), span.start_frame, span.frame_count, prefix)
    return heapq.merge(others, boxes, key=lambda box: box.frame), panels


def trace_video_file(media_file: MediaFile, trace: Trace, span: encode.Span, options: StreamOptions) -> Path:
    """The trace's highlight video rendered once into the clip cache; its path (served with ranges).

    The cache name carries a hash of the overlay file, which spells out every box, label and panel
    line, so a changed trace, a renamed person or new detections nearby render a new file.
    """
    boxes, panels = _trace_overlay(media_file, trace, span, options)
    scratch = _Scratch()
    try:
        overlay = _write_overlay(scratch, media_file, span, boxes, panels)
        digest = hashlib.sha256(overlay.read_bytes()).hexdigest()[:24]
        name = (f"trace{trace.trace_id}-{span.start_frame}-{span.end_frame}-a{int(options.audio)}"
                f"d{int(options.debug)}-r{RENDER_VERSION}-{digest}")
        key = image_cache.ImageKey(media_file.file_uuid, name, root="clips", suffix=".mp4")

        def render(output: Path) -> None:
            run_ffmpeg(_render_args(media_file, span, overlay, audio=options.audio, container="mp4", output=output))

        return image_cache.get_or_render_file(key, render)
    finally:
        scratch.remove()


# --------------------------------------------------------------------------- face-following crop clips

CROPS = ("face",)


def parse_crop(params: Any) -> int | None:
    """``crop=face`` with ``size`` (one of ``crop.SIZES``, default ``crop.DEFAULT_SIZE``): the clip's side.

    None without ``crop``; an unknown ``crop``, or a ``size`` outside the set or given without
    ``crop`` is a 400. ``mode`` and ``audio`` do not apply to a crop clip (no overlays, no audio).
    """
    raw_size = params.get("size")
    if params.get("crop") in (None, ""):
        if raw_size not in (None, ""):
            raise BadRequest("size needs crop=face.", param="size")
        return None
    _choice(params, "crop", CROPS, "face")
    if raw_size in (None, ""):
        return crop.DEFAULT_SIZE
    allowed = [str(size) for size in crop.SIZES]
    if raw_size not in allowed:
        raise BadRequest(f"size must be one of: {', '.join(allowed)}.", param="size", allowed=list(crop.SIZES))
    return int(raw_size)


def face_crops(media_file: MediaFile, trace: Trace, span: encode.Span) -> Any:
    """The smoothed square crop on every frame of ``span`` (one query of the trace's detections)."""
    import numpy as np

    rows = Detection.objects.filter(trace=trace).values_list("frame_number", "x", "y", "width", "height")
    data = np.asarray(list(rows), dtype=np.int64).reshape(-1, 5)
    if not len(data):
        raise not_found("trace", file_uuid=media_file.file_uuid, trace_id=trace.trace_id)
    fps = float(media_file.fps_fraction)
    return crop.follow_boxes(data[:, 0], data[:, 1:], span, fps, (media_file.width, media_file.height))


def face_crop_file(media_file: MediaFile, trace: Trace, span: encode.Span, size: int) -> Path:
    """The trace's face-following clip rendered once into the clip cache; its path (served with ranges).

    Keyed by the trace's ``detections_version`` (bumped whenever its detections change), the span,
    the size and ``crop.CROP_VERSION``: a hit costs no query and no decoding.
    """
    name = (f"trace{trace.trace_id}-p{trace.pk}-face{size}-{span.start_frame}-{span.end_frame}"
            f"-v{trace.detections_version}-c{crop.CROP_VERSION}")
    key = image_cache.ImageKey(media_file.file_uuid, name, root="clips", suffix=".mp4")

    def render(output: Path) -> None:
        crops = face_crops(media_file, trace, span)
        crop.render_crop_clip(media_file.path, frame_index_for(media_file), span, crops, size,
                              media_file.fps_fraction, output)

    return image_cache.get_or_render_file(key, render)
