"""FFmpeg process lifecycle and the cross-process pool of media jobs.

Everything that runs ``ffmpeg`` goes through here so the rules hold in one place:

* argument lists only, never a shell;
* at most ``MOMENTRY_MAX_FFMPEG_JOBS`` media jobs at once across *all* server processes
  (slot lock files under ``DATA_DIR/locks`` taken with ``fcntl.flock``; the kernel drops a
  lock when its holder dies, so a crashed worker never leaks a slot); a caller waits up to
  ``MOMENTRY_FFMPEG_WAIT_SECONDS`` and then gets :class:`~momentry.errors.Busy` (503 +
  ``Retry-After``) instead of queueing without bound;
* a per-job timeout (``MOMENTRY_FFMPEG_TIMEOUT``) after which the process is killed;
* stderr goes to a temporary file (no pipe to fill up and deadlock), is logged with the
  command on failure (logger ``media_api.ffmpeg``) and is never sent to a client, who gets
  a generic :class:`~momentry.errors.MediaError` — or, when the input's store does not answer or its
  object/file is gone, the 503/404 that :func:`~media_api.ffmpeg.source.input_failure` finds;
* a streamed job (:class:`FFmpegStream`) kills and reaps its process when it is closed —
  Django calls ``close()`` on a ``StreamingHttpResponse``'s iterator when the response is
  closed, which the WSGI/ASGI server does when the client disconnects;
* a request whose client has gone while it waited for a slot is dropped before FFmpeg
  starts (:class:`ClientGone`): the view registers a disconnect check with
  :func:`watching_client`, and the slot wait polls it.

Public API::

    with watching_client(check):      # (views) drop the work if check() says the client left
        with media_job_slot():        # hold one pool slot (raises Busy when saturated)
            ...                       # any heavy media work (PyAV decode, ffmpeg, ...)

    data = run_ffmpeg([...args...])   # run to completion, return stdout bytes
    stream = open_stream([...args...])  # started, first chunk read; iterate + close()
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

from django.conf import settings

from momentry.errors import ApiError, Busy, MediaError

logger = logging.getLogger("media_api.ffmpeg")

CHUNK_SIZE = 64 * 1024
_POLL_SECONDS = 0.05
_STDERR_TAIL = 4000
# ffmpeg flags every job gets: no banner, no stdin prompts (a job must never wait on a tty),
# errors only on stderr (what we log when it fails).
BASE_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "error")


# --------------------------------------------------------------------------- client watch


class ClientGone(ApiError):
    """The client disconnected before its media job started; nothing is sent (nginx's 499)."""

    status, code, default_message = 499, "CLIENT_CLOSED_REQUEST", "The client closed the connection."


_client_gone: ContextVar[Callable[[], bool] | None] = ContextVar("momentry_client_gone", default=None)


@contextlib.contextmanager
def watching_client(check: Callable[[], bool] | None) -> Iterator[None]:
    """While the block runs, slot waits and job starts call ``check()`` and stop when it is True."""
    token = _client_gone.set(check)
    try:
        yield
    finally:
        _client_gone.reset(token)


def raise_if_client_gone() -> None:
    check = _client_gone.get()
    if check is not None and check():
        logger.info("client disconnected before its media job started; dropped")
        raise ClientGone()


# --------------------------------------------------------------------------- job pool


def _locks_dir() -> Path:
    path = Path(settings.DATA_DIR) / "locks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def retry_after_seconds() -> int:
    """What a 503 BUSY advertises: about one wait period."""
    return max(1, math.ceil(float(settings.MOMENTRY_FFMPEG_WAIT_SECONDS)))


class MediaSlot:
    """One held slot of the media job pool; :meth:`release` is idempotent."""

    def __init__(self, fd: int, index: int) -> None:
        self._fd: int | None = fd
        self.index = index

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __del__(self) -> None:  # last resort: a forgotten slot must not stay taken
        self.release()


def _try_slots(count: int) -> MediaSlot | None:
    # Start at a per-process offset so concurrent workers don't all probe slot 0 first.
    start = os.getpid() % count
    directory = _locks_dir()
    for step in range(count):
        index = (start + step) % count
        fd = os.open(directory / f"ffmpeg-slot-{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        return MediaSlot(fd, index)
    return None


def acquire_slot(wait_seconds: float | None = None) -> MediaSlot:
    """Take a pool slot, waiting up to ``wait_seconds`` (default the setting), else raise Busy.

    ``flock`` locks belong to the open file description, so two threads of one process
    contend exactly like two processes do.
    """
    count = max(1, int(settings.MOMENTRY_MAX_FFMPEG_JOBS))
    wait = float(settings.MOMENTRY_FFMPEG_WAIT_SECONDS if wait_seconds is None else wait_seconds)
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        raise_if_client_gone()
        slot = _try_slots(count)
        if slot is not None:
            return slot
        if time.monotonic() >= deadline:
            raise Busy(retry_after=retry_after_seconds())
        time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def media_job_slot(wait_seconds: float | None = None) -> Iterator[MediaSlot]:
    """Hold one slot of the cross-process media job pool for the ``with`` block.

    Raises :class:`momentry.errors.Busy` (503 + Retry-After) when every slot stays taken
    for ``MOMENTRY_FFMPEG_WAIT_SECONDS``.
    """
    slot = acquire_slot(wait_seconds)
    try:
        yield slot
    finally:
        slot.release()


# --------------------------------------------------------------------------- processes


def ffmpeg_command(args: Sequence[str]) -> list[str]:
    """The full argv for an ffmpeg job (binary + fixed flags + ``args``)."""
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"ffmpeg arguments must be str, got {type(arg).__name__}: {arg!r}")
    return [str(settings.FFMPEG_BINARY), *BASE_ARGS, *args]


def _read_tail(handle) -> str:
    try:
        handle.flush()
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _STDERR_TAIL))
        return handle.read().decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""


