"""``/`` (where the admin's "View site" goes) and the demo script as a new user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest
from django.test import Client

from tests.servers import REPO, free_port


@pytest.mark.django_db
def test_landing_page_links_the_api_docs_and_the_admin():
    response = Client().get("/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for link in ('href="/api/v1/docs/"', 'href="/admin/"', 'href="/health"'):
        assert link in html
    assert Client().get("/admin/").status_code == 302  # "View site" and back


@pytest.mark.slow
def test_demo_script_prints_and_serves_the_address_it_was_given(tmp_path):
    """``PORT=… scripts/demo.sh``: every printed example names that port, and the server answers there."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MOMENTRY_SECRET_KEY")}
    env.update(PORT=str(port), MOMENTRY_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen(["scripts/demo.sh"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "==> serving on" in line:
                break
        out = "".join(lines)
        assert f"==> serving on http://127.0.0.1:{port}/" in out, out[-3000:]
        hosts = set(re.findall(r"http://127\.0\.0\.1:(\d+)", out))
        assert hosts == {str(port)}, hosts
        key = out.split("API key (shown once):")[1].split()[0]
        for _ in range(100):
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/files", headers={"X-API-Key": key})
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the demo server did not answer")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
