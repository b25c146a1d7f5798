"""Jobs, hardening round 3 (issue 18): claims that know a dead process from a live one, parameters
that must match, who may cancel, what a failure tells a client, path refusals, and a module graph
without cycles.

The claim tests use real processes (a child that lives, then is killed) and the real database; the
recovery with real Celery workers, Redis and kills is in test_jobs_faults.py.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from jobs import liveness, services
from jobs.models import Job
from media_api.faces.pipeline import default_stride
from tests.conftest import HAMILTON, MEDIA, REPO
from tests.helpers_rest import key_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sleeper():
    """A real process of this host that lives until the test kills it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def process_of(proc: subprocess.Popen) -> liveness.Process:
    return liveness.Process(liveness.host_id(), proc.pid, liveness.start_time(proc.pid))


def queued_job(file) -> Job:
    return services.submit(Job.Kind.DETECT, file=file)[0]


# --------------------------------------------------------------------------- claims


def test_a_second_delivery_while_the_claimer_lives_is_refused(hamilton, sleeper):
    job = queued_job(hamilton)
    first = services.claim(job.pk, process_of(sleeper))
    assert first is not None and first.attempts == 1 and first.worker_pid == sleeper.pid
    assert services.claim(job.pk) is None  # a redelivered message, another pool process of this host
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    assert services.claim(job.pk) is None  # a stale heartbeat (a busy database) is no reason while it lives
    assert services.reap().resent == 0 and Job.objects.get(pk=job.pk).state == Job.State.RUNNING
    assert Job.objects.get(pk=job.pk).attempts == 1
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.claim(job.pk).attempts == 2  # silent for an hour: it hangs; no job stays running forever


def unstorable_result(job: Job) -> dict:
    """A runner (registered by the test below) whose result cannot be stored: the task breaks after the work."""
    return {"when": object()}


def test_a_task_that_ends_without_an_outcome_lets_its_job_go(hamilton, settings, monkeypatch):
    """The pool process lives on after an unexpected error: its claim must not hold the job."""
    from jobs import dispatch, tasks

    monkeypatch.setitem(dispatch.RUNNERS, "unstorable", "tests.test_jobs_hardening.unstorable_result")
    job = services.submit("unstorable")[0]
    with pytest.raises(TypeError):
        tasks.run_job(str(job.pk))
    left = Job.objects.get(pk=job.pk)
    assert left.state == Job.State.RUNNING and left.worker_pid is None
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.MOMENTRY_JOB_STALE_SECONDS + 1))
    assert services.claim(job.pk) is not None


def test_a_dead_claimer_on_this_host_frees_the_job_at_once(hamilton, sleeper, settings):
    settings.MOMENTRY_JOB_STALE_SECONDS = 3600  # the heartbeat alone would keep it for an hour
    job = queued_job(hamilton)
    first = services.claim(job.pk, process_of(sleeper))
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    second = services.claim(job.pk)
    assert second is not None and second.attempts == 2 and second.worker_pid == os.getpid()
    services.succeed(first, {"from": "the dead one"})  # the old claim may no longer record anything
    assert Job.objects.get(pk=job.pk).state == Job.State.RUNNING
    services.succeed(second, {"from": "the live one"})
    assert Job.objects.get(pk=job.pk).result == {"from": "the live one"}


def test_a_recycled_pid_is_not_the_claimer(hamilton, sleeper):
    job = queued_job(hamilton)
    services.claim(job.pk, liveness.Process(liveness.host_id(), sleeper.pid, liveness.start_time(sleeper.pid) - 1))
    assert services.claim(job.pk) is not None  # same pid, another start time: the claimer is gone


def test_claims_from_another_host_go_by_the_heartbeat(hamilton, settings):
    job = queued_job(hamilton)
    elsewhere = liveness.Process("other-host/0123abcd/4026531836", 4242, 99)
    assert services.claim(job.pk, elsewhere) is not None
    assert services.claim(job.pk) is None  # cannot see that process: its fresh heartbeat says it lives
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.MOMENTRY_JOB_STALE_SECONDS + 1))
    assert services.claim(job.pk).attempts == 2


def test_a_job_that_keeps_killing_its_worker_fails(hamilton, settings):
    settings.MOMENTRY_JOB_MAX_ATTEMPTS = 2
    job = queued_job(hamilton)
    for _ in range(2):
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        services.claim(job.pk, liveness.Process(liveness.host_id(), dead.pid, 0))
    assert services.claim(job.pk) is None
    ended = Job.objects.get(pk=job.pk)
    assert ended.state == Job.State.FAILED and "died 2 time(s)" in ended.error


