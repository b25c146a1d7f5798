"""Schema-driven fuzzing of the whole API (schemathesis): every operation, with a key, every check.

For each operation of ``/api/v1/schema/`` schemathesis generates valid and invalid requests
(positive and negative modes) and checks every answer: no 5xx, a status code, content type,
headers and body that the schema documents, valid data accepted and invalid data refused.
The run is bounded (a few examples per operation) so that it belongs in the suite; the real
demo clips, traces and people are loaded and path parameters are often replaced by real ids,
so requests reach the media code and not only the 404 of an unknown file.

Two checks are configured, narrowly and for documented reasons (see the comments below):
negative_data_rejection also counts 413/414 (the request limits) as refusals, and
positive_data_acceptance ("schema-valid request rejected") is skipped only where the request itself
breaks a rule no OpenAPI schema can state (an order between values, two values that must differ,
the stored data); the test checks that from the request and the database, route by route. Rules a
schema can state are in the schema (grouped query parameters, patterns), so their refusals are
checked like any other.
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
# A tus chunk (PATCH /api/v1/uploads/{id}) is raw bytes under the protocol's own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
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


# Refusals of schema-valid requests. Where OpenAPI can state a rule, the schema states it: span
# pairs, the /clip span, the thumbnail crop and the traces' identity/unbound filter are grouped
# parameters (momentry.schema.grouped_parameter), a registered path is absolute. What no OpenAPI
# schema can state is left: an order between two values (an end before its start), two values that
# must differ (an identity with itself, merging into itself, a URL naming another file) and the data
# (a span past the end of this file or longer than MOMENTRY_MAX_CLIP_SECONDS, a crop outside this
# file's frame, a frame past its end, a path that is no video under MOMENTRY_MEDIA_ROOTS). For those,
# and only when the request itself shows that it breaks such a rule (checked here from the request
# and the stored data, not from the answer's wording), positive_data_acceptance is skipped; every
# other check still runs.


def _error_details(response) -> dict:
    try:
        return response.json()["error"].get("details") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def _given(values: dict | None, name: str):
    value = (values or {}).get(name)
    return None if value in (None, "") else value


def _media_file(case):
    from media_api.models import MediaFile

    return MediaFile.objects.filter(file_uuid=str(case.path_parameters.get("file_uuid", "")).lower()).first()


def _asked_frames(case, media_file) -> tuple[int, int] | None:
    """The span asked for, as frames (frames win over times, as in media_api.services.streaming)."""
    from media_api.services.files import frame_index_for

    query = case.query or {}
    if _given(query, "start_frame") is not None and _given(query, "end_frame") is not None:
        return int(query["start_frame"]), int(query["end_frame"])
    if _given(query, "start_time") is not None and _given(query, "end_time") is not None:
        index = frame_index_for(media_file)
        return index.frame_at_seconds(float(query["start_time"])), index.frame_at_seconds(float(query["end_time"]))
    return None


def span_breaks_a_data_rule(case, response) -> bool:
    """Out of order, past the end of this file, outside the trace, or longer than the render limit."""
    details = _error_details(response)
    media_file = _media_file(case)
    if response.status_code != 400 or details.get("parameter") not in SPAN or media_file is None:
        return False
    if "max_seconds" in details:  # the render limit: the span (asked, or the default one) is too long
        return details["span_seconds"] > details["max_seconds"]
    query = case.query or {}
    if _given(query, "start_frame") is not None and _given(query, "end_frame") is not None:
        start, end = int(query["start_frame"]), int(query["end_frame"])
        fps = _given(query, "fps")
        beyond = end / float(fps) >= media_file.duration if fps is not None else end >= media_file.total_frames
        if end < start or beyond:
            return True
    elif _given(query, "start_time") is not None and _given(query, "end_time") is not None:
        start_time, end_time = float(query["start_time"]), float(query["end_time"])
        if end_time <= start_time or start_time >= media_file.duration or end_time > media_file.duration + 1e-6:
            return True
    trace_span, asked = details.get("trace_span"), _asked_frames(case, media_file)
    return bool(trace_span and asked) and (asked[1] < trace_span["start_frame"] or asked[0] > trace_span["end_frame"])


def frame_or_crop_outside_the_file(case, response) -> bool:
    media_file, query = _media_file(case), case.query or {}
    if media_file is None:
        return False
    if response.status_code == 416:
        return int(query["frame"]) >= media_file.total_frames
    if response.status_code != 400 or any(_given(query, name) is None for name in "xywh"):
        return False
    x, y, w, h = (int(query[name]) for name in "xywh")
    return x + w > media_file.width or y + h > media_file.height


def same_identity_twice(case, response) -> bool:
    ids = case.path_parameters
    return response.status_code == 400 and str(ids["identity_uuid_a"]).lower() == str(ids["identity_uuid_b"]).lower()


def merged_into_itself_or_a_merged_one(case, response) -> bool:
    from identities.models import Identity

    if response.status_code != 400 or not isinstance(case.body, dict):
        return False
    target = str(case.path_parameters["identity_uuid"]).lower()
    sources = [str(u).lower() for u in case.body.get("from") or []]
    return target in sources or Identity.objects.filter(identity_uuid=target, merged_into__isnull=False).exists()


def url_of_another_file(case, response) -> bool:
    """The URL to sign names another file, a trace id no trace can have, or carries a signature's parameters."""
    from urllib.parse import parse_qsl, urlsplit

    from momentry.converters import MAX_TRACE_ID

    if response.status_code != 400 or not isinstance(case.body, dict):
        return False
    parts = urlsplit(case.body["url"])
    segments = parts.path.split("/")  # /api/v1/file/<uuid>/...
    named_file = segments[4] if len(segments) > 4 else ""
    trace_ids = [int(segment) for segment in segments[5:] if segment.isdigit()]
    reserved = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)} & {"exp", "sub", "sig"}
    return (named_file != str(case.path_parameters["file_uuid"]).lower()
            or any(trace_id > MAX_TRACE_ID for trace_id in trace_ids) or bool(reserved))


