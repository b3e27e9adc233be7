"""Payments end to end beyond plain ETH: the TestToken routed A→node→B with the node's collateral
topped up in the token, link reclaims, and the status both parties see. A real node (two daphne
processes, a Celery worker with beat), Postgres, Redis, anvil and the client SDK over websockets."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from channels_app.models import Channel, Payment
from connext import ETH, Client
from connext.chain import channel_reads, devchain
from connext.errors import NodeError
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization, signing
from connext.protocol.definitions import HashLockState, LinkedState, PreimageResolver, SignedResolver
from connext.protocol.encoding import keccak256
from connext.protocol.types import CreateUpdate, ResolveUpdate
from tests.integration.conftest import LIVE_NODE_KEY, LiveNode
from tests.support.client_wallets import (
    Funder,
    Wallet,
    conserved_once_credited,
    operator_trusts,
    settled,
    until,
)

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[9]
E = 10**18
MILLI = 10**15
NODE_ADDRESS = Account.from_key(LIVE_NODE_KEY).address


@pytest.fixture(scope="module")
def funder(live_node: LiveNode) -> Funder:
    return Funder(Web3(HTTPProvider(live_node.chain_url)), FUNDER_KEY)


@pytest.fixture(scope="module")
def token(deployments: dict[str, str]) -> str:
    return deployments["TestToken"]


@pytest.fixture
def wallets(live_node: LiveNode) -> Iterator[list[Wallet]]:
    opened: list[Wallet] = []
    yield opened
    for wallet in opened:
        wallet.client.close()


def connect(live_node: LiveNode, wallets: list[Wallet], key: str, *, node: int = 0, **kwargs: Any) -> Wallet:
    kwargs.setdefault("chain_rpc_url", live_node.chain_url)
    wallet = Wallet(Client.connect(live_node.nodes[node].url, key, **kwargs))
    wallets.append(wallet)
    return wallet


# -- the token --------------------------------------------------------------------------------------


def test_token_payments_of_every_kind_are_routed_with_token_collateral_and_conserve_each_asset(
    live_node, wallets, funder, token
):
    w3 = funder.w3
    funder.mint(token, NODE_ADDRESS, 1000 * E)  # the node's token float, for collateral
    alice = connect(live_node, wallets, funder.new_key())
    bob = connect(live_node, wallets, funder.new_key(), node=1)
    carol = connect(live_node, wallets, funder.new_key())
    funder.mint(token, alice.address, 50 * E)
    alice.deposit(20 * E, token)
    alice.deposit(5 * MILLI)
    before = conserved_once_credited(w3, [alice, bob, carol], [ETH, token])
    assert bob.get_free_balance(token) == {"user": 0, "node": 0}

    # Linked, to a named user: the node has no token in Bob's channel yet and deposits it first.
    linked = alice.transfer(bob.address, 1 * E, token)
    alice.event("transfer.resolved", linked)
    bob.event("transfer.resolved", linked)

    # HashLock: Bob reveals the preimage before his (shorter) expiry.
    preimage = secrets.token_bytes(32)
    hashlock = alice.conditional_transfer(
        "hashlock", 2 * E, bob.address, token, lock_hash=keccak256(preimage), expiry=int(time.time()) + 7200
    )
    bob.event("transfer.received", hashlock)
    bob.resolve_condition(hashlock, preimage=preimage)
    alice.event("transfer.resolved", hashlock)

    # A link, redeemed by Carol: collateral in her channel comes on chain first as well.
    link = alice.create_link(3 * E, token)
    redeemed = carol.redeem_link(link["payment_id"], link["secret"])
    alice.event("transfer.resolved", link["payment_id"])
    settled(alice, bob, carol)

    assert redeemed["status"] == "completed"
    assert (alice.balance(token), bob.balance(token), carol.balance(token)) == (14 * E, 3 * E, 3 * E)
    assert (alice.balance(ETH), bob.balance(ETH), carol.balance(ETH)) == (5 * MILLI, 0, 0)
    for user in (bob, carol):  # the node's collateral arrived in the token, on chain, and was credited

        def credited(user: Wallet = user) -> bool:  # a top-up to what the receiver justifies may follow
            on_chain = channel_reads.deposit_totals(w3, user.channel_address, token, block="latest").node
            return on_chain > 0 and user.get_free_balance(token)["node"] + user.balance(token) == on_chain

        until(credited, "the node's token collateral credited")
    for payment in (linked, hashlock, link["payment_id"]):
        record = Payment.objects.get(payment_id=payment)
        assert (record.status, record.asset_id) == ("completed", token)
        assert alice.get_transfer(payment)["status"] == "completed"
    after = conserved_once_credited(w3, [alice, bob, carol], [ETH, token])
    for asset in (ETH, token):  # payments only moved money between users; the node only added its own
        assert after[asset].users == before[asset].users
        assert after[asset].node == before[asset].node + after[asset].deposited - before[asset].deposited


def test_a_token_payment_the_node_cannot_collateralize_fails_with_its_reason_and_refunds_the_sender(
    live_node, wallets, funder, token
):
    w3 = funder.w3
    alice = connect(live_node, wallets, funder.new_key())
    bob = connect(live_node, wallets, funder.new_key(), node=1)
    huge = 10**30  # far beyond the node's token float
    funder.mint(token, alice.address, huge)
    alice.deposit(huge, token)
    before = conserved_once_credited(w3, [alice, bob], [token])[token]

    payment = alice.transfer(bob.address, huge, token)
    failed = alice.event("transfer.failed", payment)
    until(lambda: alice.balance(token) == huge, "the refund of Alice's lock")
    # Alice's client adopts the refund as it countersigns; the node stores it when that arrives.
    until(lambda: node_view(alice, payment)["status"] == "refunded", "the node to record the refund")

    assert failed["status"] == "failed"
    assert failed["failure"].startswith("the node could not collateralize the receiver's channel")
    assert bob.event("transfer.failed", payment)["status"] == "failed"
    assert node_view(alice, payment)["status"] == node_view(bob, payment)["status"] == "refunded"
    assert bob.get_free_balance(token) == {"user": 0, "node": 0}
    after = conserved_once_credited(w3, [alice, bob], [token])[token]
    assert after.users == before.users == huge


# -- links taken back --------------------------------------------------------------------------------


def node_view(wallet: Wallet, payment_id: str) -> dict[str, Any]:
    """The node's own answer for a payment (the client's `get_transfer` also keeps its own record)."""
    request = wallet.async_client.api.get(f"/api/transfers/{payment_id}")
    return asyncio.run_coroutine_threadsafe(request, wallet.client._loop).result(timeout=30)


def test_an_expired_unredeemed_link_is_reclaimed_by_its_sender_and_then_redeems_nothing(
    live_node, wallets, funder
):
    alice = connect(live_node, wallets, funder.new_key())
    carol = connect(live_node, wallets, funder.new_key(), node=1)
    alice.deposit(10 * MILLI)
    start = alice.balance(ETH)
    fresh = alice.create_link(2 * MILLI)  # a week to redeem it
    expired = alice.create_link(3 * MILLI, expires_in=0)
    assert alice.balance(ETH) == start - 5 * MILLI

    with pytest.raises(NodeError) as too_early:
        alice.cancel_transfer(fresh["payment_id"])
    with pytest.raises(NodeError) as not_hers:
        carol.cancel_transfer(expired["payment_id"])
    # At once; or, when the node's sweep refunded the expired link first, the same answer again.
    reclaimed = alice.cancel_transfer(expired["payment_id"])
    failed = alice.event("transfer.failed", expired["payment_id"])
    until(lambda: alice.balance(ETH) == start - 2 * MILLI, "the expired link's refund")
    until(lambda: node_view(alice, expired["payment_id"])["status"] == "refunded", "the node's record of it")
    carol_state = carol.get_channel()["state"]
    with pytest.raises(NodeError) as after_reclaim:
        carol.redeem_link(expired["payment_id"], expired["secret"])

    assert (too_early.value.code, too_early.value.status) == ("link_not_expired", 409)
    assert (not_hers.value.code, not_hers.value.status) == ("unknown_payment", 404)
    assert (after_reclaim.value.code, after_reclaim.value.status) == ("link_closed", 409)
    assert failed["status"] == "failed"
    assert reclaimed["status"] in ("failed", "refunded")  # the node's sweep may have refunded it first
    assert node_view(alice, expired["payment_id"])["status"] == "refunded"
    assert carol.get_channel()["state"] == carol_state
    assert carol.balance(ETH) == 0

    # The link that has not expired still pays whoever holds it.
    assert carol.redeem_link(fresh["payment_id"], fresh["secret"])["status"] == "completed"
    settled(alice, carol)
    assert (alice.balance(ETH), carol.balance(ETH)) == (start - 2 * MILLI, 2 * MILLI)


# -- one status for both parties ----------------------------------------------------------------------


def sender_and_receiver(live_node, wallets, funder, tmp_path) -> tuple[Wallet, str, Wallet]:
    """Alice (funded, with a store to come back with) and Bob with the node's collateral."""
    alice_key = funder.new_key()
    alice = connect(live_node, wallets, alice_key, store_path=str(tmp_path / "alice.db"))
    alice.deposit(10 * MILLI)
    bob = connect(live_node, wallets, funder.new_key(), node=1)
    operator_trusts(bob.channel_address)  # Bob brings nothing: collateral up front is the operator's call
    bob.request_collateral(ETH)
    until(lambda: bob.get_free_balance(ETH)["node"] > 0, "the node's collateral for Bob")
    return alice, alice_key, bob


