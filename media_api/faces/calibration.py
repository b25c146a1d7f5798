"""Same-person thresholds of the face embedding, as measured on the identity-labelled set.

``calibration.json`` next to this file is written by ``bench/eval_identity.py --write`` from
bench/identity_set/ (487 faces of 106 people: public photos and the demo clips' known people,
provenance in its README). It records the model and its sha256, the set's hash, the genuine and
impostor distance distributions, and three thresholds chosen by false-accept rate on that set:

- **confident** — no different-person pair closer at all (FAR 0), each face read any of four ways (as
  stored, re-compressed, at 3/4 size, its box moved: ``bench/eval_identity.READINGS``, as a pipeline's
  reading of a face varies): a suggestion this close may be
  accepted in one click. The use is open-set (the person on screen may be named nowhere while
  everybody else is), and with N people named a per-pair FAR p gives such a stranger about N x p
  chance of a confident wrong name, so only the closest different-person distance measured is safe;
- **offered** — at most 1 % closer: the top of the weak band (shown, marked not confident);
- **cluster** — no different-person pair closer at all, read any way: clustering joins traces with nobody
  looking, so it only joins what the set never confused.

Distances in the code are Euclidean between unit vectors (``np.linalg.norm(a - b)``), so the
``*_DISTANCE`` constants are the set's cosine thresholds converted with ``sqrt(2 * cosine)``.
Traces are compared as **exemplar sets** (``media_api.faces.exemplars``): a few vectors per trace.
The record's ``sets`` part holds thresholds measured the same way on exemplar sets simulated from
the identity set (1-4 faces of one person against 1-4 of another session of the same person, or of
anyone else; seeded, reproducible) for two linkages: ``min`` (the closest pair of exemplars:
suggestions, :data:`SET_CONFIDENT_DISTANCE` / :data:`SET_OFFERED_DISTANCE`) and ``centroid`` (the
sets' means: clustering, :data:`SET_CLUSTER_DISTANCE`). The single-face thresholds remain for
comparing one face's vector with another's (the joining of a track's pieces, re-detection).
``tests/test_identity_calibration.py`` recomputes everything from the committed set and fails when
this file drifts from it. The thresholds belong to one model: loading them checks that the
calibrated model is the one the pipeline embeds with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from media_api.faces import zoo

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"


class CalibrationMismatch(RuntimeError):
    """calibration.json was measured with another model than the vendored one."""


def load(path: Path = CALIBRATION_FILE) -> dict:
    """The calibration record, checked against the vendored SFace model."""
    data = json.loads(path.read_text())
    if data["model"] != zoo.SFACE.name or data["model_sha256"] != zoo.SFACE.sha256:
        raise CalibrationMismatch(f"{path} is for {data['model']} ({data['model_sha256'][:12]}…), the pipeline "
                                  f"embeds with {zoo.SFACE.name} ({zoo.SFACE.sha256[:12]}…): run "
                                  "bench/eval_identity.py --write")
    return data


def cosine_to_l2(cosine: float) -> float:
    """Euclidean distance between unit vectors whose cosine distance (1 - cos) is ``cosine``."""
    return math.sqrt(2.0 * cosine)


CALIBRATION = load()
#: The model these thresholds are for (``Trace.embedding_model`` of comparable embeddings).
MODEL = CALIBRATION["model"]
#: Cosine-distance thresholds, as measured (see the module docstring).
CONFIDENT_COSINE = CALIBRATION["thresholds_cosine"]["confident"]
OFFERED_COSINE = CALIBRATION["thresholds_cosine"]["offered"]
CLUSTER_COSINE = CALIBRATION["thresholds_cosine"]["cluster"]


def _l2_threshold(cosine: float) -> float:
    """The Euclidean threshold for a cosine one, rounded down to 4 decimals (never accepting more)."""
    return math.floor(cosine_to_l2(cosine) * 10_000) / 10_000


#: The same as Euclidean distances between unit vectors: what suggestions and clustering compare.
CONFIDENT_DISTANCE = _l2_threshold(CONFIDENT_COSINE)
OFFERED_DISTANCE = _l2_threshold(OFFERED_COSINE)
CLUSTER_DISTANCE = _l2_threshold(CLUSTER_COSINE)
#: Exemplar sets, min linkage (closest pair of exemplars): FAR 0 / <= 1 % of simulated set pairs.
SET_CONFIDENT_DISTANCE = _l2_threshold(CALIBRATION["sets"]["min"]["thresholds_cosine"]["confident"])
SET_OFFERED_DISTANCE = _l2_threshold(CALIBRATION["sets"]["min"]["thresholds_cosine"]["offered"])
#: Exemplar sets, centroid linkage (distance between the sets' unit means): no simulated pair of
#: different people's sets this close. Clustering's linkage.
SET_CLUSTER_DISTANCE = _l2_threshold(CALIBRATION["sets"]["centroid"]["thresholds_cosine"]["cluster"])
