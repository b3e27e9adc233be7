"""Activity made through the node's real API and services (Postgres, anvil), and operators to look at it."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client
from eth_account import Account

from tests.channels_app.conftest import FUNDER_KEY, w3  # noqa: F401 - the node on the test's chain
from tests.support.node_work import run_node_work
from tests.support.wallet import Wallet

E = 10**18


def new_wallet(w3) -> Wallet:  # noqa: F811
    wallet = Wallet(client=Client(), w3=w3)
    wallet.log_in()
    wallet.open()
    return wallet


@dataclass
class Activity:
    alice: Wallet
    bob: Wallet
    completed: list[tuple[str, int]]  # (payment id, amount) alice paid bob
    offline: tuple[str, int, str]  # (payment id, amount, receiver) to an address with no channel
    refunded: tuple[str, int]  # a link alice took back after it expired


@pytest.fixture
def activity(w3) -> Activity:  # noqa: F811
    """Alice deposits 2 ETH and pays Bob twice (completed), pays an address with no channel (pending:
    the receiver is offline), and takes back an expired link (refunded)."""
    alice, bob = new_wallet(w3), new_wallet(w3)
    alice.send_eth(FUNDER_KEY, alice.state.channel_address, 2 * E)
    alice.deposit_update()
    run_node_work(alice, bob)
    completed = []
    for amount in (E // 10, E // 20):
        response, payment_id, preimage = alice.pay(bob.address, amount)
        assert response.status_code == 200, response.json()
        run_node_work(alice, bob)
        assert bob.resolve_incoming(payment_id, preimage).status_code == 200
        run_node_work(alice, bob)
        completed.append((payment_id, amount))
    receiver = Account.from_key(secrets.token_bytes(32)).address
    response, offline_id, _ = alice.pay(receiver, E // 50)
    assert response.status_code == 200, response.json()
    run_node_work(alice, bob)
    _, link_id, _ = alice.pay(None, E // 40, meta={"expiresAt": int(time.time()) + 3600})
    run_node_work(alice, bob)
    with mock.patch("channels_app.services.payments.time.time", return_value=time.time() + 7200):
        assert alice.post(f"/api/transfers/{link_id}/cancel", {}).status_code == 200
        run_node_work(alice, bob)
    return Activity(alice, bob, completed, (offline_id, E // 50, receiver), (link_id, E // 40))


@pytest.fixture
def staff_client(db) -> Client:
    operator = User.objects.create_user("operator", password="not-a-real-secret-1", is_staff=True)
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def user_client(db) -> Client:
    someone = User.objects.create_user("someone", password="not-a-real-secret-2")
    client = Client()
    client.force_login(someone)
    return client
