"""Payments end to end through the client SDK: a real node (two daphne processes, a Celery worker with
beat), Postgres, Redis, anvil and websockets. Every wait is on an event or a condition with a timeout.

Clocks: HashLock expiries are checked against the wall clock by the node and the clients (anvil's time
is only for what happens on chain, and nothing here goes on chain after the deposits). This module's
node lets a receiver's HashLock run as short as 2 s (`HASHLOCK_MIN_WINDOW_SECONDS=2`; the dispute
window stays one hour), so the expiry test picks a receiver expiry a few seconds ahead and waits for the
clients' own reactions to it, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from eth_account import Account
from web3 import HTTPProvider, Web3

from channels_app.models import Channel, ChannelUpdate, OnchainTransaction, Payment
from channels_app.services import channels
from connext import ETH, Client
from connext.chain import devchain
from connext.client.store import Store
from connext.client.watcher import WatchOptions
from connext.errors import (
    InvalidArgumentError,
    LimitError,
    NodeError,
    OutcomeUnknownError,
    ValidationError,
)
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization, signing
from connext.protocol.definitions import HashLockState, LinkedState
from connext.protocol.encoding import keccak256
from connext.protocol.types import CreateUpdate
from tests.integration.conftest import LIVE_NODE_KEY, LiveNode
from tests.support import client_wallets
from tests.support.conservation import assert_offchain_conserved
from tests.support.cpu import named_cpu_seconds, own_cpu_seconds, tree_cpu_seconds
from tests.support.processes import ROOT, ManagedProcess, NodeProcess, wait_until

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

logger = logging.getLogger(__name__)
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[7]
E = 10**18
MILLI = 10**15
WAIT = 60.0
HASHLOCK_WINDOW = 2
DISPUTE_WINDOW = 3600  # the live node's
# A receiver whose watcher could answer at once: it accepts HashLocks expiring within seconds.
INSTANT_WATCHER = WatchOptions(poll_seconds=1, confirmations=0, margin_seconds=0)


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, str]:
    return {"HASHLOCK_MIN_WINDOW_SECONDS": str(HASHLOCK_WINDOW)}


@pytest.fixture(scope="module")
def w3(live_node: LiveNode) -> Web3:
    return Web3(HTTPProvider(live_node.chain_url))


class Wallet(client_wallets.Wallet):
    """The shared test wallet, with its ETH balance as an attribute (every payment here is in ETH)."""

    @property  # type: ignore[override]
    def balance(self) -> int:
        return self.client.get_free_balance(ETH)["user"]


@pytest.fixture
def wallets(live_node: LiveNode) -> Iterator[list[Wallet]]:
    opened: list[Wallet] = []
    yield opened
    for wallet in opened:
        wallet.client.close()


def send_eth(w3: Web3, to: str, amount: int) -> None:
    sender = Account.from_key(FUNDER_KEY)
    with _FUNDER:
        signed = sender.sign_transaction(
            {
                "chainId": w3.eth.chain_id,
                "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
                "to": to,
                "value": amount,
                "gas": 100_000,
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1


_FUNDER = threading.Lock()


def new_key(w3: Web3) -> str:
    key = "0x" + secrets.token_hex(32)
    send_eth(w3, Account.from_key(key).address, E // 10)
    return key


def connect(live_node: LiveNode, wallets: list[Wallet], key: str, *, node: int = 0, **kwargs: Any) -> Wallet:
    kwargs.setdefault("chain_rpc_url", live_node.chain_url)
    wallet = Wallet(Client.connect(live_node.nodes[node].url, key, **kwargs))
    wallets.append(wallet)
    return wallet


def funded(
    live_node: LiveNode, wallets: list[Wallet], w3: Web3, deposit: int = 20 * MILLI, **kwargs: Any
) -> Wallet:
    """A user with `deposit` credited in its channel and the node's collateral in place."""
    wallet = connect(live_node, wallets, new_key(w3), **kwargs)
    if deposit:
        wallet.deposit(deposit)
    collateralized(wallet)
    return wallet


def collateralized(wallet: Wallet) -> None:
    """The node's collateral in the channel before any payment. An account with nothing of its own
    justifies none, so for those the operator sets the channel's profile first."""
    if wallet.balance == 0:
        client_wallets.operator_trusts(wallet.channel_address)
    wallet.request_collateral(ETH)
    until(lambda: wallet.get_free_balance(ETH)["node"] > 0, "the node's collateral")


def until(condition: Any, what: str, timeout: float = WAIT) -> Any:
    return wait_until(condition, timeout=timeout, what=what, interval=0.05)


def settled(*wallets: Wallet) -> None:
    """Until no transfer is left in these channels and each client holds the node's latest state."""

    def quiet() -> bool:
        for wallet in wallets:
            channel = Channel.objects.get(address=wallet.channel_address)
            state = wallet.get_channel()
            if state["transfers"] or channel.pending_update is not None or channel.nonce != state["nonce"]:
                return False
        return True

    until(quiet, "every payment to settle")


