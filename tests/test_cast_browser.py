"""The cast page in a real headless Chromium (Debian's package) driven by Playwright.

Data: the demo clips' real traces and face embeddings (demo/detections), plus people imported on
the Hamilton clip with deterministic embeddings: Pat in five traces with a look-alike grouped with
them (a face to take out), and nine other people in five traces each so the grid is full.

Actions are counted explicitly (a click or a key press; typing a name is not an action), and the
server time of every call the page makes is read from its ``Server-Timing`` header and reported
(the < 300 ms goal with 10 000 traces is bench/bench_cast.py's, never a timed assertion here).
"""

from __future__ import annotations

import re

import pytest

from identities.cast import grouping
from identities.models import CurationChange, Identity
from media_api.models import Trace
from tests import browser
from tests.test_cast_page import _load_demo, add_traces, direction, near

browser_page = browser.browser_page  # the shared fixture (tests/browser.py)
pytestmark = [pytest.mark.browser, browser.needs_chromium, pytest.mark.django_db(transaction=True)]

PAT = direction(31)


@pytest.fixture
def cast(hamilton, facenet, staff_user):
    """The demo's traces with the performer named from his wide shot, Pat and a look-alike, nine fillers."""
    _load_demo(hamilton, "face_recognition_short_hamilton_clip")
    _load_demo(facenet, "facenet_pytorch_video")
    lin = Identity.objects.create(name="Lin-Manuel Miranda")
    wide = _trace_at(hamilton, 0, 540, 75)  # the performer in the wide shot (bench/faces_eval/people.json)
    Trace.objects.filter(pk=wide.pk).update(identity=lin)
    specs = [(900 + n, 30 + n * 45, 60 + n * 45, near(PAT, 0.12, 900 + n)) for n in range(5)]
    specs.append((906, 0, 25, near(PAT, 0.2, 906)))  # the look-alike: another person, close enough to group
    for person in range(9):
        specs += [(1000 + person * 10 + n, n * 55, n * 55 + 40, near(direction(40 + person), 0.12, person * 10 + n))
                  for n in range(5)]
    traces = add_traces(hamilton, specs)
    grouping.regroup()
    return {
        "lin": lin,
        "medium": _trace_at(hamilton, 198, 291, 100),  # the performer in the medium shots: a confident match
        "pat": [traces[900 + n].pk for n in range(5)],
        "lookalike": traces[906].pk,
        "fillers": [[traces[1000 + p * 10 + n].pk for n in range(5)] for p in range(9)],
    }


def _trace_at(media_file, frame: int, x: int, y: int) -> Trace:
    """The trace whose box on ``frame`` holds the point (how bench/faces_eval/people.json names people)."""
    from django.db.models import F

    from media_api.models import Detection

    # The demo's own traces only (trace ids below 900): the made-up people's boxes may hold the point too.
    found = Detection.objects.filter(file=media_file, frame_number=frame, x__lte=x, y__lte=y, x__gt=x - F("width"),
                                     y__gt=y - F("height"), trace__trace_id__lt=900)
    pk = found.values_list("trace_id", flat=True).get()
    return Trace.objects.get(pk=pk)


class Session:
    """The page, the actions taken on it and the server time of every call it made."""

    def __init__(self, page, live_server):
        self.page = page
        self.actions = 0
        self.timings: list[tuple[str, float]] = []
        page.on("response", self._timing)
        page.goto(f"{live_server.url}/admin/login/?next=/admin/cast/")
        page.fill("#id_username", "staff")
        page.fill("#id_password", "staff-pass-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#cast[data-ready='1']")

    def _timing(self, response) -> None:
        header = response.headers.get("server-timing", "")
        found = re.search(r"app;dur=([0-9.]+)", header)
        if found and "/admin/cast/" in response.url:
            self.timings.append((response.url, float(found.group(1))))

    def act(self, what: str, *args, **kwargs):
        """One action: a click or a key press."""
        self.actions += 1
        return getattr(self.page, what)(*args, **kwargs)

    def group(self, pk: int):
        return self.page.locator(f".cast-group:has(.cast-tile[data-pk='{pk}'])")

    def tile(self, pk: int):
        return self.page.locator(f".cast-tile[data-pk='{pk}']")

    def pks_of(self, pk: int) -> set[int]:
        return {int(p) for p in self.group(pk).get_attribute("data-pks").split(",")}

    def wait_gone(self, pk: int) -> None:
        self.page.wait_for_selector(f".cast-group .cast-tile[data-pk='{pk}']", state="detached")

    def report_timings(self) -> None:
        """Every call the page made reported its server time (the 300 ms goal is measured with
        10 000 traces by bench/bench_cast.py, not asserted here: this machine is shared and noisy)."""
        assert self.timings and all(ms >= 0 for _, ms in self.timings)
        slowest = max(self.timings, key=lambda timing: timing[1])
        print(f"cast page: {len(self.timings)} calls, slowest {slowest[1]:.1f} ms ({slowest[0]})")


