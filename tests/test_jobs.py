"""Background jobs over REST, run by real Celery worker processes on the embedded broker.

The embedded broker is kombu's filesystem transport under MOMENTRY_DATA_DIR (what the demo
uses): the same tasks and code path as production, a real queue and real worker processes.
The faults (killed workers, a restarted broker, several web nodes) are in test_jobs_faults.py.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from django.conf import settings

from media_api.models import Detection, Trace
from media_api.services.image_cache import evict
from tests.conftest import HAMILTON, HAMILTON_UUID, MEDIA
from tests.helpers_rest import key_client, load_traces
from tests.servers import celery_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory):
    """The Hamilton clip looped five times (46 s, stream copy): long enough to split, kill or cancel."""
    path = tmp_path_factory.mktemp("long") / "hamilton_x5.mp4"
    subprocess.run([settings.FFMPEG_BINARY, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "4", "-i",
                    str(HAMILTON), "-map", "0:v", "-c", "copy", str(path)], check=True, timeout=60)
    return path


@pytest.fixture
def writer(staff_user):
    return key_client(staff_user, write=True)[0]


def job_state(client, job_id: str) -> dict:
    return client.get(f"/api/v1/jobs/{job_id}").json()["job"]


def wait_job(client, job_id: str, timeout: float = 120) -> dict:
    wait_for(lambda: job_state(client, job_id)["state"] not in ("queued", "running"), timeout=timeout, interval=0.2)
    return job_state(client, job_id)


def test_detect_faces_job_end_to_end(hamilton, writer, plain_user, tmp_path):
    response = writer.post(f"/api/v1/file/{hamilton.file_uuid}/detect-faces", {}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["success"] is True and body["created"] is True
    job = body["job"]
    assert job["state"] == "queued" and job["kind"] == "detect_faces" and job["file_uuid"] == hamilton.file_uuid
    again = writer.post(f"/api/v1/file/{hamilton.file_uuid}/detect-faces", {}, format="json").json()
    assert again["created"] is False and again["job"]["id"] == job["id"]  # no duplicate while queued
    reader, _ = key_client(plain_user)
    assert reader.post(f"/api/v1/file/{hamilton.file_uuid}/detect-faces", {}, format="json").status_code == 403
    with celery_worker(log_path=tmp_path / "worker.log"):
        done = wait_job(writer, job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"] == 1.0 and done["attempts"] == 1 and done["started_at"] and done["finished_at"]
    assert done["result"]["traces"] == Trace.objects.filter(file=hamilton).count() >= 8
    assert done["result"]["detector_processes"] == 1, done  # the job's worker process forked its detector
    assert done["result"]["detections"] == Detection.objects.filter(file=hamilton).count()
    assert Detection.objects.filter(file=hamilton, origin=Detection.Origin.TRACKED).exists()
    listed = writer.get("/api/v1/jobs?state=succeeded&kind=detect_faces").json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    # a new submit after the first ended is a new job
    assert writer.post(f"/api/v1/file/{hamilton.file_uuid}/detect-faces", {}, format="json").json()["created"]


def test_scope_and_errors(hamilton, facenet, writer, plain_user):
    job = writer.post(f"/api/v1/file/{hamilton.file_uuid}/prewarm", {}, format="json").json()["job"]
    other_scope, _ = key_client(plain_user, file_uuids=[facenet.file_uuid])
    assert other_scope.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert other_scope.get("/api/v1/jobs").json()["total"] == 0
    assert key_client(plain_user, file_uuids=[hamilton.file_uuid])[0].get(f"/api/v1/jobs/{job['id']}").status_code \
        == 200
    assert writer.get(f"/api/v1/jobs/{'0' * 32}").status_code == 404
    assert writer.get("/api/v1/jobs/not-a-job").status_code == 400
    assert writer.get("/api/v1/jobs?state=sleeping").status_code == 400
    bad = writer.post(f"/api/v1/file/{hamilton.file_uuid}/detect-faces", {"stride": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["details"]["parameter"] == "stride"
    assert writer.post(f"/api/v1/file/{'f' * 32}/detect-faces", {}, format="json").status_code == 404


def test_register_prewarm_and_cluster_jobs(writer, tmp_path, settings):
    settings.MOMENTRY_MEDIA_ROOTS = [MEDIA]
    outside = writer.post("/api/v1/files", {"path": "/etc/passwd"}, format="json")
    assert outside.status_code == 400 and "MOMENTRY_MEDIA_ROOTS" in outside.json()["error"]["message"]
    assert writer.post("/api/v1/files", {"path": str(MEDIA / "nope.mp4")}, format="json").status_code == 400
    assert writer.post("/api/v1/files", {"path": "relative.mp4"}, format="json").status_code == 400
    sneaky = writer.post("/api/v1/files", {"path": str(MEDIA / ".." / ".." / "README.md")}, format="json")
    assert sneaky.status_code == 400
    register = writer.post("/api/v1/files", {"path": str(HAMILTON)}, format="json")
    assert register.status_code == 202, register.content
    with celery_worker(log_path=tmp_path / "worker.log", concurrency=2, MOMENTRY_MEDIA_ROOTS=str(MEDIA)):
        registered = wait_job(writer, register.json()["job"]["id"])
        assert registered["state"] == "succeeded" and registered["result"]["file_uuid"] == HAMILTON_UUID
        assert registered["file_uuid"] == HAMILTON_UUID
        detect = writer.post(f"/api/v1/file/{HAMILTON_UUID}/detect-faces", {}, format="json").json()["job"]
        assert wait_job(writer, detect["id"])["state"] == "succeeded"
        prewarm = writer.post(f"/api/v1/file/{HAMILTON_UUID}/prewarm", {}, format="json").json()["job"]
        warmed = wait_job(writer, prewarm["id"])
        assert warmed["state"] == "succeeded" and warmed["result"]["done"] == Trace.objects.count()
        assert all(t.rep_version == t.detections_version for t in Trace.objects.all())
        cluster = writer.post("/api/v1/identities/cluster", {}, format="json")
        assert cluster.status_code == 202
        clustered = wait_job(writer, cluster.json()["job"]["id"])
        assert clustered["state"] == "succeeded" and clustered["result"]["traces_considered"] >= 2


def test_a_cancelled_queued_job_never_runs(hamilton, writer, tmp_path):
    load_traces(hamilton, {1: (0, 40, 10)})
    job = writer.post(f"/api/v1/file/{hamilton.file_uuid}/detect-faces", {}, format="json").json()["job"]
    cancelled = writer.delete(f"/api/v1/jobs/{job['id']}").json()["job"]
    assert cancelled["state"] == "cancelled"
    assert writer.delete(f"/api/v1/jobs/{job['id']}").status_code == 409
    with celery_worker(log_path=tmp_path / "worker.log"):
        wait_for(lambda: b"succeeded" in (tmp_path / "worker.log").read_bytes(), timeout=60)  # message consumed
    assert job_state(writer, job["id"])["state"] == "cancelled"
    assert list(Trace.objects.filter(file=hamilton).values_list("trace_id", flat=True)) == [1]  # untouched


def test_a_cancelled_running_job_changes_nothing(writer, long_clip, tmp_path):
    from media_api.services.files import register_file

    media_file = register_file(long_clip).file
    load_traces(media_file, {7: (0, 50, 10)})
    before = list(Detection.objects.filter(file=media_file).values_list("frame_number", "x", "y"))
    job = writer.post(f"/api/v1/file/{media_file.file_uuid}/detect-faces", {}, format="json").json()["job"]
    with celery_worker(log_path=tmp_path / "worker.log"):
        wait_for(lambda: job_state(writer, job["id"])["progress"] > 0.1, timeout=120, interval=0.2)
        assert writer.delete(f"/api/v1/jobs/{job['id']}").json()["job"]["cancel_requested"] is True
        ended = wait_job(writer, job["id"])
    assert ended["state"] == "cancelled" and ended["result"] is None
    assert list(Detection.objects.filter(file=media_file).values_list("frame_number", "x", "y")) == before


def test_chunked_analysis_equals_one_pass(writer, long_clip, tmp_path):
    """A long file in 10-second chunks on two workers: the same traces as one pass over the whole file."""
    from media_api.faces.pipeline import analyse_video
    from media_api.services.files import frame_index_for, register_file

    media_file = register_file(long_clip).file
    job = writer.post(f"/api/v1/file/{media_file.file_uuid}/detect-faces", {}, format="json").json()["job"]
    with celery_worker("a", log_path=tmp_path / "a.log", MOMENTRY_CHUNK_SECONDS="10"), \
            celery_worker("b", log_path=tmp_path / "b.log", MOMENTRY_CHUNK_SECONDS="10"):
        done = wait_job(writer, job["id"], timeout=300)
    assert done["state"] == "succeeded", done
    assert done["result"]["chunks"] >= 4
    logs = [(tmp_path / f"{w}.log").read_text() for w in "ab"]
    assert all("analyse_chunk" in log for log in logs), "both workers took chunks"
    whole = analyse_video(long_clip, frame_index_for(media_file), media_file.fps, workers=False)
    expected = sorted((r["trace_id"], r["frame_number"], r["x"], r["y"], r["width"], r["height"], r["origin"])
                      for r in whole.rows())
    stored = sorted(Detection.objects.filter(file=media_file).values_list(
        "trace__trace_id", "frame_number", "x", "y", "width", "height", "origin"))
    origins = {Detection.Origin.DETECTED: "detected", Detection.Origin.TRACKED: "tracked"}
    assert [(*row[:6], origins[row[6]]) for row in stored] == expected


def test_image_cache_eviction_is_least_recently_used(settings, tmp_path):
    import os

    root = settings.CACHE_DIR / "images" / "v1" / "ab" / "x"
    root.mkdir(parents=True)
    now = time.time()
    for n in range(10):
        path = root / f"face-{n}.jpg"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - 10_000 + n * 100, now - 10_000 + n * 100))  # face-0 is the least recently used
    (root / ".tmp-123.jpg").write_bytes(b"y" * 5000)  # a render in progress
    abandoned = root / ".tmp-killed.mp4"  # left by a renderer killed a day ago
    abandoned.write_bytes(b"k" * 10)
    os.utime(abandoned, (now - 86_400, now - 86_400))
    fresh = root / "face-new.jpg"
    fresh.write_bytes(b"z" * 1000)  # just written
    outcome = evict(6000)
    left = sorted(p.name for p in root.iterdir())
    assert ".tmp-123.jpg" in left and "face-new.jpg" in left and ".tmp-killed.mp4" not in left
    assert outcome.files == 6 and "face-0.jpg" not in left and "face-9.jpg" in left
    assert evict(10**9).files == 0
