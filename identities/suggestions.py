"""Identity suggestions for a trace and clustering of unbound traces, by face-embedding distance.

Every trace made by the built-in pipeline keeps its evidence: up to four unit SFace vectors of its
best, most different faces (``Trace.exemplars``, see :mod:`media_api.faces.exemplars`) and their
quality-weighted mean (``Trace.embedding``), with the model's name (``Trace.embedding_model``).
Only embeddings of the pipeline's current model are compared (:func:`comparable`): a trace
embedded by another model (dlib's, before Faces v3) counts as having none until it is embedded
again. Distances are Euclidean between unit vectors (0 = identical, 2 = opposite),
``sqrt(2 * cosine distance)``.

* **Suggestions** compare exemplar sets by their closest pair (min linkage): a person's face most
  like this one, in the conditions most like these — a wide shot meets the person's wide shots, a
  three-quarter face their three-quarter faces. A trace without exemplars is the set of its mean.
* **Clustering** compares set means (centroid linkage): a group's reach does not grow with each
  member the way a closest-pair rule would (which chains strangers together).

The thresholds are measured, not chosen: ``media_api/faces/calibration.py`` derives them from an
identity-labelled set of 487 faces of 106 people (bench/identity_set/, ``bench/eval_identity.py``;
docs/faces.md) and exemplar sets simulated from it: **confident** lets no different-person set pair
through (one click in the admin: with N people named, any per-pair false-accept rate p would give an
unnamed person about N x p chance of a confident stranger), **offered** at most 1 % (the weak band
between them is shown, marked not confident; farther is not offered: "no confident match"), and
**clustering** joins only what no different-person pair of sets came close to. A test recomputes
them from the set. Faces YuNet cannot read (profiles, blur, darkness) and tiny ones get no
embedding at all rather than a misleading one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.db.models import Q, QuerySet

from identities.models import Identity
from media_api.faces import calibration, exemplars
from media_api.faces.embeddings import EMBEDDING_DIM, MODEL_NAME, from_bytes, normalise
from media_api.models import Trace

#: Suggestions farther than this (closest pair of exemplars) are not offered at all ("no confident match"):
#: FAR ≤ 1 % of the simulated set pairs.
SUGGESTION_MAX_DISTANCE = calibration.SET_OFFERED_DISTANCE
#: Suggestions this close are confident, the curator may accept them in one click: FAR 0 (open-set).
CONFIDENT_DISTANCE = calibration.SET_CONFIDENT_DISTANCE
#: Unbound traces whose mean is closer than this to a cluster's mean join the cluster: no false accept
#: among the simulated set pairs.
CLUSTER_DISTANCE = calibration.SET_CLUSTER_DISTANCE
AUTO_NAME_PREFIX = "Unnamed person"


@dataclass(frozen=True)
class Suggestion:
    identity_uuid: str
    name: str
    distance: float

    @property
    def confident(self) -> bool:
        return self.distance <= CONFIDENT_DISTANCE


def comparable() -> Q:
    """Traces whose embedding can be compared with new ones: present and made by the current model."""
    return Q(embedding__isnull=False, embedding_model=MODEL_NAME)


def has_comparable_embedding(trace: Trace) -> bool:
    return trace.embedding is not None and trace.embedding_model == MODEL_NAME


def _named_identities() -> Q:
    """Identities a person has named: active, and not an unconfirmed automatic cluster."""
    return Q(identity__isnull=False) & ~Q(identity__status=Identity.Status.INACTIVE) & ~Q(
        identity__source=Identity.Source.AUTO, identity__status=Identity.Status.PENDING)


def unbound_traces() -> QuerySet[Trace]:
    """Traces waiting for a name: unbound and not hidden (``Trace.ignored``, "not a face").

    Hidden traces are kept but never clustered, grouped or used as evidence; callers of
    :func:`group_unbound_traces` read their rows from here.
    """
    return Trace.objects.filter(identity__isnull=True, ignored=False)


def trace_set(trace: Trace) -> np.ndarray | None:
    """The trace's exemplar set (unit rows), or None without a comparable embedding."""
    if not has_comparable_embedding(trace):
        return None
    return exemplars.of_trace(trace.exemplars, trace.embedding)


