"""register_file: probe, file_uuid, frame index, idempotence, bad paths (real clips, real PyAV)."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest
from django.core.management import CommandError, call_command

from media_api.models import FrameIndex, MediaFile
from media_api.services.files import ProbeError, frame_index_for, register_file
from tests.conftest import FACENET, FACENET_UUID, HAMILTON, HAMILTON_UUID


def decoded_pts(path) -> list[int]:
    """Presentation timestamps of every frame from a plain sequential decode."""
    with av.open(str(path)) as container:
        return [frame.pts for frame in container.decode(video=0)]


@pytest.mark.django_db
def test_hamilton_probe_and_index():
    media_file = register_file(HAMILTON).file
    assert media_file.file_uuid == HAMILTON_UUID
    assert (media_file.width, media_file.height) == (640, 360)
    assert media_file.fps_rational == "2997/100"
    assert media_file.fps == pytest.approx(29.97)
    assert media_file.total_frames == 275
    assert media_file.duration == pytest.approx(275 / 29.97, abs=0.002)
    assert media_file.has_audio and media_file.audio_codec == "aac"
    assert media_file.video_codec == "h264" and media_file.container == "mp4"
    index = frame_index_for(media_file)
    assert list(index.keyframes) == [0, 60, 120, 163, 211, 271]
    # The first video timestamp is 0.852 s, yet frame 0 is the first picture and starts at t=0.
    assert float(index.pts[0] * index.time_base) == pytest.approx(0.852, abs=0.001)
    assert index.seconds_of(0) == 0.0
    assert index.seconds_of(60) == pytest.approx(2.002, abs=0.001)
    assert list(index.pts) == decoded_pts(HAMILTON)


@pytest.mark.django_db
def test_facenet_bframes_single_keyframe():
    media_file = register_file(FACENET).file
    assert media_file.file_uuid == FACENET_UUID
    assert media_file.fps_rational == "25/1"
    assert media_file.total_frames == 105
    index = frame_index_for(media_file)
    assert list(index.keyframes) == [0]
    assert index.keyframe_at_or_before(104) == 0
    # B-frames: packets arrive in decode order; the index is in presentation order.
    assert list(index.pts) == decoded_pts(FACENET)
    assert index.time_base == Fraction(1, 12800)


@pytest.mark.django_db
def test_register_is_idempotent(capsys):
    first = register_file(HAMILTON)
    second = register_file(HAMILTON)
    assert not first.already_exists and second.already_exists
    assert first.file.pk == second.file.pk
    assert MediaFile.objects.count() == 1 and FrameIndex.objects.count() == 1


@pytest.mark.django_db
def test_command_prints_uuid_last(capsys):
    call_command("register_file", str(HAMILTON), str(FACENET))
    out = capsys.readouterr().out
    assert out.split()[-1] == FACENET_UUID
    call_command("register_file", str(HAMILTON))
    out = capsys.readouterr().out
    assert "already_exists" in out and out.split()[-1] == HAMILTON_UUID


@pytest.mark.django_db
def test_frame_index_is_compact():
    register_file(HAMILTON)
    row = FrameIndex.objects.get()
    assert len(bytes(row.pts)) < 275 * 8 / 4  # delta-encoded and compressed


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["missing", "directory", "text", "empty", "truncated"])
def test_bad_paths_write_nothing(tmp_path, kind):
    path = tmp_path / "input.mp4"
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(HAMILTON.read_bytes()[:2000])
    with pytest.raises(ProbeError):
        register_file(path)
    with pytest.raises(CommandError):
        call_command("register_file", str(path))
    assert MediaFile.objects.count() == 0 and FrameIndex.objects.count() == 0


def test_command_exit_status_and_message(tmp_path):
    """Through a real process: clear message on stderr, exit status 1."""
    import subprocess
    import sys

    from django.conf import settings

    env = {"MOMENTRY_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "register_file", str(tmp_path / "nope.mp4")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr
