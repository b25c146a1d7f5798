"""The one place a registered file becomes something FFmpeg or PyAV opens: a local path or a presigned URL.

A ``MediaFile.path`` is either a local path (absolute, resolved at registration, so never mistaken for
a protocol) or, for a file in an S3-compatible store (``storage == "s3"``), ``s3://bucket/key``. Every
opener of the layer (:class:`~media_api.ffmpeg.frames.FrameReader`, :func:`~media_api.ffmpeg.probe.probe_video`,
the ``-i`` of every ffmpeg command in :mod:`~media_api.ffmpeg.encode`) takes that value as it is and
calls :func:`open_input` / :func:`input_args`, which turn ``s3://`` into a presigned HTTP(S) URL at the
moment the input is opened (so a long prewarm or analysis never holds an expired one). FFmpeg's own
``http`` protocol then reads the object with bounded ``Range`` requests: a seek is a
new ranged request, a thumbnail of frame 14 000 reads about one GOP, a face-analysis chunk reads its
span — no host downloads a whole film, and no host needs the file on a disk.

Rules (process.py's hold too): a URL is one argv element after ``-i``, never in a shell or a filter
graph; only the http(s) protocols may be used for it (``protocol_whitelist``); an https store's
certificate is verified (:func:`tls_options`); every network read has a timeout; the signature in a
URL never reaches a log (:func:`redact`, and callers log the ``s3://`` form).

When a read fails, :func:`diagnose` says whether the source is to blame: the store does not answer or
refuses (:class:`StoreUnavailable`, a 503 with ``Retry-After``), or the object or file is gone for good
(:class:`SourceMissing`, a 404 ``SOURCE_MISSING``); otherwise the failure is the media's (500
``MEDIA_ERROR``). Every opener asks it (FrameReader, and process.py for every failed ffmpeg whose input
came from :func:`input_args`), so no route has its own mapping.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import av

from momentry.errors import ApiError, NotFound, Unavailable

if TYPE_CHECKING:
    from media_api.models import MediaFile

#: Size of one ranged HTTP request of PyAV (frames: thumbnails, crops, representative faces, face analysis):
#: small, so a cold thumbnail reads little more than the container index and one GOP (bench_storage: 1 MiB
#: read 3x the bytes in the same number of requests), yet a sequential decode still needs only a few
#: requests per second of 1080p video over one kept-alive connection.
FRAME_REQUEST_SIZE = 256 * 1024
#: The same for the ffmpeg processes (clips, segments, overlays), which always read a span sequentially.
STREAM_REQUEST_SIZE = 1 << 20
#: The registration's packet scan reads the whole object once, in order: few, large requests.
SCAN_REQUEST_SIZE = 8 << 20
#: Objects read for frames open through storage.reader's cache of their opening reads (off: FFmpeg's http
#: protocol, as the ffmpeg processes read; bench_storage compares the two in one run).
OPENING_CACHE = True
#: Network read/write timeout (microseconds, FFmpeg's unit): a stalled store fails the job, never hangs it.
RW_TIMEOUT_US = 30_000_000

_HTTP_OPTIONS = {
    "protocol_whitelist": "http,https,tcp,tls",
    "rw_timeout": str(RW_TIMEOUT_US),
    "multiple_requests": "1",  # keep-alive between ranged requests
    "reconnect": "1",
    "reconnect_on_network_error": "1",
    "reconnect_delay_max": "2",  # a store that stays down fails the request in seconds (503)
}


def is_url(source: str | Path) -> bool:
    """An http(s) URL (a presigned one, or an ``s3://`` source once resolved)."""
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def is_object(source: str | Path) -> bool:
    """``s3://bucket/key``: a stored object, resolved to a presigned URL when opened."""
    return isinstance(source, str) and source.startswith("s3://")


def media_input(media_file: MediaFile) -> str:
    """What the layer is given for ``media_file``: its local path or ``s3://bucket/key`` (resolved on open)."""
    return media_file.path


def resolve(source: str | Path) -> str:
    """The string FFmpeg/PyAV open: a path as it is, ``s3://`` as a fresh presigned URL (no request made)."""
    if is_object(source):
        from media_api.storage.objects import parse_object_url, presigned_get

        return presigned_get(parse_object_url(str(source)))
    return str(source)


def av_options(source: str | Path, request_size: int = FRAME_REQUEST_SIZE) -> dict[str, str]:
    """PyAV/FFmpeg open options for a resolved ``source`` (the http protocol's for a URL, none for a path)."""
    if not is_url(source):
        return {}
    options = {**_HTTP_OPTIONS, "request_size": str(request_size)}
    if str(source).startswith("https://"):
        options.update(tls_options())
    return options


def tls_options() -> dict[str, str]:
    """Verify the store's certificate, against the CA bundle boto3 is told to use (``AWS_CA_BUNDLE``, e.g. a
    private CA of an internal MinIO) or the system's. PyAV's FFmpeg does not verify by default, and neither
    FFmpeg build knows where this host keeps its CAs, so both are said explicitly."""
    import ssl

    ca_file = os.environ.get("AWS_CA_BUNDLE") or ssl.get_default_verify_paths().cafile or ""
    return {"tls_verify": "1", **({"ca_file": ca_file} if ca_file and os.path.isfile(ca_file) else {})}


class StoreUnavailable(Unavailable):
    """The object store did not answer, or refused (credentials, permissions): retry later."""

    default_message = "The object store holding this video did not answer; retry shortly."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, retry_after=10)


