"""Shots (issue 22): hard cuts stored per file, checked against cuts placed by hand in the demo clips.

tests/data/shots_labels.json holds the hand-placed cuts (and how they were placed). Every path
that stores shots is checked against them on the real clips through the real FFmpeg layer: the
``detect_shots`` service, face analysis in chunks stitched together (a chunk starting on a cut),
and the job over REST, run by the task a worker runs (workers running jobs are tests/test_jobs.py's
subject; starting one here cost ~10 s a database pass for nothing this module checks).
"""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from media_api.models import Shot
from media_api.services.shots import detect_shots, replace_shots, shots_from_cuts
from tests.conftest import REPO
from tests.helpers_rest import key_client

LABELS = json.loads((REPO / "tests" / "data" / "shots_labels.json").read_text())["clips"]
TOLERANCE = 1  # frames


def assert_matches_labels(found: list[int], media_file) -> None:
    """Each hand-placed cut is found within +-1 frame, and nothing else is."""
    labelled = LABELS[media_file.name]["cuts"]
    assert len(found) == len(labelled), (found, labelled)
    for cut, label in zip(sorted(found), labelled, strict=True):
        assert abs(cut - label) <= TOLERANCE, (found, labelled)


def stored_shots(media_file) -> list[tuple[int, int, int]]:
    return list(Shot.objects.filter(file=media_file).order_by("index").values_list("index", "start_frame",
                                                                                     "end_frame"))


def stored_cuts(media_file) -> list[int]:
    return [start for _, start, _ in stored_shots(media_file)[1:]]


def assert_cover_the_file(media_file) -> None:
    shots = stored_shots(media_file)
    assert [index for index, _, _ in shots] == list(range(len(shots)))
    assert shots[0][1] == 0 and shots[-1][2] == media_file.total_frames - 1
    assert all(shots[k + 1][1] == shots[k][2] + 1 for k in range(len(shots) - 1))


def test_shots_from_cuts():
    assert shots_from_cuts([82, 20, 20, 0, 300], 275) == [(0, 19), (20, 81), (82, 274)]
    assert shots_from_cuts([], 5) == [(0, 4)]
    assert shots_from_cuts([3], 0) == []


@pytest.mark.django_db
def test_detect_shots_finds_the_hand_placed_cuts(hamilton, facenet):
    for media_file in (hamilton, facenet):
        assert LABELS[media_file.name]["total_frames"] == media_file.total_frames
        result = detect_shots(media_file)
        assert result.frames_decoded == media_file.total_frames
        assert_matches_labels(stored_cuts(media_file), media_file)
        assert result.cuts == stored_cuts(media_file) and result.shots == len(LABELS[media_file.name]["cuts"]) + 1
        assert_cover_the_file(media_file)


@pytest.mark.django_db
def test_a_stopped_detection_keeps_the_old_shots(hamilton):
    from jobs.services import JobCancelled

    Shot.objects.create(file=hamilton, index=0, start_frame=0, end_frame=hamilton.total_frames - 1)
    before = stored_shots(hamilton)

    def cancelled(done: int, total: int) -> None:
        if done >= 100:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        detect_shots(hamilton, on_progress=cancelled)
    assert stored_shots(hamilton) == before


@pytest.mark.django_db
def test_chunked_face_analysis_stores_the_same_shots(hamilton):
    """Chunks of ~3 s (one starts on the cut at 211): stitched, their shots are the labels and detect_shots's."""
    from media_api.faces.chunks import analyse_chunk, plan_chunks, stitch
    from media_api.services.faces import store_analysis
    from media_api.services.files import frame_index_for

    index = frame_index_for(hamilton)
    plan = plan_chunks(index, 3.0)
    assert len(plan) >= 3 and any(first in LABELS[hamilton.name]["cuts"] for first, _ in plan)
    stride = 15  # fewer detector samples than the default: cuts are looked for on every frame all the same
    chunks = [analyse_chunk(hamilton.path, index, hamilton.fps, first, last, stride, workers=False)
              for first, last in plan]
    Shot.objects.create(file=hamilton, index=0, start_frame=0, end_frame=5)  # stale: replaced
    store_analysis(hamilton, stitch(chunks, hamilton.fps), replace=True)
    from_faces = stored_cuts(hamilton)
    assert_matches_labels(from_faces, hamilton)
    assert_cover_the_file(hamilton)
    detect_shots(hamilton)
    assert stored_cuts(hamilton) == from_faces  # both paths see the same cuts