def test_both_parties_see_a_payment_completed_once_the_receiver_resolves_though_the_sender_is_away(
    live_node, wallets, funder, tmp_path
):
    alice, alice_key, bob = sender_and_receiver(live_node, wallets, funder, tmp_path)
    start = alice.balance(ETH)
    preimage = secrets.token_bytes(32)
    payment = alice.conditional_transfer(
        "hashlock", 2 * MILLI, bob.address, lock_hash=keccak256(preimage), expiry=int(time.time()) + 7200
    )
    bob.event("transfer.received", payment)
    assert node_view(bob, payment)["status"] == node_view(alice, payment)["status"] == "forwarded"
    alice.client.close()

    bob.resolve_condition(payment, preimage=preimage)
    resolved = bob.event("transfer.resolved", payment)
    assert resolved["status"] == "completed"
    assert node_view(bob, payment)["status"] == "completed"
    assert Payment.objects.get(payment_id=payment).sender_transfer.status == "active"  # Alice is away

    alice = connect(live_node, wallets, alice_key, store_path=str(tmp_path / "alice.db"))
    assert node_view(alice, payment)["status"] == "completed"
    settled(alice, bob)
    assert alice.get_transfer(payment)["status"] == bob.get_transfer(payment)["status"] == "completed"
    assert [p["status"] for p in alice.get_transfer_history() if p["paymentId"] == payment] == ["completed"]
    assert (alice.balance(ETH), bob.balance(ETH)) == (start - 2 * MILLI, 2 * MILLI)
    assert len(bob.events("transfer.resolved", payment)) == 1