# -- every definition, routed and resolved -----------------------------------------------------------


def test_every_definition_is_routed_through_the_node_and_resolved(live_node, wallets, w3):
    alice = funded(live_node, wallets, w3)
    bob = funded(live_node, wallets, w3, deposit=0, node=1)
    oracle = Account.create()
    alice_start, bob_start = alice.balance, bob.balance

    # Linked: the preimage travels encrypted to Bob; his client opens and resolves it on its own.
    linked = alice.transfer(bob.address, 1 * MILLI, meta={"memo": "lunch"})
    alice.event("transfer.created", linked)
    received = bob.event("transfer.received", linked)
    alice.event("transfer.resolved", linked)
    bob.event("transfer.resolved", linked)

    # HashLock: Bob learns the preimage out of band and reveals it; his side expires earlier.
    preimage = secrets.token_bytes(32)
    expiry = int(time.time()) + 2 * 3600
    hashlock = alice.conditional_transfer(
        "hashlock", 2 * MILLI, bob.address, lock_hash=keccak256(preimage), expiry=expiry
    )
    bob.event("transfer.received", hashlock)
    bob_side = next(t for t in bob.get_channel()["transfers"] if t["paymentId"] == hashlock)
    bob.resolve_condition(hashlock, preimage=preimage)
    alice.event("transfer.resolved", hashlock)

    # Signed: an oracle's receipt over the payment id and some data.
    payment_id = secrets.token_bytes(32)
    signed = alice.conditional_transfer(
        "signed", 3 * MILLI, bob.address, signer=oracle.address, payment_id=payment_id
    )
    assert signed == "0x" + payment_id.hex()
    bob.event("transfer.received", signed)
    data = keccak256(b"delivered")
    receipt = signing.sign_receipt(
        alice.chain_id, alice.config["transferDefinitions"]["signed"], payment_id, data, bytes(oracle.key)
    )
    bob.resolve_condition(signed, signature=receipt, data=data)
    alice.event("transfer.resolved", signed)
    settled(alice, bob)

    assert (received["sender"], received["meta"]) == (
        alice.address,
        {"memo": "lunch", "recipient": bob.address},
    )
    assert HashLockState.decode(serialization.parse_bytes(bob_side["encodedState"], field="s")).expiry == (
        expiry - (DISPUTE_WINDOW + HASHLOCK_WINDOW)
    )
    assert alice.balance == alice_start - 6 * MILLI
    assert bob.balance == bob_start + 6 * MILLI
    for payment in (linked, hashlock, signed):
        assert alice.get_transfer(payment)["status"] == "completed"
        assert bob.get_transfer(payment)["status"] == "completed"
    history = alice.get_transfer_history()
    assert [p["paymentId"] for p in history[:3]] == [signed, hashlock, linked]
    assert {p["kind"] for p in history[:3]} == {"linked", "hashlock", "signed"}
    assert all(p["direction"] == "outgoing" and p["amount"] > 0 for p in history[:3])
    assert {p["paymentId"] for p in bob.get_transfer_history()} >= {linked, hashlock, signed}
    first = alice.get_transfer_history(limit=2)
    rest = alice.get_transfer_history(limit=2, before=first[-1]["paymentId"])
    assert [p["paymentId"] for p in first + rest][:3] == [signed, hashlock, linked]
    assert [p["paymentId"] for p in first + rest] == [p["paymentId"] for p in history[:4]]
    with pytest.raises(InvalidArgumentError):
        alice.get_transfer_history(limit=0)


def test_updates_travel_over_the_websocket_and_over_rest_while_the_socket_is_down(live_node, wallets, w3):
    alice = funded(live_node, wallets, w3)
    bob = funded(live_node, wallets, w3, deposit=0, node=1)
    rest_updates_before = _rest_update_calls(live_node)
    bob_requests = bob.async_client.api.socket_requests

    over_socket = alice.transfer(bob.address, 1 * MILLI)
    alice.event("transfer.resolved", over_socket)
    settled(alice, bob)
    assert _rest_update_calls(live_node) == rest_updates_before  # both sides answered over their sockets
    # Bob countersigned the node's transfer and resolved it with the preimage in one request.
    assert bob.async_client.api.socket_requests == bob_requests + 1

    # The sockets stay up but the clients stop using them: the same calls go over REST.
    for wallet in (alice, bob):
        api = wallet.async_client.api
        wallet.client._loop.call_soon_threadsafe(api.detach_socket)
        until(lambda api=api: api._socket_send is None, "the socket detached")
    over_rest = alice.transfer(bob.address, 2 * MILLI)
    alice.event("transfer.resolved", over_rest)
    settled(alice, bob)
    assert _rest_update_calls(live_node) > rest_updates_before
    for payment in (over_socket, over_rest):
        assert alice.get_transfer(payment)["status"] == "completed"


