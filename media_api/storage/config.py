"""The storage setting: ``MOMENTRY_STORAGE_URL``, and the S3 client it implies.

``MOMENTRY_STORAGE_URL`` unset (or ``file://``) keeps media the service stores itself (uploads)
under ``$MOMENTRY_DATA_DIR/stored``; ``s3://bucket/prefix`` keeps them in that bucket, under that
prefix. Credentials, region and endpoint come from the standard variables boto3 reads itself
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for
MinIO, Ceph RGW, R2, B2 ...), so every AWS tool configured for the same store agrees with us.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class StorageConfig:
    """Where stored media go: ``kind`` "local" (under ``local_root``) or "s3" (``bucket``/``prefix``)."""

    kind: str
    local_root: Path
    bucket: str = ""
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """An object key under the configured prefix (no leading slash)."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))


def parse_storage_url(url: str, data_dir: Path) -> StorageConfig:
    """``""``/``file://`` → local under ``data_dir/stored``; ``s3://bucket[/prefix]`` → that bucket."""
    local_root = Path(data_dir) / "stored"
    if not url or url in ("file://", "local"):
        return StorageConfig("local", local_root)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return StorageConfig("local", Path(parts.path or local_root))
    if parts.scheme == "s3" and parts.netloc:
        return StorageConfig("s3", local_root, bucket=parts.netloc, prefix=parts.path.strip("/"))
    raise ImproperlyConfigured(f"MOMENTRY_STORAGE_URL must be s3://bucket[/prefix] or file:///dir, not {url!r}")


def storage_config() -> StorageConfig:
    """The storage this process uses (settings.MOMENTRY_STORAGE_URL)."""
    return parse_storage_url(getattr(settings, "MOMENTRY_STORAGE_URL", ""), settings.DATA_DIR)


@lru_cache(maxsize=4)
def _client(endpoint_hint: str, pid: int):  # noqa: ANN202 - a botocore client class is generated at run time
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}))


@lru_cache(maxsize=4)
def _quick_client(endpoint_hint: str, pid: int):  # noqa: ANN202
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", config=Config(signature_version="s3v4", connect_timeout=2, read_timeout=5,
                            retries={"total_max_attempts": 1, "mode": "standard"}))


def s3_client(quick: bool = False):  # noqa: ANN201
    """A boto3 S3 client configured from the standard AWS_* environment (cached per endpoint and process).

    ``quick``: one attempt with short timeouts, for a check that must answer a request within seconds
    (why a read failed: :func:`media_api.ffmpeg.source.diagnose`) rather than ride out a store's hiccup.
    """
    import os

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    # One client per process: a forked child (a re-embed's reading process, prewarm's workers) must not share
    # its parent's pooled connections, or two processes' requests and answers mix on one socket.
    return _quick_client(endpoint, os.getpid()) if quick else _client(endpoint, os.getpid())
