"""Re-embedding existing traces (issue 19 goal: 10 000 traces in at most 5 minutes), measured and extrapolated.

    .venv/bin/python bench/bench_reembed.py [--loops 20] [--height 360 1080]

Data: the Hamilton demo clip looped ``--loops`` times, as is (640x360, its own GOPs of ~46 frames)
and re-encoded at 1920x1080 (libx264, 2-second GOPs, the usual web setting); each copy of the clip
carries the demo's 13 traces (demo/detections, boxes scaled), all marked as dlib's vectors, as in a
database upgraded from Faces v2. Measured in the same run, one process (one core for the work):

* ``reembed_file`` on every trace (what the job does), with its split: decode, align (YuNet), embed (SFace);
* the baseline: decoding every frame of the file once (the least detecting again would cost: the
  face pipeline reads every frame), so the ratio says how much of a re-detection re-embedding costs;
* ``--compare``: also the first Faces v3 re-embed, interleaved with the current one on the same traces
  (each frame converted to RGB whole, and the second pass over a short trace's 2 best faces wherever they
  lie in their GOP instead of its shallowest good one), so the speed-up is a ratio of the same run.

Seconds per trace × 10 000 is the extrapolation; traces per minute of footage are those of the clip
(~1.4 per second), so the number also depends on how dense the footage is (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
OUT.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")
os.environ["MOMENTRY_DATA_DIR"] = os.environ.get("MOMENTRY_DATA_DIR") or tempfile.mkdtemp(prefix="reembed-", dir=OUT)

HAMILTON = ROOT / "demo" / "media" / "face_recognition_short_hamilton_clip.mp4"
DETECTIONS = ROOT / "demo" / "detections" / "face_recognition_short_hamilton_clip.json"
CLIP_FRAMES = 275


def clip(ffmpeg: str, height: int, loops: int) -> Path:
    """The Hamilton clip at ``height`` (360: as is), looped ``loops`` times with stream copy."""
    source = HAMILTON
    if height != 360:
        source = OUT / f"hamilton_{height}p.mp4"
        if not source.exists():
            subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(HAMILTON), "-an",
                            "-vf", f"scale=-2:{height}", "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                            "-keyint_min", "60", str(source)], check=True)
    target = OUT / f"{source.stem}_x{loops}.mp4"
    if not target.exists():
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                        "-i", str(source), "-map", "0:v", "-c", "copy", str(target)], check=True)
    return target


def populate(media_file, loops: int, scale: float) -> int:
    """The demo's traces on every copy of the clip, with dlib-named vectors; returns the trace count."""
    import numpy as np

    from media_api.faces.embeddings import DLIB_MODEL_NAME
    from media_api.models import Trace
    from media_api.services.detections_import import import_detections

    rows = json.loads(DETECTIONS.read_text())["detections"]
    copies = []
    for loop in range(loops):
        for row in rows:
            copies.append({**row, "trace_id": row["trace_id"] + 1000 * loop,
                           "frame_number": row["frame_number"] + CLIP_FRAMES * loop,
                           **{k: int(round(row[k] * scale)) for k in ("x", "y", "width", "height")}})
    import_detections(media_file, copies)
    vector = np.ones(128, dtype="<f4").tobytes()
    return Trace.objects.filter(file=media_file).update(embedding=vector, embedding_model=DLIB_MODEL_NAME)


def decode_all(media_file) -> float:
    from media_api.ffmpeg.frames import FrameReader
    from media_api.services.files import frame_index_for

    clock = time.perf_counter()
    with FrameReader(media_file.path, frame_index_for(media_file)) as reader:
        for _, frame in reader.iter_range(0, media_file.total_frames - 1):
            frame.to_ndarray(format="rgb24")
    return time.perf_counter() - clock


def _first_reembed():
    """The first Faces v3 re-embed: every wanted frame converted to RGB whole, the second pass by quality alone."""
    from media_api.services import reembed

    saved = reembed.face_region, reembed.SECOND_PASS_SHALLOW, reembed.SECOND_PASS_CANDIDATES
    reembed.face_region = lambda frame, box: (frame.to_ndarray(format="rgb24"), box)
    reembed.SECOND_PASS_SHALLOW, reembed.SECOND_PASS_CANDIDATES = False, 2
    return saved


def compare(media_file, rounds: int) -> None:
    """CPU seconds of the first and the current re-embed on the same traces, interleaved (noise hits both)."""
    from media_api.faces.embeddings import DLIB_MODEL_NAME
    from media_api.models import Trace
    from media_api.services import reembed

    cpu = {"first": [], "current": []}
    frames = {}
    for _ in range(rounds):
        for name in ("first", "current"):
            Trace.objects.filter(file=media_file).update(embedding_model=DLIB_MODEL_NAME, exemplars=None)
            saved = _first_reembed() if name == "first" else None
            try:
                result = reembed.reembed_file(media_file)
            finally:
                if saved is not None:
                    reembed.face_region, reembed.SECOND_PASS_SHALLOW, reembed.SECOND_PASS_CANDIDATES = saved
            cpu[name].append(result.cpu_seconds)
            frames[name] = (result.frames_decoded, result.embedded, result.faces_embedded)
    first, current = min(cpu["first"]), min(cpu["current"])
    print(f"  compare ({rounds} rounds, best CPU of each): first re-embed {first:.2f} s CPU "
          f"(frames decoded, traces embedded, faces embedded {frames['first']}), current {current:.2f} s "
          f"{frames['current']}: current / first = {current / first:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--height", type=int, nargs="+", default=[360, 1080])
    parser.add_argument("--compare", type=int, default=0, metavar="ROUNDS",
                        help="also run the first re-embed this many times, interleaved with the current one")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from media_api.faces.embeddings import MODEL_NAME
    from media_api.models import MediaFile, Trace
    from media_api.services.files import register_file
    from media_api.services.reembed import reembed_file

    call_command("migrate", verbosity=0)
    print(f"# re-embedding — {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}")
    for height in args.height:
        path = clip(settings.FFMPEG_BINARY, height, args.loops)
        media_file = register_file(path).file
        Trace.objects.filter(file=media_file).delete()
        traces = populate(media_file, args.loops, height / 360)
        result = reembed_file(media_file)
        assert Trace.objects.filter(file=media_file, embedding_model=MODEL_NAME).count() == result.embedded
        if args.compare:
            compare(media_file, args.compare)
        decode = decode_all(media_file)
        per_trace = result.seconds / traces
        cpu_per_trace = result.cpu_seconds / traces
        print(f"{height}p, {media_file.total_frames} frames ({media_file.duration:.0f} s), {traces} traces: "
              f"re-embed {result.seconds:.1f} s, CPU {result.cpu_seconds:.1f} s ({per_trace * 1000:.0f} ms/trace, CPU "
              f"{cpu_per_trace * 1000:.0f} ms; decode "
              f"{result.timings['decode']:.1f} s for {result.frames_decoded} frames, align "
              f"{result.timings['align']:.1f} s for {result.faces_tried} faces, embed {result.timings['embed']:.1f} s "
              f"for {result.faces_embedded} faces); {result.embedded} embedded, {result.unreadable} unreadable; "
              f"decoding every frame {decode:.1f} s (re-embed / decode-all = {result.seconds / decode:.2f}); "
              f"10 000 traces ≈ {per_trace * 10000 / 60:.1f} min at this run's speed, "
              f"{cpu_per_trace * 10000 / 60:.1f} min of CPU")
        MediaFile.objects.filter(pk=media_file.pk).delete()


if __name__ == "__main__":
    main()
