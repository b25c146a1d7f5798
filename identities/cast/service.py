"""The cast page's reads and writes: groups of unnamed faces, named people, one-step naming.

Reads build one page of groups from the kept grouping (:mod:`identities.cast.grouping`) with a
constant number of queries whatever the number of traces: the unnamed set (small columns), the
pending clusters, the page's traces with their embeddings and presence, the evidence for
suggestions, the named people and their traces, the hidden count. Screen time comes from the
traces' presence and the file's frame clock, like the cast graph (:mod:`identities.cooccurrence`).

Writes go through :mod:`identities.curation`, so every one is recorded and undoable. A group is
named only with the traces that are still waiting for a name (unbound or in a pending cluster,
not hidden): a trace someone named meanwhile is left alone and reported, never taken away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.urls import reverse

from identities import constraints, curation, names
from identities.cast import grouping
from identities.cooccurrence import FrameClock, merge_runs
from identities.models import CurationChange, Identity
from identities.selectors import search
from identities.services import namesake
from identities.suggestions import SUGGESTION_MAX_DISTANCE, Suggestion, _named_identities, comparable
from media_api.faces.embeddings import EMBEDDING_DIM
from media_api.models import MediaFile, Trace
from media_api.services.presence import decode_many
from momentry.errors import BadRequest, Conflict, NotFound
from momentry.models import UserScope
from momentry.text import count

GROUPS_PER_PAGE = 40
#: Faces shown per group; the rest behind "+N more" (all of them are named with the group).
FACES_PER_GROUP = 12
#: Most tiles in a row of one group's card.
COLUMNS = 6
NAMED_SHOWN = 60
HIDDEN_SHOWN = 200
SUGGESTIONS_PER_GROUP = 2
#: Traces one request may act on (SQLite takes 32 766 values in a statement).
MAX_TRACES = 10_000
NAME_MAX_LENGTH = names.MAX_LENGTH

PENDING_CLUSTER = Q(identity__source=Identity.Source.AUTO, identity__status=Identity.Status.PENDING)
#: Traces waiting for a name: unbound or in a pending cluster made by ``cluster_traces``, and not hidden.
WAITING = (Q(identity__isnull=True) | PENDING_CLUSTER) & Q(ignored=False)


# --------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """What a page shows: one file or all, within the user's file scope (``files`` None: every file)."""

    media_file: MediaFile | None = None
    files: frozenset[int] | None = None

    def q(self, field_name: str = "file_id") -> Q:
        q = Q()
        if self.media_file is not None:
            q &= Q(**{field_name: self.media_file.pk})
        if self.files is not None:
            q &= Q(**{f"{field_name}__in": sorted(self.files)})
        return q

    def mask(self, file_ids: np.ndarray) -> np.ndarray:
        keep = np.ones(len(file_ids), dtype=bool)
        if self.media_file is not None:
            keep &= file_ids == self.media_file.pk
        if self.files is not None:
            keep &= np.isin(file_ids, np.fromiter(self.files, dtype=np.int64, count=len(self.files)))
        return keep


def scope_for(user: Any, media_file: MediaFile | None = None) -> Scope:
    """The user's file scope (``momentry.models.UserScope``) applies here as on every API route."""
    files = None
    if getattr(user, "pk", None) is not None:
        rows = list(UserScope.objects.filter(user_id=user.pk).values_list("files", flat=True))
        if rows:
            files = frozenset(pk for pk in rows if pk is not None)
    return Scope(media_file, files)


# --------------------------------------------------------------------------- what a page shows


@dataclass(frozen=True)
class Tile:
    """One trace's face on the page."""

    pk: int
    trace_id: int
    file_uuid: str
    file_name: str
    start_frame: int | None
    end_frame: int | None
    face_count: int
    start_seconds: float

    @property
    def start_text(self) -> str:
        return f"{self.start_seconds:.1f}"

    @property
    def thumbnail_url(self) -> str:
        return f"/api/v1/file/{self.file_uuid}/trace/{self.trace_id}/thumbnail"

    @property
    def clip_url(self) -> str:
        return f"/api/v1/file/{self.file_uuid}/trace/{self.trace_id}/video"

    @property
    def player_url(self) -> str:
        """The original video at the trace's first frame (a media fragment: the route serves ranges)."""
        return f"/api/v1/file/{self.file_uuid}/video#t={self.start_seconds:.3f}"

    @property
    def admin_url(self) -> str:
        return reverse("admin:media_api_trace_change", args=[self.pk])

    def as_json(self) -> dict[str, Any]:
        return {"pk": self.pk, "trace_id": self.trace_id, "file_uuid": self.file_uuid, "file_name": self.file_name,
                "start_frame": self.start_frame, "end_frame": self.end_frame, "face_count": self.face_count,
                "start_seconds": round(self.start_seconds, 3), "thumbnail_url": self.thumbnail_url,
                "clip_url": self.clip_url, "player_url": self.player_url}


