"""Bulk detections (issue 22 part 4): keyset pages and the NDJSON stream of a file, on the real demo
detections; and the fields trace and identity JSON gained (has_embedding, source, status).

The demo detections (demo/detections/*.json) are what the face pipeline makes of the demo clips; the
counts checked here are read from those files (they change when the pipeline does).
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from identities.models import Identity
from media_api.models import Detection, Trace
from media_api.services import bulk_detections
from momentry import schema
from tests.conftest import FACENET_UUID, HAMILTON_UUID, REPO
from tests.helpers_rest import key_client
from tests.test_suggestions import _bind, _load

pytestmark = pytest.mark.django_db
NDJSON = "application/x-ndjson"


@pytest.fixture
def demo(hamilton, facenet, plain_user):
    _load(hamilton, "face_recognition_short_hamilton_clip")
    _load(facenet, "facenet_pytorch_video")
    client, _ = key_client(plain_user)
    return client


def demo_boxes(stem: str) -> int:
    return len(json.loads((REPO / "demo" / "detections" / f"{stem}.json").read_text())["detections"])


HAMILTON_BOXES = demo_boxes("face_recognition_short_hamilton_clip")


def url(file_uuid: str = HAMILTON_UUID, **query) -> str:
    base = f"/api/v1/file/{file_uuid}/detections"
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def pages(client: APIClient, first: str) -> tuple[list[dict], int]:
    """Every row following the next links from ``first``, and how many pages it took."""
    rows, link, count = [], first, 0
    while link:
        body = client.get(link).json()
        assert body["success"] is True and body["count"] == len(body["detections"]) <= body["page_size"]
        rows += body["detections"]
        link, count = body["next"], count + 1
        assert (body["next_cursor"] is None) == (link is None)
    return rows, count


def stream(client: APIClient, link: str) -> list[dict]:
    response = client.get(link, HTTP_ACCEPT=NDJSON)
    assert response.status_code == 200 and response["Content-Type"] == NDJSON and response.streaming
    text = b"".join(response.streaming_content).decode()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_the_stream_equals_the_pages_and_the_trace_faces(demo, hamilton, monkeypatch):
    monkeypatch.setattr(bulk_detections, "STREAM_CHUNK_ROWS", 64)  # several chunks, as a long file has
    rows, count = pages(demo, url(page_size=100))
    assert count == -(-HAMILTON_BOXES // 100) and len(rows) == HAMILTON_BOXES == Detection.objects.filter(
        file=hamilton).count()
    assert stream(demo, url()) == rows
    assert [r["frame_number"] for r in rows] == sorted(r["frame_number"] for r in rows)
    assert {r["origin"] for r in rows} == {"detected", "tracked"}
    default = demo.get(url()).json()
    assert default["page_size"] == 1000 and default["detections"] == rows and default["next"] is None
    # Each box as the trace faces route gives it, plus its trace_id.
    for trace_id in (1, 13):
        faces = demo.get(f"/api/v1/file/{HAMILTON_UUID}/trace/{trace_id}/faces?page_size=100").json()["faces"]
        mine = [{k: v for k, v in r.items() if k != "trace_id"} for r in rows if r["trace_id"] == trace_id]
        assert mine == faces and len(faces) == Trace.objects.get(file=hamilton, trace_id=trace_id).face_count


def test_filters_on_pages_and_stream(demo, hamilton):
    everything = stream(demo, url(FACENET_UUID))
    assert len(everything) == demo_boxes("facenet_pytorch_video")
    cases = {
        (("start_frame", 40), ("end_frame", 120)): lambda r: 40 <= r["frame_number"] <= 120,
        (("start_frame", 80),): lambda r: r["frame_number"] >= 80,
        (("end_frame", 0),): lambda r: r["frame_number"] == 0,
        (("trace_id", 2),): lambda r: r["trace_id"] == 2,
        (("trace_id", 2), ("start_frame", 50), ("end_frame", 60)): lambda r: r["trace_id"] == 2 and 50 <= r[
            "frame_number"] <= 60,
    }
    for query, keep in cases.items():
        expected = [r for r in everything if keep(r)]
        assert expected, query
        assert stream(demo, url(FACENET_UUID, **dict(query))) == expected, query
        assert pages(demo, url(FACENET_UUID, page_size=7, **dict(query)))[0] == expected, query
    # The cursor carries on the stream from where the pages stopped.
    first = demo.get(url(FACENET_UUID, page_size=20, trace_id=2)).json()
    rest = stream(demo, url(FACENET_UUID, trace_id=2, cursor=first["next_cursor"]))
    assert first["detections"] + rest == [r for r in everything if r["trace_id"] == 2]
    assert stream(demo, url(FACENET_UUID, start_frame=10**6)) == []
    assert demo.get(url(FACENET_UUID, start_frame=10**6)).json()["detections"] == []


def _error(response, status: int, parameter: str | None = None) -> dict:
    assert response.status_code == status and response["Content-Type"] == "application/json"
    error = response.json()["error"]
    if parameter is not None:
        assert error["details"]["parameter"] == parameter
    return error


def test_cursor_tampering_and_bounds_are_400(demo):
    body = demo.get(url(page_size=50, start_frame=10)).json()
    cursor = body["next_cursor"]
    assert body["next"] == f"{url()}?start_frame=10&page_size=50&cursor={cursor}"
    payload, signature = cursor.rsplit(":", 1)
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in (f"{flipped}:{signature}", payload, "abc", f"{payload}:{signature[::-1]}"):
        _error(demo.get(url(page_size=50, start_frame=10, cursor=bad)), 400, "cursor")
        _error(demo.get(url(start_frame=10, cursor=bad), HTTP_ACCEPT=NDJSON), 400, "cursor")
    # A genuine cursor on another query: other filters, another file.
    _error(demo.get(url(start_frame=11, cursor=cursor)), 400, "cursor")
    _error(demo.get(url(cursor=cursor)), 400, "cursor")
    _error(demo.get(url(FACENET_UUID, start_frame=10, cursor=cursor)), 400, "cursor")
    assert demo.get(url(page_size=7, start_frame=10, cursor=cursor)).json()["count"] == 7
    for query, parameter in (({"page_size": 0}, "page_size"), ({"page_size": 10001}, "page_size"),
                             ({"page_size": "x"}, "page_size"), ({"start_frame": -1}, "start_frame"),
                             ({"start_frame": 9, "end_frame": 8}, "end_frame"), ({"trace_id": "1.5"}, "trace_id"),
                             ({"end_frame": 2**31}, "end_frame")):
        _error(demo.get(url(**query)), 400, parameter)
    assert demo.get(url(page_size=10000)).json()["count"] == HAMILTON_BOXES


def test_scope_unknown_trace_head_and_accept(demo, plain_user):
    scoped, _ = key_client(plain_user, file_uuids=[FACENET_UUID])
    unknown = scoped.get(url("f" * 32))
    for accept in ("application/json", NDJSON):
        hidden = scoped.get(url(), HTTP_ACCEPT=accept)
        assert hidden.status_code == 404 and hidden.json()["error"] == {
            **unknown.json()["error"], "details": {"file_uuid": HAMILTON_UUID}}
    assert scoped.get(url(FACENET_UUID, page_size=1)).json()["count"] == 1
    assert _error(demo.get(url(trace_id=99)), 404)["details"] == {"file_uuid": HAMILTON_UUID, "trace_id": 99}
    assert _error(demo.get(url(), HTTP_ACCEPT="text/html"), 406)["code"] == "NOT_ACCEPTABLE"
    assert demo.get(url(page_size=2), HTTP_ACCEPT="application/json, application/x-ndjson").json()["count"] == 2
    for accept, content_type in (("application/json", "application/json"), (NDJSON, NDJSON)):
        head = demo.head(url(), HTTP_ACCEPT=accept)
        assert head.status_code == 200 and head["Content-Type"] == content_type and head.content == b""
    assert demo.head(url(cursor="abc")).status_code == 400
    assert demo.head(url(trace_id=99), HTTP_ACCEPT=NDJSON).status_code == 404
    assert APIClient().get(url(), HTTP_ACCEPT=NDJSON).status_code == 401


def test_has_embedding_and_identity_source_status(demo, hamilton):
    auto = Identity.objects.create(name="Cluster 1", source=Identity.Source.AUTO, status=Identity.Status.PENDING)
    named = Identity.objects.create(name="Lin-Manuel Miranda")
    _bind(hamilton, 1, named)
    _bind(hamilton, 2, auto)  # trace 2 shares its frames with trace 1
    traces = {t["trace_id"]: t for t in demo.get(f"/api/v1/file/{HAMILTON_UUID}/traces?page_size=100").json()["traces"]}
    assert {i for i, t in traces.items() if t["has_embedding"]} == {1, 2, 7, 8, 13}
    assert traces[1]["identity"] == {"identity_uuid": named.identity_uuid, "name": "Lin-Manuel Miranda",
                                     "source": "user_defined", "status": "confirmed"}
    assert traces[2]["identity"]["source"] == "auto" and traces[2]["identity"]["status"] == "pending"
    detail = demo.get(f"/api/v1/file/{HAMILTON_UUID}/trace/2").json()
    assert detail["has_embedding"] is True and detail["identity"]["source"] == "auto"
    assert demo.get(f"/api/v1/file/{HAMILTON_UUID}/trace/3").json()["has_embedding"] is False
    listed = {i["name"]: i for i in demo.get("/api/v1/identities").json()["identities"]}
    assert (listed["Cluster 1"]["source"], listed["Cluster 1"]["status"]) == ("auto", "pending")
    assert set(schema.IDENTITY_SOURCES) == set(Identity.Source.values)
    assert set(schema.IDENTITY_STATUSES) == set(Identity.Status.values)
    # Suggestions name the person the same way (only named people are suggested).
    suggestions = [s for trace_id in (2, 7, 8, 13) for s in demo.get(
        f"/api/v1/file/{HAMILTON_UUID}/trace/{trace_id}/suggestions").json()["suggestions"]]
    assert suggestions and {(s["identity_uuid"], s["source"], s["status"]) for s in suggestions} == {
        (named.identity_uuid, "user_defined", "confirmed")}
    # So do the cast graph (the auto cluster and the named person share frames) and the co-occurrence routes.
    pairs = demo.get(f"/api/v1/file/{HAMILTON_UUID}/cooccurrence").json()["pairs"]
    people = {(m["name"], m["source"], m["status"]) for p in pairs for m in (p["a"], p["b"])}
    assert people == {("Lin-Manuel Miranda", "user_defined", "confirmed"), ("Cluster 1", "auto", "pending")}
    first = demo.get(f"/api/v1/file/{HAMILTON_UUID}/identities/{named.identity_uuid}/co-occur-with/"
                     f"{auto.identity_uuid}").json()
    assert (first["identity_b"]["source"], first["identity_b"]["status"]) == ("auto", "pending")
