"""Groups of unnamed traces for the cast page: clustering's grouping, computed once and then kept.

The cast page shows unbound, not hidden traces grouped by likely person exactly as
``cluster_traces`` groups them (:func:`identities.suggestions.group_unbound_traces`: leader
clustering on the traces' mean vectors — their exemplar sets' means — at ``CLUSTER_DISTANCE``, calibrated
for set means; never two traces on screen at the
same time in one group, a trace without an embedding alone). Two things make that usable on a
page that must answer in well under 300 ms with 10 000 traces:

* **A faster, identical leader clustering** (:class:`Leader`). ``group_unbound_traces`` rebuilds
  the matrix of every cluster centre for every trace (14 s for 10 000 traces). Here the centres
  live in one growing matrix updated only where a trace joined, and each block of traces is
  compared with all centres by one matrix product; only the centres within reach (and those
  changed inside the block) are measured again with the very expression clustering uses, so the
  groups are the same (tests compare both on the demo traces and on random ones).
* **The grouping is kept** in Django's cache (shared by every process) with the set of traces
  it covers and, per group, the sum of its members' unit vectors. Each request reads the current
  set (one indexed query of small columns, no embeddings) and its fingerprint; when it differs,
  the kept grouping is carried over instead of recomputed, reading only the embeddings of the
  traces that moved: traces that left the set (named, hidden) leave their group and its sum, and
  traces that entered it (unbound, shown again, undone, newly detected) join the nearest group
  exactly as clustering adds a trace — within ``CLUSTER_DISTANCE`` of the group's mean, never on
  screen with a member — or start their own. Groups therefore do not reshuffle under the
  curator's hands; :func:`regroup` starts again from scratch, and so does a change of more than
  half the set or a trace that left by being deleted (re-detection). A trace that gains or loses
  its embedding counts as leaving and entering. An embedding replaced in place is not noticed
  until a regroup (re-detection makes new traces, so it does not happen in practice).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from django.core.cache import cache
from django.db.models import BooleanField, ExpressionWrapper
from django.db.models.functions import Coalesce

from identities.suggestions import CLUSTER_DISTANCE, comparable, unbound_traces
from media_api.faces.embeddings import EMBEDDING_DIM, from_bytes, normalise

#: The kept grouping belongs to one cluster distance: a new calibration (calibration.json) starts afresh.
CACHE_KEY = f"cast:groups:v2:{CLUSTER_DISTANCE}"
CACHE_SECONDS = 30 * 24 * 3600
#: Traces compared with every centre by one matrix product (small: centres changed inside a
#: block are measured one by one; 32 was fastest on 10 000 traces).
BLOCK = 32
#: Slack of the matrix-product pre-selection; every candidate is then measured exactly.
MARGIN = 1e-3
#: More entering traces than this share of the set: group everything again instead.
REGROUP_SHARE = 0.5

# --------------------------------------------------------------------------- leader clustering


class Leader:
    """Leader clustering as :func:`identities.suggestions._assign` does it, with the centres in one matrix.

    A trace joins the nearest cluster whose centre (normalised mean of its members) lies within
    ``threshold`` and none of whose members of the same file is on screen at the same time;
    otherwise it starts a cluster. Per trace, clustering measures
    ``np.linalg.norm(centres - vector, axis=1)``; here a block's matrix product picks the
    centres that could be that close (plus every centre changed since the block started) and
    only those are measured with the same expression, in the same float32 arithmetic.
    """

    def __init__(self, threshold: float = CLUSTER_DISTANCE, capacity: int = 64) -> None:
        self.threshold = threshold
        self.totals = np.zeros((capacity, EMBEDDING_DIM), dtype=np.float32)
        self.centres = np.zeros((capacity, EMBEDDING_DIM), dtype=np.float32)
        self.counts = np.zeros(capacity, dtype=np.int64)
        self.spans: list[list[tuple[int, int, int]]] = []
        self.size = 0
        # Cosine similarity a centre must reach to be within threshold (+ margin) of a unit vector.
        reach = threshold + MARGIN
        self._min_similarity = 1.0 - reach * reach / 2.0

    def _grow(self) -> None:
        capacity = 2 * len(self.counts)
        for name in ("totals", "centres"):
            grown = np.zeros((capacity, EMBEDDING_DIM), dtype=np.float32)
            grown[: self.size] = getattr(self, name)[: self.size]
            setattr(self, name, grown)
        counts = np.zeros(capacity, dtype=np.int64)
        counts[: self.size] = self.counts[: self.size]
        self.counts = counts

    def seed(self, totals: np.ndarray, counts: np.ndarray, spans: list[list[tuple[int, int, int]]]) -> None:
        """Start from existing clusters (their summed member vectors, sizes and member spans)."""
        while len(self.counts) < len(counts):
            self._grow()
        n = len(counts)
        self.totals[:n] = totals
        self.counts[:n] = counts
        for number in range(n):
            self.centres[number] = normalise(self.totals[number] / self.counts[number])
        self.spans = [list(s) for s in spans]
        self.size = n

    def _overlaps(self, cluster: int, file_id: int, start: int, end: int) -> bool:
        return any(f == file_id and s <= end and start <= e for f, s, e in self.spans[cluster])

    def _join(self, cluster: int | None, vector: np.ndarray, span: tuple[int, int, int]) -> int:
        if cluster is None:
            if self.size == len(self.counts):
                self._grow()
            cluster = self.size
            self.size += 1
            self.spans.append([])
        self.totals[cluster] += vector
        self.counts[cluster] += 1
        self.centres[cluster] = normalise(self.totals[cluster] / self.counts[cluster])
        self.spans[cluster].append(span)
        return cluster

    def assign(self, vectors: np.ndarray, spans: list[tuple[int, int, int]]) -> np.ndarray:
        """Cluster number of each vector (unit rows, in clustering order); clusters grow as they go."""
        labels = np.empty(len(vectors), dtype=np.int64)
        for first in range(0, len(vectors), BLOCK):
            block = vectors[first : first + BLOCK]
            known = self.size
            near = (block @ self.centres[:known].T) >= self._min_similarity if known else None
            changed: list[int] = []  # clusters changed or made inside this block: their products are stale
            for offset, vector in enumerate(block):
                candidates = np.flatnonzero(near[offset]) if near is not None else np.zeros(0, dtype=np.int64)
                if changed:  # a duplicate candidate is measured twice, which changes nothing
                    candidates = np.concatenate([candidates, np.array(changed, dtype=np.int64)])
                chosen = None
                if len(candidates):
                    distances = np.linalg.norm(self.centres[candidates] - vector, axis=1)
                    for index in np.lexsort((candidates, distances)):
                        if distances[index] > self.threshold:
                            break
                        cluster = int(candidates[index])
                        if not self._overlaps(cluster, *spans[first + offset]):
                            chosen = cluster
                            break
                chosen = self._join(chosen, vector, spans[first + offset])
                changed.append(chosen)
                labels[first + offset] = chosen
        return labels


def vectors_of(blobs: list[bytes | memoryview | None]) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors of the valid embeddings, as clustering normalises them; mask of the valid ones)."""
    valid = np.zeros(len(blobs), dtype=bool)
    vectors = []
    for position, blob in enumerate(blobs):
        vector = from_bytes(blob)
        if vector is not None:
            vectors.append(normalise(vector))
            valid[position] = True
    matrix = np.vstack(vectors) if vectors else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    return matrix, valid