@dataclass(frozen=True)
class Chip(Suggestion):
    """A suggested person for a group: confident (one click) or weak (shown as such)."""

    @property
    def distance_text(self) -> str:
        return f"{self.distance:.2f}"

    def as_json(self) -> dict[str, Any]:
        return {"identity_uuid": self.identity_uuid, "name": self.name, "distance": round(self.distance, 4),
                "confident": self.confident}


@dataclass
class Group:
    """Unnamed traces that are likely one person, best faces first."""

    key: str
    pks: list[int]
    tiles: list[Tile] = field(default_factory=list)
    screen_seconds: float = 0.0
    suggestions: list[Chip] = field(default_factory=list)
    #: The pending identity of a cluster made by ``cluster_traces`` (None: grouped on the page).
    cluster_name: str | None = None
    #: Distance between its two least alike faces (None: fewer than two with an embedding).
    spread: float | None = None

    @property
    def doubtful(self) -> bool:
        """Two of its faces are farther apart than any suggestion is offered: check it before naming."""
        return self.spread is not None and self.spread > SUGGESTION_MAX_DISTANCE

    @property
    def spread_text(self) -> str:
        return f"{self.spread:.2f}" if self.spread is not None else ""

    @property
    def trace_count(self) -> int:
        return len(self.pks)

    @property
    def seconds_text(self) -> str:
        return f"{self.screen_seconds:.1f}"

    @property
    def more(self) -> int:
        return len(self.pks) - len(self.tiles)

    @property
    def columns(self) -> int:
        """Tiles per row of the group's card (the "+N more" button takes a place)."""
        return max(1, min(COLUMNS, len(self.tiles) + (1 if self.more else 0)))

    @property
    def hidden_pks(self) -> list[int]:
        """Members behind "+N more"."""
        return self.pks[len(self.tiles):]


@dataclass
class NamedPerson:
    pk: int
    identity_uuid: str
    name: str
    status: str
    trace_count: int
    screen_seconds: float = 0.0
    face: Tile | None = None

    @property
    def admin_url(self) -> str:
        return reverse("admin:identities_identity_change", args=[self.pk])

    @property
    def seconds_text(self) -> str:
        return f"{self.screen_seconds:.1f}"


@dataclass
class CastPage:
    scope: Scope
    groups: list[Group]
    page_number: int
    num_pages: int
    group_count: int
    unnamed_count: int
    named: list[NamedPerson]
    named_count: int
    hidden_count: int
    hidden: list[Tile] | None = None
    grouping: str = "kept"

    @property
    def tile_count(self) -> int:
        return sum(len(group.tiles) for group in self.groups)


# --------------------------------------------------------------------------- trace details


_DETAIL_COLUMNS = ("pk", "trace_id", "file_id", "file__file_uuid", "file__name", "file__fps", "file__total_frames",
                   "start_frame", "end_frame", "face_count", "presence")
#: Members whose embeddings make a group's face for suggestions (best faces first): enough for a
#: steady mean, and a page of big groups reads a few hundred embeddings rather than thousands.
CENTRE_SAMPLE = 24


@dataclass(frozen=True)
class _Row:
    pk: int
    trace_id: int
    file_id: int
    file_uuid: str
    file_name: str
    fps: float
    total_frames: int
    start_frame: int | None
    end_frame: int | None
    face_count: int
    presence: Any


def _details(pks: Iterable[int], extra: Q | None = None) -> dict[int, _Row]:
    """One query: what tiles, screen time and suggestions need for these traces."""
    wanted = list(dict.fromkeys(pks))
    if not wanted:
        return {}
    queryset = Trace.objects.filter(pk__in=wanted)
    if extra is not None:
        queryset = queryset.filter(extra)
    return {row[0]: _Row(*row) for row in queryset.order_by().values_list(*_DETAIL_COLUMNS)}


def _embeddings(pks: Iterable[int]) -> dict[int, Any]:
    wanted = list(dict.fromkeys(pks))
    if not wanted:
        return {}
    return dict(Trace.objects.filter(comparable(), pk__in=wanted).order_by().values_list("pk", "embedding"))


def _clock(row: _Row) -> FrameClock:
    return FrameClock.for_columns(row.file_id, row.file_uuid, row.fps, row.total_frames)


def _at(clock: FrameClock, frame: int | None) -> float:
    if frame is None:
        return 0.0
    return clock.at(min(max(frame, 0), len(clock.cumulative) - 1))


def _tile(row: _Row) -> Tile:
    return Tile(row.pk, row.trace_id, row.file_uuid, row.file_name, row.start_frame, row.end_frame, row.face_count,
                _at(_clock(row), row.start_frame))


def _screen_seconds(rows: dict[int, _Row], groups: Sequence[Sequence[int]]) -> list[float]:
    """Seconds each group is on screen: its traces' presence merged per file, timed by the file's frames."""
    owner_group, blobs, owner_file = [], [], []
    file_number: dict[int, int] = {}
    sample: dict[int, _Row] = {}
    for number, members in enumerate(groups):
        for pk in members:
            row = rows.get(pk)
            if row is None or row.presence is None:
                continue
            owner_group.append(number)
            owner_file.append(file_number.setdefault(row.file_id, len(file_number)))
            sample.setdefault(row.file_id, row)
            blobs.append(row.presence)
    seconds = np.zeros(len(groups))
    if not blobs:
        return seconds.tolist()
    table = decode_many(blobs)
    files = len(file_number)
    key = np.asarray(owner_group, dtype=np.int64)[table.owner] * files + np.asarray(owner_file,
                                                                                  dtype=np.int64)[table.owner]
    intervals = merge_runs(key, table.start, table.end)
    for file_id, number in file_number.items():
        mine = intervals.group % files == number
        cumulative = _clock(sample[file_id]).cumulative
        hi = np.minimum(intervals.end[mine], len(cumulative) - 1)
        lo = np.minimum(intervals.start[mine], hi)
        np.add.at(seconds, intervals.group[mine] // files, cumulative[hi] - cumulative[lo])
    return seconds.tolist()


# --------------------------------------------------------------------------- suggestions


@dataclass(frozen=True)
class _Evidence:
    """Exemplars of named people's traces, sorted by identity (the same evidence as suggest_identities)."""

    vectors: np.ndarray
    identity_ids: np.ndarray
    starts: np.ndarray  # first row of each identity

    @classmethod
    def load(cls) -> _Evidence:
        """Every exemplar of every named trace (its mean where it has none), one row each, by identity."""
        rows = list(Trace.objects.filter(_named_identities(), comparable(), ignored=False)
                    .order_by("identity_id").values_list("identity_id", "exemplars", "embedding"))
        size = EMBEDDING_DIM * 4
        # Per trace: its packed exemplars when valid, else its one mean vector (when valid): one buffer for all.
        blobs = [bytes(packed) if packed is not None and len(packed) and len(packed) % size == 0
                 else (bytes(blob) if blob is not None and len(blob) == size else b"") for _, packed, blob in rows]
        counts = np.fromiter((len(b) // size for b in blobs), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, EMBEDDING_DIM).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1)
        ids = np.repeat(np.fromiter((identity_id for identity_id, _, _ in rows), dtype=np.int64, count=len(rows)),
                        counts)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype=np.int64)
        return cls(vectors, ids, starts)

    def nearest(self, centre: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """(identity pk, distance to its closest exemplar) within the offered distance, nearest first."""
        if not len(self.ids_unique):
            return []
        distances = np.minimum.reduceat(np.linalg.norm(self.vectors - centre, axis=1), self.starts)
        order = np.argsort(distances, kind="stable")[:limit]
        return [(int(self.ids_unique[i]), float(distances[i])) for i in order
                if distances[i] <= SUGGESTION_MAX_DISTANCE]

    @property
    def ids_unique(self) -> np.ndarray:
        return self.identity_ids[self.starts]


def _centre(embeddings: dict[int, Any], members: Sequence[int]) -> np.ndarray | None:
    """The group's face: the normalised mean of its (best) members' embeddings, as clustering compares."""
    vectors, _ = grouping.vectors_of([embeddings[pk] for pk in members if pk in embeddings])
    if not len(vectors):
        return None
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


def _spread(embeddings: dict[int, Any], members: Sequence[int]) -> float | None:
    """The distance between the group's two least alike faces (of its best ``CENTRE_SAMPLE``): its purity risk."""
    vectors, _ = grouping.vectors_of([embeddings[pk] for pk in members if pk in embeddings])
    if len(vectors) < 2:
        return None
    gram = np.clip(vectors @ vectors.T, -1.0, 1.0)
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * float(gram.min()))))


def _suggest(groups: Sequence[Sequence[int]], embeddings: dict[int, Any] | None = None) -> list[list[Chip]]:
    """Suggestions per group (members best first): named people nearest to the group's face.

    Three queries for any number of groups: the sampled members' embeddings, the evidence, the names.
    """
    if embeddings is None:
        embeddings = _embeddings(pk for members in groups for pk in members[:CENTRE_SAMPLE])
    centres = [_centre(embeddings, members[:CENTRE_SAMPLE]) for members in groups]
    if all(centre is None for centre in centres):
        return [[] for _ in groups]
    evidence = _Evidence.load()
    excluded = constraints.excluded_identities(pk for members in groups for pk in members)
    found = []
    for members, centre in zip(groups, centres, strict=True):
        not_them = set().union(*(excluded.get(pk, set()) for pk in members))
        near = evidence.nearest(centre, SUGGESTIONS_PER_GROUP + len(not_them)) if centre is not None else []
        found.append([(i, d) for i, d in near if i not in not_them][:SUGGESTIONS_PER_GROUP])
    wanted = {identity_id for chips in found for identity_id, _ in chips}
    people = {pk: (uuid, name) for pk, uuid, name in
              Identity.objects.filter(pk__in=wanted).values_list("pk", "identity_uuid", "name")} if wanted else {}
    return [[Chip(*people[i], round(d, 4)) for i, d in chips if i in people] for chips in found]


# --------------------------------------------------------------------------- the page


def _pending_clusters(scope: Scope) -> dict[int, tuple[str, list[int], list[int]]]:
    """Pending clusters of ``cluster_traces``: identity pk -> (name, member pks, face counts)."""
    clusters: dict[int, tuple[str, list[int], list[int]]] = {}
    rows = (Trace.objects.filter(scope.q(), PENDING_CLUSTER, ignored=False)
            .order_by("file_id", "start_frame", "trace_id")
            .values_list("identity_id", "identity__name", "pk", "face_count"))
    for identity_id, name, pk, faces in rows:
        entry = clusters.setdefault(identity_id, (name, [], []))
        entry[1].append(pk)
        entry[2].append(faces)
    return clusters


def _all_groups(scope: Scope) -> tuple[list[tuple[str, np.ndarray, np.ndarray, str | None]], int, str]:
    """Every group in scope, most traces first: (key, member pks, their face counts, cluster name).

    Also how many traces wait for a name, and how the grouping was obtained (kept, carried, grouped).
    """
    current = grouping.current_grouping()
    unnamed = current.unnamed
    mask = scope.mask(unnamed.file_ids)
    pks, labels, faces = unnamed.pks[mask], current.labels[mask], unnamed.face_counts[mask]
    groups: list[tuple[str, np.ndarray, np.ndarray, str | None]] = []
    if len(pks):
        keys, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")  # members in clustering order within each group
        bounds = np.r_[0, np.cumsum(sizes)]
        for number, key in enumerate(keys.tolist()):
            members = order[bounds[number]:bounds[number + 1]]
            groups.append((f"g{key}", pks[members], faces[members], None))
    waiting = len(pks)
    for identity_id, (name, members, counts) in _pending_clusters(scope).items():
        groups.append((f"i{identity_id}", np.asarray(members, dtype=np.int64), np.asarray(counts, dtype=np.int64),
                       name))
        waiting += len(members)
    groups = _kept_apart(groups)
    # Most traces first, then most faces; ties keep clustering order.
    groups.sort(key=lambda g: (-len(g[1]), -int(g[2].sum())))
    return groups, waiting, current.how


