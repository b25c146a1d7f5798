"""The FFmpeg process layer: job pool (503 BUSY), timeouts, stderr logging, killing on disconnect."""

from __future__ import annotations

import logging
import os
import time

import pytest

from media_api.ffmpeg import process
from momentry.errors import Busy, MediaError
from tests.conftest import HAMILTON


@pytest.fixture(autouse=True)
def _own_locks(settings, tmp_path):
    """Private slot files, so other test runs on the machine neither block nor see ours."""
    settings.DATA_DIR = tmp_path
    settings.MOMENTRY_MAX_FFMPEG_JOBS = 2
    settings.MOMENTRY_FFMPEG_WAIT_SECONDS = 0.3


def _children_named(name: str) -> list[int]:
    """PIDs of this process's live (not zombie) children whose command is ``name`` — psutil-free."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == os.getpid() and name in comm and state != "Z":
            found.append(int(entry))
    return found


def close_response(response) -> None:
    """Close a response as a server does on disconnect, keeping the test's DB connection open.

    ``response.close()`` fires ``request_finished``, whose ``close_old_connections`` would
    close the connection holding the test transaction (PostgreSQL); the test client guards
    this only for bodies read to the end.
    """
    from unittest import mock

    with mock.patch("django.db.backends.base.base.BaseDatabaseWrapper.close_if_unusable_or_obsolete"):
        response.close()


def slow_encode_args() -> list[str]:
    """A job that runs for a while: re-encode the clip in a loop to stdout."""
    return ["-stream_loop", "20", "-i", str(HAMILTON), "-c:v", "libx264", "-preset", "ultrafast", "-an",
            "-f", "mpegts", "pipe:1"]


def test_slots_saturate_then_busy_with_retry_after():
    with process.media_job_slot(), process.media_job_slot():
        started = time.monotonic()
        with pytest.raises(Busy) as info:
            with process.media_job_slot():
                pass
        assert time.monotonic() - started >= 0.25  # it waited before giving up
        assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    with process.media_job_slot():  # freed again
        pass


def test_slot_is_freed_by_an_exception():
    with pytest.raises(RuntimeError):
        with process.media_job_slot():
            raise RuntimeError("boom")
    with process.media_job_slot(), process.media_job_slot():
        pass


def test_run_ffmpeg_returns_stdout():
    data = process.run_ffmpeg(["-i", str(HAMILTON), "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "pipe:1"])
    assert data.startswith(b"\x89PNG")


def test_failure_logs_stderr_and_command_but_raises_generic_error(caplog):
    with caplog.at_level(logging.ERROR, logger="media_api.ffmpeg"):
        with pytest.raises(MediaError) as info:
            process.run_ffmpeg(["-i", "/no/such/input.mp4", "-f", "null", "-"])
    assert "No such file" not in info.value.message  # never sent to clients
    text = caplog.text
    assert "/no/such/input.mp4" in text and "No such file or directory" in text


def test_timeout_kills_the_job(caplog):
    with caplog.at_level(logging.ERROR, logger="media_api.ffmpeg"):
        started = time.monotonic()
        with pytest.raises(MediaError):
            process.run_ffmpeg(slow_encode_args(), timeout=0.5)
    assert time.monotonic() - started < 5
    assert "timed out" in caplog.text
    assert _children_named("ffmpeg") == []


def test_closing_a_stream_after_the_first_chunk_kills_and_reaps_ffmpeg():
    stream = process.open_stream(slow_encode_args())
    pid = stream.process.pid
    assert pid in _children_named("ffmpeg")
    first = next(iter(stream))
    assert first
    stream.close()  # what Django does on client disconnect
    assert stream.process.poll() is not None
    assert _children_named("ffmpeg") == []
    # its slot went back to the pool
    with process.media_job_slot(), process.media_job_slot():
        pass


def test_stream_holds_a_slot_until_closed():
    one = process.open_stream(slow_encode_args())
    two = process.open_stream(slow_encode_args())
    try:
        with pytest.raises(Busy):
            process.open_stream(slow_encode_args())
    finally:
        one.close()
        two.close()
    assert _children_named("ffmpeg") == []


def test_stream_that_fails_before_output_raises_media_error():
    with pytest.raises(MediaError):
        process.open_stream(["-i", "/no/such/input.mp4", "-f", "mpegts", "pipe:1"])
    assert _children_named("ffmpeg") == []
    with process.media_job_slot(), process.media_job_slot():  # the slot was released
        pass


def test_stream_timeout_ends_the_stream():
    stream = process.open_stream(slow_encode_args(), timeout=0.5)
    received = sum(len(chunk) for chunk in stream)
    assert received > 0
    assert stream.closed and stream.process.poll() is not None


def test_arguments_must_be_strings():
    with pytest.raises(TypeError):
        process.ffmpeg_command(["-i", HAMILTON])  # a Path must be converted deliberately
