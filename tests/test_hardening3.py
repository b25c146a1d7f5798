"""Hardening round 3 (issue 18), the API's part: the last 500s of bad input, signed URLs bound to their
credential, search as text, login with the cache down, chunked bodies, one 404 for an unknown thing.

Every request goes through real HTTP handling (Django's test client, or gunicorn for what only a real
server shows). Run on PostgreSQL as well as SQLite: the NUL bytes were 500s only there (psycopg refuses
text containing NUL).
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.conftest import HAMILTON_UUID
from tests.helpers_rest import key_client, load_traces


def envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture
def writer(staff_user):
    """A staff write key: every route's permission passes, so only the path decides the answer."""
    return key_client(staff_user, write=True)[0]


# --- 1. and 8.: a path value that names nothing is the 404 of an unknown thing, on every route ---------------------


def api_routes() -> list[tuple[str, URLPattern]]:
    """(name, pattern) of every API route, found by walking the URL resolver (so new routes are covered)."""
    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/v1/"):
                found.append((pattern.name, pattern))

    walk(get_resolver().url_patterns)
    return found


def methods_of(pattern: URLPattern) -> list[str]:
    view_class = getattr(pattern.callback, "view_class", None)
    return [m for m in ("get", "post", "patch", "delete") if view_class is not None and hasattr(view_class, m)]


def routes_with(parameter: str) -> list[tuple[str, URLPattern]]:
    return [(name, p) for name, p in api_routes() if parameter in p.pattern.converters]


def sample_kwargs(pattern: URLPattern, **override: str) -> dict[str, str]:
    """Valid-looking values for every path parameter of ``pattern``, with ``override`` applied."""
    values = {}
    for name in pattern.pattern.converters:
        if name == "trace_id":
            values[name] = "1"
        elif name == "identity_uuid_b":
            values[name] = "b" * 32
        elif name.startswith("identity_uuid"):
            values[name] = "a" * 32
        else:
            values[name] = HAMILTON_UUID
    values.update(override)
    return values


def test_every_file_route_is_found_by_the_resolver_walk():
    names = {name for name, _ in routes_with("file_uuid")}
    assert {"file-detail", "file-video", "file-thumbnail", "file-sign", "file-detect-faces", "trace-video",
            "trace-representative-face", "identities-cooccurrence", "file-cooccurrence"} <= names


BAD_FILE_UUIDS = ["\x00", HAMILTON_UUID + "\x00", "\x00" + HAMILTON_UUID[1:], "abc", "z" * 32, "0" * 33]


@pytest.mark.django_db
@pytest.mark.parametrize("bad", BAD_FILE_UUIDS, ids=repr)
def test_a_file_uuid_that_names_nothing_is_the_404_of_an_unknown_file_on_every_route(writer, hamilton, bad):
    for name, pattern in routes_with("file_uuid"):
        url = reverse(name, kwargs=sample_kwargs(pattern, file_uuid=bad))
        for method in methods_of(pattern):
            response = getattr(writer, method)(url + "?frame=1", {}, format="json")
            error = envelope(response, 404, "NOT_FOUND")
            assert error == {"code": "NOT_FOUND", "message": "File not found.", "details": {"file_uuid": bad}}, \
                (method, url)


@pytest.mark.django_db
def test_the_issues_exact_nul_requests(writer, hamilton):
    for method, url in [("get", "/api/v1/file/%00"), ("get", f"/api/v1/file/{HAMILTON_UUID}%00/video"),
                        ("get", "/api/v1/file/%00/thumbnail?frame=1"), ("post", "/api/v1/file/%00/detect-faces"),
                        ("post", f"/api/v1/file/{HAMILTON_UUID}%00/sign")]:
        envelope(getattr(writer, method)(url, {}, format="json"), 404, "NOT_FOUND")
    # the same is true without any credential: the path is checked before anything else
    envelope(Client().get("/api/v1/file/%00/video"), 404, "NOT_FOUND")


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["abc", "\x00", "1\x00", str(2**31), "9" * 30, "-1", "1.0", "١"], ids=repr)
def test_a_trace_id_that_names_nothing_is_the_404_of_an_unknown_trace(writer, hamilton, bad):
    load_traces(hamilton, {1: (0, 10, 5)})
    for name, pattern in routes_with("trace_id"):
        url = reverse(name, kwargs=sample_kwargs(pattern, trace_id=bad))
        for method in methods_of(pattern):
            error = envelope(getattr(writer, method)(url, {}, format="json"), 404, "NOT_FOUND")
            assert error["message"] == "Trace not found." and error["details"] == {
                "file_uuid": HAMILTON_UUID, "trace_id": bad}, (method, url)


