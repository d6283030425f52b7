"""tokenmgr settings: one file, every value from the environment with an embedded default (docs/setup.md)."""

import datetime as dt
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE

from tokenmgr.client_ip import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

# ------------------------------------------------------------------------------
# Core
# ------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)


def _key(name: str, development_default: str) -> str:
    """A key from the environment; with DEBUG off, its missing (or development) value stops the process at once.

    SystemExit with one line: manage.py, gunicorn (gunicorn.conf.py imports these settings) and Celery all print it
    without a traceback and exit with status 1.
    """
    value = env(name, default="") or development_default
    if value == development_default and not DEBUG:
        raise SystemExit(
            f"tokenmgr: {name} is not set; with DEBUG off the embedded development {name} is refused "
            f"(set the {name} environment variable to a long random value, or DEBUG=1 for development)."
        )
    return value


SECRET_KEY = _key("SECRET_KEY", "dev-insecure-change-me-0123456789abcdefghijklmnopqrstuvwxyz")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Name of the service, as emails sign it ("L'équipe <SERVICE_NAME>").
SERVICE_NAME = env("SERVICE_NAME", default="API Entreprise")
# Where the accessibility statement (/accessibilite/) tells users to report a barrier.
ACCESSIBILITY_CONTACT_EMAIL = env("ACCESSIBILITY_CONTACT_EMAIL", default="accessibilite@tokenmgr.localhost")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

ROOT_URLCONF = "tokenmgr.urls"
WSGI_APPLICATION = "tokenmgr.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "staff2fa.apps.StaffAdminConfig",  # django.contrib.admin, its site asking staff for a second factor
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",  # the unaccent lookup (tokenmgr.search); SQLite gets a function of its own
    "tokenmgr.axes_app.AxesConfig",
    "widget_tweaks",
    "dsfr",
    "ninja",
    "accounts",
    "tokens",
    "notifications",
    "availability",
    "portal",
    "evolutions",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
]

MIDDLEWARE = [
    "tokenmgr.metrics.RequestMetricsMiddleware",  # first: times the whole stack
    "tokenmgr.request_id.RequestIdMiddleware",
    "evolutions.deprecation.DeprecationHeadersMiddleware",  # outside the error handlers: every response announced
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "tokenmgr.middleware.JsonErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "notifications.magic_links.MagicLinkMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "tokenmgr.error_pages.MethodNotAllowedPageMiddleware",  # inside Locale/Auth: the page speaks the user's language
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tokenmgr.security.DocumentCSPMiddleware",
    "axes.middleware.AxesMiddleware",
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
    # Web, worker and beat share the file: wait for the lock instead of failing. Its folder is made by `make run`.
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
    "tokenmgr.login_throttle.PasswordLoginThrottleBackend",  # first: refuses locked-out (account, IP) pairs
    "django.contrib.auth.backends.ModelBackend",
    "sesame.backends.ModelBackend",
]
LOGIN_URL = "/connexion/"
LOGIN_REDIRECT_URL = "/"
SESAME_MAX_AGE = env.int("SESAME_MAX_AGE", default=7 * 24 * 3600)
SESAME_ONE_TIME = True
# Sensitive actions (secrets, revocation, webhooks, calendar key, first password) need a password or a fresh emailed
# link within this many seconds (portal.reauth).
REAUTH_MAX_AGE_SECONDS = env.int("REAUTH_MAX_AGE_SECONDS", default=900)

# Client IP: the reverse proxies in front of the app (IPs or CIDR ranges, comma-separated). X-Forwarded-For is read
# only from them (tokenmgr/client_ip.py). Parsed here, once: a malformed entry stops start-up.
try:
    TRUSTED_PROXIES = parse_trusted_proxies(env("TRUSTED_PROXIES", default=""))
except ValueError as _error:
    raise SystemExit(f"TRUSTED_PROXIES: {_error}") from None