def suggest_identities(trace: Trace, limit: int = 5, max_distance: float = SUGGESTION_MAX_DISTANCE,
                       scope: Q | None = None) -> list[Suggestion]:
    """Named identities nearest to ``trace``: the closest pair of exemplars, this trace's against theirs.

    Every exemplar of every bound trace of the identity counts (min linkage), so an identity seen
    in very different conditions (a wide shot and a close-up) still matches either. One query
    loads the exemplars of bound traces (up to 2 KB each), one matrix product compares them all;
    see docs/faces.md for the scale note. ``scope`` (:func:`media_api.selectors.scope_filter` on
    ``file_id``) limits the evidence to traces in files the caller may see, so a scoped key never
    learns who is in other files.
    """
    query = trace_set(trace)
    if query is None:
        return []
    candidates = Trace.objects.filter(_named_identities(), comparable(), ignored=False).exclude(pk=trace.pk)
    if scope is not None:
        candidates = candidates.filter(scope)
    rows = list(candidates.order_by().values_list("identity_id", "exemplars", "embedding"))
    if not rows:
        return []
    sets, owners, identity_of = [], [], []
    for identity_id, packed, blob in rows:
        matrix = exemplars.of_trace(packed, blob)
        if matrix is None:
            continue
        owners.append(np.full(len(matrix), len(identity_of)))
        identity_of.append(identity_id)
        sets.append(matrix)
    if not sets:
        return []
    distances = exemplars.set_distances(query, np.vstack(sets), np.concatenate(owners), len(identity_of))
    best: dict[int, float] = {}
    for identity_id, distance in zip(identity_of, distances.tolist(), strict=True):
        if distance <= max_distance and distance < best.get(identity_id, np.inf):
            best[identity_id] = distance
    from identities.constraints import excluded_identities  # "not this person" (cast page ×)

    not_them = excluded_identities([trace.pk]).get(trace.pk, set())
    nearest = sorted((item for item in best.items() if item[0] not in not_them), key=lambda item: item[1])[:limit]
    identities = Identity.objects.in_bulk([identity_id for identity_id, _ in nearest])
    return [Suggestion(identities[i].identity_uuid, identities[i].name, round(d, 4)) for i, d in nearest]


@dataclass
class _Cluster:
    identity: Identity | None
    total: np.ndarray
    count: int
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # (file_id, start, end)
    new_trace_pks: list[int] = field(default_factory=list)

    def centre(self) -> np.ndarray:
        return normalise(self.total / self.count)

    def overlaps(self, file_id: int, start: int, end: int) -> bool:
        """True when a member trace of the same file is on screen at the same time (a different person)."""
        return any(f == file_id and s <= end and start <= e for f, s, e in self.spans)


@dataclass
class ClusterResult:
    traces_considered: int
    identities_created: int
    traces_bound: int
    traces_joined_existing: int


def _seed_clusters() -> list[_Cluster]:
    """Existing pending automatic identities, so new traces join them instead of duplicating them."""
    rows = Trace.objects.filter(comparable(), identity__source=Identity.Source.AUTO,
                                identity__status=Identity.Status.PENDING, ignored=False).values_list(
        "identity_id", "embedding", "file_id", "start_frame", "end_frame")
    clusters: dict[int, _Cluster] = {}
    for identity_id, blob, file_id, start, end in rows:
        vector = from_bytes(blob)
        if vector is None:
            continue
        cluster = clusters.get(identity_id)
        if cluster is None:
            cluster = clusters[identity_id] = _Cluster(identity=None, total=np.zeros(EMBEDDING_DIM, np.float32),
                                                       count=0)
        cluster.total += vector
        cluster.count += 1
        cluster.spans.append((file_id, start or 0, end or 0))
    identities = Identity.objects.in_bulk(list(clusters))
    for identity_id, cluster in clusters.items():
        cluster.identity = identities[identity_id]
    return list(clusters.values())