def test_both_parties_see_a_payment_fail_when_the_receiver_cancels_and_refunded_once_the_sender_is(
    live_node, wallets, funder, tmp_path
):
    alice, alice_key, bob = sender_and_receiver(live_node, wallets, funder, tmp_path)
    start = alice.balance(ETH)
    payment = alice.conditional_transfer(
        "hashlock", 2 * MILLI, bob.address, lock_hash=keccak256(b"kept"), expiry=int(time.time()) + 7200
    )
    bob.event("transfer.received", payment)
    alice.client.close()

    bob.resolve_condition(payment, preimage=bytes(32))  # the all-zero preimage declines the payment
    failed = bob.event("transfer.failed", payment)
    assert failed["status"] == "failed"
    assert node_view(bob, payment)["status"] == "failed"
    assert bob.get_transfer(payment)["status"] == "failed"

    alice = connect(live_node, wallets, alice_key, store_path=str(tmp_path / "alice.db"))
    settled(alice, bob)
    assert node_view(alice, payment)["status"] == node_view(bob, payment)["status"] == "refunded"
    assert alice.get_transfer(payment)["status"] == bob.get_transfer(payment)["status"] == "refunded"
    assert (alice.balance(ETH), bob.balance(ETH)) == (start, 0)
    assert len(bob.events("transfer.failed", payment)) == 1


