"""gunicorn's own error answers in the JSON envelope.

gunicorn refuses some requests before the app sees them (a request line over
``limit_request_line``, too many or too large headers, a malformed request line) and answers
with a small HTML page written by ``gunicorn.util.write_error``. API clients must only ever
get the JSON envelope, so :func:`install` (called from deploy/gunicorn.conf.py) replaces that
one function; gunicorn's decision of *which* status to send is kept as it is.
"""

from __future__ import annotations

import json

CODES = {400: "BAD_REQUEST", 403: "FORBIDDEN", 414: "URI_TOO_LONG", 417: "EXPECTATION_FAILED",
         431: "HEADERS_TOO_LARGE", 500: "INTERNAL_ERROR", 501: "NOT_IMPLEMENTED"}


def json_error(status: int, reason: str) -> bytes:
    """The whole HTTP response gunicorn sends (its message text is not echoed: it quotes the request)."""
    body = json.dumps({"success": False, "error": {"code": CODES.get(status, "ERROR"), "message": f"{reason}.",
                                                   "details": {}}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    return head + body


def install() -> None:
    from gunicorn import util

    def write_error(sock, status_int, reason, mesg):
        util.write_nonblock(sock, json_error(int(status_int), reason))

    util.write_error = write_error