@pytest.mark.django_db
def test_an_unknown_trace_has_one_404_on_every_trace_route(writer, hamilton):
    """``trace/999/video`` and ``/representative-face`` and ``trace/abc`` once gave three different details."""
    load_traces(hamilton, {1: (0, 10, 5)})
    answers = set()
    for trace_id in ("999", "abc"):
        for name, pattern in routes_with("trace_id"):
            url = reverse(name, kwargs=sample_kwargs(pattern, trace_id=trace_id))
            for method in methods_of(pattern):
                error = envelope(getattr(writer, method)(url, {}, format="json"), 404, "NOT_FOUND")
                answers.add((error["message"], tuple(sorted(error["details"]))))
                assert str(error["details"]["trace_id"]) == trace_id
    assert answers == {("Trace not found.", ("file_uuid", "trace_id"))}


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["\x00", "a" * 31 + "\x00", "not-a-uuid", "g" * 32], ids=repr)
def test_an_identity_uuid_that_names_nothing_is_the_404_of_an_unknown_identity(writer, hamilton, bad):
    from identities.models import Identity

    known = Identity.objects.create(name="Known")
    unknown_answer = envelope(writer.get(f"/api/v1/identity/{'f' * 32}"), 404, "NOT_FOUND")
    assert unknown_answer == {"code": "NOT_FOUND", "message": "Identity not found.",
                              "details": {"identity_uuid": "f" * 32}}
    for parameter in ("identity_uuid", "identity_uuid_a", "identity_uuid_b"):
        for name, pattern in routes_with(parameter):
            kwargs = sample_kwargs(pattern, **{parameter: bad})
            kwargs.update({k: known.identity_uuid for k in kwargs if k.startswith("identity_uuid") and k != parameter})
            url = reverse(name, kwargs=kwargs)
            for method in methods_of(pattern):
                error = envelope(getattr(writer, method)(url, {}, format="json"), 404, "NOT_FOUND")
                assert error == {**unknown_answer, "details": {"identity_uuid": bad}}, (method, url)


@pytest.mark.django_db
def test_a_dashed_or_upper_case_uuid_in_the_path_still_names_the_file(api_client, hamilton):
    dashed = f"{HAMILTON_UUID[:8]}-{HAMILTON_UUID[8:12]}-{HAMILTON_UUID[12:16]}-{HAMILTON_UUID[16:20]}-" \
             f"{HAMILTON_UUID[20:]}".upper()
    response = api_client.get(f"/api/v1/file/{dashed}")
    assert response.status_code == 200 and response.json()["file_uuid"] == HAMILTON_UUID


# --- 2. and 3.: NUL in JSON bodies and query strings is a 400 -------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("metadata,where", [
    ({"k": "v\x00"}, "metadata.k"),
    ({"k\x00": "v"}, "metadata"),
    ({"a": {"b": ["ok", "x\x00y"]}}, "metadata.a.b.1"),
    ({"aliases": ["\x00"]}, "metadata.aliases.0"),
])
def test_nul_anywhere_in_identity_metadata_is_400(writer, metadata, where):
    from identities.models import Identity

    create = writer.post("/api/v1/identities", {"name": "m1", "metadata": metadata}, format="json")
    assert envelope(create, 400, "BAD_REQUEST")["details"]["parameter"] == where
    assert not Identity.objects.filter(name="m1").exists()
    person = Identity.objects.create(name="m2", metadata={"k": "v"})
    patch = writer.patch(f"/api/v1/identity/{person.identity_uuid}", {"metadata": metadata}, format="json")
    assert envelope(patch, 400, "BAD_REQUEST")["details"]["parameter"] == where
    person.refresh_from_db()
    assert person.metadata == {"k": "v"}


