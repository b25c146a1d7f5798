"""Identity suggestions by embedding distance, and clustering unbound traces (issue 7).

Traces come from demo/detections/*.json, which tests/test_faces.py checks are exactly what
the face pipeline produces for the demo clips (embeddings included), so these tests use real
face embeddings without running the detector again.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from identities.models import CurationChange, Identity
from identities.suggestions import cluster_unbound_traces, suggest_identities
from media_api.faces.pipeline import store_trace_embeddings
from media_api.models import Trace
from media_api.services.detections_import import import_detections
from tests.conftest import REPO

pytestmark = pytest.mark.django_db


def _load(media_file, stem: str) -> None:
    data = json.loads((REPO / "demo" / "detections" / f"{stem}.json").read_text())
    import_detections(media_file, data["detections"])
    store_trace_embeddings(media_file, data["trace_embeddings"])


@pytest.fixture
def traced(hamilton, facenet):
    _load(hamilton, "face_recognition_short_hamilton_clip")
    _load(facenet, "facenet_pytorch_video")
    return hamilton, facenet


def _bind(media_file, trace_id: int, identity: Identity) -> Trace:
    trace = Trace.objects.get(file=media_file, trace_id=trace_id)
    trace.identity = identity
    trace.save(update_fields=["identity"])
    return trace


def _url(media_file, trace_id) -> str:
    return f"/api/v1/file/{media_file.file_uuid}/trace/{trace_id}/suggestions"


def test_performer_in_another_shot_is_suggested_first(traced, api_client):
    hamilton, facenet = traced
    performer = Identity.objects.create(name="Lin-Manuel Miranda")
    boy = Identity.objects.create(name="Boy in the hoodie")
    _bind(hamilton, 1, performer)  # wide shot, frames 0-18
    _bind(facenet, 2, boy)
    response = api_client.get(_url(hamilton, 2))  # medium shots, frames 82-208
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["file_uuid"] == hamilton.file_uuid and body["trace_id"] == 2
    suggestions = body["suggestions"]
    assert suggestions and suggestions[0]["identity_uuid"] == performer.identity_uuid
    assert suggestions[0]["name"] == "Lin-Manuel Miranda" and suggestions[0]["distance"] < 0.35
    distances = [s["distance"] for s in suggestions]
    assert distances == sorted(distances) and all(d <= 0.5 for d in distances)
    by_uuid = {s["identity_uuid"]: s["distance"] for s in suggestions}
    assert by_uuid.get(boy.identity_uuid, 1.0) > suggestions[0]["distance"]


def test_a_trace_is_not_its_own_evidence(traced):
    hamilton, _ = traced
    performer = Identity.objects.create(name="Performer")
    only = _bind(hamilton, 2, performer)
    assert suggest_identities(only) == []  # its own identity has no other trace
    _bind(hamilton, 1, performer)
    assert [s.name for s in suggest_identities(only)] == ["Performer"]


def test_unconfirmed_and_inactive_identities_are_not_suggested(traced):
    hamilton, _ = traced
    _bind(hamilton, 1, Identity.objects.create(name="Unnamed person 1", source=Identity.Source.AUTO,
                                               status=Identity.Status.PENDING))
    assert suggest_identities(Trace.objects.get(file=hamilton, trace_id=2)) == []
    _bind(hamilton, 1, Identity.objects.create(name="Old", status=Identity.Status.INACTIVE))
    assert suggest_identities(Trace.objects.get(file=hamilton, trace_id=2)) == []


def test_trace_without_embedding_gets_no_suggestions(traced, api_client):
    hamilton, _ = traced
    _bind(hamilton, 1, Identity.objects.create(name="Performer"))
    Trace.objects.filter(file=hamilton, trace_id=2).update(embedding=None)
    body = api_client.get(_url(hamilton, 2)).json()
    assert body["success"] is True and body["has_embedding"] is False and body["suggestions"] == []


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


def test_cluster_groups_the_same_person_across_shots_into_a_pending_identity(traced):
    hamilton, facenet = traced
    result = cluster_unbound_traces()
    assert result.traces_considered == Trace.objects.count() == 7
    assert result.identities_created == 1 and result.traces_bound == 2
    identity = Identity.objects.get(source=Identity.Source.AUTO)
    assert identity.status == Identity.Status.PENDING
    assert sorted(identity.traces.values_list("file_id", "trace_id")) == [(hamilton.pk, 1), (hamilton.pk, 2)]
    assert CurationChange.objects.filter(identity_uuid=identity.identity_uuid, kind="bind").exists()
    # A second run finds nothing new to group.
    again = cluster_unbound_traces()
    assert again.identities_created == 0 and again.traces_bound == 0
    # A new unbound trace of the same person joins the existing pending identity.
    Trace.objects.filter(file=hamilton, trace_id=2).update(identity=None)
    rejoin = cluster_unbound_traces()
    assert rejoin.identities_created == 0 and rejoin.traces_joined_existing == 1
    assert Trace.objects.get(file=hamilton, trace_id=2).identity_id == identity.pk


def test_people_on_screen_together_are_never_one_cluster(traced):
    hamilton, facenet = traced
    cluster_unbound_traces(threshold=1.9, min_size=1)  # everything is "close" at this threshold
    traces = list(Trace.objects.filter(file=facenet))
    assert all(t.identity_id for t in traces)
    for a in traces:
        for b in traces:
            if a.pk < b.pk and a.start_frame <= b.end_frame and b.start_frame <= a.end_frame:
                assert a.identity_id != b.identity_id, (a.trace_id, b.trace_id)


def test_cluster_traces_command(traced, capsys):
    from django.core.management import CommandError, call_command

    call_command("cluster_traces")
    assert "1 pending identity created, 2 trace(s) bound" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("cluster_traces", "--threshold", "0")


def test_admin_trace_page_shows_suggestions(traced, staff_user):
    """Staff naming trace 2 see the person already named from trace 1 of the same performer."""
    from django.test import Client

    hamilton, _ = traced
    lin = Identity.objects.create(name="Lin-Manuel Miranda")
    _bind(hamilton, 1, lin)
    client = Client()
    client.force_login(staff_user)
    trace = Trace.objects.get(file=hamilton, trace_id=2)
    page = client.get(f"/admin/media_api/trace/{trace.pk}/change/").content.decode()
    assert 'class="momentry-suggestion"' in page and "Lin-Manuel Miranda" in page
    assert f"/admin/identities/identity/{lin.pk}/change/" in page
    no_embedding = Trace.objects.create(file=hamilton, trace_id=90)
    page = client.get(f"/admin/media_api/trace/{no_embedding.pk}/change/").content.decode()
    assert "no face embedding" in page
