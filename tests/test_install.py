"""A production install: a virtualenv built from ``requirements.txt`` ALONE runs every process the docs describe.

The test suite itself runs in a venv from ``requirements-dev.txt``, whose test tools bring in packages
the product needs too (``packaging``, which kombu's Redis transport imports, came only from pytest):
a missing runtime dependency hides there. So this module builds a fresh venv with
``python -m venv`` + ``pip install -r requirements.txt`` (pip's own wheel cache and configured
find-links make that about 25 s) and, from that venv only:

* ``pip check``, and the dev tools really are absent (the venv is what production gets);
* every backend the README and docs/deploy.md configure imports and works: kombu's Redis and
  filesystem transports, Django's Redis cache, psycopg (on the PostgreSQL pass), whitenoise,
  PyAV and the static ffmpeg, and the face models' runtimes (LiteRT, OpenCV's tracker, dlib and
  its model files);
* the README's production sequence: ``check --deploy``, ``migrate``, ``collectstatic``;
* ``gunicorn -c deploy/gunicorn.conf.py momentry.wsgi`` answers ``/health``, the API docs and a
  static file;
* ``celery -A momentry worker`` on ``MOMENTRY_BROKER_URL=redis://…`` runs the README's jobs
  (register, detect faces, prewarm) to success, and ``celery -A momentry beat`` sends its schedule
  through Redis to that worker.

Cost: about a minute and a half, so ``scripts/test.sh`` runs it once per invocation — in the first
database pass (PostgreSQL when it answers: the production database), with ``TEST_INSTALL=0`` for the
other passes. Run alone (``scripts/test.sh tests/test_install.py``) it runs on each database pass.
Redis is the private server scripts/test.sh starts (``TEST_REDIS_URL``; databases 14 and 15 here).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from jobs.models import Job
from media_api.models import MediaFile, Trace
from tests.conftest import HAMILTON, HAMILTON_UUID
from tests.servers import REPO, celery_worker, gunicorn, process_env, stop_group, wait_for

REDIS = os.environ.get("TEST_REDIS_URL", "")
pytestmark = [
    pytest.mark.skipif(os.environ.get("TEST_INSTALL") == "0",
                       reason="the install test runs once per scripts/test.sh, in the first database pass"),
    pytest.mark.skipif(not REDIS, reason="no Redis (scripts/test.sh starts a private redis-server)"),
]

#: What the docs tell people to configure, and the runtimes the worker loads: each must import from
#: the production venv and do one real thing.
BACKENDS_SCRIPT = r"""
import importlib.util, json, os, sys
from pathlib import Path
import django
django.setup()
from django.core.cache import cache
import kombu
from kombu.transport import filesystem, redis as redis_transport   # MOMENTRY_BROKER_URL unset / redis://
with kombu.Connection(os.environ["MOMENTRY_BROKER_URL"]) as broker:
    broker.ensure_connection(max_retries=3)
    assert broker.transport.driver_name == "redis", broker.transport
cache.set("install-check", "ok", 30)                                 # MOMENTRY_REDIS_URL: Django's Redis cache
assert cache.get("install-check") == "ok"
import whitenoise.middleware, gunicorn.app.wsgiapp                   # the web process
import av, imageio_ffmpeg                                            # PyAV + the static ffmpeg
assert Path(imageio_ffmpeg.get_ffmpeg_exe()).is_file()
import cv2, dlib
assert cv2.legacy.TrackerMedianFlow_create() is not None             # opencv-contrib's tracker
from media_api.faces.detector import load_detector                   # BlazeFace on LiteRT
from media_api.faces.embeddings import load_network                  # dlib ResNet + model files
load_detector(); load_network()
if os.environ.get("CHECK_PSYCOPG"):
    import psycopg
    psycopg.connect(os.environ["CHECK_PSYCOPG"]).close()
assert importlib.util.find_spec("pytest") is None, "a dev tool leaked into the production venv"
print(json.dumps({"ok": True, "python": sys.executable}))
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """``python -m venv`` + ``pip install -r requirements.txt``: nothing from requirements-dev.txt."""
    folder = tmp_path_factory.mktemp("install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
    pip = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r",
                          str(REPO / "requirements.txt")], capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return folder


@pytest.fixture
def production_env(venv, tmp_path) -> dict[str, str]:
    """The README's production environment, on the test database and the private Redis; the venv's bin on PATH."""
    import redis

    base = REDIS.rsplit("/", 1)[0]
    for number in (14, 15):
        redis.Redis.from_url(f"{base}/{number}").flushdb()
    dev_bin = str(Path(sys.executable).parent)
    path = [str(venv / "bin"), *(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != dev_bin)]
    return {
        "PATH": os.pathsep.join(path),
        "VIRTUAL_ENV": str(venv),
        "MOMENTRY_DATA_DIR": str(tmp_path / "data"),
        "MOMENTRY_SECRET_KEY": secrets.token_urlsafe(48),
        "MOMENTRY_REDIS_URL": f"{base}/15",
        "MOMENTRY_BROKER_URL": f"{base}/14",
        "MOMENTRY_MEDIA_ROOTS": str(HAMILTON.parent),
        "MOMENTRY_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MOMENTRY_TRUSTED_PROXIES": "127.0.0.1",
    }


