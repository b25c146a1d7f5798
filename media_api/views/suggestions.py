"""Nearest named identities for a trace, by face-embedding distance."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identities.models import Identity
from identities.suggestions import (
    CONFIDENT_DISTANCE,
    SUGGESTION_MAX_DISTANCE,
    has_comparable_embedding,
    suggest_identities,
)
from media_api import selectors
from media_api.models import Trace
from momentry import schema
from momentry.errors import not_found


class TraceSuggestionsView(APIView):
    @extend_schema(
        operation_id="trace_suggestions",
        summary="Named identities whose traces look like this one (embedding distance, nearest first)",
        responses={200: schema.SUGGESTIONS},
        tags=["traces"],
    )
    def get(self, request: Request, file_uuid: str, trace_id: int) -> Response:
        media_file = selectors.file_for_request(request, file_uuid)
        trace = Trace.objects.filter(file=media_file, trace_id=trace_id).first()
        if trace is None:
            raise not_found("trace", file_uuid=media_file.file_uuid, trace_id=trace_id)
        scope = selectors.scope_filter(request.user, request.auth, file_field="file_id")
        found = suggest_identities(trace, scope=scope)
        confident = bool(found) and found[0].confident
        if trace.embedding is None:
            message = ("This trace has no face embedding (imported without vectors, or no face in it the model can"
                       " read: profile, dark, blurred or under 32 px): nothing to compare.")
        elif not has_comparable_embedding(trace):
            message = (f"This trace's face embedding was made by another model ({trace.embedding_model or 'unknown'}):"
                       " nothing to compare until it is embedded again.")
        elif not found:
            message = f"No confident match: nobody named is within {SUGGESTION_MAX_DISTANCE:g} of this face."
        elif not confident:
            message = "No confident match: the nearest people are only weak matches."
        else:
            message = None
        # Whether each is a curator's name or an automatic cluster (one query for the few suggested).
        kinds = {uuid: {"source": source, "status": status} for uuid, source, status in Identity.objects.filter(
            identity_uuid__in=[s.identity_uuid for s in found]).values_list("identity_uuid", "source", "status")}
        return Response({
            "success": True, "file_uuid": media_file.file_uuid, "trace_id": trace.trace_id,
            "has_embedding": has_comparable_embedding(trace),
            "confident_match": confident, "message": message,
            "thresholds": {"offered": SUGGESTION_MAX_DISTANCE, "confident": CONFIDENT_DISTANCE},
            "suggestions": [{"identity_uuid": s.identity_uuid, "name": s.name, **kinds.get(s.identity_uuid, {}),
                             "distance": s.distance, "confident": s.confident} for s in found],
        })
