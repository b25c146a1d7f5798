"""One JSON envelope for every error under /api/ and /health — 404, 405, 400, 401, 403, 500 — with DEBUG off and on.

Also: the OpenAPI schema (security schemes for the three credentials) and the Swagger UI
served from installed static files (no CDN).
"""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path
from rest_framework.test import APIClient
from rest_framework.views import APIView

import momentry.urls
from tests.helpers_rest import key_client


class BoomView(APIView):
    def get(self, request):
        raise RuntimeError("secret internals /etc/passwd")


def plain_boom(request):
    raise RuntimeError("secret internals /etc/passwd")


def plain_ok(request):
    return HttpResponse("ok")


# A URLconf with the real routes plus views that fail, used through ROOT_URLCONF.
urlpatterns = [
    path("api/v1/test/boom", BoomView.as_view()),
    path("api/v1/test/plain-boom", plain_boom),
    path("health/test/plain-boom", plain_boom),
    path("", include(momentry.urls.urlpatterns)),
]


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    settings.ROOT_URLCONF = "tests.test_errors"
    return request.param


def envelope(response, status: int, code: str, debug: bool = False) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"} and body["error"]["code"] == code
    text = response.content.decode()
    assert "Traceback" not in text and "<html" not in text.lower() and 'File "' not in text
    if not debug:  # with MOMENTRY_DEBUG on, the exception's one-line message may be shown (never a traceback)
        assert "/etc/passwd" not in text
    return body["error"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/nothing-here", "/api/v1/file/abc/unknown/route", "/api/", "/api/v2/files",
                                 "/health/nope"])
def test_unknown_urls_are_json_404(debug, url):
    envelope(Client().get(url), 404, "NOT_FOUND")


@pytest.mark.django_db
def test_method_not_allowed_is_json_405_with_allow(debug, plain_user):
    client, _ = key_client(plain_user)
    response = client.delete("/api/v1/files")
    envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response["Allow"]
    writer, _ = key_client(plain_user, write=True)  # (a read-only key gets 403 first: permission precedes method)
    envelope(writer.put("/api/v1/identities", {}, format="json"), 405, "METHOD_NOT_ALLOWED")
    envelope(Client().get("/api/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.django_db
def test_unhandled_exception_in_api_view_is_json_500(debug, plain_user):
    client, _ = key_client(plain_user)
    error = envelope(client.get("/api/v1/test/boom"), 500, "INTERNAL_ERROR")
    assert error["message"] == "Internal server error."


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/test/plain-boom", "/health/test/plain-boom"])
def test_unhandled_exception_in_plain_view_is_json_500(debug, url):
    client = Client(raise_request_exception=False)
    error = envelope(client.get(url), 500, "INTERNAL_ERROR", debug)
    assert error["message"].startswith("Internal server error")


@pytest.mark.django_db
def test_validation_401_403_are_json(debug, plain_user):
    client, _ = key_client(plain_user)
    error = envelope(client.get("/api/v1/files?page=zero"), 400, "BAD_REQUEST")
    assert error["details"]["parameter"] == "page"
    response = Client().get("/api/v1/files")
    envelope(response, 401, "UNAUTHORIZED")
    assert response["WWW-Authenticate"]
    envelope(client.post("/api/v1/identities", {"name": "x"}, format="json"), 403, "FORBIDDEN")
    envelope(client.post("/api/v1/identities", "not json", content_type="application/json"), 403, "FORBIDDEN")
    writer, _ = key_client(plain_user, write=True)
    envelope(writer.post("/api/v1/identities", "{bad json", content_type="application/json"), 400, "BAD_REQUEST")
    envelope(writer.post("/api/v1/identities", "a=b", content_type="text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.django_db
def test_health_stays_public_and_json(debug):
    response = Client().get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.mark.django_db
def test_non_api_pages_are_left_alone(settings):
    settings.DEBUG = False
    response = Client().get("/not-api/")
    assert response.status_code == 404 and not response["Content-Type"].startswith("application/json")


# --- OpenAPI ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_openapi_schema_has_the_three_security_schemes_and_the_routes():
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyAuth"]["in"] == "header" and schemes["apiKeyAuth"]["name"] == "X-API-Key"
    assert schemes["cookieAuth"]["in"] == "cookie"
    paths = schema["paths"]
    for route in ["/api/v1/auth/login", "/api/v1/files", "/api/v1/file/{file_uuid}/traces",
                  "/api/v1/file/{file_uuid}/trace/{trace_id}/faces", "/api/v1/identities",
                  "/api/v1/identity/{identity_uuid}/merge", "/api/v1/identity/{identity_uuid}/bind/trace"]:
        assert route in paths, route
    assert {"cookieAuth": []} in paths["/api/v1/files"]["get"]["security"]
    assert {"apiKeyAuth": []} in paths["/api/v1/files"]["get"]["security"]
    # The query parameters on the wire: a grouped (exploded form object) parameter sends its properties.
    params = {name for p in paths["/api/v1/file/{file_uuid}/traces"]["get"]["parameters"]
              for name in (p["schema"]["properties"] if p.get("explode") else [p["name"]])}
    assert {"identity", "unbound", "sort", "page", "page_size"} <= params


@pytest.mark.django_db
def test_swagger_ui_is_served_from_local_static_files():
    client = Client()
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn" not in html.lower() and "https://" not in html.split("<body")[0].replace("https://swagger.io", "")
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert b"".join(asset.streaming_content if asset.streaming else [asset.content])[:20]


@pytest.mark.django_db
def test_schema_is_valid_and_our_views_generate_without_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS, reset_generator_stats
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    reset_generator_stats()
    GENERATOR_STATS.silence()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    ours = ("FileListView", "FileDetailView", "TraceListView", "TraceDetailView", "TraceFacesView", "IdentityListView",
            "IdentityDetailView", "IdentityBindView", "IdentityUnbindView", "IdentityMergeView", "IdentityFilesView",
            "LoginView", "LogoutView")
    messages = [m for m in [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
                if any(f"[{view}" in m for view in ours)]
    assert messages == []
    assert schema["components"]["schemas"]["TracePage"]["properties"]["traces"]["items"]["$ref"].endswith("/Trace")
