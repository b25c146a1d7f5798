"""Issuing, checking and revoking credentials (API keys and JWTs)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from momentry.errors import BadRequest
from momentry.models import APIKey, RevokedToken

KEY_PREFIX = "mk_"
PREFIX_LENGTH = 12  # "mk_" + 9 random characters: enough to find the row, useless to an attacker
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most once a minute per key


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: ``key`` is the only time the secret exists in clear."""

    key: str
    api_key: APIKey


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_raw_key() -> str:
    """``mk_`` + 43 URL-safe characters (256 bits from the OS CSPRNG)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _files_by_uuid(file_uuids: Iterable[str]) -> list:
    # The file model is whatever APIKey.files points to: the platform names no app's model itself.
    file_model = APIKey.files.field.related_model
    wanted = {str(u).strip().lower() for u in file_uuids}
    found = list(file_model.objects.filter(file_uuid__in=wanted))
    missing = sorted(wanted - {f.file_uuid for f in found})
    if missing:
        raise BadRequest(f"Unknown file_uuid: {', '.join(missing)}", param="files", unknown=missing)
    return found


@transaction.atomic
def create_api_key(
    user: AbstractBaseUser,
    name: str = "",
    days: int | None = None,
    write: bool = False,
    file_uuids: Iterable[str] | None = None,
    kind: str = APIKey.Kind.MANUAL,
) -> IssuedKey:
    """Create a key for ``user``; ``file_uuids`` (if given, even empty) limits it to those files."""
    days = settings.MOMENTRY_API_KEY_DAYS if days is None else days
    if days < 1:
        raise BadRequest("days must be at least 1", param="days")
    raw = new_raw_key()
    api_key = APIKey.objects.create(
        user=user,
        name=name,
        kind=kind,
        prefix=raw[:PREFIX_LENGTH],
        key_hash=hash_key(raw),
        can_write=write,
        limit_to_files=file_uuids is not None,
        expires_at=timezone.now() + timedelta(days=days),
    )
    if file_uuids is not None:
        api_key.files.set(_files_by_uuid(file_uuids))
    return IssuedKey(key=raw, api_key=api_key)


def find_api_key(raw: str) -> APIKey | None:
    """The key row matching ``raw`` (any state), comparing hashes in constant time."""
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    digest = hash_key(raw)
    candidates = APIKey.objects.select_related("user").filter(prefix=raw[:PREFIX_LENGTH])
    for candidate in candidates:
        if hmac.compare_digest(candidate.key_hash, digest):
            return candidate
    return None


def touch_api_key(api_key: APIKey) -> None:
    """Record use, at most once per minute, and never at the price of the request.

    This is bookkeeping: when the database is busy with a long write (an import holding
    SQLite's write lock), the update is skipped at once instead of making a read request
    wait for the lock and fail; it is retried on a later request.
    """
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    # A savepoint only inside an outer transaction, where a failed statement would poison it.
    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with no_lock_wait(), savepoint:
            APIKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    except OperationalError:
        return
    api_key.last_used_at = now


@contextlib.contextmanager
def no_lock_wait():
    """On SQLite, fail at once instead of waiting out the busy timeout (restored afterwards)."""
    if connection.vendor != "sqlite":
        yield
        return
    timeout_ms = int(float(connection.settings_dict.get("OPTIONS", {}).get("timeout", 5)) * 1000)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms:d}")


def revoke_api_key(api_key: APIKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        APIKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)


def role_of(user: AbstractBaseUser) -> str:
    return "admin" if getattr(user, "is_staff", False) else "user"


@dataclass(frozen=True)
class LoginCredentials:
    jwt: str
    jwt_expires_at: datetime
    api_key: IssuedKey


def issue_login_credentials(user: AbstractBaseUser) -> LoginCredentials:
    """A 1-hour JWT and a new API key (read-only unless the user is admin, default expiry).

    The JWT carries the key's id (claim ``akid``) so logout with that JWT revokes both.
    """
    issued = create_api_key(user, name="login", kind=APIKey.Kind.LOGIN)
    token = AccessToken.for_user(user)
    token["akid"] = issued.api_key.pk
    expires = datetime.fromtimestamp(token["exp"], tz=timezone.get_current_timezone())
    return LoginCredentials(jwt=str(token), jwt_expires_at=expires, api_key=issued)


def revoke_jwt(token: AccessToken) -> None:
    """Deny the token's ``jti`` until it expires anyway, and revoke the key issued with it."""
    RevokedToken.objects.filter(expires_at__lt=timezone.now()).delete()  # expired anyway: keep the table small
    jti = token.get("jti")
    if jti:
        expires = datetime.fromtimestamp(token["exp"], tz=timezone.get_current_timezone())
        RevokedToken.objects.get_or_create(jti=jti, defaults={"expires_at": expires})
    akid = token.get("akid")
    if akid:
        APIKey.objects.filter(pk=akid, kind=APIKey.Kind.LOGIN, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )


def jwt_is_revoked(jti: str | None) -> bool:
    return bool(jti) and RevokedToken.objects.filter(jti=jti).exists()
