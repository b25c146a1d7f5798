"""The curation admin through Django's test client: lists, actions, merge, undo, permissions."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from identities.models import CurationChange, Identity
from media_api.models import Trace
from media_api.services.detections_import import import_detections


def _rows(trace_id, frames, **extra):
    return [{"trace_id": trace_id, "frame_number": f, "x": 100, "y": 50, "width": 80, "height": 90,
             "confidence": 0.9, **extra} for f in frames]


@pytest.fixture
def traces(hamilton):
    import_detections(hamilton, _rows(1, [0, 10, 20]) + _rows(2, [30, 40]) + _rows(3, [50]) + _rows(4, [90, 95]))
    return {t.trace_id: t for t in Trace.objects.filter(file=hamilton)}


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_trace_changelist_shows_lazy_thumbnails(staff_client, traces, hamilton, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        response = staff_client.get(reverse("admin:media_api_trace_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert f'/api/v1/file/{hamilton.file_uuid}/trace/1/thumbnail' in html
    assert 'loading="lazy"' in html


def test_trace_changelist_query_count_is_constant(staff_client, hamilton, django_assert_max_num_queries):
    many = [r for t in range(1, 121) for r in _rows(t, [t % 270])]
    import_detections(hamilton, many)
    identity = Identity.objects.create(name="Crowd")
    Trace.objects.filter(trace_id__lte=60).update(identity=identity)
    with django_assert_max_num_queries(12):
        response = staff_client.get(reverse("admin:media_api_trace_changelist"))
    assert response.status_code == 200
    assert response.content.decode().count('class="momentry-face"') == 50


def test_trace_filters_and_search(staff_client, traces):
    identity = Identity.objects.create(name="Lin-Manuel Miranda")
    Trace.objects.filter(pk=traces[1].pk).update(identity=identity)
    url = reverse("admin:media_api_trace_changelist")
    unbound = staff_client.get(url, {"identity": "unbound"}).context["cl"].result_list
    assert sorted(t.trace_id for t in unbound) == [2, 3, 4]
    one = staff_client.get(url, {"identity": str(identity.pk)}).context["cl"].result_list
    assert [t.trace_id for t in one] == [1]
    found = staff_client.get(url, {"q": "miranda"}).context["cl"].result_list
    assert [t.trace_id for t in found] == [1]


def test_trace_detail_page(staff_client, traces, hamilton):
    response = staff_client.get(reverse("admin:media_api_trace_change", args=[traces[1].pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert f"/api/v1/file/{hamilton.file_uuid}/trace/1/video" in html
    assert "3 detections" in html


def test_bind_action_intermediate_page_then_bind(staff_client, traces):
    identity = Identity.objects.create(name="Alex Lacamoire")
    url = reverse("admin:media_api_trace_changelist")
    selected = [traces[2].pk, traces[3].pk]
    page = staff_client.post(url, {"action": "bind_to_identity", ACTION_CHECKBOX_NAME: selected})
    assert page.status_code == 200 and b"Bind traces to an identity" in page.content
    done = staff_client.post(url, {"action": "bind_to_identity", ACTION_CHECKBOX_NAME: selected,
                                   "confirm": "1", "identity": identity.pk})
    assert done.status_code == 302
    assert set(Trace.objects.filter(identity=identity).values_list("trace_id", flat=True)) == {2, 3}
    assert CurationChange.objects.get().kind == "bind"


def test_create_identity_action_and_unbind(staff_client, traces):
    url = reverse("admin:media_api_trace_changelist")
    selected = [traces[1].pk, traces[4].pk]
    staff_client.post(url, {"action": "create_identity", ACTION_CHECKBOX_NAME: selected, "confirm": "1",
                            "name": "Performer"})
    identity = Identity.objects.get(name="Performer")
    assert set(identity.traces.values_list("trace_id", flat=True)) == {1, 4}
    staff_client.post(url, {"action": "unbind", ACTION_CHECKBOX_NAME: [traces[4].pk]})
    assert set(identity.traces.values_list("trace_id", flat=True)) == {1}


def test_merge_page_then_undo(staff_client, traces):
    a = Identity.objects.create(name="Lin")
    b = Identity.objects.create(name="Lin-Manuel Miranda")
    Trace.objects.filter(pk__in=[traces[1].pk, traces[2].pk]).update(identity=a)
    Trace.objects.filter(pk=traces[3].pk).update(identity=b)
    url = reverse("admin:identities_identity_changelist")
    page = staff_client.post(url, {"action": "merge_selected", ACTION_CHECKBOX_NAME: [a.pk, b.pk]})
    assert page.status_code == 200 and b'name="survivor"' in page.content
    done = staff_client.post(url, {"action": "merge_selected", ACTION_CHECKBOX_NAME: [a.pk, b.pk],
                                   "confirm": "1", "survivor": b.pk})
    assert done.status_code == 302
    a.refresh_from_db()
    assert (a.status, a.source, a.merged_into_id) == ("inactive", "merged", b.pk)
    assert b.traces.count() == 3

    change_page = staff_client.get(reverse("admin:identities_identity_change", args=[b.pk]))
    assert b"Undo: Merged Lin into Lin-Manuel Miranda" in change_page.content
    staff_client.post(reverse("admin:identities_identity_undo", args=[b.pk]))
    a.refresh_from_db()
    assert (a.status, a.source, a.merged_into_id) == ("confirmed", "user_defined", None)
    assert set(a.traces.values_list("trace_id", flat=True)) == {1, 2}
    assert set(b.traces.values_list("trace_id", flat=True)) == {3}


def test_delete_identity_records_history_and_undo(staff_client, traces):
    identity = Identity.objects.create(name="Someone", metadata={"aliases": ["S"]})
    Trace.objects.filter(pk=traces[1].pk).update(identity=identity)
    uuid = identity.identity_uuid
    staff_client.post(reverse("admin:identities_identity_delete", args=[identity.pk]), {"post": "yes"})
    assert not Identity.objects.filter(identity_uuid=uuid).exists()
    change = CurationChange.objects.get(kind="delete")
    staff_client.post(reverse("admin:identities_curationchange_changelist"),
                      {"action": "undo_selected", ACTION_CHECKBOX_NAME: [change.pk]})
    restored = Identity.objects.get(identity_uuid=uuid)
    assert restored.aliases == ["S"] and restored.traces.get().trace_id == 1


def test_identity_search_by_alias_and_edit_aliases(staff_client, traces):
    identity = Identity.objects.create(name="Lin-Manuel Miranda", metadata={"aliases": ["LMM"]})
    url = reverse("admin:identities_identity_changelist")
    found = staff_client.get(url, {"q": "lmm"}).context["cl"].result_list
    assert [i.name for i in found] == ["Lin-Manuel Miranda"]
    staff_client.post(reverse("admin:identities_identity_change", args=[identity.pk]), {
        "name": "Lin-Manuel Miranda", "status": "confirmed", "identity_type": "people",
        "aliases": "Lin, LMM", "metadata": "{}",
        "traces-TOTAL_FORMS": "0", "traces-INITIAL_FORMS": "0", "traces-MIN_NUM_FORMS": "0",
        "traces-MAX_NUM_FORMS": "1000",
    })
    identity.refresh_from_db()
    assert identity.aliases == ["Lin", "LMM"]


def test_identity_changelist_query_count(staff_client, traces, django_assert_max_num_queries):
    for n in range(30):
        Identity.objects.create(name=f"Person {n}")
    with django_assert_max_num_queries(10):
        response = staff_client.get(reverse("admin:identities_identity_changelist"))
    assert response.status_code == 200


def test_non_staff_cannot_use_admin(client, plain_user, traces):
    client.force_login(plain_user)
    response = client.get(reverse("admin:media_api_trace_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_permissions_gets_403(client, django_user_model, traces):
    user = django_user_model.objects.create_user("intern", password="intern-pass-123", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:media_api_trace_changelist")).status_code == 403


def test_editing_a_detection_in_admin_updates_its_trace(staff_client, traces):
    trace = traces[1]
    detection = trace.detections.get(frame_number=20)
    staff_client.post(reverse("admin:media_api_detection_delete", args=[detection.pk]), {"post": "yes"})
    trace.refresh_from_db()
    assert (trace.face_count, trace.end_frame) == (2, 10)