def test_naming_a_person_takes_three_actions(live_server, browser_page, cast, tmp_path):
    s = Session(browser_page, live_server)
    page = s.page
    pat, lookalike = cast["pat"], cast["lookalike"]
    assert s.pks_of(pat[0]) == {*pat, lookalike}  # grouped by likely person, the look-alike among them

    s.act("click", f".cast-tile[data-pk='{lookalike}'] .cast-remove")  # 1: not this person
    page.wait_for_function(f"() => document.querySelector(\".cast-tile[data-pk='{lookalike}']\")"
                           f".closest('.cast-group').dataset.pks === '{lookalike}'")
    assert s.pks_of(pat[0]) == set(pat)
    s.act("click", f".cast-group:has(.cast-tile[data-pk='{pat[0]}']) .cast-name input")  # 2: the name box
    page.keyboard.type("Pat Person")  # typing the name
    s.act("press", f".cast-group:has(.cast-tile[data-pk='{pat[0]}']) .cast-name input", "Enter")  # 3
    s.wait_gone(pat[0])

    assert s.actions == 3
    person = Identity.objects.get(name="Pat Person")
    assert sorted(person.traces.values_list("pk", flat=True)) == sorted(pat)
    assert Trace.objects.get(pk=lookalike).identity is None
    assert s.pks_of(lookalike) == {lookalike}  # still on the page, a group of its own
    assert "Named “Pat Person”: 5 traces" in page.inner_text("#cast-status")
    page.wait_for_selector(".cast-person:has-text('Pat Person')")  # the named section, updated in place
    assert "5 traces" in page.inner_text(".cast-person:has-text('Pat Person')")

    # A name that exists: the page offers "merge into existing" instead of a duplicate.
    filler = cast["fillers"][0]
    box = f".cast-group:has(.cast-tile[data-pk='{filler[0]}']) .cast-name input"
    page.click(box)
    page.keyboard.type("pat person")
    page.keyboard.press("Escape")  # close the autocomplete: submit the typed name itself
    page.press(box, "Enter")
    offer = page.wait_for_selector(".cast-offer:not([hidden])")
    assert "“Pat Person” already exists (5 traces)" in offer.inner_text()
    page.click(".cast-offer:not([hidden]) .cast-merge")
    s.wait_gone(filler[0])
    assert person.traces.count() == 10 and Identity.objects.filter(name__iexact="pat person").count() == 1
    s.report_timings()
    shot = tmp_path / "cast.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_accept_remove_hide_undo_and_arrows(live_server, browser_page, cast, staff_user):
    s = Session(browser_page, live_server)
    page = s.page
    lin, medium = cast["lin"], cast["medium"]

    # A confident suggestion, accepted in one click.
    chip = s.group(medium.pk).locator(".cast-chip.confident")
    assert chip.inner_text() == "Accept: Lin-Manuel Miranda"
    s.actions = 0
    s.act("click", f".cast-group:has(.cast-tile[data-pk='{medium.pk}']) .cast-chip.confident")
    s.wait_gone(medium.pk)
    assert s.actions == 1
    assert Trace.objects.get(pk=medium.pk).identity_id == lin.pk

    # Take a face out with a click, and another with x.
    first, second = cast["fillers"][1][:2]
    page.click(f".cast-tile[data-pk='{first}'] .cast-remove")
    page.wait_for_function(f"() => document.querySelector(\".cast-tile[data-pk='{first}']\")"
                           f".closest('.cast-group').dataset.pks === '{first}'")
    page.focus(f".cast-tile[data-pk='{second}']")
    page.keyboard.press("x")
    page.wait_for_function(f"() => document.querySelector(\".cast-tile[data-pk='{second}']\")"
                           f".closest('.cast-group').dataset.pks === '{second}'")
    assert s.pks_of(cast["fillers"][1][2]) == set(cast["fillers"][1][2:])
    assert page.evaluate("() => document.activeElement.classList.contains('cast-tile')")

    # Hide with h, undo with u.
    hidden = cast["fillers"][2][0]
    page.focus(f".cast-tile[data-pk='{hidden}']")
    page.keyboard.press("h")
    s.wait_gone(hidden)
    assert Trace.objects.get(pk=hidden).ignored is True
    assert page.inner_text(".cast-hidden-toggle") == "Hidden (1)"
    assert CurationChange.objects.filter(kind="hide", user=staff_user).count() == 1
    page.keyboard.press("u")
    page.wait_for_selector(f".cast-group .cast-tile[data-pk='{hidden}']")
    assert Trace.objects.get(pk=hidden).ignored is False
    assert "Undid hide" in page.inner_text("#cast-status")
    # "Not this person" is kept, so it is undone too, newest first: each face rejoins its group.
    for face in (second, first):
        page.keyboard.press("u")
        page.wait_for_function(f"() => document.querySelector(\".cast-tile[data-pk='{face}']\")"
                               f".closest('.cast-group').dataset.pks.split(',').length > 1")
        assert s.pks_of(face) >= {face, cast["fillers"][1][2]}
    # u again: the accepted suggestion is undone (the user's latest change that still applies).
    page.keyboard.press("u")
    page.wait_for_selector(f".cast-group .cast-tile[data-pk='{medium.pk}']")
    assert Trace.objects.get(pk=medium.pk).identity_id is None

    # Arrow keys move between faces: right is the next one, down the one below.
    tiles = page.locator("#cast-body .cast-tile")
    page.focus(f"#cast-body .cast-tile[data-pk='{tiles.nth(0).get_attribute('data-pk')}']")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.dataset.pk") == tiles.nth(1).get_attribute("data-pk")
    before = page.evaluate("() => document.activeElement.getBoundingClientRect().top")
    page.keyboard.press("ArrowDown")
    after = page.evaluate("() => document.activeElement.getBoundingClientRect().top")
    assert after > before
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("() => document.activeElement.classList.contains('cast-tile')")
    # Enter goes to the focused face's name box.
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.matches('.cast-name input')")
    s.report_timings()


