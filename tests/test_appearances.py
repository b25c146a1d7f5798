"""Appearances (issue 22): an identity's on-screen intervals per file equal a brute force over its detections.

Traces are the demo clips' real pipeline output (demo/detections/*.json, imported through the
real importer, which stores their presence). The route reads only presence; the oracle here
reads every detection row and the frame index, and joins gaps its own way.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from identities import curation
from identities.models import Identity
from media_api.models import Detection, Trace
from media_api.services.detections_import import import_detections
from media_api.services.files import frame_index_for
from tests.conftest import REPO
from tests.helpers_rest import key_client

pytestmark = pytest.mark.django_db

#: The performer: in Hamilton, gaps of 1, 4 and 23 frames between his traces (0.03, 0.13, 0.77 s);
#: in facenet two people's traces standing in for one, with a 5-frame gap.
PERFORMER = {"face_recognition_short_hamilton_clip": [1, 4, 5, 7, 13], "facenet_pytorch_video": [7, 8]}
AUDIENCE = {"face_recognition_short_hamilton_clip": [8, 9]}
GAPS = [0.0, 0.1, 0.5, 1.0, 5.0]


def _load(media_file, stem: str) -> None:
    data = json.loads((REPO / "demo" / "detections" / f"{stem}.json").read_text())
    import_detections(media_file, data["detections"])


def _bind(name: str, traces: dict, files: dict) -> Identity:
    identity = Identity.objects.create(name=name)
    pks = [pk for stem, ids in traces.items()
           for pk in Trace.objects.filter(file=files[stem], trace_id__in=ids).values_list("pk", flat=True)]
    curation.bind_traces(identity, pks)
    return identity


@pytest.fixture
def people(hamilton, facenet):
    files = {"face_recognition_short_hamilton_clip": hamilton, "facenet_pytorch_video": facenet}
    for stem, media_file in files.items():
        _load(media_file, stem)
    performer = _bind("Performer", PERFORMER, files)
    audience = _bind("Audience", AUDIENCE, files)
    # Hidden ("not a face") but bound: counted, as co-occurrence counts it.
    curation.hide_traces(list(Trace.objects.filter(file=hamilton, trace_id=5).values_list("pk", flat=True)))
    return performer, audience, hamilton, facenet


def brute_force(identity: Identity, media_file, min_gap: float) -> dict:
    """Intervals and screen time straight from the detection rows and the frame index."""
    index = frame_index_for(media_file)

    def start_of(frame: int) -> float:
        return index.seconds_of(frame)

    def end_of(frame: int) -> float:  # a frame lasts until the next one starts; the last one 1/fps
        return index.seconds_of(frame + 1) if frame + 1 < len(index) else index.seconds_of(frame) + 1 / media_file.fps

    traces_on = defaultdict(set)
    for trace_id, frame in Detection.objects.filter(file=media_file, trace__identity=identity).values_list(
            "trace__trace_id", "frame_number"):
        traces_on[frame].add(trace_id)
    frames = sorted(traces_on)
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    joined: list[list[int]] = []
    for start, end in runs:
        if joined and start_of(start) - end_of(joined[-1][1]) < min_gap:
            joined[-1][1] = end
        else:
            joined.append([start, end])
    intervals = [{"start_frame": s, "end_frame": e, "start_secs": start_of(s), "end_secs": end_of(e),
                  "trace_ids": sorted(set().union(*(traces_on[f] for f in frames if s <= f <= e)))}
                 for s, e in joined]
    return {"file_uuid": media_file.file_uuid, "name": media_file.name, "screen_frames": len(frames),
            "screen_secs": sum(end_of(f) - start_of(f) for f in frames), "intervals": intervals}


def assert_equal(answer: dict, expected: dict) -> None:
    assert answer["file_uuid"] == expected["file_uuid"] and answer["name"] == expected["name"]
    assert answer["screen_frames"] == expected["screen_frames"]
    assert answer["screen_secs"] == pytest.approx(expected["screen_secs"], abs=1e-5)
    assert [(i["start_frame"], i["end_frame"], i["trace_ids"]) for i in answer["intervals"]] == \
        [(i["start_frame"], i["end_frame"], i["trace_ids"]) for i in expected["intervals"]]
    for got, want in zip(answer["intervals"], expected["intervals"], strict=True):
        assert got["start_secs"] == pytest.approx(want["start_secs"], abs=1e-6)
        assert got["end_secs"] == pytest.approx(want["end_secs"], abs=1e-6)


def test_appearances_equal_a_brute_force_over_the_detections(people, plain_user, django_assert_max_num_queries):
    performer, audience, hamilton, facenet = people
    reader = key_client(plain_user)[0]
    url = f"/api/v1/identity/{performer.identity_uuid}/appearances"
    seen = set()
    for gap in GAPS:
        body = reader.get(url, {"min_gap_seconds": gap}).json()
        assert body["success"] is True and body["identity_uuid"] == performer.identity_uuid
        assert body["name"] == "Performer" and body["min_gap_seconds"] == gap and body["total"] == 2
        assert (body["source"], body["status"]) == (performer.source, performer.status)
        by_name = sorted([hamilton, facenet], key=lambda f: f.name)
        assert [f["file_uuid"] for f in body["files"]] == [f.file_uuid for f in by_name]
        for answer, media_file in zip(body["files"], by_name, strict=True):
            assert_equal(answer, brute_force(performer, media_file, gap))
        seen.add(tuple(len(f["intervals"]) for f in body["files"]))
    assert len(seen) >= 4, "the gaps tried join different intervals"
    default = reader.get(url).json()
    assert default["min_gap_seconds"] == 1.0
    assert default["files"] == reader.get(url, {"min_gap_seconds": "1"}).json()["files"]
    hamilton_only = reader.get(url, {"file_uuid": hamilton.file_uuid, "min_gap_seconds": 0}).json()
    assert hamilton_only["total"] == 1 and 5 in hamilton_only["files"][0]["intervals"][1]["trace_ids"]  # hidden
    assert_equal(hamilton_only["files"][0], brute_force(performer, hamilton, 0.0))
    second_page = reader.get(url, {"page": 2, "page_size": 1}).json()
    assert second_page["count"] == 1 and second_page["num_pages"] == 2
    with django_assert_max_num_queries(8):  # no query per file or trace
        reader.get(url)


def test_scope_unknowns_and_bad_parameters(people, plain_user):
    performer, audience, hamilton, facenet = people
    reader = key_client(plain_user)[0]
    scoped = key_client(plain_user, file_uuids=[facenet.file_uuid])[0]
    body = scoped.get(f"/api/v1/identity/{performer.identity_uuid}/appearances").json()
    assert [f["file_uuid"] for f in body["files"]] == [facenet.file_uuid] and body["total"] == 1
    not_found = [
        (scoped, f"/api/v1/identity/{audience.identity_uuid}/appearances", {}),  # only in a file out of scope
        (scoped, f"/api/v1/identity/{performer.identity_uuid}/appearances", {"file_uuid": hamilton.file_uuid}),
        (reader, f"/api/v1/identity/{'e' * 32}/appearances", {}),
        (reader, f"/api/v1/identity/{performer.identity_uuid}/appearances", {"file_uuid": "f" * 32}),
    ]
    for client, url, params in not_found:
        response = client.get(url, params)
        assert response.status_code == 404 and response.json()["success"] is False, (url, params)
    url = f"/api/v1/identity/{performer.identity_uuid}/appearances"
    for bad in ({"min_gap_seconds": -1}, {"min_gap_seconds": "x"}, {"min_gap_seconds": "nan"},
                {"min_gap_seconds": 3601}, {"file_uuid": "nope"}, {"file_uuid": ""}, {"page_size": 101}):
        response = reader.get(url, bad)
        assert response.status_code == 400 and response.json()["success"] is False, bad
    nobody = Identity.objects.create(name="Nobody yet")
    empty = reader.get(f"/api/v1/identity/{nobody.identity_uuid}/appearances").json()
    assert empty["total"] == 0 and empty["files"] == []
    audience_in_facenet = reader.get(f"/api/v1/identity/{audience.identity_uuid}/appearances",
                                     {"file_uuid": facenet.file_uuid}).json()
    assert audience_in_facenet["total"] == 0  # in scope, but the person is not in it
