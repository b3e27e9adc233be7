"""/metrics: who may read it, and that its numbers are the node's (Postgres; anvil for the records)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from channels_app.network import network
from dashboard import selectors

pytestmark = pytest.mark.django_db
ETH = selectors.ETH
TOKEN = "metrics-token-" + "x" * 32
ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@override_settings(METRICS_TOKEN=TOKEN, CHAIN_RPC_URL="http://127.0.0.1:18599")
def test_metrics_need_a_staff_session_or_the_token(client, user_client, staff_client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert user_client.get("/metrics").status_code == 401
    with override_settings(METRICS_TOKEN=None):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    response = staff_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    assert value(found, "connext_chain_up") == 0  # the chain did not answer: said, not an error
    assert any(name == "django_http_requests_total_by_method_total" for name, _ in found)


def test_refusals_are_counted_by_code(staff_client):
    before = samples(staff_client.get("/metrics").content.decode())
    Client().get("/api/channel")  # no token
    Client().get("/api/dashboard/payments?status=lost")  # not logged in either
    staff_client.get("/api/dashboard/payments?status=lost")

    found = samples(staff_client.get("/metrics").content.decode())

    def delta(code: str) -> float:
        key = ("connext_refusals_total", (("code", code),))
        return found.get(key, 0) - before.get(key, 0)

    assert delta("not_authenticated") == 2
    assert delta("invalid_input") == 1


@pytest.mark.chain
def test_the_records_metrics_match_the_payments_made(activity, staff_client, w3):
    found = samples(staff_client.get("/metrics").content.decode())
    linked = {"definition": "linked", "asset": ETH}

    assert value(found, "connext_payments_attempted_total", **linked) == 4
    assert value(found, "connext_payments_completed_total", **linked) == 2
    assert value(found, "connext_payments_failed_total", **linked) == 1
    assert value(found, "connext_payments_in_flight", **linked) == 1
    assert value(found, "connext_routed_volume_total", **linked) == pytest.approx(0.15)
    assert value(found, "connext_payment_latency_seconds_count") == 2
    assert value(found, "connext_payment_latency_seconds_bucket", le="+Inf") == 2
    assert value(found, "connext_payment_latency_seconds_bucket", le="3600.0") == 2  # made within the test
    assert value(found, "connext_payment_latency_seconds_sum") > 0
    assert value(found, "connext_channels", status="open") == 2
    assert value(found, "connext_value_locked", asset=ETH, holder="transfers") == pytest.approx(0.02)
    (locked,) = selectors.value_locked()
    assert value(found, "connext_value_locked", asset=ETH, holder="users") == pytest.approx(
        locked.users / 10**18
    )
    assert value(found, "connext_disputes_open") == 0
    assert value(found, "connext_chain_up") == 1
    node_balance = w3.eth.get_balance(network().node_address) / 10**18
    assert value(found, "connext_hot_wallet_balance", asset=ETH) == pytest.approx(node_balance)
    assert value(found, "connext_chain_transactions", status="mined") >= 1


def test_several_processes_metrics_are_added_up(staff_client, tmp_path, monkeypatch):
    count_one = "from channels_app.metrics import refusal_count; refusal_count('stale_nonce')"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count_one], cwd=ROOT, env=env, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    with override_settings(CHAIN_RPC_URL="http://127.0.0.1:18599"):
        found = samples(staff_client.get("/metrics").content.decode())

    assert value(found, "connext_refusals_total", code="stale_nonce") == 2
