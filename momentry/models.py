"""Credentials and file scope: API keys, a user's file scope, revoked JWTs.

Scope model: a caller sees every file unless limited. A key limited to files sees only
those; a user with a :class:`UserScope` sees only its files; a key of a scoped user sees
the intersection of both.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class APIKey(models.Model):
    """An ``X-API-Key`` credential. Only the SHA-256 of the key is stored.

    SHA-256 (not a slow password hash) is enough because keys carry 256 random bits:
    nobody can brute-force them, and a fast hash keeps every request cheap. ``prefix``
    (public, first characters of the key) finds the candidate row; the hash is then
    compared in constant time.
    """

    class Kind(models.TextChoices):
        MANUAL = "manual", "manual (command or admin)"
        LOGIN = "login", "issued at login"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MANUAL)
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    can_write = models.BooleanField(default=False, help_text="may rename, bind, unbind, merge and delete identities")
    limit_to_files = models.BooleanField(default=False, help_text="only the files listed below are visible")
    files = models.ManyToManyField("media_api.MediaFile", blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_valid(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class UserScope(models.Model):
    """Limits a user (every credential of theirs) to a set of files. No row = unlimited."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="file_scope")
    files = models.ManyToManyField("media_api.MediaFile", blank=True, related_name="+")

    class Meta:
        verbose_name = "user file scope"

    def __str__(self) -> str:
        return f"file scope of {self.user}"


class RevokedToken(models.Model):
    """JWT ids (``jti``) ended by logout; rows can be purged once ``expires_at`` is past."""

    jti = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.jti
