"""Object storage (issue 21): files registered from an S3-compatible store answer every media route exactly as
the same file on a local disk does; registration is limited to configured buckets; DELETE removes only what the
service owns, and only for the admin role.

The store is a real S3 API on loopback (moto's standalone server, tests/conftest.py ``s3_storage``): boto3 and
FFmpeg's http protocol talk to it over TCP exactly as they would to MinIO or AWS.
"""

from __future__ import annotations

import shutil
import urllib.request

import pytest
from django.conf import settings as django_settings

from jobs.models import Job
from media_api.ffmpeg.probe import ProbeError
from media_api.models import MediaFile
from media_api.services.files import register_file, register_object
from media_api.storage import lifecycle
from tests.conftest import HAMILTON, HAMILTON_UUID
from tests.helpers_rest import key_client, load_traces
from tests.test_ffmpeg_process import close_response

pytestmark = pytest.mark.django_db

KEY = "media/library/hamilton.mp4"
TRACES = {1: (100, 130, 2), 2: (200, 240, 4)}
# Every media route of a file, each of which opens the video through the FFmpeg layer (or /video's bytes).
ROUTES = [
    ("thumbnail?frame=250", {}),
    ("thumbnail?frame=137&x=40&y=30&w=200&h=150", {}),
    ("trace/1/thumbnail", {}),
    ("trace/2/representative-face", {}),
    ("clip?start_frame=100&end_frame=112", {}),
    ("video?start_frame=120&end_frame=160", {}),
    ("video/bbox?start_frame=100&end_frame=110&audio=off", {}),
    ("trace/1/video?padding=0&audio=off", {}),
    ("trace/1/video?crop=face&size=96", {}),
    ("video", {"HTTP_RANGE": "bytes=1000-70000"}),
    ("video", {"HTTP_RANGE": "bytes=-4096"}),
    ("video", {}),
]


def _answers(client, file_uuid: str) -> dict[str, tuple]:
    answers = {}
    for route, headers in ROUTES:
        response = client.get(f"/api/v1/file/{file_uuid}/{route}", **headers)
        try:
            body = b"".join(response.streaming_content) if response.streaming else response.content
        finally:
            close_response(response)
        answers[f"{route} {headers}"] = (response.status_code, response.get("Content-Range"), body)
    return answers


@pytest.fixture
def stored(s3_storage):
    """The Hamilton clip as an object in the configured bucket; its s3:// URL."""
    s3_storage.client.upload_file(str(HAMILTON), s3_storage.bucket, KEY)
    return f"s3://{s3_storage.bucket}/{KEY}"


def _object_exists(s3_storage, key: str) -> bool:
    return bool(s3_storage.client.list_objects_v2(Bucket=s3_storage.bucket, Prefix=key).get("KeyCount"))


