"""Jobs under faults, with real worker processes, a real Redis broker and real web processes.

* a worker's process killed with -9 in the middle of a chunk: another worker finishes the job,
  with exactly one set of results;
* a whole worker killed with -9 (nobody left to reject its message): the reaper sends the job
  again and another worker finishes it — no job stays ``running`` forever;
* the broker restarted (Redis without persistence: queued messages are lost) in the middle of
  a job: every job still ends, finished or cleanly failed;
* two web processes and two workers on one database and one Redis: a job submitted through one
  web process is read, finished, through the other.

Redis: TEST_REDIS_URL (scripts/test.sh sets it when 127.0.0.1:6379 answers); these tests use
database 12 as the broker (and 13 for the cache), or a private redis-server they restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from jobs.models import Job
from media_api.models import Detection, Trace
from tests.servers import (
    REPO,
    alive,
    celery_worker,
    children_of,
    gunicorn,
    process_env,
    redis_server,
    stop_group,
    wait_for,
)
from tests.test_jobs import long_clip  # noqa: F401 - the fixture

REDIS = os.environ.get("TEST_REDIS_URL", "")
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not REDIS, reason="no Redis (TEST_REDIS_URL is set by scripts/test.sh)")]


def _redis(db: int) -> str:
    return REDIS.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture
def broker():
    import redis

    url = _redis(12)
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def queue_detection(media_file, broker_url: str, **env: str) -> Job:
    """Submit through the real command (``--queue``), as an operator's script would."""
    subprocess.run([sys.executable, "manage.py", "detect_faces", media_file.file_uuid, "--queue"], cwd=REPO,
                   env=process_env(MOMENTRY_BROKER_URL=broker_url, **env), check=True, capture_output=True)
    return Job.objects.get(file=media_file, kind=Job.Kind.DETECT, state__in=Job.ACTIVE)


def state_of(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def assert_one_set_of_results(media_file, job: Job) -> None:
    job = state_of(job)
    assert job.state == Job.State.SUCCEEDED, (job.state, job.error)
    detections = list(Detection.objects.filter(file=media_file).values_list("trace_id", "frame_number"))
    assert len(detections) == len(set(detections)) == job.result["detections"]  # no duplicate, nothing half
    assert Trace.objects.filter(file=media_file).count() == job.result["traces"]
    assert sum(Trace.objects.filter(file=media_file).values_list("face_count", flat=True)) == len(detections)


def test_worker_process_killed_mid_chunk(long_clip, broker, tmp_path):  # noqa: F811
    from media_api.services.files import register_file

    media_file = register_file(long_clip).file
    env = {"MOMENTRY_BROKER_URL": broker, "MOMENTRY_CHUNK_SECONDS": "10"}
    with celery_worker("a", log_path=tmp_path / "a.log", **env) as a, \
            celery_worker("b", log_path=tmp_path / "b.log", **env):
        job = queue_detection(media_file, broker, MOMENTRY_CHUNK_SECONDS="10")
        wait_for(lambda: b"analyse_chunk" in (tmp_path / "a.log").read_bytes(), timeout=120, interval=0.1)
        victims = children_of(a.pid)  # the pool process running the chunk
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: state_of(job).state not in Job.ACTIVE, timeout=300, interval=0.5)
    log = (tmp_path / "a.log").read_text()
    assert "WorkerLostError" in log or "signal 9" in log, log[-2000:]
    assert_one_set_of_results(media_file, job)


def test_job_of_a_vanished_worker_is_finished_elsewhere(long_clip, broker, tmp_path):  # noqa: F811
    from media_api.services.files import register_file

    media_file = register_file(long_clip).file
    env = {"MOMENTRY_BROKER_URL": broker, "MOMENTRY_JOB_STALE_SECONDS": "4", "MOMENTRY_REAP_SECONDS": "2"}
    with celery_worker("doomed", log_path=tmp_path / "doomed.log", **env) as doomed:
        job = queue_detection(media_file, broker)
        wait_for(lambda: state_of(job).state == Job.State.RUNNING and state_of(job).progress > 0.05, timeout=120,
                 interval=0.2)
        members = [doomed.pid, *children_of(doomed.pid)]
        os.killpg(doomed.pid, signal.SIGKILL)  # the whole worker: nobody rejects or acknowledges the message
        wait_for(lambda: not any(alive(p) for p in members), timeout=10)
    assert state_of(job).state == Job.State.RUNNING  # ... and nobody will tell, but the heartbeat stops
    with celery_worker("rescuer", log_path=tmp_path / "rescuer.log", beat=True, **env):
        wait_for(lambda: state_of(job).state not in Job.ACTIVE, timeout=300, interval=0.5)
    assert state_of(job).attempts == 2
    assert_one_set_of_results(media_file, job)


