"""JSON request bodies, validated with a DRF serializer into the error envelope's terms."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.request import Request

from momentry.errors import BadRequest


def validated(serializer_class: type[serializers.Serializer], request: Request, partial: bool = False) -> dict:
    """Validate a JSON body; every problem is a 400 BAD_REQUEST naming the parameter."""
    data = request.data
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.", param="body")
    serializer = serializer_class(data=data, partial=partial)
    unknown = sorted(set(data) - set(serializer.fields))
    if unknown:
        raise BadRequest(f"Unknown field: {unknown[0]}", param=unknown[0], allowed=sorted(serializer.fields))
    if not serializer.is_valid():
        field, errors = next(iter(serializer.errors.items()))
        first = errors  # the first message, however deep: list items are {index: [messages] or {field: ...}}
        while isinstance(first, (list, dict)) and first:
            first = first[0] if isinstance(first, list) else next(iter(first.values()))
        raise BadRequest(f"{field}: {first}", param=field, fields=serializer.errors)
    return dict(serializer.validated_data)
