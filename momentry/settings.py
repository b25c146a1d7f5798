"""Settings, all read from the environment (see the README's configuration table)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

from momentry import __version__
from momentry.secret_key import load_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _default_ffmpeg() -> str:
    """The ffmpeg the set-up installs: the static build inside the imageio-ffmpeg wheel."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # pragma: no cover - only without the wheel
        return "ffmpeg"


DATA_DIR = Path(os.environ.get("MOMENTRY_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
CACHE_DIR = DATA_DIR / "cache"

# From the environment, or generated once into DATA_DIR (never in the source): momentry/secret_key.py.
SECRET_KEY, MOMENTRY_SECRET_KEY_SOURCE = load_secret_key(DATA_DIR)
DEBUG = _env_bool("MOMENTRY_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("MOMENTRY_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
    if h.strip()
]
FFMPEG_BINARY = os.environ.get("MOMENTRY_FFMPEG") or _default_ffmpeg()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "momentry",
    "media_api",
    "identities",
    "jobs",
    "webhooks",
    "uploads",
]

MIDDLEWARE = [
    "momentry.limits.RequestLimitsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "momentry.errors.JsonErrorMiddleware",
]

ROOT_URLCONF = "momentry.urls"
WSGI_APPLICATION = "momentry.wsgi.application"
ASGI_APPLICATION = "momentry.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'momentry.sqlite3'}",
        conn_max_age=_env_int("MOMENTRY_DB_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers go on while an import writes; the busy timeout rides out short write
    # locks, and a write that still cannot happen is a 503 BUSY (momentry.errors), not a 500.
    # Transactions begin IMMEDIATE: a deferred one that read first and then writes after another
    # connection committed fails at once (SQLITE_BUSY, no waiting); IMMEDIATE waits its turn.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": float(os.environ.get("MOMENTRY_SQLITE_BUSY_TIMEOUT", "10")),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests use a file (not memory) so server and worker processes started by a test see the data.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-momentry.sqlite3")}

# A cache shared by every process (login lockout must hold behind gunicorn -w N): Redis when
# MOMENTRY_REDIS_URL is set, else the database (table made by migrate) — never per process.
REDIS_URL = os.environ.get("MOMENTRY_REDIS_URL", "").strip()
if REDIS_URL:
    # A Redis that hangs answers within seconds (login then says 503, see momentry.views_auth).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "momentry",
                          "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "momentry_cache", "KEY_PREFIX": "momentry"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Tests and runserver find static files without collectstatic.
WHITENOISE_USE_FINDERS = True
# Files served at the site root (/favicon.ico): browsers ask for it on every page.
WHITENOISE_ROOT = BASE_DIR / "momentry" / "root"

SESSION_COOKIE_AGE = 24 * 3600

# Request limits: a body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413, more fields a 400, and a
# request line longer than MOMENTRY_MAX_URL_LENGTH a 414 — all JSON, all before any view runs.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
MOMENTRY_MAX_URL_LENGTH = _env_int("MOMENTRY_MAX_URL_LENGTH", 4096)

# Behind a reverse proxy every client has the proxy's address: X-Forwarded-For is honoured only
# when the direct peer is one of these addresses or networks (comma-separated, e.g. 127.0.0.1,10.0.0.0/8).
MOMENTRY_TRUSTED_PROXIES = [p.strip() for p in os.environ.get("MOMENTRY_TRUSTED_PROXIES", "").split(",") if p.strip()]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "momentry.auth.SessionAuthentication",
        "momentry.auth.JWTAuthentication",
        "momentry.auth.APIKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "momentry.errors.api_exception_handler",
    # JSON only: the browsable API would answer HTML to a browser's Accept header.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "momentry.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=1),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Momentry media API",
    "DESCRIPTION": "Serve video by face track: ranges, frame-exact thumbnails and clips, overlays, identities.",
    "VERSION": __version__,  # the one version: momentry/__init__.py (also /health's)
    # The docs pages work offline: Swagger UI and Redoc come from drf-spectacular-sidecar, Swagger UI's
    # validator badge (an image from validator.swagger.io) is off, and Redoc's page loads no web fonts
    # (momentry/templates/momentry/redoc.html).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    # The enum hook is drf-spectacular's default; ours adds what holds for every route (uuid
    # patterns, trace_id bounds, the error statuses and envelope, closed request bodies).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "momentry.schema_hooks.postprocess",
    ],
    # One name for the webhook event list (a webhook's "events" items and a delivery's "event").
    "ENUM_NAME_OVERRIDES": {"WebhookEventEnum": "webhooks.events.EVENTS",
                            # An identity's source and status, wherever an identity is named (issue 22).
                            "IdentitySourceEnum": "momentry.schema.IDENTITY_SOURCES",
                            "IdentityStatusEnum": "momentry.schema.IDENTITY_STATUSES"},
}