def test_broker_restart_mid_job_ends_every_job(long_clip, hamilton, tmp_path):  # noqa: F811
    from media_api.services.files import register_file

    media_file = register_file(long_clip).file
    with redis_server() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        env = {"MOMENTRY_BROKER_URL": url, "MOMENTRY_JOB_REQUEUE_SECONDS": "3", "MOMENTRY_REAP_SECONDS": "2"}
        with celery_worker("w", log_path=tmp_path / "w.log", beat=True, **env):
            running = queue_detection(media_file, url)
            waiting = queue_detection(hamilton, url)  # behind it: one worker process
            wait_for(lambda: state_of(running).state == Job.State.RUNNING, timeout=120, interval=0.2)
            restarted = _restart_redis(port)
            try:
                wait_for(lambda: all(state_of(j).state not in Job.ACTIVE for j in (running, waiting)), timeout=300,
                         interval=0.5)
            finally:
                restarted.kill()
                restarted.wait()
    for job in (running, waiting):
        assert state_of(job).state in (Job.State.SUCCEEDED, Job.State.FAILED)
    assert_one_set_of_results(media_file, running)


def _restart_redis(port: int) -> subprocess.Popen:
    """Kill the broker on ``port`` and start an empty one there (what a restart without persistence is)."""
    import shutil

    for line in subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout.splitlines():
        if f":{port} " in line and "pid=" in line:
            os.kill(int(line.split("pid=")[1].split(",")[0]), signal.SIGKILL)
    import time

    time.sleep(1)
    proc = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc


def test_two_web_processes_and_two_workers(hamilton, staff_user, broker, tmp_path):
    from momentry.services import create_api_key

    key = create_api_key(staff_user, write=True).key
    env = {"MOMENTRY_BROKER_URL": broker, "MOMENTRY_REDIS_URL": _redis(13)}

    def call(url: str, method: str = "GET", body: dict | None = None) -> dict:
        request = urllib.request.Request(url, method=method, headers={"X-API-Key": key,
                                                                     "Content-Type": "application/json"},
                                         data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    with gunicorn(workers=1, log_path=tmp_path / "web1.log", **env) as web1, \
            gunicorn(workers=1, log_path=tmp_path / "web2.log", **env) as web2, \
            celery_worker("one", log_path=tmp_path / "one.log", **env), \
            celery_worker("two", log_path=tmp_path / "two.log", **env):
        submitted = call(f"{web1}/api/v1/file/{hamilton.file_uuid}/detect-faces", "POST", {})
        job_id = submitted["job"]["id"]
        assert call(f"{web2}/api/v1/file/{hamilton.file_uuid}/detect-faces", "POST", {})["job"]["id"] == job_id
        wait_for(lambda: call(f"{web2}/api/v1/jobs/{job_id}")["job"]["state"] not in ("queued", "running"),
                 timeout=180, interval=0.5)
        done = call(f"{web2}/api/v1/jobs/{job_id}")["job"]
        assert done["state"] == "succeeded" and done["result"]["traces"] >= 8
        traces = call(f"{web1}/api/v1/file/{hamilton.file_uuid}/traces?page_size=100")
        assert traces["total"] == done["result"]["traces"]
    for proc_log in ("one.log", "two.log"):
        assert (tmp_path / proc_log).exists()


def test_stop_group_leaves_nothing(tmp_path, broker):
    """(The helper the tests rely on:) stopping a worker stops its pool processes too."""
    with celery_worker("x", concurrency=2, log_path=tmp_path / "x.log", MOMENTRY_BROKER_URL=broker) as worker:
        pool = children_of(worker.pid)
        assert len(pool) >= 2
    stop_group(worker)
    assert not any(alive(pid) for pid in pool)
