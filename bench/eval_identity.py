"""How well the face embedding tells people apart, and the thresholds that follow, on bench/identity_set/.

    .venv/bin/python bench/eval_identity.py              # SFace and dlib: distributions, TAR/FAR, thresholds
    .venv/bin/python bench/eval_identity.py --sface-only
    .venv/bin/python bench/eval_identity.py --write      # store SFace's thresholds in media_api/faces/calibration.json

Why: suggestions ("confident": one click names a trace), clustering (joins traces with nobody
looking) and the joining of a track's pieces all decide "same person" by a distance between
embeddings. Those thresholds must come from people we know apart, not from the two same-person
pairs of the demo. The set (README.md there): 487 faces of 106 people, photos from eighteen public
repositories and crops of the demo clips' known people.

Every face is embedded as the pipeline does it (``media_api.faces.embeddings``): SFace on the face
aligned with YuNet's landmarks found on a crop around the box; dlib's ResNet on its own 5-point chip
of the same box. Faces under ``MIN_FACE_PX`` (the pipeline's embedding gate) are left out, as are
faces YuNet cannot read (SFace gets no embedding for them in the pipeline either). Pairs:
*genuine* = same person, different session (another photo, another trace — two frames of one
trace are near-duplicates and would flatter the model); *impostor* = different people.

Thresholds (cosine distance ``1 - u.v`` of unit vectors; the code compares the equivalent
Euclidean distance ``sqrt(2 * cosine)``), each just below the impostor distance that would exceed it:
- **confident**: no impostor pair closer at all (FAR 0 on the set). The use is open-set: a one-click
  name must not be given to a stranger, and a trace is compared with everybody named. With N people
  named, a per-pair FAR p gives a person named nowhere about N x p chance of a confident wrong name
  (at 0.066 % and 49 named, ~3 %: Katie Hill got Melissa Rauch's name on labelled video), so only
  the closest different-person distance ever measured is safe;
- **offered** (top of the weak band): FAR ≤ 1 %;
- **cluster**: FAR 0 as well, clustering has no human in the loop.

The FAR-0 thresholds hold not only for the faces as stored but however the product might read them
(``READINGS``: re-compressed, at 3/4 size, the box off by a tenth — what a detector's jitter, a scaler
or a codec does to the same face): each face is embedded every way, and confident and cluster sit below
the closest two different people came in any reading of either face. One reading moves a stranger pair's
distance by up to 0.17-0.37 (cosine; 99th percentile 0.07-0.12) on this set, far more than the margin
between the closest stranger as stored and same-person pairs of other sources; a stranger first came
within the as-stored threshold on labelled video (Katie Hill and Melissa Rauch, 0.563 against 0.574) and
on a collage of four bald actors.

Traces are compared as exemplar sets (``media_api.faces.exemplars``), so the same three thresholds are
also derived for sets (``set_calibration``, stored under ``sets``): per person, sets of 1-4 faces drawn
from disjoint sessions (seeded), compared by their closest pair (``min``: suggestions) and by their
means (``centroid``: clustering). ``bench/eval_identity_videos.py`` applies them to labelled video.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from media_api.faces import embeddings, zoo  # noqa: E402
from media_api.faces.tracker import MIN_EMBED_HEIGHT  # noqa: E402

SET_DIR = ROOT / "bench" / "identity_set"
MANIFEST = SET_DIR / "manifest.json"
CALIBRATION = ROOT / "media_api" / "faces" / "calibration.json"
#: The pipeline embeds faces at least this tall (frame pixels).
MIN_FACE_PX = MIN_EMBED_HEIGHT
#: Per-pair false-accept targets (see the module docstring: confident is FAR 0 because the use is open-set).
CONFIDENT_FAR = 0.0
OFFERED_FAR = 0.01
#: Faces v2's dlib thresholds (Euclidean 0.40 confident, 0.45 offered) as cosine distances (d² / 2).
#: Exemplar sets simulated per person (set_calibration): splits, largest set, and the seed that makes them reproducible.
SET_SPLITS = 20
SET_SIZE = 4
SET_SEED = 19
FACES_V2_THRESHOLDS = {"faces_v2_confident": 0.40 ** 2 / 2, "faces_v2_offered": 0.45 ** 2 / 2}
#: The other ways a face is read for the FAR-0 thresholds (module docstring): JPEG quality 75, the picture at
#: 3/4 size (area averaging), the box moved right by a tenth of its width and down by a twentieth of its height.
READINGS = ("jpeg75", "three_quarters", "box_moved")


@dataclass
class Face:
    file: str
    person: str
    session: str
    kind: str
    face_px: int
    box: tuple[int, int, int, int]


def load_set(manifest: Path = MANIFEST) -> tuple[list[Face], str]:
    """The faces of the set and its hash (sha256 of the manifest, which holds every crop's sha256).

    Raises ValueError when a crop's bytes are not the ones the manifest records.
    """
    data = manifest.read_bytes()
    faces = []
    for entry in json.loads(data)["faces"]:
        digest = hashlib.sha256((manifest.parent / entry["file"]).read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise ValueError(f"{entry['file']} differs from the manifest (sha256 {digest})")
        faces.append(Face(entry["file"], entry["person"], entry["session"], entry["kind"], entry["face_px"],
                          tuple(entry["box"])))
    return faces, hashlib.sha256(data).hexdigest()


def embed_sface(face: Face, reading: str | None = None) -> np.ndarray | None:
    """SFace's vector of ``face`` as stored, or read one of the READINGS ways (None: unreadable that way)."""
    image, box = cv2.imread(str(SET_DIR / face.file)), face.box
    if reading == "jpeg75":
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_COLOR)
    elif reading == "three_quarters":
        image = cv2.resize(image, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
        box = tuple(round(v * 0.75) for v in box)
    elif reading == "box_moved":
        box = (round(box[0] + 0.1 * box[2]), round(box[1] + 0.05 * box[3]), box[2], box[3])
    aligned = embeddings.align_face(image, box, rgb=False)
    return None if aligned is None else embeddings.embed_aligned(aligned)


def closest_strangers(readings: list[np.ndarray], owner: np.ndarray) -> tuple[float, int, int]:
    """(the smallest cosine distance between two different owners' vectors over every pair of readings, the
    two rows): ``readings`` holds one matrix per reading, rows in the same order."""
    best = (2.0, -1, -1)
    different = owner[:, None] != owner[None, :]
    for first in readings:
        for second in readings:
            cosine = np.where(different, 1.0 - first @ second.T, 2.0)
            i, j = np.unravel_index(int(np.argmin(cosine)), cosine.shape)
            best = min(best, (float(cosine[i, j]), int(i), int(j)))
    return best


def threshold_below(distance: float) -> float:
    """The largest 3-decimal threshold (accepted when ``d <= t``) under ``distance``."""
    return math.floor((distance - 1e-6) * 1000) / 1000


def embed_dlib(face: Face) -> np.ndarray | None:
    rgb = cv2.cvtColor(cv2.imread(str(SET_DIR / face.file)), cv2.COLOR_BGR2RGB)
    return embeddings.normalise(embeddings.embed_chip(embeddings.face_chip(rgb, face.box)))


def pair_distances(vectors: np.ndarray, faces: Sequence[Face]) -> tuple[np.ndarray, np.ndarray, list]:
    """(genuine cosine distances, impostor cosine distances, impostor pairs sorted nearest first)."""
    cosine = 1.0 - vectors @ vectors.T
    genuine, impostor, near = [], [], []
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            if faces[i].person == faces[j].person:
                if faces[i].session != faces[j].session:
                    genuine.append(cosine[i, j])
            else:
                impostor.append(cosine[i, j])
                near.append((float(cosine[i, j]), faces[i].file, faces[j].file))
    near.sort()
    return np.array(genuine), np.array(impostor), near[:5]


def threshold_at(impostor: np.ndarray, far: float) -> float:
    """The largest distance (3 decimals, accepted when ``d <= t``) letting at most ``far`` of impostor pairs in."""
    ordered = np.sort(impostor)
    allowed = math.floor(far * len(ordered))
    if allowed >= len(ordered):
        return float(ordered[-1])
    return math.floor((float(ordered[allowed]) - 1e-6) * 1000) / 1000


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict:
    return {"tar": round(float(np.mean(genuine <= threshold)), 4),
            "far": round(float(np.mean(impostor <= threshold)), 5),
            "false_accepts": int(np.sum(impostor <= threshold))}


def spread(values: np.ndarray) -> dict:
    return {"min": round(float(values.min()), 4), "p5": round(float(np.percentile(values, 5)), 4),
            "median": round(float(np.median(values)), 4), "p95": round(float(np.percentile(values, 95)), 4),
            "max": round(float(values.max()), 4)}


def to_l2(cosine: float) -> float:
    """The Euclidean distance between unit vectors at this cosine distance (what the code compares), rounded down
    to 4 decimals as media_api/faces/calibration.py rounds a threshold (never accepting more)."""
    return math.floor(math.sqrt(2.0 * cosine) * 10_000) / 10_000


def calibrate(faces: Sequence[Face], embed, min_face_px: int = MIN_FACE_PX,
              also_at: dict[str, float] | None = None, reread=None) -> dict:
    """Embed every face, pair them, and derive the thresholds (a dict as stored in calibration.json).

    ``also_at``: more named cosine thresholds to report TAR/FAR at. ``reread(face, reading)``: the face's
    vector read each of the READINGS ways, for the FAR-0 thresholds (None: those thresholds from the faces
    as stored). The faces embedded are in ``result["kept"]``, their readings in ``result["readings"]``
    (not stored)."""
    kept, vectors, unreadable, small = [], [], 0, 0
    started = time.perf_counter()
    for face in faces:
        if face.face_px < min_face_px:
            small += 1
            continue
        vector = embed(face)
        if vector is None:
            unreadable += 1
            continue
        kept.append(face)
        vectors.append(vector)
    seconds = time.perf_counter() - started
    genuine, impostor, near = pair_distances(np.vstack(vectors), kept)
    readings = [np.vstack(vectors)]
    for reading in READINGS if reread is not None else ():  # unreadable that way: as stored (no new pair)
        readings.append(np.vstack([v if (r := reread(face, reading)) is None else r
                                   for face, v in zip(kept, vectors, strict=True)]))
    owner = np.array([face.person for face in kept])
    closest, first, second = closest_strangers(readings, owner)
    thresholds = {"confident": threshold_below(closest), "offered": threshold_at(impostor, OFFERED_FAR),
                  "cluster": threshold_below(closest)}
    return {
        "faces": len(faces), "embedded": len(kept), "below_min_face_px": small, "unreadable": unreadable,
        "people": len({f.person for f in kept}), "genuine_pairs": len(genuine), "impostor_pairs": len(impostor),
        "genuine": spread(genuine), "impostor": spread(impostor),
        "gap": round(float(impostor.min() - genuine.max()), 4),
        "closest_strangers_read_any_way": [round(closest, 4), kept[first].file, kept[second].file],
        "thresholds_cosine": thresholds,
        "thresholds_l2": {name: to_l2(value) for name, value in thresholds.items()},
        "rates": {name: rates(genuine, impostor, value) for name, value in {**thresholds, **(also_at or {})}.items()},
        "nearest_impostors": [[round(d, 4), a, b] for d, a, b in near],
        "ms_per_face": round(1000 * seconds / max(1, len(faces) - small), 1),
        "kept": kept,
        "vectors": np.vstack(vectors),
        "readings": readings,
    }


def sface_calibration(faces: Sequence[Face], set_hash: str) -> dict:
    result = calibrate(faces, embed_sface, reread=embed_sface)
    kept, readings = result.pop("kept"), result.pop("readings")
    del result["vectors"]
    return {"model": zoo.SFACE.name, "model_sha256": zoo.SFACE.sha256, "set_sha256": set_hash,
            "min_face_px": MIN_FACE_PX, "far_targets": {"confident": CONFIDENT_FAR, "offered": OFFERED_FAR,
                                                        "cluster": 0.0}, "readings": list(READINGS), **result,
            "sets": set_calibration(kept, readings)}


def _simulated_sets(faces: Sequence[Face]) -> tuple[list[tuple[int, list[int]]], list[tuple[int, int]]]:
    """Exemplar sets drawn from the embedded faces, and the genuine pairs among them (seeded, reproducible).

    For each person with faces of at least two sessions, SET_SPLITS times: their sessions are shuffled
    and split in two, and each side draws a set of 1..SET_SIZE faces of its own sessions (so the two
    sets of a genuine pair never share a photo or a trace). Every set drawn is also an impostor of
    every other person's sets. Returns ([(person number, face positions)], [(set a, set b)]).
    """
    rng = np.random.default_rng(SET_SEED)
    people: dict[str, dict[str, list[int]]] = {}
    for position, face in enumerate(faces):
        people.setdefault(face.person, {}).setdefault(face.session, []).append(position)
    sets: list[tuple[int, list[int]]] = []
    genuine: list[tuple[int, int]] = []
    for number, person in enumerate(sorted(people)):
        sessions = [people[person][key] for key in sorted(people[person])]
        if len(sessions) < 2:
            continue
        for _ in range(SET_SPLITS):
            order = rng.permutation(len(sessions))
            cut = int(rng.integers(1, len(sessions)))
            sides = []
            for part in (order[:cut], order[cut:]):
                pool = [p for s in part for p in sessions[s]]
                size = int(rng.integers(1, SET_SIZE + 1))
                sides.append(sorted(rng.choice(pool, size=min(size, len(pool)), replace=False).tolist()))
            genuine.append((len(sets), len(sets) + 1))
            sets += [(number, sides[0]), (number, sides[1])]
    return sets, genuine


def set_calibration(faces: Sequence[Face], readings: list[np.ndarray]) -> dict:
    """Thresholds for comparing exemplar sets (what suggestions and clustering compare), on simulated sets.

    Two linkages are measured: ``min`` (the closest exemplar pair, suggestions) and ``centroid`` (the
    distance between the sets' unit means, clustering: adding members to a group moves its mean a
    little, it never makes a stranger's nearest exemplar nearer). Thresholds as for single faces: FAR
    0 (confident, cluster: below the closest two different people's sets came, each set read any of the
    ways ``readings`` holds — the first is the faces as stored), <= 1 % (offered), each over every pair of
    different people's sets.
    """
    vectors = readings[0]
    sets, genuine_pairs = _simulated_sets(faces)
    owner = np.array([person for person, _ in sets])
    rows = np.concatenate([members for _, members in sets])
    starts = np.cumsum([0] + [len(members) for _, members in sets])[:-1]
    similarity = vectors[rows] @ vectors[rows].T  # every exemplar against every other (float32)
    # min linkage: per pair of sets, the largest similarity between one member of each
    closest = np.maximum.reduceat(np.maximum.reduceat(similarity, starts, axis=1), starts, axis=0)
    means = np.vstack([embeddings.normalise(vectors[members].mean(axis=0)) for _, members in sets])
    linkages = {"min": 1.0 - closest, "centroid": 1.0 - means @ means.T}
    upper = np.triu(np.ones((len(sets), len(sets)), dtype=bool), 1)
    impostor_mask = upper & (owner[:, None] != owner[None, :])
    a, b = np.array(genuine_pairs).T
    result = {"seed": SET_SEED, "splits_per_person": SET_SPLITS, "max_set_size": SET_SIZE, "sets": len(sets),
              "genuine_pairs": len(genuine_pairs), "impostor_pairs": int(impostor_mask.sum())}
    # The closest strangers' sets, read any way: by their closest faces (min), by their means (centroid). A
    # one-face set is a set too, its mean its face: so every face counts, also of people with one session.
    single = closest_strangers(readings, np.array([face.person for face in faces]))[0]
    read_any_way = {
        "min": single,
        "centroid": min(single, closest_strangers([np.vstack([embeddings.normalise(r[members].mean(axis=0))
                                                              for _, members in sets]) for r in readings], owner)[0])}
    for name, cosine in linkages.items():
        genuine, impostor = cosine[a, b], cosine[impostor_mask]
        closest = min(float(impostor.min()), read_any_way[name])
        thresholds = {"confident": threshold_below(closest),
                      "offered": threshold_at(impostor, OFFERED_FAR), "cluster": threshold_below(closest)}
        result[name] = {"genuine": spread(genuine), "impostor": spread(impostor),
                        "gap": round(float(impostor.min() - genuine.max()), 4),
                        "closest_strangers_read_any_way": round(closest, 4), "thresholds_cosine": thresholds,
                        "thresholds_l2": {k: to_l2(v) for k, v in thresholds.items()},
                        "rates": {k: rates(genuine, impostor, v) for k, v in thresholds.items()}}
    return result


def report_sets(result: dict) -> None:
    print(f"\n== exemplar sets (1..{result['max_set_size']} faces, {result['sets']} sets): "
          f"{result['genuine_pairs']} genuine / {result['impostor_pairs']} impostor set pairs")
    for name in ("min", "centroid"):
        r = result[name]
        print(f"  {name:8s} genuine median {r['genuine']['median']:.3f} max {r['genuine']['max']:.3f}; "
              f"impostor min {r['impostor']['min']:.3f} p5 {r['impostor']['p5']:.3f}; gap {r['gap']:+.3f}; "
              f"closest strangers read any way {r['closest_strangers_read_any_way']:.3f}")
        for key in ("confident", "offered", "cluster"):
            t, rate = r["thresholds_cosine"][key], r["rates"][key]
            print(f"    {key:9s} cosine <= {t:.3f} (L2 {r['thresholds_l2'][key]:.4f}): TAR {100 * rate['tar']:.1f} %, "
                  f"FAR {100 * rate['far']:.3f} % ({rate['false_accepts']} set pairs)")


def _dlib_view(result: dict) -> dict:
    """dlib's figures also in its own Euclidean distance (the Faces v2 thresholds were 0.40 / 0.45)."""
    genuine_l2 = {k: to_l2(v) for k, v in result["genuine"].items()}
    impostor_l2 = {k: to_l2(v) for k, v in result["impostor"].items()}
    return {**result, "genuine_l2": genuine_l2, "impostor_l2": impostor_l2}


def report(name: str, result: dict) -> None:
    print(f"\n== {name}: {result['embedded']} faces of {result['people']} people embedded "
          f"({result['below_min_face_px']} under {MIN_FACE_PX} px, {result['unreadable']} unreadable), "
          f"{result['genuine_pairs']} genuine / {result['impostor_pairs']} impostor pairs, "
          f"{result['ms_per_face']} ms per face")
    for side in ("genuine", "impostor"):
        s = result[side]
        print(f"  {side:9s} cosine distance: min {s['min']:.3f}  5% {s['p5']:.3f}  median {s['median']:.3f}  "
              f"95% {s['p95']:.3f}  max {s['max']:.3f}")
    print(f"  gap (closest impostor - farthest genuine): {result['gap']:+.3f}")
    closest, first, second = result["closest_strangers_read_any_way"]
    print(f"  closest strangers, each face read any way: {closest:.3f} ({first} | {second})")
    for label, key in (("confident (FAR 0)", "confident"), ("offered (FAR<=1%)", "offered"),
                       ("cluster (FAR 0)", "cluster")):
        t, r = result["thresholds_cosine"][key], result["rates"][key]
        print(f"  {label:22s} cosine <= {t:.3f} (L2 {result['thresholds_l2'][key]:.3f}): TAR {100 * r['tar']:.1f} %, "
              f"FAR {100 * r['far']:.3f} % ({r['false_accepts']} pairs)")
    print("  nearest impostors:", *(f"{d:.3f} {a} | {b}" for d, a, b in result["nearest_impostors"][:3]), sep="\n    ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="store SFace's calibration in calibration.json")
    parser.add_argument("--sface-only", action="store_true")
    args = parser.parse_args()
    faces, set_hash = load_set()
    sface = sface_calibration(faces, set_hash)
    report(f"SFace ({zoo.SFACE.name})", sface)
    report_sets(sface["sets"])
    for kind in ("photo", "video"):
        subset = [f for f in faces if f.kind == kind]
        result = calibrate(subset, embed_sface)
        report(f"SFace, {kind}s only", result)
        sface[f"{kind}s_only"] = {k: result[k] for k in ("embedded", "genuine_pairs", "impostor_pairs", "genuine",
                                                          "impostor", "gap", "thresholds_cosine", "rates")}
    if not args.sface_only:
        readable = calibrate(faces, embed_sface)["kept"]
        dlib = _dlib_view(calibrate(readable, embed_dlib, also_at=FACES_V2_THRESHOLDS))
        report("dlib ResNet (Faces v2), on the faces SFace embeds", dlib)
        old = dlib["rates"]["faces_v2_confident"]
        print(f"  in dlib's Euclidean distance: genuine {dlib['genuine_l2']['min']:.3f}-"
              f"{dlib['genuine_l2']['max']:.3f}, impostor {dlib['impostor_l2']['min']:.3f}-"
              f"{dlib['impostor_l2']['max']:.3f}; at Faces v2's confident 0.40: TAR {100 * old['tar']:.1f} %, "
              f"FAR {100 * old['far']:.2f} % ({old['false_accepts']} pairs)")
        sface["compared_with"] = {embeddings.DLIB_MODEL_NAME: {k: dlib[k] for k in (
            "embedded", "genuine", "impostor", "genuine_l2", "impostor_l2", "gap", "thresholds_cosine",
            "thresholds_l2", "rates", "ms_per_face")}}
    if args.write:
        CALIBRATION.write_text(json.dumps(sface, indent=1) + "\n")
        print(f"\nwritten: {CALIBRATION}")


if __name__ == "__main__":
    main()
