"""Django settings: everything decided by environment variables, read once by `config.load`.

With no DATABASE_URL and no REDIS_URL the node runs embedded: SQLite under NODE_VAR_DIR, an in-memory
channel layer and tasks executed in-process. With them set it runs on Postgres and Redis with separate
Celery worker and beat processes. `.env` in the repository root is read when present; real environment
variables win over it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import urlsplit

import environ

from connext_site import config

if (config.BASE_DIR / ".env").exists():
    environ.Env.read_env(config.BASE_DIR / ".env", overwrite=False)
NODE = config.load(os.environ)

BASE_DIR = config.BASE_DIR
DEBUG = NODE.debug
SECRET_KEY = NODE.secret_key
ALLOWED_HOSTS = NODE.allowed_hosts
NODE.var_dir.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "channels_app",
]

MIDDLEWARE = [
    "channels_app.middleware.AnswerFirstMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "connext_site.urls"
ASGI_APPLICATION = "connext_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": NODE.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if NODE.redis_url:
    CHANNEL_LAYERS = {
        "default": {
            # Pub/sub: a push is one PUBLISH to the user's group, delivered to every node process with
            # a socket in it. (The list-based layer costs four Redis round trips and a Lua script per
            # push plus a polling pop per process, the largest share of node CPU after the ORM.)
            # Pushes are notifications, not the record: a client that misses one syncs on its next
            # request or reconnect, as it must anyway after a dropped socket.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Pub/sub channels are server-wide, not per database number: the prefix keeps nodes that
            # share a Redis server on different databases from hearing each other's pushes.
            "CONFIG": {
                "hosts": [{"address": NODE.redis_url, "socket_timeout": 30}],
                "prefix": f"connext.{urlsplit(NODE.redis_url).path.strip('/') or '0'}",
            },
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": NODE.redis_url}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic puts the files (the image: /srv/static, which the proxy serves).
STATIC_ROOT = NODE.static_root

if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS (README: Deployment). The node speaks plain HTTP to the proxy that terminates TLS in front of
# it, so the redirect to https is the proxy's job and off here unless SECURE_SSL_REDIRECT asks for it.
SECURE_HSTS_SECONDS = NODE.https.hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = NODE.https.hsts_include_subdomains
SECURE_HSTS_PRELOAD = NODE.https.hsts_preload
SECURE_SSL_REDIRECT = NODE.https.ssl_redirect
# The container's health check asks over plain HTTP from inside it: a redirect would fail it.
SECURE_REDIRECT_EXEMPT = [r"^api/health$"]
SILENCED_SYSTEM_CHECKS = [
    # "SECURE_HSTS_PRELOAD is not True": preloading puts a whole registrable domain on the browsers'
    # lists for good, a decision for the domain's owner, not a default of one node on it (opt in above).
    "security.W021",
]

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["channels_app.api.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "EXCEPTION_HANDLER": "channels_app.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "connext-py node API",
    "DESCRIPTION": "REST API of the state-channel payment node. Amounts are decimal strings of wei.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Several answers carry a channel's status: one enum by name, not one per answer.
    "ENUM_NAME_OVERRIDES": {"ChannelStatusEnum": "channels_app.models.Channel.Status"},
}

# Celery. Without Redis there is no broker: tasks execute eagerly in the calling process, and the
# periodic ones run on a background loop inside the node process (connext_site.periodic).
CELERY_BROKER_URL = NODE.redis_url or "memory://"
CELERY_RESULT_BACKEND = NODE.redis_url
CELERY_TASK_ALWAYS_EAGER = NODE.tasks_in_process
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = timedelta(hours=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the database connection (and Django's pool) around every task unless
# this is set; then only every 2 x this many task events. connext_site.celery hands connections back
# to the pool around each task instead, as Django does around requests.
CELERY_DB_REUSE_MAX = 10_000
CELERY_TIMEZONE = "UTC"

# The node's own settings, beyond Django's.
REDIS_URL = NODE.redis_url
NODE_PRIVATE_KEY = NODE.node_private_key
CHAIN_RPC_URL = NODE.chain_rpc_url
PUBLIC_CHAIN_RPC_URL = NODE.public_chain_rpc_url
CHAIN_CONFIRMATIONS = NODE.chain_confirmations
CHAIN_START_BLOCK = NODE.chain_start_block
# Reads per JSON-RPC batch (the deposit watch); 1 sends each read on its own.
CHAIN_RPC_BATCH_SIZE = NODE.chain_rpc_batch_size
DISPUTE_TIMEOUT_SECONDS = NODE.dispute_timeout_seconds
TASKS_IN_PROCESS = NODE.tasks_in_process
# Contract addresses per chain id, written by `python -m connext.chain.deploy` (and `make up`).
DEPLOYMENTS_FILE = NODE.deployments_file
# ERC20 tokens the node serves besides ETH (the dev chain's TestToken is added when deployed).
SUPPORTED_TOKENS = NODE.supported_tokens
# A routed HashLock's receiver side expires this much before the sender's, on top of one dispute
# window (so the node can always claim upstream); also the least time a receiver gets.
HASHLOCK_MIN_WINDOW_SECONDS = NODE.hashlock_min_window_seconds
# Routing windows (docs/protocol.md): the longest the node takes to see a chain event and get its
# answer mined, and the longest on-chain window a sender may give its side of a payment.
ROUTING_REACTION_SECONDS = NODE.routing_reaction_seconds
ROUTING_MAX_TRANSFER_TIMEOUT_SECONDS = NODE.routing_max_transfer_timeout_seconds
# Collateral the node keeps per channel and asset unless a channel has its own profile:
# (collateralize below, fill up to, reclaim above), in wei / token base units (18 decimals assumed).
REBALANCE_DEFAULTS = {
    "eth": (5 * 10**16, 10**17, 5 * 10**17),
    "token": (5 * 10**18, 20 * 10**18, 100 * 10**18),
}
# What one account may make the node spend (docs/protocol.md, "The node's capital and gas"): the
# most collateral its own deposits and received payments justify, per asset class; how long collateral
# above that may sit idle before the node takes it back; and, for the withdrawals the node pays gas
# for, the least amount (also the least collateral the node moves on chain on its own), how many per
# channel per hour, and the gas per account per day.
COLLATERAL_MAX_PER_ACCOUNT = NODE.collateral_max_per_account
COLLATERAL_IDLE_SECONDS = NODE.collateral_idle_seconds
WITHDRAWAL_MIN_AMOUNT = NODE.withdrawal_min_amount
WITHDRAWAL_MAX_PER_HOUR = NODE.withdrawal_max_per_hour
WITHDRAWAL_GAS_PER_DAY = NODE.withdrawal_gas_per_day
# In-channel swaps the node offers (connext_site/swap_config.py; none without SWAPS).
SWAPS = NODE.swaps
# A worker that has not beaten for this long counts as down in /api/health.
WORKER_HEARTBEAT_SECONDS = 10
WORKER_STALE_AFTER_SECONDS = 45

# --- Edge limits (the node under abuse): connext_site.config.load_edge_limits --------------------
EDGE = config.load_edge_limits(os.environ)
# Request bodies larger than this are refused before Django reads them (channels_app.asgi_limits);
# Django's own cap on what it reads into memory is the same number.
API_MAX_BODY_BYTES = EDGE.api_max_body_bytes
DATA_UPLOAD_MAX_MEMORY_SIZE = EDGE.api_max_body_bytes
API_MAX_JSON_DEPTH = EDGE.api_max_json_depth
WS_MAX_FRAME_BYTES = EDGE.ws_max_frame_bytes
WS_AUTH_TIMEOUT_SECONDS = EDGE.ws_auth_timeout_seconds
WS_MAX_REQUESTS_IN_FLIGHT = EDGE.ws_max_requests_in_flight
# The socket's update requests served by the update engine (channels_app/engine/process.py; issue
# #21): off until it serves the whole payment path.
UPDATE_ENGINE = config._bool(os.environ, "UPDATE_ENGINE", False)
NODE_SOCKET_URL = config._socket_url(os.environ, "NODE_SOCKET_URL")
AUTH_CHALLENGE_TTL_SECONDS = EDGE.auth_challenge_ttl_seconds
AUTH_TOKEN_TTL_SECONDS = EDGE.auth_token_ttl_seconds
# JSON nested deeper than API_MAX_JSON_DEPTH is refused (400 json_too_deep), never parsed recursively.
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["channels_app.api.parsers.JSONParser"]
# Rate limits (channels_app.api.throttles) on the default cache: per client IP for every /api/
# request (middleware, before authentication), per IP for logins, per account after authentication.
# The client IP is the connection's unless TRUSTED_PROXY_COUNT proxies in front set X-Forwarded-For.
MIDDLEWARE.insert(0, "channels_app.middleware.RateLimitMiddleware")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["channels_app.api.throttles.AccountThrottle"]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "ip": EDGE.rate_limit_per_ip,
    "login": EDGE.rate_limit_login_per_ip,
    "account": EDGE.rate_limit_per_account,
}
REST_FRAMEWORK["NUM_PROXIES"] = EDGE.trusted_proxy_count
if EDGE.trusted_proxy_count:
    # "SECURE_SSL_REDIRECT is not True": behind proxies, the one that terminates TLS redirects http to
    # https; the node is reached over plain HTTP, by the proxy and by its own health check. With no
    # proxy declared the warning stands.
    SILENCED_SYSTEM_CHECKS.append("security.W008")
# Each caller's pace per node process (channels_app.fair): an account (an IP before login) starts at
# most FAIR_SHARE requests per second, FAIR_SHARE_BURST back to back; one that comes early waits for
# its turn on the event loop, up to FAIR_SHARE_MAX_WAIT_SECONDS, then is refused 429.
FAIR_SHARE_RATE = EDGE.fair_share_per_second
FAIR_SHARE_BURST = EDGE.fair_share_burst
FAIR_SHARE_MAX_WAIT_SECONDS = EDGE.fair_share_max_wait_seconds
if NODE.redis_url:
    # A Redis that hangs must not hang every request behind its rate limit check (it fails open).
    CACHES["default"]["OPTIONS"] = {"socket_connect_timeout": 2, "socket_timeout": 2}
# --- end of edge limits ---------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": NODE.log_level},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per task run drowns everything else; failures are still logged.
        "celery.app.trace": {"level": "WARNING"},
    },
}

# --- Operator dashboard (dashboard/) and Prometheus metrics (README: Dashboard, Metrics) -----------
from pathlib import Path  # noqa: E402

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

INSTALLED_APPS.append("dashboard")
# The node's hot wallet below this (wei for ETH, base units for tokens) shows a warning.
DASHBOARD_HOT_WALLET_MIN = config._per_asset(
    os.environ, "DASHBOARD_HOT_WALLET_MIN", 10**18, 100 * 10**18, minimum=0
)
# A payment pending or forwarded for longer than this is listed as stuck, with the reason.
DASHBOARD_STUCK_AFTER_SECONDS = config._int(
    os.environ, "DASHBOARD_STUCK_AFTER_SECONDS", 600, minimum=1, maximum=30 * 86400
)
# /metrics: for a staff session, or `Authorization: Bearer` this token (at least 32 characters).
METRICS_TOKEN = config._secret(os.environ, "METRICS_TOKEN")
if METRICS_TOKEN is not None and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN: expected at least 32 characters")
# Several processes serving one node (daphne, Celery) write their live metrics to files here, and
# /metrics adds them up; unset, each process reports only its own. prometheus-client reads the
# variable itself, on import; set but empty, it would write them into the working directory.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == "":
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR: set but empty (unset it, or name a directory)")
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
INSTALLED_APPS.append("django_prometheus")
MIDDLEWARE.insert(0, "django_prometheus.middleware.PrometheusBeforeMiddleware")
MIDDLEWARE.append("django_prometheus.middleware.PrometheusAfterMiddleware")
# The same database backend, counting queries and errors.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
# --- end of dashboard and metrics ------------------------------------------------------------------

# The card (card/): a browser wallet whose key never leaves the page; the node serves it static.
INSTALLED_APPS.append("card")
# The most a link payment made in the card may carry (wei): whoever holds a link holds its money, so a
# link that leaks should not lose much. The card refuses more, before anything is signed.
CARD_LINK_MAX_WEI = config._int(
    os.environ, "CARD_LINK_MAX_WEI", 10**17, minimum=1, maximum=config._UINT256_MAX
)
