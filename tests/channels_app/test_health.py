"""GET /api/health against the real Postgres, Redis and anvil of the test run."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from django.test import override_settings

from channels_app.health import HEARTBEAT_CACHE_KEY
from channels_app.tasks import worker_heartbeat
from connext.chain import devchain

pytestmark = pytest.mark.django_db


@pytest.fixture
def beating_workers():
    worker_heartbeat.apply(throw=True)
    yield
    cache.delete(HEARTBEAT_CACHE_KEY)


def test_health_is_200_with_every_check_ok_and_the_chains_block_number(
    client, anvil_url, deployments, beating_workers
):
    devchain.rpc_call(anvil_url, "evm_mine")
    expected_block = int(devchain.rpc_call(anvil_url, "eth_blockNumber"), 16)

    with override_settings(CHAIN_RPC_URL=anvil_url, DEPLOYMENTS_FILE=deployments["book"]):
        response = client.get("/api/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True, "detail": {"vendor": "postgresql"}}
    assert body["checks"]["redis"] == {"ok": True, "detail": {"backend": "redis"}}
    assert body["checks"]["chain"]["detail"] == {"chain_id": 31337, "block_number": expected_block}
    assert body["checks"]["workers"]["ok"] is True
    assert body["checks"]["contracts"]["detail"]["factory"] == deployments["ChannelFactory"]


def test_health_is_503_naming_the_chain_when_it_is_unreachable(client, beating_workers):
    closed_port = devchain.free_port()

    with override_settings(CHAIN_RPC_URL=f"http://127.0.0.1:{closed_port}"):
        response = client.get("/api/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert body["checks"]["chain"]["ok"] is False
    assert "onnection" in body["checks"]["chain"]["error"]
    assert body["checks"]["database"]["ok"] is True


def test_health_is_503_when_redis_is_unreachable(client, anvil_url, beating_workers):
    closed_port = devchain.free_port()

    with override_settings(CHAIN_RPC_URL=anvil_url, REDIS_URL=f"redis://127.0.0.1:{closed_port}/0"):
        response = client.get("/api/health")

    assert response.status_code == 503
    redis_check = response.json()["checks"]["redis"]
    assert redis_check["ok"] is False
    assert "ConnectionError" in redis_check["error"]


def test_health_is_503_when_workers_stopped_beating(client, anvil_url):
    cache.set(HEARTBEAT_CACHE_KEY, time.time() - 3600)

    with override_settings(CHAIN_RPC_URL=anvil_url):
        response = client.get("/api/health")

    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["error"] == "heartbeat is stale"
    cache.delete(HEARTBEAT_CACHE_KEY)


def test_health_is_503_before_any_worker_has_run(client, anvil_url):
    cache.delete(HEARTBEAT_CACHE_KEY)

    with override_settings(CHAIN_RPC_URL=anvil_url):
        response = client.get("/api/health")

    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["error"] == "no heartbeat yet"


def test_unknown_api_path_answers_with_a_machine_readable_error(client):
    response = client.get("/api/nothing-here")

    assert response.status_code == 404


def test_api_index_lists_the_endpoints(client):
    response = client.get("/api/")

    assert response.status_code == 200
    assert response.json()["endpoints"]["websocket"] == "/ws/v1"


def test_openapi_schema_is_served(client):
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    assert "/api/health" in response.json()["paths"]


def test_the_openapi_schema_is_valid_complete_and_written_without_a_warning(tmp_path):
    """Warnings meant wrong parts: request bodies of different endpoints under one name, no
    authentication scheme, two operations with one id."""
    import yaml
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out))

    schema = yaml.safe_load(out.read_text())
    assert schema["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from POST /api/auth/token (sign the nonce of GET /api/auth/nonce).",
    }
    history = schema["paths"]["/api/transfers"]["get"]
    assert history["security"] == [{"bearerToken": []}]
    assert {p["name"] for p in history["parameters"]} == {"limit", "before"}
    token = schema["paths"]["/api/auth/token"]["post"]["requestBody"]["content"]["application/json"]
    assert token["schema"]["$ref"] == "#/components/schemas/AuthTokenRequest"
    # Every refusal is documented in the one error shape; every operation behind a token, its 401.
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            refusals = {code: r for code, r in operation["responses"].items() if code.startswith("4")}
            for answer in refusals.values():
                assert answer["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }
            if operation.get("security") == [{"bearerToken": []}]:
                assert "401" in refusals, f"{method} {path}"
    payment = schema["components"]["schemas"]["Payment"]["properties"]
    assert payment["amount"]["pattern"] == "^(0|[1-9][0-9]{0,77})$"  # a decimal string, never a number
    assert payment["paymentId"]["pattern"] == "^0x[0-9a-fA-F]{64}$"


def test_health_is_503_when_the_contracts_are_not_deployed_on_this_chain(
    client, anvil_url, tmp_path, beating_workers
):
    with override_settings(CHAIN_RPC_URL=anvil_url, DEPLOYMENTS_FILE=tmp_path / "empty.json"):
        response = client.get("/api/health")

    assert response.status_code == 503
    contracts = response.json()["checks"]["contracts"]
    assert contracts["ok"] is False
    assert "python -m connext.chain.deploy" in contracts["error"]
