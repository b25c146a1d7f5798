"""End to end in a real headless Chromium (Debian's package) driven by Playwright.

A staff member logs in, opens the trace list, sees the faces load from the thumbnail
route, names two traces as a new person, merges two people and undoes the merge.
"""

from __future__ import annotations

import pytest

from identities.models import Identity
from media_api.models import Trace
from media_api.services.detections_import import import_detections
from tests import browser

browser_page = browser.browser_page  # the shared fixture (tests/browser.py)
pytestmark = [pytest.mark.browser, browser.needs_chromium]


def _rows(trace_id, frames, x):
    return [{"trace_id": trace_id, "frame_number": f, "x": x, "y": 60, "width": 90, "height": 100,
             "confidence": 0.95} for f in frames]


@pytest.mark.django_db(transaction=True)
def test_staff_names_merges_and_undoes(live_server, browser_page, hamilton, staff_user, tmp_path):
    import_detections(hamilton, _rows(1, [100, 110, 120], 300) + _rows(2, [130, 140], 280)
                      + _rows(3, [150, 160], 260) + _rows(4, [170], 240))
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/media_api/trace/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")

    # Every face thumbnail loads from the cached thumbnail route at its natural 320 px.
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('img.momentry-face')).every(i => i.complete)"
    )
    widths = page.eval_on_selector_all("img.momentry-face", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and all(w == 320 for w in widths)
    shot = tmp_path / "admin-traces.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000

    # Bind traces 1 and 2 to a new identity named in the form.
    pks = dict(Trace.objects.values_list("trace_id", "pk"))
    for trace_id in (1, 2):
        page.check(f"input.action-select[value='{pks[trace_id]}']")
    page.select_option("select[name=action]", "create_identity")
    page.click("button[name=index]")
    page.fill("#id_name", "Lin-Manuel Miranda")
    page.click("input[name=_confirm]")
    page.wait_for_selector(".messagelist")
    lin = Identity.objects.get(name="Lin-Manuel Miranda")
    assert set(lin.traces.values_list("trace_id", flat=True)) == {1, 2}

    # A second identity for trace 3, then merge it into the first.
    page.check(f"input.action-select[value='{pks[3]}']")
    page.select_option("select[name=action]", "create_identity")
    page.click("button[name=index]")
    page.fill("#id_name", "Lin M.")
    page.click("input[name=_confirm]")
    page.wait_for_selector(".messagelist")
    other = Identity.objects.get(name="Lin M.")

    page.goto(f"{live_server.url}/admin/identities/identity/")
    page.check(f"input.action-select[value='{lin.pk}']")
    page.check(f"input.action-select[value='{other.pk}']")
    page.select_option("select[name=action]", "merge_selected")
    page.click("button[name=index]")
    page.check(f"#survivor-{lin.pk}")
    assert "1 trace of Lin M. will move to Lin-Manuel Miranda" in page.inner_text("#merge-summary")
    page.click("input[name=_confirm]")
    page.wait_for_selector("#undo-form")
    assert set(lin.traces.values_list("trace_id", flat=True)) == {1, 2, 3}
    other.refresh_from_db()
    assert other.status == "inactive"

    # Recover from the merge.
    page.click("#undo-form button")
    page.wait_for_selector(".messagelist .success")
    assert "Undid merge" in page.inner_text(".messagelist")
    other.refresh_from_db()
    assert other.status == "confirmed"
    assert set(other.traces.values_list("trace_id", flat=True)) == {3}
    assert set(lin.traces.values_list("trace_id", flat=True)) == {1, 2}


@pytest.mark.django_db(transaction=True)
def test_identity_column_is_on_screen_at_1280x720(live_server, browser_page, hamilton, staff_user):
    """Bug 8: with a long file name the Identity column of the trace list stayed off-screen at 1280x720."""
    from media_api.models import MediaFile

    MediaFile.objects.filter(pk=hamilton.pk).update(name="a-very-long-file-name-of-a-feature-film-" * 4 + ".mp4")
    import_detections(hamilton, _rows(1, [100, 110], 300) + _rows(2, [130], 280))
    lin = Identity.objects.create(name="Lin-Manuel Miranda")
    Trace.objects.filter(file=hamilton, trace_id=1).update(identity=lin)
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/media_api/trace/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    for selector in ("th.column-identity_link", f"#result_list a:text('{lin.name}')"):
        box = page.locator(selector).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280, (selector, box)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
