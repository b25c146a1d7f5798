"""Same-person thresholds of the face embedding, as measured on the identity-labelled set.

``calibration.json`` next to this file is written by ``bench/eval_identity.py --write`` from
bench/identity_set/ (200 faces of 50 people: public photos and the demo clips' known people,
provenance in its README). It records the model and its sha256, the set's hash, the genuine and
impostor distance distributions, and three thresholds chosen by false-accept rate on that set:

- **confident** — at most 0.1 % of different-person pairs closer: a suggestion this close may be
  accepted in one click;
- **offered** — at most 1 % closer: the top of the weak band (shown, marked not confident);
- **cluster** — no different-person pair closer at all: clustering joins traces with nobody
  looking, so it only joins what the set never confused.

Distances in the code are Euclidean between unit vectors (``np.linalg.norm(a - b)``), so the
``*_DISTANCE`` constants are the set's cosine thresholds converted with ``sqrt(2 * cosine)``.
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