def test_every_media_route_on_an_object_equals_the_local_file(stored, s3_storage, admin_client_api, settings):
    local = register_file(HAMILTON).file
    load_traces(local, TRACES)
    expected = _answers(admin_client_api, local.file_uuid)
    assert all(status in (200, 206) for status, _, _ in expected.values()), expected.keys()

    # Forgotten through the API: a file registered from a path is never deleted there; this host's renders go.
    assert lifecycle.cache_dirs(local.file_uuid)
    gone = admin_client_api.delete(f"/api/v1/file/{local.file_uuid}")
    assert gone.status_code == 200 and gone.json()["source"] == "kept", gone.content
    assert HAMILTON.exists() and not MediaFile.objects.exists() and not lifecycle.cache_dirs(local.file_uuid)

    remote = register_object(stored).file
    assert (remote.file_uuid, remote.storage, remote.path, remote.owned) == (HAMILTON_UUID, "s3", stored, False)
    assert (remote.total_frames, remote.size, remote.name) == (local.total_frames, local.size, "hamilton.mp4")
    load_traces(remote, TRACES)
    settings.DATA_DIR = settings.DATA_DIR / "elsewhere"  # nothing of the local registration helps
    got = _answers(admin_client_api, remote.file_uuid)
    for route, (status, content_range, body) in expected.items():
        assert got[route][:2] == (status, content_range), route
        assert got[route][2] == body, f"{route}: {len(got[route][2])} bytes vs {len(body)} local"
    detail = admin_client_api.get(f"/api/v1/file/{remote.file_uuid}").json()
    assert (detail["storage"], detail["owned"]) == ("s3", False)

    # /video validators and conditional requests on the object, and a range past the end
    head = admin_client_api.head(f"/api/v1/file/{remote.file_uuid}/video")
    assert head.status_code == 200 and head["Content-Length"] == str(remote.size) and head["Accept-Ranges"] == "bytes"
    again = admin_client_api.get(f"/api/v1/file/{remote.file_uuid}/video", HTTP_IF_NONE_MATCH=head["ETag"])
    assert again.status_code == 304
    past = admin_client_api.get(f"/api/v1/file/{remote.file_uuid}/video", HTTP_RANGE=f"bytes={remote.size}-")
    assert past.status_code == 416 and past["Content-Range"] == f"bytes */{remote.size}"

    # Opt-in CDN mode: a 302 to a presigned URL that answers the same range itself.
    settings.MOMENTRY_S3_VIDEO_REDIRECT = True
    redirect = admin_client_api.get(f"/api/v1/file/{remote.file_uuid}/video")
    assert redirect.status_code == 302 and redirect["Cache-Control"] == "private, no-store"
    request = urllib.request.Request(redirect["Location"], headers={"Range": "bytes=1000-70000"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 206 and answer.read() == expected[f"video {ROUTES[-3][1]}"][2]


def test_register_by_url_only_from_configured_buckets(stored, s3_storage, staff_user, plain_user, settings):
    from jobs.runners import run_register

    writer, _ = key_client(staff_user, write=True)
    other = f"momentry-other-{s3_storage.bucket[-8:]}"
    s3_storage.client.create_bucket(Bucket=other)
    s3_storage.client.upload_file(str(HAMILTON), other, "x/h.mp4")
    for body, reason in [({"url": f"s3://{other}/x/h.mp4"}, "MOMENTRY_S3_REGISTER_BUCKETS"),
                         ({"url": f"s3://{s3_storage.bucket}/media/none.mp4"}, "no such object"),
                         ({"url": f"s3://{s3_storage.bucket}/media/"}, "url must"),
                         ({"url": "https://example.com/a.mp4"}, ""),
                         ({"url": stored, "path": str(HAMILTON)}, "Unknown field")]:
        refused = writer.post("/api/v1/files", body, format="json")
        assert refused.status_code == 400, (body, refused.content)
        assert reason in refused.json()["error"]["message"]
    assert key_client(plain_user)[0].post("/api/v1/files", {"url": stored}, format="json").status_code == 403
    assert not Job.objects.exists()

    settings.MOMENTRY_S3_REGISTER_BUCKETS = [other]  # the allow-list opens that bucket
    accepted = writer.post("/api/v1/files", {"url": f"s3://{other}/x/h.mp4"}, format="json")
    assert accepted.status_code == 202, accepted.content
    job = Job.objects.get(pk=accepted.json()["job"]["id"])
    assert job.params == {"url": f"s3://{other}/x/h.mp4"}
    result = run_register(job)  # the register job's own runner, as a worker runs it
    media_file = MediaFile.objects.get(file_uuid=result["file_uuid"])
    assert (media_file.storage, media_file.path, media_file.owned) == ("s3", f"s3://{other}/x/h.mp4", False)
    again = register_object(stored)  # the same content elsewhere: one file, its object still there
    assert again.already_exists and again.file.path == f"s3://{other}/x/h.mp4"
    assert _object_exists(s3_storage, KEY)


def test_delete_removes_what_the_service_owns_only(stored, s3_storage, staff_user, plain_user, settings, tmp_path):
    owned = register_object(stored, owned=True).file
    assert owned.owned
    url = f"/api/v1/file/{owned.file_uuid}"
    assert key_client(plain_user, write=True)[0].delete(url).status_code == 403  # not the admin role
    assert key_client(staff_user)[0].delete(url).status_code == 403  # the admin's read-only key
    assert key_client(staff_user, write=True, file_uuids=[])[0].delete(url).status_code == 404  # out of scope
    admin, _ = key_client(staff_user, write=True)
    assert admin.delete(f"/api/v1/file/{'e' * 32}").status_code == 404
    job = Job.objects.create(kind=Job.Kind.PREWARM, file=owned, params={})
    busy = admin.delete(url)
    assert busy.status_code == 409 and busy.json()["error"]["details"]["job_id"] == str(job.pk)
    Job.objects.filter(pk=job.pk).update(state=Job.State.SUCCEEDED)
    done = admin.delete(url)
    assert done.status_code == 200 and done.json() == {"success": True, "file_uuid": owned.file_uuid,
                                                       "deleted": True, "source": "deleted"}
    assert not _object_exists(s3_storage, KEY) and not MediaFile.objects.exists()
    assert admin.delete(url).status_code == 404

    # A local file the service stored (an upload's local sink) is unlinked; one outside the store is not.
    store = django_settings.DATA_DIR / "stored" / "media"
    store.mkdir(parents=True, exist_ok=True)
    kept_copy = shutil.copy(HAMILTON, store / "upload.mp4")
    local = register_file(kept_copy, owned=True).file
    assert admin.delete(f"/api/v1/file/{local.file_uuid}").json()["source"] == "deleted"
    assert not (store / "upload.mp4").exists()

    # The admin's "Delete selected" goes through the same lifecycle.
    s3_storage.client.upload_file(str(HAMILTON), s3_storage.bucket, KEY)
    again = register_object(stored, owned=True).file
    from django.test import Client

    browser = Client()
    browser.force_login(staff_user)
    answer = browser.post("/admin/media_api/mediafile/", {"action": "delete_selected", "post": "yes",
                                                          "_selected_action": [again.pk]})
    assert answer.status_code == 302, answer.content[:500]
    assert not MediaFile.objects.exists() and not _object_exists(s3_storage, KEY)


def test_an_object_that_is_no_video_is_refused_and_removed_only_if_owned(s3_storage):
    for key, owned in (("media/junk-owned.mp4", True), ("media/junk-theirs.mp4", False)):
        s3_storage.client.put_object(Bucket=s3_storage.bucket, Key=key, Body=b"not a video at all" * 100)
        with pytest.raises(ProbeError, match="not a video file FFmpeg can read: junk"):
            register_object(f"s3://{s3_storage.bucket}/{key}", owned=owned)
        assert _object_exists(s3_storage, key) is not owned
    assert not MediaFile.objects.exists()


def test_an_object_is_one_presigned_url_argument_with_safe_options(s3_storage, monkeypatch, tmp_path):
    from media_api.ffmpeg.source import av_options, input_args, redact

    args = input_args(f"s3://{s3_storage.bucket}/{KEY}")
    url = args[args.index("-i") + 1]
    assert args[-2:] == ["-i", url] and url.startswith(f"{s3_storage.endpoint}/{s3_storage.bucket}/{KEY}?")
    assert args[args.index("-protocol_whitelist") + 1] == "http,https,tcp,tls" and "-rw_timeout" in args
    assert "X-Amz-Signature" in url and "Signature" not in redact(f"ffmpeg -i {url} out.ts")
    bundle = tmp_path / "ca.pem"
    bundle.write_text("private CA")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))  # boto3's variable for a store with a private CA
    options = av_options("https://minio.internal/b/k?X-Amz-Signature=x")
    assert (options["tls_verify"], options["ca_file"]) == ("1", str(bundle))
    assert av_options("/srv/media/a.mp4") == {}


