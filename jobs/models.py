"""The record of every job submitted to the queue, readable by any web node.

Celery keeps no results here (``task_ignore_result``): the :class:`Job` row is the one place
that says what a job is doing. Tasks write it as they go (state, progress, heartbeat), web
nodes and the admin read it, and the reaper (a beat task) uses the heartbeat to find jobs
whose worker vanished.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Job(models.Model):
    class Kind(models.TextChoices):
        """The built-in kinds (jobs.dispatch.RUNNERS lists every kind; the column has no fixed choices)."""

        REGISTER = "register_file", "register a file"
        DETECT = "detect_faces", "detect faces"
        PREWARM = "prewarm", "prewarm faces"
        CLUSTER = "cluster", "cluster unbound traces"

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE = (State.QUEUED, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20)
    file = models.ForeignKey("media_api.MediaFile", null=True, blank=True, on_delete=models.CASCADE,
                             related_name="jobs")
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    #: one line for API clients; the traceback is in ``error_detail`` (logs and admin only)
    error = models.TextField(blank=True, default="")
    error_detail = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")
    #: the claiming process (jobs.liveness): on its own host, a dead claimer frees the job at once
    worker_host = models.CharField(max_length=200, blank=True, default="")
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    worker_started = models.PositiveBigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    #: "kind:subject" while the job is queued or running, NULL afterwards: a unique index makes a
    #: second submit of the same job find the first one instead of duplicating it.
    active_key = models.CharField(max_length=300, null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="job_state_heartbeat"),
                   models.Index(fields=["file", "kind", "-created_at"], name="job_file_kind")]

    def __str__(self) -> str:
        return f"{self.kind_label} ({self.state})"

    @property
    def kind_label(self) -> str:
        return dict(self.Kind.choices).get(self.kind, self.kind.replace("_", " "))

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE


class JobChunk(models.Model):
    """One chunk of a long file's face analysis; its result waits here for the stitching task."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_frame = models.PositiveIntegerField()
    last_frame = models.PositiveIntegerField()
    done = models.BooleanField(default=False)
    result = models.BinaryField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: the process analysing it (claimed like a job, see jobs.services.claim_chunk) and its heartbeat
    worker_host = models.CharField(max_length=200, blank=True, default="")
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    worker_started = models.PositiveBigIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="job_chunk_unique")]

    def __str__(self) -> str:
        return f"chunk {self.index} ({self.first_frame}-{self.last_frame})"
