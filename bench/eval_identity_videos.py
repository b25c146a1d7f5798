"""Exemplar sets on labelled multi-person video: suggestions and clustering as the product makes them.

    .venv/bin/python bench/eval_identity_videos.py

Both demo clips (Hamilton: a performer on stage, his pianist, the Obamas and their audience, three
shots; facenet: eleven people in a street, several on screen together) go through the face pipeline
(``analyse_video``, as ``detect_faces`` stores them: each track's embedded faces become its exemplar
set, ``exemplars.choose``); who each trace is comes from the hand labels of
bench/faces_eval/people.json. Then, with the calibrated thresholds (media_api/faces/calibration.json):

* **pairs**: the exemplar-set distance (closest pair) between every two labelled traces, same person
  vs different people, and how many different-person pairs fall within the confident / offered distance;
* **suggestions**: each labelled person is named once (their first trace), and so are the 50 people of
  bench/identity_set's photos (each a set of their photos; Lin-Manuel Miranda, Alex Lacamoire and
  Barack Obama are in both, from other sources); every other labelled trace is suggested for, as
  ``suggest_identities`` does (nearest set, "not offered" beyond the offered distance). Counted: right
  and wrong confident suggestions, weak ones, none; and, as in the issue's crowd (the person asked
  about is named nowhere, everybody else is), how many traces still get a confident — wrong — suggestion;
* **clustering**: the unnamed traces grouped as ``cluster_traces`` and the cast page do (leader
  clustering of set means at the cluster distance, never two traces of one file on screen together):
  purity (groups holding one person) and fragmentation (groups per person).

Audience faces too dark or small to tell apart are labelled as their own person each; a trace
without any readable face has no set and is left out (counted).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "momentry.settings")

CLIPS = ("face_recognition_short_hamilton_clip", "facenet_pytorch_video")
#: people.json's names of people also in bench/identity_set's photos
PHOTO_NAMES = {"Lin-Manuel Miranda": "Lin-Manuel Miranda", "Alex Lacamoire (pianist)": "Alex Lacamoire",
               "Barack Obama": "Barack Obama"}


def video_traces() -> list[dict]:
    """Every track of both clips with its exemplar set, span and labelled person (None: unlabelled)."""
    import json

    from bench.eval_faces import person_of
    from media_api.faces import exemplars
    from media_api.faces.pipeline import analyse_video
    from media_api.ffmpeg.probe import probe_video

    people = json.loads((ROOT / "bench" / "faces_eval" / "people.json").read_text())["clips"]
    traces = []
    for file_number, stem in enumerate(CLIPS):
        path = ROOT / "demo" / "media" / f"{stem}.mp4"
        probe = probe_video(path)
        analysis = analyse_video(path, probe.index, float(probe.fps))
        for number, track in enumerate(analysis.tracks, start=1):
            vectors = [v for v in track.embeddings if isinstance(v, np.ndarray)]
            chosen = np.vstack([exemplars.unpack(exemplars.pack([vectors[i] for i in exemplars.choose(vectors)]))]) \
                if vectors else None
            traces.append({"name": f"{stem[:8]}#{number}", "file": file_number, "start": track.start,
                           "end": track.end, "person": person_of(track, people[stem]), "set": chosen,
                           "mean": track.mean_embedding()})
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


def main() -> None:
    import django

    django.setup()
    from identities.cast.grouping import Leader
    from media_api.faces import calibration, exemplars

    confident, offered, cluster = (calibration.SET_CONFIDENT_DISTANCE, calibration.SET_OFFERED_DISTANCE,
                                   calibration.SET_CLUSTER_DISTANCE)
    traces = video_traces()
    labelled = [t for t in traces if t["person"] is not None and t["set"] is not None]
    print(f"{len(traces)} traces, {sum(t['set'] is not None for t in traces)} with a readable face, "
          f"{len(labelled)} of them labelled ({len({t['person'] for t in labelled})} people); thresholds: "
          f"confident {confident}, offered {offered}, cluster {cluster}")

    same, different = [], []
    for a, b in itertools.combinations(labelled, 2):
        distance = exemplars.set_distance(a["set"], b["set"])
        (same if a["person"] == b["person"] else different).append((distance, a["name"], b["name"]))
    values = sorted(d for d, *_ in different)
    print(f"\npairs: same person {len(same)}: " + ", ".join(f"{d:.3f} ({a}, {b})" for d, a, b in sorted(same)))
    print(f"  different people {len(different)}: min {values[0]:.3f}, median {np.median(values):.3f}; "
          f"within confident {sum(v <= confident for v in values)}, within offered {sum(v <= offered for v in values)}")
    print("  nearest different:", ", ".join(f"{d:.3f} ({a}, {b})" for d, a, b in sorted(different)[:3]))

    named: dict[str, np.ndarray] = {f"photo:{p}": s for p, s in photo_identities().items()}
    first: dict[str, str] = {}
    for trace in labelled:
        if trace["person"] not in first:
            first[trace["person"]] = trace["name"]
            named[f"video:{trace['person']}"] = trace["set"]
    outcome = Counter()
    wrong = []
    cross_source = []
    for trace in labelled:
        if first[trace["person"]] == trace["name"]:
            continue
        ranked = sorted((exemplars.set_distance(trace["set"], s), who) for who, s in named.items())
        distance, who = ranked[0]
        right = who.split(":", 1)[1] in (trace["person"], PHOTO_NAMES.get(trace["person"]))
        kind = "none" if distance > offered else ("confident" if distance <= confident else "weak")
        outcome[(kind, right if kind != "none" else None)] += 1
        if kind == "confident" and not right:
            wrong.append((trace["name"], trace["person"], who, round(distance, 3)))
    strangers = Counter()  # the case: this person is named nowhere, everybody else is
    for trace in labelled:
        own = {f"video:{trace['person']}", f"photo:{PHOTO_NAMES.get(trace['person'])}"}
        others = [(exemplars.set_distance(trace["set"], s), who) for who, s in named.items() if who not in own]
        distance, who = min(others)
        strangers["confident" if distance <= confident else "weak" if distance <= offered else "none"] += 1
        if distance <= confident:
            wrong.append((trace["name"], trace["person"], f"(not named) -> {who}", round(distance, 3)))
    for trace in labelled:
        photo = PHOTO_NAMES.get(trace["person"])
        if photo is not None:
            distance = exemplars.set_distance(trace["set"], named[f"photo:{photo}"])
            cross_source.append((trace["name"], photo, round(distance, 3), distance <= confident))
    print(f"\nsuggestions ({len(named)} named: {len(first)} from the video, the rest photos): "
          f"confident right {outcome[('confident', True)]}, confident WRONG {outcome[('confident', False)]}, "
          f"weak right {outcome[('weak', True)]}, weak wrong {outcome[('weak', False)]}, "
          f"none {outcome[('none', None)]}")
    print(f"  each labelled trace with its own person named nowhere ({len(labelled)}, {len(named) - 2} others "
          f"named): a confident suggestion (all WRONG) {strangers['confident']}, weak {strangers['weak']}, "
          f"none {strangers['none']}")
    for item in wrong:
        print("  wrong confident:", item)
    print("  the same person across sources (video trace vs their photos):",
          ", ".join(f"{n} {p} {d} {'confident' if ok else 'NOT confident'}" for n, p, d, ok in cross_source))

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
    several = {p: len(g) for p, g in people_groups.items()
               if sum(t["person"] == p for t in with_vectors) > 1}
    pure = len(groups) - len(mixed)
    print(f"\nclustering ({len(with_vectors)} traces with a vector): {len(groups)} groups, "
          f"{sum(len(g) > 1 for g in groups.values())} of several traces; groups joining two people: {len(mixed)}; "
          f"purity {pure}/{len(groups)} = {pure / len(groups):.0%}")
    for members in mixed:
        print("  mixed:", [(t["name"], t["person"]) for t in members])
    print(f"  people with several embedded traces: {len(several)}, groups each: {several} "
          f"(fragmentation {np.mean(list(several.values())) if several else 0:.2f} groups per person)")


if __name__ == "__main__":
    main()
