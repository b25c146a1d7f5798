"""Real server and worker processes for tests: gunicorn, management commands, against the test database.

Tests that use these need committed data (``transactional_db``): the processes connect to the
test database on their own (PostgreSQL: the ``test_…`` database; SQLite: the test database
file, see settings ``DATABASES["default"]["TEST"]``) and share ``MOMENTRY_DATA_DIR`` with the
test process, so they sign with the same key and share the media job-slot locks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"


def database_url() -> str:
    """A ``DATABASE_URL`` naming the database the tests are running on."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgresql://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "momentry.settings",
        "DATABASE_URL": database_url(),
        "MOMENTRY_DATA_DIR": str(settings.DATA_DIR),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("MOMENTRY_REDIS_URL", None)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:g}s")
        time.sleep(interval)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


@contextlib.contextmanager
def gunicorn(workers: int = 2, log_path: Path | None = None, python: str = sys.executable,
             **env: str) -> Iterator[str]:
    """A gunicorn with the deploy config on a free port; yields its base URL, stops it afterwards.

    ``python`` is the interpreter of the virtualenv to run it from (tests/test_install.py).
    """
    port = free_port()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [python, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "momentry.wsgi"],
        cwd=REPO, env=process_env(**env), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: proc.poll() is not None or _answers(port), timeout=60)
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()


def raw_request(base_url: str, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` bytes as they are and return the whole answer (for what clients cannot send)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:")]
    except OSError:
        return False
    return bool(state) and "Z" not in state[0].split()[1]


@contextlib.contextmanager
def celery_worker(name: str = "w1", concurrency: int = 1, log_path: Path | None = None, beat: bool = False,
                  python: str = sys.executable, **env: str) -> Iterator[subprocess.Popen]:
    """A real Celery worker process (``celery -A momentry worker``) on the test database; stopped afterwards."""
    args = [python, "-m", "celery", "-A", "momentry", "worker", "--concurrency", str(concurrency),
            "--loglevel", "INFO", "-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
    if beat:
        args.append("-B")
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, cwd=REPO, env=process_env(**env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        if log_path:
            wait_for(lambda: proc.poll() is not None or b" ready." in log_path.read_bytes(), timeout=60)
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        yield proc
    finally:
        stop_group(proc)
        if log_path:
            log.close()


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process started with start_new_session=True and everything it started.

    TERM goes to the main process only, as systemd's ``KillMode=mixed`` does: a Celery worker stops its
    own pool, and a pool child signalled at the same time can leave the worker waiting on a lock forever.
    """
    import signal

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (pool processes)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's standalone S3 server (in memory) on a free loopback port, stopped afterwards: its URL.

    A test double of the S3 API for tests and benchmarks (no S3-compatible server is installable
    here); production uses a real store.
    """
    import shutil
    import tempfile
    import urllib.request

    binary = shutil.which("moto_server") or str(REPO / ".venv/bin/moto_server")
    url = f"http://127.0.0.1:{free_port()}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(url + "/moto-api/data.json", timeout=1).close()
            return True
        except OSError:
            return False

    with tempfile.TemporaryDirectory(prefix="momentry-moto-") as folder:
        proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]], cwd=folder,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: proc.poll() is not None or answers(), timeout=30)
            yield url
        finally:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """A private Redis (no persistence, in a temporary directory) on a free port: for tests that restart their broker.

    Never the machine's own Redis, nor the one scripts/test.sh started for the run (TEST_REDIS_URL).
    """
    import shutil
    import tempfile

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="momentry-redis-") as folder:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: _answers_tcp(port), timeout=20)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


def _answers_tcp(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
