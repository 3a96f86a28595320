"""Settings shared by every environment, read from environment variables.

With nothing set, Phoenix runs on one machine with no servers: SQLite, a
local-memory cache, the in-memory channel layer, a filesystem Celery broker
and the in-process event writer. Setting ``DATABASE_URL``, ``REDIS_URL`` and
``KAFKA_BOOTSTRAP_SERVERS`` switches the same code to PostgreSQL, Redis and Kafka.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets admin and other Django generics be subscripted at run time, as the type hints do.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# Mutable state of the embedded default (SQLite file, uploaded models, journal,
# Celery's filesystem broker) lives under one folder that git ignores.
DATA_DIR = Path(env.str("PHOENIX_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()

# The embedded default is for one person's machine; production.py refuses this key.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="phoenix-embedded-insecure-development-key")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # Per-user tokens (Authorization: Bearer) for people's API calls (registry writes).
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_celery_beat",
    "django_prometheus",
    "channels",
    "phoenix",
    # The bundled demo (before inference: its seed_features adds --demo); leave it out
    # of a deployment that should carry no demo.
    "phoenix.demo",
    "models_registry",
    "inference",
    "monitoring",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into its lockout answer.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
# The API-key inference URLs skip sessions, CSRF, auth, messages and frame options
# (phoenix/http_stack.py): metrics, security headers and Content-Length stay.
PHOENIX_INFERENCE_MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "phoenix.http_stack.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "phoenix.urls"
WSGI_APPLICATION = "phoenix.wsgi.application"
ASGI_APPLICATION = "phoenix.asgi.application"

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

# --- database -------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'phoenix.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite creates the file but not its folder.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Web, worker and event writer share the file: WAL lets readers and one writer
    # proceed together, and the busy timeout waits for a lock instead of failing.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker -----------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")

CACHES: dict[str, Any]
CHANNEL_LAYERS: dict[str, Any]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "phoenix",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "phoenix"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery ---------------------------------------------------------------
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if CELERY_BROKER_URL == "filesystem://":
    # The embedded broker: web, worker and beat exchange messages through files,
    # so `make run` needs no server. Not for more than one machine.
    _broker_dir = DATA_DIR / "celery-broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast (remote control) messages; kombu would put them in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("PHOENIX_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TIMEZONE = "UTC"

# --- event bus ------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS: str = env.str("KAFKA_BOOTSTRAP_SERVERS", default="")
PHOENIX_EVENT_BACKEND: str = env.str(
    "PHOENIX_EVENT_BACKEND", default="kafka" if KAFKA_BOOTSTRAP_SERVERS else "database"
)
PHOENIX_EVENT_TOPIC: str = env.str("PHOENIX_EVENT_TOPIC", default="inference-events")
PHOENIX_EVENT_BUFFER_SIZE: int = env.int("PHOENIX_EVENT_BUFFER_SIZE", default=10_000)
PHOENIX_EVENT_BATCH_SIZE: int = env.int("PHOENIX_EVENT_BATCH_SIZE", default=500)
PHOENIX_EVENT_FLUSH_INTERVAL_S: float = env.float("PHOENIX_EVENT_FLUSH_INTERVAL_S", default=0.5)
PHOENIX_EVENT_JOURNAL_DIR = Path(
    env.str("PHOENIX_EVENT_JOURNAL_DIR", default=str(DATA_DIR / "journal"))
)
# Partitions for topics the app creates; more partitions, more consumers in the group.
PHOENIX_EVENT_TOPIC_PARTITIONS: int = env.int("PHOENIX_EVENT_TOPIC_PARTITIONS", default=3)
PHOENIX_EVENT_SEND_TIMEOUT_S: float = env.float("PHOENIX_EVENT_SEND_TIMEOUT_S", default=10.0)
# How long /readyz waits on a shared dependency (database, cache) before calling it degraded.
PHOENIX_READINESS_TIMEOUT_S: float = env.float("PHOENIX_READINESS_TIMEOUT_S", default=2.0)
PHOENIX_EVENT_CONSUMER_GROUP: str = env.str(
    "PHOENIX_EVENT_CONSUMER_GROUP", default="phoenix-prediction-log"
)
PHOENIX_EVENT_DLQ_TOPIC: str = env.str("PHOENIX_EVENT_DLQ_TOPIC", default="inference-events-dlq")

# --- models and inference -------------------------------------------------
MEDIA_ROOT = Path(env.str("PHOENIX_MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
PHOENIX_MODEL_MAX_BYTES: int = env.int("PHOENIX_MODEL_MAX_BYTES", default=200 * 1024 * 1024)
PHOENIX_ALLOW_EXTERNAL_DATA: bool = env.bool("PHOENIX_ALLOW_EXTERNAL_DATA", default=False)
# Validation of an upload (load and one test run) happens in a child process held to
# this much memory beyond its own start-up size and this much wall-clock time.
PHOENIX_MODEL_VALIDATION_MEMORY_MB: int = env.int(
    "PHOENIX_MODEL_VALIDATION_MEMORY_MB", default=1024
)
PHOENIX_MODEL_VALIDATION_TIMEOUT_S: float = env.float(
    "PHOENIX_MODEL_VALIDATION_TIMEOUT_S", default=60.0
)
# Stages whose versions a client may pin ("version": "2" or /versions/2/); the others
# are served only through the champion/challenger plan an operator set up.
PHOENIX_PINNABLE_STAGES: list[str] = env.list(
    "PHOENIX_PINNABLE_STAGES", default=["production", "staging"]
)
if not set(PHOENIX_PINNABLE_STAGES) <= {"dev", "staging", "production", "archived"}:
    raise ImproperlyConfigured(
        "PHOENIX_PINNABLE_STAGES takes stage names (dev, staging, production, archived); "
        f"got {PHOENIX_PINNABLE_STAGES}."
    )
# API keys' last-used times are written by each process this often (not per request).
PHOENIX_API_KEY_USAGE_FLUSH_S: float = env.float("PHOENIX_API_KEY_USAGE_FLUSH_S", default=60.0)
# What happens to the previous production version when another is promoted.
PHOENIX_PREVIOUS_PRODUCTION_STAGE: str = env.str(
    "PHOENIX_PREVIOUS_PRODUCTION_STAGE", default="archived"
)
# Redis pub/sub channel on which "the registry changed" reaches every serving process.
PHOENIX_REGISTRY_CHANNEL: str = env.str("PHOENIX_REGISTRY_CHANNEL", default="phoenix.registry")
PHOENIX_ONNX_PROVIDERS: list[str] = env.list("PHOENIX_ONNX_PROVIDERS", default=[])
PHOENIX_ONNX_INTRA_OP_THREADS: int = env.int("PHOENIX_ONNX_INTRA_OP_THREADS", default=1)
PHOENIX_ONNX_INTER_OP_THREADS: int = env.int("PHOENIX_ONNX_INTER_OP_THREADS", default=1)
# Threads per web process running Django's request stack (see phoenix/asgi.py).
PHOENIX_HTTP_THREADS: int = env.int("PHOENIX_HTTP_THREADS", default=8)
# Prediction rows older than this (e.g. 90d) are deleted by the daily beat task;
# empty: kept for ever (manage.py purge_predictions does it by hand).
PHOENIX_PREDICTION_RETENTION: str = env.str("PHOENIX_PREDICTION_RETENTION", default="")
# Explanations (POST .../explain): rows per request, background rows sampled from the
# version's reference data, and model rows evaluated per request in all.
PHOENIX_EXPLAIN_MAX_ROWS: int = env.int("PHOENIX_EXPLAIN_MAX_ROWS", default=16)
PHOENIX_EXPLAIN_BACKGROUND_ROWS: int = env.int("PHOENIX_EXPLAIN_BACKGROUND_ROWS", default=32)
PHOENIX_EXPLAIN_MAX_EVALUATIONS: int = env.int("PHOENIX_EXPLAIN_MAX_EVALUATIONS", default=262144)
# The Open Inference Protocol over gRPC (manage.py serve_grpc; make run starts it).
PHOENIX_GRPC_PORT: int = env.int("PHOENIX_GRPC_PORT", default=8081)
PHOENIX_GRPC_THREADS: int = env.int("PHOENIX_GRPC_THREADS", default=8)
PHOENIX_PREDICT_MAX_ROWS: int = env.int("PHOENIX_PREDICT_MAX_ROWS", default=1024)
PHOENIX_FEATURE_TTL_S: int = env.int("PHOENIX_FEATURE_TTL_S", default=24 * 3600)
PHOENIX_FEATURE_STORE: str = env.str(
    "PHOENIX_FEATURE_STORE", default="redis" if REDIS_URL else "database"
)
# Redis for the feature store when it is not the main REDIS_URL (another db or server).
PHOENIX_FEATURE_STORE_URL: str = env.str("PHOENIX_FEATURE_STORE_URL", default=REDIS_URL)
# Load the session cache when a server process starts (off for management commands).
PHOENIX_PRELOAD_MODELS: bool = env.bool("PHOENIX_PRELOAD_MODELS", default=False)

# --- monitoring -----------------------------------------------------------
PHOENIX_DRIFT_ALPHA: float = env.float("PHOENIX_DRIFT_ALPHA", default=0.05)
PHOENIX_DRIFT_WINDOW_S: int = env.int("PHOENIX_DRIFT_WINDOW_S", default=3600)
PHOENIX_DRIFT_MIN_ROWS: int = env.int("PHOENIX_DRIFT_MIN_ROWS", default=200)
PHOENIX_ALERT_WEBHOOK_URL: str = env.str("PHOENIX_ALERT_WEBHOOK_URL", default="")
PHOENIX_ALERT_WEBHOOK_SECRET: str = env.str("PHOENIX_ALERT_WEBHOOK_SECRET", default="")
PHOENIX_DRIFT_CORRECTION: str = env.str("PHOENIX_DRIFT_CORRECTION", default="bh")
# The newest rows of a window are tested; more adds time, not power.
PHOENIX_DRIFT_MAX_ROWS: int = env.int("PHOENIX_DRIFT_MAX_ROWS", default=100_000)
PHOENIX_DRIFT_TOPIC: str = env.str("PHOENIX_DRIFT_TOPIC", default="drift-events")
# A window whose rows are at least this share repeats of other rows (a flood of one
# request) is reported as "duplicates", not judged for drift, and retrains nothing.
PHOENIX_DRIFT_DUPLICATE_SHARE: float = env.float("PHOENIX_DRIFT_DUPLICATE_SHARE", default=0.5)
# A drifting model is retrained at most once per cooldown, not on every check.
PHOENIX_RETRAINING_COOLDOWN_S: int = env.int("PHOENIX_RETRAINING_COOLDOWN_S", default=6 * 3600)
# Labelled rows (with feedback) this recent are given to a retraining recipe.
PHOENIX_RETRAINING_LOOKBACK_S: int = env.int("PHOENIX_RETRAINING_LOOKBACK_S", default=7 * 86400)
# Performance from ground truth (feedback): each served version's predictions of the
# last window with labels; below _MIN_LABELS labelled rows there is no verdict. A score
# (accuracy, ROC AUC) more than _MAX_DROP below the version's holdout value, or an error
# (MAE, RMSE) more than _MAX_ERROR_INCREASE (relative) above it, is a degradation.
PHOENIX_PERFORMANCE_WINDOW_S: int = env.int("PHOENIX_PERFORMANCE_WINDOW_S", default=3600)
PHOENIX_PERFORMANCE_MIN_LABELS: int = env.int("PHOENIX_PERFORMANCE_MIN_LABELS", default=100)
PHOENIX_PERFORMANCE_MAX_DROP: float = env.float("PHOENIX_PERFORMANCE_MAX_DROP", default=0.05)
PHOENIX_PERFORMANCE_MAX_ERROR_INCREASE: float = env.float(
    "PHOENIX_PERFORMANCE_MAX_ERROR_INCREASE", default=0.2
)
# A drop counts only when the window's labels show it beyond chance: a one-sided test at
# this level that the metric is past its limit (monitoring.performance).
PHOENIX_PERFORMANCE_ALPHA: float = env.float("PHOENIX_PERFORMANCE_ALPHA", default=0.05)
# The newest predictions of a window that are read; more adds time, not much signal.
PHOENIX_PERFORMANCE_MAX_ROWS: int = env.int("PHOENIX_PERFORMANCE_MAX_ROWS", default=100_000)
if PHOENIX_PERFORMANCE_MAX_DROP < 0 or PHOENIX_PERFORMANCE_MAX_ERROR_INCREASE < 0:
    raise ImproperlyConfigured(
        "PHOENIX_PERFORMANCE_MAX_DROP and PHOENIX_PERFORMANCE_MAX_ERROR_INCREASE must not be "
        "negative."
    )
if not 0 < PHOENIX_PERFORMANCE_ALPHA < 1:
    raise ImproperlyConfigured("PHOENIX_PERFORMANCE_ALPHA must be between 0 and 1.")
# Retraining runs only on enough ground truth: at least this many labelled rows in the
# lookback, and at least this share of the lookback's rows labelled; else an alert says why.
PHOENIX_RETRAINING_MIN_LABELLED_ROWS: int = env.int(
    "PHOENIX_RETRAINING_MIN_LABELLED_ROWS", default=200
)
PHOENIX_RETRAINING_MIN_LABEL_COVERAGE: float = env.float(
    "PHOENIX_RETRAINING_MIN_LABEL_COVERAGE", default=0.05
)
# Models (names, or "*") whose retrained challenger starts an experiment by itself:
# shadow, then the canary steps, promoted when the test says better with guards held.
PHOENIX_EXPERIMENT_AUTOSTART: list[str] = env.list("PHOENIX_EXPERIMENT_AUTOSTART", default=[])
PHOENIX_EXPERIMENT_CANARY_STEPS: list[float] = [
    float(step) for step in env.list("PHOENIX_EXPERIMENT_CANARY_STEPS", default=[5, 25, 50, 100])
]
PHOENIX_EXPERIMENT_STEP_INTERVAL_S: int = env.int("PHOENIX_EXPERIMENT_STEP_INTERVAL_S", default=300)
PHOENIX_EXPERIMENT_STEP_MIN_SAMPLES: int = env.int(
    "PHOENIX_EXPERIMENT_STEP_MIN_SAMPLES", default=100
)
PHOENIX_EXPERIMENT_MIN_SAMPLES: int = env.int("PHOENIX_EXPERIMENT_MIN_SAMPLES", default=200)
PHOENIX_EXPERIMENT_TOPIC: str = env.str("PHOENIX_EXPERIMENT_TOPIC", default="experiment-events")
# Where the experiments' error-rate guard reads every serving process's request counters
# (compose, Kubernetes); empty: this host's metrics registry (make run's shared dir).
PHOENIX_PROMETHEUS_URL: str = env.str("PHOENIX_PROMETHEUS_URL", default="")
PHOENIX_PROMETHEUS_TIMEOUT_S: float = env.float("PHOENIX_PROMETHEUS_TIMEOUT_S", default=5.0)

# --- HTTP edge: limits and throttles (phoenix/edge.py, phoenix/throttling.py) ----------
# Every body is held to this many bytes (model uploads: PHOENIX_MODEL_MAX_BYTES more),
# checked as it streams in; a larger one is 413 before anything parses it.
PHOENIX_MAX_BODY_BYTES: int = env.int("PHOENIX_MAX_BODY_BYTES", default=10 * 1024 * 1024)
# Request headers, names and values together; more is 431.
PHOENIX_MAX_HEADER_BYTES: int = env.int("PHOENIX_MAX_HEADER_BYTES", default=64 * 1024)
# Fixed-window rates ("N/s", "N/m", "N/10m"...; "0" turns one off), per client IP, per
# credential (API key or token), and failed authentications (401s) per client IP.
PHOENIX_THROTTLE_IP_RATE: str = env.str("PHOENIX_THROTTLE_IP_RATE", default="300000/m")
PHOENIX_THROTTLE_KEY_RATE: str = env.str("PHOENIX_THROTTLE_KEY_RATE", default="300000/m")
PHOENIX_THROTTLE_AUTH_FAILURE_RATE: str = env.str(
    "PHOENIX_THROTTLE_AUTH_FAILURE_RATE", default="60/m"
)
# How often each process adds its counts to the shared cache and reads the totals.
PHOENIX_THROTTLE_SYNC_S: float = env.float("PHOENIX_THROTTLE_SYNC_S", default=1.0)
# A header the proxy in front sets to the client's address (e.g. X-Forwarded-For, of
# which the last entry is used); empty: the connection's peer address.
PHOENIX_CLIENT_IP_HEADER: str = env.str("PHOENIX_CLIENT_IP_HEADER", default="")
# /metrics (and /readyz's detail) answer callers from these networks or with
# "Authorization: Bearer <PHOENIX_METRICS_TOKEN>"; others get 403 (/readyz: a summary).
PHOENIX_METRICS_ALLOWED_NETWORKS: list[str] = env.list(
    "PHOENIX_METRICS_ALLOWED_NETWORKS",
    default=["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
)
PHOENIX_METRICS_TOKEN: str = env.str("PHOENIX_METRICS_TOKEN", default="")

# --- auth, API ------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out sign-in before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login lockout (admin and dashboard sign-in): after this many failures for one
# username from one address, that pair is refused (429) until the cool-off ends.
AXES_FAILURE_LIMIT: int = env.int("PHOENIX_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME: float = env.float("PHOENIX_LOGIN_COOLOFF_MINUTES", default=15.0) / 60.0
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Not verbose: its start-up banner would otherwise open every management command's stderr.
AXES_VERBOSE = False
# HTTP Basic on the registry API: off unless asked for (a browser caches Basic
# credentials and sends them cross-site, with no CSRF check under DRF).
PHOENIX_HTTP_BASIC_AUTH: bool = env.bool("PHOENIX_HTTP_BASIC_AUTH", default=False)
# Password reset by e-mail only where mail can be sent.
EMAIL_HOST: str = env.str("DJANGO_EMAIL_HOST", default="")
EMAIL_PORT: int = env.int("DJANGO_EMAIL_PORT", default=587)
EMAIL_HOST_USER: str = env.str("DJANGO_EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD: str = env.str("DJANGO_EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS: bool = env.bool("DJANGO_EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL: str = env.str("DJANGO_DEFAULT_FROM_EMAIL", default="phoenix@localhost")
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["phoenix.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "phoenix.renderers.ORJSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "phoenix.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "phoenix.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Phoenix ML API",
    "DESCRIPTION": "Model registry, real-time inference and monitoring.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int(
    "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024
)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Content-Security-Policy (django-csp): nothing from another origin, no inline script
# and no eval (every page loads its scripts as files: templates, admin, Swagger UI's
# split view, Redoc). A template that ever needs an inline script adds csp.constants.NONCE
# here and nonce="{{ request.csp_nonce }}" on it. Inline style attributes stay allowed:
# admin and Swagger UI set them, and they cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- i18n, static ---------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(DATA_DIR / "staticfiles")))
# WhiteNoise serves STATIC_ROOT (filled by `manage.py bootstrap` and the image build);
# finders cover files added since, so a developer never needs to re-collect.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("PHOENIX_LOG_LEVEL", default="INFO")},
    "loggers": {"kafka": {"level": "WARNING"}, "django.db.backends": {"level": "WARNING"}},
}