def test_the_grid_the_clip_and_the_player(live_server, browser_page, cast):
    s = Session(browser_page, live_server)
    page = s.page
    visible = page.evaluate("""() => Array.from(document.querySelectorAll('#cast-body .cast-tile')).filter(t => {
        const r = t.getBoundingClientRect();
        return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; }).length""")
    assert visible >= 40, visible

    # Hovering a face plays its face-following crop clip; until it plays the tile shows the face and a
    # spinner. The clips are held back here (routed) to see the page while they load.
    pk = cast["pat"][0]
    held, release = [], {"now": False}

    def hold(route):
        if release["now"]:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"/trace/\d+/video\?crop=face&size="), hold)
    page.hover(f".cast-tile[data-pk='{pk}'] img")
    video = page.wait_for_selector(f".cast-tile[data-pk='{pk}'] video")
    assert video.get_attribute("poster").endswith("/thumbnail")
    assert re.search(r"/api/v1/file/[0-9a-f]{32}/trace/900/video\?crop=face&size=(96|192)$", video.get_attribute("src"))
    page.wait_for_timeout(600)
    loading = page.evaluate(f"""() => {{ const tile = document.querySelector(".cast-tile[data-pk='{pk}']");
        const img = tile.querySelector("img"), video = tile.querySelector("video");
        return {{ spinner: getComputedStyle(tile, "::before").animationName, img: img.complete && img.naturalWidth > 0,
                 imgVisible: getComputedStyle(img).visibility === "visible" && getComputedStyle(img).opacity === "1",
                 videoOpacity: getComputedStyle(video).opacity, readyState: video.readyState }}; }}""")
    assert loading == {"spinner": "cast-spin", "img": True, "imgVisible": True, "videoOpacity": "0",
                       "readyState": 0}, loading
    # Rendering ahead for the tiles in view: 1-byte requests, never more than two at once.
    def warm() -> list[str]:
        return [route.request.url for route in held if route.request.headers.get("range") == "bytes=0-0"]

    for _ in range(300):  # the first warm-ups may have started before the route was set: wait for two held
        if len(warm()) >= 2:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)
    assert len(warm()) == 2, warm()
    release["now"] = True
    for route in held:
        route.continue_()
    page.wait_for_function(f"""() => {{ const v = document.querySelector(".cast-tile[data-pk='{pk}'] video");
        return v && v.readyState >= 2 && v.currentTime > 0 && getComputedStyle(v).opacity === "1"; }}""",
                           timeout=60_000)
    assert page.evaluate(f"""() => !document.querySelector(".cast-tile[data-pk='{pk}']")
        .classList.contains("cast-loading")""")
    size = page.evaluate(f"""() => {{ const v = document.querySelector(".cast-tile[data-pk='{pk}'] video");
        return [v.videoWidth, v.videoHeight]; }}""")
    assert size in ([96, 96], [192, 192]), size
    page.mouse.move(2, 2)
    page.wait_for_selector(f".cast-tile[data-pk='{pk}'] video", state="detached")
    # More tiles got their clip rendered ahead meanwhile, two at a time.
    page.wait_for_function("() => performance.getEntriesByType('resource').filter(e => "
                           "e.name.includes('crop=face') && e.initiatorType === 'fetch').length >= 4", timeout=60_000)

    # Each face links to the file's player at the trace's first frame.
    link = page.get_attribute(f".cast-tile[data-pk='{pk}'] .cast-play", "href")
    trace = Trace.objects.select_related("file").get(pk=pk)
    assert link.startswith(f"/api/v1/file/{trace.file.file_uuid}/video#t=")
    assert float(link.split("#t=")[1]) == pytest.approx(trace.start_frame / trace.file.fps, abs=0.05)
    s.report_timings()
