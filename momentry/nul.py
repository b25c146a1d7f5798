"""NUL characters in client input: PostgreSQL cannot store them in text or jsonb (psycopg raises), so
they are refused as a 400 where input enters — JSON bodies (:class:`momentry.parsers.BoundedJSONParser`),
query strings (:class:`momentry.limits.RequestLimitsMiddleware`), path segments
(:mod:`momentry.converters`) — never left to fail as a 500 in the database, on either database.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"


def nul_path(value: Any, path: str = "") -> str | None:
    """Where the first NUL in a parsed JSON value is, as a dotted path (``metadata.a.0``), or None.

    A NUL in an object's key is reported at the object (``metadata``; ``body`` at the top).
    """
    if isinstance(value, str):
        return (path or "body") if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in str(key):
                return path or "body"
            found = nul_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None
