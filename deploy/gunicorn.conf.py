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
"""

import os

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

gunicorn_errors.install()
