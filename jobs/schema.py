"""OpenAPI shapes of the job routes (for the docs; views build plain dicts)."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers as S

from jobs.dispatch import KINDS
from momentry.schema import page_of, success

JOB = inline_serializer("Job", {
    "id": S.CharField(help_text="32 hex characters"),
    "kind": S.ChoiceField(KINDS),
    "state": S.ChoiceField(["queued", "running", "succeeded", "failed", "cancelled"]),
    "progress": S.FloatField(help_text="0..1"),
    "message": S.CharField(),
    "file_uuid": S.CharField(allow_null=True),
    "params": S.DictField(help_text="as the job uses them, defaults filled in (detect_faces: stride)"),
    "created_at": S.DateTimeField(),
    "started_at": S.DateTimeField(allow_null=True),
    "finished_at": S.DateTimeField(allow_null=True),
    "duration_seconds": S.FloatField(allow_null=True),
    "attempts": S.IntegerField(help_text="how many times a worker started it"),
    "cancel_requested": S.BooleanField(),
    "result": S.DictField(allow_null=True, help_text="summary of what the job did (when it succeeded)"),
    "error": S.CharField(allow_null=True, help_text="why it failed, in one line"),
    "url": S.CharField(),
})
SUBMITTED = success("JobSubmitted", {
    "created": S.BooleanField(help_text="false: the same job was already queued or running; that one is returned"),
    "job": JOB,
})
JOB_DETAIL = success("JobDetail", {"job": JOB})
JOB_PAGE = page_of("JobPage", "jobs", JOB)
