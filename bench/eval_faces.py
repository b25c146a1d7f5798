"""Face detection recall and precision on the hand-labelled frames of the two demo clips.

Why: the goal for face detection is recall >= 90 % of faces at least 24 px tall and precision >= 95 %,
measured on labels we made by hand (bench/faces_eval/labels.json, how they were made: README.md there).

    .venv/bin/python bench/eval_faces.py [-v]                     # BlazeFace (media_api.faces.blazeface)
    .venv/bin/python bench/eval_faces.py --detector hog [--upsample 0|1] [-v]   # dlib HOG, the former detector
    .venv/bin/python bench/eval_faces.py --detections traces.json --clip facenet_pytorch_video [-v]
    .venv/bin/python bench/eval_faces.py --detector pipeline [-v]   # the whole pipeline: what traces store

``--detector pipeline`` runs ``media_api.faces.pipeline.analyse_video`` on each clip and scores every
box its traces hold on the labelled frames — detected on that frame or followed there by the tracker —
which is what the product stores and shows; its line also says how many of the hits were tracked.

``--detections`` takes the import format ({"detections": [{"frame_number", "x", "y", "width", "height",
...}]}); only the labelled frames are scored. Matching, per frame: detections and labelled faces are
paired greedily by decreasing IoU, a pair counts when IoU >= 0.4 (loose on purpose: detectors draw square
boxes, the labels run from hairline to chin). Faces marked ``ignore`` or under 24 px tall are not
demanded; an unpaired detection with IoU >= 0.4 with such a face, or lying mostly (>= 50 % of its area)
inside it, is neither a hit nor a false positive. Every other unpaired detection is a false positive.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "bench" / "faces_eval" / "labels.json"
MEDIA = ROOT / "demo" / "media"
IOU_MATCH = 0.4
MIN_FACE_PX = 24
INSIDE_IGNORED = 0.5

Box = tuple[float, float, float, float]  # x, y, width, height in frame pixels


def load_labels(path: Path = LABELS) -> dict[str, dict]:
    """The labelled clips: {clip name: {"width", "height", "frames": {"N": [face, ...]}}}."""
    return json.loads(path.read_text())["clips"]


def person_of(track, persons: Mapping[str, list]) -> str | None:
    """Who a track is, by people.json: the first person with a point inside the track's box on that frame."""
    for name, points in persons.items():
        for frame, x, y in points:
            if frame in track.frames:
                bx, by, bw, bh = track.boxes[track.frames.index(frame)]
                if bx <= x < bx + bw and by <= y < by + bh:
                    return name
    return None