def _span(row: tuple) -> tuple[int, int, int]:
    return row[2], row[3] or 0, row[4] or 0


def group_rows(rows: list[tuple]) -> list[list[int]]:
    """:func:`identities.suggestions.group_unbound_traces`, fast: same rows in, same groups out."""
    pks = [row[0] for row in rows]
    vectors, valid = vectors_of([row[1] for row in rows])
    spans = [_span(row) for row, ok in zip(rows, valid, strict=True) if ok]
    labels = Leader().assign(vectors, spans)
    groups: list[list[int]] = [[] for _ in range(int(labels.max()) + 1 if len(labels) else 0)]
    for pk, label in zip(np.asarray(pks)[valid].tolist(), labels.tolist(), strict=True):
        groups[label].append(pk)
    return groups + [[pk] for pk, ok in zip(pks, valid.tolist(), strict=True) if not ok]


# --------------------------------------------------------------------------- the kept grouping


@dataclass(frozen=True)
class UnnamedSet:
    """The traces waiting for a name, in clustering order (file, start frame, trace id)."""

    pks: np.ndarray
    file_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    face_counts: np.ndarray
    has_embedding: np.ndarray

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.pks.astype("<i8").tobytes())
        digest.update(self.has_embedding.astype(np.uint8).tobytes())
        return digest.hexdigest()

    def span(self, position: int) -> tuple[int, int, int]:
        return int(self.file_ids[position]), int(self.starts[position]), int(self.ends[position])


