"""The frame reader against a sequential decode: every container and GOP shape the spec names.

Variants of the demo clips are made here with the project's ffmpeg: remuxes to MPEG-TS and
MKV (stream copy), a VP9 WebM, an open-GOP H.264 with B-frames and a variable-frame-rate
MKV. For each, the registration index must count exactly the frames a decoder outputs, and
the reader (single and batch) must return pixel-identical frames.
"""

from __future__ import annotations

import hashlib
import subprocess

import av
import numpy as np
import pytest
from django.conf import settings

from media_api.ffmpeg.frames import FrameReader, FrameReadError, read_frames
from media_api.ffmpeg.probe import probe_video
from tests.conftest import FACENET, HAMILTON

VARIANTS = {
    "hamilton.mp4": None,  # first pts 0.852 s, keyframes at scene cuts, no B-frames
    "facenet.mp4": None,  # one keyframe, B-frames
    "facenet.ts": (FACENET, ["-c", "copy"]),
    "hamilton.mkv": (HAMILTON, ["-c", "copy"]),
    "hamilton.webm": (HAMILTON, ["-t", "3", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                                 "-b:v", "300k", "-an"]),
    "open-gop.mp4": (HAMILTON, ["-t", "4", "-c:v", "libx264", "-preset", "veryfast",
                                "-x264-params", "open_gop=1:keyint=25:bframes=3", "-an"]),
    "vfr.mkv": (HAMILTON, ["-t", "4", "-vf", "select='lt(mod(n,7),4)',setpts='N/29.97/TB+if(gte(N,20),0.5,0)/TB'",
                           "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-an"]),
}


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    paths = {"hamilton.mp4": HAMILTON, "facenet.mp4": FACENET}
    for name, recipe in VARIANTS.items():
        if recipe is None:
            continue
        source, args = recipe
        target = folder / name
        subprocess.run([settings.FFMPEG_BINARY, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
                        *args, str(target)], check=True, timeout=120)
        paths[name] = target
    return paths


def digest(frame: av.VideoFrame) -> str:
    return hashlib.md5(frame.to_ndarray(format="yuv420p").tobytes()).hexdigest()


def sequential(path) -> list[str]:
    with av.open(str(path)) as container:
        return [digest(f) for f in container.decode(video=0)]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_reader_matches_sequential_decode(variants, name):
    path = variants[name]
    expected = sequential(path)
    index = probe_video(path).index
    assert len(index) == len(expected), "total_frames must be what a decoder outputs"
    if name == "vfr.mkv":
        assert len(set(np.diff(index.pts).tolist())) > 1, "the VFR variant has more than one frame duration"

    batch = {n: digest(f) for n, f in read_frames(path, index, range(len(index)))}
    assert batch == dict(enumerate(expected))

    keyframes = [int(k) for k in index.keyframes]
    probes = {0, len(index) - 1, len(index) // 2, *keyframes, *(k - 1 for k in keyframes if k),
              *(k + 1 for k in keyframes if k + 1 < len(index))}
    with FrameReader(path, index) as reader:
        for n in sorted(probes, reverse=True):  # backwards: every read is a real seek
            assert digest(reader.read(n)) == expected[n], (name, n)


def test_batch_decodes_each_gop_once(variants):
    index = probe_video(HAMILTON).index  # keyframes 0, 60, 120, 163, 211, 271
    with FrameReader(HAMILTON, index) as reader:
        got = [n for n, _ in reader.read_many([70, 5, 65, 10, 5])]
        assert got == [5, 10, 65, 70]
        # GOP 0 decoded from frame 0 to 10, GOP 60 from 60 to 70: nothing twice, nothing past the last.
        assert reader.frames_decoded == 11 + 11
    with FrameReader(HAMILTON, index) as reader:
        list(reader.read_many(range(275)))
        assert reader.frames_decoded == 275


@pytest.mark.parametrize("n", [0, 59, 60, 119, 162, 210, 270, 271, 274])
def test_cost_is_bounded_by_the_gop_not_n(n):
    index = probe_video(HAMILTON).index
    with FrameReader(HAMILTON, index) as reader:
        reader.read(n)
        assert reader.frames_decoded == n - index.keyframe_at_or_before(n) + 1


def test_pictures_nothing_needs_are_not_decoded(variants):
    """facenet.mp4 (one keyframe, B-frames): frame 104 needs only the reference pictures before it, exactly."""
    path = variants["facenet.mp4"]
    index = probe_video(path).index
    with FrameReader(path, index) as reader:
        last = digest(reader.read(104))
        assert reader.frames_decoded < 105 * 3 // 4, reader.frames_decoded  # 52: the B-frames nothing refers to skipped
    assert last == sequential(path)[104]


def test_out_of_range_and_unreadable(tmp_path):
    index = probe_video(HAMILTON).index
    with FrameReader(HAMILTON, index) as reader, pytest.raises(IndexError):
        reader.read(275)
    with pytest.raises(FrameReadError):
        FrameReader(tmp_path / "missing.mp4", index)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(HAMILTON.read_bytes()[:200_000])
    with pytest.raises(FrameReadError), FrameReader(truncated, index) as reader:
        reader.read(270)


def test_a_source_failure_crosses_a_process_boundary_intact():
    """A re-embed's reading process raises SourceUnavailable in another process: unpickled, it must still say
    which source failed and carry the answer (503 / 404), not become a TypeError."""
    import pickle

    from media_api.ffmpeg.frames import SourceUnavailable, api_error
    from media_api.ffmpeg.source import SourceMissing, StoreUnavailable

    for error, status in ((StoreUnavailable(), 503), (SourceMissing(), 404)):
        raised = SourceUnavailable("cannot open s3://bucket/key", error)
        received = pickle.loads(pickle.dumps(raised))
        assert type(received) is SourceUnavailable and str(received) == str(raised)
        assert api_error(received).status == status


@pytest.mark.parametrize("name", ["hamilton.mp4", "facenet.mp4", "open-gop.mp4", "vfr.mkv", "facenet.ts"])
def test_range_reads_are_exact_and_decode_each_frame_once(variants, name):
    path = variants[name]
    expected = sequential(path)
    index = probe_video(path).index
    last = len(index) - 1
    for start, end in [(0, last), (1, 7), (last // 3, last - 5), (last, last)]:
        with FrameReader(path, index) as reader:
            got = [(n, digest(f)) for n, f in reader.iter_range(start, end)]
            assert got == [(n, expected[n]) for n in range(start, end + 1)], (name, start, end)
            keyframe = index.keyframe_at_or_before(start) or 0
            # one pass from the keyframe: at most the frames before start in that GOP are extra
            # (plus an open GOP's leading pictures, which a decoder must output too)
            assert reader.frames_decoded <= end - keyframe + 1 + 4, (name, reader.frames_decoded)


def test_range_outside_the_index_is_refused():
    index = probe_video(HAMILTON).index
    with FrameReader(HAMILTON, index) as reader:
        for start, end in [(-1, 3), (3, 2), (0, 275)]:
            with pytest.raises(IndexError):
                list(reader.iter_range(start, end))
