"""Face analysis: speed (goal ≥ 1× realtime at 1080p, ≥ 2× at 720p, ≥ 3× at 360p, on 2 cores), quality, distances.

    .venv/bin/python bench/bench_faces.py [--runs 3]          # speed + recall/precision: 360p, 720p, 1080p
    .venv/bin/python bench/bench_faces.py --detectors         # ms per frame: YuNet (the detector) vs BlazeFace
    .venv/bin/python bench/bench_faces.py --distances         # same-person vs different-person distances
    .venv/bin/python bench/bench_faces.py --small-face-every 1  # ... and, interleaved, small faces on every sample
    .venv/bin/python bench/bench_faces.py --detector-processes 1  # ... and, interleaved, one detector process
    .venv/bin/python bench/bench_faces.py --before HEAD~3     # ... and, interleaved, pipeline.py of that commit
    .venv/bin/python bench/bench_faces.py --yunet-opencv      # ... and, interleaved, YuNet run by OpenCV's DNN
    .venv/bin/python bench/bench_faces.py --sface-opencv      # ... and, interleaved, SFace run by OpenCV's DNN

The 720p clip is the 1080p demo clip scaled to 1280x720 (written once to bench/out with PyAV, x264
CRF 18): the demo has no 720p footage. Its recall and precision are scored on the 1080p clip's labels
scaled by 2/3.

For each clip, in the same run: the baseline (PyAV decoding every frame, threaded: the floor for
anything that reads the video), the whole pipeline (``analyse_video``: decode, cuts, detection on
samples, tracking on every frame, embeddings — three processes) and ``detect_faces`` (the same plus
the database write, SQLite). Wall seconds are medians; CPU seconds add this process and its worker
processes. "effective cores" is measured too: two busy processes against one, because the machine is
shared and what it lends varies from minute to minute. Recall/precision: bench/eval_faces.py's
evaluation of the stored boxes on the hand-labelled frames.

``--distances`` prints the distance between the trace embeddings of every pair of demo traces whose
person is known (bench/faces_eval/people.json), split into same-person and different-person pairs:
where the suggestion and clustering thresholds come from.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import resource
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

CLIPS = ("face_recognition_short_hamilton_clip", "facenet_pytorch_video")
SPEED_CLIPS = ("face_recognition_short_hamilton_clip", "facenet_pytorch_video_720p", "facenet_pytorch_video")
PEOPLE = json.loads((ROOT / "bench" / "faces_eval" / "people.json").read_text())["clips"]


def _spin(n: int = 15_000_000) -> None:
    x = 0
    for i in range(n):
        x += i


def effective_cores() -> float:
    """How many cores two busy processes get right now (2.0 on an idle 2-core machine)."""
    start = time.perf_counter()
    _spin()
    one = time.perf_counter() - start
    procs = [multiprocessing.get_context("fork").Process(target=_spin) for _ in range(2)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return 2 * one / (time.perf_counter() - start)


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def clip_path(stem: str) -> Path:
    """A demo clip, or (``<stem>_720p``) that clip scaled to 1280x720 in bench/out, made on first use."""
    if not stem.endswith("_720p"):
        return ROOT / "demo" / "media" / f"{stem}.mp4"
    path = ROOT / "bench" / "out" / f"{stem}.mp4"
    if not path.exists():
        import av

        from bench.media import encode_rgb

        source = ROOT / "demo" / "media" / f"{stem.removesuffix('_720p')}.mp4"
        with av.open(str(source)) as inp:
            stream = inp.streams.video[0]
            frames = (frame.to_ndarray(format="rgb24", width=1280, height=720) for frame in inp.decode(stream))
            encode_rgb(path, frames, (1280, 720), stream.average_rate, {"crf": "18", "preset": "medium"})
    return path


def detectors(runs: int) -> None:
    """Milliseconds per frame of YuNet (as the pipeline runs it) and of BlazeFace on the same frames, interleaved.

    "threads" is BlazeFace's interpreter threads (and the verifier's); OpenCV uses its default (all cores).
    """
    import av

    from media_api.faces.blazeface import BlazeFaceDetector
    from media_api.faces.yunet import YuNetDetector

    print(f"load {os.getloadavg()[0]:.2f}, effective cores {effective_cores():.2f}, "
          f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; median ms per frame over 10 frames x {runs} runs")
    print("| frame | threads | YuNet + quarter-size pass + verification | the same without small faces "
          "| BlazeFace (Faces v2) |")
    print("|---|---|---|---|---|")
    for stem in SPEED_CLIPS:
        with av.open(str(clip_path(stem))) as container:
            frames = [frame.to_ndarray(format="rgb24")
                      for number, frame in enumerate(container.decode(video=0)) if number % 6 == 0 and number < 60]
        for threads in (1, 2):
            ours, theirs = YuNetDetector(threads=threads), BlazeFaceDetector(threads=threads)
            ours.detect(frames[0]), theirs.detect(frames[0])
            times: dict[str, list[float]] = {"ours": [], "reduced": [], "theirs": []}
            for _ in range(runs):
                for rgb in frames:
                    for name, detect, small in (("ours", ours.detect, True), ("reduced", ours.detect, False),
                                                ("theirs", theirs.detect, None)):
                        start = time.perf_counter()
                        detect(rgb) if small is None else detect(rgb, small)
                        times[name].append((time.perf_counter() - start) * 1000)
            h, w = frames[0].shape[:2]
            print(f"| {w}x{h} | {threads} | {statistics.median(times['ours']):.1f} "
                  f"| {statistics.median(times['reduced']):.1f} | {statistics.median(times['theirs']):.1f} |")


def decode_only(path: Path) -> float:
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    return time.perf_counter() - start


def pipeline_at(revision: str):
    """``media_api/faces/pipeline.py`` as it was at a git revision, loaded as a module of its own (it
    imports today's detector, tracker and workers): the "before" of an A/B in one run."""
    import importlib.util
    import subprocess

    source = subprocess.run(["git", "show", f"{revision}:media_api/faces/pipeline.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = ROOT / "bench" / "out" / f"pipeline_{revision.replace('/', '_')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"pipeline_{abs(hash(revision))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the worker processes find its functions by name (fork: no import)
    spec.loader.exec_module(module)
    return module


def speed(runs: int, small_face_every: int | None = None, detector_processes: int | None = None,
          before: str | None = None, yunet_opencv: bool = False, sface_opencv: bool = False) -> None:
    """The speed table; with ``small_face_every``, ``detector_processes``, ``before``, ``yunet_opencv`` or
    ``sface_opencv`` (:func:`opencv_sface`; vectors then compared to 1e-5, not bit for bit), also
    the pipeline searching small faces on every that many-th sample (``pipeline.SMALL_FACE_EVERY``), with
    that many detector processes (``analyse_video(detector_processes=)``), as it was at git revision
    ``before`` or with YuNet run by OpenCV (:func:`opencv_yunet`), interleaved in the same runs (which of the
    two goes first alternates run by run), and whether its output is the default's."""
    import django

    django.setup()
    from django.core.management import call_command

    from bench.eval_faces import evaluate, labels_at_height, load_labels
    from media_api.faces import pipeline
    from media_api.faces.pipeline import analyse_video
    from media_api.services.faces import detect_faces
    from media_api.services.files import frame_index_for, register_file

    call_command("migrate", verbosity=0)
    labels = load_labels()
    cores_before = effective_cores()
    rows = []
    default = pipeline.SMALL_FACE_EVERY
    comparing = (small_face_every is not None or detector_processes is not None or before is not None
                 or yunet_opencv or sface_opencv)
    theirs_module = pipeline_at(before) if before is not None else pipeline
    other: dict[str, list[tuple[float, float, dict]]] = {}
    same_output: dict[str, bool] = {}

    def variant(path, index, fps):
        if small_face_every is not None:
            theirs_module.SMALL_FACE_EVERY = small_face_every
        try:
            with (opencv_yunet() if yunet_opencv else contextlib.nullcontext(),
                  opencv_sface() if sface_opencv else contextlib.nullcontext()):
                if detector_processes is not None:
                    return theirs_module.analyse_video(path, index, fps, detector_processes=detector_processes)
                return theirs_module.analyse_video(path, index, fps)
        finally:
            theirs_module.SMALL_FACE_EVERY = default

    for stem in SPEED_CLIPS:
        path = clip_path(stem)
        media_file = register_file(path).file
        index = frame_index_for(media_file)
        analyse_video(path, index, media_file.fps)  # warm the page cache and the imports
        decodes, walls, cpus = [], [], []
        for run in range(runs):  # interleaved, so all see the same machine
            decodes.append(decode_only(path))
            for which in ((0, 1) if run % 2 == 0 else (1, 0)) if comparing else (0,):
                cpu, start = cpu_seconds(), time.perf_counter()
                result = (analyse_video(path, index, media_file.fps) if which == 0
                          else variant(path, index, media_file.fps))
                wall, used = time.perf_counter() - start, cpu_seconds() - cpu
                if which == 0:
                    analysis = result
                    walls.append(wall)
                    cpus.append(used)
                else:
                    theirs = result
                    other.setdefault(media_file.name, []).append((wall, used, result.timings))
            if comparing:
                same = (analysis.rows() == theirs.rows()
                        and _same_vectors(analysis.trace_embeddings(), theirs.trace_embeddings(),
                                          1e-5 if sface_opencv else 0.0))
                same_output[media_file.name] = same_output.get(media_file.name, True) and same
        start = time.perf_counter()
        stored = detect_faces(media_file, replace=True)
        with_db = time.perf_counter() - start
        boxes: dict[int, list] = {}
        for row in analysis.rows():
            boxes.setdefault(row["frame_number"], []).append((row["x"], row["y"], row["width"], row["height"]))
        source, quality = stem.removesuffix("_720p"), None  # a _720p clip: the source's labels, scaled
        if source in labels:
            quality = evaluate(labels[stem] if source == stem else labels_at_height(labels[source], 720), boxes)
        rows.append((media_file, statistics.median(decodes), statistics.median(walls), statistics.median(cpus),
                     with_db, stored, analysis, quality))
    cores_after = effective_cores()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (nproc), load {os.getloadavg()[0]:.2f}, "
          f"effective cores {cores_before:.2f} before / {cores_after:.2f} after, "
          f"date {time.strftime('%Y-%m-%d %H:%M %Z')}, median of {runs} run(s)")
    print("| clip | duration | decode only | pipeline (wall) | × realtime | pipeline / decode | CPU s (all processes) "
          "| detect_faces incl. DB | samples | traces | boxes (tracked) | recall | precision |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for media_file, decode, wall, cpu, with_db, stored, analysis, quality in rows:
        duration = media_file.total_frames / media_file.fps
        clip = f"{media_file.name} ({media_file.width}x{media_file.height}, {media_file.fps:g} fps)"
        print(f"| {clip} | {duration:.2f} s | {decode:.2f} s | {wall:.2f} s | **{duration / wall:.2f}×** "
              f"| {wall / decode:.1f} | {cpu:.2f} | {with_db:.2f} s "
              f"| {analysis.frames_sampled}/{analysis.frames_decoded} | {stored.traces} "
              f"| {stored.detections} ({stored.tracked}) | {_share(quality, 'recall')} "
              f"| {_share(quality, 'precision')} |")
    for media_file, *_, analysis, _ in rows:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in analysis.timings.items())
        print(f"  {media_file.name}: main-process time by step: {parts}; {analysis.faces_embedded} faces embedded")
    if comparing:
        what = []
        if small_face_every is not None:
            what.append(f"small faces searched on every {small_face_every}. sample (default: every {default}.)")
        if detector_processes is not None:
            what.append(f"{detector_processes} detector process(es) (default: {pipeline.DETECTOR_PROCESSES} "
                        "at 720p and more, else 1)")
        if before is not None:
            what.append(f"pipeline.py as of {before}")
        if yunet_opencv:
            what.append("YuNet run by OpenCV's DNN (cv2.FaceDetectorYN, as before 2026-12-05 12:00)")
        if sface_opencv:
            what.append("SFace run by OpenCV's DNN (cv2.FaceRecognizerSF, as before 2026-12-05 14:00)")
        print(f"\n{', '.join(what)}, same runs:")
        print("| clip | decode only | pipeline (wall) | × realtime | pipeline / decode | CPU s (all processes) "
              "| same traces and vectors as the default |")
        print("|---|---|---|---|---|---|---|")
        for media_file, decode, *_ in rows:
            wall = statistics.median(w for w, _, _ in other[media_file.name])
            cpu = statistics.median(c for _, c, _ in other[media_file.name])
            duration = media_file.total_frames / media_file.fps
            print(f"| {media_file.name} | {decode:.2f} s | {wall:.2f} s | **{duration / wall:.2f}×** "
                  f"| {wall / decode:.1f} | {cpu:.2f} | {'yes' if same_output[media_file.name] else 'NO'} |")
        for media_file, *_ in rows:
            timings = other[media_file.name][-1][2]
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
            print(f"  {media_file.name}: main-process time by step (last run): {parts}")


@contextlib.contextmanager
def opencv_yunet():
    """YuNet run by OpenCV's ``cv2.FaceDetectorYN`` (one per input size, as before 2026-12-05 12:00) instead of
    onnxruntime, in this process and in the worker processes it forks meanwhile: the A/B of ``zoo.YuNet``."""
    from functools import lru_cache
    from unittest import mock

    from media_api.faces import zoo

    @lru_cache(maxsize=16)
    def factory(width, height, score_threshold=zoo.YUNET_SCORE_THRESHOLD, *_):
        return zoo.opencv_yunet(width, height, score_threshold)

    with mock.patch.object(zoo, "yunet", factory):
        yield


@contextlib.contextmanager
def opencv_sface():
    """SFace run by OpenCV's ``cv2.FaceRecognizerSF`` (as before 2026-12-05 14:00) instead of OpenVINO, in this
    process and in the worker processes it forks meanwhile: the A/B of ``zoo.sface_features``."""
    from unittest import mock

    from media_api.faces import zoo

    def features(aligned):
        return zoo.opencv_sface().feature(aligned).reshape(-1)

    with mock.patch.object(zoo, "sface_features", features), mock.patch.object(zoo, "load_sface", zoo.opencv_sface):
        yield


def _same_vectors(a: dict, b: dict, atol: float = 0.0) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)


def _share(quality: dict | None, key: str) -> str:
    return "(no labels)" if quality is None else f"{quality[key]:.1%}"


def distances() -> None:
    import numpy as np

    from bench.eval_faces import person_of
    from media_api.faces.pipeline import analyse_video
    from media_api.ffmpeg.probe import probe_video

    vectors = []
    for stem in CLIPS:
        path = ROOT / "demo" / "media" / f"{stem}.mp4"
        probe = probe_video(path)
        analysis = analyse_video(path, probe.index, float(probe.fps))
        for number, track in enumerate(analysis.tracks, start=1):
            vector, who = track.mean_embedding(), person_of(track, PEOPLE[stem])
            status = "embedding" if vector is not None else "no embedding"
            print(f"{stem[:12]} trace {number:2d} {track.start:3d}-{track.end:3d} {status:12s} {who}")
            if vector is not None and who is not None:
                vectors.append((f"{stem[:8]}#{number}", who, vector))
    same, diff = [], []
    for (a, who_a, va), (b, who_b, vb) in itertools.combinations(vectors, 2):
        distance = float(np.linalg.norm(va - vb))
        (same if who_a == who_b else diff).append((distance, a, b, who_a, who_b))
    print(f"\nsame person ({len(same)} pairs):")
    for d, a, b, who, _ in sorted(same):
        print(f"  {d:.3f}  {a} {b}  {who}")
    values = sorted(d for d, *_ in diff)
    q = np.quantile(values, [0.05, 0.5, 0.95]) if values else [float("nan")] * 3
    print(f"different people ({len(diff)} pairs): min {values[0]:.3f}, 5% {q[0]:.3f}, median {q[1]:.3f}, "
          f"95% {q[2]:.3f}, max {values[-1]:.3f}; nearest:")
    for d, a, b, who_a, who_b in sorted(diff)[:5]:
        print(f"  {d:.3f}  {a} {b}  {who_a} / {who_b}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--distances", action="store_true")
    parser.add_argument("--detectors", action="store_true")
    parser.add_argument("--small-face-every", type=int, metavar="N",
                        help="also time the pipeline searching small faces on every N-th sample, interleaved")
    parser.add_argument("--detector-processes", type=int, metavar="N",
                        help="also time the pipeline with N detector processes, interleaved")
    parser.add_argument("--yunet-opencv", action="store_true",
                        help="also time the pipeline with YuNet run by OpenCV's DNN (not onnxruntime), interleaved")
    parser.add_argument("--sface-opencv", action="store_true",
                        help="also time the pipeline with SFace run by OpenCV's DNN (not OpenVINO), interleaved")
    parser.add_argument("--before", metavar="REV",
                        help="also time media_api/faces/pipeline.py as of git revision REV, interleaved")
    args = parser.parse_args()
    if args.distances:
        distances()
    elif args.detectors:
        detectors(args.runs)
    else:
        speed(args.runs, args.small_face_every, args.detector_processes, args.before, args.yunet_opencv,
              args.sface_opencv)


if __name__ == "__main__":
    main()
