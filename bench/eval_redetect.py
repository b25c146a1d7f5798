"""Re-detection on an upscaled crop as a second opinion for the face detector: measured, not used.

Why (issue 19): the detector alone is at 96.8 % precision on both labelled sets (goal 97 %). The idea: run
YuNet again on each box with context, scaled up (``embeddings.yunet_around``, the crop the embedding step
reads landmarks from: the box's longer side 112 px in a 224 px square; or 64 px in 160), and either

- **verify**: a real face should get a confident score at the bigger scale, an emblem or a hand should
  not — compared with BlazeFace's second opinion, the pipeline's (``yunet.py``), as the area under the ROC
  curve (AUC: the chance that a true box scores above a false one) over the boxes YuNet is unsure of
  (0.70-0.85, the only ones the second opinion may drop) and over all boxes, alone and combined with
  BlazeFace's; or
- **relocate**: when the best face found on the crop, overlapping the box (any overlap, or IoU >= 0.1), is
  another box (IoU <= NMS_IOU with it) that YuNet is sure of (>= SURE_SCORE), the box is replaced by it —
  then merged and verified as in the pipeline, and scored with ``bench/eval_faces.py``'s matching on both
  sets.

    .venv/bin/python bench/eval_redetect.py [-v]

Results and the conclusion: docs/faces.md ("Small faces", precision paragraph).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import eval_faces as ef  # noqa: E402

#: Crop geometries tried: (box's longer side, crop side) in crop pixels. The first is the embedding's.
GEOMETRIES = ((112, 224), (64, 160))
#: Re-detections are read down to this score (a face not found is a score of 0).
READ_SCORE = 0.3
#: Relocation: how much a face found on the crop must overlap the box (IoU above this) to replace it.
OVERLAPS = (0.0, 0.1)


def pictures():
    """(set name, key, RGB, labelled faces) of the 45 demo frames and the small-face set."""
    labels = ef.load_labels()
    for clip in labels:
        frames = {int(n) for n in labels[clip]["frames"]}
        for number, rgb, _ in ef.labelled_frames(clip, frames):
            yield clip, number, rgb, labels[clip]["frames"][str(number)]
    for name, set_labels, images in ef.small_face_sets():
        for key, rgb in images.items():
            yield name, key, rgb, set_labels["frames"][key]


def frame_rows(rows: np.ndarray, box: tuple[float, float, float, float], scale: float,
               input_px: int) -> np.ndarray:
    """YuNet rows of a :func:`yunet_around` crop in frame pixels (boxes and landmarks; the score unchanged)."""
    x, y, w, h = box
    out = np.array(rows, np.float32, copy=True).reshape(-1, 15)
    offset_x, offset_y = input_px / 2 - (x + w / 2) * scale, input_px / 2 - (y + h / 2) * scale
    out[:, [0, 4, 6, 8, 10, 12]] = (out[:, [0, 4, 6, 8, 10, 12]] - offset_x) / scale
    out[:, [1, 5, 7, 9, 11, 13]] = (out[:, [1, 5, 7, 9, 11, 13]] - offset_y) / scale
    out[:, 2:4] /= scale
    return out


def redetect(rgb: np.ndarray, box, geometry) -> np.ndarray:
    """YuNet's rows (frame pixels) on the upscaled crop around ``box``."""
    from media_api.faces.embeddings import yunet_around

    _, rows, scale = yunet_around(rgb, box, face_px=geometry[0], input_px=geometry[1], min_score=READ_SCORE)
    return frame_rows(rows, box, scale, geometry[1])


def same_box_score(box, rows: np.ndarray) -> float:
    """The best re-detection score of the box itself (IoU > NMS_IOU with it), 0 when not found."""
    from media_api.faces.yunet import NMS_IOU

    scores = [float(r[14]) for r in rows if ef.iou(box, tuple(r[:4])) > NMS_IOU]
    return max(scores, default=0.0)


