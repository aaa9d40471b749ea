"""Settings for the govtech project, read from the environment only.

Local defaults run the demo on an embedded SQLite database with the django-q2
ORM broker; DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

import base64
import hashlib
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from govtech.env import env_bool, env_fernet_keys, env_int, env_list, env_log_level, env_str

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

# Residents' answers are encrypted at rest (govtech/crypto.py). The first key encrypts, every key
# decrypts: rotation is documented in docs/operations.md.
# Demo and tests only: a key anyone can derive from this file, so `make run` and the tests need no
# setup. Whatever it encrypts is not protected.
LOCAL_ONLY_ENCRYPTION_KEY = base64.urlsafe_b64encode(
    hashlib.sha256(b"govtech: local demo and test key, public, protects nothing").digest()
).decode()


def _encryption_keys() -> list[str]:
    keys = env_fernet_keys("GOVTECH_ENCRYPTION_KEYS")
    if keys:
        return keys
    if not (DEMO_MODE or TESTING):
        raise ImproperlyConfigured(
            "GOVTECH_ENCRYPTION_KEYS is not set. Set it to a Fernet key, e.g. from "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"` '
            "(or GOVTECH_DEMO=1 for a local demo)."
        )
    return [LOCAL_ONLY_ENCRYPTION_KEY]


ENCRYPTION_KEYS = _encryption_keys()

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
    "rest_framework.authtoken",
    "drf_spectacular",
    "import_export",
    "django_q",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "staff",
    "audit",
    "residents",
    "procedures",
    "broadcasts",
    "messaging",
    "api",
    "integrations",
    "accounts",  # after staff: it extends the staff account admin
    "govtech",  # project-wide management commands (run_demo)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.StaffTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout flagged during the request into the lockout page.
    "axes.middleware.AxesMiddleware",
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

# Staff login hardening (accounts/). django-axes counts failed logins, password and one-time code
# alike, per user name and client address; the first backend refuses a locked-out pair.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("GOVTECH_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("GOVTECH_LOGIN_LOCKOUT_MINUTES", 30, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "accounts.network.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout"
AXES_RESET_ON_SUCCESS = True
# Attempts during a lockout do not extend it: the page promises the wait, and a colleague retrying
# the right password must not keep the account stopped.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The audit log records logins, failures and lockouts; axes keeps only its failure counters. Its
# own admin pages are off: unlocking goes through the staff account admin (staff/policy.py).
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ADMIN = False
# Masked in axes' log lines and stored request data (the password always is); "token" is the one-time code.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "token"]
# Staff must pass a TOTP one-time code after the password (accounts/middleware.py). Off only for
# the local demo, debugging and tests (which turn it on where they test it).
STAFF_REQUIRE_2FA = env_bool("GOVTECH_STAFF_REQUIRE_2FA", not (DEBUG or DEMO_MODE or TESTING))
OTP_TOTP_ISSUER = env_str("GOVTECH_OTP_ISSUER", "LINE 市役所")
# A staff session ends after this many idle minutes: each request pushes the expiry forward.
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_IDLE_MINUTES", 30, minimum=1) * 60
SESSION_SAVE_EVERY_REQUEST = True

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

# Django's backends plus the atomic counter LINE's rate limiter uses (govtech/cache.py).
CACHES = (
    {"default": {"BACKEND": "govtech.cache.RedisCache", "LOCATION": REDIS_URL}}
    if REDIS_URL
    else {"default": {"BACKEND": "govtech.cache.LocMemCache"}}
)

# Conversations: how long an idle session lives before it expires.
SESSION_IDLE_HOURS = env_int("GOVTECH_SESSION_IDLE_HOURS", 24, minimum=1)
# How long after staff write to a resident about an application the resident's text is taken as a
# reply to them (procedures/correspondence.py); later texts go to the conversation as usual.
RESIDENT_REPLY_WINDOW_HOURS = env_int("RESIDENT_REPLY_WINDOW_HOURS", 72, minimum=1)

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
    "profile": env_int("LINE_RATE_PROFILE_PER_SECOND", 2000, minimum=1),
    "rich_menu_bulk": env_int("LINE_RATE_RICH_MENU_BULK_PER_SECOND", 2000, minimum=1),
    "rich_menu_create": env_int("LINE_RATE_RICH_MENU_CREATE_PER_HOUR", 100, minimum=1),
    "rich_menu_delete": env_int("LINE_RATE_RICH_MENU_DELETE_PER_HOUR", 100, minimum=1),
}

# Outgoing webhooks to the city's back-office systems (integrations/): time-out of one POST, and
# how many attempts a delivery gets (429, 5xx, time-outs) before it is marked failed.
WEBHOOK_TIMEOUT_SECONDS = env_int("GOVTECH_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
WEBHOOK_MAX_ATTEMPTS = env_int("GOVTECH_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)

# The staff REST API (api/, docs/api.md): a token per staff user, the session for the browsable pages.
REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LINE 市役所 職員向け API",
    "DESCRIPTION": "部署の申請と手続きを読み、申請の状態を変更する API（docs/api.md）。",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}

LOGIN_URL = "admin:login"

# Where staff open the site: links in e-mails to departments (procedures/notifications.py).
GOVTECH_BASE_URL = env_str("GOVTECH_BASE_URL", "http://127.0.0.1:8000")

# E-mail to departments about new applications. The demo prints mails on the console;
# a deployment sends through SMTP.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if (DEBUG or DEMO_MODE or TESTING)
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on; choose one.")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "LINE 市役所 <noreply@localhost>")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_log_level("LOG_LEVEL", "INFO")},
    # At DEBUG these two write residents' answers: the template engine logs a whole template context
    # whenever a variable is missing (the reveal page's holds the answers), and the database layer
    # logs every query with its parameters (when DEBUG is on). LOG_LEVEL=DEBUG must not turn them on.
    "loggers": {
        "django.template": {"level": "INFO"},
        "django.db.backends": {"level": "INFO"},
        # django-q2 logs a line at INFO for every task queued and every task run: on the webhook's
        # path a line per event. Failures are WARNING and above; Q_LOG_LEVEL=INFO brings the lines
        # back. (Q_CLUSTER's own log_level applies only when no logging is configured.)
        "django-q": {"level": env_log_level("Q_LOG_LEVEL", "WARNING")},
    },
}