def _rest_update_calls(live_node: LiveNode) -> int:
    return sum(
        node.log().count("POST /api/channel/updates") + node.log().count("POST /api/channel/countersign")
        for node in live_node.nodes
    )


def test_a_fresh_receiver_gets_no_collateral_on_request_but_just_in_time_for_a_payment(
    live_node, wallets, w3
):
    alice = funded(live_node, wallets, w3)
    bob = connect(live_node, wallets, new_key(w3), node=1)  # brings nothing, no operator profile

    with pytest.raises(LimitError) as refused:
        bob.request_collateral(ETH)
    payment = alice.transfer(bob.address, 3 * MILLI)
    alice.event("transfer.resolved", payment)
    settled(alice, bob)

    assert (refused.value.code, refused.value.details["justified"]) == ("collateral_not_justified", "0")
    assert bob.balance == 3 * MILLI
    deposits = OnchainTransaction.objects.filter(
        reason=OnchainTransaction.Reason.COLLATERALIZATION, channel_address=bob.channel_address
    )
    assert int(deposits.order_by("pk").first().value) == 3 * MILLI  # exactly what the payment needed


# -- offline receivers, links, expiries ----------------------------------------------------------------


def test_a_payment_to_an_offline_receiver_is_delivered_and_unlocked_when_it_comes_back(
    live_node, wallets, w3, tmp_path
):
    alice = funded(live_node, wallets, w3)
    bob_key = new_key(w3)
    bob = connect(live_node, wallets, bob_key, node=1, store_path=str(tmp_path / "bob.db"))
    collateralized(bob)
    bob.client.close()

    payment = alice.transfer(bob.address, 2 * MILLI)
    alice.event("transfer.created", payment)
    until(
        lambda: Channel.objects.get(address=bob.channel_address).pending_update is not None,
        "the node to propose Bob's side while he is away",
    )
    assert Payment.objects.get(payment_id=payment).status == Payment.Status.FORWARDED
    assert alice.get_transfer(payment)["status"] == "forwarded"

    bob = connect(live_node, wallets, bob_key, node=0, store_path=str(tmp_path / "bob.db"))
    alice.event("transfer.resolved", payment)
    settled(alice, bob)

    assert bob.balance == 2 * MILLI
    assert bob.get_transfer(payment)["status"] == "completed"
    assert bob.get_transfer(payment)["direction"] == "incoming"


def test_a_link_is_redeemed_once_by_a_third_user_and_refused_with_a_code_otherwise(live_node, wallets, w3):
    alice = funded(live_node, wallets, w3)
    carol = funded(live_node, wallets, w3, deposit=0, node=1)
    dave = funded(live_node, wallets, w3, deposit=0)
    start = alice.balance

    link = alice.create_link(3 * MILLI)
    assert link["url"].endswith(f"#paymentId={link['payment_id']}&secret={link['secret']}")

    with pytest.raises(NodeError) as wrong_secret:
        carol.redeem_link(link["payment_id"], "0x" + "ab" * 32)
    with pytest.raises(NodeError) as unknown:
        carol.redeem_link("0x" + "cd" * 32, link["secret"])
    redeemed = carol.redeem_link(link["payment_id"], link["secret"])
    with pytest.raises(NodeError) as twice:
        dave.redeem_link(link["payment_id"], link["secret"])
    alice.event("transfer.resolved", link["payment_id"])
    settled(alice, carol, dave)

    assert (wrong_secret.value.code, unknown.value.code, twice.value.code) == (
        "bad_preimage",
        "unknown_payment",
        "already_redeemed",
    )
    assert redeemed["status"] == "completed"
    assert redeemed["amount"] == 3 * MILLI
    assert carol.balance == 3 * MILLI
    assert dave.balance == 0
    assert alice.balance == start - 3 * MILLI
    assert alice.get_transfer(link["payment_id"])["status"] == "completed"


def test_a_hashlock_the_receiver_lets_expire_is_cancelled_and_refunded_on_both_sides(live_node, wallets, w3):
    alice = funded(live_node, wallets, w3)
    bob = funded(live_node, wallets, w3, deposit=0, node=1, watch_options=INSTANT_WATCHER)
    start = alice.balance
    receiver_expiry = int(time.time()) + 6
    expiry = receiver_expiry + DISPUTE_WINDOW + HASHLOCK_WINDOW

    payment = alice.conditional_transfer(
        "hashlock", 4 * MILLI, bob.address, lock_hash=keccak256(b"never told"), expiry=expiry
    )
    bob.event("transfer.received", payment)
    assert alice.balance == start - 4 * MILLI
    failed = alice.event("transfer.failed", payment, timeout=receiver_expiry - time.time() + WAIT)
    settled(alice, bob)

    assert time.time() >= receiver_expiry
    assert failed["status"] in ("failed", "refunded")  # Bob's cancel, or the node's refund, came first
    assert alice.balance == start
    assert bob.balance == 0
    assert alice.get_transfer(payment)["status"] == "refunded"
    assert bob.get_transfer(payment)["status"] == "refunded"
    assert Payment.objects.get(payment_id=payment).receiver_transfer.status == "cancelled"


