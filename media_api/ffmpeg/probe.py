"""Probe a video and build its frame index by demuxing packets (no decoding)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .index import FrameIndexData


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

    @property
    def total_frames(self) -> int:
        return self.index.total_frames


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


def _scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> FrameIndexData:
    """Every video packet that yields a picture, sorted into presentation order."""
    pts_list: list[int] = []
    key_list: list[bool] = []
    for packet in container.demux(stream):
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
    return FrameIndexData(pts=pts, keyframes=np.flatnonzero(keys).astype(np.int32), time_base=stream.time_base)


def _frame_rate(stream: av.video.stream.VideoStream, index: FrameIndexData) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate).limit_denominator(1_000_000)
    if len(index) > 1:
        span = (int(index.pts[-1]) - int(index.pts[0])) * index.time_base
        if span > 0:
            return Fraction((len(index) - 1) / span).limit_denominator(1001)
    return Fraction(25)


def probe_video(path: str | Path) -> ProbeResult:
    """Codec, size, rate, audio and the frame index of the first video stream."""
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"no such file: {path}")
    if not path.is_file():
        raise ProbeError(f"not a regular file: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise ProbeError(f"not a video file FFmpeg can read: {path} ({exc})") from exc
    with container:
        if not container.streams.video:
            raise ProbeError(f"no video stream in {path}")
        stream = container.streams.video[0]
        codec = stream.codec_context
        if not codec.width or not codec.height:
            raise ProbeError(f"video stream has no picture size: {path}")
        audio = container.streams.audio[0] if container.streams.audio else None
        try:
            index = _scan_packets(container, stream)
        except av.FFmpegError as exc:
            raise ProbeError(f"cannot read video packets of {path}: {exc}") from exc
        fps = _frame_rate(stream, index)
        return ProbeResult(
            container=_container_name(container, path),
            video_codec=codec.name,
            width=codec.width,
            height=codec.height,
            fps=fps,
            duration=round(index.duration_seconds(fps), 6),
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else "",
            stream_index=stream.index,
            index=index,
        )
