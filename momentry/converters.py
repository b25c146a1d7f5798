"""URL path converters for every path parameter of the API: the one place path values are checked.

``<file_uuid:…>`` and ``<identity_uuid:…>`` take a 32-hex-character uuid (a dashed or upper-case
UUID is accepted and handed to the view in the canonical form); ``<trace_id:…>`` a trace id
within the database's 32-bit bounds.

Each converter matches *any* path segment, so a value that cannot name anything (``abc``, a
NUL byte, an id past 2³¹−1) still selects its route instead of falling through to the
resolver's bare 404. It becomes a :class:`NoSuchValue`, which never reaches a view:
:meth:`momentry.errors.JsonErrorMiddleware.process_view` answers it with the very 404 the view
gives for an unknown file, trace or identity (:func:`momentry.errors.not_found`). So the
database never sees a malformed value (PostgreSQL refuses text with NUL: that was a 500),
and a client sees one answer for "no such thing" however the value was wrong.

Importing this module registers the converters (media_api.urls and identities.urls do).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import register_converter

#: Trace ids are 32-bit integers in every database (``Trace.trace_id``).
MAX_TRACE_ID = 2**31 - 1

_HEX32 = re.compile(r"[0-9a-f]{32}")
_ANY_SEGMENT = "[^/]+"


@dataclass(frozen=True)
class NoSuchValue:
    """A path segment that cannot name a resource; ``text`` is the segment as the client sent it."""

    text: str

    def __str__(self) -> str:
        return self.text


def canonical_uuid(value: str) -> str | None:
    """32 lowercase hex characters (dashes removed, case folded), or None if ``value`` is no uuid."""
    cleaned = value.replace("-", "").lower()
    return cleaned if _HEX32.fullmatch(cleaned) else None


def trace_id_of(value: str) -> int | None:
    """The trace id ``value`` writes (decimal digits, at most :data:`MAX_TRACE_ID`), or None."""
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        return None
    number = int(value)
    return number if number <= MAX_TRACE_ID else None


class UuidConverter:
    """A file or identity uuid; anything else is a :class:`NoSuchValue` (answered 404)."""

    regex = _ANY_SEGMENT

    def to_python(self, value: str) -> str | NoSuchValue:
        return canonical_uuid(value) or NoSuchValue(value)

    def to_url(self, value: str) -> str:
        return str(value)


class TraceIdConverter:
    """A trace id as an ``int``; anything else is a :class:`NoSuchValue` (answered 404)."""

    regex = _ANY_SEGMENT

    def to_python(self, value: str) -> int | NoSuchValue:
        number = trace_id_of(value)
        return NoSuchValue(value) if number is None else number

    def to_url(self, value: int | str) -> str:
        return str(value)


register_converter(UuidConverter, "file_uuid")
register_converter(UuidConverter, "identity_uuid")
register_converter(TraceIdConverter, "trace_id")