# -- refusals: each with its code, nothing moved ----------------------------------------------------


def test_wrong_resolvers_expired_locks_and_overdrafts_are_refused_and_nothing_moves(live_node, wallets, w3):
    alice = funded(live_node, wallets, w3)
    bob = funded(live_node, wallets, w3, deposit=0, node=1)
    oracle, stranger = Account.create(), Account.create()
    preimage = secrets.token_bytes(32)
    hashlock = alice.conditional_transfer(
        "hashlock", MILLI, bob.address, lock_hash=keccak256(preimage), expiry=int(time.time()) + 7200
    )
    signed = alice.conditional_transfer("signed", MILLI, bob.address, signer=oracle.address)
    bob.event("transfer.received", hashlock)
    bob.event("transfer.received", signed)
    alice_channel, bob_channel = alice.get_channel(), bob.get_channel()

    with pytest.raises(ValidationError) as wrong_preimage:
        bob.resolve_condition(hashlock, preimage=secrets.token_bytes(32))
    data = keccak256(b"x")
    forged = signing.sign_receipt(
        bob.chain_id,
        bob.config["transferDefinitions"]["signed"],
        serialization.parse_bytes(signed, field="id"),
        data,
        bytes(stranger.key),
    )
    with pytest.raises(ValidationError) as wrong_signer:
        bob.resolve_condition(signed, signature=forged, data=data)
    with pytest.raises(InvalidArgumentError) as expired:
        alice.conditional_transfer(
            "hashlock", MILLI, bob.address, lock_hash=keccak256(b"y"), expiry=int(time.time()) - 1
        )
    with pytest.raises(InvalidArgumentError) as inside_the_window:
        alice.conditional_transfer(
            "hashlock", MILLI, bob.address, lock_hash=keccak256(b"z"), expiry=int(time.time()) + 60
        )
    with pytest.raises(NodeError) as too_soon:  # outside the client's window, inside the node's margin
        alice.conditional_transfer(
            "hashlock", MILLI, bob.address, lock_hash=keccak256(b"z"), expiry=int(time.time()) + 1200
        )
    with pytest.raises(ValidationError) as overdraft:
        alice.transfer(bob.address, alice.balance + 1)

    assert wrong_preimage.value.code == "bad_resolver"
    assert wrong_signer.value.code == "bad_resolver"
    assert expired.value.code == "expired"
    assert inside_the_window.value.code == "window_too_short"
    assert too_soon.value.code == "expiry_too_soon"
    assert overdraft.value.code == "insufficient_balance"
    assert alice.get_channel()["state"] == alice_channel["state"]
    assert bob.get_channel()["state"] == bob_channel["state"]
    assert Payment.objects.filter(sender=alice.address).count() == 2

    bob.resolve_condition(hashlock, preimage=preimage)
    bob.resolve_condition(
        signed,
        signature=signing.sign_receipt(
            bob.chain_id,
            bob.config["transferDefinitions"]["signed"],
            serialization.parse_bytes(signed, field="id"),
            data,
            bytes(oracle.key),
        ),
        data=data,
    )
    alice.event("transfer.resolved", signed)
    settled(alice, bob)
    assert bob.balance == 2 * MILLI


