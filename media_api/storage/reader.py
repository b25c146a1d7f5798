"""A seekable, read-only view of one object for PyAV, whose opening bytes are cached on this host.

Opening a video costs FFmpeg a few reads at fixed places before any frame: the container's head, its index
(an MP4's ``moov``, at the end of most files that were not written for streaming) and the first samples
(the stream probe). Over FFmpeg's ``http`` protocol each of those is a new request on a new connection, so
a cold thumbnail of a 360p file paid four round trips to the store for one GOP of data. This reader
records the ranges read while the container opens (whatever the format) and keeps them in a small file
under ``CACHE_DIR/objects``; the next open on this host reads them from there, and only the frames' own
bytes come from the store — as bounded ranged ``GetObject``s over boto3's kept-alive connections.

Safety: every ranged read carries ``If-Match`` with the ETag the cache was made from, so an object replaced
under the same key is never mixed with cached bytes of its predecessor (the read fails as a missing
source and the cache entry is dropped). A cache file is written whole under a temporary name and renamed,
and an unreadable one is ignored; only opening ranges up to :data:`MAX_CACHED_BYTES` are kept. Entries
age out with the rendered images and clips (``image_cache.evict``, ``MOMENTRY_CACHE_MAX_BYTES``) and go
with their file (``lifecycle.delete_file``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings

from .objects import ObjectRef, parse_object_url

logger = logging.getLogger("media_api.storage")

#: The largest ranged request of a read going on in order (read-ahead doubles from the request size to this).
MAX_REQUEST_BYTES = 4 << 20
#: The opening reads of a file kept per object (an MP4 index is ~1 % of the file; past this, none is kept).
MAX_CACHED_BYTES = 16 << 20


class ObjectReadError(OSError):
    """A ranged read failed: the store, or (``changed``) the object is no longer the one registered."""

    def __init__(self, message: str, changed: bool = False) -> None:
        super().__init__(message)
        self.changed = changed


def _cache_path(ref: ObjectRef) -> Path:
    name = hashlib.sha256(ref.url.encode()).hexdigest()
    return Path(settings.CACHE_DIR) / "objects" / name[:2] / f"{name}.bin"


def _load(path: Path) -> tuple[dict, dict[int, bytes]] | None:
    """(meta, {offset: bytes}) from a cache file: one JSON line, then the ranges' bytes back to back."""
    try:
        with open(path, "rb") as handle:
            meta = json.loads(handle.readline())
            ranges = {}
            for start, length in meta["ranges"]:
                data = handle.read(length)
                if len(data) != length:
                    return None
                ranges[int(start)] = data
            return meta, ranges
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(path: Path, meta: dict, ranges: dict[int, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "ranges": [[start, len(data)] for start, data in sorted(ranges.items())]}
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(meta).encode() + b"\n")
            for _, data in sorted(ranges.items()):
                handle.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def forget(url: str) -> None:
    """Drop this host's cached opening bytes of the object (the file is deleted)."""
    with contextlib.suppress(OSError, ValueError):
        _cache_path(parse_object_url(url)).unlink()


class CachedObjectReader(io.RawIOBase):
    """What PyAV opens for ``s3://bucket/key``: call :meth:`opened` once the container is open."""

    def __init__(self, url: str, request_size: int) -> None:
        from .objects import ObjectError, head

        self.ref = parse_object_url(url)
        self.request_size = request_size
        self._path = _cache_path(self.ref)
        self._pos = 0
        self._block_start, self._block = 0, b""
        self._span = request_size
        loaded = _load(self._path)
        self._recording = loaded is None
        if loaded is None:
            try:
                info = head(self.ref)
            except ObjectError as exc:
                raise ObjectReadError(str(exc)) from None
            self.size, self.etag, self._ranges = info.size, info.etag, {}
        else:
            meta, self._ranges = loaded
            self.size, self.etag = int(meta["size"]), str(meta["etag"])

    # -- io.RawIOBase

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self.size:
            return b""
        want = self.size - self._pos if size is None or size < 0 else min(size, self.size - self._pos)
        for start, data in self._ranges.items():  # a handful of opening ranges
            if start <= self._pos < start + len(data):
                piece = data[self._pos - start:self._pos - start + want]
                self._pos += len(piece)
                return piece
        if not self._block_start <= self._pos < self._block_start + len(self._block):
            # Read-ahead: a read that goes on where the last request ended (a span decoded in order, e.g. a
            # face-analysis chunk) doubles the next request, up to MAX_REQUEST_BYTES; a seek starts small again.
            sequential = self._block and self._pos == self._block_start + len(self._block)
            self._span = min(MAX_REQUEST_BYTES, 2 * self._span) if sequential else self.request_size
            self._block_start = self._pos
            self._block = self._get(self._pos, min(self.size, self._pos + max(want, self._span)) - 1)
            if self._recording:
                self._ranges[self._block_start] = self._block
        piece = self._block[self._pos - self._block_start:self._pos - self._block_start + want]
        self._pos += len(piece)
        return piece

    # -- the store

    def _get(self, first: int, last: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        from .config import s3_client

        try:
            answer = s3_client().get_object(Bucket=self.ref.bucket, Key=self.ref.key, Range=f"bytes={first}-{last}",
                                            IfMatch=self.etag)
            return answer["Body"].read()
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("412", "PreconditionFailed"):
                with contextlib.suppress(OSError):
                    self._path.unlink()  # the object was replaced: its cached opening bytes are not its own
                raise ObjectReadError(f"{self.ref.url} changed since it was registered", changed=True) from None
            raise ObjectReadError(f"cannot read {self.ref.url}: {exc}") from None
        except BotoCoreError as exc:
            raise ObjectReadError(f"cannot read {self.ref.url}: {exc}") from None

    def opened(self) -> None:
        """The container is open: keep the ranges its opening read (first open on this host only)."""
        if self._recording:
            self._recording = False
            if 0 < sum(len(d) for d in self._ranges.values()) <= MAX_CACHED_BYTES:
                _store(self._path, {"size": self.size, "etag": self.etag}, self._ranges)
            self._ranges = {}


__all__ = ["CachedObjectReader", "MAX_CACHED_BYTES", "ObjectReadError", "forget"]
