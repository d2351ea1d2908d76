"""The one settings module. Every value comes from an environment variable through alm_portal.config.

ALM_MODE=production makes every secret and host setting mandatory; development (the default) and
test generate secrets once into var/ and run on the embedded defaults (SQLite, filesystem broker).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import dj_database_url
from kombu import Queue

from alm_portal.config import (
    ConfigurationError,
    env_bool,
    env_choice,
    env_int,
    env_json_str_map,
    env_list,
    env_optional,
    env_rate,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ALM_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# pytest exports PYTEST_VERSION while it runs, so a bare `pytest` gets test mode without extra flags.
ALM_MODE = env_choice(
    "ALM_MODE", "test" if "PYTEST_VERSION" in os.environ else "development", ("development", "test", "production")
)
PRODUCTION = ALM_MODE == "production"
# Off unless asked for, in every mode: Django's debug pages show settings, paths and every URL pattern to
# whoever reaches them, and people reach the demo too. `DEBUG=true` for a developer who wants them.
DEBUG = env_bool("DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ConfigurationError("DEBUG", "must be off in production")

SECRET_KEY = env_secret("SECRET_KEY", production=PRODUCTION, var_dir=VAR_DIR)
# Fernet keys, comma separated, newest first: MultiFernet decrypts with any and encrypts with the first.
ALM_ENCRYPTION_KEYS = env_secret("ALM_ENCRYPTION_KEY", production=PRODUCTION, var_dir=VAR_DIR, generate="fernet").split(
    ","
)
try:
    from cryptography.fernet import Fernet

    for _key in ALM_ENCRYPTION_KEYS:
        Fernet(_key.strip().encode())
except ValueError:
    raise ConfigurationError("ALM_ENCRYPTION_KEY", "must be one or more comma-separated Fernet keys") from None
# API tokens are stored as HMAC-SHA-256 digests keyed with this pepper (kept outside the database).
ALM_TOKEN_PEPPER = env_secret("ALM_TOKEN_PEPPER", production=PRODUCTION, var_dir=VAR_DIR)
# Audit checkpoints are signed with this key, which must not live in the database it protects.
ALM_AUDIT_CHECKPOINT_KEY = env_secret("ALM_AUDIT_CHECKPOINT_KEY", production=PRODUCTION, var_dir=VAR_DIR)
# A signed checkpoint is written at least this often while audit events arrive: a rewrite by whoever owns the
# database can only go unnoticed for the events of the last interval (docs/security.md "The audit trail").
ALM_AUDIT_CHECKPOINT_SECONDS = env_int("ALM_AUDIT_CHECKPOINT_SECONDS", 60, minimum=5, maximum=60)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigurationError("ALLOWED_HOSTS", "is required in production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Name of the header a trusted reverse proxy sets to the client address (e.g. X-Real-IP). Unset:
# the socket address is used and forwarded headers are ignored, because anyone can send them.
ALM_TRUSTED_PROXY_HEADER = env_optional("ALM_TRUSTED_PROXY_HEADER")
# Keep an incoming X-Request-ID only when a trusted proxy sets it.
ALM_TRUST_REQUEST_ID = env_bool("ALM_TRUST_REQUEST_ID", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "django_celery_beat",
    "alm_portal.audit",
    "alm_portal.accounts",
    "alm_portal.notifications",
    "alm_portal.idempotency",
    "alm_portal.limits",
    "alm_portal.jobs",
    "alm_portal.audit_verification",
    "environments",
    "solutions",
    "deployments",
]

MIDDLEWARE = [
    "alm_portal.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "alm_portal.accounts.middleware.SessionLifetimeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "alm_portal.api.idempotency.IdempotencyMiddleware",
]

ROOT_URLCONF = "alm_portal.urls"
WSGI_APPLICATION = "alm_portal.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
# Django's model backend behind the sign-in lockout, so every password form (ours, the admin's) honours it.
AUTHENTICATION_BACKENDS = ["alm_portal.accounts.backends.LockoutModelBackend"]

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
                "alm_portal.accounts.context_processors.permissions",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
_default_sqlite = f"sqlite:///{VAR_DIR / 'alm_portal.sqlite3'}"
_database_url = env_str("DATABASE_URL", _default_sqlite)
try:
    _database = dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
except Exception as exc:  # dj-database-url raises several types for a malformed URL
    raise ConfigurationError("DATABASE_URL", f"cannot be parsed ({exc})") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded default (docs/architecture.md §1): WAL so readers never block the writer, IMMEDIATE
    # transactions so two writers queue on the lock instead of failing at commit, 20 s timeout.
    _database["CONN_MAX_AGE"] = 0
    _database["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif _database["ENGINE"] == "django.db.backends.postgresql":
    _database.setdefault("OPTIONS", {})["connect_timeout"] = 5
else:
    raise ConfigurationError("DATABASE_URL", "must point at PostgreSQL or SQLite")
DATABASES = {"default": _database}
# The owner of the schema, for `manage.py migrate` only; DATABASE_URL is then the application role, which may
# only read and write rows (alm_portal/database_roles.py, docs/security.md "Database roles").
ALM_DATABASE_MIGRATE: dict[str, object] | None = None
_migrate_url = env_optional("DATABASE_MIGRATE_URL")
if _migrate_url:
    try:
        _migrate = dj_database_url.parse(_migrate_url)
    except Exception as exc:
        raise ConfigurationError("DATABASE_MIGRATE_URL", f"cannot be parsed ({exc})") from None
    if _migrate["ENGINE"] != "django.db.backends.postgresql" or _database["ENGINE"] != _migrate["ENGINE"]:
        raise ConfigurationError("DATABASE_MIGRATE_URL", "is for PostgreSQL, with DATABASE_URL on PostgreSQL too")
    for _part in ("HOST", "PORT", "NAME"):
        if str(_migrate.get(_part) or "") != str(_database.get(_part) or ""):
            raise ConfigurationError("DATABASE_MIGRATE_URL", f"must name the same database as DATABASE_URL ({_part})")
    if _migrate["USER"] == _database["USER"]:
        raise ConfigurationError("DATABASE_MIGRATE_URL", "must connect as another role than DATABASE_URL")
    ALM_DATABASE_MIGRATE = {"USER": _migrate["USER"], "PASSWORD": _migrate.get("PASSWORD") or ""}
# The audit chain's name: its checkpoints live in audit-checkpoints/<chain id>/ of the artifact storage. Each
# database sharing that storage needs its own; set it explicitly in production, so that a restore into another
# server keeps reading the same checkpoints. Default: the database's name and host.
_default_chain = "-".join(
    str(part)
    for part in (
        Path(str(_database["NAME"])).name.removesuffix(".sqlite3"),
        _database.get("HOST"),
        _database.get("PORT"),
    )
    if part
)
ALM_AUDIT_CHAIN_ID = env_str("ALM_AUDIT_CHAIN_ID", re.sub(r"[^A-Za-z0-9._-]+", "-", _default_chain)[:100] or "alm")
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", ALM_AUDIT_CHAIN_ID):
    raise ConfigurationError("ALM_AUDIT_CHAIN_ID", "must be 1-100 letters, digits, '.', '_' or '-'")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Sessions, security ---------------------------------------------------------------------
# A browser session ends after ALM_SESSION_IDLE_MINUTES without activity or ALM_SESSION_ABSOLUTE_HOURS
# after sign-in, whichever comes first (alm_portal.accounts.middleware enforces both server side).
ALM_SESSION_IDLE_MINUTES = env_int("ALM_SESSION_IDLE_MINUTES", 30, minimum=1, maximum=24 * 60)
ALM_SESSION_ABSOLUTE_HOURS = env_int("ALM_SESSION_ABSOLUTE_HOURS", 12, minimum=1, maximum=7 * 24)
SESSION_COOKIE_AGE = ALM_SESSION_ABSOLUTE_HOURS * 60 * 60
# Password sign-in: this many failures for one username from one address lock that pair for the cool-off.
ALM_SIGN_IN_MAX_FAILURES = env_int("ALM_SIGN_IN_MAX_FAILURES", 5, minimum=1)
ALM_SIGN_IN_COOLOFF_MINUTES = env_int("ALM_SIGN_IN_COOLOFF_MINUTES", 15, minimum=1)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
# No script reads the CSRF cookie: forms carry {% csrf_token %} and the API docs page gets the token
# from its template, so the cookie can stay out of reach of scripts.
CSRF_COOKIE_HTTPONLY = True
if PRODUCTION:
    # `__Host-` makes browsers refuse the cookie unless it is Secure, host-only and for path /, so a
    # sibling subdomain cannot plant or overwrite it.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Error reports hide every POST field whose name looks secret, not only those of marked views.
DEFAULT_EXCEPTION_REPORTER_FILTER = "alm_portal.error_reports.SecretFieldsReporterFilter"
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
    # Plain HTTP is answered with a redirect, except the probes a load balancer calls on the inside.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if ALM_TRUSTED_PROXY_HEADER else None

# Content-Security-Policy (django-csp) on every response: scripts and styles from our own static files
# only. No template has inline script or style; htmx reads its config from a meta tag with allowEval
# off and injects no indicator styles; the API docs load their init script from a URL (split view).
# ALM_CSP_EXEMPT_PATHS lists path prefixes served without the header (none by default).
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": tuple(env_list("ALM_CSP_EXEMPT_PATHS", [])),
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files and artifacts ---------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Outside production, serve straight from static/ so a fresh checkout needs no collectstatic.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = ALM_MODE == "development"
STATICFILES_DIRS = [BASE_DIR / "static"]
ALM_ARTIFACT_DIR = Path(env_str("ALM_ARTIFACT_DIR", str(VAR_DIR / "artifacts")))
_artifact_backend = env_str("ALM_ARTIFACT_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")
try:
    _artifact_options = json.loads(env_str("ALM_ARTIFACT_STORAGE_OPTIONS", "{}"))
except json.JSONDecodeError:
    raise ConfigurationError("ALM_ARTIFACT_STORAGE_OPTIONS", "must be a JSON object") from None
if _artifact_backend.endswith("FileSystemStorage"):
    _artifact_options.setdefault("location", str(ALM_ARTIFACT_DIR))
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "media")},
    },
    # Solution zips and audit checkpoints; S3/Azure Blob through django-storages in production.
    "artifacts": {"BACKEND": _artifact_backend, "OPTIONS": _artifact_options},
    # Hashed names need a manifest that collectstatic writes; only production deploys build one, so the
    # demo and a bare `runserver` serve static/ by its own names (with DEBUG off, as everywhere).
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Celery (docs/architecture.md §1) ----------------------------------------------------------------
REDIS_URL = env_optional("REDIS_URL")
ALM_BROKER_DIR = VAR_DIR / "broker"
# With Redis, an unacknowledged message is redelivered after the visibility timeout, so it must be
# longer than any task can run; 2 h in production, shortened in tests that exercise redelivery.
ALM_VISIBILITY_TIMEOUT = env_int("ALM_VISIBILITY_TIMEOUT", 7200, minimum=10)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object]
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": ALM_VISIBILITY_TIMEOUT,
        "socket_timeout": 5,
        "socket_connect_timeout": 3,
        "max_retries": 0,
    }
else:
    for _folder in ("out", "processed", "control"):
        (ALM_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    # kombu's filesystem transport with an atomic put (alm_portal/broker_filesystem.py, registered by the Celery app).
    # The transport ignores the host, but kombu logs "No hostname was supplied" on every connection without one.
    CELERY_BROKER_URL = "alm-filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(ALM_BROKER_DIR / "out"),
        "data_folder_out": str(ALM_BROKER_DIR / "out"),
        "processed_folder": str(ALM_BROKER_DIR / "processed"),
        "control_folder": str(ALM_BROKER_DIR / "control"),
        "store_processed": False,
    }
# --- Cache: throttle counters and export slots, shared by every process (alm_portal.limits) ------
# Redis when there is one (its own key prefix beside Celery's keys); otherwise the database cache table
# `alm_cache` that the limits app's migration creates.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"alm-{ALM_MODE}",
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "alm_cache",
            "KEY_PREFIX": f"alm-{ALM_MODE}",
        }
    }

# Webhook and email deliveries (and their dispatcher) have a queue of their own, which a separate worker
# consumes (docker-compose `notifier`, Procfile `notifier`): a slow or dead receiver never delays a job.
# A worker started without -Q consumes both queues, taking from each in turn: a job then waits for at most the
# one delivery attempt already running (up to 15 s against a dead host), never for the whole backlog.
NOTIFICATIONS_QUEUE = "notifications"
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(NOTIFICATIONS_QUEUE))
CELERY_TASK_ROUTES = {"notifications.*": {"queue": NOTIFICATIONS_QUEUE}}
# Job state lives in our own rows; Celery results are never the record.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# acks_late is switched on per task, only for tasks that are safe to run twice.
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TIME_LIMIT = env_int("ALM_TASK_TIME_LIMIT", 900, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
# Publishing is best effort: the job row is the outbox and beat re-dispatches what was not sent.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No remote control (pidbox): nothing here sends control commands (the job rows are the record, so there is
# nothing to revoke), and its fan-out queue is a second, pub/sub channel on the worker's broker connection.
# When Redis restarts and that channel notices first, kombu's teardown skips the task channel, closes it only
# after the transport is gone, and the restore of an unacknowledged message (an acks_late task in flight)
# then fails with AttributeError("'NoneType' object has no attribute 'hostname'"), which ends the worker with
# "Unrecoverable error" instead of reconnecting. Gossip adds the same kind of channel: run workers without it.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
# A task running when the broker goes away finishes and writes its job row; its message may come back, which
# the claim makes harmless. Cancelling it would leave its lease to run out instead. (Set explicitly: Celery
# warns on every reconnect that the default will change.)
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = False
# Fixed schedules; DatabaseScheduler copies them into its tables at start-up.
CELERY_BEAT_SCHEDULE = {
    "dispatch-jobs": {"task": "deployments.dispatch_jobs", "schedule": 30.0},
    # The newest events' checkpoint when no more arrive (events that do arrive write their own, see below).
    "audit-checkpoint": {"task": "audit.checkpoint_write", "schedule": float(ALM_AUDIT_CHECKPOINT_SECONDS)},
    "notifications-dispatch": {"task": "notifications.dispatch", "schedule": 10.0},
    "release-scheduled-promotions": {"task": "deployments.release_scheduled_promotions", "schedule": 60.0},
    "idempotency-purge-expired": {"task": "idempotency.purge_expired", "schedule": 3600.0},
    # A full verification as a job once a day, so the last result (pages, /metrics) never grows old.
    "audit-verify-daily": {"task": "audit.verify", "schedule": 86400.0},
}

# --- Throttles and concurrent exports (alm_portal.limits; docs/security.md "Limits and throttles") ---
# Rates are `<n>/<s|min|hour|day>` or `off`. The test suite's defaults are high, so that only the tests of the
# throttles themselves (which set low rates) meet them; benchmarks turn them off (bench/README.md).
_TEST_RATE = "100000/min"
ALM_THROTTLE_ANON = env_rate("ALM_THROTTLE_ANON", _TEST_RATE if ALM_MODE == "test" else "60/min")
ALM_THROTTLE_USER = env_rate("ALM_THROTTLE_USER", _TEST_RATE if ALM_MODE == "test" else "1200/min")
ALM_THROTTLE_FAILED_AUTH = env_rate("ALM_THROTTLE_FAILED_AUTH", _TEST_RATE if ALM_MODE == "test" else "30/min")
ALM_EXPORT_MAX_CONCURRENT = env_int("ALM_EXPORT_MAX_CONCURRENT", 4, minimum=1, maximum=64)
ALM_EXPORT_MAX_CONCURRENT_PER_USER = env_int("ALM_EXPORT_MAX_CONCURRENT_PER_USER", 1, minimum=1, maximum=16)
# Refused requests without a signed-in caller are audited as one `api.denied.unauthenticated` event per client
# address and window, with the count, instead of one event each.
ALM_DENIAL_AUDIT_WINDOW_SECONDS = env_int("ALM_DENIAL_AUDIT_WINDOW_SECONDS", 60, minimum=10, maximum=3600)
CELERY_BEAT_SCHEDULE["audit-denied-requests"] = {
    "task": "audit.flush_denied_requests",
    "schedule": float(ALM_DENIAL_AUDIT_WINDOW_SECONDS),
}

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first, so an anonymous API call is answered 401 with WWW-Authenticate: Bearer.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "alm_portal.accounts.authentication.BearerTokenAuthentication",
        "alm_portal.accounts.authentication.CsrfSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["alm_portal.accounts.permissions.ScopedRolePermission"],
    # Checked after permissions; the 401 and 403 answers are counted in the exception handler.
    "DEFAULT_THROTTLE_CLASSES": [
        "alm_portal.limits.throttling.AnonymousRateThrottle",
        "alm_portal.limits.throttling.UserRateThrottle",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "alm_portal.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "alm_portal.api.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "alm_portal.api.openapi.ApiAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DATETIME_FORMAT": "iso-8601",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ALM Portal API",
    "DESCRIPTION": "Promote Power Platform solutions between Dataverse environments under policy and audit.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets come from the installed sidecar package: pages work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `kind` or `status`; naming each choice set keeps the schema (and the
    # deploy check, which runs drf-spectacular's warnings) free of generated names like Kind678Enum.
    "ENUM_NAME_OVERRIDES": {
        "EnvironmentKindEnum": "environments.choices.EnvironmentKind",
        "HealthStatusEnum": "environments.choices.HealthStatus",
        "CredentialKindEnum": "environments.choices.CredentialKind",
        "CredentialStatusEnum": "environments.choices.CredentialStatus",
        "DriftKindEnum": "environments.choices.DriftKind",
        "NotificationKindEnum": "environments.choices.NotificationKind",
        "SourceKindEnum": "solutions.choices.SourceKind",
        "JobKindEnum": "alm_portal.job_kinds.JobKind",
        "JobStatusEnum": "alm_portal.jobs.choices.JobStatus",
        "PromotionKindEnum": "deployments.choices.PromotionKind",
        "PromotionStatusEnum": "deployments.choices.PromotionStatus",
        "PreflightStatusEnum": "deployments.choices.PreflightStatus",
        "RollbackStrategyEnum": "deployments.choices.RollbackStrategy",
        "DeliveryStatusEnum": "alm_portal.notifications.choices.DeliveryStatus",
    },
}

# --- Portal behaviour -------------------------------------------------------------------------
ALM_TOKEN_MAX_DAYS = 90
ALM_TOKEN_DEFAULT_DAYS = 30
ALM_APPROVAL_TTL_DAYS = env_int("ALM_APPROVAL_TTL_DAYS", 30, minimum=1)
ALM_ALLOW_LOOPBACK = env_bool("ALM_ALLOW_LOOPBACK", default=not PRODUCTION)
if PRODUCTION and ALM_ALLOW_LOOPBACK:
    raise ConfigurationError("ALM_ALLOW_LOOPBACK", "must be off in production")
ALM_TEST_CRASH_AT = env_optional("ALM_TEST_CRASH_AT")
# CA bundle trusted for Dataverse and Entra ID; unset means the public CAs (certifi). The demo and the
# tests point it at the emulator's CA.
ALM_DATAVERSE_CA_BUNDLE = env_optional("ALM_DATAVERSE_CA_BUNDLE")
DEMO_PASSWORD = env_optional("DEMO_PASSWORD")
# Bearer token a Prometheus scraper presents to GET /metrics (admins' and auditors' API tokens work too).
ALM_METRICS_TOKEN = env_optional("ALM_METRICS_TOKEN")
if ALM_METRICS_TOKEN is not None and len(ALM_METRICS_TOKEN) < 32:
    raise ConfigurationError("ALM_METRICS_TOKEN", "must be at least 32 characters (e.g. openssl rand -hex 32)")

# Entra ID single sign-on (issue 7): all three set, or none (the sign-in page then offers passwords only).
# The authority's TLS is checked against ALM_DATAVERSE_CA_BUNDLE when set (the emulator's CA in the demo).
ALM_SSO_AUTHORITY = env_optional("ALM_SSO_AUTHORITY")
ALM_SSO_CLIENT_ID = env_optional("ALM_SSO_CLIENT_ID")
ALM_SSO_CLIENT_SECRET = env_optional("ALM_SSO_CLIENT_SECRET")
# The demo (`make run`) signs in through the emulator: its sign-in client comes from the
# demo-credentials.json the emulator writes at start (absent before the first start: no SSO yet).
ALM_SSO_DEMO_CREDENTIALS = env_optional("ALM_SSO_DEMO_CREDENTIALS")
# A worker or beat process touches this file once it is up, so `make run` can tell when everything answers.
ALM_READY_FILE = env_optional("ALM_READY_FILE")
if ALM_SSO_DEMO_CREDENTIALS and PRODUCTION:
    raise ConfigurationError("ALM_SSO_DEMO_CREDENTIALS", "is for the demo and must not be set in production")
# The demo only (never in production): a first sign-in from the demo's tenant whose user principal name is
# exactly <username>@<the demo's domain> links the unlinked local demo account <username>. Taken from the
# emulator's demo credentials, so nothing but the demo can turn it on (docs/security.md, identity linking).
ALM_SSO_DEMO_LINKING: dict[str, str] | None = None
if ALM_SSO_DEMO_CREDENTIALS and not ALM_SSO_AUTHORITY and Path(ALM_SSO_DEMO_CREDENTIALS).exists():
    try:
        _demo_sso = json.loads(Path(ALM_SSO_DEMO_CREDENTIALS).read_text())
        ALM_SSO_AUTHORITY = str(_demo_sso["authority"])
        ALM_SSO_CLIENT_ID = str(_demo_sso["sso_client"]["client_id"])
        ALM_SSO_CLIENT_SECRET = str(_demo_sso["sso_client"]["client_secret"])
        ALM_SSO_DEMO_LINKING = {"tenant_id": str(_demo_sso["tenant_id"]), "domain": str(_demo_sso["tenant_name"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigurationError("ALM_SSO_DEMO_CREDENTIALS", "is not the emulator's demo-credentials.json") from None
_sso_missing = [
    name
    for name, value in (
        ("ALM_SSO_AUTHORITY", ALM_SSO_AUTHORITY),
        ("ALM_SSO_CLIENT_ID", ALM_SSO_CLIENT_ID),
        ("ALM_SSO_CLIENT_SECRET", ALM_SSO_CLIENT_SECRET),
    )
    if not value
]
if _sso_missing and len(_sso_missing) < 3:
    raise ConfigurationError(_sso_missing[0], "single sign-on needs ALM_SSO_AUTHORITY, _CLIENT_ID and _CLIENT_SECRET")
# App roles or group object ids (both claims are read) → our roles; with several, the most powerful wins.
ALM_SSO_ROLE_MAP = env_json_str_map(
    "ALM_SSO_ROLE_MAP",
    {"ALM.Admin": "admin", "ALM.Approver": "approver", "ALM.Maker": "maker", "ALM.Auditor": "auditor"},
    allowed_values=("maker", "approver", "admin", "auditor"),  # accounts.choices.Role; a test keeps them equal
)
# App roles or group object ids → team slugs. Sign-in adds and removes memberships of these teams only;
# teams not named here are managed in the portal.
ALM_SSO_GROUP_TEAM_MAP = env_json_str_map("ALM_SSO_GROUP_TEAM_MAP", {}, value_pattern=r"^[-a-zA-Z0-9_]+$")
# Linking by username was removed: it ignored the domain, so approver2@attacker.example signed in as the
# local approver2. Stop rather than run with a setting that no longer does what its name says.
if "ALM_SSO_LINK_BY_USERNAME" in os.environ:
    raise ConfigurationError(
        "ALM_SSO_LINK_BY_USERNAME",
        "was removed: Entra ID sign-ins link by tenant and object id only; an admin links a local account "
        "(manage.py link_entra_identity, or People in the portal)",
    )

# Django's admin site at /admin/: read-only for staff superusers (manage.py createsuperuser). The demo
# (`make run`) turns it off: its people are not staff, and every change goes through the portal's pages.
ALM_DJANGO_ADMIN = env_bool("ALM_DJANGO_ADMIN", default=True)

# Solution packages: uploads above this size are refused with 413 (match your proxy's body limit).
ALM_MAX_UPLOAD_BYTES = env_int("ALM_MAX_UPLOAD_BYTES", 500 * 1024 * 1024, minimum=1024)
# Export jobs look at Dataverse's async operation every few seconds for a short while, then defer
# (polling is a chain of short tasks) until the operation ends or the maximum passes.
ALM_EXPORT_POLL_SECONDS = env_int("ALM_EXPORT_POLL_SECONDS", 2, minimum=1)
ALM_EXPORT_WAIT_IN_TASK_SECONDS = env_int("ALM_EXPORT_WAIT_IN_TASK_SECONDS", 30, minimum=0, maximum=120)
ALM_EXPORT_MAX_SECONDS = env_int("ALM_EXPORT_MAX_SECONDS", 3600, minimum=60)
# Imports: a running operation is looked at after ALM_IMPORT_POLL_SECONDS, then ever less often up to
# the maximum gap; after ALM_IMPORT_MAX_WAIT its outcome counts as unknown (needs attention).
ALM_IMPORT_MAX_WAIT = env_int("ALM_IMPORT_MAX_WAIT", 6 * 3600, minimum=60)
ALM_IMPORT_POLL_SECONDS = env_int("ALM_IMPORT_POLL_SECONDS", 1, minimum=1)
ALM_IMPORT_POLL_MAX_SECONDS = env_int("ALM_IMPORT_POLL_MAX_SECONDS", 10, minimum=1, maximum=60)
ALM_IMPORT_BUSY_RETRY_SECONDS = env_int("ALM_IMPORT_BUSY_RETRY_SECONDS", 10, minimum=1, maximum=60)
# How long the runner waits for an answer to a Web API read (uploads have their own, longer limit); a
# slower answer counts as transient trouble. Shortened by fault tests that make Dataverse slow.
ALM_IMPORT_READ_TIMEOUT = env_int("ALM_IMPORT_READ_TIMEOUT", 60, minimum=1, maximum=600)
# Send our own ImportJobId on ImportSolutionAsync/StageAndUpgradeAsync. Whether Dataverse honours
# it is UNCONFIRMED (Microsoft's own client strips it), so it is off by default (docs/states.md §3).
ALM_IMPORT_JOB_ID_ON_ASYNC = env_bool("ALM_IMPORT_JOB_ID_ON_ASYNC", default=False)
# Credentials warn this many days before they expire.
ALM_CREDENTIAL_WARNING_DAYS = [
    int(days) for days in env_list("ALM_CREDENTIAL_WARNING_DAYS", ["30", "7"]) if days.strip().isdigit()
]
# A `<name>_Upgrade` holding solution older than this is reported as stuck.
ALM_HOLDING_GRACE_MINUTES = env_int("ALM_HOLDING_GRACE_MINUTES", 30, minimum=1)
# Extra Dataverse host suffixes (sovereign clouds) and Entra authority hosts beyond the built-in ones.
ALM_DATAVERSE_EXTRA_SUFFIXES = env_list("ALM_DATAVERSE_EXTRA_SUFFIXES", [])
ALM_AUTHORITY_EXTRA_HOSTS = env_list("ALM_AUTHORITY_EXTRA_HOSTS", [])

# --- Source control (docs/source-control.md) ------------------------------------------------------
# A repository may be a local path (instead of an https or ssh URL) only under this folder, and never in
# production: the demo and single-machine trials use it; unset, local paths are refused.
ALM_GIT_LOCAL_ROOT = env_optional("ALM_GIT_LOCAL_ROOT") or ""
if PRODUCTION and ALM_GIT_LOCAL_ROOT:
    raise ConfigurationError("ALM_GIT_LOCAL_ROOT", "local repositories are not allowed in production")
ALM_GIT_CA_BUNDLE = env_optional("ALM_GIT_CA_BUNDLE") or ""  # unset: the system's CAs
# Each worker keeps a bare copy of every bound repository here (a cache: safe to delete).
ALM_GIT_WORK_DIR = Path(env_str("ALM_GIT_WORK_DIR", str(VAR_DIR / "git")))
ALM_GIT_COMMITTER_NAME = env_str("ALM_GIT_COMMITTER_NAME", "ALM Portal")
ALM_GIT_COMMITTER_EMAIL = env_str("ALM_GIT_COMMITTER_EMAIL", "alm-portal@localhost")

# --- Notifications (webhooks and email) ---------------------------------------------------------
ALM_WEBHOOK_CA_BUNDLE = env_optional("ALM_WEBHOOK_CA_BUNDLE")  # unset: the public CAs (certifi)
ALM_NOTIFICATION_RETRY_HOURS = env_int("ALM_NOTIFICATION_RETRY_HOURS", 24, minimum=1, maximum=168)
# An endpoint whose every delivery attempt has failed for this long is switched off (audited, with the reason).
ALM_WEBHOOK_DISABLE_AFTER_HOURS = env_int("ALM_WEBHOOK_DISABLE_AFTER_HOURS", 24, minimum=1, maximum=168)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_optional("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=PRODUCTION)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "alm-portal@localhost")

# --- Logging: one line per record, with the request id and the job id (alm_portal/logformat.py) ---
# json: one JSON object per line (the default in production, for log shippers); text: for terminals.
ALM_LOG_FORMAT = env_choice("ALM_LOG_FORMAT", "json" if PRODUCTION else "text", ("json", "text"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "alm_portal.middleware.RequestIdLogFilter"},
        "job_id": {"()": "alm_portal.logformat.JobIdLogFilter"},
    },
    "formatters": {
        "text": {"()": "alm_portal.logformat.TextLogFormatter"},
        "json": {"()": "alm_portal.logformat.JsonLogFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": ALM_LOG_FORMAT, "filters": ["request_id", "job_id"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