# Password logins (portal and /admin/), django-axes: after AXES_FAILURE_LIMIT failures for one (account, client IP)
# within AXES_COOLOFF_TIME of each other, that pair is refused (the right password included) until AXES_COOLOFF_TIME
# has passed since its last failure; the account from another IP, or another account from that IP, is unaffected.
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = dt.timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "tokenmgr.login_throttle.client_ip_or_none"
AXES_USERNAME_CALLABLE = "tokenmgr.login_throttle.username_key"
# Both login forms post the address as "username" (Django's AuthenticationForm), whatever USERNAME_FIELD is.
AXES_USERNAME_FORM_FIELD = "username"
AXES_LOCKOUT_CALLABLE = "tokenmgr.login_throttle.lockout_response"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_RESET_ON_SUCCESS = True
# Attempts refused during a lock-out are not counted: the lock ends AXES_COOLOFF_TIME after the failure that set it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # no row per successful login
AXES_VERBOSE = False

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
TOKEN_DIGEST_KEY = _key("TOKEN_DIGEST_KEY", "tokenmgr-digest-key-change-me")
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
# Notifications
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
# Evolutions of the API (docs/evolutions.md)
# ------------------------------------------------------------------------------
# The entries published on a day reach each person in one digest, sent at this hour (TIME_ZONE) that day; an entry
# published at or after it goes into the next day's digest. Delivery shares the reminders' outbox settings
# (REMINDER_DELIVERY_BATCH, REMINDER_LEASE_SECONDS, REMINDER_MAX_ATTEMPTS, REMINDER_RETRY_*).
EVOLUTION_DIGEST_HOUR = env.int("EVOLUTION_DIGEST_HOUR", default=18)
# Beat delivers the due digests (and retries) every this many seconds.
EVOLUTION_DELIVERY_INTERVAL = env.int("EVOLUTION_DELIVERY_INTERVAL", default=300)
# Routes of this JSON API announced as deprecated: URL name -> {"deprecation": ISO 8601, "sunset": ISO 8601
# (optional), "evolution": public id of the entry that explains it (optional), "link": URL (optional)}. Their
# responses carry Deprecation, Sunset and Link headers (evolutions.deprecation). JSON in the environment.
DEPRECATED_ROUTES = env.json("DEPRECATED_ROUTES", default={})
# GET /api/evolutions: requests per minute per client IP.
RATELIMIT_EVOLUTIONS_PER_IP = env.int("RATELIMIT_EVOLUTIONS_PER_IP", default=1000)

# ------------------------------------------------------------------------------
# Access requests
# ------------------------------------------------------------------------------
# Legal-basis PDFs of access requests (stored under MEDIA_ROOT, served only through authorised views).
ACCESS_REQUEST_DOCUMENT_MAX_BYTES = env.int("ACCESS_REQUEST_DOCUMENT_MAX_BYTES", default=10 * 1024 * 1024)

# ------------------------------------------------------------------------------
# Availability
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
# Inbound limits and health checks
# ------------------------------------------------------------------------------
# POST /api/watchdoge/calls: a larger body (Content-Length) is refused with 413 before any of it is read; a line
# longer than AVAILABILITY_INGEST_MAX_LINE_BYTES (end-of-line included) is rejected with its line number, here and
# in `ingest_calls`, without ever being held in memory.
AVAILABILITY_INGEST_MAX_BODY_BYTES = env.int("AVAILABILITY_INGEST_MAX_BODY_BYTES", default=16 * 1024 * 1024)
AVAILABILITY_INGEST_MAX_LINE_BYTES = env.int("AVAILABILITY_INGEST_MAX_LINE_BYTES", default=4096)
# /healthz and /readyz answers are reused for this many seconds per process (0 = checked on every call).
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", default=5)

# GET /metrics (Prometheus, tokenmgr/metrics.py) answers clients whose IP (tokenmgr.client_ip: X-Forwarded-For is
# believed only from TRUSTED_PROXIES) is in METRICS_ALLOWED_IPS (IPs or CIDR ranges, comma-separated), and requests
# with `Authorization: Bearer <METRICS_TOKEN>`; empty values allow nobody. Anyone else gets 404.
try:
    METRICS_ALLOWED_IPS = parse_trusted_proxies(env("METRICS_ALLOWED_IPS", default=""))