@pytest.mark.django_db
def test_shots_route_pages_scope_and_errors(hamilton, facenet, plain_user):
    reader = key_client(plain_user)[0]
    url = f"/api/v1/file/{hamilton.file_uuid}/shots"
    empty = reader.get(url).json()
    assert empty["success"] is True and empty["total"] == 0 and empty["shots"] == []  # not analysed yet
    replace_shots(hamilton, LABELS[hamilton.name]["cuts"])  # (finding them is the tests above)
    body = reader.get(url).json()
    assert body["file_uuid"] == hamilton.file_uuid and body["total"] == body["count"] == 4
    assert body["page_size"] == 2000 and body["num_pages"] == 1
    shots = body["shots"]
    assert [s["index"] for s in shots] == [0, 1, 2, 3]
    assert [(s["start_frame"], s["end_frame"]) for s in shots] == [(a, b) for _, a, b in stored_shots(hamilton)]
    assert shots[0]["start_secs"] == 0.0
    assert all(shots[k]["end_secs"] == shots[k + 1]["start_secs"] for k in range(3))
    # 82 frames into the clip at 2997/100 fps (time base 1/11988: exact to the microsecond)
    assert shots[2]["start_secs"] == pytest.approx(82 * 100 / 2997, abs=1e-4)
    assert shots[3]["end_secs"] == pytest.approx(hamilton.total_frames * 100 / 2997, abs=2e-3)
    second = reader.get(url, {"page": 2, "page_size": 3}).json()
    assert second["count"] == 1 and second["num_pages"] == 2 and second["shots"] == shots[3:]
    for bad in ({"page_size": 0}, {"page_size": 10001}, {"page": "x"}):
        response = reader.get(url, bad)
        assert response.status_code == 400 and response.json()["success"] is False
    scoped = key_client(plain_user, file_uuids=[facenet.file_uuid])[0]
    for client, target in ((scoped, hamilton.file_uuid), (reader, "f" * 32)):
        response = client.get(f"/api/v1/file/{target}/shots")
        assert response.status_code == 404 and response.json()["success"] is False
    assert scoped.get(f"/api/v1/file/{facenet.file_uuid}/shots").status_code == 200


@pytest.mark.django_db
def test_command_queue_and_admin_action(hamilton, facenet, admin_client, capsys):
    from jobs.models import Job

    call_command("detect_shots", "--file", hamilton.file_uuid)
    assert_matches_labels(stored_cuts(hamilton), hamilton)
    assert f"4 shots (cuts at frames {', '.join(map(str, stored_cuts(hamilton)))})" in capsys.readouterr().out
    call_command("detect_shots", "--missing", "--queue")  # only facenet has no shots
    assert list(Job.objects.filter(kind="detect_shots").values_list("file_id", flat=True)) == [facenet.pk]
    Job.objects.all().delete()
    response = admin_client.post("/admin/media_api/mediafile/", {"action": "detect_shots",
                                                                "_selected_action": [facenet.pk]}, follow=True)
    assert response.status_code == 200 and b"Shot detection" in response.content
    assert Job.objects.get(kind="detect_shots").file == facenet


@pytest.mark.django_db(transaction=True)
def test_detect_shots_job_over_rest(hamilton, staff_user, plain_user):
    from jobs.tasks import run_job

    writer = key_client(staff_user, write=True)[0]
    reader = key_client(plain_user)[0]
    url = f"/api/v1/file/{hamilton.file_uuid}/detect-shots"
    assert reader.post(url, {}, format="json").status_code == 403
    assert writer.post(f"/api/v1/file/{'f' * 32}/detect-shots", {}, format="json").status_code == 404
    assert writer.post(url, {"stride": 3}, format="json").status_code == 400  # takes no parameters
    response = writer.post(url, {}, format="json")
    assert response.status_code == 202, response.content
    job = response.json()["job"]
    assert job["kind"] == "detect_shots" and job["file_uuid"] == hamilton.file_uuid
    assert writer.post(url, {}, format="json").json()["job"]["id"] == job["id"]  # one at a time per file
    run_job(job["id"])  # what the worker runs for the queued message
    done = writer.get(f"/api/v1/jobs/{job['id']}").json()["job"]
    assert done["state"] == "succeeded", done
    assert done["result"]["shots"] == 4 and done["result"]["frames_decoded"] == hamilton.total_frames
    assert_matches_labels(done["result"]["cuts"], hamilton)
    listed = reader.get(f"/api/v1/file/{hamilton.file_uuid}/shots").json()["shots"]
    assert [s["start_frame"] for s in listed[1:]] == done["result"]["cuts"]
