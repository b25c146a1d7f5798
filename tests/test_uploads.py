"""tus uploads (uploads/): real tuspy client, real gunicorn, real Celery worker, real FFmpeg, S3 on moto's server.

The live test sends a demo clip with tuspy in chunks to a gunicorn, cuts a chunk off mid-way over a raw
socket (the bytes that arrived are kept), resumes with a fresh tuspy uploader, and checks that the
register job makes it a file whose served thumbnail is the original's. The rest talk to the
app through Django's test client: every tus refusal in the JSON envelope, quotas, expiry, and the S3
sink (multipart parts + tail objects) against a moto server on loopback (skipped without moto).
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from jobs.models import Job
from media_api.models import MediaFile
from media_api.storage.config import storage_config
from tests.conftest import HAMILTON
from tests.helpers_rest import key_client
from tests.servers import gunicorn, wait_for
from uploads import services
from uploads.models import Upload

# Tests that run a job or a beat task in this process (they close the connection) or a live server need
# committed data; the others run in a rolled-back transaction (faster).
committed = pytest.mark.django_db(transaction=True)
pytestmark = pytest.mark.django_db

TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}
OCTET = "application/offset+octet-stream"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create(client, length: int, filename: str = "clip.mp4", **headers):
    return client.post("/api/v1/uploads", HTTP_UPLOAD_LENGTH=str(length),
                       HTTP_UPLOAD_METADATA=f"filename {b64(filename)},filetype {b64('video/mp4')}",
                       **{**TUS, **headers})


def patch(client, url: str, data: bytes, offset: int, content_type: str = OCTET, **headers):
    return client.generic("PATCH", url, data, content_type=content_type, HTTP_UPLOAD_OFFSET=str(offset),
                          **{**TUS, **headers})


def error_code(response) -> str:
    body = response.json()
    assert body["success"] is False and response["Content-Type"].startswith("application/json")
    return body["error"]["code"]


def run_job_inline(job_id) -> Job:
    from jobs.tasks import run_job

    run_job(str(job_id))
    return Job.objects.get(pk=job_id)


@pytest.fixture
def writer(staff_user):
    return key_client(staff_user, write=True)


# --------------------------------------------------------------------------- live: tuspy, a dropped chunk, a worker


def _half_a_chunk(base_url: str, path: str, key: str, offset: int, chunk: bytes) -> None:
    """Send a PATCH announcing the whole chunk, send half of it, and close the connection."""
    host, port = base_url.removeprefix("http://").split(":")
    head = (f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: {OCTET}\r\nContent-Length: {len(chunk)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + chunk[:len(chunk) // 2])


@committed
def test_tuspy_upload_survives_a_dropped_chunk_and_becomes_a_file(staff_user, tmp_path):
    from tusclient import client as tus_client

    from media_api.services.thumbnails import frame_thumbnail

    _, key = key_client(staff_user, write=True)
    data = HAMILTON.read_bytes()
    chunk = 200_000
    with gunicorn(workers=1, log_path=tmp_path / "gunicorn.log") as url:
        tus = tus_client.TusClient(f"{url}/api/v1/uploads", headers={"X-API-Key": key})
        uploader = tus.uploader(str(HAMILTON), chunk_size=chunk, metadata={"filename": "hamilton clip.mp4"})
        uploader.upload_chunk()  # the first chunk, as a client would
        assert uploader.offset == chunk
        upload_path = uploader.url.removeprefix(url)
        _half_a_chunk(url, upload_path, key, chunk, data[chunk:2 * chunk])
        head = {"X-API-Key": key, "Tus-Resumable": "1.0.0"}
        offset = wait_for(lambda: int(requests.head(uploader.url, headers=head).headers["Upload-Offset"]) > chunk
                          and int(requests.head(uploader.url, headers=head).headers["Upload-Offset"]), timeout=20)
        assert offset == chunk + chunk // 2  # what arrived before the cut is kept

        resumed = tus.uploader(str(HAMILTON), url=uploader.url, chunk_size=chunk)
        assert resumed.get_offset() == offset
        resumed.upload()
        status = requests.get(uploader.url, headers={"X-API-Key": key}).json()["upload"]
        assert status["offset"] == status["length"] == len(data) and status["state"] == "registering"
        # The register job, run here (workers running jobs are tests/test_jobs.py's subject).
        assert run_job_inline(status["job"]["id"]).state == "succeeded"
        status = requests.get(uploader.url, headers={"X-API-Key": key}).json()["upload"]
        assert status["state"] == "done" and status["job"]["state"] == "succeeded", status
        thumb = requests.get(f"{url}/api/v1/file/{status['file_uuid']}/thumbnail", params={"frame": 57},
                             headers={"X-API-Key": key})
        assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"

    media_file = MediaFile.objects.get(file_uuid=status["file_uuid"])
    stored = Path(media_file.path)
    assert stored == storage_config().local_root / "media" / status["id"] / "hamilton clip.mp4"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not (storage_config().local_root / "uploads" / f"{status['id']}.part").exists()
    original = MediaFile(**{f.attname: getattr(media_file, f.attname) for f in MediaFile._meta.concrete_fields})
    original.path = str(HAMILTON)
    assert thumb.content == frame_thumbnail(original, 57, None)  # pixel-identical to the original's decode


# --------------------------------------------------------------------------- the protocol, through the test client


@committed
def test_discovery_and_the_whole_protocol_on_local_storage(writer):
    client, _ = writer
    options = client.options("/api/v1/uploads")
    assert options.status_code == 204 and options["Tus-Version"] == "1.0.0"
    assert set(options["Tus-Extension"].split(",")) == {"creation", "termination", "expiration", "checksum"}
    assert int(options["Tus-Max-Size"]) > 0 and "sha1" in options["Tus-Checksum-Algorithm"]

    # fixed bytes, not os.urandom: once in CI (PostgreSQL pass, 2026-12-05) fresh random bytes were
    # registered as a video, where this test needs bytes FFmpeg finds no video in
    data = random.Random(141).randbytes(300_000)
    created = create(client, len(data), filename="../../etc/passwd")
    assert created.status_code == 201 and created["Tus-Resumable"] == "1.0.0" and created["Upload-Expires"]
    url = created["Location"]
    upload = Upload.objects.get(pk=url.rsplit("/", 1)[1])
    assert upload.filename == "passwd" and upload.storage == "local"

    assert error_code(client.delete(url, HTTP_TUS_RESUMABLE="0.2.2")) == "PRECONDITION_FAILED"
    assert client.head(url, HTTP_TUS_RESUMABLE="0.2.2")["Tus-Version"] == "1.0.0"
    missing = client.delete(url)
    assert missing.status_code == 400 and missing.json()["error"]["details"]["parameter"] == "Tus-Resumable"
    assert error_code(patch(client, url, data[:10], 0, content_type="application/octet-stream")) == \
        "UNSUPPORTED_MEDIA_TYPE"
    wrong = patch(client, url, data[:10], 5)
    assert wrong.status_code == 409 and wrong.json()["error"]["details"]["offset"] == 0

    first = patch(client, url, data[:100_000], 0, HTTP_UPLOAD_CHECKSUM=f"sha1 {b64('x')}")
    assert first.status_code == 460 and error_code(first) == "CHECKSUM_MISMATCH"
    assert client.head(url, **TUS)["Upload-Offset"] == "0"  # the bad chunk was not kept
    digest = base64.b64encode(hashlib.sha1(data[:100_000]).digest()).decode()
    first = patch(client, url, data[:100_000], 0, HTTP_UPLOAD_CHECKSUM=f"sha1 {digest}")
    assert first.status_code == 204 and first["Upload-Offset"] == "100000"
    head = client.head(url, **TUS)
    assert head.status_code == 200 and head["Upload-Offset"] == "100000" and head["Upload-Length"] == "300000"
    assert head["Cache-Control"] == "no-store" and head["Upload-Expires"]
    assert patch(client, url, data[100_000:] + b"extra", 100_000).status_code == 400  # past Upload-Length
    done = patch(client, url, data[100_000:], 100_000)
    assert done.status_code == 204 and done["Upload-Offset"] == "300000"

    status = client.get(url).json()["upload"]
    assert status["state"] == "registering" and status["offset"] == 300_000 and status["job"]["state"] == "queued"
    stored = storage_config().local_root / "media" / upload.pk.hex / "passwd"
    assert stored.read_bytes() == data
    assert patch(client, url, b"x", 300_000).status_code == 409  # complete

    job = run_job_inline(status["job"]["id"])  # random bytes: no video
    assert job.state == "failed" and "not a video" in job.error
    status = client.get(url).json()["upload"]
    assert status["state"] == "failed" and "not a video" in status["error"] and status["file_uuid"] is None
    assert not stored.exists() and not MediaFile.objects.exists()


def test_refusals_scope_quota_and_termination(writer, staff_user, plain_user, settings):
    client, _ = writer
    settings.MOMENTRY_MAX_UPLOAD_BYTES = 1000
    settings.MOMENTRY_UPLOAD_MAX_INCOMPLETE = 2
    too_big = create(client, 1001)
    assert too_big.status_code == 413 and error_code(too_big) == "PAYLOAD_TOO_LARGE"
    assert create(client, 10, HTTP_TUS_RESUMABLE="0.2.2").status_code == 412
    assert error_code(client.post("/api/v1/uploads", **TUS)) == "BAD_REQUEST"  # no Upload-Length
    assert client.post("/api/v1/uploads", HTTP_UPLOAD_LENGTH="5", HTTP_UPLOAD_METADATA="filename %%%",
                       **TUS).status_code == 400

    reader, _ = key_client(plain_user)
    refused = create(reader, 10)
    assert refused.status_code == 403 and error_code(refused) == "FORBIDDEN"
    assert APIClient_anonymous().post("/api/v1/uploads", HTTP_UPLOAD_LENGTH="10", **TUS).status_code == 401

    url = create(client, 10)["Location"]
    other_key, _ = key_client(staff_user, write=True)  # same user, another key: not its upload
    assert other_key.head(url, **TUS).status_code == 404
    for response in (patch(other_key, url, b"x", 0), other_key.get(url), other_key.delete(url, **TUS)):
        assert response.status_code == 404 and error_code(response) == "NOT_FOUND"

    assert create(client, 10).status_code == 201
    quota = create(client, 10)
    assert quota.status_code == 429 and error_code(quota) == "TOO_MANY_UPLOADS" and int(quota["Retry-After"]) > 0
    assert create(other_key, 10).status_code == 201  # the quota is per key

    part = storage_config().local_root / "uploads" / f"{url.rsplit('/', 1)[1]}.part"
    assert patch(client, url, b"12345", 0).status_code == 204 and part.stat().st_size == 5
    assert client.delete(url, **TUS).status_code == 204
    assert not part.exists() and client.head(url, **TUS).status_code == 404
    assert create(client, 10).status_code == 201  # a slot is free again


def test_an_upload_deleted_while_a_request_waits_for_it_is_a_404(writer):
    """A PATCH or HEAD that found the upload, then waits its turn while a DELETE removes it: 404, not a 500."""
    import io

    client, _ = writer
    url = create(client, 10)["Location"]
    upload = Upload.objects.get(pk=url.rsplit("/", 1)[1])
    Upload.objects.filter(pk=upload.pk).update(busy_since=timezone.now())  # a PATCH is writing it
    waiting = Upload.objects.get(pk=upload.pk)
    Upload.objects.filter(pk=upload.pk).delete()  # a DELETE (after that PATCH) removed it
    for call in (lambda: services.wait_until_idle(waiting, timeout=1),
                 lambda: services.receive(waiting, 0, io.BytesIO(b"12345"), 5)):
        with pytest.raises(services.NotFound):
            call()


def test_delete_waits_for_a_writer_and_never_deletes_under_it(writer, monkeypatch):
    """Bytes are removed only while no PATCH writes (else a write after them, such as an S3 tail, stays)."""
    monkeypatch.setattr(services, "WAIT_FOR_WRITER_SECONDS", 0.3)
    client, _ = writer
    url = create(client, 10)["Location"]
    assert patch(client, url, b"12345", 0).status_code == 204
    upload = Upload.objects.get(pk=url.rsplit("/", 1)[1])
    part = storage_config().local_root / "uploads" / f"{upload.pk.hex}.part"
    Upload.objects.filter(pk=upload.pk).update(busy_since=timezone.now())  # a PATCH is writing it
    busy = client.delete(url, **TUS)
    assert busy.status_code == 409 and error_code(busy) == "CONFLICT"
    assert part.stat().st_size == 5 and Upload.objects.filter(pk=upload.pk).exists()
    Upload.objects.filter(pk=upload.pk).update(busy_since=None, expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_uploads() == 1 and not part.exists()  # expiry takes it the same way


def test_bytes_of_a_cancelled_register_job_are_removed_by_beat(writer):
    """A completed upload whose register job is cancelled never reaches register_upload: beat removes its bytes."""
    client, _ = writer
    url = create(client, 10)["Location"]
    assert patch(client, url, b"0123456789", 0).status_code == 204
    status = client.get(url).json()["upload"]
    stored = storage_config().local_root / "media" / status["id"] / "clip.mp4"
    assert stored.exists() and status["state"] == "registering"
    assert client.delete(f"/api/v1/jobs/{status['job']['id']}").json()["job"]["state"] == "cancelled"
    assert services.expire_uploads() == 1
    status = client.get(url).json()["upload"]
    assert status["state"] == "failed" and "cancelled" in status["error"] and not stored.exists()
    assert services.expire_uploads() == 0


def APIClient_anonymous():  # noqa: N802 - reads like the class it returns
    from rest_framework.test import APIClient

    return APIClient()


@committed
def test_expired_upload_is_gone_then_removed_by_beat(writer):
    client, _ = writer
    url = create(client, 10)["Location"]
    assert patch(client, url, b"12345", 0).status_code == 204
    upload = Upload.objects.get(pk=url.rsplit("/", 1)[1])
    part = storage_config().local_root / "uploads" / f"{upload.pk.hex}.part"
    Upload.objects.filter(pk=upload.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.head(url, **TUS).status_code == 410
    gone = patch(client, url, b"67890", 5)
    assert gone.status_code == 410 and error_code(gone) == "GONE"

    from uploads.tasks import expire_uploads

    assert expire_uploads() == 1  # the beat task
    assert not part.exists() and not Upload.objects.exists()
    assert client.head(url, **TUS).status_code == 404


def test_a_registration_failing_for_another_reason_says_so(writer, monkeypatch):
    """Only FFmpeg's refusal is "not a video"; any other failure (here the database) is named as itself."""
    from django.db import OperationalError

    from media_api.services import files

    client, _ = writer
    url = create(client, 10)["Location"]
    assert patch(client, url, b"0123456789", 0).status_code == 204
    upload = Upload.objects.get(pk=url.rsplit("/", 1)[1])

    def database_locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(files, "register_file", database_locked)
    with pytest.raises(services.UploadNotRegistered) as failed:
        services.register_upload(upload.job)
    assert "OperationalError: database is locked" in str(failed.value) and "not a video" not in str(failed.value)
    status = client.get(url).json()["upload"]
    assert status["state"] == "failed" and "database is locked" in status["error"]
    assert "not a video" not in status["error"]


