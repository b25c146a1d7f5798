"""Scratch media for the benchmarks (bench/out/, git-ignored)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
HAMILTON = ROOT / "demo" / "media" / "face_recognition_short_hamilton_clip.mp4"


def make_long_video(ffmpeg: str, minutes: float) -> Path:
    """The Hamilton clip looped with stream copy to about ``minutes`` (video only)."""
    loops = max(1, round(minutes * 60 / 9.18))
    target = OUT / f"hamilton_x{loops}.mp4"
    if not target.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                        "-i", str(HAMILTON), "-map", "0:v", "-c", "copy", str(target)], check=True)
    return target
