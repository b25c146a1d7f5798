"""Webhooks: a real HTTP receiver on loopback gets signed deliveries of real events.

The receiver is a plain ``http.server`` on a free loopback port (so these tests set
``MOMENTRY_WEBHOOK_ALLOW_PRIVATE``, and the refusal tests unset it). One test runs a real Celery worker
on the embedded broker end to end (job cancelled and job succeeded, a 500 retried); the others make
attempts by calling the delivery task's function in the test process, against the same receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rest_framework.test import APIClient

from identities.models import Identity
from tests.helpers_rest import key_client
from tests.servers import celery_worker, wait_for
from webhooks import events, services
from webhooks.models import Delivery, Webhook

# --------------------------------------------------------------------------- the receiver


class Receiver:
    """Records every request; answers each path with the next scripted status (then 200)."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.requests: list[dict] = []
        self.script: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    scripted = receiver.script.get(self.path)
                    status = scripted.pop(0) if scripted else 200
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "/landing")
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answer {status}".encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:  # (certificate, key)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def to(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def staff(db, django_user_model):
    """A staff user without a password (no slow password hashing in every test)."""
    return django_user_model.objects.create(username="staff", is_staff=True)


@pytest.fixture
def admin_api(staff):
    client = APIClient()
    client.force_login(staff)
    return client


@pytest.fixture
def private_allowed(settings):
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = True


def verified(request: dict, secret: str, tolerance: int = 300) -> dict:
    """What a receiver does (docs/webhooks.md): check Momentry-Signature, then parse the body."""
    fields = dict(item.split("=", 1) for item in request["headers"]["Momentry-Signature"].split(","))
    timestamp = int(fields["t"])
    assert abs(time.time() - timestamp) <= tolerance
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"]), "bad signature"
    return json.loads(request["body"])


def create(client, url: str, events_: list[str]) -> dict:
    response = client.post("/api/v1/webhooks", {"url": url, "events": events_}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["webhook"]


def deliveries(client, webhook_id: str, **params) -> list[dict]:
    response = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params)
    assert response.status_code == 200, response.content
    return response.json()["deliveries"]


# --------------------------------------------------------------------------- end to end on a real worker


@pytest.mark.django_db(transaction=True)
def test_job_events_delivered_by_a_real_worker_signed_and_retried(receiver, private_allowed, admin_api,
                                                                  tmp_path):
    hook = create(admin_api, receiver.url("/jobs"), ["job.succeeded", "job.cancelled"])
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    receiver.script["/jobs"] = [500, 200]  # the first delivery fails once
    queued = admin_api.post("/api/v1/identities/cluster", {}, format="json").json()["job"]
    cancelled = admin_api.delete(f"/api/v1/jobs/{queued['id']}").json()["job"]
    assert cancelled["state"] == "cancelled"
    job = admin_api.post("/api/v1/identities/cluster", {}, format="json").json()["job"]
    with celery_worker(log_path=tmp_path / "worker.log", MOMENTRY_WEBHOOK_ALLOW_PRIVATE="1",
                       MOMENTRY_WEBHOOK_RETRY_BASE_SECONDS="0.2"):
        wait_for(lambda: Delivery.objects.filter(status="succeeded").count() == 2
                 and not Delivery.objects.filter(status__in=["pending", "sending"]).exists(), timeout=60, interval=0.1)
    bodies = [verified(r, hook["secret"]) for r in receiver.to("/jobs")]
    by_type: dict[str, list[dict]] = {}
    for request, body in zip(receiver.to("/jobs"), bodies, strict=True):
        assert request["headers"]["Momentry-Event-Id"] == body["id"] and body["id"].startswith("evt_")
        assert request["headers"]["Momentry-Event"] == body["type"]
        assert request["headers"]["Content-Type"] == "application/json"
        by_type.setdefault(body["type"], []).append(body)
    # the payload is the job as GET /api/v1/jobs/{id} shows it
    assert by_type["job.cancelled"][0]["data"]["job"]["id"] == queued["id"]
    assert by_type["job.cancelled"][0]["data"]["job"]["state"] == "cancelled"
    succeeded = by_type["job.succeeded"][-1]["data"]["job"]
    assert succeeded == admin_api.get(f"/api/v1/jobs/{job['id']}").json()["job"]
    assert succeeded["state"] == "succeeded"
    # the first delivery answered 500: it was retried with the same event id, every attempt recorded
    first = by_type[bodies[0]["type"]]
    assert len(first) == 2 and first[0]["id"] == first[1]["id"]
    attempts = deliveries(admin_api, hook["id"], event_id=first[0]["id"])
    assert [(a["attempt"], a["status"], a["status_code"]) for a in attempts] == [(2, "succeeded", 200),
                                                                                  (1, "failed", 500)]
    assert attempts[1]["error"] == "HTTP 500" and attempts[1]["next_retry_at"] and attempts[1]["response_body"]
    assert attempts[0]["next_retry_at"] is None and attempts[0]["duration_ms"] is not None
    assert len(deliveries(admin_api, hook["id"])) == 3