# --------------------------------------------------------------------------- S3 (moto's server on loopback)


@pytest.fixture
def s3(s3_storage):
    """tests/conftest.py's bucket on the test S3 server (moto's, started by scripts/test.sh or the fixture)."""
    return s3_storage.client, s3_storage.bucket


def _keys(client, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", []))


@committed
def test_s3_sink_multipart_parts_and_tail_objects(writer, s3):
    s3_client, bucket = s3
    client, _ = writer
    data = os.urandom(11 * 1024 * 1024 + 12345)
    url = create(client, len(data), filename="noise.bin")["Location"]
    upload = Upload.objects.get(pk=url.rsplit("/", 1)[1])
    assert upload.storage == "s3" and upload.s3_upload_id and upload.s3_part_size == 5 * 1024 * 1024
    step = 3 * 1024 * 1024  # tus chunks smaller than an S3 part, and one very short one
    bounds = [0, step, step + 1000, *range(2 * step + 1000, len(data), step), len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        response = patch(client, url, data[start:end], start)
        assert response.status_code == 204 and response["Upload-Offset"] == str(end), response.content
        upload.refresh_from_db()
        tails = [k for k in _keys(s3_client, bucket) if "/uploads/" in k]
        if end < len(data):  # the bytes short of a part wait in one tail object
            assert tails == [upload.s3_tail_key] and upload.s3_tail_size == end % upload.s3_part_size
    assert [p[2] for p in upload.s3_parts] == [5 * 1024 * 1024, 5 * 1024 * 1024, len(data) - 10 * 1024 * 1024]
    key = storage_config().key("media", upload.pk.hex, "noise.bin")
    assert _keys(s3_client, bucket) == [key]  # no tail left
    assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == data

    job = run_job_inline(client.get(url).json()["upload"]["job"]["id"])
    assert job.state == "failed" and "not a video" in job.error
    assert _keys(s3_client, bucket) == []  # nothing left stored


def test_s3_abandoned_and_expired_uploads_leave_nothing(writer, s3):
    s3_client, bucket = s3
    client, _ = writer
    urls = [create(client, 6 * 1024 * 1024)["Location"] for _ in range(2)]
    for url in urls:
        assert patch(client, url, os.urandom(5 * 1024 * 1024 + 10), 0).status_code == 204
    assert len([k for k in _keys(s3_client, bucket) if "/uploads/" in k]) == 2
    assert client.delete(urls[0], **TUS).status_code == 204
    Upload.objects.filter(pk=urls[1].rsplit("/", 1)[1]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_uploads() == 1
    assert _keys(s3_client, bucket) == []
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@committed
def test_s3_upload_of_a_video_registers_the_object(writer, s3):
    s3_client, bucket = s3
    client, _ = writer
    data = HAMILTON.read_bytes()
    from webhooks.models import Delivery, Webhook

    Webhook.objects.create(url="https://hooks.example.com/momentry", events=["upload.completed"], secret="s")
    url = create(client, len(data), filename="hamilton.mp4")["Location"]
    assert patch(client, url, data, 0).status_code == 204
    assert not Delivery.objects.exists()  # stored, not yet a file
    job = run_job_inline(client.get(url).json()["upload"]["job"]["id"])
    assert job.state == "succeeded", job.error
    status = client.get(url).json()["upload"]
    media_file = MediaFile.objects.get(file_uuid=status["file_uuid"])
    key = storage_config().key("media", status["id"], "hamilton.mp4")
    assert (media_file.storage, media_file.path, media_file.owned) == ("s3", f"s3://{bucket}/{key}", True)
    assert _keys(s3_client, bucket) == [key]
    event = Delivery.objects.get(event="upload.completed").payload
    assert event["data"] == {"upload_id": status["id"], "file_uuid": media_file.file_uuid, "filename": "hamilton.mp4",
                             "length": len(data), "job_id": job.pk.hex}


def test_s3_refusing_a_part_is_a_503_and_counts_nothing(writer, s3):
    s3_client, bucket = s3
    client, _ = writer
    url = create(client, 6 * 1024 * 1024)["Location"]
    upload = Upload.objects.get(pk=url.rsplit("/", 1)[1])
    s3_client.abort_multipart_upload(Bucket=bucket, Key=upload.storage_key, UploadId=upload.s3_upload_id)
    refused = patch(client, url, os.urandom(5 * 1024 * 1024 + 10), 0)
    assert refused.status_code == 503 and error_code(refused) == "UNAVAILABLE" and refused["Retry-After"]
    assert client.head(url, **TUS)["Upload-Offset"] == "0"
    upload.refresh_from_db()
    assert upload.busy_since is None  # the next PATCH is not locked out


def test_admin_lists_uploads_read_only(writer, staff_user, client):
    api, _ = writer
    upload_id = create(api, 10, filename="admin view.mp4")["Location"].rsplit("/", 1)[1]
    client.force_login(staff_user)
    listing = client.get("/admin/uploads/upload/")
    assert listing.status_code == 200 and b"admin view.mp4" in listing.content
    detail = client.get(f"/admin/uploads/upload/{Upload.objects.get(pk=upload_id).pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content  # read-only
    assert client.get("/admin/uploads/upload/add/").status_code == 403
