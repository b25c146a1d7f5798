"""The admin pages a curator reads (issue 13, bugs 6, 8 and 9): what they show and what they offer.

File page: readable size, a link to its traces, nothing to save, job actions. Trace page: rounded
confidence. Detections: no "Add". Creating a person whose name exists warns first.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from identities.models import Identity
from jobs.models import Job
from media_api.models import Trace
from media_api.services.detections_import import import_detections


@pytest.fixture
def traces(hamilton):
    rows = [{"trace_id": t, "frame_number": f, "x": 100, "y": 50, "width": 80, "height": 90, "confidence": c}
            for t, f, c in ((1, 0, 0.9), (1, 10, 0.8), (1, 20, 0.7565), (2, 30, 0.9))]
    import_detections(hamilton, rows)
    return {t.trace_id: t for t in Trace.objects.filter(file=hamilton)}


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_file_page_is_read_only_with_size_and_traces_link(staff_client, traces, hamilton):
    page = staff_client.get(reverse("admin:media_api_mediafile_change", args=[hamilton.pk])).content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    assert f"({hamilton.size:,} bytes)" in page and re.search(r"\d(\.\d)?\s(KB|MB)", page)
    assert f"?file__id__exact={hamilton.pk}" in page and "2 traces of this file" in page
    listing = staff_client.get(reverse("admin:media_api_mediafile_changelist")).content.decode()
    assert ">2 traces<" in listing and "trace(s)" not in listing


def test_file_actions_queue_jobs_and_link_to_them(staff_client, traces, hamilton):
    url = reverse("admin:media_api_mediafile_changelist")
    response = staff_client.post(url, {"action": "detect_faces", ACTION_CHECKBOX_NAME: [hamilton.pk]}, follow=True)
    job = Job.objects.get(kind=Job.Kind.DETECT, file=hamilton)
    assert job.state == Job.State.QUEUED
    assert reverse("admin:jobs_job_change", args=[job.pk]) in response.content.decode()
    again = staff_client.post(url, {"action": "detect_faces", ACTION_CHECKBOX_NAME: [hamilton.pk]}, follow=True)
    assert "already queued or running" in again.content.decode()
    staff_client.post(url, {"action": "prewarm_faces", ACTION_CHECKBOX_NAME: [hamilton.pk]})
    assert Job.objects.filter(kind=Job.Kind.PREWARM, file=hamilton).count() == 1


def test_trace_page_rounds_confidence(staff_client, traces):
    page = staff_client.get(reverse("admin:media_api_trace_change", args=[traces[1].pk])).content.decode()
    assert "0.819" in page and "0.8188" not in page


def test_trace_list_puts_the_identity_next_to_the_face(staff_client, traces):
    page = staff_client.get(reverse("admin:media_api_trace_changelist")).content.decode()
    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', page)
    assert headers[:2] == ["face", "identity_link"], headers


def test_detections_have_no_add_form(staff_client, traces):
    assert staff_client.get(reverse("admin:media_api_detection_add")).status_code == 403
    listing = staff_client.get(reverse("admin:media_api_detection_changelist")).content.decode()
    assert reverse("admin:media_api_detection_add") not in listing


def test_create_identity_action_warns_about_an_existing_name(staff_client, traces):
    existing = Identity.objects.create(name="Peggy Schuyler")
    url = reverse("admin:media_api_trace_changelist")
    form = {"action": "create_identity", ACTION_CHECKBOX_NAME: [traces[2].pk], "confirm": "1",
            "name": "peggy schuyler"}
    page = staff_client.post(url, form)
    assert page.status_code == 200 and "already exists" in page.content.decode()
    assert Identity.objects.count() == 1 and Trace.objects.get(pk=traces[2].pk).identity_id is None
    staff_client.post(url, {**form, "allow_duplicate": "on"})
    assert Identity.objects.filter(name__iexact="peggy schuyler").count() == 2
    assert Trace.objects.get(pk=traces[2].pk).identity_id != existing.pk


def test_hidden_traces_are_left_out_of_the_trace_list_until_asked_for(staff_client, traces, staff_user):
    url = reverse("admin:media_api_trace_changelist")
    staff_client.post(url, {"action": "hide", ACTION_CHECKBOX_NAME: [traces[2].pk]})
    assert Trace.objects.get(pk=traces[2].pk).ignored is True
    assert staff_user.curationchange_set.get().kind == "hide"  # recorded, undoable

    def listed(query: str = "") -> set[int]:
        page = staff_client.get(url + query).content.decode()
        return {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', page)}

    assert listed() == {traces[1].pk}
    assert listed("?hidden=yes") == {traces[2].pk}
    assert listed("?hidden=all") == {traces[1].pk, traces[2].pk}
    staff_client.post(url + "?hidden=yes", {"action": "show_again", ACTION_CHECKBOX_NAME: [traces[2].pk]})
    assert Trace.objects.get(pk=traces[2].pk).ignored is False
    assert listed() == {traces[1].pk, traces[2].pk}


def test_the_cast_page_is_linked_from_the_identities_and_the_file(staff_client, traces, hamilton):
    identities = staff_client.get(reverse("admin:identities_identity_changelist")).content.decode()
    assert f'href="{reverse("cast")}"' in identities
    file_page = staff_client.get(reverse("admin:media_api_mediafile_change", args=[hamilton.pk])).content.decode()
    assert f'href="{reverse("cast-file", args=[hamilton.file_uuid])}"' in file_page


def test_a_detections_frame_opens_the_trace_video_at_that_time(staff_client, traces, hamilton):
    """Issue 20: the trace's highlight video (its box drawn), not the raw file, at that frame; the face as poster."""
    page = staff_client.get(reverse("admin:media_api_trace_change", args=[traces[1].pk])).content.decode()
    trace = f"/api/v1/file/{hamilton.file_uuid}/trace/{traces[1].trace_id}"
    links = re.findall(rf'href="{trace}/video#t=([0-9.]+)"[^>]*>(\d+)</a>', page)
    assert f'poster="{trace}/thumbnail"' in page
    assert [int(frame) for _, frame in links] == [0, 10, 20]
    assert [float(t) for t, _ in links] == pytest.approx([0, 10 / hamilton.fps, 20 / hamilton.fps], abs=0.002)
