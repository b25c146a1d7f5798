"""manage.py prewarm_thumbnails: every trace warmed once, resumable, parallel, failures and Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import signal

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from media_api.models import Trace
from media_api.services import prewarm, representative
from media_api.services.detections_import import import_detections
from tests.conftest import REPO


def load_demo(media_file, stem: str) -> None:
    rows = json.loads((REPO / "demo" / "detections" / f"{stem}.json").read_text())["detections"]
    import_detections(media_file, rows)


@pytest.fixture
def demo_traces(hamilton, facenet):
    load_demo(hamilton, "face_recognition_short_hamilton_clip")
    load_demo(facenet, "facenet_pytorch_video")
    return Trace.objects.count()


def many_traces(media_file, count: int) -> None:
    """``count`` short synthetic traces spread over the file (boxes moving across the picture)."""
    rows = []
    for trace_id in range(1, count + 1):
        first = (trace_id * 7) % (media_file.total_frames - 20)
        for k in range(0, 20, 4):
            rows.append({"trace_id": trace_id, "frame_number": first + k, "x": (trace_id * 37 + k) % 500,
                         "y": (trace_id * 13) % 250, "width": 60 + k, "height": 80, "confidence": 0.5 + k / 50})
    import_detections(media_file, rows)


def face_files(settings) -> list:
    return sorted((settings.CACHE_DIR / "images").rglob("face-*.jpg"))


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("prewarm_thumbnails", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_warms_every_trace_then_skips(demo_traces, settings, monkeypatch):
    out = run("--workers", "1")
    assert f"done: {demo_traces}; skipped: 0" in out
    traces = list(Trace.objects.all())
    assert all(t.rep_version == t.detections_version for t in traces)
    files = face_files(settings)
    assert len(files) == demo_traces
    for path in files:
        assert Image.open(path).size == (320, 320)

    # A second run decodes nothing.
    from media_api.ffmpeg import frames

    monkeypatch.setattr(frames.FrameReader, "__init__", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    out = run("--workers", "1")
    assert f"done: 0; skipped: {demo_traces} ({demo_traces} already done)" in out


def test_same_choice_as_the_http_route(demo_traces, api_client, facenet):
    run("--workers", "2", "--file", facenet.file_uuid)
    warmed = {t.trace_id: (t.rep_frame_number, t.rep_x, t.rep_blur_score)
              for t in Trace.objects.filter(file=facenet)}
    assert set(warmed) == set(Trace.objects.filter(file=facenet).values_list("trace_id", flat=True))
    assert len(warmed) >= 10
    assert not Trace.objects.exclude(file=facenet).filter(rep_version__isnull=False).exists()
    # Forget the choices, let the route compute them one by one: the same faces, the same bytes.
    cached = {t: api_client.get(f"/api/v1/file/{facenet.file_uuid}/trace/{t}/thumbnail").content for t in warmed}
    Trace.objects.update(rep_version=None)
    for trace_id, (frame, x, blur) in warmed.items():
        rep = api_client.get(f"/api/v1/file/{facenet.file_uuid}/trace/{trace_id}/representative-face").json()
        assert (rep["representative"]["frame_number"], rep["representative"]["bbox"]["x"]) == (frame, x)
        assert rep["representative"]["blur_score"] == pytest.approx(blur, abs=1e-6)
        assert api_client.get(f"/api/v1/file/{facenet.file_uuid}/trace/{trace_id}/thumbnail").content == \
            cached[trace_id]


def test_parallel_batches_match_one_process(hamilton, settings):
    many_traces(hamilton, 30)
    out = run("--workers", "2", "--batch-size", "4")
    assert "done: 30; skipped: 0" in out
    parallel = dict(Trace.objects.values_list("trace_id", "rep_frame_number"))
    run("--workers", "1", "--force")
    assert dict(Trace.objects.values_list("trace_id", "rep_frame_number")) == parallel
    assert len(face_files(settings)) == 30


def test_missing_thumbnail_is_rendered_again_alone(demo_traces, settings):
    run("--workers", "1")
    victim = face_files(settings)[0]
    victim.unlink()
    out = run("--workers", "1")
    assert f"done: 1; skipped: {demo_traces - 1}" in out
    assert victim.exists()


def test_failures_are_summarised(demo_traces, hamilton, tmp_path):
    hamilton.path = str(tmp_path / "moved-away.mp4")
    hamilton.save(update_fields=["path"])
    Trace.objects.create(file=hamilton, trace_id=50)  # no detections at all
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("prewarm_thumbnails", "--workers", "1", stdout=out, stderr=io.StringIO())
    assert failure.value.returncode == 1
    text = out.getvalue()
    hamilton_traces = Trace.objects.filter(file=hamilton, face_count__gt=0).count()
    assert f"done: {demo_traces - hamilton_traces}" in text and "1 no detections" in text
    assert f"failed: {hamilton_traces}" in text and "cannot open" in text and f"{hamilton.file_uuid}/1" in text


def test_unknown_file_and_bad_options(db):
    with pytest.raises(CommandError, match="unknown file_uuid"):
        run("--file", "0" * 32)
    with pytest.raises(CommandError, match="at least 1"):
        run("--workers", "0")


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, as in a terminal: a suite started in the background (``cmd &``
    without job control) inherits SIGINT ignored, and the simulated Ctrl-C would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_keeps_finished_work_and_leaves_no_partial_file(hamilton, settings, monkeypatch, workers,
                                                               ctrl_c_raises):
    many_traces(hamilton, 24)
    real_record = prewarm.record
    calls = []

    def record_then_interrupt(*args, **kwargs):
        real_record(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(prewarm, "record", record_then_interrupt)
    with pytest.raises(CommandError) as interrupted:
        run("--workers", workers, "--batch-size", "3")
    assert interrupted.value.returncode == 130
    warmed = Trace.objects.filter(rep_version__isnull=False).count()
    assert 3 <= warmed < 24
    leftovers = [p for p in (settings.CACHE_DIR / "images").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    for path in face_files(settings):
        Image.open(path).verify()  # whole JPEGs only

    monkeypatch.setattr(prewarm, "record", real_record)
    out = run("--workers", "1")
    assert f"done: {24 - warmed}; skipped: {warmed} ({warmed} already done)" in out
    assert representative.candidates_for([]) == {}


@pytest.mark.django_db(transaction=True)
def test_workers_die_with_a_killed_parent(hamilton, settings):
    """``kill -9`` of the command must not leave its worker processes running without a parent."""
    import subprocess
    import sys
    import time

    from media_api.ffmpeg.process import acquire_slot
    from tests.servers import alive, children_of, process_env, wait_for

    many_traces(hamilton, 8)
    settings.MOMENTRY_MAX_FFMPEG_JOBS = 4
    slots = [acquire_slot(wait_seconds=5) for _ in range(4)]  # the workers will wait for a slot, alive
    command = subprocess.Popen([sys.executable, "manage.py", "prewarm_thumbnails", "--workers", "2"], cwd=REPO,
                               env=process_env(MOMENTRY_MAX_FFMPEG_JOBS="4"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        workers = wait_for(lambda: len(children_of(command.pid)) >= 2 and children_of(command.pid), timeout=60)
        time.sleep(0.5)  # the workers are waiting for a media job slot
        os.kill(command.pid, signal.SIGKILL)
        command.wait(timeout=10)
        wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)
    finally:
        for slot in slots:
            slot.release()
        if command.poll() is None:
            command.kill()
        for pid in workers:  # (only when the test fails: do not leave them behind)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
