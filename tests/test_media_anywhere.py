"""Media anywhere (issue 21, done-when): no host needs a shared disk.

A clip goes up with ``tuspy`` in chunks to one web node, the connection drops mid-chunk and the upload
resumes; the bytes land in the S3 store (moto's server on loopback), a Celery worker — with its own data
directory — registers the object and analyses its faces in chunks that read their spans with ranged
requests; a *second* web node, with yet another data directory, serves it frame-exact: its thumbnail is
pixel-identical to the local decode of the original and a ranged ``/video`` is byte-identical to the
original's bytes. The nodes share only the database, Redis (the broker) and the store — and no file of
the video is on any of their disks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from jobs.models import Job
from media_api.models import MediaFile, Trace
from tests.conftest import HAMILTON
from tests.helpers_rest import key_client
from tests.servers import celery_worker, gunicorn, wait_for

REDIS = os.environ.get("TEST_REDIS_URL", "")
pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not REDIS, reason="no Redis (TEST_REDIS_URL is set by scripts/test.sh)")]

CHUNK = 200_000
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def broker():
    """Database 12 of the run's Redis (flushed): the queue every node and the worker share."""
    import redis

    url = REDIS.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


@contextlib.contextmanager
def running(*managers):
    """Enter the process context managers side by side (each waits for its process) and leave them so."""
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
    started = [m for m, f in zip(managers, futures, strict=True) if f.exception() is None]
    try:
        yield [f.result() for f in futures]  # the first failure to start raises here
    finally:
        with ThreadPoolExecutor(len(managers)) as pool:
            list(pool.map(lambda m: m.__exit__(None, None, None), started))


def _drop_mid_chunk(base_url: str, path: str, key: str, offset: int, chunk: bytes) -> None:
    """A PATCH announcing the whole chunk that sends half of it and closes the connection (a dropped link)."""
    host, port = base_url.removeprefix("http://").split(":")
    head = (f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(chunk)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + chunk[:len(chunk) // 2])


def _wait_job(base: str, key: str, job_id: str, timeout: float = 120) -> dict:
    def state() -> dict:
        return requests.get(f"{base}/api/v1/jobs/{job_id}", headers={"X-API-Key": key}, timeout=10).json()["job"]

    wait_for(lambda: state()["state"] not in ("queued", "running"), timeout=timeout, interval=0.2)
    return state()


def _files_of_size(folder, size: int) -> list[str]:
    return [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names
            if os.path.getsize(os.path.join(d, f)) == size]


def test_upload_analyse_and_serve_from_different_hosts(s3_storage, broker, staff_user, tmp_path):
    from tusclient import client as tus_client

    from media_api.services.thumbnails import frame_thumbnail

    _, key = key_client(staff_user, write=True)
    auth = {"X-API-Key": key}
    data = HAMILTON.read_bytes()
    hosts = {name: tmp_path / name for name in ("web-a", "web-b", "worker")}
    shared = {"MOMENTRY_BROKER_URL": broker, "MOMENTRY_SECRET_KEY": secrets.token_urlsafe(48),
              "MOMENTRY_CHUNK_SECONDS": "3"}  # the 9 s clip's analysis runs as three chunks
    with running(
        gunicorn(workers=1, log_path=tmp_path / "web-a.log", MOMENTRY_DATA_DIR=str(hosts["web-a"]), **shared),
        gunicorn(workers=1, log_path=tmp_path / "web-b.log", MOMENTRY_DATA_DIR=str(hosts["web-b"]), **shared),
        celery_worker("far", log_path=tmp_path / "worker.log", MOMENTRY_DATA_DIR=str(hosts["worker"]), **shared),
    ) as (a, b, _):
        # 1. tus to node A: one chunk, a chunk cut off mid-way, then a fresh tuspy uploader resumes
        tus = tus_client.TusClient(f"{a}/api/v1/uploads", headers=auth)
        uploader = tus.uploader(str(HAMILTON), chunk_size=CHUNK, metadata={"filename": "hamilton.mp4"})
        uploader.upload_chunk()
        _drop_mid_chunk(a, uploader.url.removeprefix(a), key, CHUNK, data[CHUNK:2 * CHUNK])
        offset = wait_for(lambda: (o := int(requests.head(uploader.url, headers={**auth, **TUS_HEADERS},
                                                          timeout=10).headers["Upload-Offset"])) > CHUNK and o)
        assert offset == CHUNK + CHUNK // 2  # the bytes that arrived before the drop are kept
        resumed = tus.uploader(str(HAMILTON), url=uploader.url, chunk_size=CHUNK)
        assert resumed.get_offset() == offset
        resumed.upload()

        # 2. the worker (its own data directory) registers the stored object
        status = requests.get(uploader.url, headers=auth, timeout=10).json()["upload"]
        registered = _wait_job(a, key, status["job"]["id"])
        assert registered["state"] == "succeeded", registered
        file_uuid = registered["result"]["file_uuid"]
        media_file = MediaFile.objects.get(file_uuid=file_uuid)
        assert (media_file.storage, media_file.owned) == ("s3", True)
        assert media_file.path == f"s3://{s3_storage.bucket}/media/media/{status['id']}/hamilton.mp4"

        # 3. face analysis on the worker, in chunks read with ranged requests, submitted through node B
        detect = requests.post(f"{b}/api/v1/file/{file_uuid}/detect-faces", json={}, headers=auth, timeout=10)
        assert detect.status_code == 202, detect.text
        analysed = _wait_job(b, key, detect.json()["job"]["id"])
        assert analysed["state"] == "succeeded", analysed
        assert Job.objects.get(pk=analysed["id"]).chunks.count() >= 2
        assert analysed["result"]["traces"] == Trace.objects.filter(file=media_file).count() >= 5

        # 4. node B serves it frame-exact, from the store
        thumb = requests.get(f"{b}/api/v1/file/{file_uuid}/thumbnail", params={"frame": 211}, headers=auth,
                             timeout=30)
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
        ranged = requests.get(f"{b}/api/v1/file/{file_uuid}/video", headers={**auth, "Range": "bytes=300000-420000"},
                              timeout=30)
        assert ranged.status_code == 206 and ranged.headers["Content-Range"] == f"bytes 300000-420000/{len(data)}"
        assert ranged.content == data[300000:420001]
        trace = Trace.objects.filter(file=media_file).order_by("trace_id").first()
        face = requests.get(f"{b}/api/v1/file/{file_uuid}/trace/{trace.trace_id}/thumbnail", headers=auth,
                            timeout=60)
        assert face.status_code == 200 and face.headers["Content-Type"] == "image/jpeg"

    original = MediaFile(**{f.attname: getattr(media_file, f.attname) for f in MediaFile._meta.concrete_fields})
    original.path, original.storage = str(HAMILTON), "local"
    assert thumb.content == frame_thumbnail(original, 211, None)  # pixel-identical to the local decode
    # No host has the video on its disk: every byte came from the store.
    for name, folder in hosts.items():
        assert folder.exists() and not _files_of_size(folder, len(data)), name
    log = (tmp_path / "worker.log").read_text()
    assert "X-Amz-Signature" not in log