class SourceMissing(NotFound):
    """The file's bytes are gone from where it was registered (object or file deleted): retrying will not help."""

    code = "SOURCE_MISSING"
    default_message = ("The video's bytes are gone from where the file was registered (its object or file was "
                       "deleted); register it again.")


def diagnose(source: str | Path, cause: BaseException | None = None) -> ApiError | None:
    """Why ``source`` (a path or ``s3://``) cannot be read, if the source is to blame; None when it is there.

    One ``HeadObject`` with short timeouts and no retries (an answer within seconds), or one ``stat``.
    ``cause``: the read's exception; an object replaced since registration (storage.reader) is a missing source.
    """
    while cause is not None:
        if getattr(cause, "changed", False):
            return SourceMissing()
        cause = cause.__cause__
    if is_object(source):
        from media_api.storage.objects import ObjectError, head, parse_object_url

        try:
            head(parse_object_url(str(source)), quick=True)
        except ObjectError as exc:
            return SourceMissing() if exc.missing else StoreUnavailable()
        return None
    if is_url(source):
        return None
    return None if os.path.exists(source) else SourceMissing()


#: Inputs :func:`input_args` handed out lately: resolved argv element -> the source it stands for, so a
#: failed ffmpeg's command line can be diagnosed (process.py) without every caller passing its source.
_INPUTS: OrderedDict[str, str] = OrderedDict()
_INPUTS_LOCK = threading.Lock()
_INPUTS_KEPT = 256


def input_failure(argv: Sequence[str]) -> ApiError | None:
    """:func:`diagnose` of every ``-i`` input of ``argv`` that came from :func:`input_args` (first failure)."""
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag != "-i":
            continue
        with _INPUTS_LOCK:
            source = _INPUTS.get(value)
        failure = diagnose(source) if source is not None else None
        if failure is not None:
            return failure
    return None


def input_args(source: str | Path) -> list[str]:
    """``ffmpeg`` arguments that open ``source`` as the next input (options, then ``-i`` and one argv element)."""
    target = resolve(source)
    with _INPUTS_LOCK:
        _INPUTS[target] = str(source)
        _INPUTS.move_to_end(target)
        while len(_INPUTS) > _INPUTS_KEPT:
            _INPUTS.popitem(last=False)
    args: list[str] = []
    for name, value in av_options(target, STREAM_REQUEST_SIZE).items():
        args += [f"-{name}", value]
    return [*args, "-i", target]


def open_input(source: str | Path, request_size: int = FRAME_REQUEST_SIZE) -> av.container.InputContainer:
    """``av.open`` for a path, an ``s3://`` object or a URL (raises av.FFmpegError / OSError like av.open).

    An object read for frames (thumbnails, crops, faces, analysis) is opened through
    :class:`~media_api.storage.reader.CachedObjectReader`: the bytes FFmpeg reads to open it (head, MP4
    index, first samples) are cached on this host after the first open, so a cold frame costs the store
    only its GOP's range requests. The registration's whole-file scan (``SCAN_REQUEST_SIZE``) reads in order
    through FFmpeg's http protocol.
    """
    if is_object(source) and request_size != SCAN_REQUEST_SIZE and OPENING_CACHE:
        from media_api.storage.reader import CachedObjectReader

        reader = CachedObjectReader(str(source), request_size)
        try:
            container = av.open(reader, buffer_size=64 * 1024)
        except BaseException:
            reader.close()
            raise
        reader.opened()
        return container
    target = resolve(source)
    return av.open(target, options=av_options(target, request_size))


def display_name(source: str | Path) -> str:
    """A loggable name: a URL without its query (the signature), a path as it is."""
    return redact(str(source))


_SIGNED_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")


def redact(text: str) -> str:
    """``text`` with the query of every http(s) URL (the presigned signature) replaced by ``?…``."""
    return _SIGNED_QUERY.sub(r"\1?…", text)


__all__ = ["SourceMissing", "StoreUnavailable", "av_options", "diagnose", "display_name", "input_args",
           "input_failure", "is_object", "is_url", "media_input", "open_input", "redact", "resolve"]