def unnamed_set() -> UnnamedSet:
    """One query, small columns only: unbound, not hidden traces across files."""
    rows = list(unbound_traces().order_by("file_id", "start_frame", "trace_id").annotate(
        has_embedding=ExpressionWrapper(comparable(), output_field=BooleanField()),
        first=Coalesce("start_frame", 0), last=Coalesce("end_frame", 0),
    ).values_list("pk", "file_id", "first", "last", "face_count", "has_embedding"))
    table = np.array(rows, dtype=np.int64).reshape(-1, 6)
    return UnnamedSet(*(table[:, column].copy() for column in range(5)), table[:, 5].astype(bool))


@dataclass(frozen=True)
class Sums:
    """Per group with an embedding: its label, the sum of its members' unit vectors and their number.

    Kept with the labels so that carrying a grouping over reads the embeddings of the traces
    that left or entered only, not those of every waiting trace.
    """

    labels: np.ndarray
    totals: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, vectors: np.ndarray) -> Sums:
        keys, inverse = np.unique(labels, return_inverse=True)
        totals = np.zeros((len(keys), EMBEDDING_DIM), dtype=np.float32)
        np.add.at(totals, inverse, vectors)
        return cls(keys, totals, np.bincount(inverse, minlength=len(keys)).astype(np.int64))


@dataclass(frozen=True)
class Grouping:
    """Group label of each trace of an :class:`UnnamedSet` (same order)."""

    unnamed: UnnamedSet
    labels: np.ndarray
    #: How the grouping was obtained: "kept", "carried" (over from a previous set) or "grouped".
    how: str = "kept"


def _embeddings(pks: np.ndarray) -> dict[int, bytes]:
    from media_api.models import Trace

    if not len(pks):
        return {}
    return dict(Trace.objects.filter(comparable(), pk__in=pks.tolist()).values_list("pk", "embedding"))


def _group_all(unnamed: UnnamedSet) -> tuple[np.ndarray, Sums]:
    blobs = _embeddings(unnamed.pks)
    vectors, valid = vectors_of([blobs.get(pk) for pk in unnamed.pks.tolist()])
    labels = np.empty(len(unnamed.pks), dtype=np.int64)
    positions = np.flatnonzero(valid)
    grouped = Leader().assign(vectors, [unnamed.span(p) for p in positions.tolist()])
    labels[positions] = grouped
    alone = np.flatnonzero(~valid)  # a trace without an embedding is a group of its own
    labels[alone] = (int(grouped.max()) + 1 if len(grouped) else 0) + np.arange(len(alone))
    return labels, Sums.of(grouped, vectors)


