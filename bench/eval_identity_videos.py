"""Exemplar sets on labelled multi-person video: suggestions and clustering as the product makes them.

    .venv/bin/python bench/eval_identity_videos.py            # every clip (about a minute on 2 cores)
    .venv/bin/python bench/eval_identity_videos.py --demo     # only the two demo clips

Nine clips go through the face pipeline (``analyse_video``, as ``detect_faces`` stores them: each
track's embedded faces become its exemplar set, ``exemplars.choose`` ranked by the faces' qualities
as ``store_trace_exemplars`` does); who each trace is comes from hand labels (points inside faces):

* the two demo clips (demo/media/, labels bench/faces_eval/people.json): Hamilton (a performer on
  stage, his pianist, the Obamas and their audience, three shots), facenet (eleven people in a street,
  several on screen together);
* seven clips of bench/identity_videos/ (labels and provenance there): a film excerpt of three
  shots (Tears of Steel), two children on a bed, an arm-wrestling match with onlookers, two men side
  by side, and three talking heads (Barack Obama — also in the Hamilton clip and the identity set's
  photos, 7 years apart —, Alexandria Ocasio-Cortez, Katie Hill).

Then, with the calibrated thresholds (media_api/faces/calibration.json), per clip and overall:

* **pairs**: the exemplar-set distance (closest pair) between every two labelled traces, same person
  vs different people (the different-people pairs of all clips together: anyone can meet anyone in a
  library), and how many different-person pairs fall within the confident / offered distance;
* **suggestions**: each labelled person is named once (their first trace), and so are the 61 people of
  bench/identity_set's photos (each a set of their photos; Lin-Manuel Miranda, Alex Lacamoire and
  Barack Obama are in both, and named by their photos only: each of their traces is asked about, the
  same person across sources); every other labelled trace is suggested for, as ``suggest_identities``
  does (nearest set, "not offered" beyond the offered distance): right and wrong confident
  suggestions, weak ones, none; and, as in the issue's crowd (the person asked about is named nowhere,
  everybody else is), how many traces still get a confident — wrong — suggestion;
* **the same person across shots and sources**: every same-person pair of traces from two shots of a
  clip or from two clips, and every trace of a person in the photos against their photos: the
  share suggested confidently;
* **clustering**: every trace with a vector, all clips together, grouped as ``cluster_traces`` and the
  cast page do (leader clustering of means at the cluster distance, never two traces of one file on
  screen together): purity (groups holding one person) and fragmentation (groups per person).

Audience or background faces too dark or small to tell apart are labelled as their own person each;
a trace without any readable face has no set and is left out (counted).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

DEMO_LABELS = ROOT / "bench" / "faces_eval" / "people.json"
CLIP_DIR = ROOT / "bench" / "identity_videos"
#: (short name, video file, people file)
CLIPS = (
    ("hamilton", ROOT / "demo" / "media" / "face_recognition_short_hamilton_clip.mp4", DEMO_LABELS),
    ("facenet", ROOT / "demo" / "media" / "facenet_pytorch_video.mp4", DEMO_LABELS),
    ("tears", CLIP_DIR / "tears_of_steel.mp4", CLIP_DIR / "people.json"),
    ("bedroom", CLIP_DIR / "sam2_bedroom.mp4", CLIP_DIR / "people.json"),
    ("wrestling", CLIP_DIR / "mmaction2_arm_wrestling.mp4", CLIP_DIR / "people.json"),
    ("two_men", CLIP_DIR / "mmaction2_two_men.mp4", CLIP_DIR / "people.json"),
    ("obama", CLIP_DIR / "obama_weekly_address.mp4", CLIP_DIR / "people.json"),
    ("aoc", CLIP_DIR / "hdtf_ocasio_cortez.mp4", CLIP_DIR / "people.json"),
    ("hill", CLIP_DIR / "hdtf_hill.mp4", CLIP_DIR / "people.json"),
)
#: labelled names of people also in bench/identity_set's photos -> their name there
PHOTO_NAMES = {"Lin-Manuel Miranda": "Lin-Manuel Miranda", "Alex Lacamoire (pianist)": "Alex Lacamoire",
               "Barack Obama": "Barack Obama"}


def video_traces(clips=CLIPS) -> list[dict]:
    """Every track of the clips with its exemplar set, mean, span, shot, face size and labelled person."""
    from bench.eval_faces import person_of
    from media_api.faces import exemplars
    from media_api.faces.pipeline import analyse_video
    from media_api.ffmpeg.probe import probe_video

    traces = []
    for file_number, (short, path, labels) in enumerate(clips):
        people = json.loads(labels.read_text())["clips"][path.stem]
        probe = probe_video(path)
        analysis = analyse_video(path, probe.index, float(probe.fps))
        for number, track in enumerate(analysis.tracks, start=1):
            weights = track.face_qualities() or [1.0] * len(track.embeddings)
            pairs = [(v, q) for v, q in zip(track.embeddings, weights, strict=True) if isinstance(v, np.ndarray)]
            chosen = None
            if pairs:
                order = exemplars.choose([v for v, _ in pairs], [q for _, q in pairs])
                chosen = exemplars.unpack(exemplars.pack([pairs[i][0] for i in order]))
            detected = [h for (_, _, _, h), d in zip(track.boxes, track.detected, strict=True) if d]
            traces.append({"name": f"{short}#{number}", "clip": short, "file": file_number, "shot": track.shot,
                           "start": track.start, "end": track.end, "person": person_of(track, people),
                           "set": chosen, "mean": track.mean_embedding(),
                           "px": int(max(detected or [b[3] for b in track.boxes]))})
    return traces


def photo_identities() -> dict[str, np.ndarray]:
    """Each person of bench/identity_set's photos: the set of their readable photos' vectors."""
    from bench.eval_identity import embed_sface, load_set

    faces, _ = load_set()
    sets: dict[str, list[np.ndarray]] = defaultdict(list)
    for face in faces:
        if face.kind == "photo":
            vector = embed_sface(face)
            if vector is not None:
                sets[face.person].append(vector)
    return {person: np.vstack(vectors) for person, vectors in sets.items()}


def kind_of(distance: float, confident: float, offered: float) -> str:
    return "none" if distance > offered else "confident" if distance <= confident else "weak"


def main() -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", action="store_true", help="only the two demo clips")
    args = parser.parse_args()
    django.setup()
    from identities.cast.grouping import Leader
    from media_api.faces import calibration, exemplars

    confident, offered, cluster = (calibration.SET_CONFIDENT_DISTANCE, calibration.SET_OFFERED_DISTANCE,
                                   calibration.SET_CLUSTER_DISTANCE)
    clips = CLIPS[:2] if args.demo else CLIPS
    started = time.perf_counter()
    traces = video_traces(clips)
    seconds = time.perf_counter() - started
    labelled = [t for t in traces if t["person"] is not None and t["set"] is not None]
    names = [short for short, *_ in clips]
    print(f"thresholds (L2 on unit vectors): confident {confident}, offered {offered}, cluster {cluster}; "
          f"pipeline on {len(clips)} clips {seconds:.0f} s")
    print(f"\n{'clip':<10} {'traces':>6} {'readable':>8} {'labelled':>8} {'people':>6}  "
          "readable faces (px: min / median / max)")
    for short in [*names, None]:
        mine = [t for t in traces if short is None or t["clip"] == short]
        readable = [t for t in mine if t["set"] is not None]
        tagged = [t for t in readable if t["person"] is not None]
        px = sorted(t["px"] for t in readable)
        sizes = f"{px[0]} / {int(np.median(px))} / {px[-1]}" if px else "-"
        print(f"{short or 'all':<10} {len(mine):>6} {len(readable):>8} {len(tagged):>8} "
              f"{len({t['person'] for t in tagged}):>6}  {sizes}")

    # ---------------------------------------------------------------- pairs
    same, different = [], []
    for a, b in itertools.combinations(labelled, 2):
        distance = exemplars.set_distance(a["set"], b["set"])
        (same if a["person"] == b["person"] else different).append((distance, a, b))
    print("\npairs of labelled traces (exemplar sets, closest pair):")
    for short in [*names, None]:
        diff = sorted(d for d, a, b in different if short is None or short in (a["clip"], b["clip"]))
        sam = sorted(d for d, a, b in same if short is None or short in (a["clip"], b["clip"]))
        if not diff and not sam:
            continue
        line = (f"  {short or 'all':<10} same person {len(sam)}"
                + (f" (max {sam[-1]:.3f})" if sam else "")
                + f"; different people {len(diff)}")
        if diff:
            line += (f": min {diff[0]:.3f}, median {np.median(diff):.3f}, within confident "
                     f"{sum(v <= confident for v in diff)}, within offered {sum(v <= offered for v in diff)}")
        print(line)
    print("  nearest different:", ", ".join(f"{d:.3f} ({a['name']} {a['person']!r}, {b['name']} {b['person']!r})"
                                           for d, a, b in sorted(different, key=lambda x: x[0])[:4]))

    # ---------------------------------------------------------------- suggestions
    named: dict[str, np.ndarray] = {f"photo:{p}": s for p, s in photo_identities().items()}
    first: dict[str, str] = {}  # person -> the trace that names them (people of the photos: the photos)
    for trace in labelled:
        if trace["person"] not in first:
            first[trace["person"]] = "photos" if trace["person"] in PHOTO_NAMES else trace["name"]
            if trace["person"] not in PHOTO_NAMES:
                named[f"video:{trace['person']}"] = trace["set"]
    outcome: dict[str, Counter] = defaultdict(Counter)
    strangers: dict[str, Counter] = defaultdict(Counter)
    wrong = []
    nearest_stranger = []  # (distance, trace, who): how near the confident distance strangers come
    for trace in labelled:
        own = {f"video:{trace['person']}", f"photo:{PHOTO_NAMES.get(trace['person'])}"}
        if first[trace["person"]] != trace["name"]:
            distance, who = min((exemplars.set_distance(trace["set"], s), who) for who, s in named.items())
            right = who in own
            kind = kind_of(distance, confident, offered)
            for key in (trace["clip"], "all"):
                outcome[key][(kind, right if kind != "none" else None)] += 1
            if kind == "confident" and not right:
                wrong.append((trace["name"], trace["person"], who, round(distance, 3)))
        # the case: this person is named nowhere, everybody else is
        distance, who = min((exemplars.set_distance(trace["set"], s), who) for who, s in named.items()
                            if who not in own)
        nearest_stranger.append((distance, trace["name"], who))
        kind = kind_of(distance, confident, offered)
        for key in (trace["clip"], "all"):
            strangers[key][kind] += 1
        if kind == "confident":
            wrong.append((trace["name"], trace["person"], f"(not named) -> {who}", round(distance, 3)))
    from_video = sum(who.startswith("video:") for who in named)
    print(f"\nsuggestions ({len(named)} named: {from_video} people by a video trace, "
          f"{len(named) - from_video} by their photos):")
    print(f"  {'clip':<10} {'asked':>5} {'conf.right':>10} {'conf.WRONG':>10} {'weak right':>10} {'weak wrong':>10} "
          f"{'none':>5} | not named: {'asked':>5} {'conf.WRONG':>10} {'weak':>5} {'none':>5}")
    for short in [*names, "all"]:
        o, s = outcome[short], strangers[short]
        if not s:
            continue
        print(f"  {short:<10} {sum(o.values()):>5} {o[('confident', True)]:>10} {o[('confident', False)]:>10} "
              f"{o[('weak', True)]:>10} {o[('weak', False)]:>10} {o[('none', None)]:>5} | "
              f"{'':>10} {sum(s.values()):>5} {s['confident']:>10} {s['weak']:>5} {s['none']:>5}")
    for item in wrong:
        print("  WRONG confident:", item)
    print(f"  nearest strangers (confident is {confident}): "
          + ", ".join(f"{d:.3f} ({n} -> {w})" for d, n, w in sorted(nearest_stranger)[:3]))

    # ---------------------------------------------------------------- the same person across shots / sources
    across = []
    for distance, a, b in same:
        if a["clip"] != b["clip"]:
            across.append(("sources", a["name"], b["name"], a["person"], distance))
        elif a["shot"] != b["shot"]:
            across.append(("shots", a["name"], b["name"], a["person"], distance))
        else:  # lost and found again within one shot (not counted as across)
            across.append(("one shot", a["name"], b["name"], a["person"], distance))
    for trace in labelled:
        photo = PHOTO_NAMES.get(trace["person"])
        if photo is not None:
            across.append(("photos", trace["name"], f"photos of {photo}", trace["person"],
                           exemplars.set_distance(trace["set"], named[f"photo:{photo}"])))
    counted = [d for kind, *_, d in across if kind != "one shot"]
    print(f"\nthe same person across shots and sources: {sum(d <= confident for d in counted)} of {len(counted)} "
          f"within the confident distance")
    for kind in ("shots", "sources", "photos", "one shot"):
        rows = [r for r in across if r[0] == kind]
        if rows:
            print(f"  {kind:<8} {sum(d <= confident for *_, d in rows)}/{len(rows)} confident: " + ", ".join(
                f"{a}~{b} {d:.3f}{'' if d <= confident else ' (weak)' if d <= offered else ' (NOT offered)'}"
                for _, a, b, _, d in rows))

    # ---------------------------------------------------------------- clustering
    with_vectors = [t for t in traces if t["mean"] is not None]
    leader = Leader(threshold=cluster)
    labels = leader.assign(np.vstack([t["mean"] for t in with_vectors]).astype(np.float32),
                           [(t["file"], t["start"], t["end"]) for t in with_vectors])
    groups: dict[int, list[dict]] = defaultdict(list)
    for trace, label in zip(with_vectors, labels.tolist(), strict=True):
        groups[label].append(trace)
    mixed = [g for g in groups.values() if len({t["person"] for t in g if t["person"] is not None}) > 1]
    people_groups: dict[str, set[int]] = defaultdict(set)
    for label, members in groups.items():
        for t in members:
            if t["person"] is not None:
                people_groups[t["person"]].add(label)
    several = {p: len(g) for p, g in people_groups.items() if sum(t["person"] == p for t in with_vectors) > 1}
    pure = len(groups) - len(mixed)
    print(f"\nclustering, all clips together ({len(with_vectors)} traces with a vector): {len(groups)} groups, "
          f"{sum(len(g) > 1 for g in groups.values())} of several traces; groups joining two people: {len(mixed)}; "
          f"purity {pure}/{len(groups)} = {pure / len(groups):.0%}")
    for members in mixed:
        print("  MIXED:", [(t["name"], t["person"]) for t in members])
    for members in groups.values():
        if len(members) > 1 and members not in mixed:
            print("  joined:", [(t["name"], t["person"]) for t in members])
    print(f"  people with several embedded traces: {len(several)}, groups each: {several} "
          f"(fragmentation {np.mean(list(several.values())) if several else 0:.2f} groups per person)")


if __name__ == "__main__":
    main()