def test_the_reaper_sends_a_dead_claimers_job_without_waiting(hamilton, settings):
    settings.MOMENTRY_JOB_STALE_SECONDS = 3600
    job = queued_job(hamilton)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    services.claim(job.pk, liveness.Process(liveness.host_id(), dead.pid, 0))
    assert services.reap().resent == 1
    assert Job.objects.get(pk=job.pk).state == Job.State.QUEUED  # what it is until a worker claims it
    assert services.reap().resent == 0  # its message waits in the queue: not sent at every round
    assert services.claim(job.pk).attempts == 2


def test_the_heartbeat_thread_beats_while_the_work_is_silent(hamilton, settings):
    import time

    settings.MOMENTRY_JOB_HEARTBEAT_SECONDS = 0.2
    job = services.claim(queued_job(hamilton).pk)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with services.KeepAlive(job):
        time.sleep(1.0)  # work that reports nothing
    assert timezone.now() - Job.objects.get(pk=job.pk).heartbeat_at < timedelta(seconds=1)


def test_a_queued_job_whose_send_failed_is_sent_at_the_next_reap(hamilton):
    job = queued_job(hamilton)
    Job.objects.filter(pk=job.pk).update(enqueued_at=None)  # what a failed send records
    assert services.reap().resent == 1
    assert Job.objects.get(pk=job.pk).enqueued_at is not None


def deferred_job(file, chunks: int = 2) -> Job:
    """A running long-file analysis waiting on its chunks (what run_detect leaves)."""
    from jobs.models import JobChunk

    job = services.claim(queued_job(file).pk)
    for number in range(chunks):
        JobChunk.objects.create(job=job, index=number, first_frame=number * 10, last_frame=number * 10 + 9)
    services.release_claim(job)
    return Job.objects.get(pk=job.pk)


def test_a_chunk_is_claimed_like_a_job(hamilton, sleeper):
    job = deferred_job(hamilton)
    assert services.claim_chunk(job, 0, process_of(sleeper)) is not None
    assert services.claim_chunk(job, 0) is None  # its process lives: never analysed twice at once
    assert services.claim_chunk(job, 1) is not None  # another chunk is free
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    assert services.claim_chunk(job, 0).worker_pid == os.getpid()


def test_the_reaper_sends_the_chunk_of_a_dead_process_again(hamilton, settings):
    settings.MOMENTRY_JOB_STALE_SECONDS = 3600
    job = deferred_job(hamilton)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    services.claim_chunk(job, 1, liveness.Process(liveness.host_id(), dead.pid, 0))
    outcome = services.reap()
    assert outcome.chunks_resent == 1 and outcome.resent == 0  # chunk 0 is waiting in the queue: left alone
    assert services.reap().chunks_resent == 0  # sent once, not at every round
    assert services.claim_chunk(job, 1) is not None


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="no Redis (scripts/test.sh sets TEST_REDIS_URL)")
def test_a_broker_that_lost_its_data_gets_the_waiting_messages_again(hamilton, facenet, sleeper, settings):
    """The reaper's marker key in a real Redis: missing → queued jobs and waiting chunks are sent again, once."""
    import redis

    url = os.environ["TEST_REDIS_URL"].rsplit("/", 1)[0] + "/14"
    settings.CELERY_BROKER_URL = url  # what the reaper checks (the messages still go to the test's broker)
    redis.Redis.from_url(url).flushdb()
    try:
        chunked = deferred_job(hamilton)
        services.claim_chunk(chunked, 0, process_of(sleeper))  # being analysed by a live process
        waiting = queued_job(facenet)
        first = services.reap()
        assert first.broker_emptied and first.resent == 1 and first.chunks_resent == 1  # chunk 1 only
        assert Job.objects.get(pk=waiting.pk).state == Job.State.QUEUED
        assert services.claim_chunk(chunked, 0) is None  # the live one kept its chunk
        again = services.reap()
        assert not again.broker_emptied and again.resent == again.chunks_resent == 0
        redis.Redis.from_url(url).flushdb()  # a restart without persistence
        assert services.reap().broker_emptied
    finally:
        redis.Redis.from_url(url).flushdb()


# --------------------------------------------------------------------------- parameters


def test_other_parameters_while_a_job_is_active_are_a_conflict(hamilton, staff_user):
    writer = key_client(staff_user, write=True)[0]
    url = f"/api/v1/file/{hamilton.file_uuid}/detect-faces"
    first = writer.post(url, {}, format="json").json()["job"]
    default = default_stride(hamilton.fps)
    assert first["params"] == {"stride": default}
    same = writer.post(url, {"stride": default}, format="json")
    assert same.status_code == 202 and same.json()["created"] is False and same.json()["job"]["id"] == first["id"]
    other = writer.post(url, {"stride": default + 1}, format="json")
    assert other.status_code == 409, other.content
    error = other.json()["error"]
    assert error["code"] == "CONFLICT" and error["details"]["job_id"] == first["id"]
    assert error["details"]["params"] == {"stride": default}
    prewarm = f"/api/v1/file/{hamilton.file_uuid}/prewarm"
    assert writer.post(prewarm, {}, format="json").json()["created"] is True
    assert writer.post(prewarm, {"force": False}, format="json").json()["created"] is False
    assert writer.post(prewarm, {"force": True}, format="json").status_code == 409


