"""Bad input is a 4xx JSON envelope, never a 500: each case below was a 500 (or an HTML page) once."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.helpers_rest import key_client, load_traces
from tests.servers import gunicorn, raw_request

DEEP = "[" * 100_000 + "]" * 100_000


def envelope(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    if code is not None:
        assert error["code"] == code
    return error


@pytest.fixture
def writer(staff_user):
    return key_client(staff_user, write=True)[0]


@pytest.mark.django_db
@pytest.mark.parametrize("fps", ["0.0001", "0.5", "241", "1e300"])
def test_clip_fps_outside_1_to_240_is_400(api_client, hamilton, fps):
    response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=0&end_frame=10&fps={fps}")
    assert envelope(response, 400, "BAD_REQUEST")["details"]["parameter"] == "fps"


@pytest.mark.django_db
def test_clip_fps_within_range_is_accepted(api_client, hamilton):
    for fps in ("1", "240"):
        response = api_client.head(f"/api/v1/file/{hamilton.file_uuid}/clip?start_frame=0&end_frame=0&fps={fps}")
        assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("header,status", [
    ("bytes=" + "9" * 4300 + "-", 416),         # starts past any end
    ("bytes=" + "9" * 5000 + "-", 416),
    ("bytes=0-" + "9" * 4400, 206),             # ends past the end: clamped
    ("bytes=-" + "9" * 4400, 206),              # suffix longer than the file: the whole file
    ("bytes=00000000000000000000000000010-19", 206),
])
def test_range_with_thousands_of_digits(api_client, hamilton, header, status):
    response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/video", HTTP_RANGE=header)
    assert response.status_code == status
    if status == 416:
        assert response["Content-Range"] == f"bytes */{hamilton.size}"
    else:
        body = b"".join(response.streaming_content)
        assert len(body) == int(response["Content-Length"]) and len(body) <= hamilton.size
    response.close()


@pytest.mark.django_db
def test_json_nested_100k_deep_is_400(writer, hamilton, people_identity):
    response = writer.post(f"/api/v1/identity/{people_identity.identity_uuid}/bind/trace", DEEP,
                           content_type="application/json")
    assert "nested too deeply" in envelope(response, 400, "BAD_REQUEST")["message"]
    login = Client().post("/api/v1/auth/login", DEEP, content_type="application/json")
    envelope(login, 400, "BAD_REQUEST")


@pytest.fixture
def people_identity(db):
    from identities.models import Identity

    return Identity.objects.create(name="Eliza")


@pytest.mark.django_db
@pytest.mark.parametrize("trace_id", [2**31, 2**63, 2**64 + 5, -1])
def test_trace_id_out_of_range_in_a_body_is_400(writer, hamilton, people_identity, trace_id):
    load_traces(hamilton, {1: (0, 10, 5)})
    url = f"/api/v1/identity/{people_identity.identity_uuid}/bind/trace"
    for body in ({"file_uuid": hamilton.file_uuid, "trace_id": trace_id},
                 {"file_uuid": hamilton.file_uuid, "trace_ids": [1, trace_id]}):
        envelope(writer.post(url, body, format="json"), 400, "BAD_REQUEST")


@pytest.mark.django_db
@pytest.mark.parametrize("trace_id", [str(2**31), str(2**63), "9" * 30])
def test_trace_id_out_of_range_in_the_url_is_404(api_client, hamilton, trace_id):
    for suffix in ("", "/faces", "/thumbnail", "/representative-face", "/video", "/suggestions"):
        response = api_client.get(f"/api/v1/file/{hamilton.file_uuid}/trace/{trace_id}{suffix}")
        envelope(response, 404, "NOT_FOUND")


@pytest.mark.django_db
def test_body_over_the_limit_is_413(writer, people_identity, settings):
    big = json.dumps({"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    error = envelope(writer.post("/api/v1/identities", big, content_type="application/json"), 413,
                     "PAYLOAD_TOO_LARGE")
    assert error["details"]["max_bytes"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    envelope(Client().post("/api/v1/auth/login", big, content_type="application/json"), 413, "PAYLOAD_TOO_LARGE")
    form = Client().post("/api/v1/auth/login", {"username": "x" * 3_000_000, "password": "y"})
    envelope(form, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.django_db
def test_body_over_the_limit_without_a_length_is_413(writer, settings):
    """A chunked body declares no length: the JSON parser stops reading at the limit."""
    from momentry.parsers import BoundedJSONParser

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    from io import BytesIO

    from momentry.errors import PayloadTooLarge

    with pytest.raises(PayloadTooLarge):
        BoundedJSONParser().parse(BytesIO(b'{"name": "' + b"x" * 200 + b'"}'))
    assert BoundedJSONParser().parse(BytesIO(b'{"name": "ok"}')) == {"name": "ok"}


@pytest.mark.django_db
def test_more_than_1000_parameters_is_400(api_client, hamilton):
    envelope(api_client.get("/api/v1/files?" + "&".join(["a"] * 1001)), 400, "TOO_MANY_PARAMETERS")
    assert api_client.get("/api/v1/files?" + "&".join(["a"] * 1000)).status_code == 200
    # ... and longer ones are too long a URL anyway
    envelope(api_client.get("/api/v1/files?" + "&".join(f"p{i}=1" for i in range(1001))), 414, "URI_TOO_LONG")
    # the same limit on a form body (DRF's form parser)
    form = "&".join(f"f{i}=1" for i in range(1001))
    response = Client().post("/api/v1/auth/login", form, content_type="application/x-www-form-urlencoded")
    envelope(response, 400)


@pytest.mark.django_db
def test_very_long_url_is_414(api_client, settings):
    error = envelope(api_client.get("/api/v1/files?q=" + "a" * settings.MOMENTRY_MAX_URL_LENGTH), 414, "URI_TOO_LONG")
    assert error["details"]["max_length"] == settings.MOMENTRY_MAX_URL_LENGTH


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer not.a.token", "Bearer a b", "Bearer", "Bearer " + "x" * 500,
                                    "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"])
def test_401_messages_are_plain_text(client, header, hamilton):
    for url in ("/api/v1/files", f"/api/v1/file/{hamilton.file_uuid}/video"):
        error = envelope(client.get(url, HTTP_AUTHORIZATION=header), 401, "UNAUTHORIZED")
        assert "ErrorDetail" not in error["message"] and "{" not in error["message"]


@pytest.mark.django_db
def test_token_of_a_deleted_user_is_a_plain_401(client, plain_user, hamilton):
    from rest_framework_simplejwt.tokens import AccessToken

    token = str(AccessToken.for_user(plain_user))
    plain_user.delete()
    error = envelope(client.get("/api/v1/files", HTTP_AUTHORIZATION=f"Bearer {token}"), 401)
    assert "ErrorDetail" not in error["message"]


@pytest.mark.django_db(transaction=True)
def test_gunicorn_answers_its_own_refusals_in_json(tmp_path):
    """Request lines and headers past gunicorn's limits: gunicorn answers before the app, still JSON."""
    with gunicorn(workers=1, log_path=tmp_path / "gunicorn.log") as url:
        for request, status in [
            (b"GET /api/v1/files?q=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),  # gunicorn's limit
            (b"GET /api/v1/files?q=" + b"a" * 5_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),  # the app's limit
            (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
            (b"BROKEN\r\n\r\n", 400),
        ]:
            answer = raw_request(url, request)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split()[1] == str(status).encode(), head
            assert b"application/json" in head and b"<html" not in answer.lower()
            if b"chunked" in head.lower():
                body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
            assert json.loads(body)["success"] is False
