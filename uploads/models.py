"""One row per tus upload: who sent it, how far it got, and where its bytes are.

The row is the upload's truth between requests: ``offset`` only moves forward after the bytes it
counts are durably stored (fsync'ed locally, or an S3 part / tail object acknowledged), so a web
worker that dies mid-chunk loses at most the bytes after the last recorded offset, and the client
resumes from there (HEAD).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Upload(models.Model):
    class State(models.TextChoices):
        UPLOADING = "uploading", "receiving chunks"
        REGISTERING = "registering", "stored; register job running"
        DONE = "done", "registered as a file"
        FAILED = "failed", "failed (nothing kept)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    #: the API key that created it (empty for a session or JWT): only that key sees the upload
    api_key = models.ForeignKey("momentry.APIKey", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="uploads")
    filename = models.CharField(max_length=255)
    metadata = models.JSONField(default=dict, blank=True)
    length = models.PositiveBigIntegerField()
    offset = models.PositiveBigIntegerField(default=0)
    state = models.CharField(max_length=12, choices=State.choices, default=State.UPLOADING)
    #: "local" or "s3": the storage the bytes went to (the setting may change later)
    storage = models.CharField(max_length=8)
    #: the final object key (S3) or path relative to the local root, once known
    storage_key = models.CharField(max_length=1024)
    s3_upload_id = models.CharField(max_length=1024, blank=True, default="")
    #: completed multipart parts: [[part number, etag, size], ...]
    s3_parts = models.JSONField(default=list, blank=True)
    #: part size chosen at creation (>= 5 MiB; large enough for 10 000 parts)
    s3_part_size = models.PositiveBigIntegerField(default=0)
    #: the short tail (< one part) kept as a temporary object, and its size
    s3_tail_key = models.CharField(max_length=1024, blank=True, default="")
    s3_tail_size = models.PositiveBigIntegerField(default=0)
    #: set while a PATCH writes (one writer at a time); a stale value (dead worker) is taken over
    busy_since = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    file_uuid = models.CharField(max_length=32, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "api_key", "state"], name="upload_owner_state")]

    def __str__(self) -> str:
        return f"{self.filename} ({self.offset}/{self.length}, {self.state})"

    @property
    def complete(self) -> bool:
        return self.offset >= self.length
