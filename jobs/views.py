"""Jobs over REST: submit (202 with the job), read, list, cancel. Thin over jobs.services.

Submitting changes data (or at least spends the workers' time), so it needs the admin role or
a write key, like identity writes; reading needs any credential. A job on a file outside the
caller's scope is the same 404 as an unknown job; jobs without a file (registering, clustering)
are visible to unscoped callers and to whoever submitted them. Cancelling is for whoever
submitted the job and for admins; to anyone else the job is unknown (404). A failed job's
``error`` is one line; its traceback stays in the logs and the admin.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import dispatch, services
from jobs import schema as job_schema
from jobs.models import Job
from media_api import selectors
from media_api.views.traces import normalize_uuid
from momentry.auth import CanWrite
from momentry.bodies import validated
from momentry.errors import Conflict, NotFound
from momentry.pagination import PAGE_PARAMETERS, Page, choice_param, paginate
from momentry.parsers import BoundedJSONParser
from momentry.schema import ERROR, UUID_PATTERN, AbsolutePathField, StrictBooleanField, StrictIntegerField


def serialize_job(job: Job) -> dict[str, Any]:
    duration = None
    if job.started_at:
        end = job.finished_at or job.heartbeat_at or job.started_at
        duration = round((end - job.started_at).total_seconds(), 3)
    return {
        "id": job.pk.hex,
        "kind": job.kind,
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "file_uuid": job.file.file_uuid if job.file_id else None,
        "params": job.params,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "duration_seconds": duration,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "result": job.result,
        "error": job.error or None,
        "url": f"/api/v1/jobs/{job.pk.hex}",
    }


def visible_jobs(request: Request) -> QuerySet[Job]:
    jobs = Job.objects.select_related("file")
    user, auth = request.user, request.auth
    if not selectors.is_scoped(user, auth):
        return jobs
    in_scope = Q(file__isnull=False) & selectors.scope_filter(user, auth, file_field="file_id")
    return jobs.filter(in_scope | Q(file__isnull=True, created_by_id=user.pk))


def job_for_request(request: Request, job_id: str, *, to_cancel: bool = False) -> Job:
    job = visible_jobs(request).filter(pk=normalize_uuid(job_id, "job_id")).first()
    if job is None or (to_cancel and not services.may_cancel(request.user, job)):
        raise NotFound("Job not found.", {"job_id": job_id})
    return job


def accepted(job: Job, created: bool) -> Response:
    return Response({"success": True, "created": created, "job": serialize_job(job)}, status=202)


class _Submit(APIView):
    permission_classes = [CanWrite]
    parser_classes = [BoundedJSONParser]  # bodies are JSON objects (415 otherwise)


class DetectFacesSerializer(serializers.Serializer):
    stride = StrictIntegerField(required=False, min_value=1, max_value=1000,
                                help_text="detect on every K-th frame (default about five per second)")


class PrewarmSerializer(serializers.Serializer):
    force = StrictBooleanField(required=False, default=False, help_text="recompute faces already warmed")


class ReembedSerializer(serializers.Serializer):
    only_stale = StrictBooleanField(required=False, default=False,
                                    help_text="only traces without a vector of the current model")


class RegisterSerializer(serializers.Serializer):
    path = AbsolutePathField(max_length=4000, min_length=1)


class EmptySerializer(serializers.Serializer):
    pass


OTHER_PARAMS = OpenApiResponse(ERROR, description="CONFLICT: a job on this file with other parameters is queued "
                                                    "or running (details.job_id)")


# A job of ``kind`` on one file; the same job with other parameters active is a 409. (A comment, not a
# docstring: drf-spectacular would publish a docstring as every operation's description.)
class _FileJob(_Submit):
    kind: str
    serializer: type[serializers.Serializer]

    def post(self, request: Request, file_uuid: str) -> Response:
        media_file = selectors.file_for_request(request, file_uuid)
        params = validated(self.serializer, request)
        return accepted(*services.submit(self.kind, file=media_file, params=params, user=request.user,
                                         same_params=True))


@extend_schema_view(post=extend_schema(
    operation_id="file_detect_faces", request=DetectFacesSerializer,
    summary="Queue face analysis of the file (traces are replaced; people stay named)",
    responses={202: job_schema.SUBMITTED, 409: OTHER_PARAMS}, tags=["jobs"]))
class DetectFacesView(_FileJob):
    kind, serializer = Job.Kind.DETECT, DetectFacesSerializer


@extend_schema_view(post=extend_schema(
    operation_id="file_prewarm", request=PrewarmSerializer,
    summary="Queue the representative faces and thumbnails of every trace of the file",
    responses={202: job_schema.SUBMITTED, 409: OTHER_PARAMS}, tags=["jobs"]))
class PrewarmView(_FileJob):
    kind, serializer = Job.Kind.PREWARM, PrewarmSerializer


@extend_schema_view(post=extend_schema(
    operation_id="file_reembed", request=ReembedSerializer,
    summary="Queue new face embeddings (current model) for the file's traces, without detecting again: "
            "people, hidden traces and curation history are kept",
    responses={202: job_schema.SUBMITTED, 409: OTHER_PARAMS}, tags=["jobs"]))
class ReembedView(_FileJob):
    kind, serializer = "reembed", ReembedSerializer


@extend_schema_view(post=extend_schema(
    operation_id="file_detect_shots", request=EmptySerializer,
    summary="Queue shot detection of the file (hard cuts; its shots are replaced, traces untouched). Face "
            "analysis stores shots too: this is for files without it",
    responses={202: job_schema.SUBMITTED}, tags=["jobs"]))
class DetectShotsView(_FileJob):
    kind, serializer = "detect_shots", EmptySerializer


class ClusterView(_Submit):
    @extend_schema(operation_id="identities_cluster", request=EmptySerializer,
                   summary="Queue clustering of unbound traces into pending identities",
                   responses={202: job_schema.SUBMITTED}, tags=["jobs"])
    def post(self, request: Request) -> Response:
        validated(EmptySerializer, request)
        return accepted(*services.submit(Job.Kind.CLUSTER, user=request.user))


def register_file_job(request: Request) -> Response:
    """``POST /api/v1/files`` (the files list view delegates here)."""
    data = validated(RegisterSerializer, request)
    path = services.media_path(data["path"])
    return accepted(*services.submit(Job.Kind.REGISTER, params={"path": str(path)}, user=request.user))


KINDS = dispatch.KINDS
STATES = [s.value for s in Job.State]


class JobListView(APIView):
    @extend_schema(operation_id="jobs_list", summary="Jobs, newest first",
                   parameters=[OpenApiParameter("state", OpenApiTypes.STR, enum=STATES),
                               OpenApiParameter("kind", OpenApiTypes.STR, enum=KINDS),
                               OpenApiParameter("file", {"type": "string", "pattern": UUID_PATTERN},
                                                description="a file_uuid"),
                               *PAGE_PARAMETERS],
                   responses={200: job_schema.JOB_PAGE}, tags=["jobs"])
    def get(self, request: Request) -> Response:
        params = request.query_params
        state = choice_param(params, "state", STATES, None)
        kind = choice_param(params, "kind", KINDS, None)
        Page.from_params(params)
        jobs = visible_jobs(request)
        if state:
            jobs = jobs.filter(state=state)
        if kind:
            jobs = jobs.filter(kind=kind)
        if params.get("file"):
            jobs = jobs.filter(file__file_uuid=normalize_uuid(params["file"], "file"))
        return Response(paginate(jobs.order_by("-created_at"), params, "jobs", serialize_job))


class JobDetailView(APIView):
    permission_classes = [CanWrite]

    @extend_schema(operation_id="job_detail", summary="One job: state, progress, result or error",
                   responses={200: job_schema.JOB_DETAIL}, tags=["jobs"])
    def get(self, request: Request, job_id: str) -> Response:
        return Response({"success": True, "job": serialize_job(job_for_request(request, job_id))})

    @extend_schema(operation_id="job_cancel",
                   summary="Cancel (the submitter or an admin): a queued job never runs; a running one stops and "
                           "changes nothing",
                   responses={200: job_schema.JOB_DETAIL,
                              404: OpenApiResponse(ERROR, description="NOT_FOUND: no such job, or not yours to "
                                                   "cancel"),
                              409: OpenApiResponse(ERROR, description="CONFLICT: the job has ended")},
                   tags=["jobs"])
    def delete(self, request: Request, job_id: str) -> Response:
        job = job_for_request(request, job_id, to_cancel=True)
        try:
            job = services.cancel(job)
        except services.NotCancellable as exc:
            raise Conflict(str(exc), {"state": job.state}) from None
        return Response({"success": True, "job": serialize_job(job)})
