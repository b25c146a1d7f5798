"""Re-embedding existing traces with the current model (issue 19, item 3): no re-detection, curation kept.

Traces come from demo/detections/*.json (what the pipeline stores for the demo clips); their
vectors are then marked as dlib's (the state of a database upgraded from Faces v2) or cleared,
and re-embedded from the real clips through the real FFmpeg layer and SFace.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import call_command

from identities import curation
from identities.models import CurationChange, Identity, NotSamePerson
from identities.suggestions import CONFIDENT_DISTANCE, suggest_identities
from jobs.services import JobCancelled
from media_api.faces import exemplars
from media_api.faces.embeddings import DLIB_MODEL_NAME, MODEL_NAME, from_bytes
from media_api.faces.tracker import EMBED_EVERY_SECONDS, EMBED_GROWTH
from media_api.models import Detection, Trace
from media_api.services.detections_import import import_file
from media_api.services.reembed import (
    FACES_PER_TRACE,
    KEYFRAME_REACH,
    Readable,
    best_faces,
    choose_faces,
    plan_faces,
    reembed_file,
)
from tests.conftest import REPO

pytestmark = pytest.mark.django_db

STEMS = {"hamilton": "face_recognition_short_hamilton_clip", "facenet": "facenet_pytorch_video"}


def _load(media_file, stem: str) -> dict[int, np.ndarray]:
    path = REPO / "demo" / "detections" / f"{stem}.json"
    import_file(media_file, path)  # boxes, means and exemplar sets
    data = json.loads(path.read_text())
    return {int(k): np.asarray(v, dtype=np.float32) for k, v in data["trace_embeddings"].items()}


def _as_old_model(media_file) -> None:
    """What an upgraded database holds: every vector is dlib's (a 128-d vector nothing compares now), no exemplars."""
    rng = np.random.default_rng(7)
    for trace in Trace.objects.filter(file=media_file):
        trace.embedding = rng.normal(size=128).astype("<f4").tobytes()
        trace.embedding_model = DLIB_MODEL_NAME
        trace.exemplars = None
        trace.save(update_fields=["embedding", "embedding_model", "exemplars"])


def _curation_state(media_file) -> dict:
    traces = list(Trace.objects.filter(file=media_file).order_by("trace_id").values_list(
        "pk", "trace_id", "identity_id", "ignored", "detections_version", "rep_version", "rep_frame_number",
        "face_count", "start_frame", "end_frame"))
    return {"traces": traces,
            "detections": list(Detection.objects.filter(file=media_file).order_by("pk").values_list(
                "pk", "trace_id", "frame_number", "x", "y", "width", "height", "confidence", "origin")),
            "changes": list(CurationChange.objects.order_by("pk").values_list("pk", "kind", "payload")),
            "not_same": list(NotSamePerson.objects.order_by("pk").values_list("pk", flat=True)),
            "identities": list(Identity.objects.order_by("pk").values_list("pk", "name", "status", "source"))}


@pytest.fixture
def hamilton_traces(hamilton):
    return hamilton, _load(hamilton, STEMS["hamilton"])