def auc(positives: list[float], negatives: list[float]) -> float:
    """Chance that a positive scores above a negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def verification_table(items, verbose: bool) -> None:
    """Per raw YuNet box: true/false by the labels, and each second opinion's score; AUC per opinion."""
    from media_api.faces.blazeface import BlazeFaceDetector
    from media_api.faces.yunet import SURE_SCORE, YuNetDetector

    raw = YuNetDetector(threads=2, verify=False)
    blaze = BlazeFaceDetector(threads=2, short_range=False)
    boxes_out, spent, crops = [], 0.0, 0
    for name, key, rgb, faces in items:
        found = raw.detect(rgb)
        boxes = [(f.x, f.y, f.width, f.height) for f in found]
        _, used, false_pos = ef._match_frame(faces, boxes)
        second: dict[int, float] = {}
        for group in ([i for i, f in enumerate(found) if f.score < SURE_SCORE],
                      [i for i, f in enumerate(found) if f.score >= SURE_SCORE]):
            second.update(zip(group, blaze.second_opinion(rgb, [boxes[i] for i in group]), strict=True))
        for j, (face, box) in enumerate(zip(found, boxes, strict=True)):
            if j not in used and j not in false_pos:
                continue  # on an ignored or < 16 px face: neither
            entry = {"where": (name, key, box), "true": j in used, "yunet": face.score, "blazeface": second[j]}
            for geometry in GEOMETRIES:
                start = time.perf_counter()
                rows = redetect(rgb, box, geometry)
                spent, crops = spent + time.perf_counter() - start, crops + 1
                entry[f"re-detect {geometry[0]}/{geometry[1]}"] = same_box_score(box, rows)
            first = f"re-detect {GEOMETRIES[0][0]}/{GEOMETRIES[0][1]}"
            entry[f"min(blazeface, {first[10:]})"] = min(entry["blazeface"], entry[first])
            entry[f"blazeface x {first[10:]}"] = entry["blazeface"] * entry[first]
            boxes_out.append(entry)
    opinions = [k for k in boxes_out[0] if k not in ("where", "true")]
    for title, keep in (("unsure boxes (YuNet 0.70-0.85)", lambda e: e["yunet"] < SURE_SCORE),
                        ("all boxes (YuNet >= 0.70)", lambda e: True)):
        chosen = [e for e in boxes_out if keep(e)]
        true_n = sum(e["true"] for e in chosen)
        print(f"{title}: {true_n} true, {len(chosen) - true_n} false")
        for opinion in opinions:
            value = auc([e[opinion] for e in chosen if e["true"]], [e[opinion] for e in chosen if not e["true"]])
            print(f"  AUC {opinion:22} {value:.3f}")
    print(f"re-detection: {spent / max(1, crops) * 1000:.1f} ms per crop (mean of {crops})")
    if verbose:
        for e in boxes_out:
            if not e["true"]:
                print("  false", e["where"], {k: round(v, 2) for k, v in e.items() if k not in ("where", "true")})


def relocating_detector(geometry, overlap: float):
    """The pipeline's detector, each box first moved to a surer face its upscaled crop finds overlapping it."""
    from media_api.faces.yunet import NMS_IOU, SURE_SCORE, YuNetDetector, _suppress

    moves = []

    class Relocating(YuNetDetector):
        def candidates(self, rgb, small_faces=True):
            out = []
            for row in super().candidates(rgb, small_faces):
                box = tuple(float(v) for v in row[:4])
                near = [r for r in redetect(rgb, box, geometry) if ef.iou(box, tuple(r[:4])) > overlap]
                best = max(near, key=lambda r: float(r[14]), default=None)
                if best is not None and best[14] >= SURE_SCORE and ef.iou(box, tuple(best[:4])) <= NMS_IOU:
                    moves.append((box, tuple(round(float(v)) for v in best[:4])))
                    row = best
                out.append(row)
            return _suppress(out)

    return Relocating(threads=2), moves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list the false boxes and the moves")
    args = parser.parse_args(argv)
    items = list(pictures())
    verification_table(items, args.verbose)
    for geometry, overlap in ((g, o) for g in GEOMETRIES for o in OVERLAPS):
        detector, moves = relocating_detector(geometry, overlap)
        results = []
        for name in dict.fromkeys(name for name, *_ in items):
            mine = [(key, rgb, faces) for n, key, rgb, faces in items if n == name]
            detections = {key: [(f.x, f.y, f.width, f.height) for f in detector.detect(rgb)] for key, rgb, _ in mine}
            results.append(ef.evaluate({"frames": {str(key): faces for key, _, faces in mine}}, detections))
        print(f"relocate ({geometry[0]}/{geometry[1]}, overlap > {overlap}): {len(moves)} boxes moved; "
              f"{ef._total(results)}")
        if args.verbose:
            for old, new in moves:
                print(f"  moved {tuple(round(v) for v in old)} -> {new}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