def not_a_video_under_the_media_roots(case, response) -> bool:
    from pathlib import Path

    from django.conf import settings as django_settings

    if response.status_code != 400 or not isinstance(case.body, dict):
        return False
    if "url" in case.body:
        return not_an_object_of_a_configured_bucket(case.body["url"])
    if not Path(case.body["path"]).is_absolute():
        return False  # the schema says absolute (pattern ^/): a relative path is no valid data
    try:
        path = Path(case.body["path"]).resolve()
        roots = [Path(root).resolve() for root in django_settings.MOMENTRY_MEDIA_ROOTS]
        return not (path.is_file() and any(path.is_relative_to(root) for root in roots)) or path.suffix != ".mp4"
    except (OSError, ValueError):
        return True  # no path this machine can have (too long, NUL...)


def not_an_object_of_a_configured_bucket(url: str) -> bool:
    """POST /files {"url"}: a bucket outside MOMENTRY_STORAGE_URL's and MOMENTRY_S3_REGISTER_BUCKETS, or no such
    object there (the stored data; OpenAPI can only say s3://bucket/key)."""
    from media_api.storage import objects

    try:
        ref = objects.parse_object_url(url)
        objects.check_registrable(ref)
        objects.head(ref)
    except objects.ObjectError:
        return True
    return False


def cursor_not_given_or_frames_reversed(case, response) -> bool:
    """A cursor this server did not give for this query (signed: any other is a 400), or end_frame < start_frame."""
    from media_api.services.bulk_detections import DetectionFilter, decode_cursor
    from momentry.errors import BadRequest

    details, query = _error_details(response), case.query or {}
    if response.status_code != 400:
        return False
    start, end = _given(query, "start_frame"), _given(query, "end_frame")
    if details.get("parameter") == "end_frame":
        return start is not None and end is not None and int(end) < int(start)
    if details.get("parameter") != "cursor" or _given(query, "cursor") is None:
        return False
    trace_id = _given(query, "trace_id")
    where = DetectionFilter(str(case.path_parameters["file_uuid"]).lower(), None if start is None else int(start),
                            None if end is None else int(end), None if trace_id is None else int(trace_id))
    try:
        decode_cursor(where, str(query["cursor"]))
    except BadRequest:
        return True
    return False


def image_is_no_picture(case, response) -> bool:
    """Search by photo: the image part is no JPEG, PNG or WebP picture Pillow can decode (what schemathesis
    sends for a binary part: text, random bytes). OpenAPI cannot say "a decodable picture"."""
    import io

    from PIL import Image

    if response.status_code != 400 or _error_details(response).get("parameter") != "image" \
            or not isinstance(case.body, dict):
        return False
    data = case.body.get("image")
    data = data.encode() if isinstance(data, str) else data
    try:
        with Image.open(io.BytesIO(data if isinstance(data, bytes) else b""), formats=("JPEG", "PNG", "WEBP")) as im:
            im.load()
    except Exception:  # noqa: BLE001 - anything Pillow refuses is no picture
        return True
    return False