def test_a_node_proposing_a_payment_with_a_one_second_window_is_refused_and_nothing_is_signed_or_stored(
    live_node, wallets, w3, deployments, anvil_url, tmp_path
):
    """The attack: the node offers Bob a payment whose on-chain window is 1 s. Had Bob revealed the
    preimage, the node could withhold its countersignature, claim upstream, dispute Bob's side and
    refund itself a second later, before Bob's watcher polls."""
    bob = funded(live_node, wallets, w3, deposit=2 * MILLI, node=1, store_path=str(tmp_path / "bob.db"))
    refusals: list[dict[str, Any]] = []
    bob.client.on("update.refused", refusals.append)
    settled(bob)
    before = bob.get_channel()
    channel = Channel.objects.get(address=bob.channel_address)
    records = ChannelUpdate.objects.filter(channel=channel).count()
    payment_id = secrets.token_bytes(32)
    meta = {"sender": Account.create().address, "paymentId": serialization.hex_bytes(payment_id)}

    def propose_as_the_node() -> bool:
        """The node's own proposal code, signing with the live node's key from this process."""
        with (
            override_settings(
                NODE_PRIVATE_KEY=LIVE_NODE_KEY, CHAIN_RPC_URL=anvil_url, DEPLOYMENTS_FILE=deployments["book"]
            ),
            transaction.atomic(),
        ):
            locked = channels.lock_for_proposal(channel.pk)
            if locked is None:
                return False  # a proposal of the node's own is still open: try again
            state = channels.latest_state(locked)
            channels.propose_locked(
                locked,
                CreateUpdate(
                    channel_address=locked.address,
                    nonce=state.nonce + 1,
                    initiator=state.node,
                    asset_id=ETH,
                    amount=MILLI,
                    definition=bob.config["transferDefinitions"]["linked"],
                    payment_id=payment_id,
                    encoded_state=LinkedState(keccak256(secrets.token_bytes(32))).encode(),
                    transfer_timeout=1,
                    meta_hash=transfer_meta.meta_hash(meta),
                ),
                meta=meta,
            )
        return True

    until(propose_as_the_node, "the channel free for a proposal")
    until(lambda: refusals, "Bob's client to refuse the proposal")

    channel.refresh_from_db()
    assert refusals[0]["code"] == "window_too_short"
    assert refusals[0]["update"]["transferTimeout"] == "1"
    assert channel.pending_update is not None  # never countersigned
    assert (channel.nonce, channel.latest_state) == (before["nonce"], before["state"])
    assert ChannelUpdate.objects.filter(channel=channel).count() == records
    assert bob.get_channel() == before
    assert bob.balance == 2 * MILLI
    store = Store(tmp_path / "bob.db")

    def on_file() -> int:
        found = store.latest(bob.channel_address)
        return found.state.nonce if found is not None else 0

    # The node's latest (its collateral, which Bob countersigned) is on disk as the proposal Bob
    # countersigned, synced before his countersignature left; as his latest state it is batched and
    # reaches the file when his event loop runs the batch, 50 ms on or later when the loop is busy.
    until(lambda: on_file() >= before["nonce"], "Bob's batch to reach his file", timeout=5)
    assert store.payments() == []
    assert store.pending(bob.channel_address) is None
    latest = store.latest(bob.channel_address)
    assert latest is not None
    assert latest.state.nonce == before["nonce"]
    store.close()


# -- an answer lost in a crash ----------------------------------------------------------------------


def test_a_payment_the_node_took_before_crashing_is_settled_on_resync_and_its_retry_pays_once(
    live_node, wallets, w3, tmp_path, start_process
):
    """The node process dies between committing Alice's payment and answering it (a test-only hook
    makes it exit there). The client cannot know whether it paid: it says so with the payment id, keeps
    the payment in its store, settles it on its resync once the node is back, and a retry with that id
    returns it instead of paying again."""
    alice_key = new_key(w3)
    alice_address = Account.from_key(alice_key).address
    crashing = start_process(
        NodeProcess(
            env={**live_node.env, "CONNEXT_TEST_CRASH_AT": f"committed:{alice_address}:create"},
            log_path=tmp_path / "crashing.log",
        )
    )
    crashing.wait_serving()
    alice = Wallet(
        Client.connect(
            crashing.url, alice_key, chain_rpc_url=live_node.chain_url, store_path=str(tmp_path / "alice.db")
        )
    )
    wallets.append(alice)
    alice.deposit(10 * MILLI)
    bob = funded(live_node, wallets, w3, deposit=0, node=1)
    start = alice.balance
    payment_id = serialization.hex_bytes(secrets.token_bytes(32))

    with pytest.raises(OutcomeUnknownError) as unknown:
        alice.transfer(bob.address, 3 * MILLI, payment_id=payment_id)
    until(lambda: not crashing.alive(), "the node process to exit after its commit")
    with pytest.raises(OutcomeUnknownError) as still_unknown:  # a retry while the node is down
        alice.transfer(bob.address, 3 * MILLI, payment_id=payment_id)
    while_down = alice.get_transfer(payment_id)  # from the store

    assert crashing.process is not None
    assert crashing.process.returncode == 70
    assert (unknown.value.code, unknown.value.payment_id) == ("outcome_unknown", payment_id)
    assert still_unknown.value.payment_id == payment_id
    assert (while_down["status"], while_down["amount"], while_down["recipient"]) == (
        "sending",
        3 * MILLI,
        bob.address,
    )
    assert alice.balance == start  # the client never saw the node's countersignature
    assert Payment.objects.filter(sender=alice_address).count() == 1  # but the node committed it

    restarted = start_process(
        NodeProcess(env=live_node.env, log_path=tmp_path / "restarted.log", port=crashing.port)
    )
    restarted.wait_serving()
    until(
        lambda: alice.get_transfer(payment_id)["status"] != "sending", "Alice's resync to settle the payment"
    )
    again = alice.transfer(bob.address, 3 * MILLI, payment_id=payment_id)
    with pytest.raises(InvalidArgumentError) as other_terms:
        alice.transfer(bob.address, 4 * MILLI, payment_id=payment_id)
    done = alice.wait_for_transfer(payment_id, timeout=120)  # forwarded by the node's payment sweep
    settled(alice, bob)

    assert again == payment_id
    assert other_terms.value.code == "payment_id_reused"
    assert done["status"] == "completed"
    assert alice.balance == start - 3 * MILLI
    assert bob.balance == 3 * MILLI
    assert Payment.objects.filter(sender=alice_address).count() == 1
    creates = ChannelUpdate.objects.filter(
        channel__address=alice.channel_address, kind="create", initiator=alice_address
    )
    assert creates.count() == 1


