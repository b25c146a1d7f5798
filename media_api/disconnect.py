"""Has the client of this request gone away?  (Checked while a media request waits for a job slot.)

A synchronous WSGI view cannot be told of a disconnect, but the connection's socket can be
asked: readable with nothing to read means the peer closed it. The socket is found where the
server exposes it — gunicorn puts it in ``environ["gunicorn.socket"]``; Django's runserver
(wsgiref) only through its input stream. Where there is none (test client, ASGI), the check
always answers "still there", which is the old behaviour.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from django.http import HttpRequest


def _request_socket(request: HttpRequest) -> socket.socket | None:
    meta = getattr(request, "META", {})
    sock = meta.get("gunicorn.socket")
    if isinstance(sock, socket.socket):
        return sock
    stream = getattr(meta.get("wsgi.input"), "stream", None)  # django LimitedStream → BufferedReader
    sock = getattr(getattr(stream, "raw", None), "_sock", None)  # → socket.SocketIO → socket
    return sock if isinstance(sock, socket.socket) else None


def peer_closed(sock: socket.socket) -> bool:
    """True when the peer has closed (EOF waiting) or reset the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):
        return True


def disconnect_check(request: HttpRequest) -> Callable[[], bool] | None:
    """A callable answering "has the client gone?", or None when the server gives no socket."""
    sock = _request_socket(getattr(request, "_request", request))
    if sock is None:
        return None
    return lambda: peer_closed(sock)
