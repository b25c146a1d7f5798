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


# --- Cut-off files: registered with the frames they have, and flagged ---------------------------------


def _ffmpeg(source, target, *args: str):
    import subprocess

    from django.conf import settings

    subprocess.run([settings.FFMPEG_BINARY, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), *args,
                    str(target)], check=True, timeout=120)
    return target


def _first_half(path, target):
    data = path.read_bytes()
    target.write_bytes(data[:len(data) // 2])
    return target


@pytest.fixture(scope="module")
def cut_clips(tmp_path_factory):
    """Stream-copied remuxes of the Hamilton clip (made with the project's ffmpeg) and their first halves.

    The demo MP4s keep their index (moov) at the end, so their first half is no video at all; a
    "faststart" MP4 has it first, so its first half opens and plays: the case to flag.
    """
    folder = tmp_path_factory.mktemp("cut")
    whole = {
        "faststart.mp4": _ffmpeg(HAMILTON, folder / "faststart.mp4", "-c", "copy", "-movflags", "+faststart"),
        "remux.mkv": _ffmpeg(HAMILTON, folder / "remux.mkv", "-c", "copy"),
        "remux.ts": _ffmpeg(HAMILTON, folder / "remux.ts", "-c", "copy"),
    }
    halves = {name: _first_half(path, folder / f"half-{name}") for name, path in whole.items()}
    return whole, halves


@pytest.mark.django_db
def test_a_cut_faststart_mp4_registers_as_truncated(cut_clips, caplog):
    _, halves = cut_clips
    with caplog.at_level("WARNING", logger="media_api.files"):
        media_file = register_file(halves["faststart.mp4"]).file
    assert 100 < media_file.total_frames < 275  # the frames that are there are indexed and served
    assert media_file.truncated is True
    assert len(media_file.warnings) == 1
    assert f"{media_file.total_frames} of the 275 frames the container declares" in media_file.warnings[0]
    logged = [r for r in caplog.records if r.levelname == "WARNING" and media_file.file_uuid in r.getMessage()]
    assert len(logged) == 1 and "truncated" in logged[0].getMessage()
    assert list(frame_index_for(media_file).pts) == decodable_pts(halves["faststart.mp4"])


def decodable_pts(path) -> list[int]:
    """Every frame a decoder gets out of a cut file (its last, partial packet is an error, skipped)."""
    pts = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                pts.extend(frame.pts for frame in packet.decode())
            except av.InvalidDataError:
                continue
    return sorted(pts)


@pytest.mark.django_db
def test_whole_files_and_remuxes_are_not_flagged(cut_clips):
    whole, _ = cut_clips
    for path in (HAMILTON, FACENET, *whole.values()):
        media_file = register_file(path).file
        assert (media_file.truncated, media_file.warnings) == (False, []), path.name
        assert media_file.total_frames == (105 if path == FACENET else 275)


@pytest.mark.django_db
def test_a_cut_matroska_is_flagged_by_its_duration_and_a_cut_ts_cannot_be(cut_clips):
    _, halves = cut_clips
    mkv = register_file(halves["remux.mkv"]).file
    assert mkv.truncated and "before the duration its container declares" in mkv.warnings[0]
    ts = register_file(halves["remux.ts"]).file  # MPEG-TS declares no duration: nothing to compare with
    assert ts.total_frames < 275 and not ts.truncated


@pytest.mark.django_db
def test_truncated_in_the_file_json_the_schema_the_command_and_the_admin(cut_clips, staff_user, capsys):
    from django.test import Client

    from tests.helpers_rest import key_client

    _, halves = cut_clips
    call_command("register_file", str(halves["faststart.mp4"]), str(HAMILTON))
    streams = capsys.readouterr()
    assert streams.err.count("warning: ") == 1 and "half-faststart.mp4: truncated:" in streams.err
    cut = MediaFile.objects.get(truncated=True)
    client, _ = key_client(staff_user)
    detail = client.get(f"/api/v1/file/{cut.file_uuid}").json()
    assert detail["truncated"] is True and detail["warnings"] == cut.warnings
    listed = {f["file_uuid"]: f for f in client.get("/api/v1/files").json()["files"]}
    assert listed[HAMILTON_UUID]["truncated"] is False and listed[HAMILTON_UUID]["warnings"] == []
    schema = client.get("/api/v1/schema/?format=json").json()["components"]["schemas"]
    assert schema["File"]["properties"]["truncated"]["type"] == "boolean"
    assert schema["FileDetail"]["properties"]["warnings"]["type"] == "array"
    admin = Client()
    admin.force_login(staff_user)
    page = admin.get(f"/admin/media_api/mediafile/{cut.pk}/change/").content.decode()
    assert "completeness" in page and cut.warnings[0] in page
    assert "complete" in admin.get(f"/admin/media_api/mediafile/{MediaFile.objects.get(truncated=False).pk}/change/"
                                   ).content.decode()


@pytest.mark.django_db(transaction=True)
def test_registered_by_a_job_over_rest(cut_clips, staff_user, settings, tmp_path):
    """POST /api/v1/files → a real Celery worker registers the cut file → GET shows it truncated."""
    from tests.helpers_rest import key_client
    from tests.servers import celery_worker, wait_for

    _, halves = cut_clips
    folder = halves["faststart.mp4"].parent
    settings.MOMENTRY_MEDIA_ROOTS = [folder]
    writer, _ = key_client(staff_user, write=True)
    submitted = writer.post("/api/v1/files", {"path": str(halves["faststart.mp4"])}, format="json")
    assert submitted.status_code == 202, submitted.content
    job_id = submitted.json()["job"]["id"]
    with celery_worker(log_path=tmp_path / "worker.log", MOMENTRY_MEDIA_ROOTS=str(folder)):
        wait_for(lambda: writer.get(f"/api/v1/jobs/{job_id}").json()["job"]["state"] not in ("queued", "running"),
                 timeout=120, interval=0.2)
    job = writer.get(f"/api/v1/jobs/{job_id}").json()["job"]
    assert job["state"] == "succeeded", job
    detail = writer.get(f"/api/v1/file/{job['file_uuid']}").json()
    assert detail["truncated"] is True and "of the 275 frames" in detail["warnings"][0]
    assert b"truncated" in (tmp_path / "worker.log").read_bytes()  # the worker logged the warning