def _kept_apart(groups: list[tuple[str, np.ndarray, np.ndarray, str | None]]
                ) -> list[tuple[str, np.ndarray, np.ndarray, str | None]]:
    """Groups split where "not this person" keeps two members apart (:func:`constraints.split`)."""
    pairs = constraints.apart_pairs()
    if not pairs:
        return groups
    involved = {pk for pair in pairs for pk in pair}
    result = []
    for key, pks, faces, cluster in groups:
        members = pks.tolist()
        if involved.isdisjoint(members):
            result.append((key, pks, faces, cluster))
            continue
        position = {pk: at for at, pk in enumerate(members)}
        for number, part in enumerate(constraints.split(members, pairs)):
            at = np.asarray([position[pk] for pk in part], dtype=np.int64)
            result.append((key if number == 0 else f"{key}-{part[0]}", pks[at], faces[at], cluster))
    return result


def _best_first(pks: np.ndarray, faces: np.ndarray) -> list[int]:
    return pks[np.argsort(-faces, kind="stable")].tolist()


def build_groups(chosen: Sequence[tuple[str, list[int], str | None]]) -> list[Group]:
    """Tiles, screen time and suggestions of these groups ((key, member pks best first, cluster name))."""
    shown = [pk for _, members, _ in chosen for pk in members]
    rows = _details(shown)
    member_lists = [[pk for pk in members if pk in rows] for _, members, _ in chosen]
    seconds = _screen_seconds(rows, member_lists)
    embeddings = _embeddings(pk for members in member_lists for pk in members[:CENTRE_SAMPLE])
    chips = _suggest(member_lists, embeddings)
    groups = []
    for (key, _, cluster), members, secs, suggestions in zip(chosen, member_lists, seconds, chips, strict=True):
        tiles = [_tile(rows[pk]) for pk in members[:FACES_PER_GROUP]]
        groups.append(Group(key, members, tiles, secs, suggestions, cluster,
                            _spread(embeddings, members[:CENTRE_SAMPLE])))
    return groups


def cast_page(scope: Scope, page: int = 1, show_hidden: bool = False, named: bool = True) -> CastPage:
    """One page of groups (``GROUPS_PER_PAGE``), the named people and the hidden count."""
    everything, unnamed_count, how = _all_groups(scope)
    num_pages = max(1, math.ceil(len(everything) / GROUPS_PER_PAGE))
    page = min(max(page, 1), num_pages)
    on_page = everything[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]
    groups = build_groups([(key, _best_first(pks, faces), cluster) for key, pks, faces, cluster in on_page])
    people, named_count = named_people(scope) if named else ([], 0)
    hidden_q = Trace.objects.filter(scope.q(), ignored=True)
    hidden = hidden_tiles(scope) if show_hidden else None
    return CastPage(scope, groups, page, num_pages, len(everything), unnamed_count, people, named_count,
                    hidden_q.count(), hidden, how)


def named_people(scope: Scope) -> tuple[list[NamedPerson], int]:
    """Named people with traces in scope, most traces first (``NAMED_SHOWN`` of them), and how many there are."""
    counts = list(Trace.objects.filter(scope.q(), _named_identities(), ignored=False)
                  .values("identity_id", "identity__identity_uuid", "identity__name", "identity__status",
                          "identity__feature_trace_id")
                  .annotate(n=Count("pk")).order_by("-n", "identity__name", "identity_id")
                  .values_list("identity_id", "identity__identity_uuid", "identity__name", "identity__status", "n",
                               "identity__feature_trace_id"))
    shown = counts[:NAMED_SHOWN]
    people = {pk: NamedPerson(pk, uuid, name, status, n) for pk, uuid, name, status, n, _ in shown}
    chosen = {pk: feature for pk, _, _, _, _, feature in shown}
    if not people:
        return [], len(counts)
    rows: dict[int, _Row] = {}
    members: dict[int, list[int]] = {pk: [] for pk in people}
    for *columns, identity_id in (Trace.objects.filter(scope.q(), identity_id__in=list(people), ignored=False)
                                  .order_by().values_list(*_DETAIL_COLUMNS, "identity_id")):
        rows[columns[0]] = _Row(*columns)
        members[identity_id].append(columns[0])
    order = list(people)
    seconds = _screen_seconds(rows, [members[pk] for pk in order])
    for pk, secs in zip(order, seconds, strict=True):
        person = people[pk]
        person.screen_seconds = secs
        best = chosen[pk] if chosen[pk] in rows and chosen[pk] in members[pk] else max(
            members[pk], key=lambda t: (rows[t].face_count, -t), default=None)  # the chosen face, else the biggest
        person.face = _tile(rows[best]) if best is not None else None
    return [people[pk] for pk in order], len(counts)


