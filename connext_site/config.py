"""The node's configuration, read from environment variables once at start.

`load(environ)` is the only place that reads them. A malformed value raises `ImproperlyConfigured`
naming the variable and what it expects, so a misconfigured node never starts half right.
Secrets come from the environment or from a file named by `<NAME>_FILE`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from connext_site import swap_config

BASE_DIR = Path(__file__).resolve().parent.parent

# anvil's first development account: known to everyone, so accepted only while DJANGO_DEBUG is on.
DEV_NODE_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_CHAIN_RPC_URL = "http://127.0.0.1:8545"
DEV_SECRET_KEY_PREFIX = "dev-insecure-"  # noqa: S105 - a marker, not a secret

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_PRIVATE_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class HttpsPolicy:
    """What the node tells browsers about HTTPS (Django's SECURE_HSTS_* and SECURE_SSL_REDIRECT)."""

    hsts_seconds: int
    hsts_include_subdomains: bool
    hsts_preload: bool
    ssl_redirect: bool


@dataclass(frozen=True)
class NodeConfig:
    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    var_dir: Path
    database: dict[str, Any]
    redis_url: str | None
    chain_rpc_url: str
    chain_rpc_url_is_default: bool
    public_chain_rpc_url: str | None
    node_private_key: str
    chain_confirmations: int
    chain_start_block: int
    chain_rpc_batch_size: int
    dispute_timeout_seconds: int
    hashlock_min_window_seconds: int
    routing_reaction_seconds: int
    routing_max_transfer_timeout_seconds: int
    collateral_max_per_account: dict[str, int]
    collateral_idle_seconds: int
    withdrawal_min_amount: dict[str, int]
    withdrawal_max_per_hour: int
    withdrawal_gas_per_day: int
    deployments_file: Path
    supported_tokens: tuple[str, ...]
    log_level: str
    static_root: Path
    https: HttpsPolicy
    swaps: swap_config.SwapConfig

    @property
    def tasks_in_process(self) -> bool:
        """Without Redis there is no broker: tasks run eagerly inside the node process."""
        return self.redis_url is None


def _fail(name: str, expected: str, value: str | None = None) -> ImproperlyConfigured:
    shown = "" if value is None else f" (got {value!r})"
    return ImproperlyConfigured(f"{name}: expected {expected}{shown}")


def _text(environ_: Mapping[str, str], name: str) -> str | None:
    value = environ_.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _secret(environ_: Mapping[str, str], name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (not both)."""
    direct = _text(environ_, name)
    file_name = _text(environ_, f"{name}_FILE")
    if direct is not None and file_name is not None:
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set: set one of them")
    if file_name is None:
        return direct
    try:
        content = Path(file_name).read_text().strip()
    except OSError as exc:
        raise _fail(f"{name}_FILE", f"a readable file holding {name}", file_name) from exc
    if not content:
        raise _fail(f"{name}_FILE", f"a file holding {name}, but {file_name} is empty")
    return content


def _bool(environ_: Mapping[str, str], name: str, default: bool) -> bool:
    value = _text(environ_, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _fail(name, "true or false (also 1/0, yes/no, on/off)", value)


def _int(environ_: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    value = _text(environ_, name)
    if value is None:
        return default
    try:
        number = int(value, 10)
    except ValueError:
        raise _fail(name, f"a whole number from {minimum} to {maximum}", value) from None
    if not minimum <= number <= maximum:
        raise _fail(name, f"a whole number from {minimum} to {maximum}", value)
    return number


def _http_url(environ_: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = _text(environ_, name)
    if value is None:
        return default
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https", "ws", "wss"} or not parts.hostname:
        raise _fail(name, "an http(s):// or ws(s):// URL with a host", value)
    return value


def _socket_url(environ_: Mapping[str, str], name: str) -> str:
    """NODE_SOCKET_URL (`name`): where users reach this very process's websocket, told to the sockets of its
    shards' users that land on another process (`engine.relay`): a ws(s):// URL, or a path the client
    takes on its node's host (a proxy routing it to this process). Blank: none, such sockets stay
    where they land and their requests are forwarded."""
    value = _text(environ_, name)
    if value is None:
        return ""
    parts = urlsplit(value)
    absolute = parts.scheme in {"ws", "wss"} and bool(parts.hostname)
    path = not parts.scheme and not parts.netloc and value.startswith("/")
    if not (absolute or path) or parts.query or parts.fragment or len(value) > 300:
        raise _fail(name, "a ws(s):// URL with a host, or a path from /, at most 300 long", value)
    return value


def _redis_url(environ_: Mapping[str, str]) -> str | None:
    value = _text(environ_, "REDIS_URL")
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise _fail("REDIS_URL", "redis://host:port/db or rediss://...", value)
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise _fail("REDIS_URL", "a valid port number", value) from None
    return value


def _database(environ_: Mapping[str, str], var_dir: Path) -> dict[str, Any]:
    conn_max_age = _int(environ_, "DATABASE_CONN_MAX_AGE", 60, minimum=0, maximum=3600)
    pool_size = _int(environ_, "DATABASE_POOL_SIZE", 10, minimum=0, maximum=500)
    password = _secret(environ_, "DATABASE_PASSWORD")
    value = _text(environ_, "DATABASE_URL")
    if value is None:
        value = f"sqlite:///{var_dir / 'node.sqlite3'}"
    expected = "postgres://user:password@host:port/name or sqlite:////absolute/path.sqlite3"
    if "://" not in value:
        raise _fail("DATABASE_URL", expected, value)
    config = environ.Env.db_url_config(value)
    engine = config.get("ENGINE")
    if engine not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"} or not config.get(
        "NAME"
    ):
        raise _fail("DATABASE_URL", expected, value)
    if password is not None:
        # The password kept apart from the URL, so that it can be a secret file (DATABASE_PASSWORD_FILE).
        if engine != "django.db.backends.postgresql":
            raise _fail("DATABASE_PASSWORD", "a postgres DATABASE_URL to go with it")
        if config.get("PASSWORD"):
            raise ImproperlyConfigured(
                "DATABASE_PASSWORD and a password in DATABASE_URL are both set: set one of them"
            )
        config["PASSWORD"] = password
    if engine == "django.db.backends.postgresql":
        if not config.get("HOST"):
            raise _fail("DATABASE_URL", "a host in the postgres URL", value)
        # Parameters bound by the server (no quoting of every JSON state into the SQL text) and
        # statements a connection repeats prepared once: the update path runs the same few.
        config["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 5}
        if pool_size:
            # A pool per process: under ASGI every request runs in a fresh thread, and a connection per
            # thread would mean a new Postgres connection per request. (A pool excludes CONN_MAX_AGE.)
            config["CONN_MAX_AGE"] = 0
            config["OPTIONS"]["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 20}
        else:
            config["CONN_MAX_AGE"] = conn_max_age
            config["CONN_HEALTH_CHECKS"] = True
    else:
        # WAL lets the web thread read while the in-process workers write; IMMEDIATE avoids
        # "database is locked" on upgrade from a read to a write transaction.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


def _private_key(environ_: Mapping[str, str], debug: bool) -> str:
    value = _secret(environ_, "NODE_PRIVATE_KEY")
    if value is None:
        if not debug:
            raise ImproperlyConfigured(
                "NODE_PRIVATE_KEY (or NODE_PRIVATE_KEY_FILE) is required when DJANGO_DEBUG is false"
            )
        return DEV_NODE_PRIVATE_KEY
    if not _PRIVATE_KEY.match(value):
        raise _fail("NODE_PRIVATE_KEY", "32 bytes as 64 hex digits, optionally 0x-prefixed")
    key = value if value.startswith("0x") else f"0x{value}"
    if not 0 < int(key, 16) < _SECP256K1_ORDER:
        raise _fail("NODE_PRIVATE_KEY", "a valid secp256k1 private key (0 < key < curve order)")
    if not debug and key.lower() == DEV_NODE_PRIVATE_KEY:
        raise ImproperlyConfigured(
            "NODE_PRIVATE_KEY is anvil's public development key: refused when DJANGO_DEBUG is false"
        )
    return key


def _secret_key(environ_: Mapping[str, str], debug: bool) -> str:
    value = _secret(environ_, "DJANGO_SECRET_KEY")
    if value is None:
        if not debug:
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required when DJANGO_DEBUG is false"
            )
        # A new one per process start: development sessions simply do not survive a restart.
        return DEV_SECRET_KEY_PREFIX + secrets.token_urlsafe(40)
    if len(value) < 32:
        raise _fail("DJANGO_SECRET_KEY", "at least 32 characters of random text")
    return value


def _hosts(environ_: Mapping[str, str], debug: bool) -> list[str]:
    value = _text(environ_, "DJANGO_ALLOWED_HOSTS")
    if value is None:
        return ["127.0.0.1", "localhost", "[::1]"] + (["testserver"] if debug else [])
    hosts = [host.strip() for host in value.split(",") if host.strip()]
    if not hosts or any(" " in host or "/" in host for host in hosts):
        raise _fail(
            "DJANGO_ALLOWED_HOSTS", "comma-separated host names, e.g. node.example.com,127.0.0.1", value
        )
    return hosts


def _token_list(environ_: Mapping[str, str]) -> tuple[str, ...]:
    value = _text(environ_, "SUPPORTED_TOKENS")
    if value is None:
        return ()
    tokens = []
    for item in (part.strip() for part in value.split(",")):
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", item) or int(item, 16) == 0:
            raise _fail(
                "SUPPORTED_TOKENS", "comma-separated ERC20 contract addresses (0x + 40 hex digits)", value
            )
        tokens.append(item)
    return tuple(tokens)


def _absolute_path(environ_: Mapping[str, str], name: str, default: Path) -> Path:
    value = _text(environ_, name)
    if value is None:
        return default
    if not Path(value).is_absolute():
        raise _fail(name, "an absolute path", value)
    return Path(value)


_HSTS_PRELOAD_LEAST_SECONDS = 31_536_000  # what browsers' preload lists require: a year


def _https(environ_: Mapping[str, str]) -> HttpsPolicy:
    """HSTS is off unless asked for: once a browser has seen it, the host cannot go back to plain HTTP
    for that long. Each part that only means something with another is refused without it."""
    seconds = _int(environ_, "SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * _HSTS_PRELOAD_LEAST_SECONDS)
    subdomains = _bool(environ_, "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    preload = _bool(environ_, "SECURE_HSTS_PRELOAD", default=False)
    if subdomains and not seconds:
        raise _fail("SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_SECONDS above 0 with it")
    if preload and not (subdomains and seconds >= _HSTS_PRELOAD_LEAST_SECONDS):
        raise _fail(
            "SECURE_HSTS_PRELOAD",
            f"SECURE_HSTS_INCLUDE_SUBDOMAINS=true and SECURE_HSTS_SECONDS of at least "
            f"{_HSTS_PRELOAD_LEAST_SECONDS} with it (what preload lists require)",
        )
    return HttpsPolicy(
        hsts_seconds=seconds,
        hsts_include_subdomains=subdomains,
        hsts_preload=preload,
        ssl_redirect=_bool(environ_, "SECURE_SSL_REDIRECT", default=False),
    )


def _log_level(environ_: Mapping[str, str]) -> str:
    value = (_text(environ_, "NODE_LOG_LEVEL") or "INFO").upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise _fail("NODE_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", value)
    return value


def _routing_reaction(environ_: Mapping[str, str], dispute_timeout: int, hashlock_window: int) -> int:
    """The longest the node may take to see a chain event and get its answer mined. Routing windows
    are sized by it (docs/protocol.md, "Routing windows"); at most half a dispute window, so a stale
    dispute is always answered in time. Default: half the least window a receiver gets."""
    default = min(max(1, hashlock_window // 2), dispute_timeout // 2)
    return _int(environ_, "ROUTING_REACTION_SECONDS", default, minimum=1, maximum=dispute_timeout // 2)


_UINT256_MAX = 2**256 - 1
# The gas the node reserves for one user withdrawal and for deploying its channel first (the measured
# 94,056 and 73,761 of docs/gas.md with the sender's 25% margin); a daily budget below both would
# refuse every first withdrawal.
WITHDRAWAL_GAS_RESERVED = 120_000
CHANNEL_DEPLOY_GAS_RESERVED = 100_000


def _per_asset(
    environ_: Mapping[str, str], name: str, eth: int, token: int, *, minimum: int
) -> dict[str, int]:
    """An amount per asset class, from NAME_ETH (wei) and NAME_TOKEN (token base units)."""
    return {
        "eth": _int(environ_, f"{name}_ETH", eth, minimum=minimum, maximum=_UINT256_MAX),
        "token": _int(environ_, f"{name}_TOKEN", token, minimum=minimum, maximum=_UINT256_MAX),
    }


def load(environ_: Mapping[str, str]) -> NodeConfig:
    debug = _bool(environ_, "DJANGO_DEBUG", default=True)
    var_dir = Path(_text(environ_, "NODE_VAR_DIR") or BASE_DIR / "var").resolve()
    rpc_url = _http_url(environ_, "CHAIN_RPC_URL", None)
    dispute_timeout = _int(environ_, "DISPUTE_TIMEOUT_SECONDS", 86_400, minimum=60, maximum=60 * 86_400)
    hashlock_window = _int(environ_, "HASHLOCK_MIN_WINDOW_SECONDS", 600, minimum=1, maximum=7 * 86_400)
    return NodeConfig(
        debug=debug,
        secret_key=_secret_key(environ_, debug),
        allowed_hosts=_hosts(environ_, debug),
        var_dir=var_dir,
        database=_database(environ_, var_dir),
        redis_url=_redis_url(environ_),
        chain_rpc_url=rpc_url or DEV_CHAIN_RPC_URL,
        chain_rpc_url_is_default=rpc_url is None,
        public_chain_rpc_url=_http_url(environ_, "PUBLIC_CHAIN_RPC_URL", None),
        node_private_key=_private_key(environ_, debug),
        chain_confirmations=_int(environ_, "CHAIN_CONFIRMATIONS", 1, minimum=0, maximum=1000),
        chain_start_block=_int(environ_, "CHAIN_START_BLOCK", 0, minimum=0, maximum=2**63 - 1),
        chain_rpc_batch_size=_int(environ_, "CHAIN_RPC_BATCH_SIZE", 100, minimum=1, maximum=10_000),
        dispute_timeout_seconds=dispute_timeout,
        hashlock_min_window_seconds=hashlock_window,
        routing_reaction_seconds=_routing_reaction(environ_, dispute_timeout, hashlock_window),
        routing_max_transfer_timeout_seconds=_int(
            environ_, "ROUTING_MAX_TRANSFER_TIMEOUT_SECONDS", 7 * 86_400, minimum=60, maximum=60 * 86_400
        ),
        collateral_max_per_account=_per_asset(
            environ_, "COLLATERAL_MAX_PER_ACCOUNT", 10**17, 20 * 10**18, minimum=0
        ),
        collateral_idle_seconds=_int(
            environ_, "COLLATERAL_IDLE_SECONDS", 86_400, minimum=60, maximum=365 * 86_400
        ),
        withdrawal_min_amount=_per_asset(environ_, "WITHDRAWAL_MIN_AMOUNT", 10**15, 10**18, minimum=1),
        withdrawal_max_per_hour=_int(environ_, "WITHDRAWAL_MAX_PER_HOUR", 3, minimum=1, maximum=10_000),
        withdrawal_gas_per_day=_int(
            environ_,
            "WITHDRAWAL_GAS_PER_DAY",
            1_000_000,
            minimum=WITHDRAWAL_GAS_RESERVED + CHANNEL_DEPLOY_GAS_RESERVED,
            maximum=10**12,
        ),
        deployments_file=Path(_text(environ_, "DEPLOYMENTS_FILE") or var_dir / "deployments.json").resolve(),
        supported_tokens=_token_list(environ_),
        log_level=_log_level(environ_),
        static_root=_absolute_path(environ_, "STATIC_ROOT", var_dir / "static"),
        https=_https(environ_),
        swaps=swap_config.parse(_secret(environ_, "SWAPS")),
    )


# --- Edge limits (the node under abuse) ---------------------------------------------------------
# Kept apart from NodeConfig: settings.py reads them with `load_edge_limits`. Every limit has a
# default no real client reaches; tests and operators lower them through the environment.

_RATE = re.compile(r"^([1-9][0-9]{0,8})/(second|minute|hour|day)$")


@dataclass(frozen=True)
class EdgeLimits:
    api_max_body_bytes: int
    api_max_json_depth: int
    ws_max_frame_bytes: int
    ws_auth_timeout_seconds: int
    ws_max_requests_in_flight: int
    rate_limit_per_ip: str
    rate_limit_per_account: str
    rate_limit_login_per_ip: str
    trusted_proxy_count: int
    auth_challenge_ttl_seconds: int
    auth_token_ttl_seconds: int
    fair_share: str
    fair_share_burst: int
    fair_share_max_wait_seconds: int

    @property
    def fair_share_per_second(self) -> float:
        return rate_per_second(self.fair_share)


_PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}


def rate_per_second(rate: str) -> float:
    """'600/minute' -> 10.0."""
    count, _, period = rate.partition("/")
    return int(count) / _PERIOD_SECONDS[period]


def _rate(environ_: Mapping[str, str], name: str, default: str) -> str:
    value = _text(environ_, name)
    if value is None:
        return default
    if not _RATE.match(value):
        raise _fail(name, "requests per period, e.g. 600/minute (second, minute, hour or day)", value)
    return value


def load_edge_limits(environ_: Mapping[str, str]) -> EdgeLimits:
    return EdgeLimits(
        api_max_body_bytes=_int(environ_, "API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024, maximum=2**30),
        api_max_json_depth=_int(environ_, "API_MAX_JSON_DEPTH", 32, minimum=8, maximum=200),
        ws_max_frame_bytes=_int(environ_, "WS_MAX_FRAME_BYTES", 64 * 1024, minimum=1024, maximum=2**26),
        ws_auth_timeout_seconds=_int(environ_, "WS_AUTH_TIMEOUT_SECONDS", 10, minimum=1, maximum=3600),
        ws_max_requests_in_flight=_int(environ_, "WS_MAX_REQUESTS_IN_FLIGHT", 4, minimum=1, maximum=1000),
        rate_limit_per_ip=_rate(environ_, "RATE_LIMIT_PER_IP", "6000/minute"),
        rate_limit_per_account=_rate(environ_, "RATE_LIMIT_PER_ACCOUNT", "3000/minute"),
        rate_limit_login_per_ip=_rate(environ_, "RATE_LIMIT_LOGIN_PER_IP", "300/minute"),
        trusted_proxy_count=_int(environ_, "TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10),
        auth_challenge_ttl_seconds=_int(
            environ_, "AUTH_CHALLENGE_TTL_SECONDS", 300, minimum=10, maximum=3600
        ),
        auth_token_ttl_seconds=_int(
            environ_, "AUTH_TOKEN_TTL_SECONDS", 86_400, minimum=1, maximum=30 * 86_400
        ),
        fair_share=_rate(environ_, "FAIR_SHARE", "10/second"),
        fair_share_burst=_int(environ_, "FAIR_SHARE_BURST", 40, minimum=1, maximum=100_000),
        fair_share_max_wait_seconds=_int(environ_, "FAIR_SHARE_MAX_WAIT_SECONDS", 2, minimum=0, maximum=60),
    )
