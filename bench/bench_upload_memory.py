"""Web-node memory while a 1 GB tus upload streams through gunicorn (goal: flat), local and S3 storage.

    .venv/bin/python bench/bench_upload_memory.py [--size-mb 1024] [--chunk-mb 256] [--no-s3]

One gunicorn (deploy config, one sync worker, SQLite in a throw-away data directory) takes a tus
upload of a generated stream (a repeated random MiB: nothing is read from disk on the client side)
sent as PATCH chunks of ``--chunk-mb``, as tus-js-client or tuspy would with that ``chunkSize``.
A thread samples the worker's RSS from /proc every 50 ms. Reported: the worker's RSS after a warm-up
request (baseline, same run), its peak during the upload, the growth, and the growth as a share of
one chunk (what reading a chunk whole would cost at least) and of the upload. S3 runs against a
moto server on loopback (its own memory is not the web node's and is not measured).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import children_of, free_port, moto_server, wait_for  # noqa: E402

MIB = 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:  # the worker is gone: the upload fails and says why
                return
            time.sleep(0.05)


def setup_data_dir(data_dir: Path, env: dict[str, str]) -> str:
    """Migrate a fresh SQLite database and print a write key for a staff user."""
    script = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "from django.contrib.auth import get_user_model\n"
        "from momentry.services import create_api_key\n"
        "user = get_user_model().objects.create_user('bench', is_staff=True)\n"
        "print(create_api_key(user, write=True).key)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def chunk_body(size: int, block: bytes):
    sent = 0
    while sent < size:
        piece = block[:min(len(block), size - sent)]
        sent += len(piece)
        yield piece


def upload(port: int, key: str, size: int, chunk: int) -> float:
    headers = {"X-API-Key": key, "Tus-Resumable": "1.0.0"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/api/v1/uploads", headers={**headers, "Upload-Length": str(size),
                                                     "Upload-Metadata": "filename YmVuY2guYmlu"})
    response = conn.getresponse()
    response.read()
    assert response.status == 201, response.status
    location = response.getheader("Location")
    conn.close()
    block = os.urandom(MIB)
    start = time.perf_counter()
    offset = 0
    while offset < size:
        length = min(chunk, size - offset)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.request("PATCH", location, body=chunk_body(length, block),
                     headers={**headers, "Upload-Offset": str(offset), "Content-Length": str(length),
                              "Content-Type": "application/offset+octet-stream"})
        response = conn.getresponse()
        response.read()
        assert response.status == 204, (response.status, response.read())
        offset = int(response.getheader("Upload-Offset"))
        conn.close()
    return time.perf_counter() - start


def run(kind: str, size: int, chunk: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"upload-mem-{kind}-"))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="momentry.settings", MOMENTRY_DATA_DIR=str(folder / "data"),
               MOMENTRY_MAX_UPLOAD_BYTES=str(size), PYTHONPATH=str(ROOT))
    env.pop("DATABASE_URL", None)
    stack = contextlib.ExitStack()
    try:
        if kind == "s3":
            endpoint = stack.enter_context(moto_server())
            env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                       AWS_DEFAULT_REGION="us-east-1", MOMENTRY_STORAGE_URL="s3://bench/media")
            import boto3

            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                         aws_secret_access_key="bench").create_bucket(Bucket="bench")
        key = setup_data_dir(folder / "data", env)
        port = free_port()
        log = open(folder / "gunicorn.log", "wb")  # noqa: SIM115 - closed with the server
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py"),
                                 "--bind", f"127.0.0.1:{port}", "--workers", "1", "momentry.wsgi"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: children_of(proc.pid), timeout=60)
            worker = children_of(proc.pid)[0]
            wait_for(lambda: _health(port), timeout=60)
            upload(port, key, MIB, MIB)  # warm-up: every module the upload path uses is loaded
            baseline = rss_mb(worker)
            sampler = Sampler(worker)
            sampler.start()
            try:
                seconds = upload(port, key, size, chunk)
            except Exception:
                print((folder / "gunicorn.log").read_text()[-3000:], file=sys.stderr)
                raise
            sampler.running = False
            sampler.join()
            return {"kind": kind, "baseline": baseline, "peak": sampler.peak, "seconds": seconds}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    finally:
        stack.close()
        shutil.rmtree(folder, ignore_errors=True)


def _health(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--chunk-mb", type=int, default=256)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--only", choices=["local", "s3"])
    args = parser.parse_args()
    size, chunk = args.size_mb * MIB, args.chunk_mb * MIB
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs: times are noisy), "
          f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; upload {args.size_mb} MiB in PATCH chunks of "
          f"{args.chunk_mb} MiB, one gunicorn sync worker")
    print("| storage | worker RSS before | peak during upload | growth | growth / chunk | growth / upload "
          "| throughput |")
    print("|---|---|---|---|---|---|---|")
    kinds = [args.only] if args.only else ["local"] + ([] if args.no_s3 else ["s3"])
    for kind in kinds:
        r = run(kind, size, chunk)
        growth = r["peak"] - r["baseline"]
        print(f"| {kind} | {r['baseline']:.0f} MB | {r['peak']:.0f} MB | {growth:.1f} MB "
              f"| {growth / args.chunk_mb:.3f} | {growth / args.size_mb:.4f} "
              f"| {args.size_mb / r['seconds']:.0f} MiB/s |")


if __name__ == "__main__":
    main()
