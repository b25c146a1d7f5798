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
