"""Where the signing key comes from: the environment, or a random key generated once.

No secret is ever in the source. ``MOMENTRY_SECRET_KEY`` wins when set; a key that is known
(the fallback an earlier version shipped in its source) or shorter than 32 bytes is refused
at start-up, because anyone can sign JWTs and session cookies with it. Without the variable
a random key is generated on first start and kept in ``MOMENTRY_DATA_DIR/secret_key`` (mode
0600), so the demo needs no set-up and every process sharing the data directory signs with
the same key. ``manage.py check --deploy`` flags a generated key (``momentry.W001``): in
production the key belongs in the environment or a secret store, not next to the cache.

This module is imported by the settings, so it uses nothing from Django but the exception.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

MIN_KEY_BYTES = 32
KEY_FILE_NAME = "secret_key"
#: Keys published in earlier versions of this project (its source and README): never accepted.
KNOWN_KEYS = frozenset({"insecure-dev-key-change-me-" + "x" * 24})


def check_key(key: str, origin: str) -> str:
    """``key`` if it is acceptable, else ImproperlyConfigured naming ``origin`` and the fix."""
    if key in KNOWN_KEYS or key.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            f"{origin} is a published default key: anyone could forge login tokens with it. "
            "Set MOMENTRY_SECRET_KEY to a new random value, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'."
        )
    if len(key.encode("utf-8")) < MIN_KEY_BYTES:
        raise ImproperlyConfigured(
            f"{origin} is {len(key.encode('utf-8'))} bytes; at least {MIN_KEY_BYTES} are needed. "
            "Generate one with python -c 'import secrets; print(secrets.token_urlsafe(48))'."
        )
    return key


def _read_key_file(path: Path) -> str:
    key = path.read_text(encoding="utf-8").strip()
    return check_key(key, f"The key in {path}")


def _generate_key_file(path: Path) -> None:
    """Write a new key atomically: a private temp file linked into place (first writer wins)."""
    temp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(temp, path)  # fails if another process created the key meanwhile: theirs is used
        except FileExistsError:
            pass
    finally:
        temp.unlink(missing_ok=True)


def load_secret_key(data_dir: Path) -> tuple[str, str]:
    """(key, source): source is ``"environment"`` or ``"generated"``."""
    from_env = os.environ.get("MOMENTRY_SECRET_KEY")
    if from_env is not None:
        return check_key(from_env.strip(), "MOMENTRY_SECRET_KEY"), "environment"
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        _generate_key_file(path)
    return _read_key_file(path), "generated"
