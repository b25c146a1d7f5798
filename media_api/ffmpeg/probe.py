"""Probe a video and build its frame index by demuxing packets (no decoding).

The same pass notices a file that ends before its container says it does (a download or
copy cut off: a faststart MP4 cut in half still opens and plays its first half): the
packets actually present are compared with the frame count and duration the container
declares, and :attr:`ProbeResult.warnings` says what is missing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .index import FrameIndexData
from .source import SCAN_REQUEST_SIZE, display_name, is_object, is_url, open_input


class ProbeError(Exception):
    """The path is not a readable video."""


@dataclass(frozen=True)
class ProbeResult:
    container: str
    video_codec: str
    width: int
    height: int
    fps: Fraction
    duration: float
    has_audio: bool
    audio_codec: str
    stream_index: int
    index: FrameIndexData
    #: Human-readable problems with the file (empty for a whole file), e.g. a cut-off end.
    warnings: tuple[str, ...] = ()

    @property
    def total_frames(self) -> int:
        return self.index.total_frames

    @property
    def truncated(self) -> bool:
        return bool(self.warnings)


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _container_name(container: av.container.InputContainer, path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    names = container.format.name.split(",")
    return suffix if suffix in names or suffix in {"mp4", "m4v", "mov", "mkv", "webm"} else names[0]


@dataclass
class _Extent:
    """How much the demuxer actually found: video packets and the end of the last packet of any stream."""

    video_packets: int = 0
    end_seconds: float = 0.0

    def add(self, packet: av.Packet) -> None:
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.time_base is None:
            return
        end = float((ts + max(packet.duration or 0, 0)) * packet.time_base)
        self.end_seconds = max(self.end_seconds, end)


def _scan_packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[FrameIndexData, _Extent]:
    """Every video packet that yields a picture, sorted into presentation order; and how far all streams reach.

    All streams are demuxed (not only the video) so that a file whose video legitimately stops
    before its audio is not taken for a cut-off one.
    """
    pts_list: list[int] = []
    key_list: list[bool] = []
    extent = _Extent()
    for packet in container.demux():
        extent.add(packet)
        if packet.stream_index != stream.index or (packet.size == 0 and packet.dts is None):
            continue  # another stream, or the empty packet that ends the demux
        extent.video_packets += 1
        if packet.size == 0 or packet.is_discard or packet.is_corrupt:
            continue
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            raise ProbeError("video packets carry no timestamps; remux the file (e.g. to MP4 or MKV) first")
        pts_list.append(ts)
        key_list.append(bool(packet.is_keyframe))
    if not pts_list:
        raise ProbeError("the video stream has no frames")
    pts = np.asarray(pts_list, dtype=np.int64)
    keys = np.asarray(key_list, dtype=bool)
    order = np.argsort(pts, kind="stable")
    pts, keys = pts[order], keys[order]
    index = FrameIndexData(pts=pts, keyframes=np.flatnonzero(keys).astype(np.int32), time_base=stream.time_base)
    return index, extent


#: A file whose streams end this much (or two frames, if longer) before the declared duration is cut off.
MISSING_SECONDS_TOLERANCE = 0.5


def truncation_warnings(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, index: FrameIndexData,
    extent: _Extent, fps: Fraction,
) -> tuple[str, ...]:
    """What the container declares and the data lacks: frames (MP4, MOV, AVI count their samples) or time.

    MPEG-TS declares nothing (FFmpeg estimates its duration from the data), so a cut TS looks whole;
    so does a cut AVI (its frame count counts dropped frames too, so it is not trusted without time).
    """
    declared_end = None
    if container.duration is not None and container.duration > 0:
        # Matroska's duration counts from timestamp 0, MP4's from the first packet: take the earlier end.
        declared_end = min(container.duration, max(container.start_time or 0, 0) + container.duration) / av.time_base
    missing = declared_end - extent.end_seconds if declared_end is not None else 0.0
    frame_seconds = float(1 / fps)
    ends = f" (the data ends at {extent.end_seconds:.3f}s of {declared_end:.3f}s)" if declared_end else ""
    declared_frames = stream.frames or 0
    if declared_frames and extent.video_packets < declared_frames and missing >= frame_seconds / 2:
        return (f"truncated: {index.total_frames} of the {declared_frames} frames the container declares are "
                f"in the file{ends}",)
    if missing > max(MISSING_SECONDS_TOLERANCE, 2 * frame_seconds):
        return (f"truncated: the file ends {missing:.3f}s before the duration its container declares{ends}",)
    return ()


def _frame_rate(stream: av.video.stream.VideoStream, index: FrameIndexData) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate).limit_denominator(1_000_000)
    if len(index) > 1:
        span = (int(index.pts[-1]) - int(index.pts[0])) * index.time_base
        if span > 0:
            return Fraction((len(index) - 1) / span).limit_denominator(1001)
    return Fraction(25)


def probe_video(path: str | Path, name: str | None = None) -> ProbeResult:
    """Codec, size, rate, audio and the frame index of the first video stream.

    ``path`` is a local path or ``s3://bucket/key`` (the packet scan then reads the object once through
    a presigned URL); ``name`` (the object's file name) names the container for an object.
    """
    if not (is_url(path) or is_object(path)):
        path = Path(path)
        if not path.exists():
            raise ProbeError(f"no such file: {path}")
        if not path.is_file():
            raise ProbeError(f"not a regular file: {path}")
    label = display_name(path)
    try:
        container = open_input(path, SCAN_REQUEST_SIZE)  # the scan below reads every packet, in order
    except (av.FFmpegError, OSError) as exc:
        raise ProbeError(f"not a video file FFmpeg can read: {name or label} ({display_name(str(exc))})") from exc
    with container:
        if not container.streams.video:
            raise ProbeError(f"no video stream in {name or label}")
        stream = container.streams.video[0]
        codec = stream.codec_context
        if not codec.width or not codec.height:
            raise ProbeError(f"video stream has no picture size: {name or label}")
        audio = container.streams.audio[0] if container.streams.audio else None
        try:
            index, extent = _scan_packets(container, stream)
        except av.FFmpegError as exc:
            raise ProbeError(f"cannot read video packets of {name or label}: {display_name(str(exc))}") from exc
        fps = _frame_rate(stream, index)
        return ProbeResult(
            container=_container_name(container, Path(name) if name else Path(str(path))),
            video_codec=codec.name,
            width=codec.width,
            height=codec.height,
            fps=fps,
            duration=round(index.duration_seconds(fps), 6),
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else "",
            stream_index=stream.index,
            index=index,
            warnings=truncation_warnings(container, stream, index, extent, fps),
        )