def test_choose_faces_spreads_over_the_trace_and_skips_small_or_doubtful_faces():
    rows = [(frame, 0, 0, 40 + frame % 7, 40 + frame % 7, 0.9) for frame in range(0, 400)]
    rows += [(500, 0, 0, 200, 200, 0.3),  # big but doubtful
             (501, 0, 0, 20, 20, 0.99)]  # confident but too small to read
    chosen = choose_faces(rows, limit=4)
    frames = sorted(frame for frame, _ in chosen)
    assert len(chosen) == 4 and 500 not in frames and 501 not in frames
    assert [frame // 100 for frame in frames] == [0, 1, 2, 3]  # one per stretch of the trace
    assert all(box[3] == 46 for _, box in chosen)  # the biggest face of each stretch
    assert choose_faces([(1, 0, 0, 10, 10, 0.9)]) == []
    near_keyframes = choose_faces(rows, limit=4, allowed=lambda frame: frame % 100 < 3)
    assert len(near_keyframes) == 4 and all(frame % 100 < 3 for frame, _ in near_keyframes)


def test_plan_reads_near_keyframes_and_gives_a_short_trace_its_shallowest_good_face():
    from fractions import Fraction

    from media_api.ffmpeg.index import FrameIndexData

    index = FrameIndexData(pts=np.arange(120, dtype=np.int64), keyframes=np.array([0, 60], np.int32),
                           time_base=Fraction(1, 30))
    long_trace = [(frame, 0, 0, 50, 50, 0.9) for frame in range(120)]
    short_trace = [(frame, 0, 0, height, height, 0.9) for frame, height in ((10, 60), (20, 100), (30, 90), (40, 120))]
    plan = plan_faces({1: long_trace, 2: short_trace}, index)
    assert {frame // 60 for frame, _ in plan[1]} == {0, 1}  # one moment after each keyframe ...
    assert all(frame % 60 <= KEYFRAME_REACH for frame, _ in plan[1])  # ... nothing deeper
    # no face near a keyframe: of its faces at least 0.8 as tall as its tallest (100, 120), the shallowest
    assert plan[2] == [(20, (0, 0, 100, 100))]
    # a trace spanning 5 s of one GOP: besides its first moment, faces 2 s from it, as the pipeline embeds again
    one_gop = FrameIndexData(pts=np.arange(150, dtype=np.int64), keyframes=np.array([0], np.int32),
                             time_base=Fraction(1, 30))
    frames = [frame for frame, _ in plan_faces({3: [(f, 0, 0, 50, 50, 0.9) for f in range(150)]}, one_gop)[3]]
    deep = [frame for frame in frames if frame > KEYFRAME_REACH]
    assert len(deep) in (1, 2) and all(abs(a - b) >= 60 for a in deep for b in frames if a != b), frames


def test_batches_are_whole_gops_in_file_order():
    """A GOP is never split between two batches (both lanes would decode its reference pictures); a batch holds at
    least BATCH_FRAMES wanted frames unless it is the last."""
    from fractions import Fraction

    from media_api.ffmpeg.index import FrameIndexData
    from media_api.services.reembed import BATCH_FRAMES, batches

    keyframes = np.array([0, 30, 40, 100, 250], np.int32)
    index = FrameIndexData(pts=np.arange(300, dtype=np.int64), keyframes=keyframes, time_base=Fraction(1, 30))
    wanted = {frame: [(frame % 7, 0, (0, 0, 40, 40))] for frame in (0, 3, 29, 31, 35, 41, 42, 43, 44, 45, 46, 47,
                                                                     48, 60, 99, 100, 101, 260)}
    cut = batches(wanted, index)
    assert [frame for batch in cut for frame in batch] == sorted(wanted)
    assert all(batch[frame] == wanted[frame] for batch in cut for frame in batch)
    gop_of = {frame: index.keyframe_at_or_before(frame) for frame in wanted}
    for first, second in zip(cut, cut[1:], strict=False):
        assert {gop_of[f] for f in first}.isdisjoint(gop_of[f] for f in second)
    assert all(len(batch) >= BATCH_FRAMES for batch in cut[:-1])
    assert len(cut) > 1


def test_best_faces_follows_the_pipelines_evidence_rule():
    """The best face, then only faces 2 s from every one taken or 1.4x taller than an earlier one, at most 3."""
    def face(quality, rank, seconds, height=100):
        return Readable(quality, rank, seconds, height, np.zeros((112, 112, 3), np.uint8))

    assert (FACES_PER_TRACE, EMBED_EVERY_SECONDS, EMBED_GROWTH) == (3, 2.0, 1.4)
    # a short trace of steady size: its one best face, as a fresh analysis embeds one
    short = [face(0.8, 1, 0.04), face(0.9, 0, 0.0), face(0.7, 2, 1.9)]
    assert [f.rank for f in best_faces(short)] == [0]
    # 2 s apart from every face taken; a fourth never
    spread = [face(0.6, 3, 5.0), face(0.9, 0, 0.0), face(0.7, 2, 4.0), face(0.8, 1, 1.0), face(0.5, 4, 2.0),
              face(0.4, 5, 8.0)]
    assert [f.rank for f in best_faces(spread)] == [0, 2, 4]
    # within 2 s, the later face 1.4x as tall as the earlier is new evidence (in time order, whichever is better)
    assert [f.rank for f in best_faces([face(0.9, 0, 1.0, 100), face(0.8, 1, 1.5, 140)])] == [0, 1]
    assert [f.rank for f in best_faces([face(0.9, 0, 1.0, 100), face(0.8, 1, 0.5, 70)])] == [0, 1]
    assert [f.rank for f in best_faces([face(0.9, 0, 1.0, 140), face(0.8, 1, 1.5, 100)])] == [0]  # shrank
    assert [f.rank for f in best_faces([face(0.9, 0, 1.0, 100), face(0.8, 1, 1.5, 139)])] == [0]
    assert [f.rank for f in best_faces([face(0.5, 1, 0.0), face(0.5, 0, 3.0)])] == [0, 1]  # ties: the better ranked


def test_reembed_gives_every_readable_trace_a_current_vector_and_keeps_curation(hamilton_traces, staff_user):
    hamilton, pipeline_vectors = hamilton_traces
    _as_old_model(hamilton)
    traces = {t.trace_id: t for t in Trace.objects.filter(file=hamilton)}
    person = Identity.objects.create(name="Performer")
    embedded_ids = sorted(pipeline_vectors)
    curation.bind_traces(person, [traces[embedded_ids[0]].pk], user=staff_user)
    unembedded = [tid for tid in traces if tid not in pipeline_vectors]
    curation.hide_traces([traces[(unembedded or embedded_ids)[-1]].pk], user=staff_user)
    curation.separate(traces[embedded_ids[1]], identity=person, user=staff_user)
    before = _curation_state(hamilton)

    result = reembed_file(hamilton)

    assert _curation_state(hamilton) == before
    assert result.traces == len(traces) and result.embedded + result.unreadable == len(traces)
    current = {t.trace_id: from_bytes(t.embedding) for t in Trace.objects.filter(file=hamilton,
                                                                                 embedding_model=MODEL_NAME)}
    assert len(current) == result.embedded
    # every trace the pipeline could read is read again, and lands next to the pipeline's own vector
    assert set(pipeline_vectors) <= set(current)
    for trace_id, vector in pipeline_vectors.items():
        assert float(np.linalg.norm(current[trace_id] - vector)) < CONFIDENT_DISTANCE, (trace_id, vector)
    # the others keep what they had (never compared)
    assert set(Trace.objects.filter(file=hamilton).exclude(trace_id__in=list(current))
               .values_list("embedding_model", flat=True)) <= {DLIB_MODEL_NAME}
    assert result.faces_embedded <= 3 * result.embedded and result.frames_decoded > 0
    # each re-embedded trace keeps its evidence: 1-4 exemplars (its best, most different faces) near its mean
    kept = {t.trace_id: exemplars.unpack(t.exemplars) for t in Trace.objects.filter(file=hamilton,
                                                                                    embedding_model=MODEL_NAME)}
    assert set(kept) == set(current)
    for trace_id, matrix in kept.items():
        assert matrix is not None and 1 <= len(matrix) <= exemplars.MAX_EXEMPLARS, trace_id
        assert exemplars.set_distance(current[trace_id][None, :], matrix) < CONFIDENT_DISTANCE / 2, trace_id


@pytest.mark.parametrize("clip", ["facenet", "hamilton"])
def test_two_reading_lanes_give_the_vectors_of_one_bit_for_bit(clip, request, monkeypatch):
    """Two lanes (this process and a reading process, batches of one frame so that both read) store the bytes
    one lane stores: on facenet (one GOP: one batch, traces with several faces) and on Hamilton (keyframes at
    its cuts: both lanes read)."""
    from media_api.services import reembed

    media_file = request.getfixturevalue(clip)
    _load(media_file, STEMS[clip])
    stored = {}
    for workers in (False, True):
        _as_old_model(media_file)
        monkeypatch.setattr(reembed, "BATCH_FRAMES", 1)
        result = reembed_file(media_file, workers=workers)
        assert result.reading_processes == (1 if workers else 0)
        here, there = result.batches_read
        assert here + there > 0 and (there > 0) == workers, result.batches_read
        if clip == "hamilton":
            assert here > 0 or not workers, result.batches_read
        rows = (Trace.objects.filter(file=media_file, embedding_model=MODEL_NAME)
                .values_list("pk", "embedding", "exemplars"))
        stored[workers] = (result.faces_embedded, {pk: (bytes(vector), bytes(kept)) for pk, vector, kept in rows})
    if clip == "facenet":
        assert len(stored[False][1]) >= 8 and stored[False][0] > len(stored[False][1])  # traces with several faces
    assert stored[True] == stored[False]


def test_a_reading_process_that_cannot_read_leaves_the_batches_to_this_one(hamilton, monkeypatch):
    """The reading process fails to open the file (a store that answers one process and not another, an OOM
    kill): the batches queued for it and every later one are read here, and the job stores what one lane does."""
    import os

    from media_api.services import reembed

    _load(hamilton, STEMS["hamilton"])
    _as_old_model(hamilton)
    reembed_file(hamilton, workers=False)
    expected = dict(Trace.objects.filter(file=hamilton, embedding_model=MODEL_NAME).values_list("pk", "embedding"))
    parent, real = os.getpid(), reembed.open_lane

    def open_here_only(path, index, frame_threads):
        if os.getpid() != parent:
            raise OSError("the reading process cannot open the file")
        real(path, index, frame_threads)

    monkeypatch.setattr(reembed, "open_lane", open_here_only)
    monkeypatch.setattr(reembed, "BATCH_FRAMES", 1)
    _as_old_model(hamilton)
    result = reembed_file(hamilton, workers=True)
    assert result.batches_read[1] == 0 and result.batches_read[0] > 2, result.batches_read
    stored = dict(Trace.objects.filter(file=hamilton, embedding_model=MODEL_NAME).values_list("pk", "embedding"))
    assert {pk: bytes(v) for pk, v in stored.items()} == {pk: bytes(v) for pk, v in expected.items()}


def test_a_trace_of_another_model_becomes_comparable_again(hamilton, facenet, staff_user):
    """The performer named in one shot is suggested in another only once both were re-embedded."""
    from tests.test_suggestions import traces_of

    _load(hamilton, STEMS["hamilton"])
    wide, _, medium = traces_of(hamilton, "Lin-Manuel Miranda")
    performer = Identity.objects.create(name="Lin-Manuel Miranda")
    curation.bind_traces(performer, [Trace.objects.get(file=hamilton, trace_id=wide).pk], user=staff_user)
    _as_old_model(hamilton)
    query = Trace.objects.get(file=hamilton, trace_id=medium)
    assert suggest_identities(query) == []
    reembed_file(hamilton, only_stale=True)
    query.refresh_from_db()
    suggestions = suggest_identities(query)
    assert suggestions and suggestions[0].name == "Lin-Manuel Miranda" and suggestions[0].confident


def test_only_stale_leaves_current_vectors_alone(hamilton_traces):
    hamilton, pipeline_vectors = hamilton_traces
    stale_id = sorted(pipeline_vectors)[0]
    Trace.objects.filter(file=hamilton, trace_id=stale_id).update(embedding_model=DLIB_MODEL_NAME)
    before = dict(Trace.objects.filter(file=hamilton).exclude(trace_id=stale_id).values_list("pk", "embedding"))
    result = reembed_file(hamilton, only_stale=True)
    stale_or_missing = Trace.objects.filter(file=hamilton).exclude(trace_id__in=[t for t in pipeline_vectors
                                                                                 if t != stale_id]).count()
    assert result.traces == stale_or_missing and result.embedded == 1
    after = dict(Trace.objects.filter(file=hamilton).exclude(trace_id=stale_id).values_list("pk", "embedding"))
    assert {pk: bytes(v) if v is not None else None for pk, v in after.items()} == \
        {pk: bytes(v) if v is not None else None for pk, v in before.items()}
    assert Trace.objects.get(file=hamilton, trace_id=stale_id).embedding_model == MODEL_NAME


def test_a_cancel_before_storing_changes_nothing(hamilton_traces):
    hamilton, _ = hamilton_traces
    _as_old_model(hamilton)
    before = dict(Trace.objects.filter(file=hamilton).values_list("pk", "embedding"))
    seen = []

    def cancel_when_storing(done, total, message):
        seen.append(message)
        if message == "storing embeddings":
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        reembed_file(hamilton, on_progress=cancel_when_storing)
    assert any("frames read" in m for m in seen)  # it had done the work
    assert {pk: bytes(v) for pk, v in Trace.objects.filter(file=hamilton).values_list("pk", "embedding")} == \
        {pk: bytes(v) for pk, v in before.items()}
    assert set(Trace.objects.filter(file=hamilton).values_list("embedding_model", flat=True)) == {DLIB_MODEL_NAME}


def test_a_trace_whose_detections_changed_meanwhile_is_left_alone(hamilton_traces):
    hamilton, pipeline_vectors = hamilton_traces
    _as_old_model(hamilton)
    moved = sorted(pipeline_vectors)[0]

    def detections_edited(done, total, message):
        if message == "storing embeddings":
            Trace.objects.filter(file=hamilton, trace_id=moved).update(detections_version=99)

    result = reembed_file(hamilton, on_progress=detections_edited)
    assert result.changed_meanwhile == 1
    assert Trace.objects.get(file=hamilton, trace_id=moved).embedding_model == DLIB_MODEL_NAME


def test_command_only_stale_and_queue(hamilton_traces, facenet, capsys):
    from jobs.models import Job

    hamilton, pipeline_vectors = hamilton_traces
    _load(facenet, STEMS["facenet"])
    Trace.objects.filter(file=hamilton).update(embedding_model=DLIB_MODEL_NAME)
    missing = Trace.objects.filter(file=facenet, embedding__isnull=True).count()
    call_command("reembed_faces", "--only-stale")
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    hamilton_count = Trace.objects.filter(file=hamilton).count()
    assert f"of {hamilton_count} traces embedded" in lines[hamilton.file_uuid]
    # facenet's current vectors are left out: only its traces without one are tried
    assert f"of {missing} traces embedded" in lines.get(facenet.file_uuid, f"of {missing} traces embedded")
    assert Trace.objects.filter(file=hamilton, embedding_model=MODEL_NAME).count() >= len(pipeline_vectors)
    call_command("reembed_faces", "--file", facenet.file_uuid, "--queue")
    job = Job.objects.get(kind="reembed")
    assert job.file == facenet and job.state == Job.State.QUEUED and job.params == {"only_stale": False}
    assert f"job {job.pk.hex}" in capsys.readouterr().out
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("reembed_faces", "--file", "f" * 32)


@pytest.mark.django_db(transaction=True)
def test_reembed_job_over_rest_on_a_real_worker(hamilton, facenet, staff_user, plain_user, tmp_path):
    from tests.helpers_rest import key_client
    from tests.servers import celery_worker
    from tests.test_jobs import wait_job

    _load(hamilton, STEMS["hamilton"])
    _as_old_model(hamilton)
    person = Identity.objects.create(name="Performer")
    curation.bind_traces(person, list(Trace.objects.filter(file=hamilton).values_list("pk", flat=True)[:2]))
    before = _curation_state(hamilton)
    writer = key_client(staff_user, write=True)[0]
    reader = key_client(plain_user)[0]
    url = f"/api/v1/file/{hamilton.file_uuid}/reembed"
    assert reader.post(url, {}, format="json").status_code == 403
    assert writer.post(url, {"only_stale": "maybe"}, format="json").status_code == 400
    assert writer.post(f"/api/v1/file/{'f' * 32}/reembed", {}, format="json").status_code == 404
    response = writer.post(url, {}, format="json")
    assert response.status_code == 202, response.content
    job = response.json()["job"]
    assert job["kind"] == "reembed" and job["params"] == {"only_stale": False}
    assert writer.post(url, {}, format="json").json()["job"]["id"] == job["id"]  # one at a time per file
    assert writer.post(url, {"only_stale": True}, format="json").status_code == 409
    with celery_worker(log_path=tmp_path / "worker.log"):
        done = wait_job(writer, job["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["embedded"] == Trace.objects.filter(file=hamilton, embedding_model=MODEL_NAME).count() > 0
    assert done["result"]["traces"] == Trace.objects.filter(file=hamilton).count()
    assert done["result"]["reading_processes"] == 1, done  # the job's (daemonic) pool process forked a reader
    assert sum(done["result"]["batches_read"]) >= 1, done
    assert _curation_state(hamilton) == before
    assert writer.get("/api/v1/jobs?kind=reembed").json()["total"] == 1


def test_admin_action_queues_a_reembed_job(hamilton, admin_client):
    from jobs.models import Job

    response = admin_client.post("/admin/media_api/mediafile/", {"action": "reembed_faces",
                                                                "_selected_action": [hamilton.pk]}, follow=True)
    assert response.status_code == 200 and b"Re-embedding" in response.content
    job = Job.objects.get(kind="reembed")
    assert job.file == hamilton and job.state == Job.State.QUEUED


def test_replacing_current_vectors_drops_the_kept_cast_grouping(hamilton_traces):
    """The kept grouping sees traces gaining a vector, not one replaced in place: re-embedding drops it."""
    from django.core.cache import cache

    from identities.cast.grouping import CACHE_KEY, current_grouping

    hamilton, _ = hamilton_traces
    current_grouping()
    assert cache.get(CACHE_KEY) is not None
    reembed_file(hamilton, only_stale=True)  # the current vectors are kept: nothing replaced
    assert cache.get(CACHE_KEY) is not None
    reembed_file(hamilton)
    assert cache.get(CACHE_KEY) is None


@pytest.mark.django_db(transaction=True)
def test_a_reembed_cancelled_while_running_changes_nothing(staff_user, tmp_path):
    """A real worker, a file long enough to be caught mid-way: the cancelled job writes no vector."""
    from django.conf import settings

    from bench.bench_reembed import clip, populate
    from media_api.services.files import register_file
    from tests.helpers_rest import key_client
    from tests.servers import celery_worker, wait_for
    from tests.test_jobs import job_state, wait_job

    loops = 6
    media_file = register_file(clip(settings.FFMPEG_BINARY, 360, loops)).file
    populate(media_file, loops, 1.0)
    before = dict(Trace.objects.filter(file=media_file).values_list("pk", "embedding"))
    writer = key_client(staff_user, write=True)[0]
    job = writer.post(f"/api/v1/file/{media_file.file_uuid}/reembed", {}, format="json").json()["job"]
    with celery_worker(log_path=tmp_path / "worker.log"):
        wait_for(lambda: "frames read" in job_state(writer, job["id"])["message"], timeout=120, interval=0.1)
        assert writer.delete(f"/api/v1/jobs/{job['id']}").json()["job"]["cancel_requested"] is True
        ended = wait_job(writer, job["id"])
    assert ended["state"] == "cancelled" and ended["result"] is None
    after = dict(Trace.objects.filter(file=media_file).values_list("pk", "embedding"))
    assert {pk: bytes(v) for pk, v in after.items()} == {pk: bytes(v) for pk, v in before.items()}
    assert set(Trace.objects.filter(file=media_file).values_list("embedding_model", flat=True)) == {DLIB_MODEL_NAME}
