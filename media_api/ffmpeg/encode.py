"""FFmpeg argument lists for segments, clips and overlay videos (the process layer runs them).

Timing rules, all taken from the file's frame index rather than ``frame / fps`` so they
hold for 29.97 fps, odd first timestamps and variable frame rate:

* Seeks use ``-seek_timestamp 1`` so ``-ss`` is an absolute stream time (the frame's own
  pts), not an offset from the container's start time (the Hamilton clip's audio starts
  0.8 s before its video, which would otherwise shift every seek).
* A re-encode seeks to *half a frame before* the start frame's pts. FFmpeg decodes from the
  keyframe before it and drops every frame earlier than the seek point, so the first frame
  out is exactly the start frame; ``-frames:v`` then gives exactly the requested count
  (``-fps_mode passthrough``: no frame is duplicated or dropped to fit a nominal rate).
* A stream copy cannot start between keyframes, so a segment starts at the keyframe at or
  before the requested frame and seeks to that keyframe's exact time.
* Filters see ``setpts=PTS-STARTPTS`` time: the start frame is at t=0 and frame k is at
  ``(pts[k] - pts[start]) * time_base``, which is what the overlay file is written against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from media_api.ffmpeg.index import FrameIndexData
from media_api.ffmpeg.source import input_args

# Fragmented MP4 that can be written to a pipe and played while it arrives.
FMP4_ARGS = ["-movflags", "frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "1000000", "-f", "mp4"]
# The same written to a file: plus one index of every fragment at the start (needs a seekable output).
SEEKABLE_FMP4_ARGS = ["-movflags", "frag_keyframe+empty_moov+default_base_moof+global_sidx",
                      "-frag_duration", "1000000", "-f", "mp4"]
X264_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
AAC_ARGS = ["-c:a", "aac", "-b:a", "128k"]


@dataclass(frozen=True)
class Span:
    """An inclusive range of frame numbers."""

    start_frame: int
    end_frame: int

    @property
    def frame_count(self) -> int:
        return self.end_frame - self.start_frame + 1


def _seconds(value: Fraction | float) -> str:
    """A time for the command line, rounded to the microsecond FFmpeg parses."""
    return f"{float(value):.6f}"


def frame_time(index: FrameIndexData, frame: int) -> Fraction:
    """Absolute presentation time of ``frame`` in the stream (pts × time_base)."""
    return index.pts_of(frame) * index.time_base


def frame_duration(index: FrameIndexData, frame: int, fps: Fraction) -> Fraction:
    """How long ``frame`` is on screen (the next frame's pts difference; 1/fps for the last)."""
    if frame + 1 < len(index):
        return (index.pts_of(frame + 1) - index.pts_of(frame)) * index.time_base
    if frame > 0:
        return (index.pts_of(frame) - index.pts_of(frame - 1)) * index.time_base
    return 1 / fps


def span_duration(index: FrameIndexData, span: Span, fps: Fraction) -> Fraction:
    """From the start frame's pts to the end of the end frame."""
    return (frame_time(index, span.end_frame) - frame_time(index, span.start_frame)) + frame_duration(
        index, span.end_frame, fps
    )


def relative_times(index: FrameIndexData, span: Span) -> list[Fraction]:
    """Filter-graph time (after ``setpts=PTS-STARTPTS``) of every frame of ``span``."""
    base = index.pts_of(span.start_frame)
    tb = index.time_base
    return [(int(p) - base) * tb for p in index.pts[span.start_frame : span.end_frame + 1]]


def exact_seek_args(path: str | Path, index: FrameIndexData, start_frame: int, fps: Fraction) -> list[str]:
    """Input arguments whose first decoded frame is exactly ``start_frame``.

    Also used for frame 0: seeking to the first frame's own time makes the output clock
    start there, so ``-t`` measures from the first picture even when the file's video starts
    late (the Hamilton clip's first pts is 0.852 s).
    """
    previous = start_frame - 1 if start_frame > 0 else start_frame
    seek = frame_time(index, start_frame) - frame_duration(index, previous, fps) / 2
    if seek <= 0:
        return input_args(path)
    return ["-seek_timestamp", "1", "-ss", _seconds(seek), *input_args(path)]


def _audio_args(audio: bool, has_audio: bool) -> list[str]:
    if audio and has_audio:
        return ["-map", "0:a:0?", *AAC_ARGS]
    return ["-an"]


def segment_args(
    path: str | Path, index: FrameIndexData, span: Span, fps: Fraction, *, audio: bool
) -> tuple[list[str], int]:
    """Stream-copied fragmented MP4 covering ``span``; returns (args, first frame actually sent).

    The start snaps back to the keyframe at or before ``span.start_frame`` (copying cannot
    start elsewhere); the end is cut by duration after ``span.end_frame``.
    """
    keyframe = index.keyframe_at_or_before(span.start_frame) or 0
    duration = span_duration(index, Span(keyframe, span.end_frame), fps)
    args: list[str] = []
    # Round *up* to the microsecond so the backward seek cannot land on the previous keyframe;
    # seeking even to frame 0 puts the output clock's zero on the first picture (see above).
    seek = math.ceil(frame_time(index, keyframe) * 1_000_000) / 1_000_000
    if seek > 0:
        args += ["-seek_timestamp", "1", "-ss", f"{seek:.6f}"]
    args += [*input_args(path), "-map", "0:v:0", "-c:v", "copy"]
    args += ["-map", "0:a:0?", "-c:a", "copy"] if audio else ["-an"]
    args += ["-t", _seconds(duration), "-avoid_negative_ts", "make_zero", *FMP4_ARGS, "pipe:1"]
    return args, keyframe


def reencode_args(
    path: str | Path,
    index: FrameIndexData,
    span: Span,
    fps: Fraction,
    *,
    audio: bool,
    has_audio: bool,
    filters: list[str] | None = None,
    container: str = "mp4",
    output: str | Path | None = None,
) -> list[str]:
    """Frame-exact H.264 (+AAC) re-encode of ``span`` as fragmented MP4 or MPEG-TS.

    ``filters`` run after ``setpts=PTS-STARTPTS`` (so their time 0 is the start frame). Written to
    stdout, or to the file ``output`` (overwritten); an MP4 file also gets a global ``sidx`` index
    at its start, so a player fetching it with ranges can seek anywhere at once.
    """
    chain = ["setpts=PTS-STARTPTS", *(filters or [])]
    gop = max(1, round(float(fps) * 2))
    args = exact_seek_args(path, index, span.start_frame, fps)
    args += ["-map", "0:v:0", "-vf", ",".join(chain), "-fps_mode", "passthrough"]
    args += ["-frames:v", str(span.frame_count), *X264_ARGS, "-g", str(gop)]
    args += _audio_args(audio, has_audio)
    # Audio stops with the video (the frame count alone would let the audio run on).
    args += ["-t", _seconds(span_duration(index, span, fps))]
    if container == "mpegts":
        args += ["-f", "mpegts"]
    elif output is None:
        args += FMP4_ARGS
    else:
        args += [*SEEKABLE_FMP4_ARGS]
    return [*args, "pipe:1"] if output is None else [*args, "-y", str(output)]


def clip_args(
    path: str | Path,
    index: FrameIndexData,
    span: Span,
    fps: Fraction,
    *,
    audio: bool,
    has_audio: bool,
    filters: list[str] | None = None,
) -> list[str]:
    """The frame-exact MPEG-TS clip: first frame = ``span.start_frame``, exactly ``frame_count`` frames."""
    return reencode_args(
        path, index, span, fps, audio=audio, has_audio=has_audio, filters=filters, container="mpegts"
    )


__all__ = [
    "FMP4_ARGS",
    "Span",
    "clip_args",
    "exact_seek_args",
    "frame_duration",
    "frame_time",
    "reencode_args",
    "relative_times",
    "segment_args",
    "span_duration",
]