except ValueError as _error:
    raise SystemExit(f"METRICS_ALLOWED_IPS: {_error}") from None
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# ------------------------------------------------------------------------------
# Portal
# ------------------------------------------------------------------------------
PORTAL_PAGE_SIZE = env.int("PORTAL_PAGE_SIZE", default=50)
RATELIMIT_VERIFY_PER_IP = env.int("RATELIMIT_VERIFY_PER_IP", default=30)
RATELIMIT_VERIFY_PER_USER = env.int("RATELIMIT_VERIFY_PER_USER", default=30)
# One deadline per delivery attempt: connect, TLS handshake, send and read together.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10)
# Destination ports a webhook URL may use.
WEBHOOK_ALLOWED_PORTS = [int(p) for p in env.list("WEBHOOK_ALLOWED_PORTS", default=["443", "8443"])]
# Test events ("ping") per minute, per endpoint and per user.
RATELIMIT_WEBHOOK_PING_PER_ENDPOINT = env.int("RATELIMIT_WEBHOOK_PING_PER_ENDPOINT", default=3)
RATELIMIT_WEBHOOK_PING_PER_USER = env.int("RATELIMIT_WEBHOOK_PING_PER_USER", default=10)
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
        "axes": {"level": "WARNING"},  # failures and lock-outs; not a line per successful login
    },
}

# ------------------------------------------------------------------------------
# Security: HTTPS behind the reverse proxy, Content-Security-Policy, staff second factor
# ------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    # The reverse proxy terminates TLS and says so in X-Forwarded-Proto (it must overwrite a client's header).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Served over HTTPS when its public address is: cookies never travel in clear, browsers remember to use HTTPS.
SITE_IS_HTTPS = SITE_URL.startswith("https://")
SESSION_COOKIE_SECURE = SITE_IS_HTTPS
CSRF_COOKIE_SECURE = SITE_IS_HTTPS
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SITE_IS_HTTPS)
# Probes and scrapers may reach the app directly over plain HTTP, without the proxy's header.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if SITE_IS_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preloading is a decision about the whole registrable domain, taken by its owner: opt-in only.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]  # see SECURE_HSTS_PRELOAD
X_FRAME_OPTIONS = "DENY"

# django-csp, on every HTML response (tokenmgr.security). No inline script anywhere: static files only, and
# `request.csp_nonce` for the rare tag a library renders inline. Inline *styles* stay allowed: the admin, the DSFR
# and Swagger UI set style attributes, and a style cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Staff second factor (django-otp, TOTP + one-time recovery codes) on /admin/: `required` or `off`.
STAFF_2FA = (env("STAFF_2FA", default="").strip() or ("off" if DEBUG else "required")).lower()
if STAFF_2FA not in {"required", "off"}:
    raise SystemExit(f"tokenmgr: STAFF_2FA must be 'required' or 'off', not {STAFF_2FA!r}.")
STAFF_2FA_RECOVERY_CODES = 10
OTP_TOTP_ISSUER = "tokenmgr"
# Device secrets are never shown in the admin (the device admins are not registered either: see staff2fa.apps).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Serve static files straight from the app folders when collectstatic has not run (make run, tests).
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# Benchmarks only (bench/privileges.py): route the bare JsonResponse baseline view under /bench/.
BENCH_VIEWS = env.bool("BENCH_VIEWS", default=False)

# ------------------------------------------------------------------------------
# Exposed tokens (POST /api/exposed_tokens, tokens/exposure.py, docs/exposed-tokens.md)
# ------------------------------------------------------------------------------
# What a report of a live secret does: `revoke` (it stops working at once) or `flag` (only marked); its contacts are
# told either way.
EXPOSED_TOKEN_POLICY = env("EXPOSED_TOKEN_POLICY", default="revoke").strip().lower()
if EXPOSED_TOKEN_POLICY not in {"revoke", "flag"}:
    raise SystemExit(
        f"tokenmgr: EXPOSED_TOKEN_POLICY must be 'revoke' or 'flag', not {EXPOSED_TOKEN_POLICY!r}."
    )
# Reports per minute and client IP: unsigned, and signed by a registered reporter (ExposureReporter).
RATELIMIT_EXPOSED_UNSIGNED_PER_IP = env.int("RATELIMIT_EXPOSED_UNSIGNED_PER_IP", default=10)
RATELIMIT_EXPOSED_SIGNED_PER_IP = env.int("RATELIMIT_EXPOSED_SIGNED_PER_IP", default=600)
# A larger body (Content-Length) is refused with 413 before it is read; a longer list with 422.
EXPOSED_TOKENS_MAX_BODY_BYTES = env.int("EXPOSED_TOKENS_MAX_BODY_BYTES", default=512 * 1024)
EXPOSED_TOKENS_MAX_ITEMS = env.int("EXPOSED_TOKENS_MAX_ITEMS", default=100)
