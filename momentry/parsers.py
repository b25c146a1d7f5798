"""Request body parsers (DRF ``DEFAULT_PARSER_CLASSES``).

Loaded by DRF while ``rest_framework.views`` is imported, which ``momentry.errors`` needs, so
the error classes are imported inside the method.
"""

from __future__ import annotations

from io import BytesIO

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from momentry.nul import nul_path


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a size cap for bodies of unknown length, no crash on deep nesting, and
    no NUL character in any string or key (``\\u0000``: a 400 naming where, see :mod:`momentry.nul`)."""

    def parse(self, stream, media_type=None, parser_context=None):
        from momentry.errors import BadRequest
        from momentry.limits import body_limit, too_large

        limit = body_limit()
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise too_large()
        try:
            parsed = super().parse(BytesIO(data), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
        where = nul_path(parsed)  # (a walk costs far less than the parse; any charset)
        if where is not None:
            raise BadRequest(f"{where}: text must not contain the NUL character (\\u0000).", param=where)
        return parsed