def hidden_tiles(scope: Scope) -> list[Tile]:
    pks = list(Trace.objects.filter(scope.q(), ignored=True).order_by("file_id", "trace_id")
               .values_list("pk", flat=True)[:HIDDEN_SHOWN])
    rows = _details(pks)
    return [_tile(rows[pk]) for pk in pks if pk in rows]


def tiles(scope: Scope, pks: Sequence[int]) -> list[Tile]:
    """Tiles of these traces (in the order given), e.g. a group's faces behind "+N more"."""
    rows = _details(_checked(pks), scope.q())
    return [_tile(rows[pk]) for pk in pks if pk in rows]


def summaries(scope: Scope, groups: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """Trace count, screen time and suggestions of groups the curator reshaped on the page."""
    if not groups or len(groups) > GROUPS_PER_PAGE * 2:
        raise BadRequest(f"groups must list 1 to {GROUPS_PER_PAGE * 2} groups of trace pks", param="groups")
    lists = [_checked(members) for members in groups]
    if sum(len(members) for members in lists) > MAX_TRACES:
        raise BadRequest(f"at most {MAX_TRACES} traces at once", param="groups")
    rows = _details([pk for members in lists for pk in members], scope.q())
    present = [[pk for pk in members if pk in rows] for members in lists]
    seconds = _screen_seconds(rows, present)
    chips = _suggest(present)
    return [{"trace_count": len(members), "screen_seconds": round(secs, 3),
             "suggestions": [chip.as_json() for chip in found]}
            for members, secs, found in zip(present, seconds, chips, strict=True)]


# --------------------------------------------------------------------------- people


def person_json(identity: Identity, trace_count: int | None = None) -> dict[str, Any]:
    return {"identity_uuid": identity.identity_uuid, "name": identity.name, "status": identity.status,
            "trace_count": trace_count if trace_count is not None else identity.traces.filter(ignored=False).count(),
            "url": reverse("admin:identities_identity_change", args=[identity.pk])}


def _top_trace(column: str) -> Subquery:
    return Subquery(Trace.objects.filter(identity=OuterRef("pk"), ignored=False).order_by("-face_count", "pk")
                    .values(column)[:1])


def autocomplete(term: str, limit: int = 10) -> list[dict[str, Any]]:
    """Autocomplete: active people (not merged, not inactive, not a pending cluster) by name or alias."""
    queryset = (Identity.objects.filter(merged_into__isnull=True).exclude(status=Identity.Status.INACTIVE)
                .exclude(source=Identity.Source.AUTO, status=Identity.Status.PENDING))
    counts = Subquery(Trace.objects.filter(identity=OuterRef("pk"), ignored=False).order_by()
                      .values("identity").annotate(n=Count("pk")).values("n")[:1])
    found = (search(queryset, term).annotate(trace_count=counts, face_trace_id=_top_trace("trace_id"),
                                             face_file_uuid=_top_trace("file__file_uuid"))
             .order_by("name", "id")[:limit])
    result = []
    for identity in found:
        face = (f"/api/v1/identity/{identity.identity_uuid}/thumbnail"  # the chosen face, else the biggest
                if identity.face_trace_id is not None else None)
        result.append({**person_json(identity, identity.trace_count or 0), "face_url": face})
    # Names that start with what was typed first, then the others (both alphabetical).
    prefix = term.strip().casefold()
    result.sort(key=lambda p: not p["name"].casefold().startswith(prefix))
    return result


# --------------------------------------------------------------------------- actions


@dataclass
class Outcome:
    """What an action did, for the JSON answer and the page's message."""

    message: str
    traces: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    identity: Identity | None = None
    change: CurationChange | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": True, "message": self.message, "traces": self.traces,
                                "skipped": self.skipped}
        if self.identity is not None:
            body["identity"] = person_json(self.identity)
        if self.change is not None:
            body["change"] = {"id": self.change.pk, "kind": self.change.kind, "summary": self.change.summary}
        return body


