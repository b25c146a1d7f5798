"""Trace presence (the run list co-occurrence reads) always equals what the detections say."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest
from django.contrib.admin.sites import site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory

from media_api.models import Detection, Trace
from media_api.services import presence
from media_api.services.detections_import import import_detections
from media_api.services.traces import refresh_trace_summaries

pytestmark = pytest.mark.django_db


def detection_frames(media_file) -> dict[int, set[int]]:
    frames: dict[int, set[int]] = defaultdict(set)
    for trace_pk, frame in Detection.objects.filter(file=media_file).values_list("trace_id", "frame_number"):
        frames[trace_pk].add(frame)
    return frames


def assert_presence_matches(media_file) -> int:
    frames = detection_frames(media_file)
    traces = list(Trace.objects.filter(file=media_file).values_list("pk", "presence", "start_frame", "end_frame"))
    for pk, blob, start, end in traces:
        assert presence.frames_of(blob) == frames.get(pk, set()), pk
        if blob is not None:
            starts, ends = presence.decode_runs(blob)
            assert (int(starts[0]), int(ends[-1]) - 1) == (start, end)
            assert np.all(starts[1:] > ends[:-1])  # disjoint runs with a gap between them
    table = presence.decode_many([blob for _, blob, _, _ in traces])
    for position, (pk, _, _, _) in enumerate(traces):
        mine = table.owner == position
        assert {f for s, e in zip(table.start[mine], table.end[mine], strict=True) for f in range(s, e)} == \
            frames.get(pk, set())
    return len(traces)


def random_rows(rng: random.Random, total_frames: int, traces: int, first: int = 1) -> list[dict]:
    rows = []
    for trace_id in range(first, first + traces):
        start = rng.randrange(total_frames)
        frames = [f for f in range(start, min(total_frames, start + rng.randrange(1, 120)), rng.choice([1, 1, 2, 5]))
                  if rng.random() > 0.15] or [start]
        frames += [rng.choice(frames)] if rng.random() < 0.3 else []  # a second box on a frame
        rng.shuffle(frames)  # rows in any order
        rows += [{"trace_id": trace_id, "frame_number": f, "x": 1, "y": 1, "width": 20, "height": 20,
                  "confidence": 0.5} for f in frames]
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_presence_equals_detections_after_imports(hamilton, seed):
    rng = random.Random(seed)
    import_detections(hamilton, random_rows(rng, hamilton.total_frames, 60))
    assert assert_presence_matches(hamilton) == 60
    import_detections(hamilton, random_rows(rng, hamilton.total_frames, 30, first=45))  # appended
    assert_presence_matches(hamilton)
    import_detections(hamilton, random_rows(rng, hamilton.total_frames, 20, first=30), replace=True)
    assert assert_presence_matches(hamilton) == 20


def test_codec_round_trip():
    rng = np.random.default_rng(4)
    for _ in range(200):
        frames = np.unique(rng.integers(0, rng.integers(1, 70_000), size=rng.integers(1, 300)))
        breaks = np.flatnonzero(np.diff(frames) > 1) + 1
        starts = frames[np.r_[0, breaks]]
        ends = frames[np.r_[breaks - 1, len(frames) - 1]] + 1
        blob = presence.encode_runs(starts, ends)
        decoded = presence.decode_runs(blob)
        assert np.array_equal(decoded[0], starts) and np.array_equal(decoded[1], ends)
        assert presence.frames_of(blob) == set(frames.tolist())
    assert presence.encode_runs(np.zeros(0), np.zeros(0)) is None
    assert len(presence.encode_runs(np.array([100]), np.array([36_100]))) < 20  # a dense trace: a few bytes
    with pytest.raises(ValueError, match="unknown presence format"):
        presence.decode_runs(b"\x09abc")


def test_admin_edits_and_an_emptied_trace(hamilton, staff_user):
    import_detections(hamilton, random_rows(random.Random(7), hamilton.total_frames, 5))
    admin = site._registry[Detection]
    request = RequestFactory().post("/")
    request.user = staff_user
    trace = Trace.objects.filter(file=hamilton).order_by("trace_id").first()
    first = Detection.objects.filter(trace=trace).order_by("frame_number").first()
    first.frame_number = 270
    admin.save_model(request, first, type("Form", (), {"initial": {"trace": trace.pk}})(), True)
    assert_presence_matches(hamilton)
    admin.delete_queryset(request, Detection.objects.filter(trace=trace))
    trace.refresh_from_db()
    assert trace.presence is None and trace.face_count == 0
    assert_presence_matches(hamilton)


def test_chunks_stay_under_the_variable_limit(hamilton, monkeypatch):
    """Many traces: presence is computed and written in chunks (SQLite allows 32 766 variables)."""
    monkeypatch.setattr(presence, "CHUNK", 7)
    monkeypatch.setattr(presence, "FETCH", 5)
    import_detections(hamilton, random_rows(random.Random(9), hamilton.total_frames, 50))
    assert_presence_matches(hamilton)


def test_rebuild_presence_command(hamilton, facenet, capsys):
    import_detections(hamilton, random_rows(random.Random(5), hamilton.total_frames, 12))
    import_detections(facenet, random_rows(random.Random(6), facenet.total_frames, 8))
    call_command("rebuild_presence", "--check")
    assert "20 trace(s) checked; 0 differ" in capsys.readouterr().out

    # Stale data (written behind the code's back): --check finds it, a rebuild repairs it.
    victim = Trace.objects.filter(file=hamilton).order_by("trace_id").first()
    Trace.objects.filter(pk=victim.pk).update(presence=presence.encode_runs(np.array([0]), np.array([3])))
    Trace.objects.filter(file=facenet).update(presence=None)
    with pytest.raises(CommandError) as failed:
        call_command("rebuild_presence", "--check")
    assert failed.value.returncode == 1 and f"{hamilton.file_uuid}/{victim.trace_id}" in capsys.readouterr().out
    call_command("rebuild_presence", "--file", hamilton.file_uuid)
    assert "presence rebuilt for 12 trace(s)" in capsys.readouterr().out
    call_command("rebuild_presence", "--check", "--file", hamilton.file_uuid)
    with pytest.raises(CommandError):
        call_command("rebuild_presence", "--check", "--file", facenet.file_uuid)
    call_command("rebuild_presence")
    assert_presence_matches(hamilton)
    assert_presence_matches(facenet)
    with pytest.raises(CommandError, match="unknown file_uuid"):
        call_command("rebuild_presence", "--file", "0" * 32)


def test_the_migration_fills_presence_of_existing_traces(hamilton):
    from importlib import import_module

    from django.apps import apps
    from django.db import connection

    import_detections(hamilton, random_rows(random.Random(8), hamilton.total_frames, 10))
    Trace.objects.update(presence=None)
    migration = import_module("media_api.migrations.0003_trace_presence")
    migration.fill_presence(apps, type("Editor", (), {"connection": connection})())
    assert_presence_matches(hamilton)


def test_binds_do_not_touch_presence(hamilton):
    """Identity changes only say whose a trace is: presence and the version stay as they were."""
    from identities import curation
    from identities.models import Identity

    import_detections(hamilton, random_rows(random.Random(10), hamilton.total_frames, 6))
    before = dict(Trace.objects.values_list("pk", "presence"))
    versions = dict(Trace.objects.values_list("pk", "detections_version"))
    ada, bo = Identity.objects.create(name="Ada"), Identity.objects.create(name="Bo")
    pks = sorted(before)
    curation.bind_traces(ada, pks[:3])
    curation.bind_traces(bo, pks[3:])
    curation.merge_identities(ada, [bo])
    curation.unbind_traces(pks[:2])
    assert dict(Trace.objects.values_list("pk", "presence")) == before
    assert dict(Trace.objects.values_list("pk", "detections_version")) == versions
    refresh_trace_summaries(pks)  # what any detection change does
    assert {pk: bytes(b) for pk, b in Trace.objects.values_list("pk", "presence")} == \
        {pk: bytes(b) for pk, b in before.items()}
