"""Identity suggestions by embedding distance, and clustering unbound traces (issue 7).

Traces come from demo/detections/*.json, what the face pipeline exports for the demo clips
(``detect_faces --export-dir``, scripts/demo_detections.sh: boxes, means and exemplar sets), imported
through the real importer, so these tests use real face embeddings without running the detector again.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from identities.models import CurationChange, Identity
from identities.suggestions import cluster_unbound_traces, suggest_identities
from media_api.models import Detection, Trace
from media_api.services.detections_import import import_file
from tests.conftest import REPO

pytestmark = pytest.mark.django_db


def _load(media_file, stem: str) -> None:
    """The demo file through the real importer: boxes, and each trace's mean and exemplar set."""
    import_file(media_file, REPO / "demo" / "detections" / f"{stem}.json")


@pytest.fixture
def traced(hamilton, facenet):
    _load(hamilton, "face_recognition_short_hamilton_clip")
    _load(facenet, "facenet_pytorch_video")
    return hamilton, facenet


PEOPLE = json.loads((REPO / "bench" / "faces_eval" / "people.json").read_text())["clips"]


def traces_of(media_file, person: str) -> list[int]:
    """trace_ids of ``person`` (bench/faces_eval/people.json: points inside their face), in anchor order."""
    from django.db.models import F

    stem = media_file.name.rsplit(".", 1)[0]
    found = []
    for frame, x, y in PEOPLE[stem][person]:
        ids = Detection.objects.filter(file=media_file, frame_number=frame, x__lte=x, y__lte=y, x__gt=x - F("width"),
                                       y__gt=y - F("height")).values_list("trace__trace_id", flat=True)
        found += [i for i in ids if i not in found]
    return found


def person_of_trace(trace: Trace) -> str | None:
    stem = trace.file.name.rsplit(".", 1)[0]
    return next((p for p in PEOPLE[stem] if trace.trace_id in traces_of(trace.file, p)), None)


def _bind(media_file, trace_id: int, identity: Identity) -> Trace:
    trace = Trace.objects.get(file=media_file, trace_id=trace_id)
    trace.identity = identity
    trace.save(update_fields=["identity"])
    return trace


def _url(media_file, trace_id) -> str:
    return f"/api/v1/file/{media_file.file_uuid}/trace/{trace_id}/suggestions"


@pytest.fixture
def performer_shots(traced):
    """trace_ids of the performer: wide shot (frames 0-19), profile close-up, medium shots (82-210)."""
    hamilton, _ = traced
    wide, close_up, medium = traces_of(hamilton, "Lin-Manuel Miranda")
    return wide, close_up, medium


def test_performer_in_another_shot_is_suggested_first(traced, performer_shots, api_client):
    hamilton, facenet = traced
    wide, _, medium = performer_shots
    performer = Identity.objects.create(name="Lin-Manuel Miranda")
    boy = Identity.objects.create(name="Boy in blue jacket")
    _bind(hamilton, wide, performer)
    _bind(facenet, traces_of(facenet, "boy in blue jacket")[0], boy)
    response = api_client.get(_url(hamilton, medium))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["file_uuid"] == hamilton.file_uuid and body["trace_id"] == medium
    suggestions = body["suggestions"]
    assert suggestions and suggestions[0]["identity_uuid"] == performer.identity_uuid
    assert suggestions[0]["name"] == "Lin-Manuel Miranda" and suggestions[0]["confident"] is True
    assert body["confident_match"] is True and body["message"] is None
    assert suggestions[0]["distance"] <= body["thresholds"]["confident"]
    distances = [s["distance"] for s in suggestions]
    assert distances == sorted(distances) and all(d <= body["thresholds"]["offered"] for d in distances)
    assert boy.identity_uuid not in {s["identity_uuid"] for s in suggestions}  # far beyond the threshold


def test_nobody_close_enough_says_no_confident_match(traced, performer_shots, api_client):
    """Only other people are named: nothing is offered, and the answer says so."""
    hamilton, facenet = traced
    _, _, medium = performer_shots
    for person in ("red-haired young man", "boy in blue jacket", "white-haired woman", "grey-haired man"):
        _bind(facenet, traces_of(facenet, person)[0], Identity.objects.create(name=person))
    body = api_client.get(_url(hamilton, medium)).json()
    assert body["confident_match"] is False and body["message"].startswith("No confident match")
    assert all(not s["confident"] and s["distance"] > body["thresholds"]["confident"] for s in body["suggestions"])