def test_an_unreachable_store_is_a_503_and_a_deleted_object_a_404_on_every_route(stored, s3_storage,
                                                                                  admin_client_api, monkeypatch):
    """Every media route (frames, ffmpeg renders, segments, crops, /video) asks the one diagnosis of the layer."""
    from jobs import dispatch, tasks
    from tests.servers import free_port

    remote = register_object(stored).file
    load_traces(remote, TRACES)
    url = f"/api/v1/file/{remote.file_uuid}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # the store is gone
    for route, headers in ROUTES:
        answer = admin_client_api.get(f"{url}/{route}", **headers)
        close_response(answer)
        assert (answer.status_code, answer.get("Retry-After")) == (503, "10"), (route, answer.status_code)
        assert answer.json()["error"]["code"] == "UNAVAILABLE", route
    for kind, params in (("prewarm", {"force": True}), ("detect_shots", {}), ("reembed", {}), ("detect_faces", {})):
        job = Job.objects.create(kind=kind, file=remote, params=params)
        try:  # what a worker runs (jobs.tasks.run_job records the exception's first line, no retry)
            reasons = list(dispatch.runner_for(kind)(job)["failed"])  # prewarm counts per-batch failures
        except Exception as exc:  # noqa: BLE001
            reasons = [tasks._reason(exc)[0]]
        assert reasons and all("store unavailable: cannot open s3://" in r and "Signature" not in r
                               and "\n" not in r for r in reasons), (kind, reasons)

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_storage.endpoint)
    s3_storage.client.delete_object(Bucket=s3_storage.bucket, Key=KEY)  # gone for good
    for route, headers in ROUTES:
        answer = admin_client_api.get(f"{url}/{route}", **headers)
        close_response(answer)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "SOURCE_MISSING", route