# --------------------------------------------------------------------------- the API


@pytest.mark.django_db
def test_create_list_update_delete(receiver, private_allowed, admin_api):
    hook = create(admin_api, receiver.url("/a"), ["job.failed", "identity.merged", "job.failed"])
    assert hook["events"] == ["job.failed", "identity.merged"] and hook["active"] is True
    listed = admin_api.get("/api/v1/webhooks").json()
    assert listed["total"] == 1 and "secret" not in listed["webhooks"][0]
    detail = admin_api.get(f"/api/v1/webhooks/{hook['id']}").json()["webhook"]
    assert "secret" not in detail and detail["url"] == receiver.url("/a")
    changed = admin_api.patch(f"/api/v1/webhooks/{hook['id']}", {"active": False, "events": ["job.succeeded"]},
                              format="json").json()["webhook"]
    assert changed["active"] is False and changed["events"] == ["job.succeeded"]
    assert Webhook.objects.get().secret == hook["secret"]
    bad = admin_api.post("/api/v1/webhooks", {"url": receiver.url("/a"), "events": ["job.exploded"]},
                         format="json")
    assert bad.status_code == 400 and bad.json()["error"]["details"]["parameter"] == "events"
    assert admin_api.post("/api/v1/webhooks", {"url": receiver.url("/a"), "events": []},
                          format="json").status_code == 400
    assert admin_api.delete(f"/api/v1/webhooks/{hook['id']}").json()["deleted"] is True
    assert admin_api.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert admin_api.get("/api/v1/webhooks/not-an-id").status_code == 404


@pytest.mark.django_db
def test_only_admins(receiver, private_allowed, admin_api, staff, django_user_model, hamilton):
    hook = create(admin_api, receiver.url("/a"), ["job.failed"])
    viewer = django_user_model.objects.create(username="viewer")
    session = APIClient()
    session.force_login(viewer)
    read_only_admin, _ = key_client(staff)
    scoped_admin, _ = key_client(staff, write=True, file_uuids=[hamilton.file_uuid])
    writer, _ = key_client(viewer, write=True)
    body = {"url": receiver.url("/b"), "events": ["job.failed"]}
    for client in (session, writer, scoped_admin):
        assert client.get("/api/v1/webhooks").status_code == 403
        assert client.post("/api/v1/webhooks", body, format="json").status_code == 403
        assert client.get(f"/api/v1/webhooks/{hook['id']}").status_code == 403
        assert client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 403
        assert client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 403
    assert read_only_admin.get("/api/v1/webhooks").status_code == 200  # an admin's read-only key reads
    assert read_only_admin.post("/api/v1/webhooks", body, format="json").status_code == 403
    assert read_only_admin.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 403
    assert APIClient().get("/api/v1/webhooks").status_code == 401
    assert Webhook.objects.count() == 1


@pytest.mark.django_db
def test_private_addresses_refused_at_creation(admin_api, settings):
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = False
    for url in ("http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/", "http://192.168.1.1/",
                "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
                "http://0.0.0.0/", "http://100.64.0.1/", "http://[fe80::1]/", "http://224.0.0.1/",
                "http://[64:ff9b::a00:1]/", "http://[fec0::1]/", "ftp://8.8.8.8/", "file:///etc/passwd", "http://user:pw@8.8.8.8/",
                "http:///nohost", "not a url"):
        response = admin_api.post("/api/v1/webhooks", {"url": url, "events": ["job.failed"]}, format="json")
        assert response.status_code == 400, (url, response.content)
        assert response.json()["error"]["details"]["parameter"] == "url", url
    assert Webhook.objects.count() == 0
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = True
    created = admin_api.post("/api/v1/webhooks", {"url": "http://127.0.0.1:8000/hook", "events": ["job.failed"]},
                             format="json")
    assert created.status_code == 201
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = False
    moved = admin_api.patch(f"/api/v1/webhooks/{created.json()['webhook']['id']}", {"url": "http://10.0.0.1/"},
                            format="json")
    assert moved.status_code == 400 and moved.json()["error"]["details"]["parameter"] == "url"
    assert Webhook.objects.get().url == "http://127.0.0.1:8000/hook"
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = True
    assert admin_api.post("/api/v1/webhooks", {"url": "ftp://127.0.0.1/", "events": ["job.failed"]},
                          format="json").status_code == 400  # the scheme rule stays