def webhook_url_not_public(case, response) -> bool:
    """A webhook URL whose host does not resolve, or not only to public addresses (webhooks.addresses)."""
    from webhooks import addresses

    if response.status_code != 400 or not isinstance(case.body, dict) or not isinstance(case.body.get("url"), str):
        return False
    try:
        addresses.check(case.body["url"])
    except addresses.Refused:
        return True
    return False


def nul_in_free_json(case, response) -> bool:
    """A NUL character somewhere inside the free-form ``metadata`` object (PostgreSQL cannot store it in
    jsonb, so both databases refuse it: momentry.nul). The schema of a free JSON object cannot forbid a
    character at every depth without a recursive schema, which the generator cannot draw from."""
    from momentry.nul import nul_path

    if response.status_code != 400 or not isinstance(case.body, dict) or "metadata" not in case.body:
        return False
    where = nul_path(case.body["metadata"], "metadata")
    return where is not None and _error_details(response).get("parameter") == where


SPAN = {"start_frame", "end_frame", "start_time", "end_time"}
DATA_RULES = {
    "GET /api/v1/file/{file_uuid}/detections": cursor_not_given_or_frames_reversed,
    "GET /api/v1/file/{file_uuid}/clip": span_breaks_a_data_rule,
    "GET /api/v1/file/{file_uuid}/video": span_breaks_a_data_rule,
    "GET /api/v1/file/{file_uuid}/video/bbox": span_breaks_a_data_rule,
    "GET /api/v1/file/{file_uuid}/trace/{trace_id}/video": span_breaks_a_data_rule,
    "GET /api/v1/file/{file_uuid}/thumbnail": frame_or_crop_outside_the_file,
    "POST /api/v1/file/{file_uuid}/sign": url_of_another_file,
    "GET /api/v1/file/{file_uuid}/identities/{identity_uuid_a}/co-occur-with/{identity_uuid_b}": same_identity_twice,
    "GET /api/v1/identity/{identity_uuid_a}/co-occur-with/{identity_uuid_b}": same_identity_twice,
    "POST /api/v1/identity/{identity_uuid}/merge": merged_into_itself_or_a_merged_one,
    "POST /api/v1/files": not_a_video_under_the_media_roots,
    "POST /api/v1/webhooks": webhook_url_not_public,
    "PATCH /api/v1/webhooks/{webhook_id}": webhook_url_not_public,
    "POST /api/v1/faces/search": image_is_no_picture,
    "POST /api/v1/identities": nul_in_free_json,
    "PATCH /api/v1/identity/{identity_uuid}": nul_in_free_json,
}


def tus_header_rule(case, response) -> bool:
    """tus (uploads/) is driven by request headers: a header it does not know is ignored (as on every HTTP
    route; proxies and clients add their own), and a Tus-Resumable other than 1.0.0 is answered 412, the
    status the protocol prescribes, rather than a 400. Only negative cases whose header is the broken part."""
    if "/uploads" not in case.operation.path or case.meta is None or case.meta.generation.mode.is_positive:
        return False
    if not case.meta.is_negative_at(ParameterLocation.HEADER):
        return False
    return response.status_code == 412 or response.status_code < 300


def tus_header_breaks_its_pattern(case, response) -> bool:
    """A 400 naming a tus header whose value the request shows does not match the schema's pattern (the
    generator sometimes sends such values for optional headers as valid ones)."""
    import re

    name = _error_details(response).get("parameter")
    if response.status_code != 400 or "/uploads" not in case.operation.path or not name:
        return False
    value = (case.headers or {}).get(name)
    for parameter in case.operation.definition.raw.get("parameters", []):
        if parameter.get("in") == "header" and parameter["name"] == name and value is not None:
            pattern = parameter.get("schema", {}).get("pattern")
            return bool(pattern) and re.search(pattern, str(value)) is None
    return False


def refused_for_the_data(case, response) -> bool:
    """A schema-valid request refused for a rule no OpenAPI schema can state, shown by the request itself."""
    rule = DATA_RULES.get(case.operation.label)
    if rule is None or case.meta is None or not case.meta.generation.mode.is_positive:
        return False
    return rule(case, response)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_key):
    response = case.call()
    excluded = [schemathesis.checks.positive_data_acceptance] if refused_for_the_data(case, response) else []
    if tus_header_rule(case, response):
        excluded.append(schemathesis.checks.negative_data_rejection)
    if tus_header_breaks_its_pattern(case, response):
        excluded.append(schemathesis.checks.positive_data_acceptance)
    case.validate_response(response, excluded_checks=excluded)
