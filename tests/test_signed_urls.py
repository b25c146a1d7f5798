"""Signed media URLs: what a <video src> or <img src> can use without headers, and nothing more."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from momentry.services import revoke_api_key
from tests.conftest import FACENET_UUID, HAMILTON_UUID
from tests.helpers_rest import key_client, load_traces

pytestmark = pytest.mark.django_db


@pytest.fixture
def signer(plain_user, hamilton):
    load_traces(hamilton, {1: (100, 130, 10)})
    client, raw = key_client(plain_user)
    return client, raw


def sign(client, url: str, **extra) -> dict:
    file_uuid = url.split("/file/")[1].split("/")[0]
    response = client.post(f"/api/v1/file/{file_uuid}/sign", {"url": url, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


THUMB = f"/api/v1/file/{HAMILTON_UUID}/thumbnail?frame=60"


def test_signed_thumbnail_needs_no_header_and_is_publicly_cacheable(signer):
    client, _ = signer
    body = sign(client, THUMB, expires_in=600)
    assert body["url"].startswith(THUMB + "&exp=") and "&sig=" in body["url"]
    assert body["absolute_url"].endswith(body["url"])
    anonymous = Client()
    assert anonymous.get(THUMB).status_code == 401
    response = anonymous.get(body["url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    visibility, max_age = response["Cache-Control"].split(", ")
    assert visibility == "public" and 590 <= int(max_age.split("=")[1]) <= 600
    # conditional requests work on the signed URL too
    again = anonymous.get(body["url"], HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304 and again["Cache-Control"].startswith("public")


def test_any_change_to_the_url_is_403(signer):
    client, _ = signer
    url = sign(client, THUMB)["url"]
    path, query = url.split("?")
    params = query.split("&")
    tampered = [
        url.replace("frame=60", "frame=61"),                      # another frame
        url.replace("/thumbnail?", "/video?"),                    # another route, same parameters
        url.replace(HAMILTON_UUID, FACENET_UUID),                 # another file
        url.replace("exp=", "exp=9"),                              # a later expiry
        f"{path}?{'&'.join([params[0], 'x=1', *params[1:]])}",     # an added parameter
        url[:-2] + ("AA" if not url.endswith("AA") else "BB"),    # another signature
        url.rsplit("&sig=", 1)[0],                                 # no signature at all, but exp and sub
        f"{path}?sig={params[-1][4:]}&{'&'.join(params[:-1])}",    # the signature moved
        url + "&sig=x",                                            # two signatures
    ]
    for bad in tampered:
        response = Client().get(bad)
        assert response.status_code in (403, 401), bad
        if "sig=" in bad:
            assert response.status_code == 403 and response.json()["error"]["code"] == "FORBIDDEN", bad
    assert Client().get(url).status_code == 200


def test_expired_and_revoked(signer, plain_user, monkeypatch):
    client, raw = signer
    url = sign(client, THUMB, expires_in=3)["url"]  # 3 s: the first GET must land in time on a loaded machine
    assert Client().get(url).status_code == 200
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 5)
    expired = Client().get(url)
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
    monkeypatch.setattr(time, "time", real_time)
    url = sign(client, THUMB)["url"]
    from momentry.models import APIKey

    revoke_api_key(APIKey.objects.get(prefix=raw[:12]))
    assert Client().get(url).status_code == 403


def test_signed_url_keeps_the_signers_scope(plain_user, hamilton, facenet):
    scoped, _ = key_client(plain_user, file_uuids=[HAMILTON_UUID])
    assert scoped.post(f"/api/v1/file/{FACENET_UUID}/sign", {"url": f"/api/v1/file/{FACENET_UUID}/video"},
                       format="json").status_code == 404  # cannot sign for a file it cannot see
    url = sign(scoped, f"/api/v1/file/{HAMILTON_UUID}/video")["url"]
    assert Client().get(url, HTTP_RANGE="bytes=0-99").status_code == 206
    # the key is narrowed later: its old URLs follow the new scope at once
    from momentry.models import APIKey

    key = APIKey.objects.get(limit_to_files=True)
    key.files.set([facenet])
    assert Client().get(url).status_code == 404


@pytest.mark.parametrize("url,param", [
    ("https://evil.example/api/v1/file/{h}/video", "url"),
    ("/api/v1/file/{h}", "url"),                                   # JSON route, not media
    ("/api/v1/identities", "url"),
    ("/api/v1/file/{f}/video", "url"),                             # another file than the one signed for
    ("/api/v1/file/{h}/video?sig=abc", "url"),
    ("/nowhere", "url"),
    ("api/v1/file/{h}/video", "url"),
])
def test_bad_sign_requests_are_400(signer, facenet, url, param):
    client, _ = signer
    response = client.post(f"/api/v1/file/{HAMILTON_UUID}/sign",
                           {"url": url.format(h=HAMILTON_UUID, f=FACENET_UUID)}, format="json")
    assert response.status_code == 400 and response.json()["error"]["details"]["parameter"] == param


def test_expiry_is_bounded(signer, settings):
    client, _ = signer
    too_long = client.post(f"/api/v1/file/{HAMILTON_UUID}/sign",
                           {"url": THUMB, "expires_in": settings.MOMENTRY_SIGNED_URL_MAX_SECONDS + 1}, format="json")
    assert too_long.status_code == 400 and too_long.json()["error"]["details"]["parameter"] == "expires_in"


def test_signed_urls_are_for_reading_media_only(signer):
    client, _ = signer
    url = sign(client, THUMB)["url"]
    assert Client().post(url).status_code in (403, 405)
    # a signature does nothing on a JSON route
    query = url.split("?", 1)[1]
    assert Client().get(f"/api/v1/files?{query}").status_code == 401


def test_signed_urls_of_every_media_route(signer, hamilton):
    client, _ = signer
    base = f"/api/v1/file/{HAMILTON_UUID}"
    for url, content_type in [
        (f"{base}/video", "video/mp4"),
        (f"{base}/clip?start_frame=0&end_frame=4&audio=off", "video/mp2t"),
        (f"{base}/trace/1/thumbnail", "image/jpeg"),
        (f"{base}/trace/1/video?padding=0&audio=off", "video/mp4"),
        (f"{base}/video/bbox?start_frame=100&end_frame=104&audio=off", "video/mp4"),
    ]:
        response = Client().head(sign(client, url)["url"])
        assert response.status_code == 200, url
        assert response["Content-Type"] == content_type