# --------------------------------------------------------------------------- deliveries in this process


def emitted(event: str, data: dict, capture) -> list[Delivery]:
    with capture(execute=True):
        events.emit(event, data)
    return list(Delivery.objects.filter(event=event, attempt=1).order_by("pk"))


@pytest.mark.django_db
def test_delivery_refused_when_the_host_now_resolves_to_a_private_address(receiver, settings, admin_api,
                                                                           django_capture_on_commit_callbacks):
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = True
    hook = create(admin_api, receiver.url("/rebound", host="localhost"), ["upload.completed"])
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = False  # as if "localhost" were a public name whose DNS changed
    before = len(receiver.requests)
    [delivery] = emitted("upload.completed", {"upload": {"id": "u1"}}, django_capture_on_commit_callbacks)
    services.attempt(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.status_code is None
    assert delivery.error.startswith("refused:") and ("127.0.0.1" in delivery.error or "::1" in delivery.error)
    assert len(receiver.requests) == before  # nothing was sent
    assert deliveries(admin_api, hook["id"], status="failed")[0]["error"] == delivery.error


@pytest.mark.django_db
def test_redirects_not_followed_and_retries_bounded(receiver, private_allowed, settings, admin_api,
                                                    django_capture_on_commit_callbacks):
    settings.MOMENTRY_WEBHOOK_MAX_ATTEMPTS = 2
    receiver.script["/moved"] = [302, 302]
    create(admin_api, receiver.url("/moved"), ["job.failed"])
    [first] = emitted("job.failed", {"job": {"id": "x"}}, django_capture_on_commit_callbacks)
    services.attempt(first.pk)
    services.attempt(first.pk)  # a duplicate message: the attempt is made once
    first.refresh_from_db()
    assert first.status == "failed" and first.status_code == 302 and "not followed" in first.error
    assert first.next_retry_at is not None
    second = Delivery.objects.get(event_id=first.event_id, attempt=2)
    assert second.status == "pending" and second.scheduled_at == first.next_retry_at
    services.attempt(second.pk)
    second.refresh_from_db()
    assert second.status == "failed" and second.next_retry_at is None  # the last attempt
    assert Delivery.objects.filter(event_id=first.event_id).count() == 2
    assert len(receiver.to("/moved")) == 2 and receiver.to("/landing") == []


@pytest.mark.django_db
def test_identity_merged_event(receiver, private_allowed, admin_api, django_capture_on_commit_callbacks):
    hook = create(admin_api, receiver.url("/people"), ["identity.merged"])
    peggy = Identity.objects.create(name="Peggy")
    angelica = Identity.objects.create(name="Angelica")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(f"/api/v1/identity/{peggy.identity_uuid}/merge",
                                         {"from": [angelica.identity_uuid]}, format="json")
    assert response.status_code == 200, response.content
    [delivery] = Delivery.objects.filter(event="identity.merged")
    services.attempt(delivery.pk)
    [request] = receiver.to("/people")
    body = verified(request, hook["secret"])
    assert body["type"] == "identity.merged" and body["data"]["traces_moved"] == 0
    assert body["data"]["survivor"] == {"identity_uuid": peggy.identity_uuid, "name": "Peggy"}
    assert body["data"]["merged"] == [{"identity_uuid": angelica.identity_uuid, "name": "Angelica"}]
    assert body["data"]["by"] == "staff"


@pytest.mark.django_db
def test_emit_is_cheap_and_never_raises(db, django_capture_on_commit_callbacks, django_assert_num_queries):
    with django_assert_num_queries(1), django_capture_on_commit_callbacks(execute=True):
        events.emit("job.succeeded", {"job": {"id": "x"}})  # no webhook: one query, nothing else
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        events.emit("job.exploded", {})  # unknown: logged
        events.emit("job.failed", {"not json": object()})  # not JSON: logged
    assert callbacks == []
    Webhook.objects.create(url="http://8.8.8.8/", events=["job.failed"], secret="whsec_x", active=False)
    with django_assert_num_queries(1), django_capture_on_commit_callbacks(execute=True):
        events.emit("job.failed", {"job": {"id": "x"}})  # an inactive webhook receives nothing
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_sweep_recovers_lost_attempts_and_forgets_old_ones(receiver, private_allowed, admin_api,
                                                           django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    create(admin_api, receiver.url("/swept"), ["job.failed"])
    [first] = emitted("job.failed", {"job": {"id": "x"}}, django_capture_on_commit_callbacks)
    now = timezone.now()
    Delivery.objects.filter(pk=first.pk).update(status="sending", attempted_at=now - timedelta(hours=1))
    assert services.sweep(now) == {"resent": 0, "lost": 1, "deleted": 0}  # its worker died mid-request
    first.refresh_from_db()
    assert first.status == "failed" and "worker stopped" in first.error and first.next_retry_at
    second = Delivery.objects.get(event_id=first.event_id, attempt=2)
    assert services.sweep(now)["resent"] == 0  # not overdue yet
    assert services.sweep(second.scheduled_at + timedelta(hours=1))["resent"] == 1  # its message was lost
    services.attempt(second.pk)
    second.refresh_from_db()
    assert second.status == "succeeded" and len(receiver.to("/swept")) == 1
    assert services.sweep(now + timedelta(days=31))["deleted"] == 2


def self_signed(host: str, folder) -> tuple[str, str]:
    """A certificate for ``host`` (and its key), signed by itself: files for a test TLS server and its client."""
    import datetime

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.mark.django_db
def test_https_connects_to_the_checked_address_and_verifies_the_host_name(private_allowed, admin_api, tmp_path,
                                                                         monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    cert, key = self_signed("localhost", tmp_path)
    server = Receiver(tls=(cert, key))
    try:
        hook = create(admin_api, server.url("/tls", host="localhost"), ["job.failed"])
        [first] = emitted("job.failed", {"job": {"id": "x"}}, django_capture_on_commit_callbacks)
        services.attempt(first.pk)  # the system's CAs do not know this certificate
        first.refresh_from_db()
        assert first.status == "failed" and first.error.startswith("TLS error") and server.requests == []
        monkeypatch.setenv("SSL_CERT_FILE", cert)  # now trusted: for the name "localhost" only
        second = Delivery.objects.get(event_id=first.event_id, attempt=2)
        services.attempt(second.pk)
        second.refresh_from_db()
        assert second.status == "succeeded", second.error
        [request] = server.requests
        assert request["headers"]["Host"] == f"localhost:{server.port}"
        assert verified(request, hook["secret"])["type"] == "job.failed"
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.mark.django_db
def test_admin_pages(receiver, settings, client, django_user_model, django_capture_on_commit_callbacks):
    from django.urls import reverse

    client.force_login(django_user_model.objects.create(username="boss", is_staff=True, is_superuser=True))
    add = reverse("admin:webhooks_webhook_add")
    form = {"url": "http://169.254.169.254/latest", "events": ["job.failed"], "description": "", "active": "on"}
    refused = client.post(add, form)
    assert refused.status_code == 200 and "not a public address" in refused.content.decode()
    settings.MOMENTRY_WEBHOOK_ALLOW_PRIVATE = True
    added = client.post(add, {**form, "url": receiver.url("/admin")}, follow=True)
    webhook = Webhook.objects.get()
    assert webhook.secret.startswith("whsec_") and webhook.secret in added.content.decode()  # shown once
    change_page = client.get(reverse("admin:webhooks_webhook_change", args=[webhook.pk])).content.decode()
    assert webhook.secret not in change_page
    [delivery] = emitted("job.failed", {"job": {"id": "x"}}, django_capture_on_commit_callbacks)
    services.attempt(delivery.pk)
    listing = client.get(reverse("admin:webhooks_webhook_changelist")).content.decode()
    assert "1 delivery attempt" in listing
    deliveries_page = client.get(reverse("admin:webhooks_delivery_changelist") + f"?webhook__id__exact={webhook.pk}")
    assert deliveries_page.status_code == 200 and "succeeded" in deliveries_page.content.decode()
    detail = client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])).content.decode()
    assert delivery.event_id in detail and "answer 200" in detail


@pytest.mark.django_db
def test_a_slow_receiver_is_cut_off_at_the_time_limit(private_allowed, settings, admin_api,
                                                     django_capture_on_commit_callbacks):
    """A receiver that answers one byte at a time never trips a per-read timeout: the attempt's limit stops it."""
    import socket

    settings.MOMENTRY_WEBHOOK_TIMEOUT = 1.0
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def dribble() -> None:
        connection, _ = listener.accept()
        with connection:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        create(admin_api, f"http://127.0.0.1:{listener.getsockname()[1]}/slow", ["job.failed"])
        [delivery] = emitted("job.failed", {"job": {"id": "x"}}, django_capture_on_commit_callbacks)
        started = time.monotonic()
        services.attempt(delivery.pk)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.error == "timed out after 1 s", delivery.error
    assert elapsed < 3 and 900 <= delivery.duration_ms < 3000
    # the next attempt is scheduled (a slow receiver is retried like any other failure)
    assert Delivery.objects.filter(event_id=delivery.event_id, attempt=2, status="pending").exists()
