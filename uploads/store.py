"""Where an upload's bytes go while it arrives: a local file, or an S3 multipart upload.

A PATCH opens a :class:`Writer` on the upload, feeds it the body as it is read from the socket
(a few hundred KiB at a time: a chunk is never held whole), and ends with :meth:`Writer.commit`
(or :meth:`Writer.rollback` when a checksum does not match). Every method that makes bytes durable
returns the :class:`~uploads.models.Upload` fields to save, so the row's ``offset`` never counts a
byte that is not stored:

* **local**: appended to ``<local root>/uploads/<id>.part`` and fsync'ed before the offset is saved;
  a part file longer than the saved offset (a worker killed between write and save) is cut back
  at the next PATCH. On completion the file is renamed to ``<local root>/media/<id>/<filename>``.
* **s3** (what tusd's S3 store does): one multipart upload per tus upload, created with it. Parts
  are at least 5 MiB (S3's minimum for all but the last) and large enough for the declared length to
  fit in 10 000 parts. Bytes that do not fill a part at the end of a PATCH are kept as a temporary
  object ``<prefix>/uploads/<id>.<n>.part`` (a new name each time, so a crash between the PUT and
  the row update leaves the old tail intact), and read back into the first part of the next PATCH.
  At most one part size is buffered per request; nothing touches the web host's disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from media_api.storage.config import StorageConfig, s3_client, storage_config
from uploads.models import Upload

MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10_000


def sanitise_filename(raw: str) -> str:
    """A safe last path component: no directories, no control or shell-special characters."""
    name = PurePosixPath(str(raw).replace("\\", "/")).name
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .")
    return name[-200:] or "upload"


def part_size_for(length: int) -> int:
    """The S3 part size: at least 5 MiB, and enough for ``length`` to fit in 10 000 parts (whole MiB)."""
    needed = -(-length // MAX_PARTS)
    mib = 1024 * 1024
    return max(MIN_PART, -(-needed // mib) * mib)


def final_key(config: StorageConfig, upload: Upload) -> str:
    return config.key("media", upload.pk.hex, upload.filename)


def local_part_path(config: StorageConfig, upload: Upload) -> Path:
    return config.local_root / "uploads" / f"{upload.pk.hex}.part"


def prepare(upload: Upload) -> None:
    """Fill in where the upload goes (before the row is first saved); S3: start the multipart upload."""
    config = storage_config()
    upload.storage = config.kind
    upload.storage_key = final_key(config, upload)
    if config.kind == "s3":
        upload.s3_part_size = part_size_for(upload.length)
        answer = s3_client().create_multipart_upload(Bucket=config.bucket, Key=upload.storage_key)
        upload.s3_upload_id = answer["UploadId"]
    else:
        path = local_part_path(config, upload)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def writer_for(upload: Upload) -> Writer:
    return S3Writer(upload) if upload.storage == "s3" else LocalWriter(upload)


def registration_target(upload: Upload) -> str:
    """What the register job reads: the final local path, or ``s3://bucket/key``."""
    config = storage_config()
    if upload.storage == "s3":
        return f"s3://{config.bucket}/{upload.storage_key}"
    return str(config.local_root / upload.storage_key)


def discard(upload: Upload) -> None:
    """Remove every byte stored for the upload (unfinished parts, tail objects, the final object)."""
    config = storage_config()
    if upload.storage == "s3":
        client = s3_client()
        if upload.s3_upload_id:
            try:
                client.abort_multipart_upload(Bucket=config.bucket, Key=upload.storage_key,
                                              UploadId=upload.s3_upload_id)
            except client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                    raise
        _delete_tails(client, config, upload)
        client.delete_object(Bucket=config.bucket, Key=upload.storage_key)
        return
    local_part_path(config, upload).unlink(missing_ok=True)
    final = config.local_root / upload.storage_key
    final.unlink(missing_ok=True)
    if final.parent.name == upload.pk.hex and final.parent.is_dir() and not any(final.parent.iterdir()):
        final.parent.rmdir()


def _tail_prefix(config: StorageConfig, upload: Upload) -> str:
    return config.key("uploads", f"{upload.pk.hex}.")


def _delete_tails(client: Any, config: StorageConfig, upload: Upload, keep: str = "") -> None:
    """Delete the upload's tail objects but ``keep`` (listed, so a tail orphaned by a crash goes too)."""
    listing = client.list_objects_v2(Bucket=config.bucket, Prefix=_tail_prefix(config, upload))
    stale = [{"Key": item["Key"]} for item in listing.get("Contents", []) if item["Key"] != keep]
    if stale:
        client.delete_objects(Bucket=config.bucket, Delete={"Objects": stale, "Quiet": True})


