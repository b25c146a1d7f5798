"""SQLite while another process holds the write lock (e.g. a big import): reads go on, bookkeeping
writes are skipped, and a write that truly cannot happen is a 503 BUSY with Retry-After, not a 500."""

from __future__ import annotations

import sqlite3
import time

import pytest
from django.db import connection

from identities.models import Identity
from momentry.models import APIKey
from tests.helpers_rest import key_client, load_traces

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's single writer lock")


@pytest.fixture
def writer_lock(transactional_db):
    """Another connection holding SQLite's write lock, as an import's transaction does."""
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=1, isolation_level=None)
    held = {"on": False}

    def take():
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO django_cache_probe VALUES (1)")
        held["on"] = True

    def release():
        if held["on"]:
            other.execute("ROLLBACK")
            held["on"] = False

    other.execute("CREATE TABLE IF NOT EXISTS django_cache_probe (x INTEGER)")
    yield take, release
    release()
    other.execute("DROP TABLE IF EXISTS django_cache_probe")
    other.close()


@pytest.fixture
def short_busy_timeout():
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("timeout")
    options["timeout"] = 0.5
    connection.close()
    yield
    options["timeout"] = before
    connection.close()


def test_reads_answer_and_skip_last_used_while_the_database_is_locked(plain_user, hamilton, writer_lock):
    take, release = writer_lock
    client, raw = key_client(plain_user)
    key = APIKey.objects.get(prefix=raw[:12])
    assert key.last_used_at is None
    take()
    started = time.monotonic()
    response = client.get("/api/v1/files")
    assert response.status_code == 200 and response.json()["total"] == 1
    assert time.monotonic() - started < 5  # no wait for the 10 s busy timeout on the bookkeeping write
    release()
    key.refresh_from_db()
    assert key.last_used_at is None  # skipped while busy ...
    client.get("/api/v1/files")
    key.refresh_from_db()
    assert key.last_used_at is not None  # ... and written on a later request


def test_a_write_that_cannot_happen_is_503_busy(staff_user, hamilton, writer_lock, short_busy_timeout):
    take, release = writer_lock
    load_traces(hamilton, {1: (0, 10, 5)})
    eliza = Identity.objects.create(name="Eliza")
    client, _ = key_client(staff_user, write=True)
    take()
    response = client.post(f"/api/v1/identity/{eliza.identity_uuid}/bind/trace",
                           {"file_uuid": hamilton.file_uuid, "trace_id": 1}, format="json")
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "BUSY" and int(response["Retry-After"]) >= 1
    login = client.post("/api/v1/auth/login", {"username": "staff", "password": "staff-pass-123"}, format="json")
    assert login.status_code == 503
    release()
    assert eliza.traces.count() == 0  # nothing half-written
    retry = client.post(f"/api/v1/identity/{eliza.identity_uuid}/bind/trace",
                        {"file_uuid": hamilton.file_uuid, "trace_id": 1}, format="json")
    assert retry.status_code == 200 and eliza.traces.count() == 1


def test_a_transaction_that_reads_then_writes_waits_for_another_writer(transactional_db):
    """Transactions begin IMMEDIATE. A deferred one (SQLite's default) that read first fails at its
    first write, without waiting, when another connection committed meanwhile (SQLITE_BUSY): that
    is how the cast page's bind answered 503 while thumbnails were being stored."""
    import threading

    from django.db import connections, transaction

    done = {}

    def other_writer():
        try:
            Identity.objects.create(name="Written by another connection")
            done["other"] = True
        finally:
            connections.close_all()

    with transaction.atomic():
        assert Identity.objects.count() == 0  # read first
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(timeout=1.0)  # deferred: the other write commits at once; immediate: it waits for us
        Identity.objects.create(name="Written in the transaction")  # deferred: "database is locked" here
    thread.join(timeout=15)
    assert done.get("other") is True
    assert set(Identity.objects.values_list("name", flat=True)) == {"Written in the transaction",
                                                                    "Written by another connection"}
