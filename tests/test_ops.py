"""What operators and newcomers meet first: gunicorn's control socket per instance, /favicon.ico, one
version everywhere, 304s without a Content-Type, and API docs that load nothing from other hosts."""

from __future__ import annotations

import io
import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from media_api.services.detections_import import import_detections
from momentry import __version__
from tests import browser
from tests.servers import gunicorn, wait_for
from tests.test_ffmpeg_process import close_response

browser_page = browser.browser_page  # the shared fixture (tests/browser.py)


# --- gunicorn's control socket ----------------------------------------------------------------------------

def _control_socket(url: str):
    return settings.DATA_DIR / "gunicorn" / f"127.0.0.1_{url.rsplit(':', 1)[1]}.ctl"


def _listeners(socket_path) -> list[str]:
    from gunicorn.ctl.client import ControlClient

    with ControlClient(str(socket_path), timeout=10) as client:
        return [listener["address"] for listener in client.send_command("show listeners")["listeners"]]


@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_instances_on_one_host_have_their_own_control_socket(tmp_path):
    """gunicorn's default ``~/.gunicorn/gunicorn.ctl`` is one path for every instance: the last started took it
    over and the first stopped deleted it. The deploy config puts one per listening address in the data dir."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}  # where gunicorn's default would put it
    with gunicorn(workers=1, log_path=tmp_path / "first.log", **env) as first:
        first_socket = _control_socket(first)
        with gunicorn(workers=1, log_path=tmp_path / "second.log", **env) as second:
            second_socket = _control_socket(second)
            wait_for(lambda: first_socket.exists() and second_socket.exists(), timeout=30)
            assert _listeners(first_socket) == [first]
            assert _listeners(second_socket) == [second]
        assert not second_socket.exists()  # removed by its own instance only
        assert _listeners(first_socket) == [first]
    assert not first_socket.exists()
    assert not (home / ".gunicorn").exists()


# --- /favicon.ico and the version -------------------------------------------------------------------------

def test_favicon_is_an_icon():
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    icon = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert icon.format == "ICO" and {(16, 16), (32, 32)} <= set(icon.info["sizes"])


@pytest.mark.django_db
def test_one_version_in_the_schema_and_health():
    client = Client()
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["info"]["version"] == __version__
    assert client.get("/health").json()["version"] == __version__
    assert client.get("/health/detailed").json()["version"] == __version__


# --- 304 Not Modified ----------------------------------------------------------------------------------------

#: Every route answering 304 to a matching If-None-Match (renders, the original video, static files).
CONDITIONAL_ROUTES = [
    "/api/v1/file/{uuid}/thumbnail?frame=100",
    "/api/v1/file/{uuid}/thumbnail?frame=100&x=10&y=10&w=100&h=80",
    "/api/v1/file/{uuid}/trace/1/thumbnail",
    "/api/v1/file/{uuid}/video",
    "/api/v1/file/{uuid}/clip?start_frame=10&end_frame=14",
    "/api/v1/file/{uuid}/trace/1/video?padding=0.3&audio=off",
    "/static/admin/css/base.css",
    "/favicon.ico",
]


@pytest.mark.parametrize("route", CONDITIONAL_ROUTES)
def test_304_carries_no_content_type(route, api_client, hamilton):
    rows = [{"trace_id": 1, "frame_number": f, "x": 100 + f, "y": 120, "width": 80, "height": 80, "confidence": 0.9}
            for f in (60, 70, 80)]
    import_detections(hamilton, rows)
    url = route.format(uuid=hamilton.file_uuid)
    first = api_client.get(url)
    assert first.status_code == 200, (url, first.status_code)
    close_response(first)
    again = api_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert "Content-Type" not in again, again["Content-Type"]
    assert again["ETag"] == first["ETag"]
    assert b"".join(again.streaming_content if again.streaming else [again.content]) == b""


# --- the API docs work offline ---------------------------------------------------------------------------

DOCS = ["/api/v1/docs/", "/api/v1/redoc/"]


def _referenced_urls(html: str) -> list[str]:
    return (re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
            + re.findall(r"""url\(\s*["']?([^"')]+)""", html) + re.findall(r"""@import\s+["']([^"']+)""", html))


@pytest.mark.parametrize("path", DOCS)
def test_docs_pages_reference_no_other_host(path):
    client = Client()
    html = client.get(path).content.decode()
    urls = _referenced_urls(html)
    assert urls, html[:500]
    assert [u for u in urls if urlsplit(u).netloc or urlsplit(u).scheme in ("http", "https")] == []
    assert "googleapis" not in html and "gstatic" not in html
    for url in urls:  # and what they reference is here
        response = client.get(url)
        assert response.status_code == 200, url
        close_response(response)


def test_swagger_ui_validator_badge_is_off():
    """Swagger UI would show a badge image from validator.swagger.io for a non-local schema URL."""
    assert '"validatorUrl": null' in Client().get("/api/v1/docs/").content.decode()


@pytest.mark.browser
@browser.needs_chromium
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path, rendered", [("/api/v1/docs/", ".swagger-ui .info .title"),
                                            ("/api/v1/redoc/", ".api-content h1")])
def test_docs_render_in_a_browser_without_other_hosts(live_server, browser_page, path, rendered):
    """Headless Chromium renders each docs page; every request it makes goes to our own server."""
    own = urlsplit(live_server.url).netloc
    elsewhere: list[str] = []

    def refuse_other_hosts(route):
        if urlsplit(route.request.url).netloc in (own, ""):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    problems: list[str] = []
    browser_page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    browser_page.on("pageerror", lambda error: problems.append(str(error)))
    browser_page.route("**/*", refuse_other_hosts)
    browser_page.goto(live_server.url + path)
    browser_page.wait_for_selector(rendered)
    browser_page.wait_for_load_state("networkidle")
    assert "Momentry media API" in browser_page.inner_text(rendered)
    assert elsewhere == []
    # Redoc's page refuses (Content-Security-Policy) only the Redocly logo of its sidebar footer.
    assert [p for p in problems if "cdn.redoc.ly/redoc/logo-mini.svg" not in p] == [], problems
