"""No secret in the source: a generated key kept in the data directory, known and short keys refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from momentry.secret_key import KNOWN_KEYS, load_secret_key
from tests.servers import REPO

OLD_DEFAULT = "insecure-dev-key-change-me-" + "x" * 24


def _forged_token(user_id: int, key: str) -> str:
    now = timezone.now()
    claims = {"token_type": "access", "exp": int((now + timedelta(hours=1)).timestamp()),
              "iat": int(now.timestamp()), "jti": "f" * 32, "user_id": str(user_id)}
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.mark.django_db
def test_token_signed_with_the_old_default_key_is_refused(staff_user, client):
    assert OLD_DEFAULT in KNOWN_KEYS and settings.SECRET_KEY != OLD_DEFAULT
    forged = _forged_token(staff_user.pk, OLD_DEFAULT)
    response = client.post("/api/v1/identities", {"name": "Mallory"}, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    # The same claims signed with the running key do work: the refusal is about the key alone.
    genuine = _forged_token(staff_user.pk, settings.SECRET_KEY)
    assert client.get("/api/v1/files", HTTP_AUTHORIZATION=f"Bearer {genuine}").status_code == 200


def test_generated_key_is_private_random_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("MOMENTRY_SECRET_KEY", raising=False)
    key, source = load_secret_key(tmp_path)
    path = tmp_path / "secret_key"
    assert source == "generated" and len(key) >= 48
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(tmp_path) == (key, "generated")  # the same key on every start
    (tmp_path / "elsewhere").mkdir()
    assert load_secret_key(tmp_path / "elsewhere")[0] != key  # random, not derived from anything
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".secret_key")]  # no temp file left


def test_environment_key_wins_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("MOMENTRY_SECRET_KEY", "k" * 40)
    assert load_secret_key(tmp_path) == ("k" * 40, "environment")
    assert not (tmp_path / "secret_key").exists()
    for bad in (OLD_DEFAULT, "short-key", "django-insecure-" + "a" * 40):
        monkeypatch.setenv("MOMENTRY_SECRET_KEY", bad)
        with pytest.raises(ImproperlyConfigured):
            load_secret_key(tmp_path)


def _manage(args: list[str], data_dir, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MOMENTRY_SECRET_KEY"}
    environment.update({"MOMENTRY_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "momentry.settings"}, **env)
    environment.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("key,reason", [(OLD_DEFAULT, "published default"), ("tiny", "at least 32")])
def test_start_up_refuses_a_known_or_short_key(tmp_path, key, reason):
    result = _manage(["check"], tmp_path, MOMENTRY_SECRET_KEY=key)
    assert result.returncode != 0
    assert reason in result.stderr and "MOMENTRY_SECRET_KEY" in result.stderr


def test_deploy_check_flags_a_generated_key(tmp_path):
    generated = _manage(["check", "--deploy"], tmp_path)
    assert "momentry.W001" in generated.stderr + generated.stdout
    from_env = _manage(["check", "--deploy"], tmp_path, MOMENTRY_SECRET_KEY="e" * 50)
    assert "momentry.W001" not in from_env.stderr + from_env.stdout