def test_cached_opening_bytes_are_never_mixed_with_a_replaced_object(stored, s3_storage, admin_client_api, settings,
                                                                      monkeypatch):
    """Frames of an object open from this host's cache of its opening reads (storage.reader); every ranged read
    carries If-Match, so an object replaced under the same key is a missing source, not a mix of two videos."""
    from tests.conftest import FACENET
    from tests.servers import free_port

    remote = register_object(stored).file
    url = f"/api/v1/file/{remote.file_uuid}/thumbnail"
    assert admin_client_api.get(f"{url}?frame=250").status_code == 200
    cached = list((settings.CACHE_DIR / "objects").rglob("*.bin"))
    assert len(cached) == 1 and 0 < cached[0].stat().st_size < remote.size // 2
    assert admin_client_api.get(f"{url}?frame=137").status_code == 200  # opened from the cache
    with monkeypatch.context() as down:  # opened from the cache, the GOP's read fails: the store's 503
        down.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
        assert admin_client_api.get(f"{url}?frame=200").status_code == 503
    s3_storage.client.upload_file(str(FACENET), s3_storage.bucket, KEY)  # another video under the same key
    replaced = admin_client_api.get(f"{url}?frame=200")  # a GOP not among the cached opening bytes
    assert replaced.status_code == 404 and replaced.json()["error"]["code"] == "SOURCE_MISSING", replaced.content
    assert not cached[0].exists()


def test_a_forked_process_never_shares_its_parents_s3_connections(s3_storage):
    """A re-embed's reading process (and prewarm's workers) are forked from a worker that may have read the store:
    the child must make its own client, or the two processes' requests would share pooled sockets."""
    import os

    from media_api.storage.config import s3_client

    parent = s3_client()
    parent.list_objects_v2(Bucket=s3_storage.bucket, MaxKeys=1)  # a pooled connection in the parent
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked child reports through the pipe
        try:
            own = s3_client()
            answered = own.list_objects_v2(Bucket=s3_storage.bucket, MaxKeys=1)["ResponseMetadata"]["HTTPStatusCode"]
            os.write(write, b"own" if own is not parent and own is s3_client() and answered == 200 else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 16) == b"own"
    assert s3_client() is parent  # one client per process, reused
