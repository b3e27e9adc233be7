"""Rate limits per IP, per IP for logins and per account, against a real daphne process with low
limits: past each, 429 in the JSON error shape with Retry-After, and the refused request wrote
nothing. (Windows are a day long here, so a test never straddles one.)"""

from __future__ import annotations

import json

import pytest
import redis
from django.conf import settings

from channels_app.models import AuthChallenge
from tests.support.abuse import log_in, new_account, request_json, started_node

pytestmark = pytest.mark.django_db(transaction=True)


def forget_counters() -> None:
    """Counters live in Redis across tests (and the node's start polled it): count from none."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        for key in client.scan_iter("*throttle:*"):
            client.delete(key)
    finally:
        client.close()


def assert_throttled(status: int, headers: dict[str, str], body: dict) -> None:
    assert status == 429
    error = body["error"]
    assert error["code"] == "throttled"
    assert 1 <= error["retryAfter"] <= 86_400
    assert headers["Retry-After"] == str(error["retryAfter"])
    assert str(error["retryAfter"]) in error["message"]


def test_nonces_past_the_login_limit_are_429_and_write_no_row(node_env_for, start_process, tmp_path):
    node = started_node(node_env_for, start_process, tmp_path, "login", RATE_LIMIT_LOGIN_PER_IP="5/day")
    forget_counters()
    address = new_account().address
    for _ in range(5):
        assert request_json(f"{node.url}/api/auth/nonce?address={address}")[0] == 200

    status, headers, body = request_json(f"{node.url}/api/auth/nonce?address={address}")

    assert_throttled(status, headers, body)
    assert AuthChallenge.objects.filter(address=address).count() == 5
    token_attempt = json.dumps({"address": address, "nonce": "00", "signature": "0x" + "11" * 65}).encode()
    assert_throttled(*request_json(f"{node.url}/api/auth/token", method="POST", body=token_attempt))


def test_requests_past_the_ip_limit_are_429_with_or_without_a_token_and_a_forged_forwarded_for_does_not_help(
    node_env_for, start_process, tmp_path
):
    node = started_node(node_env_for, start_process, tmp_path, "ip", RATE_LIMIT_PER_IP="10/day")
    forget_counters()
    for _ in range(5):
        assert request_json(f"{node.url}/api/")[0] == 200
    for _ in range(5):
        assert request_json(f"{node.url}/api/channel", token="not-a-token")[0] == 401

    assert_throttled(*request_json(f"{node.url}/api/channel"))
    assert_throttled(*request_json(f"{node.url}/api/", headers={"X-Forwarded-For": "203.0.113.7"}))


def test_requests_past_one_accounts_limit_are_429_and_another_account_is_still_served(
    node_env_for, start_process, tmp_path
):
    node = started_node(node_env_for, start_process, tmp_path, "account", RATE_LIMIT_PER_ACCOUNT="3/day")
    forget_counters()
    busy, other = log_in(node.url, new_account()), log_in(node.url, new_account())
    for _ in range(3):
        assert request_json(f"{node.url}/api/auth/me", token=busy)[0] == 200

    assert_throttled(*request_json(f"{node.url}/api/auth/me", token=busy))
    assert_throttled(*request_json(f"{node.url}/api/auth/logout", method="POST", token=busy))
    assert request_json(f"{node.url}/api/auth/me", token=busy)[0] == 429  # the logout did not happen
    assert request_json(f"{node.url}/api/auth/me", token=other)[0] == 200