def run_in(venv: Path, *args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``<venv>/bin/<program> args`` (``python`` runs ``manage.py`` …) in the repository, with the process env."""
    result = subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=REPO, env=process_env(**env),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-2000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    return result


def test_requirements_are_complete_and_consistent(venv):
    check = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.django_db(transaction=True)
def test_every_documented_backend_works_from_the_production_venv(venv, production_env):
    env = dict(production_env)
    if connection.vendor == "postgresql":
        from tests.servers import database_url

        env["CHECK_PSYCOPG"] = database_url()
    out = run_in(venv, "python", "-c", BACKENDS_SCRIPT, env=env).stdout
    assert json.loads(out.strip().splitlines()[-1])["python"].startswith(str(venv))


@pytest.mark.django_db(transaction=True)
def test_web_process_from_the_production_venv(venv, production_env, tmp_path):
    """The README's production steps, then gunicorn with the deploy config answers."""
    run_in(venv, "python", "manage.py", "check", "--deploy", "--fail-level", "ERROR", env=production_env)
    run_in(venv, "python", "manage.py", "migrate", "--noinput", env=production_env)
    run_in(venv, "python", "manage.py", "collectstatic", "--noinput", env=production_env)
    assert (Path(production_env["MOMENTRY_DATA_DIR"]) / "static" / "admin" / "css" / "base.css").is_file()
    python = str(venv / "bin" / "python")
    with gunicorn(workers=2, log_path=tmp_path / "web.log", python=python, **production_env) as url:
        with urllib.request.urlopen(f"{url}/health", timeout=30) as response:
            assert json.loads(response.read())["status"] == "ok"
        for path in ("/api/v1/redoc/", "/api/v1/docs/", "/static/admin/css/base.css"):
            with urllib.request.urlopen(f"{url}{path}", timeout=30) as response:
                assert response.status == 200, path
    assert "Booting worker" in (tmp_path / "web.log").read_text()


@pytest.mark.django_db(transaction=True)
def test_worker_and_beat_from_the_production_venv_run_jobs_on_redis(venv, production_env, tmp_path):
    """``celery -A momentry worker`` on Redis runs the README's jobs; ``celery -A momentry beat`` reaches it."""
    python = str(venv / "bin" / "python")
    env = {**production_env, "MOMENTRY_REAP_SECONDS": "1"}
    with celery_worker("install", log_path=tmp_path / "worker.log", python=python, **env):
        run_in(venv, "python", "manage.py", "register_file", str(HAMILTON), "--queue", env=env)
        wait_for(lambda: not Job.objects.filter(state__in=Job.ACTIVE).exists(), timeout=120, interval=0.2)
        media_file = MediaFile.objects.get(file_uuid=HAMILTON_UUID)
        run_in(venv, "python", "manage.py", "detect_faces", HAMILTON_UUID, "--queue", env=env)
        wait_for(lambda: not Job.objects.filter(state__in=Job.ACTIVE).exists(), timeout=300, interval=0.2)
        run_in(venv, "python", "manage.py", "prewarm_thumbnails", "--queue", env=env)
        wait_for(lambda: not Job.objects.filter(state__in=Job.ACTIVE).exists(), timeout=300, interval=0.2)
        jobs = {job.kind: job for job in Job.objects.all()}
        assert set(jobs) == {Job.Kind.REGISTER, Job.Kind.DETECT, Job.Kind.PREWARM}
        assert all(job.state == Job.State.SUCCEEDED for job in jobs.values()), \
            {job.kind: (job.state, job.error) for job in jobs.values()}
        assert Trace.objects.filter(file=media_file).count() == jobs[Job.Kind.DETECT].result["traces"] >= 8

        beat_log = tmp_path / "beat.log"
        with open(beat_log, "wb") as log:
            beat = subprocess.Popen([str(venv / "bin" / "celery"), "-A", "momentry", "beat", "--loglevel", "INFO"],
                                    cwd=REPO, env=process_env(**env), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                reaped = re.compile(rb"Task jobs\.tasks\.reap_jobs\[[^\]]+\] succeeded")
                wait_for(lambda: reaped.search((tmp_path / "worker.log").read_bytes()), timeout=60, interval=0.2)
            finally:
                stop_group(beat)
    assert b"Sending due task reap-jobs" in beat_log.read_bytes()