def test_suggestions_beyond_the_threshold_are_never_offered(traced, api_client):
    """Every demo trace against every named person: whatever is offered lies within the threshold,
    and a confident suggestion is always the right person."""
    from identities.suggestions import CONFIDENT_DISTANCE, SUGGESTION_MAX_DISTANCE

    hamilton, facenet = traced
    people = {}
    for media_file in (hamilton, facenet):
        for trace in Trace.objects.filter(file=media_file, embedding__isnull=False).select_related("file"):
            who = person_of_trace(trace)
            if who is not None:
                identity = people.setdefault(who, Identity.objects.create(name=who))
                trace.identity = identity
                trace.save(update_fields=["identity"])
    assert len(people) >= 6
    for trace in Trace.objects.filter(embedding__isnull=False).select_related("identity"):
        for suggestion in suggest_identities(trace):
            assert suggestion.distance <= SUGGESTION_MAX_DISTANCE
            if suggestion.distance <= CONFIDENT_DISTANCE:
                assert trace.identity is not None and suggestion.name == trace.identity.name, trace.trace_id


def test_a_trace_is_not_its_own_evidence(traced, performer_shots):
    hamilton, _ = traced
    wide, _, medium = performer_shots
    performer = Identity.objects.create(name="Performer")
    only = _bind(hamilton, medium, performer)
    assert suggest_identities(only) == []  # its own identity has no other trace
    _bind(hamilton, wide, performer)
    assert [s.name for s in suggest_identities(only)] == ["Performer"]


def test_unconfirmed_and_inactive_identities_are_not_suggested(traced, performer_shots):
    hamilton, _ = traced
    wide, _, medium = performer_shots
    _bind(hamilton, wide, Identity.objects.create(name="Unnamed person 1", source=Identity.Source.AUTO,
                                                  status=Identity.Status.PENDING))
    assert suggest_identities(Trace.objects.get(file=hamilton, trace_id=medium)) == []
    _bind(hamilton, wide, Identity.objects.create(name="Old", status=Identity.Status.INACTIVE))
    assert suggest_identities(Trace.objects.get(file=hamilton, trace_id=medium)) == []


def test_trace_without_embedding_gets_no_suggestions(traced, performer_shots, api_client):
    hamilton, _ = traced
    wide, _, medium = performer_shots
    _bind(hamilton, wide, Identity.objects.create(name="Performer"))
    Trace.objects.filter(file=hamilton, trace_id=medium).update(embedding=None)
    body = api_client.get(_url(hamilton, medium)).json()
    assert body["success"] is True and body["has_embedding"] is False and body["suggestions"] == []
    assert body["confident_match"] is False and "no face embedding" in body["message"]


def test_unknown_file_or_trace_is_a_json_404(traced, api_client):
    hamilton, _ = traced
    for url in (f"/api/v1/file/{'f' * 32}/trace/1/suggestions", _url(hamilton, 999)):
        response = api_client.get(url)
        assert response.status_code == 404
        assert response.json()["success"] is False


def test_suggestions_need_authentication(traced):
    hamilton, _ = traced
    response = APIClient().get(_url(hamilton, 1))
    assert response.status_code in (401, 403)
    assert response.json()["success"] is False


def test_cluster_groups_one_person_across_shots_and_never_two_people(traced, performer_shots):
    hamilton, facenet = traced
    wide, _, medium = performer_shots
    result = cluster_unbound_traces()
    assert result.traces_considered == Trace.objects.filter(embedding__isnull=False).count() >= 8
    assert result.identities_created >= 1
    performer = Trace.objects.get(file=hamilton, trace_id=wide).identity
    assert performer is not None and performer.status == Identity.Status.PENDING
    assert Trace.objects.get(file=hamilton, trace_id=medium).identity_id == performer.pk  # across the cuts
    for identity in Identity.objects.filter(source=Identity.Source.AUTO):  # never two people in one
        people = {person_of_trace(t) for t in identity.traces.select_related("file")}
        assert len(people) == 1, (identity.name, people)
    assert CurationChange.objects.filter(identity_uuid=performer.identity_uuid, kind="bind").exists()
    # A second run finds nothing new to group.
    again = cluster_unbound_traces()
    assert again.identities_created == 0 and again.traces_bound == 0
    # A new unbound trace of the same person joins the existing pending identity.
    Trace.objects.filter(file=hamilton, trace_id=medium).update(identity=None)
    rejoin = cluster_unbound_traces()
    assert rejoin.identities_created == 0 and rejoin.traces_joined_existing == 1
    assert Trace.objects.get(file=hamilton, trace_id=medium).identity_id == performer.pk


