"""The client's side of disputes (issue 7) against a real node (daphne + Celery), Postgres, Redis and
anvil: the client's watcher answers the node's stale dispute, and `connext exit` takes a user's money out
with the node process dead. Chain time moves with `evm_increaseTime`; every wait is on a condition, an
event or a line of output with a timeout. Each scenario ends with the on-chain conservation check."""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3

from channels_app.health import HEARTBEAT_CACHE_KEY
from channels_app.models import Dispute
from connext import ETH, Client
from connext.chain import channel_reads, devchain, disputes
from connext.chain.contracts import contract_at
from connext.client.disputes import ChannelDisputes
from connext.client.onchain import UserChain
from connext.client.store import Store
from connext.client.watcher import WatchOptions
from connext.errors import DisputeError, InvalidArgumentError, NodeUnavailableError
from connext.protocol import serialization
from tests.integration.conftest import LIVE_NODE_KEY, LIVE_NODE_SECRET_KEY, LiveNode
from tests.support.client_wallets import operator_trusts
from tests.support.conservation import assert_conserved
from tests.support.disputes import gas_cost, send_from
from tests.support.processes import (
    ROOT,
    NodeProcess,
    celery_worker,
    http_get_json,
    live_node_env,
    wait_until,
)

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[6]
MILLI = 10**15
T = 3600  # DISPUTE_TIMEOUT_SECONDS of the node below
WAIT = 60.0
FAST = WatchOptions(poll_seconds=0.3, node_timeout_seconds=1.0)


@pytest.fixture
def own_node(
    chain: str, node_database_url: str, deployments: dict[str, str], tmp_path: Path, django_db_blocker
) -> Iterator[LiveNode]:
    """A node of this test's own (daphne + Celery with beat) that the test may stop or kill."""
    env = live_node_env(
        database_url=node_database_url,
        chain_url=chain,
        deployments_book=deployments["book"],
        var_dir=tmp_path / "var",
        node_key=LIVE_NODE_KEY,
        secret_key=LIVE_NODE_SECRET_KEY,
        dispute_timeout=T,
    )
    with django_db_blocker.unblock():
        cache.delete(HEARTBEAT_CACHE_KEY)
    node = NodeProcess(env=env, log_path=tmp_path / "daphne.log")
    celery = celery_worker(env=env, log_path=tmp_path / "celery.log")
    live = LiveNode(nodes=[node], celery=celery, env=env, chain_url=chain)
    try:
        node.start()
        celery.start()
        node.wait_serving()
        wait_until(
            lambda: http_get_json(f"{node.url}/api/health")[0] == 200,
            timeout=60,
            what="the Celery worker's first heartbeat",
        )
        yield live
    finally:
        celery.stop()
        node.stop()


@pytest.fixture
def w3(own_node: LiveNode) -> Web3:
    return Web3(HTTPProvider(own_node.chain_url))


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


class Seen:
    """Every dispute and liveness event a client emitted, to wait on without missing one."""

    def __init__(self, client: Client) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        for event in ("dispute.started", "dispute.answered", "dispute.defunded", "node.unresponsive"):
            client.on(event, lambda payload, event=event: self.events.append((event, payload)))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.events if name == event]


def until(condition: Any, what: str, timeout: float = WAIT) -> Any:
    return wait_until(condition, timeout=timeout, what=what, interval=0.05)


def new_key(w3: Web3) -> str:
    key = "0x" + secrets.token_hex(32)
    send_from_funder(w3, Account.from_key(key).address, 10**17)
    return key


def send_from_funder(w3: Web3, to: str, amount: int) -> None:
    funder = Account.from_key(FUNDER_KEY)
    signed = funder.sign_transaction(
        {
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
            "to": to,
            "value": amount,
            "gas": 21_000,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    assert (
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))["status"]
        == 1
    )


def connect(node: LiveNode, clients: list[Client], key: str, **kwargs: Any) -> Client:
    kwargs.setdefault("watch_options", FAST)
    client = Client.connect(node.url, key, chain_rpc_url=node.chain_url, **kwargs)
    clients.append(client)
    return client