CRASHES = {
    # The receiver's resolve (with its countersignature of the node's forward) is committed and the
    # process dies before answering it, and before settling the sender's side.
    "receiver resolve committed, unanswered": ("bob", "committed", "bob", "resolve"),
    # The node's forward into the receiver's channel is committed and the process (serving the
    # sender) dies before pushing it.
    "forward committed, not pushed": ("alice", "proposed", "bob", "create"),
    # The sender's countersignature of the node's settling resolve is committed, unanswered.
    "sender countersign committed, unanswered": ("alice", "committed", "alice", "resolve"),
}


@pytest.mark.parametrize("crash", list(CRASHES))
def test_a_node_killed_on_the_payment_path_loses_no_signed_state_and_the_payment_completes(
    crash, live_node, wallets, w3, tmp_path, start_process, anvil_url, deployments
):
    """One process dies at a point of a routed payment (a test-only hook makes it exit there), a new
    one takes its port. No doubly signed state is lost (each client ends holding the node's latest,
    and every update the node stored rebuilds to the hash both signed), no nonce holds two states,
    and the payment completes once, in both channels."""
    on_crashing, point, whose, update_type = CRASHES[crash]
    keys = {"alice": new_key(w3), "bob": new_key(w3)}
    address = {name: Account.from_key(key).address for name, key in keys.items()}
    crashing = start_process(
        NodeProcess(
            env={**live_node.env, "CONNEXT_TEST_CRASH_AT": f"{point}:{address[whose]}:{update_type}"},
            log_path=tmp_path / "crashing.log",
        )
    )
    crashing.wait_serving()

    def joined(name: str) -> Wallet:
        url = crashing.url if name == on_crashing else live_node.nodes[0].url
        client = Client.connect(
            url, keys[name], chain_rpc_url=live_node.chain_url, store_path=str(tmp_path / f"{name}.db")
        )
        wallet = Wallet(client)
        wallets.append(wallet)
        return wallet

    alice, bob = joined("alice"), joined("bob")
    alice.deposit(10 * MILLI)
    collateralized(alice)
    collateralized(bob)
    # Both channels free on the node's side too: a collateral proposal the client has countersigned
    # but the node not yet stored would hold the forward back for the process serving the receiver
    # (which then forwards it, and the crashing process never reaches its point).
    settled(alice, bob)
    start = (alice.balance, bob.balance)
    payment_id = serialization.hex_bytes(secrets.token_bytes(32))

    alice.transfer(bob.address, 2 * MILLI, payment_id=payment_id)  # answered before every crash point
    until(lambda: not crashing.alive(), f"the node process to exit ({point} for {whose})")
    assert crashing.process is not None
    assert crashing.process.returncode == 70
    restarted = start_process(
        NodeProcess(env=live_node.env, log_path=tmp_path / "restarted.log", port=crashing.port)
    )
    restarted.wait_serving()
    # What the dead process left (a lost answer, push or next step) is carried on by the clients'
    # resync and the node's payment sweep.
    sent = alice.wait_for_transfer(payment_id, timeout=120)
    received = bob.wait_for_transfer(payment_id, timeout=120)
    settled(alice, bob)

    assert (sent["status"], received["status"]) == ("completed", "completed")
    assert (alice.balance, bob.balance) == (start[0] - 2 * MILLI, start[1] + 2 * MILLI)
    assert Payment.objects.filter(payment_id=payment_id).count() == 1
    for wallet in (alice, bob):
        channel = Channel.objects.get(address=wallet.channel_address)
        records = list(ChannelUpdate.objects.filter(channel=channel).order_by("nonce"))
        assert [r.nonce for r in records] == list(range(1, channel.nonce + 1))  # one state a nonce
        held = wallet.client.async_client.state
        assert (held.nonce, serialization.hex_bytes(held.state_hash)) == (
            channel.nonce,
            records[-1].state_hash,
        )
        with override_settings(  # the live node's network, read from this process
            NODE_PRIVATE_KEY=LIVE_NODE_KEY, CHAIN_RPC_URL=anvil_url, DEPLOYMENTS_FILE=deployments["book"]
        ):
            for record in records:  # every stored update rebuilds to the state both signed at its nonce
                rebuilt = channels.state_at(channel, record.nonce)
                assert rebuilt is not None
                assert serialization.hex_bytes(rebuilt.state_hash) == record.state_hash


# -- the CLI --------------------------------------------------------------------------------------------