@pytest.mark.django_db
def test_nul_in_any_json_body_is_400_but_an_escaped_backslash_u0000_is_text(writer, hamilton):
    from identities.models import Identity

    for url, body in [("/api/v1/identities", {"name": "x\x00"}),
                      (f"/api/v1/file/{HAMILTON_UUID}/sign", {"url": "/api/v1/file/\x00/video"}),
                      (f"/api/v1/file/{HAMILTON_UUID}/detect-faces", {"model\x00": 1})]:
        envelope(writer.post(url, body, format="json"), 400, "BAD_REQUEST")
    # the six characters \u0000 (an escaped backslash) are ordinary text
    literal = writer.post("/api/v1/identities", '{"name": "lit", "metadata": {"k": "\\\\u0000"}}',
                          content_type="application/json")
    assert literal.status_code == 201, literal.content
    assert Identity.objects.get(name="lit").metadata == {"k": "\\u0000"}


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["search=%00", "search=a%00b", "status=%00", "page=%00", "%00=1", "sort=x%00"])
def test_nul_in_a_query_parameter_is_400(writer, hamilton, query):
    for url in ("/api/v1/identities", f"/api/v1/file/{HAMILTON_UUID}/traces", "/api/v1/files", "/api/v1/jobs"):
        error = envelope(writer.get(f"{url}?{query}"), 400, "BAD_REQUEST")
        assert "NUL" in error["message"] and error["details"]["parameter"] == query.split("=")[0].replace("%00", "\x00")


@pytest.mark.django_db
def test_nul_in_an_api_key_header_is_401_not_500():
    envelope(Client().get("/api/v1/files", HTTP_X_API_KEY="mk_\x00abcdefgh"), 401, "UNAUTHORIZED")


# --- 6.: search names and aliases as text, never as JSON ------------------------------------------------------------


@pytest.fixture
def json_looking_people(db):
    from identities.models import Identity

    plain = [Identity.objects.create(name=f"Person {n}", metadata={"aliases": [f"alias {n}", "x"]})
             for n in range(6)]
    odd = {
        "quote": Identity.objects.create(name="Plain", metadata={"aliases": ['say "hi"']}),
        "bracket": Identity.objects.create(name="Other", metadata={"aliases": ["[draft]"]}),
        "backslash": Identity.objects.create(name="Slash", metadata={"aliases": ["a\\b"]}),
        "newline": Identity.objects.create(name="Two\nlines"),
        "comma": Identity.objects.create(name="Comma", metadata={"aliases": ["x, y"]}),
    }
    return plain, odd


@pytest.mark.django_db
@pytest.mark.parametrize("term,expected", [
    ('"', {"quote"}),            # matched every identity with an alias (the quotes of JSON strings)
    ("[", {"bracket"}),          # matched every identity with aliases (the array's bracket)
    ("\\", {"backslash"}),       # matched the name with a newline (its JSON escape) and every "\\" escape
    ('", "', set()),             # the separator between two JSON strings
    (",", {"comma"}),
    ("x, y", {"comma"}),
    ("aliases", set()),          # the JSON key
    ("null", set()),
])
def test_search_matches_names_and_aliases_as_text(writer, json_looking_people, term, expected):
    _, odd = json_looking_people
    response = writer.get("/api/v1/identities", {"search": term, "page_size": 100})
    assert response.status_code == 200, response.content
    found = {i["identity_uuid"] for i in response.json()["identities"]}
    assert found == {odd[k].identity_uuid for k in expected}


@pytest.mark.django_db
def test_search_still_finds_aliases_and_names(writer, json_looking_people):
    plain, _ = json_looking_people
    found = writer.get("/api/v1/identities", {"search": "ALIAS 3"}).json()["identities"]
    assert [i["identity_uuid"] for i in found] == [plain[3].identity_uuid]
    assert len(writer.get("/api/v1/identities", {"search": "person", "page_size": 100}).json()["identities"]) == 6


