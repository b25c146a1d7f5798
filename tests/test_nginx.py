"""deploy/nginx.conf in front of gunicorn, as documented: a real nginx (Debian's nginx-light).

What a proxy changes: every client arrives from the proxy's address (lockout must still be per
client, from X-Forwarded-For, and not forgeable), nginx answers some refusals itself (they must
still be the JSON envelope), and the original bytes are handed to nginx (X-Accel-Redirect).
Clients connect from 127.0.0.2/127.0.0.3 so that they differ from the proxy (127.0.0.1).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from django.core.cache import cache

from momentry.views_auth import MAX_LOGIN_FAILURES
from tests.conftest import HAMILTON, MEDIA
from tests.servers import REPO, free_port, gunicorn, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [pytest.mark.skipif(not Path(NGINX).exists(),
                                 reason="nginx is not installed (scripts/test.sh installs nginx-light as root)"),
              pytest.mark.django_db(transaction=True)]


@contextlib.contextmanager
def nginx_in_front(app_url: str, tmp_path) -> str:
    port = free_port()
    site = (REPO / "deploy" / "nginx.conf").read_text()
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("server 127.0.0.1:8000;", f"server {app_url.removeprefix('http://')};")
    site = site.replace("alias /srv/momentry/media/;", f"alias {MEDIA}/;")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log {tmp_path}/access.log;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n include {tmp_path}/site.conf;\n}}\n")
    proc = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: proc.poll() is not None or _connects(port), timeout=20)
        assert proc.poll() is None, (tmp_path / "error.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def send(port: int, raw: bytes, source: str = "127.0.0.2") -> tuple[int, dict[str, str], bytes]:
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        decoded, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            decoded, rest = decoded + rest[:n], rest[n + 2:]
        body = decoded
    return int(lines[0].split()[1]), headers, body


def request(method: str, path: str, body: bytes = b"", length: int | None = None, **headers: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close",
            *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def test_behind_nginx(plain_user, hamilton, tmp_path):
    from momentry.services import create_api_key

    cache.clear()
    key = create_api_key(plain_user).key
    app_env = {"MOMENTRY_TRUSTED_PROXIES": "127.0.0.1", "MOMENTRY_SENDFILE": "x-accel-redirect",
               "MOMENTRY_SENDFILE_ROOT": str(MEDIA), "MOMENTRY_SENDFILE_PREFIX": "/protected-media"}
    with gunicorn(workers=2, log_path=tmp_path / "gunicorn.log", **app_env) as app_url, \
            nginx_in_front(app_url, tmp_path) as port:
        # What nginx refuses itself is still the JSON envelope.
        for raw, status in [
            (request("GET", "/api/v1/files?q=" + "a" * 10_000), 414),
            (request("POST", "/api/v1/auth/login", b"x" * 100, length=4_000_000), 413),
            (b"BROKEN\r\n\r\n", 400),
            (request("GET", "/health", X_Big="b" * 9000), 400),
        ]:
            got, headers, body = send(port, raw)
            assert got == status and headers["content-type"] == "application/json", (got, body[:200])
            assert json.loads(body)["success"] is False
        # ... and what passes nginx meets the app's own limits, in JSON.
        got, _, body = send(port, request("GET", "/api/v1/files?q=" + "a" * 5000))
        assert got == 414 and json.loads(body)["error"]["code"] == "URI_TOO_LONG"

        # Lockout per client behind the proxy; a forged X-Forwarded-For does not help.
        login = json.dumps({"username": "viewer", "password": "wrong"}).encode()
        statuses = [send(port, request("POST", "/api/v1/auth/login", login, Content_Type="application/json",
                                       X_Forwarded_For=f"198.51.100.{n}"))[0]
                    for n in range(MAX_LOGIN_FAILURES + 2)]
        assert statuses == [401] * MAX_LOGIN_FAILURES + [429, 429]
        right = json.dumps({"username": "viewer", "password": "viewer-pass-123"}).encode()
        assert send(port, request("POST", "/api/v1/auth/login", right, Content_Type="application/json"))[0] == 429
        assert send(port, request("POST", "/api/v1/auth/login", right, Content_Type="application/json"),
                    source="127.0.0.3")[0] == 200  # the user, from elsewhere, is not locked out

        # The original bytes: authorised by the app, served by nginx (ranges included).
        got, headers, body = send(port, request("GET", f"/api/v1/file/{hamilton.file_uuid}/video",
                                                X_API_Key=key, Range="bytes=100-199"))
        assert got == 206 and headers["content-range"] == f"bytes 100-199/{hamilton.size}"
        assert body == HAMILTON.read_bytes()[100:200]
        got, _, _ = send(port, request("GET", f"/api/v1/file/{hamilton.file_uuid}/video"))
        assert got == 401
        # The internal location is not reachable from outside.
        assert send(port, request("GET", f"/protected-media/{HAMILTON.name}"))[0] == 404
    cache.clear()
