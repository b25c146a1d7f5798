"""Cast page v2 (issue 20) in a real headless Chromium (Debian's package) driven by Playwright.

The demo's traces with Pat, a look-alike and nine fillers (tests/test_cast_browser.py's fixture),
plus Pat's twin: a trace near Pat's face on screen at the same time as one of Pat's traces, so
clustering keeps it in a group of its own — once Pat is named it is a confident match for them.
"""

from __future__ import annotations

import itertools

import pytest

from identities.cast import graph, grouping
from identities.models import CurationChange, Identity, NotSamePerson
from media_api.models import Trace
from tests import browser
from tests import test_cast_browser as v1
from tests.test_cast_page import add_traces, near

browser_page = browser.browser_page
cast = v1.cast  # the v1 page's data (a fixture, taken by name)
PAT, Session = v1.PAT, v1.Session
pytestmark = [pytest.mark.browser, browser.needs_chromium, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def twin(cast, hamilton):
    """A trace like Pat's, on screen with Pat's last trace (frames 210-240): never grouped with them."""
    trace = add_traces(hamilton, [(907, 215, 235, near(PAT, 0.12, 907))])[907]
    grouping.regroup()
    return trace.pk


def summary(page) -> str:
    return page.inner_text(".cast-counts")


def reload(s: Session) -> str:
    s.page.reload()
    s.page.wait_for_selector("#cast[data-ready='1']")
    return summary(s.page)


def test_not_this_person_sticks_and_the_summary_stays_true(live_server, browser_page, cast, twin):
    s = Session(browser_page, live_server)
    page = s.page
    pat, lookalike = cast["pat"], cast["lookalike"]
    assert s.pks_of(pat[0]) == {*pat, lookalike} and s.pks_of(twin) == {twin}

    # x on the look-alike: kept, so a reload shows it apart still; the summary counts one group more.
    before = summary(page)
    page.click(f".cast-tile[data-pk='{lookalike}'] .cast-remove")
    page.wait_for_function(f"() => document.querySelector(\".cast-tile[data-pk='{lookalike}']\")"
                           f".closest('.cast-group').dataset.pks === '{lookalike}'")
    assert NotSamePerson.objects.filter(trace_id=lookalike).count() == len(pat)
    after = summary(page)
    assert after != before and after == reload(s)
    assert s.pks_of(pat[0]) == set(pat) and s.pks_of(lookalike) == {lookalike}

    # Name Pat: the twin's group offers "Accept: Pat Person" at once, without a reload.
    page.click(f".cast-group:has(.cast-tile[data-pk='{pat[0]}']) .cast-name input")
    page.keyboard.type("Pat Person")
    page.keyboard.press("Escape")
    page.press(f".cast-group:has(.cast-tile[data-pk='{pat[0]}']) .cast-name input", "Enter")
    s.wait_gone(pat[0])
    chip = page.wait_for_selector(f".cast-group:has(.cast-tile[data-pk='{twin}']) .cast-chip.confident")
    assert chip.inner_text() == "Accept: Pat Person"
    assert "Pat Person" in chip.get_attribute("title")  # the full name, however the chip is cut
    # ... but never for the look-alike: it is not Pat.
    assert "Pat Person" not in s.group(lookalike).inner_text()
    after_name = summary(page)
    assert after_name == reload(s)

    # Hide a face, accept the twin: still true after each.
    hidden = cast["fillers"][3][0]
    page.focus(f".cast-tile[data-pk='{hidden}']")
    page.keyboard.press("h")
    s.wait_gone(hidden)
    assert summary(page) == reload(s)
    page.click(f".cast-group:has(.cast-tile[data-pk='{twin}']) .cast-chip.confident")
    s.wait_gone(twin)
    assert summary(page) == reload(s)
    assert set(Identity.objects.get(name="Pat Person").traces.values_list("pk", flat=True)) == {*pat, twin}
    s.report_timings()


def test_the_summary_ends_at_nobody(live_server, browser_page, cast):
    """Naming every group of one file ends at 0 unnamed traces in 0 groups (was "in 1 group")."""
    s = Session(browser_page, live_server)
    page = s.page
    facenet = Trace.objects.filter(trace_id__lt=900).exclude(file__name__contains="hamilton").first().file
    page.goto(f"{live_server.url}/admin/cast/{facenet.file_uuid}/")
    page.wait_for_selector("#cast[data-ready='1']")
    for number in itertools.count():
        boxes = page.locator("#cast-body .cast-groups .cast-name input")
        if boxes.count() == 0:
            break
        left = boxes.count() - 1
        boxes.first.click()
        page.keyboard.type(f"Person {number}")
        page.keyboard.press("Escape")
        boxes.first.press("Enter")
        page.wait_for_function(f"() => document.querySelectorAll('#cast-body .cast-groups .cast-name input')"
                               f".length === {left} || document.querySelector('.cast-offer:not([hidden])')")
    assert summary(page) == "0 unnamed traces in 0 groups"
    assert reload(s) == "0 unnamed traces in 0 groups"


def test_undoing_a_name_leaves_nobody_behind(live_server, browser_page, cast):
    s = Session(browser_page, live_server)
    page = s.page
    pat = cast["pat"]
    page.click(f".cast-group:has(.cast-tile[data-pk='{pat[0]}']) .cast-name input")
    page.keyboard.type("Orphan test")
    page.keyboard.press("Escape")
    page.press(f".cast-group:has(.cast-tile[data-pk='{pat[0]}']) .cast-name input", "Enter")
    s.wait_gone(pat[0])
    assert Identity.objects.filter(name="Orphan test").exists()
    page.keyboard.press("u")
    page.wait_for_selector(f".cast-group .cast-tile[data-pk='{pat[0]}']")
    assert not Identity.objects.filter(name="Orphan test").exists()
    change = CurationChange.objects.get(summary__startswith="Named Orphan test")
    assert change.undone_at is not None
    # The autocomplete does not offer a person who is gone.
    box = f".cast-group:has(.cast-tile[data-pk='{pat[0]}']) .cast-name input"
    page.click(box)
    page.keyboard.type("Orph")
    page.wait_for_timeout(600)  # the lookup waits 120 ms after typing
    assert page.locator(".cast-options:not([hidden]) li").count() == 0
    page.keyboard.press("Control+a")
    page.keyboard.type("Lin")  # while someone who exists is offered
    page.wait_for_selector(".cast-options:not([hidden]) li:has-text('Lin-Manuel Miranda')")


@pytest.mark.parametrize("width, height", [(1280, 720), (1400, 1000)])
def test_nothing_is_cut_or_covered(live_server, browser_page, cast, width, height):
    s = Session(browser_page, live_server)
    page = s.page
    page.set_viewport_size({"width": width, "height": height})
    # A suggestion chip in a one-face group carries the full name in its tooltip.
    chips = page.locator(".cast-chip")
    assert chips.count() >= 1
    for n in range(chips.count()):
        chip = chips.nth(n)
        assert chip.get_attribute("data-name") in chip.get_attribute("title")
    # Named people's cards: the full name in the tooltip.
    Identity.objects.filter(pk=cast["lin"].pk).update(name="Audience (unidentified people in the back rows)")
    page.reload()
    page.wait_for_selector("#cast[data-ready='1']")
    card = page.locator(".cast-person").first
    assert "Audience (unidentified people in the back rows)" in card.get_attribute("title")
    # The focused name box of a one-face group stays inside its group (it used to cover the next).
    single = page.locator(".cast-group[style*='--cols: 1']:has(.cast-name)").first
    single.locator(".cast-name input").click()
    box = single.locator(".cast-name input").bounding_box()
    group = single.bounding_box()
    assert box["x"] + box["width"] <= group["x"] + group["width"] + 0.5, (box, group)


@pytest.mark.parametrize("people", [3, 11, 30])
def test_the_cast_graph_labels_are_inside_and_apart(browser_page, people):
    long_names = ["Lin-Manuel Miranda", "Phillipa Soo as Eliza Hamilton", "Audience (unidentified)", "Ann",
                  "Christopher Jackson", "Renée Elise Goldsberry", "Leslie Odom Jr.", "Daveed Diggs",
                  "Jonathan Groff", "Okieriete Onaodowan", "Anthony Ramos"]
    nodes = [graph.Node(f"{long_names[n % len(long_names)]} {n}", 100 - n * 3) for n in range(people)]
    edges = [graph.Edge(a, b, 10.0, 250) for a in range(people) for b in range(a + 1, people) if (a + b) % 3 == 0]
    svg = graph.graph_svg(nodes, edges)
    page = browser_page
    page.set_content(f"<!doctype html><body style='margin:0'>{svg}</body>")
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll('.momentry-person text')).map(t => {
        const b = t.getBBox(); return [b.x, b.y, b.width, b.height, t.textContent]; })""")
    width, height = graph.WIDTH, graph.GRAPH_HEIGHT
    assert len(boxes) == people
    for x, y, w, h, text in boxes:
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, (text, x, y, w, h)
    for (x1, y1, w1, h1, t1), (x2, y2, w2, h2, t2) in itertools.combinations(boxes, 2):
        apart = x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 + 0.5 or y2 + h2 <= y1 + 0.5
        assert apart, (t1, t2, (x1, y1, w1, h1), (x2, y2, w2, h2))


def test_select_many_name_once_undo_once(live_server, browser_page, cast, staff_user):
    s = Session(browser_page, live_server)
    page = s.page
    crowd = [cast["fillers"][4][0], cast["fillers"][5][0], cast["fillers"][6][1]]  # three groups
    page.click(f".cast-tile[data-pk='{crowd[0]}'] img", modifiers=["Control"])
    page.click(f".cast-tile[data-pk='{crowd[1]}'] img", modifiers=["Shift"])
    page.focus(f".cast-tile[data-pk='{crowd[2]}']")
    page.keyboard.press(" ")
    bar = page.wait_for_selector("#cast-selection:not([hidden])")
    assert "3 faces selected" in bar.inner_text()
    assert not page.locator(f".cast-tile[data-pk='{crowd[0]}'] video").count()  # selecting does not play
    page.fill("#cast-selection input", "Crowd")
    page.keyboard.press("Escape")
    page.press("#cast-selection input", "Enter")
    for pk in crowd:
        s.wait_gone(pk)
    person = Identity.objects.get(name="Crowd")
    assert set(person.traces.values_list("pk", flat=True)) == set(crowd)
    assert CurationChange.objects.filter(user=staff_user, kind="bind").count() == 1  # one change
    assert page.locator("#cast-selection").is_hidden()
    assert summary(page) == reload(s)
    # One undo step puts all three back (and removes the person it made).
    page.keyboard.press("u")
    for pk in crowd:
        page.wait_for_selector(f".cast-group .cast-tile[data-pk='{pk}']")
    assert not Identity.objects.filter(name="Crowd").exists()
    assert not Trace.objects.filter(pk__in=crowd, identity__isnull=False).exists()
    # Hide many at once, then Esc clears a selection.
    page.click(f".cast-tile[data-pk='{crowd[0]}'] img", modifiers=["Control"])
    page.click(f".cast-tile[data-pk='{crowd[1]}'] img", modifiers=["Control"])
    page.click("#cast-selection .cast-selection-hide")
    s.wait_gone(crowd[0])
    s.wait_gone(crowd[1])
    assert Trace.objects.filter(pk__in=crowd[:2], ignored=True).count() == 2
    page.click(f".cast-tile[data-pk='{crowd[2]}'] img", modifiers=["Control"])
    page.wait_for_selector("#cast-selection:not([hidden])")
    page.keyboard.press("Escape")
    assert page.locator("#cast-selection").is_hidden()
