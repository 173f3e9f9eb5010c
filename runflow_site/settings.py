"""Settings for runflow-site: one module, read from the environment.

With nothing set, the site starts on the embedded default: SQLite in ``var/``, media in
``var/media/``, generated secrets in ``var/secrets.json`` and the local sandbox. Production
sets ``SECRET_KEY``, ``FIELD_ENCRYPTION_KEYS``, ``ALLOWED_HOSTS``, ``SITE_URL`` and
``DATABASE_URL``; ``manage.py check --deploy`` says what is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from runflow_site.env import (
    GeneratedSecrets,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    new_fernet_key,
    new_secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("RUNFLOW_VAR_DIR", str(BASE_DIR / "var")))

# Tests run with fast password hashing, an immediate task backend and plain static files.
# Detecting pytest here keeps a single settings module (STYLE.md §9) instead of a tree.
TESTING = "pytest" in sys.modules

DEBUG = env_bool("DEBUG", False)

_generated = GeneratedSecrets(VAR_DIR / "secrets.json")
SECRET_KEY = env_str("SECRET_KEY") or _generated.get("SECRET_KEY", new_secret_key())

# Fernet keys that encrypt API keys and callback secrets at rest (S1). The first one
# encrypts; all of them decrypt, which is what lets `rotate_keys` work without downtime.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS") or [
    _generated.get("FIELD_ENCRYPTION_KEY", new_fernet_key())
]
GENERATED_SECRETS = frozenset(_generated.used)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [SITE_URL])

# Runflow endpoints. The default is the real API; team admins may also choose the running
# sandbox or any RUNFLOW_API_URLS entry, and nothing else (the key is sent there).
RUNFLOW_API_URL = env_url("RUNFLOW_API_URL", "https://api.runflow.io")
RUNFLOW_API_URLS = [u.rstrip("/") for u in env_list("RUNFLOW_API_URLS")]
SANDBOX_URL = env_str("SANDBOX_URL", "http://127.0.0.1:8765").rstrip("/")
SANDBOX_ENABLED = env_bool("SANDBOX_ENABLED", True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tasks_db",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "runs.throttle.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "runflow_site.urls"
WSGI_APPLICATION = "runflow_site.wsgi.application"

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
                "django.template.context_processors.csp",
                "runs.context_processors.workspace",
            ],
        },
    },
]

# Database: DATABASE_URL, or SQLite under var/. SQLite gets WAL (readers never block the
# writer), IMMEDIATE transactions (no upgrade deadlocks between web and worker) and a busy
# timeout so a short write lock waits instead of failing (D1).
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "runflow.sqlite3"),
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20),
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            "PRAGMA synchronous=NORMAL;"
            "PRAGMA foreign_keys=ON;"
            "PRAGMA cache_size=-32000;"
        ),
    }
    DATABASES["default"]["TEST"] = (
        {"NAME": VAR_DIR / "test.sqlite3"} if env_bool("SQLITE_TEST_FILE", False) else {}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Background work: django.tasks on the database queue. Several workers on several hosts
# claim work safely; the `serve` command starts one in-process for the embedded default.
TASKS = {
    "default": {
        "BACKEND": (
            "django.tasks.backends.immediate.ImmediateBackend"
            if TESTING
            else "django_tasks_db.DatabaseBackend"
        ),
        "QUEUES": ["default"],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "runs:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Tests and DEBUG serve static files from the finders, without a collectstatic first.
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = TESTING or DEBUG
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Media: the filesystem by default; any S3-compatible store when AWS_STORAGE_BUCKET_NAME is
# set (django-storages reads its usual AWS_* variables). Archived outputs are never served
# straight from MEDIA_URL: a view checks the team first (T5).
_default_storage: dict[str, object] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
if env_str("AWS_STORAGE_BUCKET_NAME"):
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if TESTING or DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        ),
    },
}

# Security (B1, B2, B3, B9). HTTPS-only settings switch on when SITE_URL is https.
_HTTPS = SITE_URL.startswith("https://")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = _HTTPS
CSRF_COOKIE_SECURE = _HTTPS
SECURE_SSL_REDIRECT = _HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _HTTPS
SECURE_HSTS_PRELOAD = _HTTPS
if env_bool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 24 * 14)

# A strict policy from Django's own middleware: no inline script, no eval, media only from
# ourselves. htmx is configured (base.html) not to inject inline styles or use eval.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "media-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# Limits. Callback bodies are capped before any HMAC work (W5).
CALLBACK_MAX_BYTES = env_int("CALLBACK_MAX_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
ARCHIVE_MAX_BYTES = env_int("ARCHIVE_MAX_BYTES", 512 * 1024 * 1024)
LOGIN_ATTEMPTS_PER_WINDOW = env_int("LOGIN_ATTEMPTS_PER_WINDOW", 10)

# The per-team circuit breaker (runs/connection/breaker.py): after THRESHOLD consecutive
# upstream failures the team's calls to Runflow pause for SECONDS, doubling with each further
# failure up to MAX_SECONDS; then one probe call may take PROBE_SECONDS before another caller
# may try.
RUNFLOW_BREAKER_THRESHOLD = env_int("RUNFLOW_BREAKER_THRESHOLD", 5, minimum=1)
RUNFLOW_BREAKER_SECONDS = env_float("RUNFLOW_BREAKER_SECONDS", 30, minimum=0.1)
RUNFLOW_BREAKER_MAX_SECONDS = env_float(
    "RUNFLOW_BREAKER_MAX_SECONDS", 600, minimum=RUNFLOW_BREAKER_SECONDS
)
RUNFLOW_BREAKER_PROBE_SECONDS = env_float("RUNFLOW_BREAKER_PROBE_SECONDS", 60, minimum=1)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache"
        if not TESTING
        else "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "runflow_cache",
    }
}

# Mail (password resets). Console by default; production names an SMTP (or other) backend.
MAILERS = {
    "default": {
        "BACKEND": env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"),
        "OPTIONS": {
            key: value
            for key, value in {
                "host": env_str("EMAIL_HOST"),
                "port": env_int("EMAIL_PORT", 0) or None,
                "username": env_str("EMAIL_HOST_USER"),
                "password": env_str("EMAIL_HOST_PASSWORD"),
                "use_tls": env_bool("EMAIL_USE_TLS", False) or None,
            }.items()
            if value
        },
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "runflow-site@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"quiet_403": {"()": "runflow_site.log_filters.QuietPermissionDenied"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["quiet_403"],  # a 403 is one line, not a traceback
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