def _log_failure(cmd: list[str], returncode: int | None, stderr: str, reason: str) -> None:
    from .source import redact  # a presigned URL's signature never reaches a log

    logger.error("ffmpeg %s (exit %s): %s\n%s", reason, returncode, redact(shlex.join(cmd)),
                 redact(stderr or "(no stderr)"))


def _failure(cmd: Sequence[str]) -> ApiError:
    """What a failed ffmpeg answers: its input's store down (503) or object/file gone (404), else MEDIA_ERROR."""
    from .source import input_failure

    return input_failure(cmd) or MediaError()


def run_ffmpeg(
    args: Sequence[str],
    *,
    timeout: float | None = None,
    input_bytes: bytes | None = None,
    use_slot: bool = True,
) -> bytes:
    """Run ffmpeg to completion and return its stdout.

    Takes a pool slot unless ``use_slot`` is False (pass False when the caller already
    holds one via :func:`media_job_slot`). Raises :class:`MediaError` on a non-zero exit or
    after ``timeout`` (default ``MOMENTRY_FFMPEG_TIMEOUT``) seconds; stderr is logged only.
    """
    cmd = ffmpeg_command(args)
    limit = float(settings.MOMENTRY_FFMPEG_TIMEOUT if timeout is None else timeout)
    with media_job_slot() if use_slot else contextlib.nullcontext():
        raise_if_client_gone()
        with tempfile.TemporaryFile() as err:
            logger.debug("ffmpeg start: %s", shlex.join(cmd))
            try:
                completed = subprocess.run(
                    cmd,
                    input=input_bytes,
                    stdin=None if input_bytes is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    timeout=limit,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                # subprocess.run kills and reaps the child before re-raising.
                _log_failure(cmd, None, _read_tail(err), f"timed out after {limit:g}s")
                raise MediaError("Media processing timed out.") from None
            except OSError as exc:
                _log_failure(cmd, None, str(exc), "could not start")
                raise MediaError() from None
            if completed.returncode != 0:
                _log_failure(cmd, completed.returncode, _read_tail(err), "failed")
                raise _failure(cmd)
            return completed.stdout


class FFmpegStream:
    """A running ffmpeg job whose stdout is consumed as an iterator of byte chunks.

    Owns the process, its stderr file, a watchdog timer and (optionally) a pool slot.
    :meth:`close` — called by Django when the streaming response is closed, including on
    client disconnect — kills the process if it still runs, reaps it and frees the slot.
    Closing twice is harmless; iteration after close yields nothing.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        slot: MediaSlot | None = None,
        chunk_size: int = CHUNK_SIZE,
        on_close: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.cmd = ffmpeg_command(args)
        self._on_close = list(on_close)
        self.chunk_size = chunk_size
        self.timeout = float(settings.MOMENTRY_FFMPEG_TIMEOUT if timeout is None else timeout)
        self._slot = slot
        self._closed = False
        self._timed_out = False
        self._pending: bytes = b""
        try:
            raise_if_client_gone()
        except ClientGone:
            self._closed = True
            if slot is not None:
                slot.release()
            self._run_on_close()
            raise
        self._stderr = tempfile.TemporaryFile()
        try:
            logger.debug("ffmpeg start: %s", shlex.join(self.cmd))
            self.process = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0
            )
        except OSError as exc:
            self._stderr.close()
            if slot is not None:
                slot.release()
            self._run_on_close()
            _log_failure(self.cmd, None, str(exc), "could not start")
            raise MediaError() from None
        self._timer = threading.Timer(self.timeout, self._on_timeout)
        self._timer.daemon = True
        self._timer.start()

    # -- lifecycle

    def _on_timeout(self) -> None:
        if self.process.poll() is None:
            self._timed_out = True
            self.process.kill()

    def prime(self) -> FFmpegStream:
        """Block until the first output chunk; raise MediaError if ffmpeg fails before any.

        Doing this before the response is built lets an early failure (bad input, bad
        filter) become a JSON error instead of an empty 200; it also starts the clock that
        time-to-first-byte measures.
        """
        chunk = self._read_chunk()
        if not chunk:
            self._finish_failed_if_any(before_output=True)
        self._pending = chunk
        return self

    def _read_chunk(self) -> bytes:
        if self._closed or self.process.stdout is None:
            return b""
        try:
            return os.read(self.process.stdout.fileno(), self.chunk_size)
        except (OSError, ValueError):
            return b""

    def _finish_failed_if_any(self, before_output: bool) -> None:
        """At EOF: reap and, on a failure, log stderr (and raise if nothing was sent yet)."""
        try:
            returncode = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = self.process.wait()
        if returncode != 0 or self._timed_out:
            reason = f"timed out after {self.timeout:g}s" if self._timed_out else "failed"
            _log_failure(self.cmd, returncode, _read_tail(self._stderr), reason)
            self.close()
            if before_output:
                raise MediaError("Media processing timed out.") if self._timed_out else _failure(self.cmd)

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self._pending:
                chunk, self._pending = self._pending, b""
                yield chunk
            while not self._closed:
                chunk = self._read_chunk()
                if not chunk:
                    if not self._closed:
                        self._finish_failed_if_any(before_output=False)
                    break
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Kill (if still running) and reap ffmpeg, stop the watchdog, free the slot."""
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
        finally:
            for handle in (self.process.stdout, self._stderr):
                with contextlib.suppress(OSError, ValueError):
                    if handle is not None:
                        handle.close()
            if self._slot is not None:
                self._slot.release()
                self._slot = None
            self._run_on_close()

    def _run_on_close(self) -> None:
        """Run the owner's clean-ups (e.g. delete the overlay file) exactly once."""
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a failing clean-up must not hide the response's own outcome
                logger.exception("ffmpeg stream clean-up failed")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FFmpegStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def open_stream(
    args: Sequence[str],
    *,
    timeout: float | None = None,
    use_slot: bool = True,
    prime: bool = True,
    chunk_size: int = CHUNK_SIZE,
    on_close: Sequence[Callable[[], object]] = (),
) -> FFmpegStream:
    """Start a streamed ffmpeg job (taking a pool slot held until close) and read its first chunk.

    Raises :class:`Busy` when the pool is saturated and :class:`MediaError` when ffmpeg
    fails before producing output. Pass the result straight to ``StreamingHttpResponse``.
    ``on_close`` callables run once when the stream is closed (or fails to start).
    """
    try:
        slot = acquire_slot() if use_slot else None
    except BaseException:
        for callback in on_close:
            callback()
        raise
    stream = FFmpegStream(args, timeout=timeout, slot=slot, chunk_size=chunk_size, on_close=on_close)
    if prime:
        try:
            stream.prime()
        except BaseException:
            stream.close()
            raise
    return stream


__all__ = [
    "BASE_ARGS",
    "CHUNK_SIZE",
    "ClientGone",
    "FFmpegStream",
    "MediaSlot",
    "acquire_slot",
    "ffmpeg_command",
    "media_job_slot",
    "open_stream",
    "retry_after_seconds",
    "run_ffmpeg",
    "watching_client",
]
