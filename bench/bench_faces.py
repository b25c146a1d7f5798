"""Face analysis speed on the two demo clips (goal: faster than realtime on the 360p clip, default stride).

    .venv/bin/python bench/bench_faces.py [--runs 2]

Uses a throw-away SQLite database in bench/out/. For each clip it times, in the same run:
- the baseline: decoding every frame with PyAV (the floor for any pipeline that reads the video);
- ``detect_faces`` (decode, scene cuts, detection, embedding, tracking, database write) at the
  default stride, and the same with every detected face embedded (what skipping embeddings saves);
- the two model costs on their own: HOG per analysed frame, ResNet embedding per face.
Frames per second are decoded frames divided by wall time; "× realtime" is video duration / wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")
(ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
os.environ.setdefault("MOMENTRY_DATA_DIR", tempfile.mkdtemp(prefix="faces-", dir=ROOT / "bench" / "out"))
os.environ.pop("DATABASE_URL", None)

CLIPS = ("face_recognition_short_hamilton_clip.mp4", "facenet_pytorch_video.mp4")


def _decode_only(path: Path) -> float:
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    return time.perf_counter() - start


def _model_costs(path: Path, stride: int) -> tuple[float, float, int]:
    """(ms of HOG per analysed frame, ms of embedding per face, faces) over the sampled frames."""
    import av

    from media_api.faces.detector import FaceDetector, work_size
    from media_api.faces.embeddings import FaceEmbedder

    detector, embedder = FaceDetector(), FaceEmbedder()
    hog = emb = 0.0
    frames = faces_total = 0
    with av.open(str(path)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number % stride:
                continue
            w, h, scale, upsample = work_size(frame.width, frame.height)
            rgb = frame.to_ndarray(format="rgb24")
            work = rgb if scale == 1.0 else frame.to_ndarray(format="rgb24", width=w, height=h)
            t0 = time.perf_counter()
            faces = detector.detect(work, w / frame.width, upsample, frame.width, frame.height)
            t1 = time.perf_counter()
            embedder.embed(rgb, faces)
            t2 = time.perf_counter()
            hog += t1 - t0
            emb += t2 - t1
            frames += 1
            faces_total += len(faces)
    return hog / frames * 1000, (emb / faces_total * 1000) if faces_total else 0.0, faces_total


def _timed_detect(media_file, runs: int):
    from media_api.faces.pipeline import detect_faces

    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = detect_faces(media_file, replace=True, progress=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    from media_api.faces import tracker
    from media_api.services.files import register_file

    call_command("migrate", verbosity=0)
    rows = []
    for name in CLIPS:
        path = ROOT / "demo" / "media" / name
        media_file = register_file(path).file
        decode = statistics.median(_decode_only(path) for _ in range(args.runs))
        seconds, result = _timed_detect(media_file, args.runs)
        saved = tracker.SURE_IOU
        tracker.SURE_IOU = 2.0  # no face joins on overlap alone: every face is embedded
        try:
            seconds_all, _ = _timed_detect(media_file, 1)
        finally:
            tracker.SURE_IOU = saved
        hog_ms, emb_ms, faces = _model_costs(path, result.stride)
        rows.append((media_file, decode, seconds, seconds_all, result, hog_ms, emb_ms, faces))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (nproc), date {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"median of {args.runs} run(s)")
    print("| clip | decode only (baseline) | detect_faces, default stride | × realtime | ratio to decode | "
          "every face embedded | analysed frames | detections | traces | HOG / frame | embedding / face |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for media_file, decode, seconds, seconds_all, result, hog_ms, emb_ms, _ in rows:
        frames = media_file.total_frames
        print(f"| {media_file.name} ({media_file.width}x{media_file.height}, {media_file.fps:g} fps, {frames} frames) "
              f"| {frames / decode:.0f} fps | {seconds:.2f} s = {frames / seconds:.1f} fps (stride {result.stride}) "
              f"| {media_file.duration / seconds:.2f}× | {seconds / decode:.1f}× | {seconds_all:.2f} s "
              f"| {result.frames_sampled} | {result.detections} | {result.traces} | {hog_ms:.0f} ms "
              f"| {emb_ms:.0f} ms |")


if __name__ == "__main__":
    main()