# -- the node's own refusals, for a client that skips its checks -------------------------------------


def post_raw(wallet: Wallet, update: Any, meta: dict[str, Any] | None = None) -> NodeError:
    """Send an update straight to the node, as a client that does not check it would; the refusal."""
    body: dict[str, Any] = {"update": serialization.update_to_json(update), "signature": "0x" + "11" * 65}
    if meta is not None:
        body["meta"] = meta
    request = wallet.async_client.api.post("/api/channel/updates", body)
    with pytest.raises(NodeError) as refused:
        asyncio.run_coroutine_threadsafe(request, wallet.client._loop).result(timeout=30)
    return refused.value


def test_the_node_itself_refuses_wrong_resolvers_expired_locks_and_overdrafts_and_nothing_moves(
    live_node, wallets, funder, tmp_path
):
    alice, _, bob = sender_and_receiver(live_node, wallets, funder, tmp_path)
    oracle, stranger = Account.create(), Account.create()
    preimage = secrets.token_bytes(32)
    hashlock = alice.conditional_transfer(
        "hashlock", MILLI, bob.address, lock_hash=keccak256(preimage), expiry=int(time.time()) + 7200
    )
    signed = alice.conditional_transfer("signed", MILLI, bob.address, signer=oracle.address)
    bob.event("transfer.received", hashlock)
    bob.event("transfer.received", signed)
    alice_before, bob_before = alice.get_channel()["state"], bob.get_channel()["state"]
    bob_state, alice_state = bob.async_client.state, alice.async_client.state
    definitions = alice.config["transferDefinitions"]

    def resolve(payment_id: str, resolver: bytes) -> ResolveUpdate:
        transfer = next(t for t in bob_state.transfers if serialization.hex_bytes(t.payment_id) == payment_id)
        return ResolveUpdate(
            channel_address=bob_state.channel_address,
            nonce=bob_state.nonce + 1,
            initiator=bob.address,
            transfer_id=transfer.transfer_id,
            encoded_resolver=resolver,
        )

    def create(kind: str, amount: int, encoded_state: bytes) -> tuple[CreateUpdate, dict[str, Any]]:
        meta = {"recipient": bob.address}
        update = CreateUpdate(
            channel_address=alice_state.channel_address,
            nonce=alice_state.nonce + 1,
            initiator=alice.address,
            asset_id=ETH,
            amount=amount,
            definition=definitions[kind],
            payment_id=secrets.token_bytes(32),
            encoded_state=encoded_state,
            transfer_timeout=alice_state.timeout,
            meta_hash=transfer_meta.meta_hash(meta),
        )
        return update, meta

    data = keccak256(b"delivered")
    forged = signing.sign_receipt(
        alice.chain_id,
        definitions["signed"],
        serialization.parse_bytes(signed, field="id"),
        data,
        stranger.key,
    )
    wrong_preimage = post_raw(bob, resolve(hashlock, PreimageResolver(secrets.token_bytes(32)).encode()))
    wrong_signer = post_raw(bob, resolve(signed, SignedResolver(data, forged).encode()))
    expired = post_raw(
        alice, *create("hashlock", MILLI, HashLockState(keccak256(b"y"), int(time.time()) - 1).encode())
    )
    overdraft = post_raw(
        alice, *create("linked", alice.balance(ETH) + 1, LinkedState(keccak256(b"z")).encode())
    )

    assert [e.code for e in (wrong_preimage, wrong_signer, expired, overdraft)] == [
        "bad_resolver",
        "bad_resolver",
        "expired",
        "insufficient_balance",
    ]
    assert {e.status for e in (wrong_preimage, wrong_signer, expired, overdraft)} == {400}
    assert alice.get_channel()["state"] == alice_before
    assert bob.get_channel()["state"] == bob_before
    for wallet in (alice, bob):
        channel = Channel.objects.get(address=wallet.channel_address)
        assert channel.nonce == wallet.get_channel()["nonce"]
    assert Payment.objects.filter(sender=alice.address).count() == 2
    assert {node_view(bob, p)["status"] for p in (hashlock, signed)} == {"forwarded"}