def pay_and_settle(alice: Client, bob: Client, amount: int) -> None:
    """Alice pays Bob through the node, and both channels are settled."""
    before = bob.get_free_balance(ETH)["user"]
    payment_id = alice.transfer(bob.address, amount)
    until(
        lambda: bob.get_free_balance(ETH)["user"] == before + amount and not bob.get_channel()["transfers"],
        "Bob's side of the payment resolved",
    )
    until(lambda: alice.get_transfer(payment_id)["status"] == "completed", "Alice's side completed")
    until(lambda: not alice.get_channel()["transfers"], "Alice's side resolved")


def defunds(w3: Web3, channel_address: str) -> list[dict[str, Any]]:
    channel = contract_at(w3, "Channel", channel_address)
    return [dict(log["args"]) for log in channel.events.ChannelDefunded().get_logs(from_block=0)]


def defund_blocks(w3: Web3, channel_address: str) -> list[int]:
    channel = contract_at(w3, "Channel", channel_address)
    return [int(log["blockNumber"]) for log in channel.events.ChannelDefunded().get_logs(from_block=0)]


def refused(code: str, call: Any, *args: Any, error: type[Exception] = DisputeError) -> None:
    with pytest.raises(error) as caught:
        call(*args)
    assert getattr(caught.value, "code", None) == code, caught.value


# -- (2) the node disputes with a stale state: the client's watcher answers -------------------------


def test_the_clients_watcher_answers_the_nodes_stale_dispute_and_the_node_gets_exactly_its_latest_balance(
    own_node, clients, w3
):
    alice = connect(own_node, clients, new_key(w3), watch_disputes=False)
    bob = connect(own_node, clients, new_key(w3))
    seen = Seen(bob)
    alice.deposit(20 * MILLI)
    operator_trusts(bob.channel_address)  # Bob brings nothing: collateral up front is the operator's call
    bob.request_collateral(ETH)
    until(lambda: bob.get_free_balance(ETH)["node"] > 0, "the node's collateral in Bob's channel")
    stale = bob.get_channel()  # the node's balance is higher here than after the payment
    pay_and_settle(alice, bob, 5 * MILLI)

    own_node.celery.stop()  # the node's own watchtower must not be the one answering
    latest = bob.get_channel()
    assert (stale["assets"][ETH]["user"], latest["assets"][ETH]["user"]) == (0, 5 * MILLI)
    stale_state = serialization.channel_state_from_json(stale["state"])
    calldata = disputes.dispute_channel_calldata(
        w3,
        stale_state,
        bytes.fromhex(stale["nodeSignature"][2:]),
        bytes.fromhex(stale["userSignature"][2:]),
    )
    send_from(w3, LIVE_NODE_KEY, bob.channel_address, calldata)

    until(lambda: seen.of("dispute.answered"), "Bob's watcher answering the stale dispute")
    onchain = disputes.read_dispute(w3, bob.channel_address)
    assert onchain.nonce == latest["nonce"]
    assert seen.of("dispute.started")[0]["disputer"] == Account.from_key(LIVE_NODE_KEY).address
    assert seen.of("dispute.answered")[0]["answeredBy"] == bob.address

    # Inside the consensus window nothing else is accepted, and nothing is sent for the refusals.
    sent_before = w3.eth.get_transaction_count(bob.address)
    refused("not_in_defund_phase", bob.defund_channel)
    refused("already_disputed", bob.dispute_channel)
    refused("unknown_payment", bob.dispute_transfer, "0x" + "11" * 32)
    refused("unknown_payment", bob.defund_transfer, "0x" + "22" * 32)
    refused("invalid_payment_id", bob.dispute_transfer, "not-a-payment", error=InvalidArgumentError)
    assert w3.eth.get_transaction_count(bob.address) == sent_before

    devchain.increase_time(own_node.chain_url, T)
    until(lambda: seen.of("dispute.defunded"), "Bob's watcher defunding after the window")
    [defund] = defunds(w3, bob.channel_address)
    assert (defund["toNode"], defund["toUser"]) == (
        latest["assets"][ETH]["node"],
        latest["assets"][ETH]["user"],
    )
    assert seen.of("dispute.defunded")[0]["toUser"] == str(latest["assets"][ETH]["user"])
    refused("nothing_to_defund", bob.defund_channel)
    assert_conserved(w3, bob.channel_address)


