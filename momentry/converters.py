"""URL path converters with the database's bounds, so an out-of-range id is a 404, not an overflow."""

from __future__ import annotations

#: Trace ids are 32-bit integers in every database (``Trace.trace_id``).
MAX_TRACE_ID = 2**31 - 1


class TraceIdConverter:
    regex = "[0-9]{1,10}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_TRACE_ID:
            raise ValueError("trace id out of range")  # Django then tries other patterns, and answers 404
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))
