"""Schema-driven fuzzing of the whole API (schemathesis): every operation, with a key, every check.

For each operation of ``/api/v1/schema/`` schemathesis generates valid and invalid requests
(positive and negative modes) and checks every answer: no 5xx, a status code, content type,
headers and body that the schema documents, valid data accepted and invalid data refused.
The run is bounded (a few examples per operation) so that it belongs in the suite; the real
demo clips, traces and people are loaded and path parameters are often replaced by real ids,
so requests reach the media code and not only the 404 of an unknown file.

Two checks are configured, narrowly and for documented reasons (see the comments below):
negative_data_rejection also counts 413/414 (the request limits) as refusals, and
positive_data_acceptance lets through the 400/416 of cross-parameter and data-dependent rules
that OpenAPI cannot express, when the error names one of the parameters listed for that route.
"""

from __future__ import annotations

import random

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation

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
    loaded = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    # A URL longer than MOMENTRY_MAX_URL_LENGTH (414) or a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE
    # (413) is refused by momentry.limits before any parameter is read: for schema-violating data
    # (say, thousands of repeated query parameters) those are refusals as good as a 400.
    rejection = loaded.config.checks.negative_data_rejection
    rejection.expected_statuses = list(dict.fromkeys([*rejection.expected_statuses, "413", "414"]))
    yield loaded
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def settings_limits(settings):
    settings.MOMENTRY_MAX_CLIP_SECONDS = 3  # renders stay short
    settings.MOMENTRY_FFMPEG_WAIT_SECONDS = 30


@pytest.fixture
def fuzz_key(staff_user):
    REAL["api_key"] = key_client(staff_user, write=True)[1]
    yield REAL["api_key"]
    del REAL["api_key"]


@schema.auth(refresh_interval=None, retry_on=[])
class StaffWriteKey:
    """The staff write key, given as the schema's apiKeyAuth credential.

    Declared as the operation's auth (not as a plain header), schemathesis knows that the
    request is authenticated by it: it then sends no random credential for the other schemes
    (a random session cookie next to a valid key proves nothing), and its ``ignored_auth``
    check replays requests without the key and with a wrong one to see them refused.
    """

    def get(self, case, context):
        return REAL["api_key"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "X-API-Key": data}


@schemathesis.hook
def map_case(ctx, case):
    """Half of the time, aim at a real file, trace or identity instead of a random one.

    Only in cases whose path parameters are meant to be valid: a path parameter that
    schemathesis made invalid on purpose stays invalid (replaced by a real id, the case would
    still be counted as negative, and the check would expect a refusal for valid data).
    """
    if not case.path_parameters or not REAL or (case.meta and case.meta.is_negative_at(ParameterLocation.PATH)):
        return case
    rng = random.Random(repr(sorted(case.path_parameters.items())))
    for name in case.path_parameters:
        pool = REAL.get("identity_uuid" if name.startswith("identity_uuid") else name)
        if pool and rng.random() < 0.5:
            case.path_parameters[name] = rng.choice(pool)
    return case


# Statuses the schema cannot rule out for schema-valid data, and the only parameters they may name.
# OpenAPI describes each parameter on its own; these routes also refuse combinations (a start
# without its end, an end before its start, a span without either pair on /clip, identity with
# unbound=true, a crop given in part, merging an identity into itself) and values that depend on
# the data (a frame or span past the end of this file, a render longer than
# MOMENTRY_MAX_CLIP_SECONDS, a URL to sign that names another file, a target already merged, a
# path to register that is no video file under the media roots).
# Such a refusal is documented and deliberate: only positive_data_acceptance is skipped for it,
# and only when the error names one of these parameters; every other check still runs.
SPAN = {"start_frame", "end_frame", "start_time", "end_time"}
DATA_DEPENDENT: dict[str, dict[int, set[str]]] = {
    "GET /api/v1/file/{file_uuid}/clip": {400: SPAN},
    "GET /api/v1/file/{file_uuid}/video": {400: SPAN},
    "GET /api/v1/file/{file_uuid}/video/bbox": {400: SPAN},
    "GET /api/v1/file/{file_uuid}/trace/{trace_id}/video": {400: SPAN},
    "GET /api/v1/file/{file_uuid}/thumbnail": {400: {"x", "y", "w", "h"}, 416: {"frame"}},
    "GET /api/v1/file/{file_uuid}/traces": {400: {"unbound"}},
    "POST /api/v1/file/{file_uuid}/sign": {400: {"url"}},
    "GET /api/v1/file/{file_uuid}/identities/{identity_uuid_a}/co-occur-with/{identity_uuid_b}": {
        400: {"identity_uuid_b"}},
    "POST /api/v1/identity/{identity_uuid}/merge": {400: {"from", "identity_uuid"}},
    "GET /api/v1/identity/{identity_uuid_a}/co-occur-with/{identity_uuid_b}": {400: {"identity_uuid_b"}},
    "POST /api/v1/files": {400: {"path"}},  # the file must exist under MOMENTRY_MEDIA_ROOTS
}


def refused_for_the_data(case, response) -> bool:
    """A schema-valid request refused for a documented cross-parameter or data-dependent reason."""
    allowed = DATA_DEPENDENT.get(case.operation.label, {}).get(response.status_code)
    if not allowed or case.meta is None or not case.meta.generation.mode.is_positive:
        return False
    try:
        parameter = response.json()["error"]["details"].get("parameter")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return parameter in allowed


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_key):
    response = case.call()
    excluded = [schemathesis.checks.positive_data_acceptance] if refused_for_the_data(case, response) else []
    case.validate_response(response, excluded_checks=excluded)