def _assign(clusters: list[_Cluster], traces: list[tuple[int, np.ndarray, int, int, int]],
            threshold: float) -> None:
    """Leader clustering: each trace joins the nearest compatible cluster within ``threshold``."""
    for pk, vector, file_id, start, end in traces:
        chosen = None
        if clusters:
            centres = np.vstack([c.centre() for c in clusters])
            distances = np.linalg.norm(centres - vector, axis=1)
            for index in np.argsort(distances):
                if distances[index] > threshold:
                    break
                if not clusters[index].overlaps(file_id, start, end):
                    chosen = clusters[index]
                    break
        if chosen is None:
            chosen = _Cluster(identity=None, total=np.zeros(EMBEDDING_DIM, np.float32), count=0)
            clusters.append(chosen)
        chosen.total += vector
        chosen.count += 1
        chosen.spans.append((file_id, start, end))
        chosen.new_trace_pks.append(pk)


TraceRow = tuple[int, bytes | memoryview | None, int, int | None, int | None]


def _with_vectors(rows: Iterable[TraceRow]) -> tuple[list[tuple[int, np.ndarray, int, int, int]], list[int]]:
    """(traces with a usable embedding, normalised, as :func:`_assign` takes them; pks of the others)."""
    traces, without = [], []
    for pk, blob, file_id, start, end in rows:
        vector = from_bytes(blob)
        if vector is not None:
            traces.append((pk, normalise(vector), file_id, start or 0, end or 0))
        else:
            without.append(pk)
    return traces, without


def group_unbound_traces(rows: Iterable[TraceRow], threshold: float = CLUSTER_DISTANCE) -> list[list[int]]:
    """How clustering would group these traces among themselves, without writing anything.

    ``rows`` are ``(pk, embedding, file_id, start_frame, end_frame)`` in the order clustering
    reads them (file, start frame, trace id). The same leader clustering as
    :func:`cluster_unbound_traces` (no two traces on screen at the same time in one group), but
    no existing pending cluster is joined and no minimum size applies: each group is a list of
    pks, and a trace without an embedding is a group of its own. The cast graph shows unbound
    traces this way (:func:`identities.cooccurrence.cast_graph`). Hidden traces are not
    grouped: read the rows from :func:`unbound_traces`.
    """
    traces, without = _with_vectors(rows)
    clusters: list[_Cluster] = []
    _assign(clusters, traces, threshold)
    return [cluster.new_trace_pks for cluster in clusters] + [[pk] for pk in without]


def cluster_unbound_traces(threshold: float = CLUSTER_DISTANCE, min_size: int = 2, user=None) -> ClusterResult:
    """Group unbound traces (across files, hidden ones left out) into ``pending`` identities with source ``auto``.

    Traces of the same file that are on screen at the same time are never put together.
    A new cluster needs ``min_size`` traces to become an identity (one trace is nothing to
    name "once"); traces near an existing pending cluster join it. Bindings go through
    :func:`identities.curation.bind_traces`, so they show in the identity's history and can be undone.
    """
    from identities.constraints import admissible
    from identities.curation import bind_traces

    rows = list(unbound_traces().filter(comparable())
                .order_by("file_id", "start_frame", "trace_id")
                .values_list("pk", "embedding", "file_id", "start_frame", "end_frame"))
    traces, _ = _with_vectors(rows)
    clusters = _seed_clusters()
    _assign(clusters, traces, threshold)
    created = bound = joined = 0
    with transaction.atomic():
        number = Identity.objects.filter(source=Identity.Source.AUTO).count()
        for cluster in clusters:
            # "Not this person" (cast page ×): never bound to a person they are not, nor with a kept-apart trace.
            cluster.new_trace_pks = admissible(cluster.new_trace_pks,
                                               cluster.identity.pk if cluster.identity is not None else None)
            if not cluster.new_trace_pks:
                continue
            if cluster.identity is None:
                if len(cluster.new_trace_pks) < min_size:
                    continue
                number += 1
                cluster.identity = Identity.objects.create(
                    name=f"{AUTO_NAME_PREFIX} {number}", source=Identity.Source.AUTO,
                    status=Identity.Status.PENDING,
                    metadata={"cluster": {"created_by": "cluster_traces", "threshold": threshold}})
                created += 1
            else:
                joined += len(cluster.new_trace_pks)
            bind_traces(cluster.identity, cluster.new_trace_pks, user)
            bound += len(cluster.new_trace_pks)
    return ClusterResult(traces_considered=len(traces), identities_created=created, traces_bound=bound,
                         traces_joined_existing=joined)