def iou(a: Box, b: Box) -> float:
    inter = _intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _intersection(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def demanded(face: Mapping) -> bool:
    """Whether a labelled face must be found (not ignored, at least MIN_FACE_PX tall)."""
    return not face["ignore"] and face["h"] >= MIN_FACE_PX


def _match_frame(faces: Sequence[Mapping], boxes: Sequence[Box]) -> tuple[set[int], set[int], list[int]]:
    """(indices of found faces, indices of matched detections, indices of false-positive detections)."""
    wanted = [i for i, f in enumerate(faces) if demanded(f)]
    rects = {i: (f["x"], f["y"], f["w"], f["h"]) for i, f in enumerate(faces)}
    pairs = sorted(((iou(rects[i], box), i, j) for i in wanted for j, box in enumerate(boxes)), reverse=True)
    found: set[int] = set()
    used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < IOU_MATCH:
            break
        if i not in found and j not in used:
            found.add(i)
            used.add(j)
    ignored = [rects[i] for i, f in enumerate(faces) if not demanded(f)]
    false_pos = []
    for j, box in enumerate(boxes):
        if j in used:
            continue
        area = box[2] * box[3]
        if any(iou(r, box) >= IOU_MATCH or _intersection(r, box) >= INSIDE_IGNORED * area for r in ignored):
            continue
        false_pos.append(j)
    return found, used, false_pos


def evaluate(labels_for_clip: Mapping, detections_by_frame: Mapping[int, Iterable[Box]]) -> dict:
    """Score detections ({frame number: [(x, y, w, h), ...]}) against one clip's labels.

    Only labelled frames count. Returns counts, recall/precision, per-group recall and the lists of
    misses and false positives as (frame, box, note).
    """
    groups = {"profile": [0, 0], "24-40 px": [0, 0], "crowd": [0, 0], "occluded": [0, 0]}
    faces_n = found_n = tp = fp = ignored_n = 0
    misses, false_positives = [], []
    for key, faces in sorted(labels_for_clip["frames"].items(), key=lambda kv: int(kv[0])):
        frame = int(key)
        boxes = [tuple(float(v) for v in b[:4]) for b in detections_by_frame.get(frame, [])]
        found, used, fps = _match_frame(faces, boxes)
        for i, face in enumerate(faces):
            if not demanded(face):
                continue
            faces_n += 1
            hit = i in found
            found_n += hit
            for name, member in (("profile", face["profile"]), ("24-40 px", face["h"] < 40),
                                 ("crowd", face["crowd"]), ("occluded", face["occluded"])):
                if member:
                    groups[name][0] += hit
                    groups[name][1] += 1
            if not hit:
                misses.append((frame, (face["x"], face["y"], face["w"], face["h"]), face.get("note", "")))
        tp += len(used)
        fp += len(fps)
        ignored_n += len(boxes) - len(used) - len(fps)
        false_positives += [(frame, tuple(round(v) for v in boxes[j]), "") for j in fps]
    return {
        "frames": len(labels_for_clip["frames"]), "faces": faces_n, "found": found_n,
        "recall": found_n / faces_n if faces_n else 1.0,
        "detections": tp + fp, "tp": tp, "fp": fp, "ignored_detections": ignored_n,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "groups": {name: tuple(v) for name, v in groups.items()},
        "misses": misses, "false_positives": false_positives,
    }


def _labelled_frames(clip: str, wanted: set[int]):
    """(frame number, RGB array, PyAV frame) for the wanted frames of a demo clip, decoded sequentially."""
    import av

    with av.open(str(MEDIA / f"{clip}.mp4")) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number in wanted:
                yield number, frame.to_ndarray(format="rgb24"), frame
            if number >= max(wanted):
                break


def run_detector(name: str, clip: str, frames: set[int], threads: int, upsample: int | None,
                 min_score: float | None) -> tuple[dict[int, list[Box]], float]:
    """Detections of the named detector on the given frames, and its mean milliseconds per frame."""
    sys.path.insert(0, str(ROOT))
    if name == "blazeface":
        from media_api.faces.blazeface import BlazeFaceDetector

        bf = BlazeFaceDetector(threads=threads) if min_score is None else BlazeFaceDetector(threads, min_score)

        def detect(rgb, _frame):
            return [(f.x, f.y, f.width, f.height) for f in bf.detect(rgb)]
    else:  # dlib HOG as media_api.faces.detector used it before BlazeFace (commit a048cc4)
        import dlib

        hog = dlib.get_frontal_face_detector()

        def detect(rgb, frame):
            scale = min(1.0, 1080 / frame.height)  # at most 1080 px high, upsampled once below 720 px
            w, h = round(frame.width * scale) // 2 * 2, round(frame.height * scale) // 2 * 2
            work = rgb if scale == 1.0 else frame.to_ndarray(format="rgb24", width=w, height=h)
            up = (1 if h < 720 else 0) if upsample is None else upsample
            rects, _, _ = hog.run(work, up, 0.0)
            sx, sy = w / frame.width, h / frame.height
            return [(r.left() / sx, r.top() / sy, (r.right() + 1 - r.left()) / sx, (r.bottom() + 1 - r.top()) / sy)
                    for r in rects]

    out, spent = {}, 0.0
    for number, rgb, frame in _labelled_frames(clip, frames):
        start = time.perf_counter()
        out[number] = detect(rgb, frame)
        spent += time.perf_counter() - start
    return out, spent / max(1, len(out)) * 1000


def run_pipeline(clip: str) -> tuple[dict[int, list[Box]], dict[int, set[Box]], float]:
    """All trace boxes per frame from the full pipeline, the tracked ones among them, and its wall time."""
    sys.path.insert(0, str(ROOT))
    from media_api.faces.pipeline import analyse_video
    from media_api.ffmpeg.probe import probe_video

    path = MEDIA / f"{clip}.mp4"
    probe = probe_video(path)
    start = time.perf_counter()
    analysis = analyse_video(path, probe.index, float(probe.fps))
    seconds = time.perf_counter() - start
    boxes: dict[int, list[Box]] = {}
    tracked: dict[int, set[Box]] = {}
    for row in analysis.rows():
        box = (row["x"], row["y"], row["width"], row["height"])
        boxes.setdefault(row["frame_number"], []).append(box)
        if row["origin"] == "tracked":
            tracked.setdefault(row["frame_number"], set()).add(box)
    return boxes, tracked, seconds


def load_detections(path: Path) -> dict[int, list[Box]]:
    """Detections in the project's import format, grouped by frame number."""
    by_frame: dict[int, list[Box]] = {}
    for d in json.loads(path.read_text())["detections"]:
        by_frame.setdefault(int(d["frame_number"]), []).append((d["x"], d["y"], d["width"], d["height"]))
    return by_frame


def _print(name: str, r: dict, verbose: bool, ms: float | None = None) -> None:
    groups = "  ".join(f"{k} {f}/{n}" for k, (f, n) in r["groups"].items())
    cost = f"  {ms:.1f} ms/frame" if ms is not None else ""
    print(f"{name}: {r['frames']} frames, faces {r['faces']}, found {r['found']}, recall {r['recall']:.1%} | "
          f"detections {r['detections']}, TP {r['tp']}, FP {r['fp']}, precision {r['precision']:.1%} "
          f"(+{r['ignored_detections']} on ignored faces){cost}\n  recall by group: {groups}")
    if verbose:
        for frame, box, note in r["misses"]:
            print(f"  miss  frame {frame:>4} {box} {note}")
        for frame, box, _ in r["false_positives"]:
            print(f"  FP    frame {frame:>4} {box}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", choices=("blazeface", "hog", "pipeline"), default="blazeface")
    parser.add_argument("--detections", type=Path, help="detections JSON in the import format (needs --clip)")
    parser.add_argument("--clip", help="clip name (file stem) of --detections, or limit the run to one clip")
    parser.add_argument("--threads", type=int, default=2, help="BlazeFace interpreter threads")
    parser.add_argument("--min-score", type=float, help="BlazeFace score threshold (default: the module's)")
    parser.add_argument("--upsample", type=int, choices=(0, 1), help="HOG: force this upsample count")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every miss and false positive")
    args = parser.parse_args(argv)
    labels = load_labels()
    if args.detections and not args.clip:
        parser.error("--detections needs --clip")
    clips = [args.clip] if args.clip else list(labels)
    totals = {"faces": 0, "found": 0, "tp": 0, "fp": 0}
    for clip in clips:
        frames = {int(n) for n in labels[clip]["frames"]}
        ms = None
        if args.detections:
            dets = load_detections(args.detections)
        elif args.detector == "pipeline":
            dets, tracked, seconds = run_pipeline(clip)
            labelled = {int(n) for n in labels[clip]["frames"]}
            on_labelled = sum(len(tracked.get(n, ())) for n in labelled)
            print(f"{clip}: pipeline {seconds:.1f} s; {on_labelled} of the boxes on labelled frames are tracked")
        else:
            dets, ms = run_detector(args.detector, clip, frames, args.threads, args.upsample, args.min_score)
        result = evaluate(labels[clip], dets)
        _print(clip, result, args.verbose, ms)
        for key in totals:
            totals[key] += result[key]
    if len(clips) > 1:
        t = totals
        print(f"overall: faces {t['faces']}, found {t['found']}, recall {t['found'] / max(1, t['faces']):.1%} | "
              f"TP {t['tp']}, FP {t['fp']}, precision {t['tp'] / max(1, t['tp'] + t['fp']):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