# -- (3) the node process is killed: `connext exit` takes the user's money out alone -----------------


class CliRun:
    """`connext exit` in a subprocess, its output lines collected as they come."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "connext.client.cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)


def test_with_the_node_killed_connext_exit_pays_the_user_its_full_balance_and_refunds_its_locked_link(
    own_node, clients, w3, tmp_path
):
    key = new_key(w3)
    store = tmp_path / "alice.db"
    alice = connect(own_node, clients, key, store_path=str(store))
    bob = connect(own_node, clients, new_key(w3), watch_disputes=False)
    seen = Seen(alice)
    alice.deposit(20 * MILLI)
    operator_trusts(bob.channel_address)  # Bob brings nothing: collateral up front is the operator's call
    bob.request_collateral(ETH)
    until(lambda: bob.get_free_balance(ETH)["node"] > 0, "the node's collateral in Bob's channel")
    pay_and_settle(alice, bob, 5 * MILLI)
    link = alice.create_link(3 * MILLI)  # locked by Alice, never redeemed: hers again after its window

    # Before any dispute the client refuses what the chain would refuse, and sends nothing.
    sent_before = w3.eth.get_transaction_count(alice.address)
    refused("no_dispute", alice.defund_channel)
    refused("no_dispute", alice.dispute_transfer, link["payment_id"])
    refused("transfer_not_disputed", alice.defund_transfer, link["payment_id"])
    refused("unknown_payment", alice.dispute_transfer, "0x" + "33" * 32)
    assert w3.eth.get_transaction_count(alice.address) == sent_before

    latest = alice.get_channel()
    assert latest["assets"][ETH]["user"] == 12 * MILLI
    node_balance = latest["assets"][ETH]["node"]  # the payment, plus any collateral the node put in
    for process in (*own_node.nodes, own_node.celery):
        process.stop(signal.SIGKILL)
    until(lambda: seen.of("node.unresponsive"), "the client telling that the node is gone")
    assert seen.of("node.unresponsive")[0]["atStake"] == {ETH: str(15 * MILLI)}
    alice.close()
    clients.remove(alice)

    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    balance_before = w3.eth.get_balance(Account.from_key(key).address)
    run = CliRun(
        [
            "--key-file",
            str(key_file),
            "--store",
            str(store),
            "--rpc",
            own_node.chain_url,
            "exit",
            "--poll",
            "0.2",
        ]
    )
    try:
        advanced: set[int] = set()
        checked_refusals = False
        while run.process.poll() is None:
            waiting = [
                re.search(r"waiting until chain time (\d+) \((\d+)s from now\)", line) for line in run.lines
            ]
            pending = [m for m in waiting if m and int(m.group(1)) not in advanced]
            if not pending:
                until(
                    lambda: (
                        run.process.poll() is not None
                        or any(
                            m and int(m.group(1)) not in advanced
                            for m in (
                                re.search(r"waiting until chain time (\d+)", line) for line in run.lines
                            )
                        )
                    ),
                    f"the exit's next step; output so far:\n{run.output()}",
                )
                continue
            ready_at, seconds = int(pending[0].group(1)), int(pending[0].group(2))
            line = pending[0].string
            if "balance of" not in line and "transfer" in line and not checked_refusals:
                # The link's refund waits for its window: what the chain would refuse is refused first.
                side_store = Store(store)
                setup = side_store.setup()
                assert setup is not None
                standalone = ChannelDisputes(
                    UserChain(own_node.chain_url, bytes.fromhex(key[2:])), side_store, setup
                )
                refused("transfer_window_open", standalone.defund_transfer, link["payment_id"])
                refused("transfer_already_disputed", standalone.dispute_transfer, link["payment_id"])
                refused("dispute_in_progress", standalone.dispute_channel)
                checked_refusals = True
            advanced.add(ready_at)
            devchain.increase_time(own_node.chain_url, seconds + 1)
        run.process.wait(timeout=WAIT)
    finally:
        run.stop()
    assert run.process.returncode == 0, run.output()
    assert checked_refusals, run.output()
    assert "done: the chain owes you nothing more" in run.output()

    [defund] = defunds(w3, latest["channelAddress"])
    assert (defund["toUser"], defund["toNode"]) == (12 * MILLI, node_balance)
    channel = contract_at(w3, "Channel", latest["channelAddress"])
    [refund] = [dict(log["args"]) for log in channel.events.TransferDefunded().get_logs(from_block=0)]
    assert (refund["toInitiator"], refund["toResponder"]) == (3 * MILLI, 0)
    hashes = {m.group(1) for m in (re.search(r": (0x[0-9a-f]{64})$", line) for line in run.lines) if m}
    gas = sum(gas_cost(w3.eth.get_transaction_receipt(h)) for h in hashes)  # type: ignore[arg-type]
    assert w3.eth.get_balance(Account.from_key(key).address) == balance_before + 15 * MILLI - gas
    assert_conserved(w3, latest["channelAddress"])


# -- (7) the channel is used again after a dispute, with the real client -----------------------------


def test_after_the_user_disputes_the_client_countersigns_the_resume_and_deposits_pays_and_withdraws_again(
    own_node, clients, w3
):
    alice = connect(own_node, clients, new_key(w3))
    bob = connect(own_node, clients, new_key(w3), watch_disputes=False)
    seen = Seen(alice)
    alice.deposit(20 * MILLI)
    operator_trusts(bob.channel_address)  # Bob brings nothing: collateral up front is the operator's call
    bob.request_collateral(ETH)
    until(lambda: bob.get_free_balance(ETH)["node"] > 0, "the node's collateral in Bob's channel")
    pay_and_settle(alice, bob, 5 * MILLI)
    disputed = alice.get_channel()
    node_side, user_side = disputed["assets"][ETH]["node"], disputed["assets"][ETH]["user"]
    assert (node_side >= 5 * MILLI, user_side) == (True, 15 * MILLI)  # money on both sides

    alice.dispute_channel()
    until(lambda: seen.of("dispute.started"), "the dispute seen by Alice's client")
    until(
        lambda: Dispute.objects.filter(channel__address=alice.channel_address).exists(),
        "the node recording Alice's dispute",
    )
    # Until the channel resumes the client signs nothing new of its own: such a state could be worthless.
    refused("channel_disputed", alice.transfer, bob.address, MILLI)
    refused("channel_disputed", alice.withdraw, MILLI)
    assert alice.get_channel()["nonce"] == disputed["nonce"]
    devchain.increase_time(own_node.chain_url, T)
    until(lambda: defunds(w3, alice.channel_address), "the disputed state's balances defunded")
    [defund] = defunds(w3, alice.channel_address)
    assert (defund["toNode"], defund["toUser"]) == (node_side, user_side)

    devchain.increase_time(own_node.chain_url, T)  # past the defund window: the node proposes the resume
    until(lambda: alice.get_channel()["nonce"] == disputed["nonce"] + 1, "Alice countersigning the resume")
    resumed = alice.get_channel()
    assert (resumed["assets"][ETH]["node"], resumed["assets"][ETH]["user"]) == (0, 0)
    state = serialization.channel_state_from_json(resumed["state"])
    assert state.defund_nonces == (2,)
    # What the defund paid against: the totals at its block (the node may top its collateral up as soon
    # as the channel resumes, so the latest block can already hold more).
    [defund_block] = defund_blocks(w3, alice.channel_address)
    totals = channel_reads.deposit_totals(w3, alice.channel_address, ETH, block=defund_block)
    assert state.processed_deposits == ((totals.node, totals.user),)
    until(
        lambda: Dispute.objects.get(channel__address=alice.channel_address).status == Dispute.Status.RESUMED,
        "the node's dispute record resumed",
    )

    # The same client uses the channel again: a deposit (only it counts), a payment, a withdrawal.
    alice.deposit(10 * MILLI)
    assert alice.get_free_balance(ETH)["user"] == 10 * MILLI
    pay_and_settle(alice, bob, 3 * MILLI)
    assert alice.get_free_balance(ETH)["user"] == 7 * MILLI
    recipient = Account.create().address
    alice.withdraw(4 * MILLI, ETH, recipient)
    assert w3.eth.get_balance(recipient) == 4 * MILLI
    until(lambda: not alice.get_channel()["transfers"], "the withdraw transfer resolved")
    assert alice.get_free_balance(ETH)["user"] == 3 * MILLI

    # A second round pays out the rest: the raised defund nonce lets the chain defund the asset again.
    final = alice.get_channel()
    alice.dispute_channel()
    devchain.increase_time(own_node.chain_url, T)
    until(lambda: len(defunds(w3, alice.channel_address)) == 2, "the second round's defund")
    second = defunds(w3, alice.channel_address)[-1]
    assert (second["defundNonce"], second["toUser"]) == (2, final["assets"][ETH]["user"])
    # Checked while the channel is still frozen: after the resume the node tops its collateral up again.
    assert_conserved(w3, alice.channel_address)
    devchain.increase_time(own_node.chain_url, T)
    until(lambda: alice.get_channel()["nonce"] == final["nonce"] + 1, "Alice countersigning the 2nd resume")
    assert alice.get_channel()["assets"][ETH]["user"] == 0


# -- (5, client side) an incoming transfer resolved on chain with the preimage the client holds -------


def test_with_the_node_killed_before_it_answers_a_resolve_the_watcher_resolves_the_incoming_link_on_chain(
    own_node, clients, w3
):
    alice = connect(own_node, clients, new_key(w3), watch_disputes=False)
    bob = connect(own_node, clients, new_key(w3))
    seen = Seen(bob)
    alice.deposit(20 * MILLI)
    operator_trusts(bob.channel_address)  # Bob brings nothing: collateral up front is the operator's call
    bob.request_collateral(ETH)
    until(lambda: bob.get_free_balance(ETH)["node"] > 0, "the node's collateral in Bob's channel")
    pay_and_settle(alice, bob, 2 * MILLI)
    # A linked payment whose secret Alice keeps: Bob's side is locked and countersigned, not resolved.
    secret = secrets.token_bytes(32)
    payment_id = alice.conditional_transfer("linked", 4 * MILLI, bob.address, lock_hash=keccak(secret))
    until(lambda: bob.get_channel()["transfers"], "Bob's side of the linked payment locked")
    locked = bob.get_channel()
    [incoming] = locked["transfers"]
    assert (incoming["paymentId"], incoming["responder"]) == (payment_id, bob.address)
    node_side, user_side = locked["assets"][ETH]["node"], locked["assets"][ETH]["user"]
    assert user_side == 2 * MILLI

    for process in (*own_node.nodes, own_node.celery):
        process.stop(signal.SIGKILL)
    # Bob learns the secret only now: the node never countersigns his resolve, so the chain must pay.
    with pytest.raises(NodeUnavailableError):
        bob.resolve_condition(payment_id, preimage=secret)
    assert bob.get_channel()["nonce"] == locked["nonce"]

    bob_before = w3.eth.get_balance(bob.address)
    sent_before = w3.eth.get_transaction_count(bob.address)
    bob.dispute_channel()
    devchain.increase_time(own_node.chain_url, T)  # the defund phase: Bob's watcher takes it from here
    until(
        lambda: any(p["kind"] == "transfer" for p in seen.of("dispute.defunded")),
        "Bob's watcher resolving the incoming link on chain",
    )
    channel = contract_at(w3, "Channel", bob.channel_address)
    [resolved] = [dict(log["args"]) for log in channel.events.TransferDefunded().get_logs(from_block=0)]
    assert (resolved["toInitiator"], resolved["toResponder"]) == (0, 4 * MILLI)
    [defund] = defunds(w3, bob.channel_address)
    assert (defund["toNode"], defund["toUser"]) == (node_side, user_side)
    [transfer_event] = [p for p in seen.of("dispute.defunded") if p["kind"] == "transfer"]
    assert (transfer_event["paymentId"], transfer_event["toUser"]) == (payment_id, str(4 * MILLI))
    sent = range(sent_before, w3.eth.get_transaction_count(bob.address))
    assert len(sent) == 4  # dispute, defund the channel, dispute the transfer, resolve it
    gas = sum(
        gas_cost(w3.eth.get_transaction_receipt(tx["hash"]))
        for number in range(w3.eth.block_number + 1)
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]
        if tx["from"] == bob.address and tx["nonce"] in sent
    )
    assert w3.eth.get_balance(bob.address) == bob_before + user_side + 4 * MILLI - gas
    assert_conserved(w3, bob.channel_address)