def _checked(pks: Any) -> list[int]:
    """Trace pks from a request body: a non-empty list of positive integers, at most ``MAX_TRACES``."""
    if not isinstance(pks, list) or not pks:
        raise BadRequest("trace_pks must be a non-empty list of trace ids", param="trace_pks")
    if len(pks) > MAX_TRACES:
        raise BadRequest(f"at most {MAX_TRACES} traces at once", param="trace_pks")
    if not all(isinstance(pk, int) and not isinstance(pk, bool) and 0 < pk < 2**63 for pk in pks):
        raise BadRequest("trace_pks must hold positive integers", param="trace_pks")
    return list(dict.fromkeys(pks))


def clean_name(value: Any) -> str:
    """A person's name, normalised as at every entry point (:mod:`identities.names`), or a 400."""
    try:
        return names.clean(value)
    except names.InvalidName as exc:
        raise BadRequest(str(exc), param="name") from exc


def _waiting(scope: Scope, pks: list[int]) -> tuple[list[int], list[int]]:
    """(traces still waiting for a name, locked for this transaction; the others, skipped)."""
    waiting = list(Trace.objects.select_for_update(of=("self",)).filter(WAITING, scope.q(), pk__in=pks)
                   .order_by("pk").values_list("pk", flat=True))
    kept = set(waiting)
    return waiting, [pk for pk in pks if pk not in kept]


def _nothing_left(skipped: list[int]) -> Conflict:
    return Conflict("Nothing to name: these traces were named or hidden meanwhile. The page shows them as they "
                    "are now.", {"skipped": skipped})


def _named(created: bool, identity: Identity, waiting: list[int], skipped: list[int]) -> str:
    traces = count(len(waiting), "trace")
    message = f"Named “{identity.name}”: {traces}" if created else f"Bound {traces} to {identity.name}"
    if skipped:
        message += f" ({count(len(skipped), 'trace')} named or hidden meanwhile left alone)"
    return message


def name_group(scope: Scope, pks: Any, name: Any, user: Any, allow_duplicate: bool = False) -> Outcome:
    """Name a group: a new person with every trace of it still waiting for a name.

    A name an active person already has is refused (409 with that person) unless
    ``allow_duplicate``: the page then offers "merge into existing" (:func:`bind_group`) or
    "a different person" (this again with ``allow_duplicate``).
    """
    pks, name = _checked(pks), clean_name(name)
    with transaction.atomic():
        waiting, skipped = _waiting(scope, pks)
        if not waiting:
            raise _nothing_left(skipped)
        existing = None if allow_duplicate else namesake(name)
        if existing is not None:
            raise Conflict(f"{existing.name} already exists. Merge into existing, or say this is a different person.",
                           {"existing": person_json(existing)})
        identity, change = curation.create_identity_from_traces(name, waiting, user)
    return Outcome(_named(True, identity, waiting, skipped), waiting, skipped, identity, change)


def bind_group(scope: Scope, pks: Any, identity_uuid: Any, user: Any) -> Outcome:
    """Bind a group to an existing person (accept a suggestion, pick from autocomplete, merge into existing)."""
    pks = _checked(pks)
    if not isinstance(identity_uuid, str) or not identity_uuid:
        raise BadRequest("identity_uuid must be an identity's uuid", param="identity_uuid")
    with transaction.atomic():
        identity = Identity.objects.filter(identity_uuid=identity_uuid.strip().lower()).first()
        if identity is None:
            raise NotFound("Identity not found.", {"identity_uuid": identity_uuid})
        curation.refuse_merged(identity)
        if identity.status == Identity.Status.INACTIVE:
            raise Conflict(f"{identity.name} is inactive; make them active on their page first.",
                           {"identity": person_json(identity)})
        waiting, skipped = _waiting(scope, pks)
        if not waiting:
            raise _nothing_left(skipped)
        change = curation.bind_traces(identity, waiting, user)
    return Outcome(_named(False, identity, waiting, skipped), waiting, skipped, identity, change)


def hide(scope: Scope, pks: Any, user: Any) -> Outcome:
    """"Hide / not a face": kept, but out of the groups, clustering and suggestions (undoable)."""
    pks = _checked(pks)
    with transaction.atomic():
        shown = list(Trace.objects.filter(scope.q(), pk__in=pks, ignored=False).values_list("pk", flat=True))
        change = curation.hide_traces(shown, user) if shown else None
    message = f"Hid {count(len(shown), 'trace')}" if shown else "Already hidden"
    return Outcome(message, sorted(shown), [pk for pk in pks if pk not in set(shown)], change=change)