def cli(live_node: LiveNode, key: str, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    key_file = store.with_suffix(".key")
    key_file.write_text(key + "\n")
    node = ["--node", live_node.url, "--key-file", str(key_file), "--store", str(store)]
    return subprocess.run(
        [sys.executable, "-m", "connext.client.cli", *node, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_sends_makes_and_redeems_links_and_lists_history(live_node, wallets, w3, tmp_path):
    alice_key = new_key(w3)
    alice = connect(live_node, wallets, alice_key, store_path=str(tmp_path / "alice.db"))
    alice.deposit(10 * MILLI)
    alice.client.close()
    bob = funded(live_node, wallets, w3, deposit=0, node=1)
    carol_key = new_key(w3)

    payment_id = serialization.hex_bytes(secrets.token_bytes(32))
    send = cli(
        live_node,
        alice_key,
        tmp_path / "alice.db",
        "send",
        bob.address,
        "0.001eth",
        "--payment-id",
        payment_id,
    )
    resend = cli(  # an operator unsure whether it went through sends again: nothing is paid twice
        live_node,
        alice_key,
        tmp_path / "alice.db",
        "send",
        bob.address,
        "0.001eth",
        "--payment-id",
        payment_id,
    )
    link = cli(live_node, alice_key, tmp_path / "alice.db", "link", "0.002eth")
    assert link.returncode == 0, link.stderr
    url = link.stdout.split(": ", 1)[1].splitlines()[0].strip()
    redeem = cli(live_node, carol_key, tmp_path / "carol.db", "redeem", url)
    history = cli(live_node, alice_key, tmp_path / "alice.db", "history")
    newest = cli(live_node, alice_key, tmp_path / "alice.db", "history", "--limit", "1")

    assert send.returncode == 0, send.stderr
    assert "sent 0.001 eth" in send.stdout
    assert resend.returncode == 0, resend.stderr
    assert send.stdout.split()[-1] == resend.stdout.split()[-1] == payment_id
    assert link.returncode == 0, link.stderr
    assert redeem.returncode == 0, redeem.stderr
    assert "redeemed 0.002 eth (2000000000000000 wei): completed" in redeem.stdout
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert len(lines) == 2
    assert f"linked to {Account.from_key(carol_key).address}: 2000000000000000 wei" in lines[0]
    assert f"linked to {bob.address}: 1000000000000000 wei" in lines[1]
    assert lines[1].startswith(payment_id)
    assert newest.returncode == 0, newest.stderr
    first, hint = newest.stdout.splitlines()
    assert first == lines[0]
    assert hint == f"older: connext history --before {lines[0].split()[0]}"
    # The node resolves Alice's sides while her CLI is away; she countersigns once she stays online.
    connect(live_node, wallets, alice_key, store_path=str(tmp_path / "alice.db"))
    until(
        lambda: (
            set(Payment.objects.filter(sender=alice.address).values_list("status", flat=True))
            == {"completed"}
        ),
        "both of Alice's payments to complete",
    )


# -- many payments at once -------------------------------------------------------------------------------


def cpu_by_role(live_node: LiveNode) -> dict[str, float]:
    """CPU seconds so far of the node's daphne processes, its Celery worker (with beat), this test
    process (the ten clients) and every Postgres and Redis server process on the machine."""
    return {
        "daphne": tree_cpu_seconds(node.process.pid for node in live_node.nodes if node.process),
        "celery": tree_cpu_seconds([live_node.celery.process.pid] if live_node.celery.process else []),
        "clients": own_cpu_seconds(),
        "postgres": named_cpu_seconds("postgres"),
        "redis": named_cpu_seconds("redis-server"),
    }


USERS = 10
PAYMENTS = 200


def test_200_concurrent_payments_between_10_clients_on_two_node_processes_lose_nothing(
    live_node, wallets, w3
):
    with ThreadPoolExecutor(USERS) as pool:
        users = list(
            pool.map(lambda i: funded(live_node, wallets, w3, deposit=10 * MILLI, node=i % 2), range(USERS))
        )
    channels = [u.channel_address for u in users]
    before = assert_offchain_conserved(w3, [u.async_client.state for u in users])[ETH]
    start = {u.address: u.balance for u in users}
    rng = random.Random(6)
    plan = []  # (sender index, recipient index, amount)
    for n in range(PAYMENTS):
        sender = n % USERS
        recipient = (sender + rng.randrange(1, USERS)) % USERS
        plan.append((sender, recipient, rng.randrange(1, 20) * 10**12))

    cpu_before = cpu_by_role(live_node)
    began = time.monotonic()
    futures = [
        asyncio.run_coroutine_threadsafe(
            users[s].async_client.transfer(users[r].address, amount), users[s].client._loop
        )
        for s, r, amount in plan
    ]
    payment_ids = [future.result(timeout=WAIT * 2) for future in futures]
    sent = time.monotonic()
    for index, user in enumerate(users):
        mine = {pid for pid, (s, _, _) in zip(payment_ids, plan, strict=True) if s == index}
        user.events_for("transfer.resolved", mine, timeout=WAIT * 2)
    resolved = time.monotonic()
    settled(*users)
    elapsed = time.monotonic() - began
    cpu = {role: spent - cpu_before[role] for role, spent in cpu_by_role(live_node).items()}
    logger.info(
        f"{PAYMENTS} payments: all sender sides locked after {sent - began:.1f}s, all resolved after"
        f" {resolved - began:.1f}s, settled after {elapsed:.1f}s: {PAYMENTS / (resolved - began):.1f}"
        f" payments/s; CPU seconds: {', '.join(f'{role} {spent:.1f}' for role, spent in cpu.items())}"
    )

    assert len(set(payment_ids)) == PAYMENTS
    assert Payment.objects.filter(payment_id__in=payment_ids, status="completed").count() == PAYMENTS
    expected = dict(start)
    for s, r, amount in plan:
        expected[users[s].address] -= amount
        expected[users[r].address] += amount
    assert {u.address: u.balance for u in users} == expected
    node_states = [
        serialization.channel_state_from_json(c.latest_state)
        for c in Channel.objects.filter(address__in=channels)
    ]
    assert sorted(s.state_hash for s in node_states) == sorted(u.async_client.state.state_hash for u in users)
    after = assert_offchain_conserved(w3, node_states)[ETH]
    assert (after.users, after.node, after.deposited) == (before.users, before.node, before.deposited)


# -- the client killed right after it sent a signature -------------------------------------------------


def _stopped_after_sending(
    live_node: LiveNode, start_process: Any, tmp_path: Path, key: str, store: Path, path: str, *pay: str
) -> dict[str, Any]:
    """Run a client process on `store` until it sent its first request to `path` (its signature in it),
    SIGKILL it there, and return what it sent."""
    log = tmp_path / f"stopping-{len(list(tmp_path.glob('stopping-*')))}.log"
    client = start_process(
        ManagedProcess(
            [
                sys.executable,
                "tests/support/stopping_client.py",
                *(live_node.url, key, str(store), live_node.chain_url, path, *pay),
            ],
            env=os.environ,
            log_path=log,
        )
    )

    def sent() -> str | None:
        line = next((row for row in client.log().splitlines() if row.startswith("sent ")), None)
        if line is None and not client.alive():
            pytest.fail(f"the client process exited:\n{client.log()}")
        return line

    line = until(sent, f"the client process to send {path}")
    client.stop(signal.SIGKILL)
    return json.loads(line.removeprefix("sent "))


def test_a_client_killed_right_after_sending_its_signature_finds_what_it_signed_on_restart(
    live_node, wallets, w3, tmp_path, start_process
):
    """A client process pays and is SIGKILLed right after its create went out (the node took it); it is
    started again on its store and SIGKILLed right after its countersignature of the node's settling
    resolve went out. Each time the store file holds the update, or the doubly signed state, whose
    signature left the process, and a client on that file then matches the node: the payment completes
    once."""
    key, store = new_key(w3), tmp_path / "alice.db"
    alice = connect(live_node, wallets, key, store_path=str(store))
    alice.deposit(10 * MILLI)
    collateralized(alice)
    channel_address, start = alice.channel_address, alice.balance
    alice.client.close()
    wallets.remove(alice)
    bob = funded(live_node, wallets, w3, deposit=0)

    sent = _stopped_after_sending(
        live_node, start_process, tmp_path, key, store, "/api/channel/updates", bob.address, str(2 * MILLI)
    )
    kept = Store(store).pending(channel_address)
    assert kept is not None
    assert serialization.update_to_json(kept.update) == sent["update"]
    assert serialization.hex_bytes(kept.signature) == sent["signature"]
    assert Channel.objects.get(address=channel_address).nonce == kept.update.nonce  # the node took it
    payment_id = sent["update"]["paymentId"]
    until(  # Bob resolved; the node's resolve of Alice's side waits for her countersignature
        lambda: Channel.objects.get(address=channel_address).pending_update is not None,
        "the node's proposal to settle Alice's side",
    )

    countersigned = _stopped_after_sending(
        live_node, start_process, tmp_path, key, store, "/api/channel/countersign"
    )
    held = Store(store).countersigned(channel_address)
    channel = Channel.objects.get(address=channel_address)
    assert held is not None
    assert str(held.state.nonce) == countersigned["nonce"] == str(channel.nonce)
    assert (
        serialization.hex_bytes(held.user_signature) == countersigned["signature"] == channel.user_signature
    )
    assert serialization.hex_bytes(held.node_signature) == channel.node_signature
    signing.verify_state_signatures(held.state, held.node_signature, held.user_signature)

    alice = connect(live_node, wallets, key, store_path=str(store))
    assert alice.wait_for_transfer(payment_id, timeout=WAIT)["status"] == "completed"
    settled(alice, bob)
    assert alice.balance == start - 2 * MILLI
    assert bob.wait_for_transfer(payment_id, timeout=WAIT)["status"] == "completed"
    assert Store(store).countersigned(channel_address) is None
    assert Payment.objects.filter(payment_id=payment_id).count() == 1