class Writer:
    """Receives one PATCH's bytes; see the module docstring for the durability rule."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.start = upload.offset

    @property
    def offset(self) -> int:  # pragma: no cover - each writer defines it
        raise NotImplementedError

    def write(self, data: bytes) -> None:  # pragma: no cover
        raise NotImplementedError

    def checkpoint(self) -> dict[str, Any] | None:
        """Make what arrived so far durable mid-request; the fields to save, or None when nothing moved."""
        return None

    def commit(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def rollback(self) -> None:
        """Forget this request's bytes (a checksum mismatch): the upload stays at its starting offset."""

    def after_save(self) -> None:
        """Clean up what the saved row no longer refers to."""

    def close(self) -> None:
        """Release what the writer holds after a failure."""


class LocalWriter(Writer):
    def __init__(self, upload: Upload) -> None:
        super().__init__(upload)
        config = storage_config()
        self.path = local_part_path(config, upload)
        self.final = config.local_root / upload.storage_key
        self.fh = open(self.path, "r+b")  # noqa: SIM115 - closed in commit/rollback
        self.fh.truncate(self.start)  # bytes past the saved offset were never acknowledged
        self.fh.seek(self.start)
        self.written = 0

    @property
    def offset(self) -> int:
        return self.start + self.written

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.written += len(data)

    def _sync(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def checkpoint(self) -> dict[str, Any] | None:
        self._sync()
        return {"offset": self.offset}

    def commit(self) -> dict[str, Any]:
        self._sync()
        self.fh.close()
        if self.offset >= self.upload.length:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, self.final)
        return {"offset": self.offset}

    def rollback(self) -> None:
        self.fh.truncate(self.start)
        self.fh.close()
        self.written = 0

    def close(self) -> None:
        self.fh.close()


class S3Writer(Writer):
    def __init__(self, upload: Upload) -> None:
        super().__init__(upload)
        self.config = storage_config()
        self.client = s3_client()
        self.part_size = int(upload.s3_part_size)
        self.parts: list[list[Any]] = [list(p) for p in upload.s3_parts]
        self.saved_parts = len(self.parts)
        self.tail_key = upload.s3_tail_key
        self.buffer = bytearray()
        if self.tail_key:
            self.buffer += self.client.get_object(Bucket=self.config.bucket, Key=self.tail_key)["Body"].read()
            if len(self.buffer) != upload.s3_tail_size:
                raise OSError(f"tail object of upload {upload.pk} has {len(self.buffer)} bytes, "
                              f"expected {upload.s3_tail_size}")  # the store changed under us: a 503
        self.keep = ""

    @property
    def stored(self) -> int:
        return sum(int(p[2]) for p in self.parts)

    @property
    def offset(self) -> int:
        return self.stored + len(self.buffer)

    def _put_part(self, body: bytes) -> None:
        number = len(self.parts) + 1
        answer = self.client.upload_part(Bucket=self.config.bucket, Key=self.upload.storage_key,
                                         UploadId=self.upload.s3_upload_id, PartNumber=number, Body=body)
        self.parts.append([number, answer["ETag"], len(body)])

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            self._put_part(bytes(self.buffer[:self.part_size]))
            del self.buffer[:self.part_size]

    def checkpoint(self) -> dict[str, Any] | None:
        if len(self.parts) == self.saved_parts:
            return None  # nothing new is durable (the buffer is still in memory)
        self.saved_parts = len(self.parts)
        self.keep = ""  # the old tail went into the first new part
        return {"offset": self.stored, "s3_parts": self.parts, "s3_tail_key": "", "s3_tail_size": 0}

    def commit(self) -> dict[str, Any]:
        if self.offset >= self.upload.length:
            if self.buffer or not self.parts:
                self._put_part(bytes(self.buffer))
                self.buffer.clear()
            self.client.complete_multipart_upload(
                Bucket=self.config.bucket, Key=self.upload.storage_key, UploadId=self.upload.s3_upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in self.parts]})
            self.keep = ""
            return {"offset": self.stored, "s3_parts": self.parts, "s3_tail_key": "", "s3_tail_size": 0,
                    "s3_upload_id": ""}
        tail_key, tail_size = "", 0
        if self.buffer:
            tail_key = self.config.key("uploads", f"{self.upload.pk.hex}.{len(self.parts)}-{self.offset}.part")
            self.client.put_object(Bucket=self.config.bucket, Key=tail_key, Body=bytes(self.buffer))
            tail_size = len(self.buffer)
        self.keep = tail_key
        return {"offset": self.offset, "s3_parts": self.parts, "s3_tail_key": tail_key, "s3_tail_size": tail_size}

    def rollback(self) -> None:
        # Parts sent by this request are not in the saved list: the next request overwrites their numbers,
        # and completion lists only saved parts. The saved tail object was not touched.
        self.parts = self.parts[:self.saved_parts]
        self.buffer.clear()
        self.keep = self.tail_key

    def after_save(self) -> None:
        if self.keep != self.tail_key:
            _delete_tails(self.client, self.config, self.upload, keep=self.keep)
            self.tail_key = self.keep
