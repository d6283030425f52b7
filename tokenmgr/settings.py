"""tokenmgr settings: one file, every value from the environment with an embedded default (CONTRACT §1)."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

# ------------------------------------------------------------------------------
# Core
# ------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-change-me-0123456789abcdefghijklmnopqrstuvwxyz")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

ROOT_URLCONF = "tokenmgr.urls"
WSGI_APPLICATION = "tokenmgr.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "widget_tweaks",
    "dsfr",
    "ninja",
    "accounts",
    "tokens",
    "notifications",
    "availability",
    "portal",
]

MIDDLEWARE = [
    "tokenmgr.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tokenmgr.middleware.JsonErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "notifications.magic_links.MagicLinkMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dsfr.context_processors.site_config",
            ],
        },
    },
]

# ------------------------------------------------------------------------------
# Database and cache
# ------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
# A connection broken by a database restart is replaced at the next request instead of failing it.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for the lock instead of failing.
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})

REDIS_URL = env("REDIS_URL", default="")
if env("CACHE_URL", default=""):
    CACHES = {"default": env.cache("CACHE_URL")}
elif REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ------------------------------------------------------------------------------
# Auth
# ------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "sesame.backends.ModelBackend",
]
LOGIN_URL = "/connexion/"
LOGIN_REDIRECT_URL = "/"
SESAME_MAX_AGE = env.int("SESAME_MAX_AGE", default=7 * 24 * 3600)
SESAME_ONE_TIME = True

# ------------------------------------------------------------------------------
# Internationalisation and time
# ------------------------------------------------------------------------------
LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", "Français"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="Europe/Paris")
USE_I18N = True
USE_TZ = True

# ------------------------------------------------------------------------------
# Static files
# ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env("STATICFILES_BACKEND", default="django.contrib.staticfiles.storage.StaticFilesStorage")
    },
}
MEDIA_ROOT = env("MEDIA_ROOT", default=str(VAR_DIR / "media"))

# ------------------------------------------------------------------------------
# Email
# ------------------------------------------------------------------------------
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="tokenmgr <noreply@tokenmgr.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ADMINS = [tuple(a.split(":", 1)) if ":" in a else (a, a) for a in env.list("ADMINS", default=[])]

# ------------------------------------------------------------------------------
# Celery
# ------------------------------------------------------------------------------
# Default broker: kombu's filesystem transport under var/, so `make run` needs no server.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# ------------------------------------------------------------------------------
# Domain
# ------------------------------------------------------------------------------
TOKEN_VALIDITY_MONTHS = 18
TOKEN_SECRET_PREFIX = "tkm_"
# HMAC key for secret digests; distinct from SECRET_KEY so that rotating one does not void every token.
TOKEN_DIGEST_KEY = env("TOKEN_DIGEST_KEY", default="tokenmgr-digest-key-change-me")
REMINDER_DAYS = sorted(
    {int(d) for d in env.list("REMINDER_DAYS", default=["90", "60", "30", "15"])}, reverse=True
)
REMINDER_SWEEP_HOUR = env.int("REMINDER_SWEEP_HOUR", default=6)
# last_used_at is written at most once per this many seconds per token.
TOKEN_LAST_USED_RESOLUTION = env.int("TOKEN_LAST_USED_RESOLUTION", default=300)
# /v2/privileges may reuse a token check for this many seconds in the same process (no query): a revocation made
# elsewhere takes up to this long to reach every process; expiry is always exact. 0 = one query per request.
TOKEN_CHECK_CACHE_SECONDS = env.float("TOKEN_CHECK_CACHE_SECONDS", default=5)

# ------------------------------------------------------------------------------
# Notifications (issue 3)
# ------------------------------------------------------------------------------
# Thresholds: REMINDER_DAYS (Domain). Sweep: daily at REMINDER_SWEEP_HOUR in TIME_ZONE (beat entry in tokenmgr/celery.py).
# Due tokens per sweep batch: each batch's keyset query scans the rest of the 90-day window, so a day's reminders
# (~7,000 for 1M tokens) should fit in one or two batches.
REMINDER_SWEEP_BATCH = env.int("REMINDER_SWEEP_BATCH", default=10000)
# Rows claimed at once by a delivery run (one short transaction); each is then sent and settled on its own, over
# one SMTP connection per worker process (Celery concurrency gives parallelism), so a killed worker re-sends ≤ 1.
REMINDER_DELIVERY_BATCH = env.int("REMINDER_DELIVERY_BATCH", default=100)
# A claim (status `sending`) lasts this long; a crashed worker's rows are claimable again once it has expired.
REMINDER_LEASE_SECONDS = env.int("REMINDER_LEASE_SECONDS", default=60)
# Failed sends retry after base, base*factor, base*factor², … seconds (capped), then become `failed`.
REMINDER_MAX_ATTEMPTS = env.int("REMINDER_MAX_ATTEMPTS", default=6)
REMINDER_RETRY_BASE_SECONDS = env.int("REMINDER_RETRY_BASE_SECONDS", default=60)
REMINDER_RETRY_FACTOR = env.int("REMINDER_RETRY_FACTOR", default=5)
REMINDER_RETRY_MAX_SECONDS = env.int("REMINDER_RETRY_MAX_SECONDS", default=6 * 3600)
# Beat also picks up retries that became due, every this many seconds.
REMINDER_DELIVERY_INTERVAL = env.int("REMINDER_DELIVERY_INTERVAL", default=120)
# Tests of the production topology only: run the sweep every N seconds instead of daily (0 = daily).
REMINDER_SWEEP_INTERVAL_SECONDS = env.float("REMINDER_SWEEP_INTERVAL_SECONDS", default=0)

# ------------------------------------------------------------------------------
# Access requests (issue 4)
# ------------------------------------------------------------------------------
# Legal-basis PDFs of access requests (stored under MEDIA_ROOT, served only through authorised views).
ACCESS_REQUEST_DOCUMENT_MAX_BYTES = env.int("ACCESS_REQUEST_DOCUMENT_MAX_BYTES", default=10 * 1024 * 1024)

# ------------------------------------------------------------------------------
# Availability (issue 6)
# ------------------------------------------------------------------------------
# Counters are written at minute, hour and day resolution; `rollup_counters` drops minute rows older than
# AVAILABILITY_MINUTE_RETENTION_DAYS and hour rows older than AVAILABILITY_HOUR_RETENTION_DAYS (day rows are kept).
AVAILABILITY_MINUTE_RETENTION_DAYS = max(2, env.int("AVAILABILITY_MINUTE_RETENTION_DAYS", default=35))
AVAILABILITY_HOUR_RETENTION_DAYS = max(
    AVAILABILITY_MINUTE_RETENTION_DAYS, env.int("AVAILABILITY_HOUR_RETENTION_DAYS", default=400)
)
AVAILABILITY_INGEST_CHUNK_LINES = env.int("AVAILABILITY_INGEST_CHUNK_LINES", default=200_000)
AVAILABILITY_INGEST_MAX_ERRORS_SHOWN = env.int("AVAILABILITY_INGEST_MAX_ERRORS_SHOWN", default=1000)
# Real-time status: DOWN when >= RATIO of the last WINDOW minutes' calls are unavailable, UNKNOWN without calls.
AVAILABILITY_STATUS_WINDOW_MINUTES = env.int("AVAILABILITY_STATUS_WINDOW_MINUTES", default=15)
AVAILABILITY_DOWN_RATIO = env.float("AVAILABILITY_DOWN_RATIO", default=0.5)
AVAILABILITY_PAST_INCIDENTS_SHOWN = env.int("AVAILABILITY_PAST_INCIDENTS_SHOWN", default=50)
# Browser / proxy caching of provider_availabilities (seconds).
AVAILABILITY_STATS_MAX_AGE = env.int("AVAILABILITY_STATS_MAX_AGE", default=60)
RATELIMIT_STATUS_PER_IP = env.int("RATELIMIT_STATUS_PER_IP", default=1000)
RATELIMIT_INCIDENTS_PER_IP = env.int("RATELIMIT_INCIDENTS_PER_IP", default=1000)
RATELIMIT_INGEST_PER_IP = env.int("RATELIMIT_INGEST_PER_IP", default=600)

# ------------------------------------------------------------------------------
# Portal (issue 5)
# ------------------------------------------------------------------------------
PORTAL_PAGE_SIZE = env.int("PORTAL_PAGE_SIZE", default=50)
RATELIMIT_VERIFY_PER_IP = env.int("RATELIMIT_VERIFY_PER_IP", default=30)
RATELIMIT_VERIFY_PER_USER = env.int("RATELIMIT_VERIFY_PER_USER", default=30)
WEBHOOK_TIMEOUT_SECONDS = env.int("WEBHOOK_TIMEOUT_SECONDS", default=10)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)
WEBHOOK_BACKOFF_BASE_SECONDS = env.int("WEBHOOK_BACKOFF_BASE_SECONDS", default=30)
# Tests only: accept http:// and loopback targets (local receiver). Never in production.
WEBHOOK_ALLOW_LOOPBACK = env.bool("WEBHOOK_ALLOW_LOOPBACK", default=False)

# ------------------------------------------------------------------------------
# Rate limits (requests per minute)
# ------------------------------------------------------------------------------
RATELIMIT_PRIVILEGES_PER_IP = env.int("RATELIMIT_PRIVILEGES_PER_IP", default=1000)
RATELIMIT_PRIVILEGES_PER_TOKEN = env.int("RATELIMIT_PRIVILEGES_PER_TOKEN", default=250)
RATELIMIT_STATS_PER_IP = env.int("RATELIMIT_STATS_PER_IP", default=1000)
# Hits a process may count locally between two round trips to the shared counter (tokenmgr/ratelimit.py); 0 = exact.
RATELIMIT_LOCAL_BATCH = env.int("RATELIMIT_LOCAL_BATCH", default=32)

# ------------------------------------------------------------------------------
# Logging: every request log line goes through the secret-redacting filter.
# ------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# Structured JSON lines in production; readable lines under DEBUG.
LOG_FORMAT = env("LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "tokenmgr.logging.RedactSecretsFilter"},
        "request_id": {"()": "tokenmgr.request_id.RequestIdFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "tokenmgr.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Serve static files straight from the app folders when collectstatic has not run (make run, tests).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# Benchmarks only (bench/privileges.py): route the bare JsonResponse baseline view under /bench/.
BENCH_VIEWS = env.bool("BENCH_VIEWS", default=False)
