"""Scratch media for the benchmarks (bench/out/, git-ignored)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
HAMILTON = ROOT / "demo" / "media" / "face_recognition_short_hamilton_clip.mp4"
FACENET = ROOT / "demo" / "media" / "facenet_pytorch_video.mp4"


def make_long_video(ffmpeg: str, minutes: float, source: Path = HAMILTON, seconds: float = 9.18) -> Path:
    """A demo clip (``seconds`` long; default the Hamilton clip) looped with stream copy to about ``minutes``
    (video only)."""
    loops = max(1, round(minutes * 60 / seconds))
    target = OUT / (f"hamilton_x{loops}.mp4" if source == HAMILTON else f"{source.stem}_x{loops}.mp4")
    if not target.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                        "-i", str(source), "-map", "0:v", "-c", "copy", str(target)], check=True)
    return target


def encode_rgb(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], rate: int | Fraction,
               options: dict[str, str]) -> Path:
    """RGB frames (``size`` = width, height) encoded with PyAV/x264 to ``path``, written as .part and renamed."""
    import av

    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as out:
        encoder = out.add_stream("libx264", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = *size, "yuv420p"
        encoder.options = options
        for rgb in frames:
            for packet in encoder.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in encoder.encode():
            out.mux(packet)
    partial.rename(path)
    return path
