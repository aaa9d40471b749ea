"""Settings for the govtech project, read from the environment only.

Local defaults run the demo on an embedded SQLite database with the django-q2
ORM broker; DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from govtech.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GOVTECH_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
# Demo mode: a local, single-machine setup (make run). It allows a generated
# secret key kept on disk and a demo staff login; never set it in a deployment.
DEMO_MODE = env_bool("GOVTECH_DEMO", False)
TESTING = env_bool("GOVTECH_TESTING", False)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    if not (DEBUG or DEMO_MODE or TESTING):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random value "
            "(or GOVTECH_DEMO=1 for a local demo)."
        )
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "polymorphic",
    "rest_framework",
    "import_export",
    "django_q",
    "staff",
    "audit",
    "residents",
    "procedures",
    "broadcasts",
    "messaging",
    "govtech",  # project-wide management commands (run_demo)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "govtech.urls"
WSGI_APPLICATION = "govtech.wsgi.application"

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
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "ja"
# Staff and residents are served in Japanese whatever their browser asks for:
# every user-facing msgid is Japanese, so offering other languages would mix them.
LANGUAGES = [("ja", "日本語")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Tokyo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("DJANGO_MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # The manifest needs collectstatic, which only a deployment runs.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not (DEBUG or DEMO_MODE or TESTING)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# The demo serves static files straight from the apps, without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG or DEMO_MODE

# Upload limits: a webhook or a template file bigger than this is refused
# before it is read into memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024, minimum=1024)
PROCEDURE_IMPORT_MAX_BYTES = env_int("PROCEDURE_IMPORT_MAX_BYTES", 1024 * 1024, minimum=1024)

# Security: on unless running the local demo over plain HTTP.
SECURE = env_bool("DJANGO_SECURE", not (DEBUG or DEMO_MODE or TESTING))
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE and env_bool("DJANGO_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if SECURE else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# django-q2: the ORM broker by default, Redis when REDIS_URL is set. `sync`
# is read once at import, so tests set Q_SYNC through the environment.
REDIS_URL = env_str("REDIS_URL")
Q_CLUSTER = {
    "name": "govtech",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": env_int("Q_TIMEOUT", 120, minimum=1),
    "retry": env_int("Q_RETRY", 180, minimum=2),
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 5, minimum=1),
    "catch_up": False,
    # -1: keep no successful task results. Inbox and outbox rows already record what happened,
    # and saving each result cost the single monitor process ~6 ms per task (bench/README.md).
    "save_limit": env_int("Q_SAVE_LIMIT", -1, minimum=-1),
    "sync": env_bool("Q_SYNC", False),
    "label": _("バックグラウンド処理"),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
Q_CLUSTER["retry"] = max(Q_CLUSTER["retry"], Q_CLUSTER["timeout"] + 1)

CACHES = (
    {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    if REDIS_URL
    else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
)

# Conversations: how long an idle session lives before it expires.
SESSION_IDLE_HOURS = env_int("GOVTECH_SESSION_IDLE_HOURS", 24, minimum=1)

# LINE Messaging API (messaging/line/).
LINE_CHANNEL_SECRET = env_str("LINE_CHANNEL_SECRET")
LINE_CHANNEL_ACCESS_TOKEN = env_str("LINE_CHANNEL_ACCESS_TOKEN")
LINE_API_BASE_URL = env_str("LINE_API_BASE_URL", "https://api.line.me")
LINE_API_DATA_BASE_URL = env_str("LINE_API_DATA_BASE_URL", "https://api-data.line.me")
LINE_API_TIMEOUT_SECONDS = env_int("LINE_API_TIMEOUT_SECONDS", 10, minimum=1)
# LINE asks for a reply within a minute of the event; stay on the safe side of it.
LINE_REPLY_TOKEN_TTL_SECONDS = env_int("LINE_REPLY_TOKEN_TTL_SECONDS", 50, minimum=1)
LINE_IMAGE_MAX_BYTES = env_int("LINE_IMAGE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
LINE_WEBHOOK_MAX_BYTES = env_int("LINE_WEBHOOK_MAX_BYTES", 1024 * 1024, minimum=1024)
SIMULATOR_UPLOAD_MAX_BYTES = env_int("SIMULATOR_UPLOAD_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
# LINE's per-channel rate limits, kept by a limiter shared through the cache (messaging/ratelimit.py).
LINE_RATE_LIMITS = {
    "reply": env_int("LINE_RATE_REPLY_PER_SECOND", 2000, minimum=1),
    "push": env_int("LINE_RATE_PUSH_PER_SECOND", 2000, minimum=1),
    "multicast": env_int("LINE_RATE_MULTICAST_PER_SECOND", 200, minimum=1),
    "broadcast": env_int("LINE_RATE_BROADCAST_PER_HOUR", 60, minimum=1),  # narrowcast counts here too
}

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

LOGIN_URL = "admin:login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
