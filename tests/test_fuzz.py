"""Schema-driven fuzzing of the whole API (schemathesis): every operation, with a key, every check.

For each operation of ``/api/v1/schema/`` schemathesis generates valid and invalid requests
(positive and negative modes) and checks every answer: no 5xx, a status code, content type,
headers and body that the schema documents, valid data accepted and invalid data refused.
The run is bounded (a few examples per operation) so that it belongs in the suite; the real
demo clips, traces and people are loaded and path parameters are often replaced by real ids,
so requests reach the media code and not only the 404 of an unknown file.
"""

from __future__ import annotations

import random

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from identities.models import Identity
from media_api.models import Trace
from momentry.wsgi import application
from tests.helpers_rest import key_client

schema = schemathesis.pytest.from_fixture("api_schema")
REAL: dict[str, list] = {}


@pytest.fixture
def api_schema(db, hamilton, facenet, staff_user, settings_limits):
    from tests.test_suggestions import _bind, _load

    _load(hamilton, "face_recognition_short_hamilton_clip")
    _load(facenet, "facenet_pytorch_video")
    _bind(hamilton, 1, Identity.objects.create(name="Lin-Manuel Miranda"))
    _bind(facenet, 2, Identity.objects.create(name="Boy in grey hoodie"))
    REAL["file_uuid"] = [hamilton.file_uuid, facenet.file_uuid]
    REAL["trace_id"] = sorted(set(Trace.objects.values_list("trace_id", flat=True)))
    REAL["identity_uuid"] = list(Identity.objects.values_list("identity_uuid", flat=True))
    # Like Django's test client: the WSGI handler must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def settings_limits(settings):
    settings.MOMENTRY_MAX_CLIP_SECONDS = 3  # renders stay short
    settings.MOMENTRY_FFMPEG_WAIT_SECONDS = 30


@pytest.fixture
def fuzz_key(staff_user):
    return key_client(staff_user, write=True)[1]


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    """Half of the time, aim at a real file, trace or identity instead of a random one."""
    if not path_parameters or not REAL:
        return path_parameters
    rng = random.Random(repr(sorted(path_parameters.items())))
    for name in path_parameters:
        pool = REAL.get("identity_uuid" if name.startswith("identity_uuid") else name)
        if pool and rng.random() < 0.5:
            path_parameters[name] = rng.choice(pool)
    return path_parameters


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_key):
    case.call_and_validate(headers={"X-API-Key": fuzz_key})
