"""Login lockout holds on every worker (shared cache) and per (username, client) behind a trusted proxy."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from momentry.views_auth import MAX_LOGIN_FAILURES
from tests.servers import gunicorn

REDIS_URL = os.environ.get("TEST_REDIS_URL", "")


def _login(url: str, username: str, password: str, forwarded_for: str | None = None) -> int:
    request = urllib.request.Request(f"{url}/api/v1/auth/login", method="POST",
                                     data=json.dumps({"username": username, "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
    if forwarded_for:
        request.add_header("X-Forwarded-For", forwarded_for)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _guesses(url: str, count: int, **kwargs) -> list[int]:
    return [_login(url, "viewer", f"wrong-{n}", **kwargs) for n in range(count)]


@pytest.fixture
def cache_backend(request):
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("no Redis (TEST_REDIS_URL is set by scripts/test.sh when one answers)")
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        return {"MOMENTRY_REDIS_URL": REDIS_URL}
    return {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cache_backend", ["database", "redis"], indirect=True)
def test_lockout_holds_across_four_workers(plain_user, cache_backend, tmp_path):
    cache.clear()
    with gunicorn(workers=4, log_path=tmp_path / "gunicorn.log", **cache_backend) as url:
        statuses = _guesses(url, 40)
        assert statuses[:MAX_LOGIN_FAILURES] == [401] * MAX_LOGIN_FAILURES
        assert statuses[MAX_LOGIN_FAILURES:] == [429] * (40 - MAX_LOGIN_FAILURES)  # not one more guess is checked
        # the right password is refused too while locked out
        assert _login(url, "viewer", "viewer-pass-123") == 429
    cache.clear()


@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_proxy_lockout_is_per_client(plain_user, tmp_path):
    """nginx gives every client the proxy's address; X-Forwarded-For (trusted only from it) tells them apart."""
    cache.clear()
    with gunicorn(workers=2, log_path=tmp_path / "gunicorn.log", MOMENTRY_TRUSTED_PROXIES="127.0.0.1") as url:
        assert _guesses(url, MAX_LOGIN_FAILURES + 2, forwarded_for="203.0.113.7")[-1] == 429
        # the real user, from another address, is not locked out by the stranger
        assert _login(url, "viewer", "viewer-pass-123", forwarded_for="198.51.100.20") == 200
        # forging the header does not escape the lockout: the proxy appends the true address last
        assert _login(url, "viewer", "x", forwarded_for="10.9.9.9, 203.0.113.7") == 429
    cache.clear()


@pytest.mark.django_db
def test_forwarded_for_is_ignored_from_untrusted_peers(plain_user):
    cache.clear()
    client = Client()

    def attempt(password: str, forwarded: str) -> int:
        return client.post("/api/v1/auth/login", {"username": "viewer", "password": password},
                           content_type="application/json", HTTP_X_FORWARDED_FOR=forwarded).status_code

    with override_settings(MOMENTRY_TRUSTED_PROXIES=[]):
        # a client rotating X-Forwarded-For is still one client (127.0.0.1): locked out after 10
        statuses = [attempt("wrong", f"192.0.2.{n}") for n in range(MAX_LOGIN_FAILURES + 1)]
        assert statuses[-1] == 429
    cache.clear()


@pytest.mark.parametrize("peer,header,trusted,expected", [
    ("10.0.0.5", "203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),
    ("10.0.0.5", "203.0.113.7, 10.0.0.9", ["10.0.0.0/8"], "203.0.113.7"),       # two proxies
    ("10.0.0.5", "6.6.6.6, 203.0.113.7", ["10.0.0.0/8"], "203.0.113.7"),         # forged left part ignored
    ("192.0.2.1", "203.0.113.7", ["10.0.0.0/8"], "192.0.2.1"),                   # peer not trusted
    ("10.0.0.5", "garbage", ["10.0.0.0/8"], "10.0.0.5"),
    ("10.0.0.5", "", ["10.0.0.0/8"], "10.0.0.5"),
    ("::1", "[2001:db8::1]:443", ["::1"], "2001:db8::1"),
])
def test_client_address(rf, settings, peer, header, trusted, expected):
    from momentry.client_address import client_address

    settings.MOMENTRY_TRUSTED_PROXIES = trusted
    request = rf.get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=header)
    assert client_address(request) == expected


def test_the_cache_is_never_per_process(settings):
    assert not settings.CACHES["default"]["BACKEND"].endswith(("LocMemCache", "DummyCache"))