def _match(unnamed: UnnamedSet, kept: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mask of traces already in the kept grouping, with the same embedding state; their kept labels)."""
    old_pks = kept["pks"]
    if len(old_pks) == 0:
        return np.zeros(len(unnamed.pks), dtype=bool), np.full(len(unnamed.pks), -1, dtype=np.int64)
    order = np.argsort(old_pks)
    at = order[np.searchsorted(old_pks[order], unnamed.pks).clip(max=len(old_pks) - 1)]
    found = (old_pks[at] == unnamed.pks) & (kept["has_embedding"][at] == unnamed.has_embedding)
    return found, np.where(found, kept["labels"][at], -1)


def _carry_over(unnamed: UnnamedSet, kept: dict) -> tuple[np.ndarray, Sums] | None:
    """Labels (and group sums) for ``unnamed`` from a kept grouping of another set (None: group again)."""
    found, labels = _match(unnamed, kept)
    staying = found & unnamed.has_embedding  # only traces with an embedding are in the sums
    old_with = kept["has_embedding"]
    left = old_with & ~np.isin(kept["pks"], unnamed.pks[staying])
    leaving_pks, leaving_labels = kept["pks"][left], kept["labels"][left]
    joining = np.flatnonzero(~found & unnamed.has_embedding)
    if (~found).sum() > REGROUP_SHARE * len(unnamed.pks) or len(leaving_pks) > REGROUP_SHARE * max(1, len(old_with)):
        return None
    blobs = _embeddings(np.concatenate([leaving_pks, unnamed.pks[joining]]))
    if any(pk not in blobs for pk in leaving_pks.tolist()):
        return None  # deleted (re-detection): its vector cannot be taken out of the sums
    sums: Sums = kept["sums"]
    totals, counts = sums.totals.copy(), sums.counts.copy()
    if len(leaving_pks):
        out, _ = vectors_of([blobs[pk] for pk in leaving_pks.tolist()])
        index = np.searchsorted(sums.labels, leaving_labels)
        np.subtract.at(totals, index, out)
        np.subtract.at(counts, index, 1)
    alive = counts > 0
    keys, totals, counts = sums.labels[alive], totals[alive], counts[alive]
    # Entering traces join the groups as they are now (centres and spans of the current members)
    # exactly as clustering adds a trace; those without an embedding stay alone.
    spans: list[list[tuple[int, int, int]]] = [[] for _ in keys]
    members = np.flatnonzero(staying)
    for position, cluster in zip(members.tolist(), np.searchsorted(keys, labels[members]).tolist(), strict=True):
        spans[cluster].append(unnamed.span(position))
    leader = Leader(capacity=max(64, len(keys) + len(joining) + 1))
    leader.seed(totals, counts, spans)
    vectors, _ = vectors_of([blobs[pk] for pk in unnamed.pks[joining].tolist()])
    joined = leader.assign(vectors, [unnamed.span(p) for p in joining.tolist()])
    next_label = int(max(labels.max(initial=-1), kept["labels"].max(initial=-1))) + 1
    all_keys = np.concatenate([keys, next_label + np.arange(leader.size - len(keys), dtype=np.int64)])
    labels[joining] = all_keys[joined]
    alone = np.flatnonzero(~found & ~unnamed.has_embedding)
    labels[alone] = int(max(labels.max(initial=-1), all_keys.max(initial=-1))) + 1 + np.arange(len(alone))
    order = np.argsort(all_keys)
    return labels, Sums(all_keys[order], leader.totals[: leader.size][order].copy(),
                        leader.counts[: leader.size][order].copy())


def current_grouping() -> Grouping:
    """The kept grouping of the traces waiting for a name, carried over to the current set if needed."""
    unnamed = unnamed_set()
    fingerprint = unnamed.fingerprint()
    kept = cache.get(CACHE_KEY)
    if kept is not None and kept.get("fingerprint") == fingerprint:
        return Grouping(unnamed, kept["labels"], "kept")
    carried = _carry_over(unnamed, kept) if kept is not None and "sums" in kept else None
    how = "carried"
    if carried is None:
        carried, how = _group_all(unnamed), "grouped"
    labels, sums = carried
    cache.set(CACHE_KEY, {"fingerprint": fingerprint, "pks": unnamed.pks, "labels": labels,
                          "has_embedding": unnamed.has_embedding, "sums": sums}, CACHE_SECONDS)
    return Grouping(unnamed, labels, how)


def regroup() -> None:
    """Forget the kept grouping: the next request groups every trace again, as clustering would."""
    cache.delete(CACHE_KEY)
