"""Files list/detail, traces list (filters, sort, pages), trace detail and faces — with query counts."""

from __future__ import annotations

import pytest

from identities.models import Identity
from media_api.models import Detection, Trace
from media_api.services.files import frame_index_for
from tests.conftest import FACENET_UUID, HAMILTON_UUID
from tests.helpers_rest import load_traces

# trace_id: (first frame, last frame, step) -> face_count = frames in range(first, last+1, step)
SPANS = {1: (0, 90, 10), 2: (100, 110, 5), 3: (5, 270, 1), 4: (200, 204, 2), 5: (30, 30, 1)}
FACE_COUNTS = {t: len(range(a, b + 1, s)) for t, (a, b, s) in SPANS.items()}


@pytest.fixture
def traced(hamilton):
    load_traces(hamilton, SPANS, {1: "Eliza", 3: "Eliza", 4: "Angelica"})
    return hamilton


def ids(body):
    return [t["trace_id"] for t in body["traces"]]


# --- files -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_files_list_with_counts_and_pages(api_client, traced, facenet, django_assert_num_queries):
    with django_assert_num_queries(4):  # session, user, count, one page with counts as sub-queries
        body = api_client.get("/api/v1/files").json()
    assert body["success"] is True and body["total"] == 2 and body["count"] == 2
    assert body["page"] == 1 and body["page_size"] == 20 and body["num_pages"] == 1
    by_uuid = {f["file_uuid"]: f for f in body["files"]}
    assert by_uuid[HAMILTON_UUID]["trace_count"] == 5 and by_uuid[HAMILTON_UUID]["identity_count"] == 2
    assert by_uuid[FACENET_UUID]["trace_count"] == 0 and by_uuid[FACENET_UUID]["identity_count"] == 0
    assert by_uuid[HAMILTON_UUID]["total_frames"] == 275 and by_uuid[HAMILTON_UUID]["fps_rational"] == "2997/100"
    first = api_client.get("/api/v1/files?page=1&page_size=1").json()
    second = api_client.get("/api/v1/files?page=2&page_size=1").json()
    assert first["count"] == second["count"] == 1 and first["num_pages"] == 2
    assert {first["files"][0]["file_uuid"], second["files"][0]["file_uuid"]} == {HAMILTON_UUID, FACENET_UUID}
    past = api_client.get("/api/v1/files?page=3&page_size=1").json()
    assert past["files"] == [] and past["total"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize("query,param", [
    ("page=0", "page"), ("page=-1", "page"), ("page=x", "page"), ("page_size=0", "page_size"),
    ("page_size=101", "page_size"), ("page_size=2.5", "page_size"),
])
def test_bad_pagination_is_400_naming_the_parameter(api_client, traced, query, param):
    for path in ("/api/v1/files", f"/api/v1/file/{HAMILTON_UUID}/traces", f"/api/v1/file/{HAMILTON_UUID}/trace/1/faces",
                 "/api/v1/identities"):
        response = api_client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        error = response.json()["error"]
        assert error["code"] == "BAD_REQUEST" and error["details"]["parameter"] == param


@pytest.mark.django_db
def test_page_size_100_is_allowed(api_client, traced):
    assert api_client.get("/api/v1/files?page_size=100").status_code == 200


@pytest.mark.django_db
def test_file_detail_and_unknown_file(api_client, traced):
    body = api_client.get(f"/api/v1/file/{HAMILTON_UUID}").json()
    assert body["file_uuid"] == HAMILTON_UUID and body["trace_count"] == 5 and body["identity_count"] == 2
    assert body["width"] == 640 and body["height"] == 360 and body["has_audio"] is True
    assert api_client.get(f"/api/v1/file/{HAMILTON_UUID.upper()}").status_code == 200
    response = api_client.get(f"/api/v1/file/{'f' * 32}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


# --- traces ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_traces_list_summaries_identity_and_thumbnail_url(api_client, traced, django_assert_max_num_queries):
    # session + user, file, frame index (cold cache), count, page (identities joined); scope is inside the SQL
    with django_assert_max_num_queries(6):
        body = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/traces").json()
    assert body["total"] == 5 and ids(body) == [1, 2, 3, 4, 5]
    first = body["traces"][0]
    assert first["face_count"] == FACE_COUNTS[1] and first["start_frame"] == 0 and first["end_frame"] == 90
    assert first["thumbnail_url"] == f"/api/v1/file/{HAMILTON_UUID}/trace/1/thumbnail"
    assert first["identity"]["name"] == "Eliza" and len(first["identity"]["identity_uuid"]) == 32
    assert body["traces"][1]["identity"] is None
    index = frame_index_for(traced)
    assert first["end_time"] == pytest.approx(index.seconds_of(90)) and first["start_time"] == 0.0


@pytest.mark.django_db
def test_traces_list_query_count_does_not_grow_with_traces(api_client, hamilton, django_assert_num_queries):
    load_traces(hamilton, {t: (t, t + 2, 1) for t in range(1, 61)}, {t: f"person {t % 7}" for t in range(1, 61)})
    frame_index_for(hamilton)  # warm the per-process index cache, as in a running server
    with django_assert_num_queries(5):  # session, user, file, count, one page with identities joined
        body = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/traces?page_size=50").json()
    assert body["count"] == 50 and all(t["identity"] for t in body["traces"])


@pytest.mark.django_db
@pytest.mark.parametrize("sort", ["face_count", "-face_count", "start_frame", "-start_frame", "trace_id", "-trace_id"])
def test_traces_sort(api_client, traced, sort):
    body = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/traces?sort={sort}").json()
    key = sort.lstrip("-")
    values = [t[key] for t in body["traces"]]
    assert values == sorted(values, reverse=sort.startswith("-"))
    assert len(values) == 5


@pytest.mark.django_db
def test_traces_filters(api_client, traced):
    eliza = Identity.objects.get(name="Eliza")
    base = f"/api/v1/file/{HAMILTON_UUID}/traces"
    assert ids(api_client.get(f"{base}?identity={eliza.identity_uuid}").json()) == [1, 3]
    dashed = "-".join([eliza.identity_uuid[:8], eliza.identity_uuid[8:12], eliza.identity_uuid[12:16],
                       eliza.identity_uuid[16:20], eliza.identity_uuid[20:]])
    assert ids(api_client.get(f"{base}?identity={dashed}").json()) == [1, 3]
    assert ids(api_client.get(f"{base}?unbound=true").json()) == [2, 5]
    assert ids(api_client.get(f"{base}?unbound=false&sort=-face_count").json()) == [3, 1, 4]
    assert api_client.get(f"{base}?identity={'a' * 32}").json()["total"] == 0
    paged = api_client.get(f"{base}?sort=-face_count&page=2&page_size=2").json()
    assert ids(paged) == [2, 4] and paged["total"] == 5 and paged["num_pages"] == 3


@pytest.mark.django_db
@pytest.mark.parametrize("query,param", [
    ("sort=name", "sort"), ("sort=-", "sort"), ("unbound=maybe", "unbound"), ("identity=xyz", "identity"),
    ("identity=" + "a" * 32 + "&unbound=true", "unbound"),
])
def test_traces_bad_filters_are_400(api_client, traced, query, param):
    response = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/traces?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["parameter"] == param


@pytest.mark.django_db
def test_trace_detail(api_client, traced):
    body = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/trace/3").json()
    assert body["success"] is True and body["trace_id"] == 3 and body["face_count"] == FACE_COUNTS[3]
    assert body["identity"]["name"] == "Eliza" and body["representative"] is None
    assert body["video_url"] == f"/api/v1/file/{HAMILTON_UUID}/trace/3/video"
    trace = Trace.objects.get(file=traced, trace_id=3)
    Trace.objects.filter(pk=trace.pk).update(rep_version=trace.detections_version, rep_frame_number=42, rep_x=1,
                                             rep_y=2, rep_width=30, rep_height=40, rep_confidence=0.9)
    rep = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/trace/3").json()["representative"]
    assert rep["frame_number"] == 42 and rep["bbox"] == {"x": 1, "y": 2, "width": 30, "height": 40}


@pytest.mark.django_db
def test_unknown_trace_is_404(api_client, traced):
    for path in ("trace/99", "trace/99/faces"):
        response = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/{path}")
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "Trace not found."
    assert api_client.get(f"/api/v1/file/{HAMILTON_UUID}/trace/abc").status_code == 404


@pytest.mark.django_db
def test_trace_faces_pages_in_frame_order(api_client, traced, django_assert_max_num_queries):
    with django_assert_max_num_queries(7):  # session, user, file, trace, index (cold), count, page
        body = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/trace/3/faces?page_size=100&page=2").json()
    assert body["total"] == FACE_COUNTS[3] == Detection.objects.filter(trace__trace_id=3).count()
    assert body["count"] == 100 and body["page"] == 2
    frames = [f["frame_number"] for f in body["faces"]]
    assert frames == list(range(105, 205))
    face = body["faces"][0]
    assert face["bbox"] == {"x": 13, "y": 20, "width": 64, "height": 64} and face["label"] == "face"
    assert face["timestamp_secs"] == pytest.approx(frame_index_for(traced).seconds_of(105))
    last = api_client.get(f"/api/v1/file/{HAMILTON_UUID}/trace/3/faces?page_size=100&page=3").json()
    assert last["count"] == FACE_COUNTS[3] - 200