# --- 1.–3. on PostgreSQL's side: the database never sees a NUL (all the above, plus the raw check) -------------------


@pytest.mark.django_db
def test_json_body_check_leaves_ordinary_bodies_alone(writer):
    response = writer.post("/api/v1/identities", json.dumps({"name": "Zoë", "metadata": {"k": ["ü", 1, None]}}),
                           content_type="application/json")
    assert response.status_code == 201 and response.json()["metadata"] == {"k": ["ü", 1, None]}


# --- 7.: a chunked body over the limit is a 413, a chunked body within it is read ------------------------------------


def chunked_post(url: str, path: str, key: str, body: bytes, chunk: int = 65536) -> tuple[int, dict]:
    """POST ``body`` with ``Transfer-Encoding: chunked`` and no Content-Length, over a raw socket."""
    from tests.servers import raw_request

    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk])
                      for i in range(0, len(body), chunk))
    request = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\n"
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    answer = raw_request(url, request + chunks + b"0\r\n\r\n", timeout=30)
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():  # the answer may be chunked too
        decoded, rest = b"", payload
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            decoded, rest = decoded + rest[:n], rest[n + 2:]
            if n == 0:
                break
        payload = decoded
    return status, json.loads(payload)


@pytest.mark.django_db(transaction=True)
def test_chunked_bodies_through_gunicorn(staff_user, settings, tmp_path):
    from identities.models import Identity
    from tests.servers import gunicorn

    key = key_client(staff_user, write=True)[1]
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    with gunicorn(workers=1, log_path=tmp_path / "gunicorn.log") as url:
        small = json.dumps({"name": "Chunked Person", "metadata": {"k": "v"}}).encode()
        status, body = chunked_post(url, "/api/v1/identities", key, small, chunk=7)
        assert status == 201 and body["name"] == "Chunked Person", body  # once read as empty: 400 "name required"
        big = json.dumps({"name": "x" * (limit + 100)}).encode()
        status, body = chunked_post(url, "/api/v1/identities", key, big)
        assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE", body
        assert body["error"]["details"]["max_bytes"] == limit
        status, body = chunked_post(url, "/api/v1/identities", key, b'{"name": "nul\\u0000"}')
        assert status == 400 and body["error"]["details"]["parameter"] == "name"
    assert list(Identity.objects.values_list("name", flat=True)) == ["Chunked Person"]


# --- 4.: login while the cache (Redis) is down fails closed with a 503; the rest of the API goes on -------------------


