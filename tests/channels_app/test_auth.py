"""Login with a key (nonce -> signature -> token) and what a token opens, over REST and the websocket."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct

from channels_app.models import AuthChallenge, AuthToken
from channels_app.realtime import push_event_now, user_group
from connext_site.asgi import application

pytestmark = pytest.mark.django_db

USER = Account.from_key("0x" + "42" * 32)
STRANGER = Account.from_key("0x" + "43" * 32)


@pytest.fixture(autouse=True)
def on_anvil(anvil_url):
    with override_settings(CHAIN_RPC_URL=anvil_url):
        yield


def ask_nonce(client, address: str = USER.address):
    return client.get("/api/auth/nonce", {"address": address})


def sign_text(account, message: str) -> str:
    """Signs as any wallet would: EIP-191 personal_sign of the text."""
    return account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()


def log_in(client, account=USER, signer=None) -> dict:
    challenge = ask_nonce(client, account.address.lower()).json()
    response = client.post(
        "/api/auth/token",
        {
            "address": account.address,
            "nonce": challenge["nonce"],
            "signature": sign_text(signer or account, challenge["message"]),
        },
        content_type="application/json",
    )
    return {"status": response.status_code, "body": response.json(), "challenge": challenge}


def test_a_signed_nonce_buys_a_token_that_identifies_the_caller(client):
    result = log_in(client)

    assert result["status"] == 201
    assert result["body"]["address"] == USER.address
    assert "node: 0x" in result["challenge"]["message"]
    assert "chain: 31337" in result["challenge"]["message"]
    me = client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {result['body']['token']}")
    assert me.status_code == 200
    assert me.json() == {"address": USER.address}
    assert not AuthToken.objects.filter(key_hash=result["body"]["token"]).exists()  # only the hash is kept


def test_a_signature_by_another_key_is_refused_and_burns_the_nonce(client):
    result = log_in(client, signer=STRANGER)

    assert result["status"] == 401
    assert result["body"]["error"]["code"] == "bad_signature"
    retry = client.post(
        "/api/auth/token",
        {
            "address": USER.address,
            "nonce": result["challenge"]["nonce"],
            "signature": sign_text(USER, result["challenge"]["message"]),
        },
        content_type="application/json",
    )
    assert retry.status_code == 401
    assert retry.json()["error"]["code"] == "unknown_challenge"
    assert not AuthToken.objects.exists()


def test_a_nonce_is_good_for_one_login_only(client):
    first = log_in(client)
    again = client.post(
        "/api/auth/token",
        {
            "address": USER.address,
            "nonce": first["challenge"]["nonce"],
            "signature": sign_text(USER, first["challenge"]["message"]),
        },
        content_type="application/json",
    )

    assert again.status_code == 401
    assert again.json()["error"]["code"] == "unknown_challenge"


def test_an_expired_challenge_is_refused(client):
    challenge = ask_nonce(client).json()
    AuthChallenge.objects.filter(nonce=challenge["nonce"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = client.post(
        "/api/auth/token",
        {
            "address": USER.address,
            "nonce": challenge["nonce"],
            "signature": sign_text(USER, challenge["message"]),
        },
        content_type="application/json",
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "challenge_expired"


def test_a_signature_with_a_high_s_value_is_refused(client):
    challenge = ask_nonce(client).json()
    signed = USER.sign_message(encode_defunct(text=challenge["message"]))
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    malleable = signed.r.to_bytes(32, "big") + (n - signed.s).to_bytes(32, "big") + bytes([55 - signed.v])

    response = client.post(
        "/api/auth/token",
        {"address": USER.address, "nonce": challenge["nonce"], "signature": "0x" + malleable.hex()},
        content_type="application/json",
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "0x1234", "nonce": "ab", "signature": "0x" + "11" * 65}, "address"),
        ({"address": USER.address, "nonce": "ab", "signature": "0x1111"}, "signature"),
        ({"address": USER.address, "nonce": "ab", "signature": "1111"}, "signature"),
        ({"address": USER.address, "signature": "0x" + "11" * 65}, "nonce"),
    ],
)
def test_malformed_login_requests_are_400_naming_the_field(client, body, field):
    response = client.post("/api/auth/token", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert field in response.json()["error"]["fields"]


def test_a_nonce_for_a_malformed_address_is_400(client):
    mixed_case_with_wrong_checksum = "0x" + USER.address[2:].swapcase()
    response = ask_nonce(client, mixed_case_with_wrong_checksum)

    assert response.status_code == 400
    assert "address" in response.json()["error"]["fields"]
    assert not AuthChallenge.objects.exists()


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer not-a-real-token", "invalid_token"),
        ("Token abc", "invalid_token"),
        ("Bearer ", "invalid_token"),
    ],
)
def test_requests_without_a_valid_token_are_401(client, header, code):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/api/auth/me", **extra)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def test_an_expired_token_is_401_token_expired(client):
    token = log_in(client)["body"]["token"]
    AuthToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


@pytest.mark.django_db(transaction=True)
def test_a_websocket_logged_in_with_a_token_gets_its_own_events_only(client):
    token = log_in(client)["body"]["token"]

    async def scenario():
        mine = WebsocketCommunicator(application, "/ws/v1")
        other = WebsocketCommunicator(application, "/ws/v1")
        assert (await mine.connect())[0]
        assert (await other.connect())[0]
        await mine.send_json_to({"type": "auth", "token": token, "id": 1})
        authenticated = await mine.receive_json_from(timeout=5)
        await other.send_json_to({"type": "auth", "token": "forged", "id": 2})
        refused = await other.receive_json_from(timeout=5)
        await database_sync_to_async(push_event_now)(
            user_group(USER.address), "deposit.confirmed", {"amount": "5"}
        )
        pushed = await mine.receive_json_from(timeout=5)
        nothing_for_other = await other.receive_nothing(timeout=0.3)
        await mine.disconnect()
        await other.disconnect()
        return authenticated, refused, pushed, nothing_for_other

    authenticated, refused, pushed, nothing_for_other = asyncio.run(scenario())
    assert authenticated == {"type": "authenticated", "id": 1, "address": USER.address}
    assert refused["code"] == "invalid_token"
    assert pushed == {"type": "event", "event": "deposit.confirmed", "payload": {"amount": "5"}}
    assert nothing_for_other