# --------------------------------------------------------------------------- cancelling


def test_only_the_submitter_and_admins_cancel(hamilton, facenet, staff_user, django_user_model):
    alice = django_user_model.objects.create_user("alice", "a@example.com", "alice-pass-123")
    bob = django_user_model.objects.create_user("bob", "b@example.com", "bob-pass-123")
    as_alice, as_bob = key_client(alice, write=True)[0], key_client(bob, write=True)[0]
    admin = key_client(staff_user, write=True)[0]
    job = as_alice.post(f"/api/v1/file/{hamilton.file_uuid}/detect-faces", {}, format="json").json()["job"]
    refused = as_bob.delete(f"/api/v1/jobs/{job['id']}")
    unknown = as_bob.delete(f"/api/v1/jobs/{'0' * 32}")
    assert refused.status_code == unknown.status_code == 404
    assert refused.json()["error"]["code"] == unknown.json()["error"]["code"] == "NOT_FOUND"
    assert refused.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert Job.objects.get(pk=job["id"]).state == Job.State.QUEUED
    assert as_alice.delete(f"/api/v1/jobs/{job['id']}").json()["job"]["state"] == "cancelled"
    other = as_alice.post(f"/api/v1/file/{facenet.file_uuid}/prewarm", {}, format="json").json()["job"]
    assert admin.delete(f"/api/v1/jobs/{other['id']}").json()["job"]["state"] == "cancelled"
    queued_by_a_command = queued_job(hamilton)  # no submitter: admins only
    assert as_alice.delete(f"/api/v1/jobs/{queued_by_a_command.pk.hex}").status_code == 404
    assert admin.delete(f"/api/v1/jobs/{queued_by_a_command.pk.hex}").status_code == 200


# --------------------------------------------------------------------------- failures


def test_a_failure_is_one_line_for_clients_and_a_traceback_for_admins(staff_user, tmp_path, client):
    from jobs.tasks import run_job
    from media_api.services.files import register_file

    copy = tmp_path / "gone.mp4"
    copy.write_bytes(HAMILTON.read_bytes() + b"\0")  # another file_uuid than the fixture's
    media_file = register_file(copy).file
    copy.unlink()  # the worker will not find it
    job = queued_job(media_file)
    run_job(str(job.pk))  # the task itself, in this process
    body = key_client(staff_user)[0].get(f"/api/v1/jobs/{job.pk.hex}").json()["job"]
    assert body["state"] == "failed"
    assert body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    assert ".py" not in body["error"] and str(REPO) not in body["error"]
    stored = Job.objects.get(pk=job.pk)
    assert stored.error_detail.startswith("Traceback") and ".py" in stored.error_detail
    client.force_login(staff_user)
    page = client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert "Traceback" in page and body["error"].split(":")[0] in page


# --------------------------------------------------------------------------- registering


@pytest.mark.parametrize("path", ["~nosuchuser/x.mp4", "~/x.mp4", str(MEDIA / ("n" * 300 + ".mp4")),
                                  "/etc/passwd", str(MEDIA / "nope.mp4"), str(MEDIA / "nope" / "x.mp4")])
def test_refused_registrations_are_clean_400s(path, staff_user, settings):
    settings.MOMENTRY_MEDIA_ROOTS = [MEDIA]
    response = key_client(staff_user, write=True)[0].post("/api/v1/files", {"path": path}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "BAD_REQUEST" and error["details"]["parameter"] == "path"
    assert "media_roots" not in error["details"] and str(MEDIA) not in response.content.decode()


# --------------------------------------------------------------------------- structure


def test_the_jobs_modules_import_each_other_as_a_tree():
    """No cycle among jobs/*.py imports, counting the ones inside functions."""
    folder = REPO / "jobs"
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            imported |= {n.split(".")[1] for n in names if n.startswith("jobs.") and (folder / f"{n.split('.')[1]}.py")
                         .exists()}
        graph[path.stem] = imported - {path.stem}

    def cycle_from(module: str, trail: tuple[str, ...]) -> tuple[str, ...] | None:
        if module in trail:
            return (*trail, module)
        for target in sorted(graph.get(module, ())):
            if found := cycle_from(target, (*trail, module)):
                return found
        return None

    cycles = [c for m in graph if (c := cycle_from(m, ()))]
    assert not cycles, f"import cycle: {' -> '.join(cycles[0])}"
    assert Path(folder / "dispatch.py").exists() and not graph["dispatch"] - {"models"}
