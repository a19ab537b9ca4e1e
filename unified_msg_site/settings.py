"""Settings for the Unified Message Platform.

Everything comes from environment variables with embedded defaults, so `make run` works with
nothing configured (SQLite, in-memory channel layer, the local broker) and production sets
DATABASE_URL (UMSG_TEST_DB: the test database's name), REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
_DEVELOPMENT_SECRET_KEY = "django-insecure-local-development-key-change-me-in-production-0123456789"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _DEVELOPMENT_SECRET_KEY
if not DEBUG and SECRET_KEY == _DEVELOPMENT_SECRET_KEY:
    # A published key signs anyone's session cookie: with DEBUG off (production) refuse to start
    # rather than run with it. `make run` sets nothing and keeps DEBUG on, so it is unaffected.
    raise ImproperlyConfigured(
        "DJANGO_DEBUG=0 needs DJANGO_SECRET_KEY: refusing to start with the built-in development key "
        "(check --deploy: security.W009). Set DJANGO_SECRET_KEY to a long random value, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )
# Debug pages and error e-mails hide passwords inside connection URLs too (REDIS_URL, …).
DEFAULT_EXCEPTION_REPORTER_FILTER = "unified_msg_site.debug.CredentialMaskingFilter"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "channels",
    "demands",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "demands.middleware.UserPreferenceMiddleware",
]

ROOT_URLCONF = "unified_msg_site.urls"
ASGI_APPLICATION = "unified_msg_site.asgi.application"

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
                "demands.context_processors.notifications",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,  # a connection the server dropped is replaced, not used and failed
    )
}
if os.environ.get("UMSG_TEST_DB"):
    # Two test runs on one PostgreSQL server would both use test_<name>: give each its own.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["UMSG_TEST_DB"]}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT: it compiles plans estimated as expensive with LLVM, which the product's short queries
    # never repay, and a session that has compiled once ran the list's queries twice as slowly
    # afterwards (bench/README.md, "Archive scale"). A DATABASE_URL's own `options` come first.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    if "jit" not in options.get("options", ""):
        options["options"] = f"{options.get('options', '')} -c jit=off".strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default runs the consumer thread and web requests against one file: WAL lets
    # readers proceed during a write, IMMEDIATE transactions avoid lock upgrades that fail with
    # "database is locked", and the timeout lets a writer wait for the other instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Redis pub/sub ignores the database number in REDIS_URL: deployments (or test runs)
            # sharing one Redis keep apart only by prefix.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("REDIS_CHANNEL_PREFIX", "asgi")},
        }
    }
    # One cache for every process, so the login throttle counts attempts across all daphne workers.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("REDIS_CHANNEL_PREFIX", "asgi"),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "demands:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = os.environ.get("DJANGO_LANGUAGE_CODE", "en")
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Time zones offered in preferences (any IANA name works through the admin).
COMMON_TIME_ZONES = [
    "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Singapore", "Asia/Tokyo", "UTC",
    "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
]
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# daphne serves static files itself unless a front proxy does (SERVE_STATIC=0 then).
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# --- Security --------------------------------------------------------------------------------
# With DJANGO_DEBUG=0 the site is HTTPS-only by default (`check --deploy` is clean); each
# setting can be turned back with its variable, e.g. for a plain-HTTP benchmark.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Preloading is the domain owner's decision (made at hstspreload.org for the whole registrable
    # domain), not this app's; W021 only says the site could not be submitted.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
# Behind a proxy that terminates TLS, name the header it sets (and strips from clients), e.g.
# DJANGO_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO; without it every request looks like
# plain HTTP and the SSL redirect would loop.
if os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (os.environ["DJANGO_SECURE_PROXY_SSL_HEADER"], "https")
# Failed sign-ins per username and client address before the login form refuses for the window.
LOGIN_THROTTLE_FAILURES = int(os.environ.get("LOGIN_THROTTLE_FAILURES", "5"))
LOGIN_THROTTLE_WINDOW = int(os.environ.get("LOGIN_THROTTLE_WINDOW", "900"))

# --- Kafka -----------------------------------------------------------------------------------
# Any librdkafka property can be passed as KAFKA_CONFIG_<PROPERTY> with dots as underscores,
# e.g. KAFKA_CONFIG_SECURITY_PROTOCOL=SASL_SSL, KAFKA_CONFIG_SASL_USERNAME=..., so a secured
# production cluster needs no code change.
KAFKA_CLIENT_CONFIG = {"bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")}
KAFKA_CLIENT_CONFIG.update(
    {
        key[len("KAFKA_CONFIG_") :].lower().replace("_", "."): value
        for key, value in os.environ.items()
        if key.startswith("KAFKA_CONFIG_")
    }
)
KAFKA_TOPICS = env_list("KAFKA_TOPICS", "demand-topic")
KAFKA_DLQ_TOPIC = os.environ.get("KAFKA_DLQ_TOPIC", "demand-topic.dlq")
KAFKA_CONSUMER_GROUP = os.environ.get("KAFKA_CONSUMER_GROUP", "unified-msg")
# Partitions given to topics this project creates itself (the unit of consumer scale-out).
KAFKA_TOPIC_PARTITIONS = int(os.environ.get("KAFKA_TOPIC_PARTITIONS", "6"))
CONSUMER_BATCH_SIZE = int(os.environ.get("CONSUMER_BATCH_SIZE", "500"))
# A batch starts with the first record to arrive and takes what else has arrived; this is how long
# it may wait for more. 0: a lone record is stored at once (live latency), while under load batches
# fill by themselves with what arrived during the previous one (bench/README.md).
CONSUMER_BATCH_TIMEOUT = float(os.environ.get("CONSUMER_BATCH_TIMEOUT", "0"))
CONSUMER_MAX_FAILURES = int(os.environ.get("CONSUMER_MAX_FAILURES", "10"))
# Offsets are committed after each batch's database commit either way; asynchronously the loop
# does not wait for the group coordinator (see demands/pipeline/loop.py).
CONSUMER_ASYNC_COMMIT = env_bool("CONSUMER_ASYNC_COMMIT", True)
# Poison-pill guard: more than this share of the last CONSUMER_REJECT_WINDOW records rejected
# stops the consumer before it commits (1 turns the guard off). See ConsumeLoop.
CONSUMER_MAX_REJECT_RATIO = float(os.environ.get("CONSUMER_MAX_REJECT_RATIO", "0.9"))
CONSUMER_REJECT_WINDOW = int(os.environ.get("CONSUMER_REJECT_WINDOW", "200"))

# `consume_demands --metrics-port`: the exporter has no authentication, so it listens on loopback
# unless told otherwise (e.g. 0.0.0.0 on a private network the scraper reaches).
CONSUMER_METRICS_ADDR = os.environ.get("CONSUMER_METRICS_ADDR", "127.0.0.1")
# /metrics on the web process: staff sessions, or `Authorization: Bearer $METRICS_TOKEN` for a
# scraper (MONITORING_METRICS_TOKEN is the older name); METRICS_PUBLIC=1 opens it to anyone.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", False)

# --- HTTP ingest (POST /api/ingest/, see demands/intake/http.py) -------------------------------
INGEST_MAX_BODY_BYTES = int(os.environ.get("INGEST_MAX_BODY_BYTES", str(1024 * 1024)))
INGEST_MAX_ITEMS = int(os.environ.get("INGEST_MAX_ITEMS", "100"))
# Seconds to wait for Kafka to confirm a request's demands (and a replay) before answering 503.
INGEST_DELIVERY_TIMEOUT = float(os.environ.get("INGEST_DELIVERY_TIMEOUT", "5"))
# Web page origins allowed to call the endpoint with any key, e.g. https://shop.example.com;
# each key can also list its own. "*" allows any origin.
INGEST_CORS_ALLOWED_ORIGINS = env_list("INGEST_CORS_ALLOWED_ORIGINS", "")

# --- Outgoing webhooks (alert rules) ---------------------------------------------------------
# Webhook targets on loopback, private, link-local, multicast, reserved or unspecified addresses
# are refused (staff type the URL; the server makes the request from inside the network) unless
# listed here: host names and/or networks, e.g. "hooks.internal,10.20.0.0/16".
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", "")

# --- Notifications where people are (demands/outbound; README "Notifications outside the browser")
# Absolute base for links in e-mail and chat messages, e.g. https://umsg.example.com (falls back
# to MONITORING_BASE_URL). EMAIL_* settings are Django's.
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", os.environ.get("MONITORING_BASE_URL", "")).rstrip("/")

# --- Demands ---------------------------------------------------------------------------------
DEMANDS_PAGE_SIZE = 50
# What /demands/ shows until a user picks: "auto" = groups once some group holds more than one
# demand, "groups", or "all" (every message). The user's choice is kept in the session.
DEMANDS_DEFAULT_VIEW = os.environ.get("DEMANDS_DEFAULT_VIEW", "auto")
# Rows kept on a live list page; older ones drop off the bottom (the pager reaches them).
DEMANDS_LIVE_MAX_ROWS = 200
# Rows rendered per broadcast batch; pages fetch the rest of a burst themselves.
DEMANDS_LIVE_BATCH_ROWS = 50
# Open websockets re-check that their user is still active staff this often (seconds).
DEMANDS_WS_ACCESS_RECHECK_SECONDS = 60
# A list page's resume requests are answered at most once per this many seconds (each renders
# up to DEMANDS_LIVE_MAX_ROWS rows); sooner ones are merged into the next answer.
DEMANDS_WS_RESUME_INTERVAL = 1.0

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # CR/LF in a message (a rejection reason, a source label) is escaped: one event, one line.
    "formatters": {"plain": {"()": "unified_msg_site.log_format.SingleLineFormatter",
                             "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}


# --- RabbitMQ sources (manage.py bridge_amqp; docs/amqp.md) ---------------------------------------
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
AMQP_CONFIGURED = bool(os.environ.get("AMQP_URL"))  # monitoring samples RabbitMQ only then (or run_dashboard --amqp)
AMQP_QUEUES = env_list("AMQP_QUEUES", "demands")
AMQP_PREFETCH = int(os.environ.get("AMQP_PREFETCH", "500"))
AMQP_MAX_FAILURES = int(os.environ.get("AMQP_MAX_FAILURES", "10"))
