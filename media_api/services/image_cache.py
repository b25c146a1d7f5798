"""Rendered JPEGs on disk under ``CACHE_DIR/images``, keyed by what determines them.

A key is the file's content hash (``file_uuid``) plus a name that spells out everything
else the picture depends on (frame number, crop or face box, output size) and
``RENDER_VERSION``. So a cached image is never stale: when a trace's detections change
its representative face changes, and with it the key. The same key gives the same bytes,
so the ETag is derived from the key alone and a 304 costs no disk access.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a
reader never sees half an image, even if the writer is killed. Concurrent requests for
one key render once: the first takes an ``flock`` on one of ``LOCK_STRIPES`` lock files
(works across threads and processes, released by the kernel if the holder dies); the
others wait, then find the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
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


def _write_atomically(path: Path, suffix: str, fill: Callable[[Path], object]) -> Path:
    """``fill`` a hidden temporary file beside ``path``, then rename it into place (readers never see
    half a file; :func:`evict` removes ``.tmp-`` files a killed process left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        fill(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


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


def evict(max_bytes: int, roots: tuple[str, ...] = ("images", "clips")) -> Eviction:
    """Delete the least recently used cached files until the cache holds at most ``max_bytes``.

    Only finished files are candidates: temporary files of a render in progress (``.tmp-…``) and
    files younger than MIN_AGE_SECONDS are never touched; a temporary file older than any render
    can last was left by a killed renderer and is removed. Goes down to 90 % of the limit, so
    that it does not run again at the next write.
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
                if not path.name.startswith(".tmp-"):
                    entries.append((stat.st_mtime, stat.st_size, path))
                elif now - stat.st_mtime > abandoned_after:  # its renderer was killed
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
    final one, which replaces it only when complete.
    """
    path = key.path
    if path.is_file():
        _touch(path)
        return path
    with render_lock(f"{key.root}/{key.file_uuid}/{key.name}"):
        if path.is_file():
            return path
        return _write_atomically(path, key.suffix, render)


__all__ = [
    "Eviction", "ImageKey", "RENDER_VERSION", "cached", "evict", "get_or_render", "get_or_render_file", "render_lock",
    "store",
]