def _http(url: str, path: str, method: str = "GET", body: dict | None = None, **headers: str):
    """(status, headers, JSON body) of a real HTTP request."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"null")


class PrivateRedis:
    """A redis-server of our own on a free port, which the test stops, freezes and starts again."""

    def __init__(self) -> None:
        from tests.servers import free_port

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> None:
        import shutil
        import subprocess

        from tests.servers import _answers_tcp, wait_for

        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _answers_tcp(self.port), timeout=20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _login(url: str, password: str):
    return _http(url, "/api/v1/auth/login", "POST", {"username": "viewer", "password": password})


@pytest.mark.django_db(transaction=True)
def test_login_with_the_cache_redis_down_is_503_and_never_unlimited(plain_user, tmp_path):
    import os
    import signal
    import time

    from tests.servers import gunicorn

    key = key_client(plain_user)[1]
    redis = PrivateRedis()
    redis.start()
    try:
        with gunicorn(workers=2, log_path=tmp_path / "gunicorn.log", MOMENTRY_REDIS_URL=redis.url) as url:
            assert _login(url, "viewer-pass-123")[0] == 200
            redis.stop()
            for password in ("wrong", "viewer-pass-123") * 8:  # never checked while attempts cannot be counted
                status, headers, body = _login(url, password)
                assert status == 503 and body["error"]["code"] == "UNAVAILABLE", body
                assert int(headers["Retry-After"]) > 0 and body["error"]["details"]["retry_after"] > 0
            # every other route works without the cache
            assert _http(url, "/api/v1/files", **{"X-API-Key": key})[0] == 200
            assert _http(url, "/api/v1/identities", **{"X-API-Key": key})[0] == 200
            assert _http(url, "/health")[0] == 200

            redis.start()  # back: login works again, and the count starts again
            assert _login(url, "viewer-pass-123")[0] == 200
            statuses = [_login(url, "wrong")[0] for _ in range(12)]
            assert statuses == [401] * 10 + [429] * 2

            os.kill(redis.proc.pid, signal.SIGSTOP)  # a Redis that hangs: refused within its socket timeout
            try:
                started = time.monotonic()
                status, _, body = _login(url, "viewer-pass-123")
                assert status == 503 and body["error"]["code"] == "UNAVAILABLE"
                assert time.monotonic() - started < 15
                assert _http(url, "/api/v1/files", **{"X-API-Key": key})[0] == 200
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
    finally:
        redis.stop()


# --- 5.: a signed URL never outlives, nor survives the revocation of, the credential that signed it ------------------


SEVEN_DAYS = 7 * 24 * 3600
THUMB = f"/api/v1/file/{HAMILTON_UUID}/thumbnail?frame=60"


def _sign(client, **headers) -> dict:
    response = client.post(f"/api/v1/file/{HAMILTON_UUID}/sign", {"url": THUMB, "expires_in": SEVEN_DAYS},
                           format="json", **headers)
    assert response.status_code == 200, response.content
    return response.json()


def _expiry(body: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(body["expires_at"]).timestamp()


def _logged_in(client: Client) -> dict:
    response = client.post("/api/v1/auth/login", {"username": "viewer", "password": "viewer-pass-123"},
                           content_type="application/json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.django_db
def test_a_url_signed_with_a_jwt_ends_with_the_jwt_and_at_its_logout(plain_user, hamilton):
    from datetime import datetime

    from rest_framework.test import APIClient

    login = _logged_in(Client())
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {login['jwt']}"}
    other = _logged_in(Client())  # a second login: its logout must not touch the first one's URLs
    signed = _sign(APIClient(), **bearer)
    jwt_expiry = datetime.fromisoformat(login["expires_at"]).timestamp()
    assert _expiry(signed) <= jwt_expiry  # asked for 7 days, got the token's hour
    assert Client().get(signed["url"]).status_code == 200

    Client().post("/api/v1/auth/logout", HTTP_AUTHORIZATION=f"Bearer {other['jwt']}")
    assert Client().get(signed["url"]).status_code == 200

    assert Client().post("/api/v1/auth/logout", **bearer).json()["jwt_revoked"] is True
    refused = Client().get(signed["url"])
    assert envelope(refused, 403, "FORBIDDEN")["message"] == "The token that signed this URL was logged out."


@pytest.mark.django_db
def test_a_url_signed_with_a_jwt_is_expired_when_the_jwt_is(plain_user, hamilton, monkeypatch):
    import time

    from rest_framework.test import APIClient

    login = _logged_in(Client())
    signed = _sign(APIClient(), HTTP_AUTHORIZATION=f"Bearer {login['jwt']}")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3601)
    assert "expired" in envelope(Client().get(signed["url"]), 403, "FORBIDDEN")["message"]


@pytest.mark.django_db
def test_a_url_signed_with_an_api_key_ends_with_the_key(plain_user, hamilton):
    from django.utils import timezone

    from momentry.models import APIKey
    from momentry.services import revoke_api_key

    client, raw = key_client(plain_user, days=1)
    key = APIKey.objects.get(prefix=raw[:12])
    signed = _sign(client)
    assert _expiry(signed) <= key.expires_at.timestamp() < _expiry(signed) + 5
    assert Client().get(signed["url"]).status_code == 200
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timezone.timedelta(seconds=1))
    assert "no longer valid" in envelope(Client().get(signed["url"]), 403, "FORBIDDEN")["message"]

    client, raw = key_client(plain_user)
    signed = _sign(client)
    revoke_api_key(APIKey.objects.get(prefix=raw[:12]))
    assert "no longer valid" in envelope(Client().get(signed["url"]), 403, "FORBIDDEN")["message"]


@pytest.mark.django_db
def test_a_url_signed_with_a_session_ends_at_the_sessions_logout(plain_user, hamilton):
    from datetime import datetime

    from rest_framework.test import APIClient

    browser = APIClient()
    browser.login(username="viewer", password="viewer-pass-123")
    signed = _sign(browser)
    session_expiry = datetime.fromisoformat(_logged_in(Client())["session_expires_at"]).timestamp()
    assert _expiry(signed) <= session_expiry + 5
    assert "sub=s" in signed["url"] and browser.session.session_key not in signed["url"]
    assert Client().get(signed["url"]).status_code == 200
    browser.post("/api/v1/auth/logout")
    assert "logged out" in envelope(Client().get(signed["url"]), 403, "FORBIDDEN")["message"]


@pytest.mark.django_db
def test_a_forged_subject_is_refused(plain_user, hamilton):
    """``sub`` is inside the signature: naming another credential breaks it."""
    client, _ = key_client(plain_user)
    url = _sign(client)["url"]
    for forged in (url.replace("sub=k", "sub=u"), url.replace("sub=k", "sub=s")):
        envelope(Client().get(forged), 403, "FORBIDDEN")


@pytest.mark.django_db
def test_nul_in_metadata_typed_in_the_admin_is_a_form_error(staff_user):
    from identities.models import Identity

    browser = Client()
    browser.force_login(staff_user)
    form = {"name": "Admin Typed", "status": "confirmed", "identity_type": "people", "aliases": "",
            "metadata": '{"note": "a\\u0000b"}', "traces-TOTAL_FORMS": "0", "traces-INITIAL_FORMS": "0",
            "traces-MIN_NUM_FORMS": "0", "traces-MAX_NUM_FORMS": "1000"}
    response = browser.post(reverse("admin:identities_identity_add"), form)
    assert response.status_code == 200 and "NUL character" in response.content.decode()
    assert not Identity.objects.filter(name="Admin Typed").exists()
    form["metadata"] = '{"note": "ab"}'
    assert browser.post(reverse("admin:identities_identity_add"), form).status_code == 302
    assert Identity.objects.get(name="Admin Typed").metadata == {"note": "ab"}


@pytest.mark.django_db
@pytest.mark.parametrize("cookie", ["sessionid=abcdefgh\x00ij", 'sessionid="abcdefgh\\000ij"'], ids=repr)
def test_a_session_cookie_with_nul_is_no_session_not_a_500(api_client, cookie):
    envelope(Client().get("/api/v1/files", HTTP_COOKIE=cookie), 401, "UNAUTHORIZED")
    assert Client().get("/admin/", HTTP_COOKIE=cookie).status_code == 302  # to the login page
    # a good session next to a broken cookie still works
    good = api_client.cookies["sessionid"].value
    assert Client().get("/api/v1/files", HTTP_COOKIE=f"sessionid={good}; other=a\x00b").status_code == 200


@pytest.mark.django_db
def test_the_cast_page_of_a_file_uuid_with_nul_is_a_404_page(staff_user, hamilton):
    browser = Client()
    browser.force_login(staff_user)
    for bad in ("%00", HAMILTON_UUID + "%00", "abc"):
        response = browser.get(f"/admin/cast/{bad}/")
        assert response.status_code == 404 and response["Content-Type"].startswith("text/html"), bad
    assert browser.get(f"/admin/cast/{HAMILTON_UUID}/").status_code == 200


# --- 9.: the platform package knows no domain app -------------------------------------------------------------------

#: momentry's platform modules (credentials, errors, request limits, signing, the OpenAPI helpers...). settings
#: and urls name the apps' URLconfs by design; a domain field's schema lives with its app (identities.fields).
PLATFORM_MODULES = ["auth", "bodies", "checks", "client_address", "converters", "errors", "limits", "models", "nul",
                    "pagination", "parsers", "schema", "schema_hooks", "secret_key", "services", "signing",
                    "views_auth"]


@pytest.mark.parametrize("module", PLATFORM_MODULES)
def test_platform_modules_import_no_domain_app(module):
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parent.parent / "momentry" / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):  # inside functions too
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] in ("media_api", "identities", "jobs")}
