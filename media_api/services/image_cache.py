"""Rendered JPEGs on disk under ``CACHE_DIR/images``, keyed by what determines them.

A key is the file's content hash (``file_uuid``) plus a name that spells out everything
else the picture depends on (frame number, crop or face box, output size) and
``RENDER_VERSION``. So a cached image is never stale: when a trace's detections change
its representative face changes, and with it the key. The same key gives the same bytes,
so the ETag is derived from the key alone and a 304 costs no disk access.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a
reader never sees half an image, even if the writer is killed. A temporary file is named for
its writer (``.tmp-<host>-<pid>-…``) and locked while it is written, so what a killed writer
left is recognised and removed by the next render (:func:`remove_dead_temp_files`), at
start-up and by :func:`evict`, while a live render's file is never touched. Concurrent requests for
one key render once: the first takes an ``flock`` on one of ``LOCK_STRIPES`` lock files
(works across threads and processes, released by the kernel if the holder dies); the
others wait, then find the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from momentry.errors import Busy

#: Bump when rendering changes the output for the same key (encoder settings, crop rule).
RENDER_VERSION = 1
LOCK_STRIPES = 256
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class ImageKey:
    file_uuid: str
    name: str
    #: ``images`` (JPEGs) or ``clips`` (rendered videos, see :func:`get_or_render_file`).
    root: str = "images"
    suffix: str = ".jpg"

    @property
    def path(self) -> Path:
        root = Path(settings.CACHE_DIR) / self.root / f"v{RENDER_VERSION}"
        return root / self.file_uuid[:2] / self.file_uuid / f"{self.name}{self.suffix}"

    @property
    def etag(self) -> str:
        digest = hashlib.sha256(f"{RENDER_VERSION}:{self.file_uuid}:{self.name}".encode()).hexdigest()
        return f'"{digest[:32]}"'


def _lock_path(token: str) -> Path:
    stripe = int(hashlib.sha256(token.encode()).hexdigest()[:8], 16) % LOCK_STRIPES
    directory = Path(settings.CACHE_DIR) / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"render-{stripe:03d}.lock"


@contextlib.contextmanager
def render_lock(token: str, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the lock for ``token`` (one renderer per key at a time); :class:`Busy` after the wait."""
    wait = float(settings.MOMENTRY_FFMPEG_TIMEOUT if wait_seconds is None else wait_seconds)
    fd = os.open(_lock_path(token), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy() from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def store(key: ImageKey, data: bytes) -> Path:
    """Write ``data`` under ``key`` atomically."""
    return _write_atomically(key.path, ".jpg", lambda tmp: tmp.write_bytes(data))


@functools.cache
def _host_tag() -> str:
    """Eight hex characters naming this machine in temporary file names (a cache may be shared by hosts)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


TEMP_PREFIX = ".tmp-"
_TEMP_OWNER = re.compile(r"^\.tmp-([0-9a-f]{8})-(\d+)-")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_atomically(path: Path, suffix: str, fill: Callable[[Path], object]) -> Path:
    """``fill`` a hidden temporary file beside ``path``, then rename it into place (readers never see
    half a file). The file is named for this host and process and locked until it is in place: if the
    writer is killed, :func:`remove_dead_temp_files` can tell, and never mistakes a live render for a dead one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{_host_tag()}-{os.getpid()}-", suffix=suffix, dir=path.parent)
    try:
        with contextlib.suppress(OSError):  # a file system without locks: the pid in the name still tells
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel when the writer dies
        fill(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    return path


def _writer_is_dead(path: Path) -> bool:
    """A temporary file written on this host by a process that no longer exists (and nobody holds its lock).

    Both must agree: the pid could have been reused by a live process (then the file waits for
    :func:`evict`'s age rule), and a writer in another pid namespace still holds the lock.
    Files of other hosts (a shared cache) and of older versions are left to that age rule too.
    """
    match = _TEMP_OWNER.match(path.name)
    if match is None or match.group(1) != _host_tag() or process_alive(int(match.group(2))):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False  # its writer is alive after all (or locks cannot tell here: the age rule will)
    finally:
        os.close(fd)
    return True


def _temp_files(roots: tuple[str, ...]) -> Iterator[Path]:
    for root in roots:
        base = Path(settings.CACHE_DIR) / root
        if base.is_dir():
            yield from base.rglob(f"{TEMP_PREFIX}*")


def remove_dead_temp_files(roots: tuple[str, ...] = ("clips",)) -> int:
    """Remove the temporary files of renders whose process was killed (it could not clean up); how many.

    Called before every clip render and at start-up, for the clip cache (one file per rendered
    video, so the walk is short); the image cache, with far more files, is swept by :func:`evict`.
    """
    removed = 0
    for path in _temp_files(roots):
        if _writer_is_dead(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


#: A cache hit marks the file as used (its mtime) at most this often: least-recently-used eviction
#: needs no write per request.
TOUCH_SECONDS = 3600
#: Eviction leaves files younger than this alone (just written, maybe about to be read).
MIN_AGE_SECONDS = 60


def cached(key: ImageKey) -> bytes | None:
    try:
        data = key.path.read_bytes()
    except FileNotFoundError:
        return None
    _touch(key.path)
    return data


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > TOUCH_SECONDS:
            os.utime(path)


@dataclass(frozen=True)
class Eviction:
    files: int
    freed: int
    kept_bytes: int


def evict(max_bytes: int, roots: tuple[str, ...] = ("images", "clips", "objects")) -> Eviction:
    """Delete the least recently used cached files until the cache holds at most ``max_bytes``.

    Only finished files are candidates: temporary files of a render in progress (``.tmp-…``) and
    files younger than MIN_AGE_SECONDS are never touched. A temporary file whose writer is known to
    be dead, or older than any render can last (another host's, say), was left by a killed renderer
    and is removed. Goes down to 90 % of the limit, so that it does not run again at the next write.
    """
    entries = []
    now = time.time()
    abandoned_after = 2 * float(settings.MOMENTRY_FFMPEG_TIMEOUT) + MIN_AGE_SECONDS
    for root in roots:
        base = Path(settings.CACHE_DIR) / root
        for path in base.rglob("*") if base.is_dir() else ():
            if not path.is_file():
                continue
            with contextlib.suppress(OSError):
                stat = path.stat()
                if not path.name.startswith(TEMP_PREFIX):
                    entries.append((stat.st_mtime, stat.st_size, path))
                elif now - stat.st_mtime > abandoned_after or _writer_is_dead(path):  # its renderer was killed
                    path.unlink()
    total = sum(size for _, size, _ in entries)
    if total <= max_bytes:
        return Eviction(0, 0, total)
    target, freed, removed = int(max_bytes * 0.9), 0, 0
    for mtime, size, path in sorted(entries):
        if total - freed <= target:
            break
        if now - mtime < MIN_AGE_SECONDS:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            freed += size
            removed += 1
    return Eviction(removed, freed, total - freed)


def get_or_render(key: ImageKey, render: Callable[[], bytes]) -> bytes:
    """The cached bytes for ``key``, rendering (once across processes) when missing."""
    data = cached(key)
    if data is not None:
        return data
    with render_lock(f"{key.file_uuid}/{key.name}"):
        data = cached(key)
        if data is None:
            data = render()
            store(key, data)
    return data


def get_or_render_file(key: ImageKey, render: Callable[[Path], None]) -> Path:
    """The cached file for ``key``; when missing, ``render(tmp)`` writes it (once across processes).

    For renders too big to hold in memory (videos): ``render`` writes a temporary file beside the
    final one, which replaces it only when complete. What renders killed before that left behind
    is removed first.
    """
    path = key.path
    if path.is_file():
        _touch(path)
        return path
    with render_lock(f"{key.root}/{key.file_uuid}/{key.name}"):
        if path.is_file():
            return path
        with contextlib.suppress(OSError):
            remove_dead_temp_files((key.root,))
        return _write_atomically(path, key.suffix, render)


__all__ = [
    "Eviction", "ImageKey", "RENDER_VERSION", "cached", "evict", "get_or_render", "get_or_render_file", "process_alive",
    "remove_dead_temp_files", "render_lock", "store",
]