# Media behaviour
MOMENTRY_API_KEY_DAYS = _env_int("MOMENTRY_API_KEY_DAYS", 90)
MOMENTRY_CACHE_MAX_AGE = _env_int("MOMENTRY_CACHE_MAX_AGE", 86400)
MOMENTRY_MAX_CLIP_SECONDS = _env_int("MOMENTRY_MAX_CLIP_SECONDS", 600)
MOMENTRY_MAX_FFMPEG_JOBS = _env_int("MOMENTRY_MAX_FFMPEG_JOBS", 4)
MOMENTRY_FFMPEG_WAIT_SECONDS = float(os.environ.get("MOMENTRY_FFMPEG_WAIT_SECONDS", "2"))
MOMENTRY_FFMPEG_TIMEOUT = _env_int("MOMENTRY_FFMPEG_TIMEOUT", 600)
# "" (Django streams the bytes), "x-accel-redirect" (nginx) or "x-sendfile" (Apache/lighttpd).
MOMENTRY_SENDFILE = os.environ.get("MOMENTRY_SENDFILE", "").strip().lower()
MOMENTRY_SENDFILE_PREFIX = os.environ.get("MOMENTRY_SENDFILE_PREFIX", "/protected-media")
MOMENTRY_SENDFILE_ROOT = os.environ.get("MOMENTRY_SENDFILE_ROOT", "/")
# Signed media URLs (POST /api/v1/file/{uuid}/sign): default and longest lifetime, and whether
# responses to them may be cached by shared caches (a CDN) — the URL itself is the credential.
MOMENTRY_SIGNED_URL_SECONDS = _env_int("MOMENTRY_SIGNED_URL_SECONDS", 3600)
MOMENTRY_SIGNED_URL_MAX_SECONDS = _env_int("MOMENTRY_SIGNED_URL_MAX_SECONDS", 7 * 24 * 3600)
MOMENTRY_SIGNED_URL_PUBLIC = _env_bool("MOMENTRY_SIGNED_URL_PUBLIC", True)

# Jobs (jobs/ and momentry/celery.py). Files registered through the API must lie under one of these
# directories (comma-separated; default $MOMENTRY_DATA_DIR/media).
MOMENTRY_MEDIA_ROOTS = [Path(p.strip()).resolve() for p in os.environ.get("MOMENTRY_MEDIA_ROOTS", "").split(",")
                        if p.strip()] or [DATA_DIR / "media"]
# Media the service stores itself (uploads): local under DATA_DIR/stored, or s3://bucket/prefix with the
# standard AWS_* variables (media_api/storage/config.py).
MOMENTRY_STORAGE_URL = os.environ.get("MOMENTRY_STORAGE_URL", "")
# Object storage (media_api/storage/, docs/storage.md): buckets besides MOMENTRY_STORAGE_URL's that
# POST /files {"url": "s3://bucket/key"} may register from (comma-separated); the life of the presigned URLs
# FFmpeg reads objects through (never sent to clients); /video of a stored object as a 302 to a presigned URL
# (for a CDN in front of the store) instead of proxying its ranges, and that URL's life.
MOMENTRY_S3_REGISTER_BUCKETS = [b.strip() for b in os.environ.get("MOMENTRY_S3_REGISTER_BUCKETS", "").split(",")
                                if b.strip()]
