"""Admin lists and the trace page in a real headless Chromium (issue 20, items 6 and 7).

Every column header of the files, traces and jobs lists must be on screen at 1280x720 and
1400x1000 — inside the window, with neither the page nor the list's own box scrolling sideways —
with long file names, many traces and a job that failed with a long error. The trace page's
video shows the face before it plays, and a detection's frame plays the trace's video from there.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from identities.models import Identity
from jobs.models import Job
from media_api.models import MediaFile, Trace
from tests import browser
from tests.test_cast_page import add_traces, direction, near

browser_page = browser.browser_page
pytestmark = [pytest.mark.browser, browser.needs_chromium, pytest.mark.django_db(transaction=True)]

LONG_NAME = "a-very-long-file-name-of-a-feature-film-" * 3 + "director's-cut-2160p.mp4"


@pytest.fixture
def lists(hamilton, facenet, staff_user):
    MediaFile.objects.filter(pk=hamilton.pk).update(name=LONG_NAME, total_frames=1_234_567)
    traces = add_traces(hamilton, [(trace_id, 0, 3, near(direction(7), 0.1, trace_id)) for trace_id in range(1, 13)])
    lin = Identity.objects.create(name="Lin-Manuel Miranda, the performer in the wide shot")
    Trace.objects.filter(pk__in=[t.pk for t in traces.values()][:6]).update(identity=lin, face_count=123_456)
    now = timezone.now()
    Job.objects.create(kind="detect_faces", file=hamilton, state="failed", attempts=3, progress=0.42,
                       message="analysing frames 12000-18000 of 1234567 on worker host-with-a-long-name",
                       error="RuntimeError: the decoder stopped at frame 12345 because the file is cut off "
                             "before its declared duration (truncated download?) " * 2,
                       started_at=now, finished_at=now)
    Job.objects.create(kind="prewarm", state="running", attempts=1, progress=0.9, message="prewarming", started_at=now)
    return hamilton


def _login(page, live_server, url):
    page.goto(f"{live_server.url}/admin/login/?next={url}")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")


OFF_SCREEN = """() => {
    const results = document.querySelector('#changelist .results') || document.querySelector('#result_list');
    const edge = Math.min(innerWidth, results.getBoundingClientRect().right);
    const out = Array.from(document.querySelectorAll('#result_list thead th')).filter(th => {
        const r = th.getBoundingClientRect();
        return r.width > 0 && (r.left < 0 || r.right > edge + 0.5);
    }).map(th => th.innerText.trim() || th.className);
    return {out, page: document.documentElement.scrollWidth - innerWidth,
            box: results.scrollWidth - results.clientWidth};
}"""


@pytest.mark.parametrize("width, height", [(1280, 720), (1400, 1000)])
def test_every_column_of_the_admin_lists_is_on_screen(live_server, browser_page, lists, width, height):
    page = browser_page
    page.set_viewport_size({"width": width, "height": height})
    _login(page, live_server, "/admin/media_api/mediafile/")
    for url in ("/admin/media_api/mediafile/", "/admin/media_api/trace/", "/admin/jobs/job/"):
        page.goto(live_server.url + url)
        page.wait_for_selector("#result_list")
        found = page.evaluate(OFF_SCREEN)
        assert found == {"out": [], "page": 0, "box": 0}, (url, width, found)


def test_the_trace_page_shows_the_face_and_frames_play_the_trace_video(live_server, browser_page, hamilton,
                                                                       staff_user):
    traces = add_traces(hamilton, [(7, 40, 60, direction(3))])
    trace = traces[7]
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/media_api/trace/{trace.pk}/change/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-123")
    page.click("input[type=submit]")
    video = page.wait_for_selector("#momentry-trace-video")
    poster = video.get_attribute("poster")
    assert poster == f"/api/v1/file/{hamilton.file_uuid}/trace/7/thumbnail"
    assert page.evaluate(f"async () => (await fetch('{poster}')).status") == 200
    # A frame link opens the trace's highlight video (its box drawn) at that frame, on this page.
    link = page.locator("a.momentry-frame", has_text="50")
    href = link.get_attribute("href")
    assert href.startswith(f"/api/v1/file/{hamilton.file_uuid}/trace/7/video#t=")
    span_start = max(0, 40 - round(2.0 * hamilton.fps))
    assert float(href.split("#t=")[1]) == pytest.approx((50 - span_start) / hamilton.fps, abs=0.01)
    link.click()
    at = float(href.split("#t=")[1])
    page.wait_for_function(f"() => {{ const v = document.getElementById('momentry-trace-video');"
                           f" return v.readyState >= 1 && Math.abs(v.currentTime - {at}) < 0.2; }}", timeout=90_000)
    assert page.url.endswith(f"/admin/media_api/trace/{trace.pk}/change/")  # the page stayed
