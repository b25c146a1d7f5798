"""Shared fixtures: the two real demo clips, registered through the real code path."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MEDIA = REPO / "demo" / "media"
HAMILTON = MEDIA / "face_recognition_short_hamilton_clip.mp4"
FACENET = MEDIA / "facenet_pytorch_video.mp4"
HAMILTON_UUID = "0b5ff4c55a4cd69f79956f312681730881fe1e2a9e6146e75c31636dffcc7e28"[:32]
FACENET_UUID = "d4c0b7a4e385e11ee3cfe7fbdfd0d01d319e16944441bba747a897eed33d115f"[:32]


@pytest.fixture(autouse=True)
def _isolated_data_dir(settings, tmp_path):
    """Every test renders into its own cache directory."""
    settings.CACHE_DIR = tmp_path / "cache"


@pytest.fixture
def hamilton(db):
    from media_api.services.files import register_file

    return register_file(HAMILTON).file


@pytest.fixture
def facenet(db):
    from media_api.services.files import register_file

    return register_file(FACENET).file


@pytest.fixture
def staff_user(db, django_user_model):
    return django_user_model.objects.create_user("staff", "staff@example.com", "staff-pass-123", is_staff=True,
                                                 is_superuser=True)


@pytest.fixture
def plain_user(db, django_user_model):
    return django_user_model.objects.create_user("viewer", "viewer@example.com", "viewer-pass-123")


@pytest.fixture
def api_client(plain_user):
    """A DRF test client logged in with a session as a plain user."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(plain_user)
    return client


@pytest.fixture
def admin_client_api(staff_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(staff_user)
    return client


# --- S3 (issue 21): a real S3 API on loopback (moto's standalone server), never a mock in-process ---

@pytest.fixture(scope="session")
def s3_endpoint():
    """The test S3 server's URL: scripts/test.sh's moto server (TEST_S3_ENDPOINT), else one started here."""
    import os

    from tests.servers import moto_server

    if os.environ.get("TEST_S3_ENDPOINT"):
        yield os.environ["TEST_S3_ENDPOINT"].rstrip("/")
        return
    with moto_server() as url:
        yield url


def s3_environment(endpoint: str, bucket: str, prefix: str = "media") -> dict[str, str]:
    """The environment a process needs to use ``s3://bucket/prefix`` on the test S3 server."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "MOMENTRY_STORAGE_URL": f"s3://{bucket}/{prefix}"}


@pytest.fixture
def s3_storage(s3_endpoint, settings, monkeypatch):
    """A fresh bucket on the test S3 server; AWS_* and MOMENTRY_STORAGE_URL (env and settings) point at it.

    The environment is set too, so live servers and workers (tests/servers.py copies os.environ) use the
    same store. Yields a namespace: endpoint, bucket, url (``s3://bucket/media``), client (boto3).
    """
    import types
    import uuid

    from media_api.storage.config import s3_client

    bucket = f"momentry-test-{uuid.uuid4().hex[:12]}"
    env = s3_environment(s3_endpoint, bucket)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.MOMENTRY_STORAGE_URL = env["MOMENTRY_STORAGE_URL"]
    client = s3_client()
    client.create_bucket(Bucket=bucket)
    yield types.SimpleNamespace(endpoint=s3_endpoint, bucket=bucket, url=env["MOMENTRY_STORAGE_URL"],
                                client=client, env=env)