def test_people_on_screen_together_are_never_one_cluster(traced):
    hamilton, facenet = traced
    cluster_unbound_traces(threshold=1.9, min_size=1)  # everything is "close" at this threshold
    traces = list(Trace.objects.filter(file=facenet, embedding__isnull=False))
    assert len(traces) >= 5
    assert all(t.identity_id for t in traces)
    for a in traces:
        for b in traces:
            if a.pk < b.pk and a.start_frame <= b.end_frame and b.start_frame <= a.end_frame:
                assert a.identity_id != b.identity_id, (a.trace_id, b.trace_id)


def test_cluster_traces_command(traced, capsys):
    from django.core.management import CommandError, call_command

    call_command("cluster_traces")
    assert "pending identit" in capsys.readouterr().out
    assert Identity.objects.filter(source=Identity.Source.AUTO).count() >= 1
    with pytest.raises(CommandError):
        call_command("cluster_traces", "--threshold", "0")


def test_admin_trace_page_shows_suggestions(traced, staff_user):
    """Staff naming the performer's medium shot see the person already named from his wide shot."""
    from django.test import Client

    hamilton, _ = traced
    wide, _, medium = traces_of(hamilton, "Lin-Manuel Miranda")
    lin = Identity.objects.create(name="Lin-Manuel Miranda")
    _bind(hamilton, wide, lin)
    client = Client()
    client.force_login(staff_user)
    trace = Trace.objects.get(file=hamilton, trace_id=medium)
    page = client.get(f"/admin/media_api/trace/{trace.pk}/change/").content.decode()
    assert 'class="momentry-suggestion"' in page and "Lin-Manuel Miranda" in page
    assert f"/admin/identities/identity/{lin.pk}/change/" in page
    no_embedding = Trace.objects.create(file=hamilton, trace_id=90)
    page = client.get(f"/admin/media_api/trace/{no_embedding.pk}/change/").content.decode()
    assert "no face embedding" in page


def test_embeddings_of_another_model_are_never_compared(traced, performer_shots, api_client):
    """A trace embedded by dlib (Faces v2, before migration 0006 named the model) is neither evidence nor
    a query, nor clustered, even with exactly the same vector: the distances of two models mean nothing
    to each other."""
    from identities.suggestions import has_comparable_embedding

    hamilton, _ = traced
    wide, _, medium = performer_shots
    performer = Identity.objects.create(name="Performer")
    _bind(hamilton, wide, performer)
    query = Trace.objects.get(file=hamilton, trace_id=medium)
    assert [s.name for s in suggest_identities(query)] == ["Performer"]
    Trace.objects.filter(file=hamilton, trace_id=wide).update(embedding=query.embedding,
                                                               embedding_model="dlib-resnet-v1")
    assert suggest_identities(query) == []  # the only evidence is another model's
    Trace.objects.filter(file=hamilton, trace_id=wide).update(embedding_model=query.embedding_model)
    Trace.objects.filter(pk=query.pk).update(embedding_model="dlib-resnet-v1")
    query.refresh_from_db()
    assert not has_comparable_embedding(query) and suggest_identities(query) == []
    body = api_client.get(_url(hamilton, medium)).json()
    assert body["has_embedding"] is False and "another model (dlib-resnet-v1)" in body["message"]
    Trace.objects.filter(file=hamilton, trace_id=wide).update(identity=None)
    result = cluster_unbound_traces()
    assert result.traces_considered == Trace.objects.filter(embedding__isnull=False).count() - 1
    query.refresh_from_db()
    assert query.identity_id is None


def test_demo_embeddings_are_the_pipelines_model():
    """demo/detections carry SFace vectors (detect_faces --export-dir names the model)."""
    from media_api.faces.embeddings import MODEL_NAME

    for stem in ("face_recognition_short_hamilton_clip", "facenet_pytorch_video"):
        data = json.loads((REPO / "demo" / "detections" / f"{stem}.json").read_text())
        assert data["embedding_model"] == MODEL_NAME and data["trace_embeddings"]
