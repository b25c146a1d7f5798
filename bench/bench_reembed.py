"""Re-embedding existing traces (issue 19 goal: 10 000 traces in at most 5 minutes), measured and extrapolated.

    .venv/bin/python bench/bench_reembed.py [--loops 20] [--data hamilton360 hamilton1080 facenet1080]
                                            [--compare 2] [--before 575b5be] [--before-decodes all] [--wall 3]

Data (each clip looped ``--loops`` times with stream copy; every copy carries the demo's traces from
demo/detections, all marked as dlib's vectors, as in a database upgraded from Faces v2):

* ``hamilton360``: the Hamilton clip as is (640x360, no B-frames, its own keyframes at cuts), 13 traces a
  copy, 5 of which the pipeline embeds;
* ``hamilton1080``: the same re-encoded at 1920x1080 (libx264 veryfast, 2-second GOPs, B-frames), boxes
  scaled (the pipeline's vectors are of the 360p clip: distances to them are indicative);
* ``facenet1080``: facenet_pytorch_video as is (1920x1080, one 4.2-second GOP, B-frames), 11 traces a
  copy, 8 of which the pipeline embeds: real 1080p, dense, mostly readable — the footage that costs most
  per trace (an embedding is ~30 ms; a short trace deep in a long GOP costs decoding).

Measured in one process (one core for the work; CPU time counts every thread: FFmpeg's frame threads
too): ``reembed_file`` on every trace (what the job does: reading the traces, choosing, decoding,
aligning, embedding, writing the vectors in one transaction), with its CPU split (decode, align with
YuNet, embed with SFace, the rest: queries, writes, choosing). ``--compare``: the re-embed as of
``--before`` (its reembed.py from git, with the FFmpeg layer decoding every picture as it did then),
interleaved with the current one on the same traces, best CPU of each: the speed-up is a ratio of the
same run (``--before-decodes current``: the before on today's FFmpeg layer, for a before after 761dae9).
Quality of both: of the traces the pipeline embedded, how many are embedded again and how far
their new vector lies from the pipeline's (they must stay within the confident distance). Also measured
once: decoding every frame of the file (the least a re-detection costs), and loading the models in a
fresh process (a worker pays it once, not per job).

``--wall``: WALL time of the current re-embed with its reading process (two lanes decoding and aligning batches of
GOPs, this process embedding, as a job runs it; before 2026-12-05 14:00 an embedding process ran SFace while this
one read) and with one lane (``workers=False``) with OpenCV's own thread count (as a fresh worker process would)
and with one OpenCV thread (as one that ran a face analysis before),
interleaved round by round on the same traces, medians; the stored vectors of all three must be the same bytes.
The machine is shared: the effective cores (two busy processes against one, bench_faces.effective_cores) are
measured between rounds, and the medians given again for the quiet rounds (>= 1.8 cores before and after).

Extrapolation: CPU seconds per trace x 10 000, on two cores with one job per file on each (CPU / 2); and, for
10 000 traces in ONE file (one job, one queue worker process), wall seconds per trace x 10 000 (``--wall``).
It leaves out what is not per trace: a worker's start (printed: once per worker process), a job's claim
and its file's opening (milliseconds). With SQLite the writes are in this process's CPU ("rest"); with
PostgreSQL the server's share of them (one UPDATE a trace, in one transaction) is not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
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
FACENET = ROOT / "demo" / "media" / "facenet_pytorch_video.mp4"
FACENET_DETECTIONS = ROOT / "demo" / "detections" / "facenet_pytorch_video.json"
FACENET_FRAMES = 105
#: The re-embed before the speed work of 2026-12-05 03:00 (two decoding passes, 3 faces a trace, every picture
#: of a GOP decoded up to the deepest wanted one).
BEFORE = "575b5be"


def loop(ffmpeg: str, source: Path, loops: int) -> Path:
    """``source`` looped ``loops`` times with stream copy (its own GOPs repeated)."""
    target = OUT / f"{source.stem}_x{loops}.mp4"
    if not target.exists():
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(loops - 1),
                        "-i", str(source), "-map", "0:v", "-c", "copy", str(target)], check=True)
    return target


def clip(ffmpeg: str, height: int, loops: int) -> Path:
    """The Hamilton clip at ``height`` (360: as is), looped ``loops`` times with stream copy."""
    source = HAMILTON
    if height != 360:
        source = OUT / f"hamilton_{height}p.mp4"
        if not source.exists():
            subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(HAMILTON), "-an",
                            "-vf", f"scale=-2:{height}", "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                            "-keyint_min", "60", str(source)], check=True)
    return loop(ffmpeg, source, loops)


def populate(media_file, loops: int, scale: float, detections: Path = DETECTIONS, frames: int = CLIP_FRAMES) -> int:
    """The demo's traces on every copy of the clip, with dlib-named vectors; returns the trace count.

    Copy ``k`` of trace ``t`` is trace ``t + 1000 k``."""
    import numpy as np

    from media_api.faces.embeddings import DLIB_MODEL_NAME
    from media_api.models import Trace
    from media_api.services.detections_import import import_detections

    rows = json.loads(detections.read_text())["detections"]
    copies = []
    for copy in range(loops):
        for row in rows:
            copies.append({**row, "trace_id": row["trace_id"] + 1000 * copy,
                           "frame_number": row["frame_number"] + frames * copy,
                           **{k: int(round(row[k] * scale)) for k in ("x", "y", "width", "height")}})
    import_detections(media_file, copies)
    vector = np.ones(128, dtype="<f4").tobytes()
    return Trace.objects.filter(file=media_file).update(embedding=vector, embedding_model=DLIB_MODEL_NAME)


def dataset(name: str, ffmpeg: str, loops: int) -> tuple[Path, Path, float, int]:
    """(looped file, detections, box scale, frames a copy) of a ``--data`` name."""
    if name == "facenet1080":
        return loop(ffmpeg, FACENET, loops), FACENET_DETECTIONS, 1.0, FACENET_FRAMES
    height = int(name.removeprefix("hamilton").removesuffix("p"))
    return clip(ffmpeg, height, loops), DETECTIONS, height / 360, CLIP_FRAMES


def before_module(revision: str):
    """media_api/services/reembed.py as of ``revision`` (from git), or None when the history is not there."""
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:media_api/services/reembed.py"],
                           capture_output=True, text=True)
    if shown.returncode:
        return None
    module = types.ModuleType("reembed_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(shown.stdout, f"reembed.py@{revision}", "exec"), module.__dict__)
    return module


def run(module, media_file, old_decoding: bool, **options):
    """One re-embed of every trace (all reset to dlib's first); the FFmpeg layer decoding every picture if asked."""
    from media_api.faces.embeddings import DLIB_MODEL_NAME
    from media_api.ffmpeg.frames import FrameReader
    from media_api.models import Trace

    Trace.objects.filter(file=media_file).update(embedding_model=DLIB_MODEL_NAME, exemplars=None)
    pictures = FrameReader._pictures
    if old_decoding:
        FrameReader._pictures = lambda self, pts_wanted: self._container.decode(self._stream)
    try:
        return module.reembed_file(media_file, **options)
    finally:
        FrameReader._pictures = pictures


def quality(media_file, detections: Path) -> str:
    """Of the traces the pipeline embedded: how many got a vector, and its distance to the pipeline's."""
    import numpy as np

    from identities.suggestions import CONFIDENT_DISTANCE
    from media_api.faces.embeddings import MODEL_NAME, from_bytes
    from media_api.models import Trace

    vectors = json.loads(detections.read_text())["trace_embeddings"]
    pipeline = {int(k): np.asarray(v, np.float32) for k, v in vectors.items()}
    current = {t: from_bytes(e) for t, e in Trace.objects.filter(file=media_file, embedding_model=MODEL_NAME)
               .values_list("trace_id", "embedding")}
    wanted = [t for t in Trace.objects.filter(file=media_file).values_list("trace_id", flat=True)
              if t % 1000 in pipeline]
    distances = np.array([float(np.linalg.norm(current[t] - pipeline[t % 1000])) for t in wanted if t in current])
    if not len(distances):
        return f"0 of {len(wanted)} pipeline-embedded traces embedded"
    return (f"{len(distances)} of {len(wanted)} pipeline-embedded traces embedded, distance to the pipeline's vector "
            f"median {np.median(distances):.3f} max {distances.max():.3f} (confident < {CONFIDENT_DISTANCE:.3f}: "
            f"{int((distances < CONFIDENT_DISTANCE).sum())})")


def describe(label: str, result, traces: int, cpu_split: bool = True) -> str:
    timings = result.timings
    rest = result.cpu_seconds - sum(timings.values())
    unit = "s" if cpu_split else "s wall"  # the re-embed at 575b5be measured its split in wall time
    return (f"  {label}: CPU {result.cpu_seconds:.2f} s = {result.cpu_seconds / traces * 1000:.1f} ms/trace "
            f"(decode {timings['decode']:.2f} {unit} for {result.frames_decoded} pictures, align "
            f"{timings['align']:.2f} {unit} for {result.faces_tried} faces, embed {timings['embed']:.2f} {unit} for "
            f"{result.faces_embedded} faces{f', rest {rest:.2f} s' if cpu_split else ''}); wall "
            f"{result.seconds:.1f} s; {result.embedded} embedded, {result.unreadable} "
            f"without a readable face; 10 000 traces: {result.cpu_seconds / traces * 10000 / 60:.1f} min of CPU, "
            f"{result.cpu_seconds / traces * 10000 / 120:.1f} min on two cores")


def stored_vectors(media_file) -> dict[int, tuple[bytes, bytes]]:
    from media_api.faces.embeddings import MODEL_NAME
    from media_api.models import Trace

    return {pk: (bytes(vector), bytes(kept)) for pk, vector, kept in Trace.objects.filter(
        file=media_file, embedding_model=MODEL_NAME).values_list("pk", "embedding", "exemplars")}


#: --wall's variants: two lanes (the reading process); one lane with OpenCV's own threads (OpenCV's resizing and
#: warps spread over the cores by themselves, FFmpeg's frame threads too); one lane on one OpenCV thread (a
#: worker process that ran a face analysis before, which sets one).
VARIANTS = ("process", "inline", "inline-1")
#: A round counts as quiet when the machine lent at least this many cores before and after it.
QUIET_CORES = 1.8


def wall_comparison(module, media_file, traces: int, rounds: int, opencv_threads: int) -> list[str]:
    """Wall time of one job's re-embed with its reading process and with one lane (:data:`VARIANTS`), interleaved (the
    order rotating each round), with the effective cores measured between rounds; medians of all rounds and of
    the quiet ones."""
    import cv2

    from bench.bench_faces import effective_cores

    cores = [effective_cores()]
    walls: dict[str, list[float]] = {label: [] for label in VARIANTS}
    cpus: dict[str, list[float]] = {label: [] for label in VARIANTS}
    vectors: dict[str, dict] = {}
    processes = set()
    for number in range(rounds):
        for label in VARIANTS[number % 3:] + VARIANTS[:number % 3]:
            if label == "inline":
                cv2.setNumThreads(opencv_threads)
            elif label == "inline-1":
                cv2.setNumThreads(1)
            result = run(module, media_file, False, workers=label == "process")
            walls[label].append(result.seconds)
            cpus[label].append(result.cpu_seconds)
            if label == "process":
                processes.add(result.reading_processes)
            stored = stored_vectors(media_file)
            if vectors.setdefault(label, stored) != stored:
                raise SystemExit(f"{label}: the vectors differ from one run to the next")
        cores.append(effective_cores())
    quiet = [n for n in range(rounds) if min(cores[n], cores[n + 1]) >= QUIET_CORES]
    same = "the same bytes" if all(v == vectors["process"] for v in vectors.values()) else "DIFFERENT"
    lines = [f"  effective cores between rounds: {' '.join(f'{c:.2f}' for c in cores)}; reading processes "
             f"{sorted(processes)}; vectors of the three {same}"]
    for name, chosen in (("all", list(range(rounds))), ("quiet", quiet)):
        if not chosen:
            lines.append(f"  {name} rounds: none")
            continue
        wall = {label: statistics.median(walls[label][n] for n in chosen) for label in VARIANTS}
        cpu = {label: statistics.median(cpus[label][n] for n in chosen) for label in VARIANTS}
        ratios = [walls["inline"][n] / walls["process"][n] for n in chosen]
        lines.append(f"  {name} rounds ({len(chosen)}), median wall (CPU): " + ", ".join(
            f"{label} {wall[label]:.2f} s ({cpu[label]:.2f} s)" for label in VARIANTS)
            + f"; inline / process {wall['inline'] / wall['process']:.2f} (rounds: "
            f"{' '.join(f'{r:.2f}' for r in ratios)}), inline-1 / process {wall['inline-1'] / wall['process']:.2f}")
        lines.append("    10 000 traces in one job (wall / trace x 10 000): " + ", ".join(
            f"{label} {wall[label] / traces * 10000 / 60:.1f} min" for label in VARIANTS)
            + f"; jobs on two files (CPU / 2): {cpu['process'] / traces * 10000 / 120:.1f} min")
    return lines


def model_load_cpu() -> float:
    """CPU seconds of a fresh process: Django set up, SFace and YuNet loaded (sha256 checked), as a worker starts."""
    code = ("import time, django; django.setup(); from media_api.faces import zoo; zoo.load_sface();"
            " zoo.yunet(224, 224, 0.5); print(time.process_time())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--data", nargs="+", default=["hamilton360", "hamilton1080", "facenet1080"],
                        choices=["hamilton360", "hamilton1080", "facenet1080"])
    parser.add_argument("--compare", type=int, default=2, metavar="ROUNDS",
                        help="rounds of the --before re-embed interleaved with the current one (0: current once)")
    parser.add_argument("--before", default=BEFORE, help="git revision of the re-embed to compare with")
    parser.add_argument("--before-decodes", choices=["all", "current"], default="all",
                        help="the before's FFmpeg layer: decoding every picture (as at 575b5be) or the current one")
    parser.add_argument("--no-decode-all", action="store_true", help="skip the decode-every-frame baseline")
    parser.add_argument("--wall", type=int, default=3, metavar="ROUNDS",
                        help="rounds of the current re-embed with its reading process and with one lane, interleaved, "
                             "for wall time (0: none)")
    args = parser.parse_args()

    import cv2
    import django

    opencv_threads = cv2.getNumThreads()  # before a re-embed with its reading process sets one
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from media_api.ffmpeg.frames import FrameReader
    from media_api.models import MediaFile, Trace
    from media_api.services import reembed
    from media_api.services.files import frame_index_for, register_file

    call_command("migrate", verbosity=0)
    load = os.getloadavg()
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"# re-embedding — {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {engine}, "
          f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"fresh process with the models loaded: {model_load_cpu():.2f} s CPU (once per worker process)")
    before = before_module(args.before) if args.compare else None
    if args.compare and before is None:
        print(f"(no git history for {args.before}: the comparison is skipped)")
    for name in args.data:
        path, detections, scale, frames = dataset(name, settings.FFMPEG_BINARY, args.loops)
        media_file = register_file(path).file
        Trace.objects.filter(file=media_file).delete()
        traces = populate(media_file, args.loops, scale, detections, frames)
        print(f"{name}: {media_file.total_frames} frames ({media_file.duration:.0f} s, "
              f"{len(frame_index_for(media_file).keyframes)} keyframes), {traces} traces")
        run(reembed, media_file, False)  # warm: models loaded, the index cached
        best: dict[str, tuple[float, object, str]] = {}
        for _ in range(max(1, args.compare)):
            for label, module in (("before", before), ("current", reembed)):
                if module is None:
                    continue
                result = run(module, media_file, old_decoding=module is before and args.before_decodes == "all")
                if label not in best or result.cpu_seconds < best[label][0]:
                    best[label] = (result.cpu_seconds, result, quality(media_file, detections))
        for label, (_, result, check) in best.items():
            print(describe(label, result, traces, cpu_split=label == "current" or args.before != BEFORE))
            print(f"    {check}")
        if "before" in best:
            print(f"  current / before, CPU: {best['current'][0] / best['before'][0]:.2f}")
        if args.wall:
            print("\n".join(wall_comparison(reembed, media_file, traces, args.wall, opencv_threads)))
        if not args.no_decode_all:
            clock = time.process_time()
            with FrameReader(media_file.path, frame_index_for(media_file)) as reader:
                for _, frame in reader.iter_range(0, media_file.total_frames - 1):
                    frame.to_ndarray(format="rgb24")
            decode = time.process_time() - clock
            print(f"  decoding every frame: {decode:.1f} s CPU "
                  f"(current re-embed / that = {best['current'][0] / decode:.2f})")
        MediaFile.objects.filter(pk=media_file.pk).delete()


if __name__ == "__main__":
    main()
