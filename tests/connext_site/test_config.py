"""The node's configuration: embedded defaults, and a clear error for every malformed variable."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ImproperlyConfigured

from connext_site import config

GOOD_KEY = "0x" + "11" * 32
PRODUCTION = {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "s" * 50, "NODE_PRIVATE_KEY": GOOD_KEY}


def test_no_variables_select_the_embedded_default(tmp_path):
    node = config.load({"NODE_VAR_DIR": str(tmp_path)})

    assert node.debug is True
    assert node.database["ENGINE"] == "django.db.backends.sqlite3"
    assert node.database["NAME"] == str(tmp_path / "node.sqlite3")
    assert node.redis_url is None
    assert node.tasks_in_process is True
    assert node.chain_rpc_url == "http://127.0.0.1:8545"
    assert node.chain_rpc_url_is_default is True
    assert node.node_private_key == config.DEV_NODE_PRIVATE_KEY
    assert node.chain_confirmations == 1
    assert node.chain_start_block == 0
    assert node.chain_rpc_batch_size == 100
    assert node.dispute_timeout_seconds == 86_400
    assert node.hashlock_min_window_seconds == 600


def test_database_and_redis_urls_select_postgres_and_redis():
    node = config.load(
        {"DATABASE_URL": "postgres://app:pw@db.internal:5433/node", "REDIS_URL": "redis://cache:6380/2"}
    )

    assert node.database["ENGINE"] == "django.db.backends.postgresql"
    assert (node.database["HOST"], node.database["PORT"], node.database["NAME"]) == (
        "db.internal",
        5433,
        "node",
    )
    assert node.redis_url == "redis://cache:6380/2"
    assert node.tasks_in_process is False
    assert node.database["OPTIONS"]["pool"]["max_size"] == 10
    assert node.database["CONN_MAX_AGE"] == 0


def test_without_a_pool_postgres_connections_live_for_the_configured_age():
    node = config.load(
        {"DATABASE_URL": "postgres://app@db/node", "DATABASE_POOL_SIZE": "0", "DATABASE_CONN_MAX_AGE": "30"}
    )

    assert "pool" not in node.database["OPTIONS"]
    assert node.database["OPTIONS"]["server_side_binding"] is True
    assert node.database["CONN_MAX_AGE"] == 30


def test_production_settings_are_accepted_when_complete():
    node = config.load({**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "node.example.com, 10.0.0.5"})

    assert node.debug is False
    assert node.allowed_hosts == ["node.example.com", "10.0.0.5"]
    assert node.node_private_key == GOOD_KEY


def test_secrets_can_come_from_files(tmp_path):
    key_file = tmp_path / "node.key"
    key_file.write_text(GOOD_KEY[2:] + "\n")
    secret_file = tmp_path / "secret"
    secret_file.write_text("x" * 40)

    node = config.load(
        {
            "DJANGO_DEBUG": "false",
            "NODE_PRIVATE_KEY_FILE": str(key_file),
            "DJANGO_SECRET_KEY_FILE": str(secret_file),
        }
    )

    assert node.node_private_key == GOOD_KEY
    assert node.secret_key == "x" * 40


@pytest.mark.parametrize(
    ("variables", "named", "expected"),
    [
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG", "true or false"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL", "postgres://"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL", "postgres://"),
        ({"DATABASE_URL": "postgres:///nohost"}, "DATABASE_URL", "host"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL", "redis://"),
        ({"REDIS_URL": "redis://127.0.0.1:notaport/0"}, "REDIS_URL", "port"),
        ({"CHAIN_RPC_URL": "127.0.0.1:8545"}, "CHAIN_RPC_URL", "http(s)://"),
        ({"PUBLIC_CHAIN_RPC_URL": "ftp://x"}, "PUBLIC_CHAIN_RPC_URL", "http(s)://"),
        ({"NODE_PRIVATE_KEY": "0x1234"}, "NODE_PRIVATE_KEY", "64 hex digits"),
        ({"NODE_PRIVATE_KEY": "0x" + "00" * 32}, "NODE_PRIVATE_KEY", "valid secp256k1"),
        ({"NODE_PRIVATE_KEY": "0x" + "ff" * 32}, "NODE_PRIVATE_KEY", "valid secp256k1"),
        ({"NODE_PRIVATE_KEY_FILE": "/nonexistent/key"}, "NODE_PRIVATE_KEY_FILE", "readable file"),
        ({"NODE_PRIVATE_KEY": GOOD_KEY, "NODE_PRIVATE_KEY_FILE": "/x"}, "NODE_PRIVATE_KEY", "set one"),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY", "at least 32"),
        ({"DJANGO_ALLOWED_HOSTS": "a b, c"}, "DJANGO_ALLOWED_HOSTS", "comma-separated"),
        ({"DJANGO_ALLOWED_HOSTS": " , "}, "DJANGO_ALLOWED_HOSTS", "comma-separated"),
        ({"CHAIN_CONFIRMATIONS": "two"}, "CHAIN_CONFIRMATIONS", "whole number"),
        (
            {"DATABASE_POOL_SIZE": "many", "DATABASE_URL": "postgres://u@h/db"},
            "DATABASE_POOL_SIZE",
            "whole number",
        ),
        (
            {"DATABASE_CONN_MAX_AGE": "-5", "DATABASE_URL": "postgres://u@h/db"},
            "DATABASE_CONN_MAX_AGE",
            "from 0",
        ),
        ({"CHAIN_CONFIRMATIONS": "-1"}, "CHAIN_CONFIRMATIONS", "from 0"),
        ({"CHAIN_START_BLOCK": "latest"}, "CHAIN_START_BLOCK", "whole number"),
        ({"CHAIN_RPC_BATCH_SIZE": "0"}, "CHAIN_RPC_BATCH_SIZE", "from 1"),
        ({"DISPUTE_TIMEOUT_SECONDS": "10"}, "DISPUTE_TIMEOUT_SECONDS", "from 60"),
        ({"DISPUTE_TIMEOUT_SECONDS": "1.5"}, "DISPUTE_TIMEOUT_SECONDS", "whole number"),
        ({"HASHLOCK_MIN_WINDOW_SECONDS": "0"}, "HASHLOCK_MIN_WINDOW_SECONDS", "from 1"),
        # The node must answer a stale dispute inside its window: at most half of it.
        (
            {"DISPUTE_TIMEOUT_SECONDS": "3600", "ROUTING_REACTION_SECONDS": "1801"},
            "ROUTING_REACTION_SECONDS",
            "from 1 to 1800",
        ),
        ({"ROUTING_MAX_TRANSFER_TIMEOUT_SECONDS": "59"}, "ROUTING_MAX_TRANSFER_TIMEOUT_SECONDS", "from 60"),
        ({"NODE_LOG_LEVEL": "LOUD"}, "NODE_LOG_LEVEL", "DEBUG, INFO"),
        ({"SUPPORTED_TOKENS": "0x12,0xab"}, "SUPPORTED_TOKENS", "ERC20 contract addresses"),
        ({"COLLATERAL_MAX_PER_ACCOUNT_ETH": "0.1"}, "COLLATERAL_MAX_PER_ACCOUNT_ETH", "whole number"),
        ({"COLLATERAL_MAX_PER_ACCOUNT_TOKEN": "-1"}, "COLLATERAL_MAX_PER_ACCOUNT_TOKEN", "from 0"),
        ({"COLLATERAL_IDLE_SECONDS": "59"}, "COLLATERAL_IDLE_SECONDS", "from 60"),
        ({"WITHDRAWAL_MIN_AMOUNT_ETH": "0"}, "WITHDRAWAL_MIN_AMOUNT_ETH", "from 1"),
        ({"WITHDRAWAL_MIN_AMOUNT_TOKEN": "1e18"}, "WITHDRAWAL_MIN_AMOUNT_TOKEN", "whole number"),
        ({"WITHDRAWAL_MAX_PER_HOUR": "0"}, "WITHDRAWAL_MAX_PER_HOUR", "from 1"),
        # A budget below one first withdrawal (deployment included) would refuse every user's first.
        ({"WITHDRAWAL_GAS_PER_DAY": "200000"}, "WITHDRAWAL_GAS_PER_DAY", "from 220000"),
    ],
)
def test_a_malformed_variable_is_refused_with_its_name(variables, named, expected):
    with pytest.raises(ImproperlyConfigured) as raised:
        config.load(variables)

    message = str(raised.value)
    assert message.startswith(named)
    assert expected in message


def test_the_limits_on_what_one_account_makes_the_node_spend_have_safe_defaults():
    node = config.load({})

    assert node.collateral_max_per_account == {"eth": 10**17, "token": 20 * 10**18}
    assert node.collateral_idle_seconds == 86_400
    assert node.withdrawal_min_amount == {"eth": 10**15, "token": 10**18}
    assert node.withdrawal_max_per_hour == 3
    assert node.withdrawal_gas_per_day == 1_000_000
    assert config.load({"WITHDRAWAL_MIN_AMOUNT_ETH": "1"}).withdrawal_min_amount["eth"] == 1


def test_the_routing_reaction_defaults_to_half_the_receivers_least_window_within_half_a_dispute_window():
    assert config.load({}).routing_reaction_seconds == 300
    assert config.load({"HASHLOCK_MIN_WINDOW_SECONDS": "7200"}).routing_reaction_seconds == 3600
    assert config.load({"DISPUTE_TIMEOUT_SECONDS": "60"}).routing_reaction_seconds == 30
    assert config.load({"ROUTING_REACTION_SECONDS": "42"}).routing_reaction_seconds == 42


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "NODE_PRIVATE_KEY"])
def test_production_refuses_to_start_without_its_secrets(missing):
    variables = {name: value for name, value in PRODUCTION.items() if name != missing}

    with pytest.raises(ImproperlyConfigured, match=f"^{missing} .*required when DJANGO_DEBUG is false"):
        config.load(variables)


def test_production_refuses_the_public_development_key():
    with pytest.raises(ImproperlyConfigured, match="public development key"):
        config.load({**PRODUCTION, "NODE_PRIVATE_KEY": config.DEV_NODE_PRIVATE_KEY})


def test_the_development_key_is_accepted_while_debugging():
    assert config.load({"NODE_PRIVATE_KEY": config.DEV_NODE_PRIVATE_KEY[2:]}).node_private_key == (
        config.DEV_NODE_PRIVATE_KEY
    )


def test_edge_limits_have_defaults_no_real_client_reaches():
    limits = config.load_edge_limits({})

    assert limits.api_max_body_bytes == 1024 * 1024
    assert limits.api_max_json_depth == 32
    assert limits.ws_max_frame_bytes == 64 * 1024
    assert limits.ws_auth_timeout_seconds == 10
    assert limits.ws_max_requests_in_flight == 4
    assert limits.rate_limit_per_ip == "6000/minute"
    assert limits.rate_limit_per_account == "3000/minute"
    assert limits.rate_limit_login_per_ip == "300/minute"
    assert limits.trusted_proxy_count == 0
    assert limits.auth_challenge_ttl_seconds == 300
    assert limits.auth_token_ttl_seconds == 86_400
    assert (limits.fair_share, limits.fair_share_per_second) == ("10/second", 10.0)
    assert (limits.fair_share_burst, limits.fair_share_max_wait_seconds) == (40, 2)


def test_a_fair_share_is_read_as_requests_per_second():
    limits = config.load_edge_limits({"FAIR_SHARE": "600/minute", "FAIR_SHARE_BURST": "3"})

    assert (limits.fair_share_per_second, limits.fair_share_burst) == (10.0, 3)


def test_edge_limits_are_read_from_the_environment():
    limits = config.load_edge_limits(
        {"RATE_LIMIT_LOGIN_PER_IP": "5/second", "WS_AUTH_TIMEOUT_SECONDS": "2", "API_MAX_BODY_BYTES": "4096"}
    )

    assert (limits.rate_limit_login_per_ip, limits.ws_auth_timeout_seconds) == ("5/second", 2)
    assert limits.api_max_body_bytes == 4096


@pytest.mark.parametrize(
    ("variables", "named", "expected"),
    [
        ({"RATE_LIMIT_PER_IP": "100"}, "RATE_LIMIT_PER_IP", "requests per period"),
        ({"RATE_LIMIT_PER_ACCOUNT": "0/minute"}, "RATE_LIMIT_PER_ACCOUNT", "requests per period"),
        ({"RATE_LIMIT_LOGIN_PER_IP": "10/fortnight"}, "RATE_LIMIT_LOGIN_PER_IP", "requests per period"),
        ({"API_MAX_BODY_BYTES": "12"}, "API_MAX_BODY_BYTES", "whole number from 1024"),
        ({"API_MAX_JSON_DEPTH": "deep"}, "API_MAX_JSON_DEPTH", "whole number"),
        ({"WS_MAX_FRAME_BYTES": "-1"}, "WS_MAX_FRAME_BYTES", "whole number"),
        ({"WS_AUTH_TIMEOUT_SECONDS": "0"}, "WS_AUTH_TIMEOUT_SECONDS", "whole number from 1"),
        ({"WS_MAX_REQUESTS_IN_FLIGHT": "0"}, "WS_MAX_REQUESTS_IN_FLIGHT", "whole number from 1"),
        ({"TRUSTED_PROXY_COUNT": "all"}, "TRUSTED_PROXY_COUNT", "whole number"),
        ({"AUTH_CHALLENGE_TTL_SECONDS": "1"}, "AUTH_CHALLENGE_TTL_SECONDS", "whole number from 10"),
        ({"AUTH_TOKEN_TTL_SECONDS": "forever"}, "AUTH_TOKEN_TTL_SECONDS", "whole number"),
        ({"FAIR_SHARE": "fast"}, "FAIR_SHARE", "requests per period"),
        ({"FAIR_SHARE_BURST": "0"}, "FAIR_SHARE_BURST", "whole number from 1"),
        ({"FAIR_SHARE_MAX_WAIT_SECONDS": "61"}, "FAIR_SHARE_MAX_WAIT_SECONDS", "whole number"),
    ],
)
def test_a_malformed_edge_limit_is_refused_naming_the_variable(variables, named, expected):
    with pytest.raises(ImproperlyConfigured, match=f"^{named}: expected .*{re.escape(expected)}"):
        config.load_edge_limits(variables)


def test_https_policy_is_off_unless_asked_for(tmp_path):
    node = config.load({"NODE_VAR_DIR": str(tmp_path)})

    assert node.https == config.HttpsPolicy(
        hsts_seconds=0, hsts_include_subdomains=False, hsts_preload=False, ssl_redirect=False
    )
    assert node.static_root == tmp_path / "static"


def test_https_policy_and_static_root_are_read_from_the_environment():
    node = config.load(
        {
            "SECURE_HSTS_SECONDS": "31536000",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
            "SECURE_HSTS_PRELOAD": "yes",
            "SECURE_SSL_REDIRECT": "on",
            "STATIC_ROOT": "/srv/static",
        }
    )

    assert node.https == config.HttpsPolicy(
        hsts_seconds=31_536_000, hsts_include_subdomains=True, hsts_preload=True, ssl_redirect=True
    )
    assert str(node.static_root) == "/srv/static"


def test_the_database_password_can_come_from_a_file_beside_a_url_without_one(tmp_path):
    password_file = tmp_path / "postgres_password"
    password_file.write_text("s3cret-from-a-file\n")

    node = config.load(
        {
            "DATABASE_URL": "postgres://connext@postgres:5432/connext",
            "DATABASE_PASSWORD_FILE": str(password_file),
        }
    )

    assert node.database["PASSWORD"] == "s3cret-from-a-file"
    assert (node.database["USER"], node.database["HOST"]) == ("connext", "postgres")


@pytest.mark.parametrize(
    ("variables", "named", "expected"),
    [
        ({"SECURE_HSTS_SECONDS": "-1"}, "SECURE_HSTS_SECONDS", "from 0 to 63072000"),
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS", "whole number"),
        (
            {"SECURE_HSTS_INCLUDE_SUBDOMAINS": "true"},
            "SECURE_HSTS_INCLUDE_SUBDOMAINS",
            "SECURE_HSTS_SECONDS above 0",
        ),
        (
            {
                "SECURE_HSTS_SECONDS": "3600",
                "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
                "SECURE_HSTS_PRELOAD": "true",
            },
            "SECURE_HSTS_PRELOAD",
            "at least 31536000",
        ),
        (
            {"SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_PRELOAD": "true"},
            "SECURE_HSTS_PRELOAD",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS=true",
        ),
        ({"SECURE_SSL_REDIRECT": "always"}, "SECURE_SSL_REDIRECT", "true or false"),
        ({"STATIC_ROOT": "static"}, "STATIC_ROOT", "an absolute path"),
        ({"DATABASE_PASSWORD": "pw"}, "DATABASE_PASSWORD", "a postgres DATABASE_URL"),
        (
            {"DATABASE_URL": "postgres://u:inline@h/db", "DATABASE_PASSWORD": "pw"},
            "DATABASE_PASSWORD",
            "set one of them",
        ),
        (
            {"DATABASE_URL": "postgres://u@h/db", "DATABASE_PASSWORD": "pw", "DATABASE_PASSWORD_FILE": "/x"},
            "DATABASE_PASSWORD",
            "set one of them",
        ),
        (
            {"DATABASE_URL": "postgres://u@h/db", "DATABASE_PASSWORD_FILE": "/nonexistent"},
            "DATABASE_PASSWORD_FILE",
            "readable file",
        ),
    ],
)
def test_a_malformed_deployment_variable_is_refused_with_its_name(variables, named, expected):
    with pytest.raises(ImproperlyConfigured) as raised:
        config.load(variables)

    message = str(raised.value)
    assert message.startswith(named)
    assert expected in message


def test_a_node_process_names_where_its_socket_is_reached_as_a_ws_url_or_a_path():
    read = lambda value: config._socket_url({"NODE_SOCKET_URL": value}, "NODE_SOCKET_URL")  # noqa: E731

    assert config._socket_url({}, "NODE_SOCKET_URL") == ""
    assert read(" ") == ""
    assert read("ws://127.0.0.1:8002/ws/v1") == "ws://127.0.0.1:8002/ws/v1"
    assert read("wss://node.example/ws/v1") == "wss://node.example/ws/v1"
    assert read("/ws/v1/node2") == "/ws/v1/node2"
    for bad in ("http://node.example/ws/v1", "ws:///ws/v1", "ws/v1", "//node.example/ws", "ws://h/x?a=1"):
        with pytest.raises(ImproperlyConfigured, match="NODE_SOCKET_URL: expected a ws"):
            read(bad)
