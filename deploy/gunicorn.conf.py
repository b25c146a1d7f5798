"""gunicorn settings for Momentry:  gunicorn -c deploy/gunicorn.conf.py momentry.wsgi

Every value can be overridden on the command line (``--bind``, ``--workers`` …).

* ``limit_request_line`` / ``limit_request_field_size`` stay at gunicorn's 8190 bytes, above
  the app's own ``MOMENTRY_MAX_URL_LENGTH`` (4096): a too-long URL reaches the app, which answers
  414 in the JSON envelope. Lines longer still are refused by gunicorn itself, and
  :mod:`momentry.gunicorn_errors` makes those answers JSON too (gunicorn writes HTML otherwise).
* ``timeout`` is above ``MOMENTRY_FFMPEG_TIMEOUT`` so a long render is stopped by our own
  watchdog (which cleans up) before gunicorn kills the worker.
* Sync workers: a streamed render holds its worker while it streams; size ``workers`` to the
  expected number of parallel streams plus API traffic (``MOMENTRY_MAX_FFMPEG_JOBS`` bounds the
  renders across all workers).
* The control socket (``gunicornc``) is ``$MOMENTRY_DATA_DIR/gunicorn/<bind address>.ctl``. gunicorn's
  default, ``~/.gunicorn/gunicorn.ctl``, is one path for every instance a user runs on a host: the
  last one started takes it over and the first one stopped deletes it. Talk to one instance with
  ``gunicornc -s /var/lib/momentry/gunicorn/127.0.0.1_8000.ctl``; ``--no-control-socket`` turns it off.
"""

import os
import re
from pathlib import Path

from momentry import gunicorn_errors

bind = os.environ.get("MOMENTRY_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("MOMENTRY_WEB_WORKERS", "4"))
timeout = int(os.environ.get("MOMENTRY_FFMPEG_TIMEOUT", "600")) + 300
graceful_timeout = 30
limit_request_line = 8190
limit_request_field_size = 8190
limit_request_fields = 100
forwarded_allow_ips = os.environ.get("MOMENTRY_TRUSTED_PROXIES", "127.0.0.1")
accesslog = "-"

# The same default as momentry/settings.py; "{bind}" is filled in once gunicorn knows its addresses
# (the command line's --bind overrides ``bind`` above), so two instances never share a socket.
_DATA_DIR = Path(os.environ.get("MOMENTRY_DATA_DIR", Path(__file__).resolve().parent.parent / "var")).resolve()
control_socket = str(_DATA_DIR / "gunicorn" / "{bind}.ctl")


def _control_socket_per_address(server) -> None:
    """Name the control socket after the addresses this instance listens on (unless set on the command line)."""
    path = server.cfg.control_socket
    if "{bind}" in path:
        name = re.sub(r"[^A-Za-z0-9.-]+", "_", "-".join(server.cfg.bind)).strip("_")
        server.cfg.set("control_socket", path.replace("{bind}", name))


on_starting = _control_socket_per_address
on_reload = _control_socket_per_address

gunicorn_errors.install()