def unhide(scope: Scope, pks: Any, user: Any) -> Outcome:
    pks = _checked(pks)
    with transaction.atomic():
        hidden = list(Trace.objects.filter(scope.q(), pk__in=pks, ignored=True).values_list("pk", flat=True))
        change = curation.unhide_traces(hidden, user) if hidden else None
    message = f"Showing {count(len(hidden), 'trace')} again" if hidden else "Not hidden"
    return Outcome(message, sorted(hidden), [pk for pk in pks if pk not in set(hidden)], change=change)


def separate(scope: Scope, pk: Any, group_pks: Any, user: Any) -> Outcome:
    """"Not this person", kept: the face is not the same person as the rest of its group.

    In a pending cluster of ``cluster_traces`` the face is not that cluster's person (and leaves
    it); in a group the page made, it is kept apart from each other member. The grouping,
    suggestions and clustering respect it from then on (:mod:`identities.constraints`).
    """
    if not isinstance(pk, int) or isinstance(pk, bool):
        raise BadRequest("trace_pk must be a trace id", param="trace_pk")
    pk, others = _checked([pk])[0], _checked(group_pks)
    with transaction.atomic():
        trace = Trace.objects.select_for_update(of=("self",)).filter(WAITING, scope.q(), pk=pk).first()
        if trace is None:
            raise Conflict("This face was named or hidden meanwhile. The page shows it as it is now.",
                           {"skipped": [pk]})
        cluster = None
        if trace.identity_id is not None:  # a pending cluster (WAITING holds no other bound trace)
            cluster = Identity.objects.get(pk=trace.identity_id)
            others = []
        else:
            others = list(Trace.objects.filter(WAITING, scope.q(), pk__in=others, identity__isnull=True)
                          .exclude(pk=pk).order_by("pk").values_list("pk", flat=True))
        change = curation.separate(trace, others, cluster, user)
    message = ("Not this person: the face is a group of its own, and stays apart from them"
               if change is not None else "Already kept apart")
    return Outcome(message, [pk], change=change)


#: Kinds this page undoes; a merge or a deletion is undone on the person's page, where it is explained.
UNDOABLE_HERE = {CurationChange.Kind.BIND, CurationChange.Kind.UNBIND, CurationChange.Kind.HIDE,
                 CurationChange.Kind.UNHIDE, CurationChange.Kind.SEPARATE}


def undo_last(user: Any) -> Outcome:
    """Undo the user's latest change that would still change something (as the identity page's undo).

    Only rows still as the change left them are touched (:func:`identities.curation.undo`), so a
    newer edit by anyone is never clobbered.
    """
    recent = CurationChange.objects.filter(user_id=user.pk, undone_at__isnull=True).order_by("-created_at", "-id")
    change = next((c for c in recent[:curation.RECENT_CHANGES] if curation.can_undo(c)), None)
    if change is None:
        raise Conflict("Nothing to undo: you have no recent change that still applies.")
    if change.kind not in UNDOABLE_HERE:
        identity = Identity.objects.filter(identity_uuid=change.identity_uuid).first()
        url = reverse("admin:identities_identity_change", args=[identity.pk]) if identity else reverse(
            "admin:identities_curationchange_changelist")
        raise Conflict(f"Your last change was a {change.get_kind_display()} ({change.summary}); undo it on "
                       f"{'that person’s page' if identity else 'the curation changes list'}.",
                       {"change": {"id": change.pk, "kind": change.kind, "summary": change.summary}, "url": url})
    try:
        message = curation.undo(change, user)
    except curation.UndoError as exc:
        raise Conflict(str(exc).capitalize() + ".") from exc
    if change.kind == CurationChange.Kind.SEPARATE:
        return Outcome(message, [change.payload["trace"]], change=change)
    traces = change.payload.get("traces") or [pk for group in (change.payload.get("previous") or {}).values()
                                               for pk in group]
    return Outcome(message, sorted(traces), change=change)


def regroup() -> Outcome:
    """Group every unnamed trace again from scratch (what ``cluster_traces`` would do, nothing written)."""
    grouping.regroup()
    return Outcome("Grouped again")
