"""Cross-cutting corrections of the OpenAPI document (a drf-spectacular ``POSTPROCESSING_HOOKS`` entry).

What is true of every route is written once here rather than in every ``extend_schema``:

* **Path parameters.** ``file_uuid`` and ``identity_uuid*`` are 32 lowercase hex characters
  (the app also accepts a dashed or upper-case UUID; the schema documents the canonical form),
  ``trace_id`` is a 32-bit id (``momentry.converters``: anything else is a 404).
* **Error responses.** Every error is the JSON envelope (component ``Error``), also on routes
  whose success is a video or a JPEG. Each operation lists the statuses it can answer, from
  what it is: any route can meet 400 (a bad parameter, too many parameters), 414 (URL too
  long) and 503 (media workers or the database busy, ``Retry-After``); credentials give 401
  (``WWW-Authenticate``); unsafe methods (CSRF, write permission) and signed media URLs give
  403; a path parameter gives 404; JSON routes give 406 for an Accept without JSON; a request
  body gives 413 and 415; media routes give 500 MEDIA_ERROR. Statuses a view documents itself
  (304, 416, 429...) are kept, and any error response without content gets the envelope. Not
  listed: 405 (a method the path does not have is no operation of it) and 499 (the client that
  would read it has gone).
* **Empty query values.** ``page=`` means "not given" (the default applies) for the optional
  parameters in :data:`EMPTY_MEANS_ABSENT`, which the schema says with ``allowEmptyValue``;
  ``mode=``, ``audio=`` and ``frame=`` are refused.
* **Request bodies** are closed objects (``additionalProperties: false``): the views refuse
  unknown fields with a 400 (``identities.views.validated``). A body whose every form has
  required fields is itself required (drf-spectacular leaves a ``oneOf`` body optional).
"""

from __future__ import annotations

from typing import Any

from momentry.converters import MAX_TRACE_ID
from momentry.schema import UUID_PATTERN

ERROR_REF = {"$ref": "#/components/schemas/Error"}
UNSAFE_METHODS = {"post", "put", "patch", "delete"}

UUID_PARAMETER = {"type": "string", "pattern": UUID_PATTERN}
PATH_PARAMETERS = {
    "file_uuid": (UUID_PARAMETER, "The file: 32 lowercase hex characters (a dashed UUID is accepted too)."),
    "identity_uuid": (UUID_PARAMETER, "The identity: 32 lowercase hex characters (a dashed UUID is accepted too)."),
    "job_id": (UUID_PARAMETER, "The job: 32 lowercase hex characters (a dashed UUID is accepted too)."),
    "trace_id": ({"type": "integer", "minimum": 0, "maximum": MAX_TRACE_ID},
                 "The trace's id within the file (a larger number is a 404)."),
}

#: Optional query parameters whose parsers read an empty value as absent (momentry.pagination,
#: media_api.services.streaming and .thumbnails, the traces' identity filter).
EMPTY_MEANS_ABSENT = frozenset({
    "page", "page_size", "sort", "status", "unbound", "identity", "search", "state", "kind", "file",
    "start_frame", "end_frame", "start_time", "end_time", "fps", "padding", "x", "y", "w", "h",
})