MOMENTRY_S3_URL_SECONDS = _env_int("MOMENTRY_S3_URL_SECONDS", 6 * 3600)
MOMENTRY_S3_VIDEO_REDIRECT = _env_bool("MOMENTRY_S3_VIDEO_REDIRECT", False)
MOMENTRY_S3_REDIRECT_SECONDS = _env_int("MOMENTRY_S3_REDIRECT_SECONDS", 3600)
# tus uploads (uploads/, docs/uploads.md): largest Upload-Length (413 beyond), how long an unfinished upload
# lives after its last chunk (beat removes it then), and how many unfinished uploads one key (or user) may hold.
MOMENTRY_MAX_UPLOAD_BYTES = _env_int("MOMENTRY_MAX_UPLOAD_BYTES", 20 * 1024**3)
MOMENTRY_UPLOAD_EXPIRE_SECONDS = _env_int("MOMENTRY_UPLOAD_EXPIRE_SECONDS", 24 * 3600)
MOMENTRY_UPLOAD_MAX_INCOMPLETE = _env_int("MOMENTRY_UPLOAD_MAX_INCOMPLETE", 10)
MOMENTRY_JOB_HEARTBEAT_SECONDS = float(os.environ.get("MOMENTRY_JOB_HEARTBEAT_SECONDS", "5"))  # a running job beats
MOMENTRY_JOB_STALE_SECONDS = _env_int("MOMENTRY_JOB_STALE_SECONDS", 20)  # no heartbeat for this long: worker gone
MOMENTRY_JOB_MAX_ATTEMPTS = _env_int("MOMENTRY_JOB_MAX_ATTEMPTS", 3)
MOMENTRY_JOB_REQUEUE_SECONDS = _env_int("MOMENTRY_JOB_REQUEUE_SECONDS", 300)  # queued this long: send again
MOMENTRY_REAP_SECONDS = float(os.environ.get("MOMENTRY_REAP_SECONDS", "5"))  # each worker checks jobs this often
MOMENTRY_CHUNK_SECONDS = float(os.environ.get("MOMENTRY_CHUNK_SECONDS", "60"))
# A job's face analysis (a file or a chunk) forks detector and embedding processes, as detect_faces does, so
# one job uses both cores; off: it runs in the worker's process alone (hosts with one busy worker per core).
MOMENTRY_ANALYSIS_HELPERS = _env_bool("MOMENTRY_ANALYSIS_HELPERS", True)
MOMENTRY_CACHE_MAX_BYTES = _env_int("MOMENTRY_CACHE_MAX_BYTES", 2 * 1024**3)

# Webhooks (webhooks/, docs/webhooks.md): receivers on loopback/private/link-local addresses are refused
# unless allowed; each attempt times out after MOMENTRY_WEBHOOK_TIMEOUT seconds; a failed one is retried
# after RETRY_BASE x 2^(n-1) seconds (at most 6 h) up to MAX_ATTEMPTS (defaults: about a day).
MOMENTRY_WEBHOOK_ALLOW_PRIVATE = _env_bool("MOMENTRY_WEBHOOK_ALLOW_PRIVATE", False)
MOMENTRY_WEBHOOK_TIMEOUT = float(os.environ.get("MOMENTRY_WEBHOOK_TIMEOUT", "10"))
MOMENTRY_WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("MOMENTRY_WEBHOOK_RETRY_BASE_SECONDS", "60"))
MOMENTRY_WEBHOOK_MAX_ATTEMPTS = _env_int("MOMENTRY_WEBHOOK_MAX_ATTEMPTS", 13)
MOMENTRY_WEBHOOK_RESEND_SECONDS = _env_int("MOMENTRY_WEBHOOK_RESEND_SECONDS", 300)  # overdue this long: sent again
MOMENTRY_WEBHOOK_KEEP_DAYS = _env_int("MOMENTRY_WEBHOOK_KEEP_DAYS", 30)  # delivery records kept this long

MOMENTRY_BROKER_URL = os.environ.get("MOMENTRY_BROKER_URL", "").strip()
if MOMENTRY_BROKER_URL:
    CELERY_BROKER_URL = MOMENTRY_BROKER_URL
    # Redis redelivers a message whose worker died without acknowledging it after this long;
    # the reaper (below) usually re-sends sooner, and tasks refuse to run a job twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _env_int("MOMENTRY_VISIBILITY_TIMEOUT", 3600)}
else:
    _broker = DATA_DIR / "broker"
    for _folder in ("queue", "control"):
        (_broker / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"), "data_folder_out": str(_broker / "queue"),
        "control_folder": str(_broker / "control"), "store_processed": False,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "momentry"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    # A spare round (every worker reaps by itself, jobs.tasks); a message still queued after a minute is dropped.
    "reap-jobs": {"task": "jobs.tasks.reap_jobs", "schedule": MOMENTRY_REAP_SECONDS, "options": {"expires": 60}},
    "evict-image-cache": {"task": "jobs.tasks.evict_image_cache", "schedule": 600.0},
    "sweep-webhook-deliveries": {"task": "webhooks.tasks.sweep", "schedule": 60.0, "options": {"expires": 60}},
    "expire-uploads": {"task": "uploads.tasks.expire_uploads", "schedule": 600.0},  # uploads/tasks.py
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "momentry": {"handlers": ["console"], "level": os.environ.get("MOMENTRY_LOG_LEVEL", "INFO")},
        "media_api": {"handlers": ["console"], "level": os.environ.get("MOMENTRY_LOG_LEVEL", "INFO")},
        "jobs": {"handlers": ["console"], "level": os.environ.get("MOMENTRY_LOG_LEVEL", "INFO")},
    },
}
