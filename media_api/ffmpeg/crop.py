"""Face-following crop clips: a trace's box, smoothed and squared, cut out of every frame and encoded small.

A cast tile is 88 px; the full 1920x1080 frame shrunk to it makes a face a speck. A crop clip
follows the trace instead:

1. **The box on every frame** — the trace's detections, linearly interpolated between them
   (as the highlight video draws it), over the trace's own frames.
2. **Smoothed** — a centred moving average of ``SMOOTH_SECONDS`` (an odd number of frames, the
   first and last values repeated at the edges) over the box's centre and size, so the crop
   glides instead of jittering with the detector. Outside the trace's frames (padding) the first
   or last smoothed box is held.
3. **Square with margin** — side ``MARGIN`` × the box's larger side, no larger than the frame;
   then moved (never shrunk) to lie inside the frame; corner and side even, so the chroma planes
   of 4:2:0 video are cut on the same pixels.

Frames are decoded with :class:`~media_api.ffmpeg.frames.FrameReader` (exact, by pts), cut
in numpy on the YUV 4:2:0 planes (no conversion of the full frame), scaled with OpenCV's area
filter and piped as raw video into ffmpeg, which encodes H.264 in fragmented MP4 with a global
``sidx`` at the file's frame rate: one output frame per source frame. The whole job holds one
slot of the media job pool; ffmpeg runs under :mod:`~media_api.ffmpeg.process`'s rules
(argument list, timeout kill, stderr logged, never a shell).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from django.conf import settings

from momentry.errors import MediaError

from .encode import SEEKABLE_FMP4_ARGS, X264_ARGS, Span
from .frames import FrameReader, FrameReadError, api_error
from .index import FrameIndexData
from .process import _log_failure, _read_tail, ffmpeg_command, media_job_slot, raise_if_client_gone

logger = logging.getLogger("media_api.ffmpeg")

#: Output sizes a client may ask for (square, pixels): small tiles to a large card.
SIZES = (96, 128, 192, 256)
DEFAULT_SIZE = 128
#: Side of the square crop as a multiple of the face box's larger side (head and a little around).
MARGIN = 1.6
#: Length of the centred moving average over the box's centre and size.
SMOOTH_SECONDS = 0.5
#: Bump when the crop rule or the encoding changes the output for the same trace (cache keys carry it).
CROP_VERSION = 1
_YUV_FORMATS = ("yuv420p", "yuvj420p")


def smoothing_window(fps: float) -> int:
    """Frames in the moving average: ``SMOOTH_SECONDS`` at ``fps``, odd so it is centred, at least 1."""
    frames = max(1, round(float(fps) * SMOOTH_SECONDS))
    return frames if frames % 2 else frames + 1


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average, the edge values repeated (so the ends are not pulled toward zero)."""
    if window <= 1 or len(values) == 0:
        return values.astype(np.float64)
    half = window // 2
    padded = np.pad(values.astype(np.float64), half, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def follow_boxes(
    det_frames: np.ndarray,
    det_boxes: np.ndarray,
    span: Span,
    fps: float,
    frame_size: tuple[int, int],
) -> np.ndarray:
    """The square crop ``(x, y, side)`` on every frame of ``span`` (an ``(n, 3)`` int array).

    ``det_frames`` are the trace's detection frames, ``det_boxes`` their ``(x, y, w, h)`` rows
    (one query; a trace is at most a few thousand frames, so numpy does it all at once).
    """
    width, height = frame_size
    frames, first = np.unique(np.asarray(det_frames, dtype=np.int64), return_index=True)
    boxes = np.asarray(det_boxes, dtype=np.float64)[first]
    trace_frames = np.arange(frames[0], frames[-1] + 1)
    x, y, w, h = (np.interp(trace_frames, frames, boxes[:, k]) for k in range(4))
    window = smoothing_window(fps)
    centre_x = _moving_average(x + w / 2, window)
    centre_y = _moving_average(y + h / 2, window)
    size = _moving_average(np.maximum(w, h) * MARGIN, window)
    wanted = np.arange(span.start_frame, span.end_frame + 1)
    # np.interp holds the first/last value outside the trace's frames (padding).
    centre_x, centre_y, size = (np.interp(wanted, trace_frames, v) for v in (centre_x, centre_y, size))
    side = np.clip(np.rint(size), 2, min(width, height)).astype(np.int64)
    side -= side % 2
    left = np.clip(np.rint(centre_x - side / 2), 0, width - side).astype(np.int64)
    top = np.clip(np.rint(centre_y - side / 2), 0, height - side).astype(np.int64)
    return np.stack([left - left % 2, top - top % 2, side], axis=1)


def _plane(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    """A view of one picture plane without its line padding (no copy)."""
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def crop_yuv420(frame: av.VideoFrame, x: int, y: int, side: int, size: int) -> bytes:
    """The square ``side`` at ``(x, y)`` of ``frame`` scaled to ``size``², as raw yuv420p bytes."""
    if frame.format.name not in _YUV_FORMATS:
        frame = frame.reformat(format="yuv420p")
    w, h = frame.width, frame.height
    out = bytearray()
    for index, (scale, out_size) in enumerate(((1, size), (2, size // 2), (2, size // 2))):
        plane = _plane(frame, index, -(-w // scale), -(-h // scale))
        part = plane[y // scale:(y + side) // scale, x // scale:(x + side) // scale]
        out += cv2.resize(part, (out_size, out_size), interpolation=cv2.INTER_AREA).tobytes()
    return bytes(out)


def crop_clip_args(size: int, fps: Fraction, output: str | Path) -> list[str]:
    """ffmpeg reading raw ``size``² yuv420p frames on stdin at ``fps``, writing seekable fragmented MP4."""
    gop = max(1, round(float(fps) * 2))
    return [
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{size}x{size}", "-framerate", str(fps), "-i", "pipe:0",
        "-map", "0:v:0", *X264_ARGS, "-g", str(gop), "-an", *SEEKABLE_FMP4_ARGS, "-y", str(output),
    ]


def encode_from_pipe(args: list[str], chunks: Iterable[bytes], *, timeout: float | None = None) -> None:
    """Run ffmpeg with ``chunks`` written to its stdin, to completion (the caller holds a pool slot).

    The process rules of :mod:`~media_api.ffmpeg.process`: killed after ``timeout`` (default
    ``MOMENTRY_FFMPEG_TIMEOUT``) seconds, stderr in a temporary file logged with the command on
    failure, killed and reaped whatever happens (a decode error, a client gone), and a
    :class:`~momentry.errors.MediaError` for the caller.
    """
    cmd = ffmpeg_command(args)
    limit = float(settings.MOMENTRY_FFMPEG_TIMEOUT if timeout is None else timeout)
    raise_if_client_gone()
    with tempfile.TemporaryFile() as err:
        logger.debug("ffmpeg start: %s", " ".join(cmd))
        try:
            process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        except OSError as exc:
            _log_failure(cmd, None, str(exc), "could not start")
            raise MediaError() from None
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(limit, kill)
        timer.daemon = True
        timer.start()
        try:
            try:
                for chunk in chunks:
                    process.stdin.write(chunk)
                process.stdin.close()
            except (BrokenPipeError, OSError):
                pass  # ffmpeg died (or was killed): its exit status says why
            except FrameReadError as exc:
                process.kill()
                _log_failure(cmd, None, str(exc), "input could not be decoded")
                raise api_error(exc) from None
            returncode = process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            with contextlib.suppress(OSError):
                process.stdin.close()
        if returncode != 0 or timed_out.is_set():
            reason = f"timed out after {limit:g}s" if timed_out.is_set() else "failed"
            _log_failure(cmd, returncode, _read_tail(err), reason)
            raise MediaError("Media processing timed out." if timed_out.is_set() else None)


def _cropped_frames(reader: FrameReader, span: Span, crops: np.ndarray, size: int) -> Iterator[bytes]:
    for (_, frame), (x, y, side) in zip(reader.iter_range(span.start_frame, span.end_frame), crops, strict=True):
        yield crop_yuv420(frame, int(x), int(y), int(side), size)


def render_crop_clip(
    path: str | Path,
    index: FrameIndexData,
    span: Span,
    crops: np.ndarray,
    size: int,
    fps: Fraction,
    output: str | Path,
) -> None:
    """Write the crop clip of ``span`` (one ``crops`` row per frame) to ``output``, holding one pool slot."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    if len(crops) != span.frame_count:
        raise ValueError("one crop per frame of the span")
    with media_job_slot():
        try:
            reader = FrameReader(path, index)
        except FrameReadError as exc:
            logger.error("crop clip: %s", exc)
            raise api_error(exc) from None
        with reader:
            encode_from_pipe(crop_clip_args(size, fps, output), _cropped_frames(reader, span, crops, size))


__all__ = [
    "CROP_VERSION", "DEFAULT_SIZE", "MARGIN", "SIZES", "SMOOTH_SECONDS", "crop_clip_args", "crop_yuv420",
    "encode_from_pipe", "follow_boxes", "render_crop_clip", "smoothing_window",
]
