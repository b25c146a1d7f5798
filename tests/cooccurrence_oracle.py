"""Brute force from the detection rows: what every co-occurrence route must answer.

Plain Python sets over ``Detection`` rows and ``FrameIndexData.seconds_of`` — none of the
presence code — so the routes (which read only ``Trace.presence``) are checked against the
source of truth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from media_api.models import Detection, MediaFile, Trace
from media_api.services.files import frame_index_for


@dataclass(frozen=True)
class Expected:
    first: int
    frames: int
    seconds: float


class Oracle:
    """Who is on which frame of one file, from its detections."""

    def __init__(self, media_file: MediaFile) -> None:
        self.media_file = media_file
        self.frames_of_trace: dict[int, set[int]] = defaultdict(set)
        for trace_pk, frame in Detection.objects.filter(file=media_file).values_list("trace_id", "frame_number"):
            self.frames_of_trace[trace_pk].add(frame)
        self.traces = {pk: (trace_id, identity_id) for pk, trace_id, identity_id in
                       Trace.objects.filter(file=media_file).values_list("pk", "trace_id", "identity_id")}
        index = frame_index_for(media_file)
        starts = [index.seconds_of(n) for n in range(len(index))]
        self.start_of = list(starts)  # seconds_of(n): when frame n starts
        starts.append(starts[-1] + 1 / media_file.fps)
        self.duration = [starts[n + 1] - starts[n] for n in range(len(index))]

    def seconds(self, frames: set[int]) -> float:
        return sum(self.duration[f] for f in frames)

    def frames_of_identity(self, identity_pk: int) -> set[int]:
        return set().union(*(self.frames_of_trace[pk] for pk, (_, who) in self.traces.items() if who == identity_pk))

    def frames_of_traces(self, trace_ids: list[int]) -> set[int]:
        by_id = {trace_id: pk for pk, (trace_id, _) in self.traces.items()}
        return set().union(*(self.frames_of_trace[by_id[t]] for t in trace_ids))

    def pair(self, a: int, b: int) -> tuple[Expected, int, int] | None:
        """(shared figures, lowest trace id of a and of b on the first shared frame), or None."""
        shared = self.frames_of_identity(a) & self.frames_of_identity(b)
        if not shared:
            return None
        first = min(shared)

        def lowest(identity_pk: int) -> int:
            return min(trace_id for pk, (trace_id, who) in self.traces.items()
                       if who == identity_pk and first in self.frames_of_trace[pk])

        return Expected(first, len(shared), self.seconds(shared)), lowest(a), lowest(b)

    def identities(self) -> set[int]:
        return {who for pk, (_, who) in self.traces.items() if who is not None and self.frames_of_trace[pk]}

    def unbound_trace_ids(self) -> list[int]:
        return sorted(trace_id for pk, (trace_id, who) in self.traces.items()
                      if who is None and self.frames_of_trace[pk])
