"""Credentials: session, Bearer JWT and X-API-Key each work; every failure is a 401 JSON with a challenge."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from momentry.models import APIKey, RevokedToken
from momentry.services import create_api_key, find_api_key, hash_key
from tests.conftest import HAMILTON_UUID
from tests.helpers_rest import key_client

FILES = "/api/v1/files"


def assert_401(response):
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/json")
    assert "Bearer" in response["WWW-Authenticate"] and "X-API-Key" in response["WWW-Authenticate"]
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "UNAUTHORIZED"
    return body


def login(client, username="viewer", password="viewer-pass-123"):
    return client.post("/api/v1/auth/login", {"username": username, "password": password},
                       content_type="application/json")


# --- each credential works -------------------------------------------------------------------

@pytest.mark.django_db
def test_session_cookie_works(api_client, hamilton):
    response = api_client.get(FILES)
    assert response.status_code == 200
    assert [f["file_uuid"] for f in response.json()["files"]] == [HAMILTON_UUID]


@pytest.mark.django_db
def test_login_returns_jwt_key_role_and_session_and_each_works(plain_user, hamilton):
    client = Client(enforce_csrf_checks=True)  # like curl/a browser: no CSRF token needed to log in
    response = login(client)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True
    assert body["user"] == {"username": "viewer", "role": "user"}
    assert body["api_key"].startswith("mk_") and len(body["api_key"]) > 40
    token = AccessToken(body["jwt"])
    assert token["user_id"] == str(plain_user.pk) or token["user_id"] == plain_user.pk
    header = json.loads(base64.urlsafe_b64decode(body["jwt"].split(".")[0] + "=="))
    assert header["alg"] == "HS256"
    expires = timezone.datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=59) < expires - timezone.now() <= timedelta(hours=1)
    session_expires = timezone.datetime.fromisoformat(body["session_expires_at"])
    assert timedelta(hours=23) < session_expires - timezone.now() <= timedelta(hours=24)
    # the session cookie set by login
    assert client.get(FILES).status_code == 200
    # the JWT alone
    assert Client().get(FILES, HTTP_AUTHORIZATION=f"Bearer {body['jwt']}").status_code == 200
    # the API key alone
    assert Client().get(FILES, HTTP_X_API_KEY=body["api_key"]).status_code == 200


@pytest.mark.django_db
def test_admin_login_role(staff_user):
    body = login(Client(), "staff", "staff-pass-123").json()
    assert body["user"]["role"] == "admin"


@pytest.mark.django_db
def test_api_key_is_stored_hashed_and_records_last_use(plain_user, hamilton):
    client, key = key_client(plain_user)
    row = APIKey.objects.get()
    assert row.key_hash == hash_key(key) and key not in (row.key_hash, row.prefix) and row.prefix == key[:12]
    assert row.last_used_at is None
    assert (timedelta(days=89) < row.expires_at - timezone.now() <= timedelta(days=90))
    assert client.get(FILES).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None
    assert find_api_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # same prefix, wrong secret


@pytest.mark.django_db
def test_api_key_days_setting(settings, plain_user):
    settings.MOMENTRY_API_KEY_DAYS = 7
    row = create_api_key(plain_user).api_key
    assert timedelta(days=6) < row.expires_at - timezone.now() <= timedelta(days=7)


# --- each failure mode ---------------------------------------------------------------------

@pytest.mark.django_db
def test_no_credentials_is_401(hamilton):
    body = assert_401(Client().get(FILES))
    assert "credentials" in body["error"]["message"].lower()
    assert_401(Client().get(f"/api/v1/file/{HAMILTON_UUID}"))
    assert_401(Client().get("/api/v1/identities"))


@pytest.mark.django_db
def test_wrong_api_key_is_401(plain_user):
    create_api_key(plain_user)
    assert_401(Client().get(FILES, HTTP_X_API_KEY="mk_" + "x" * 43))
    assert_401(Client().get(FILES, HTTP_X_API_KEY="not-even-a-key"))


@pytest.mark.django_db
def test_expired_api_key_is_401(plain_user):
    issued = create_api_key(plain_user)
    APIKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = assert_401(Client().get(FILES, HTTP_X_API_KEY=issued.key))
    assert "expired" in body["error"]["message"]


@pytest.mark.django_db
def test_revoked_api_key_is_401(plain_user):
    issued = create_api_key(plain_user)
    assert Client().get(FILES, HTTP_X_API_KEY=issued.key).status_code == 200
    APIKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())
    body = assert_401(Client().get(FILES, HTTP_X_API_KEY=issued.key))
    assert "revoked" in body["error"]["message"]


@pytest.mark.django_db
def test_key_of_inactive_user_is_401(plain_user):
    issued = create_api_key(plain_user)
    plain_user.is_active = False
    plain_user.save()
    assert_401(Client().get(FILES, HTTP_X_API_KEY=issued.key))


@pytest.mark.django_db
def test_tampered_jwt_is_401(plain_user):
    token = str(AccessToken.for_user(plain_user))
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["user_id"] = "999"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_401(Client().get(FILES, HTTP_AUTHORIZATION=f"Bearer {head}.{forged}.{signature}"))
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert_401(Client().get(FILES, HTTP_AUTHORIZATION=f"Bearer {head}.{payload}.{flipped}"))
    assert_401(Client().get(FILES, HTTP_AUTHORIZATION="Bearer garbage"))
    assert_401(Client().get(FILES, HTTP_AUTHORIZATION="Bearer"))


@pytest.mark.django_db
def test_expired_jwt_is_401(plain_user):
    token = AccessToken.for_user(plain_user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    body = assert_401(Client().get(FILES, HTTP_AUTHORIZATION=f"Bearer {token}"))
    assert "expired" in body["error"]["message"]


@pytest.mark.django_db
def test_bad_jwt_does_not_fall_through_to_a_valid_key(plain_user):
    _, key = key_client(plain_user)
    assert_401(Client().get(FILES, HTTP_AUTHORIZATION="Bearer garbage", HTTP_X_API_KEY=key))


@pytest.mark.django_db
def test_wrong_password_is_401_and_missing_field_is_400(plain_user):
    response = login(Client(), password="nope")
    assert_401(response)
    response = Client().post("/api/v1/auth/login", {"username": "viewer"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["parameter"] == "password"


# --- logout --------------------------------------------------------------------------------

def body_jti(jwt: str) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return AccessToken(jwt)["jti"]


@pytest.mark.django_db
def test_logout_ends_session_and_revokes_the_jwt_and_its_key(plain_user):
    client = Client(enforce_csrf_checks=True)
    body = login(client).json()
    assert client.get(FILES).status_code == 200
    response = client.post("/api/v1/auth/logout", HTTP_AUTHORIZATION=f"Bearer {body['jwt']}")
    assert response.status_code == 200
    assert response.json() == {"success": True, "session_ended": True, "jwt_revoked": True}
    assert_401(client.get(FILES))
    # the JWT's id, and the session's digest (which ends the URLs it signed, momentry.signing)
    assert sorted(t.jti.split(":")[0] for t in RevokedToken.objects.all()) == [body_jti(body["jwt"]), "session"]
    assert "revoked" in assert_401(Client().get(FILES, HTTP_AUTHORIZATION=f"Bearer {body['jwt']}"))["error"]["message"]
    assert_401(Client().get(FILES, HTTP_X_API_KEY=body["api_key"]))


@pytest.mark.django_db
def test_logout_without_anything_is_harmless():
    response = Client().post("/api/v1/auth/logout")
    assert response.status_code == 200 and response.json()["session_ended"] is False


# --- CSRF: session unsafe calls keep it; keys/JWT need none -------------------------------

@pytest.mark.django_db
def test_csrf_enforced_for_session_writes_but_not_for_keys(staff_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post("/api/v1/identities", {"name": "A"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "FORBIDDEN"
    key = create_api_key(staff_user).key
    response = Client(enforce_csrf_checks=True).post("/api/v1/identities", {"name": "A"},
                                                     content_type="application/json", HTTP_X_API_KEY=key)
    assert response.status_code == 201


# --- create_api_key command --------------------------------------------------------------

@pytest.mark.django_db
def test_create_api_key_command_creates_user_and_prints_key_last(capsys, hamilton, django_user_model):
    call_command("create_api_key", "newbie", "--days", "3", "--write", "--files", HAMILTON_UUID)
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    assert key.startswith("mk_") and " " not in key
    user = django_user_model.objects.get(username="newbie")
    assert not user.is_staff and not user.has_usable_password()
    row = APIKey.objects.get(user=user)
    assert row.can_write and row.limit_to_files and list(row.files.values_list("file_uuid", flat=True)) == [
        HAMILTON_UUID]
    assert timedelta(days=2) < row.expires_at - timezone.now() <= timedelta(days=3)
    assert out.count(key) == 1
    client = APIClient()
    assert client.get(FILES, HTTP_X_API_KEY=key).json()["total"] == 1


@pytest.mark.django_db
def test_create_api_key_command_refuses_unknown_file_and_bad_days(plain_user):
    with pytest.raises(CommandError, match="Unknown file_uuid"):
        call_command("create_api_key", "viewer", "--files", "f" * 32)
    with pytest.raises(CommandError, match="days"):
        call_command("create_api_key", "viewer", "--days", "0")
    assert APIKey.objects.count() == 0


# --- admin: create (key shown once), revoke --------------------------------------------------

@pytest.mark.django_db
def test_admin_creates_a_key_shown_once_and_revokes_it(staff_user, plain_user, hamilton):
    client = Client()
    client.force_login(staff_user)
    response = client.post("/admin/momentry/apikey/add/", {
        "user": plain_user.pk, "name": "partner", "days": 5, "limit_to_files": "on", "files": [hamilton.pk],
    }, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    key = next(m.split(": ", 1)[1] for m in shown if "shown once" in m)
    row = APIKey.objects.get(name="partner")
    assert row.key_hash == hash_key(key) and row.limit_to_files and list(row.files.all()) == [hamilton]
    assert timedelta(days=4) < row.expires_at - timezone.now() <= timedelta(days=5)
    assert Client().get(FILES, HTTP_X_API_KEY=key).json()["total"] == 1
    assert client.get("/admin/momentry/apikey/").status_code == 200
    change_page = client.get(f"/admin/momentry/apikey/{row.pk}/change/")
    assert change_page.status_code == 200 and key not in change_page.content.decode()
    assert client.get("/admin/momentry/userscope/add/").status_code == 200
    client.post("/admin/momentry/apikey/", {"action": "revoke", "_selected_action": [row.pk]})
    assert_401(Client().get(FILES, HTTP_X_API_KEY=key))


@pytest.mark.django_db
def test_browser_session_writes_with_the_csrf_cookie_from_login(staff_user):
    client = Client(enforce_csrf_checks=True)
    response = login(client, "staff", "staff-pass-123")
    token = response.cookies["csrftoken"].value
    created = client.post("/api/v1/identities", {"name": "A"}, content_type="application/json",
                          HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201


@pytest.mark.django_db
def test_repeated_failed_logins_are_throttled(plain_user, staff_user):
    from django.core.cache import cache

    from momentry.views_auth import MAX_LOGIN_FAILURES

    cache.clear()
    try:
        client = Client()
        for _ in range(MAX_LOGIN_FAILURES):
            assert_401(login(client, password="guess"))
        response = login(client)  # even the right password, until the window passes
        assert response.status_code == 429 and response.json()["error"]["code"] == "THROTTLED"
        assert int(response["Retry-After"]) > 0
        assert login(client, "staff", "staff-pass-123").status_code == 200  # other usernames are unaffected
    finally:
        cache.clear()


@pytest.mark.django_db
def test_successful_login_resets_the_failure_count(plain_user):
    from django.core.cache import cache

    from momentry.views_auth import MAX_LOGIN_FAILURES

    cache.clear()
    try:
        for _ in range(MAX_LOGIN_FAILURES - 1):
            assert_401(login(Client(), password="guess"))
        assert login(Client()).status_code == 200
        for _ in range(MAX_LOGIN_FAILURES - 1):
            assert_401(login(Client(), password="guess"))
        assert login(Client()).status_code == 200
    finally:
        cache.clear()
