"""Face analysis in a crowd: recall per face size, precision and speed of the whole pipeline on crowd mosaics.

Why: held-out footage has crowds (a team with its audience: 55 faces under 40 px, 18-26 px faces in
720p), while our labelled material holds at most 11 faces a frame. The crowd is built from that
labelled material: **video mosaics** of the 1080p demo clip (11 people, bench/faces_eval/labels.json),
each frame shrunk with area averaging and tiled 3x3, tile k playing the clip forward and back
(ping-pong, so no tile jumps) from its own time offset, every other tile mirrored — nine different
pictures of the crowd at any moment:

* ``crowd_1080p``: 1920x1080, tiles at 1/3 (640x360): about 63 faces a frame, 9-42 px;
* ``crowd_720p``: 1280x720, tiles at 0.22 (422x238): about 63 faces a frame, 6-28 px (the held-out
  audience's 18-26 px faces; under 16 px a face is not demanded, as in eval_faces).

Each is 208 frames (8.3 s at 25 fps), encoded once with PyAV/x264 (CRF 18) into bench/out (not
committed). The hand labels of a tile are the labels of the frame it shows (``eval_faces.placed_faces``):
a mosaic frame is scored tile by tile, on the tiles showing a labelled frame (about 300 tile-frames,
2 000 faces), a stored box belonging to the tile its centre is in. Scoring is eval_faces'
(IoU >= 0.4, per size band), of every box the traces store (detected on that frame or followed there);
recall is also split into frames the detector sampled and frames between samples (boxes only the
tracker drew).

Speed, in the same run: PyAV decoding every frame (threaded: the floor), then ``analyse_video``
(decode, cuts, detection, tracking, embeddings; three processes); x realtime, pipeline / decode, CPU
seconds of all processes and the effective cores before and after (bench_faces' helpers).

    .venv/bin/python bench/bench_crowd.py [--runs 1] [--clip crowd_1080p]
    .venv/bin/python bench/bench_crowd.py --variant cap=1000 --variant small=1   # A/B, interleaved per run
    .venv/bin/python bench/bench_crowd.py -v                                     # list misses per band
    .venv/bin/python bench/bench_crowd.py --chunks --clip crowd_720p             # chunked analysis = one pass?

``--chunks``: the mosaic re-encoded with a keyframe every 50 frames (bench/out), analysed in one pass and
in chunks of 2 s (``chunks.plan_chunks``/``analyse_chunk``/``stitch``, as a job does); prints how many stored
rows differ (the goal: none).

A variant changes one knob of the pipeline for its runs: ``cap=N`` the Median Flow follower budget, in
a crowd too (``followers.FollowerBudget(limit=N, crowd_limit=N)``), ``crowdcap=N`` the budget in a crowd only
(``followers.CROWD_FOLLOWED``; ``crowdcap=24``: as before it), ``small=N`` the small-face cadence
(``pipeline.SMALL_FACE_EVERY``), ``crowd=N`` the small faces a full search must find to make a crowd
(``pipeline.CROWD_SMALL_FACES``; ``crowd=1000``: never, as before the crowd rule), ``look=0`` no closer look
where a followed face was missed (``pipeline.LOOK_AGAIN``), ``nearmin=``/``nearface=``/``nearinput=`` its
crop (``detector.NEAR_MIN_PX``, ``NEAR_FACE_PX``, ``NEAR_INPUT_PX``), ``opinion=0`` BlazeFace's second
opinion on every sure box, small ones too (``yunet.SECOND_OPINION_MIN_PX``; as before 2026-12-05), ``yunet=opencv``
YuNet run by OpenCV's DNN instead of onnxruntime (``bench_faces.opencv_yunet``; as before 2026-12-05 12:00),
``enlarge=N`` how much a 720p frame is enlarged for its small faces (``yunet.SMALL_FACE_ENLARGE``; 1: not).
Knobs combine with ``+``: ``look=0+opinion=0``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_faces import cpu_seconds, decode_only, effective_cores  # noqa: E402 (sets up the environment)
from bench.eval_faces import BANDS, MEDIA, evaluate, load_labels, placed_faces  # noqa: E402
from bench.media import encode_rgb  # noqa: E402

CLIP = "facenet_pytorch_video"
OUT = ROOT / "bench" / "out"


@dataclass(frozen=True)
class Layout:
    """A crowd mosaic: ``columns`` x ``rows`` tiles of the clip shrunk by ``scale``, centred in ``size``."""

    name: str
    size: tuple[int, int]
    columns: int
    rows: int
    scale: float
    frames: int = 208  # one ping-pong period of the 105-frame clip

    @property
    def tile(self) -> tuple[int, int]:
        labels = load_labels()[CLIP]
        return round(labels["width"] * self.scale), round(labels["height"] * self.scale)

    @property
    def origin(self) -> tuple[int, int]:
        (w, h), (tw, th) = self.size, self.tile
        return (w - self.columns * tw) // 2, (h - self.rows * th) // 2

    @property
    def tiles(self) -> int:
        return self.columns * self.rows

    def offset(self, k: int) -> int:
        return k * self.frames // self.tiles

    def mirrored(self, k: int) -> bool:
        return k % 2 == 1

    def source_frame(self, k: int, t: int, clip_frames: int) -> int:
        """The clip's frame tile ``k`` shows on mosaic frame ``t`` (forward, then back, and again)."""
        period = 2 * (clip_frames - 1)
        p = (t + self.offset(k)) % period
        return p if p < clip_frames else period - p

    def tile_of(self, box) -> int:
        """The tile a box's centre lies in (boxes in the margin go to the nearest tile)."""
        (ox, oy), (tw, th) = self.origin, self.tile
        col = min(self.columns - 1, max(0, int((box[0] + box[2] / 2 - ox) // tw)))
        row = min(self.rows - 1, max(0, int((box[1] + box[3] / 2 - oy) // th)))
        return row * self.columns + col


LAYOUTS = {layout.name: layout for layout in (
    Layout("crowd_1080p", (1920, 1080), 3, 3, 1 / 3),
    Layout("crowd_720p", (1280, 720), 3, 3, 0.22),
)}


def _clip_frames() -> list[np.ndarray]:
    import av

    with av.open(str(MEDIA / f"{CLIP}.mp4")) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def make_video(layout: Layout) -> Path:
    """The mosaic video in bench/out (made on first use: PyAV + x264, CRF 18)."""
    import cv2

    path = OUT / f"{layout.name}_v1.mp4"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    (tw, th), (ox, oy) = layout.tile, layout.origin
    tiles = [cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA) for rgb in _clip_frames()]

    def mosaics():
        for t in range(layout.frames):
            canvas = np.zeros((layout.size[1], layout.size[0], 3), np.uint8)
            for k in range(layout.tiles):
                tile = tiles[layout.source_frame(k, t, len(tiles))]
                x, y = ox + (k % layout.columns) * tw, oy + (k // layout.columns) * th
                canvas[y:y + th, x:x + tw] = tile[:, ::-1] if layout.mirrored(k) else tile
            yield canvas

    return encode_rgb(path, mosaics(), layout.size, 25, {"crf": "18", "preset": "fast"})


def chunk_check(layout: Layout) -> None:
    """Rows of the one-pass analysis and of the chunked one that differ, on the mosaic with keyframes every 2 s."""
    import av

    from media_api.faces.chunks import analyse_chunk, plan_chunks, stitch
    from media_api.faces.pipeline import analyse_video, default_stride
    from media_api.ffmpeg.probe import probe_video

    path = OUT / f"{layout.name}_v1_g50.mp4"
    if not path.exists():
        with av.open(str(make_video(layout))) as source:
            encode_rgb(path, (frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)), layout.size,
                       25, {"crf": "16", "preset": "fast", "g": "50"})
    probe = probe_video(path)
    fps = float(probe.fps)
    plan = plan_chunks(probe.index, 2.0)
    one = analyse_video(path, probe.index, fps)
    chunked = stitch([analyse_chunk(path, probe.index, fps, a, b, default_stride(fps)) for a, b in plan], fps)

    def rows(analysis):
        return {(r["frame_number"], r["x"], r["y"], r["width"], r["height"], r["origin"]) for r in analysis.rows()}

    differ = rows(one) ^ rows(chunked)
    print(f"{layout.name}: chunks {plan}; one pass {len(one.rows())} rows in {len(one.tracks)} traces, chunked "
          f"{len(chunked.rows())} in {len(chunked.tracks)}; rows in one but not both: {len(differ)}, on frames "
          f"{sorted({r[0] for r in differ})}")


def mosaic_labels(layout: Layout) -> dict[str, list[dict]]:
    """{"t:k": faces} for every tile ``k`` of mosaic frame ``t`` that shows a hand-labelled frame."""
    labels = load_labels()[CLIP]
    clip_frames = 105
    (tw, th), (ox, oy) = layout.tile, layout.origin
    out = {}
    for t in range(layout.frames):
        for k in range(layout.tiles):
            number = layout.source_frame(k, t, clip_frames)
            faces = labels["frames"].get(str(number))
            if faces is None:
                continue
            x, y = ox + (k % layout.columns) * tw, oy + (k // layout.columns) * th
            out[f"{t}:{k}"] = placed_faces(faces, layout.scale, x, y, f"tile {k} frame {number}",
                                           mirror_width=tw if layout.mirrored(k) else None)
    return out


def score(layout: Layout, rows: list[dict], labels: dict[str, list[dict]], keys) -> dict:
    """eval_faces' evaluation of the stored boxes on the labelled tiles ``keys``."""
    boxes: dict[str, list] = {}
    for row in rows:
        box = (row["x"], row["y"], row["width"], row["height"])
        boxes.setdefault(f"{row['frame_number']}:{layout.tile_of(box)}", []).append(box)
    return evaluate({"frames": {key: labels[key] for key in keys}}, boxes)


def _variant(spec: str):
    """A context for one run of a variant (the knobs of the module's docstring; ``default``: as configured)."""
    from contextlib import ExitStack
    from unittest import mock

    from media_api.faces import pipeline
    from media_api.faces.followers import FollowerBudget

    stack = ExitStack()
    if spec == "default":
        return stack
    if "+" in spec:  # several knobs at once: cap=12+small=1
        for part in spec.split("+"):
            stack.enter_context(_variant(part))
        return stack
    knob, value = spec.split("=")
    if knob == "cap":
        stack.enter_context(mock.patch.object(pipeline, "FollowerBudget", functools.partial(
            FollowerBudget, limit=int(value), crowd_limit=int(value))))
    elif knob == "crowdcap":
        stack.enter_context(mock.patch.object(pipeline, "FollowerBudget",
                                              functools.partial(FollowerBudget, crowd_limit=int(value))))
    elif knob == "small":
        stack.enter_context(mock.patch.object(pipeline, "SMALL_FACE_EVERY", int(value)))
    elif knob == "crowd":
        stack.enter_context(mock.patch.object(pipeline, "CROWD_SMALL_FACES", int(value)))
    elif knob.startswith("near"):  # nearmin=, nearinput=, nearface=: detector.NEAR_MIN_PX, NEAR_INPUT_PX, NEAR_FACE_PX
        from media_api.faces import detector

        stack.enter_context(mock.patch.object(detector, f"NEAR_{knob[4:].upper()}_PX", int(value)))
    elif knob == "opinion":  # opinion=0: every sure box gets BlazeFace's second opinion, as before 2026-12-05
        from media_api.faces import yunet

        stack.enter_context(mock.patch.object(yunet, "SECOND_OPINION_MIN_PX", int(value)))
    elif knob == "yunet":  # yunet=opencv: YuNet run by OpenCV's DNN, as before 2026-12-05 12:00
        from bench.bench_faces import opencv_yunet

        stack.enter_context(opencv_yunet())
    elif knob == "enlarge":  # enlarge=1: 720p frames searched at their own size (yunet.SMALL_FACE_ENLARGE)
        from media_api.faces import yunet

        stack.enter_context(mock.patch.object(yunet, "SMALL_FACE_ENLARGE", float(value)))
    elif knob == "look":
        stack.enter_context(mock.patch.object(pipeline, "LOOK_AGAIN", bool(int(value))))
    else:
        raise SystemExit(f"unknown variant {spec!r}")
    return stack


def _band_cell(result: dict, band: str) -> str:
    found, n = result["bands"][band]
    return f"{found}/{n} {found / max(1, n):.1%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--clip", choices=sorted(LAYOUTS), action="append", help="default: both")
    parser.add_argument("--variant", action="append", default=[], metavar="KNOB=N",
                        help="also run the pipeline with a knob changed (the docstring lists them), interleaved")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--chunks", action="store_true", help="compare chunked analysis with one pass")
    args = parser.parse_args()

    import django

    django.setup()
    if args.chunks:
        for name in args.clip or LAYOUTS:
            with _variant(args.variant[0] if args.variant else "default"):
                chunk_check(LAYOUTS[name])
        return 0
    from media_api.faces.pipeline import analyse_video
    from media_api.ffmpeg.probe import probe_video

    variants = ["default", *args.variant]
    layouts = [LAYOUTS[name] for name in (args.clip or LAYOUTS)]
    cores_before = effective_cores()
    load_before = os.getloadavg()[0]
    results = []
    for layout in layouts:
        path = make_video(layout)
        probe = probe_video(path)
        fps = float(probe.fps)
        labels = mosaic_labels(layout)
        analyse_video(path, probe.index, fps, end=24)  # warm the page cache and the imports
        decodes, runs = [], {v: [] for v in variants}
        for _ in range(args.runs):  # interleaved, so all see the same machine
            decodes.append(decode_only(path))
            for variant in variants:
                with _variant(variant):
                    cpu, start = cpu_seconds(), time.perf_counter()
                    analysis = analyse_video(path, probe.index, fps)
                    runs[variant].append((time.perf_counter() - start, cpu_seconds() - cpu, analysis))
        results.append((layout, probe, statistics.median(decodes), labels, runs))
    cores_after = effective_cores()
    print(f"machine: {os.cpu_count()} cores (nproc), load {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
          f"effective cores {cores_before:.2f} before / {cores_after:.2f} after, "
          f"date {time.strftime('%Y-%m-%d %H:%M %Z')}, median of {args.runs} run(s)")
    bands = [name for name, _, _ in BANDS]
    print("| clip | variant | pipeline (wall) | × realtime | pipeline / decode | CPU s | traces | faces embedded "
          "| main process: track / wait detector / embed s "
          + "".join(f"| {b} " for b in bands) + "| precision | 16-24 / ≥ 24 px on samples | ... between samples |")
    print("|---" * (12 + len(bands)) + "|")
    for layout, probe, decode, labels, runs in results:
        duration = layout.frames / float(probe.fps)
        stride = None
        for variant, measured in runs.items():
            wall = statistics.median(w for w, _, _ in measured)
            cpu = statistics.median(c for _, c, _ in measured)
            analysis = measured[-1][2]
            stride = analysis.stride
            rows = analysis.rows()
            every = score(layout, rows, labels, labels)
            on = score(layout, rows, labels, [k for k in labels if int(k.split(":")[0]) % stride == 0])
            off = score(layout, rows, labels, [k for k in labels if int(k.split(":")[0]) % stride != 0])
            timing = " / ".join(f"{analysis.timings.get(k, 0):.1f}" for k in ("track", "wait_detector", "embed"))
            split = [f"{r['small'][0]}/{r['small'][1]} · {r['found']}/{r['faces']} {r['recall']:.1%}"
                     for r in (on, off)]
            print(f"| {layout.name} ({layout.size[0]}x{layout.size[1]}, {layout.frames} frames) | {variant} "
                  f"| {wall:.2f} s | **{duration / wall:.2f}×** | {wall / decode:.1f} (decode {decode:.2f} s) "
                  f"| {cpu:.1f} | {len(analysis.tracks)} | {analysis.faces_embedded} | {timing} "
                  + "".join(f"| {_band_cell(every, b)} " for b in bands)
                  + f"| {every['precision']:.1%} ({every['fp']} FP of {every['detections']}) "
                  + f"| {split[0]} | {split[1]} |")
            if args.verbose:
                for frame, box, note in every["misses"]:
                    print(f"    miss {frame} {tuple(round(v) for v in box)} h={box[3]:.0f} {note}")
                for frame, box, _ in every["false_positives"]:
                    print(f"    FP   {frame} {box}")
        faces = sum(len(f) for f in labels.values())
        print(f"  {layout.name}: {len(labels)} labelled tile-frames, {faces} labelled faces; stride {stride}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