DESCRIPTIONS = {
    400: "BAD_REQUEST: a parameter or the body is invalid (named in details.parameter), or TOO_MANY_PARAMETERS",
    401: "UNAUTHORIZED: no credential, or a bad, expired or revoked one",
    403: "FORBIDDEN: not allowed (write permission, CSRF token of a session, or a changed or expired signed URL)",
    404: "NOT_FOUND: unknown or out of the caller's scope",
    406: "NOT_ACCEPTABLE: the Accept header excludes JSON",
    413: "PAYLOAD_TOO_LARGE: the body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE",
    414: "URI_TOO_LONG: the URL is longer than MOMENTRY_MAX_URL_LENGTH",
    415: "UNSUPPORTED_MEDIA_TYPE: the body is not of a content type listed for this operation",
    429: "THROTTLED: too many attempts; retry after Retry-After seconds",
    500: "MEDIA_ERROR: decoding or encoding failed (FFmpeg; logged)",
    503: "BUSY: media workers or the database are busy; retry after Retry-After seconds",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True,
                               "description": "the credentials accepted (Bearer, X-API-Key)"}},
    429: {"Retry-After": {"schema": {"type": "integer", "minimum": 0}, "required": True,
                          "description": "seconds"}},
    503: {"Retry-After": {"schema": {"type": "integer", "minimum": 0}, "required": True,
                          "description": "seconds"}},
}


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.get("components", {}).get("schemas", {})
    assert "Error" in schemas, "the Error component must be referenced by a view (e.g. login's 400)"
    for path, methods in result.get("paths", {}).items():
        for method, operation in methods.items():
            _parameters(operation)
            _error_responses(path, method, operation)
            for name in _request_components(operation):
                _close(schemas, name, set())
            _body_required(operation, schemas)
    return result


def _parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "query" and parameter["name"] in EMPTY_MEANS_ABSENT \
                and not parameter.get("required"):
            parameter["allowEmptyValue"] = True
        if parameter.get("in") != "path":
            continue
        key = "identity_uuid" if parameter["name"].startswith("identity_uuid") else parameter["name"]
        if key in PATH_PARAMETERS:
            schema, description = PATH_PARAMETERS[key]
            parameter["schema"] = dict(schema)
            parameter.setdefault("description", description)


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {400, 414, 503}
    security = operation.get("security") or []
    secured = any(requirement for requirement in security)  # [] or [{}]: no credential needed
    media = any("signedUrl" in requirement for requirement in security)
    if secured:
        statuses.add(401)
        if method in UNSAFE_METHODS or media:
            statuses.add(403)
    if "{" in path:
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {413, 415}
    if media:
        statuses.add(500)
    else:
        statuses.add(406)  # JSON routes negotiate Accept (media routes answer bytes whatever it says)
    return statuses


def _error_responses(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in _statuses(path, method, operation):
        responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
    for code, response in responses.items():
        status = int(code) if code.isdigit() else 0
        if status < 400:
            continue
        if not response.get("description"):
            response["description"] = DESCRIPTIONS.get(status, "")
        response.setdefault("content", {"application/json": {"schema": dict(ERROR_REF)}})
        if status in HEADERS:
            response.setdefault("headers", {}).update(HEADERS[status])
    operation["responses"] = dict(sorted(responses.items()))


def _request_components(operation: dict[str, Any]) -> set[str]:
    names = set()
    for media in operation.get("requestBody", {}).get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            names.add(ref.rsplit("/", 1)[1])
    return names


def _close(schemas: dict[str, Any], name: str, seen: set[str]) -> None:
    """``additionalProperties: false`` on a request object, each variant of a ``oneOf`` and each list's items."""
    if name in seen or name not in schemas:
        return
    seen.add(name)
    schema = schemas[name]
    items = [prop.get("items", {}) for prop in schema.get("properties", {}).values()]  # lists of objects
    for variant in [*schema.get("oneOf", []), *items]:
        ref = variant.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            _close(schemas, ref.rsplit("/", 1)[1], seen)
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)


def _body_required(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A body whose every form has required fields is itself required (no body is a 400)."""
    body = operation.get("requestBody")
    if not body or body.get("required"):
        return
    names = _request_components(operation)
    if names and all(_needs_fields(schemas.get(name, {}), schemas) for name in names):
        body["required"] = True


def _needs_fields(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    variants = [schemas.get(v.get("$ref", "").rsplit("/", 1)[-1], v) for v in schema.get("oneOf", [])]
    if variants:
        return all(_needs_fields(variant, schemas) for variant in variants)
    return bool(schema.get("required"))
