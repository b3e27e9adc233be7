"""The client SDK end to end: a real node (two daphne processes, a Celery worker with beat), Postgres,
Redis and anvil. Every wait is on a condition or an event with a timeout, never on time passing."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from channels_app.models import Channel, RebalanceProfile, Withdrawal
from connext import ETH, Client
from connext.chain import channel_reads, devchain
from connext.chain.contracts import channel_address, contract_at
from connext.errors import InvalidArgumentError, LimitError, NodeError, ValidationError
from connext.protocol.encoding import keccak256 as keccak
from tests.integration.conftest import LiveNode
from tests.support.processes import ROOT, wait_until

# transaction=True: the node's processes must see what the test writes (and the test database exists).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[6]
E = 10**18
MILLI = 10**15
WAIT = 60.0


@pytest.fixture(scope="module")
def w3(live_node: LiveNode) -> Web3:
    return Web3(HTTPProvider(live_node.chain_url))


@pytest.fixture(scope="module")
def token(deployments: dict[str, str]) -> str:
    return deployments["TestToken"]


@pytest.fixture
def clients(live_node: LiveNode) -> Iterator[list[Client]]:
    """Clients a test connects; all closed after it."""
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


def send_eth(w3: Web3, to: str, amount: int, *, from_key: str = FUNDER_KEY) -> None:
    sender = Account.from_key(from_key)
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
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1


def mint(w3: Web3, token: str, to: str, amount: int) -> None:
    funder = Account.from_key(FUNDER_KEY)
    call = contract_at(w3, "TestToken", token).functions.mint(to, amount)
    tx = call.build_transaction(
        {"from": funder.address, "nonce": w3.eth.get_transaction_count(funder.address, "pending")}
    )
    signed = funder.sign_transaction(tx)
    assert (
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))["status"]
        == 1
    )


def new_user(w3: Web3, gas_money: int = E) -> str:
    """A fresh key with ETH for its own transactions."""
    key = "0x" + secrets.token_hex(32)
    send_eth(w3, Account.from_key(key).address, gas_money)
    return key


def connect(live_node: LiveNode, clients: list[Client], key: str, *, node: int = 0, **kwargs: Any) -> Client:
    kwargs.setdefault("chain_rpc_url", live_node.chain_url)
    client = Client.connect(live_node.nodes[node].url, key, **kwargs)
    clients.append(client)
    return client


def chain_user_total(w3: Web3, client: Client, asset: str) -> int:
    return channel_reads.deposit_totals(w3, client.channel_address, asset, block="latest").user


def set_profile(client: Client, asset: str, thresholds: tuple[int, int, int]) -> None:
    """The operator's rebalance profile for this channel (what the admin's profile form saves)."""
    low, target, high = thresholds
    RebalanceProfile.objects.update_or_create(
        channel=Channel.objects.get(address=client.channel_address),
        asset_id=asset,
        defaults={"collateralize_threshold": low, "target": target, "reclaim_threshold": high},
    )


def until(condition, what: str, timeout: float = WAIT):
    return wait_until(condition, timeout=timeout, what=what, interval=0.05)


# -- connect, open, deposit --------------------------------------------------------------------------


def test_a_fresh_key_connects_opens_its_channel_and_a_deposit_sent_before_opening_is_credited(
    live_node, clients, w3
):
    key = "0x" + secrets.token_hex(32)
    user = Account.from_key(key).address
    _, config = 200, json.loads(urllib.request.urlopen(f"{live_node.url}/api/config").read())  # noqa: S310
    address = channel_address(
        factory=config["contracts"]["ChannelFactory"],
        mastercopy=config["contracts"]["Channel"],
        node=config["nodeAddress"],
        user=user,
        chain_id=int(config["chainId"]),
    )
    send_eth(w3, address, 20 * MILLI)  # before the channel exists anywhere, on or off chain

    client = connect(live_node, clients, key)

    assert client.address == user
    assert client.channel_address == address
    assert client.chain_id == 31337
    assert client.get_free_balance(ETH)["user"] == 20 * MILLI
    assert client.get_channel()["nonce"] >= 2


def test_deposits_of_eth_and_the_token_are_credited_as_the_chain_shows(live_node, clients, w3, token):
    key = new_user(w3)
    client = connect(live_node, clients, key)
    mint(w3, token, client.address, 50 * E)
    credited: list[dict] = []
    client.on("deposit.confirmed", credited.append)

    eth_tx = client.deposit(30 * MILLI)
    token_tx = client.deposit(7 * E, token)

    assert w3.eth.get_transaction_receipt(eth_tx)["status"] == 1
    assert w3.eth.get_transaction_receipt(token_tx)["status"] == 1
    assert client.get_free_balance(ETH)["user"] == 30 * MILLI == chain_user_total(w3, client, ETH)
    assert client.get_free_balance(token)["user"] == 7 * E == chain_user_total(w3, client, token)
    until(lambda: len(credited) >= 2, "the deposit.confirmed events")
    assert {(c["assetId"], c["amount"]) for c in credited} >= {(ETH, str(30 * MILLI)), (token, str(7 * E))}


# -- collateral --------------------------------------------------------------------------------------


def test_collateral_follows_the_profile_and_requests_and_the_excess_is_reclaimed(live_node, clients, w3):
    client = connect(live_node, clients, new_user(w3))
    set_profile(client, ETH, (10 * MILLI, 20 * MILLI, 40 * MILLI))

    client.deposit(5 * MILLI)  # after it the node sees its side under the threshold: fills to target
    until(lambda: client.get_free_balance(ETH)["node"] == 20 * MILLI, "automatic collateral to the target")

    answer = client.request_collateral(ETH, 35 * MILLI)
    assert answer["requested"] is True
    until(lambda: client.get_free_balance(ETH)["node"] == 35 * MILLI, "the requested collateral")

    set_profile(client, ETH, (5 * MILLI, 10 * MILLI, 30 * MILLI))  # now 35 is above the reclaim threshold
    client.deposit(1 * MILLI)  # any update makes the node reconcile the channel
    until(lambda: client.get_free_balance(ETH)["node"] == 10 * MILLI, "the reclaim down to the target")

    def reclaimed_on_chain() -> bool:
        return Withdrawal.objects.filter(
            channel__address=client.channel_address, recipient=client.node_address, status="confirmed"
        ).exists()

    until(reclaimed_on_chain, "the node's withdrawal mined")
    totals = channel_reads.deposit_totals(w3, client.channel_address, ETH, block="latest")
    assert w3.eth.get_balance(client.channel_address) == totals.user + totals.node - 25 * MILLI
    assert client.get_free_balance(ETH)["user"] == 6 * MILLI


def test_requested_collateral_is_in_the_channel_when_the_request_returns(live_node, clients, w3):
    client = connect(live_node, clients, new_user(w3))
    set_profile(client, ETH, (0, 12 * MILLI, 40 * MILLI))  # never below the threshold: nothing automatic

    asked = client.request_collateral(ETH, 7 * MILLI)
    after_asked = client.get_free_balance(ETH)
    to_target = client.request_collateral(ETH)
    after_target = client.get_free_balance(ETH)
    enough = client.request_collateral(ETH, 5 * MILLI)

    assert asked["requested"] is True
    assert after_asked == {"user": 0, "node": 7 * MILLI}
    assert to_target["requested"] is True
    assert after_target == {"user": 0, "node": 12 * MILLI}
    assert enough == {"requested": False, "transactionId": None}
    assert client.get_free_balance(ETH)["node"] == 12 * MILLI
    assert channel_reads.deposit_totals(w3, client.channel_address, ETH, block="latest").node == 12 * MILLI
    assert client.get_channel()["assets"][ETH]["processedDepositsNode"] == 12 * MILLI


def test_collateral_above_the_reclaim_threshold_is_refused_with_the_nodes_code(live_node, clients, w3):
    client = connect(live_node, clients, new_user(w3))

    with pytest.raises(NodeError) as refused:
        client.request_collateral(ETH, 10**30)

    assert (refused.value.code, refused.value.status) == ("collateral_limit", 400)
    assert client.get_free_balance(ETH) == {"user": 0, "node": 0}


# -- withdraw ----------------------------------------------------------------------------------------


def test_a_withdrawal_to_another_address_arrives_on_chain_with_the_node_paying_gas(live_node, clients, w3):
    client = connect(live_node, clients, new_user(w3))
    client.deposit(50 * MILLI)
    recipient = Account.create().address
    seen: list[str] = []
    client.on("withdrawal.started", lambda payload: seen.append("started"))
    client.on("withdrawal.confirmed", lambda payload: seen.append("confirmed"))

    tx_hash = client.withdraw(20 * MILLI, ETH, recipient)

    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert receipt["from"] == client.node_address
    assert w3.eth.get_balance(recipient) == 20 * MILLI
    assert client.get_free_balance(ETH)["user"] == 30 * MILLI
    assert channel_reads.is_deployed(w3, client.channel_address)
    until(lambda: seen[-1:] == ["confirmed"], "the withdrawal events")
    assert "started" in seen


def test_a_withdrawal_larger_than_the_balance_is_refused_before_anything_is_signed(live_node, clients, w3):
    client = connect(live_node, clients, new_user(w3))
    client.deposit(5 * MILLI)
    nonce = client.get_channel()["nonce"]

    with pytest.raises(ValidationError) as refused:
        client.withdraw(6 * MILLI)

    assert refused.value.code == "insufficient_balance"
    assert client.get_channel()["nonce"] == nonce


def test_withdrawals_and_collateral_over_the_nodes_limits_raise_limit_errors_and_change_nothing(
    live_node, clients, w3
):
    client = connect(live_node, clients, new_user(w3))
    client.deposit(5 * MILLI)
    # The node matches what the user brought, of its own accord, and no more.
    until(lambda: client.get_free_balance(ETH)["node"] == 5 * MILLI, "the collateral the deposit justifies")
    until(
        lambda: client.get_channel()["nonce"] == Channel.objects.get(address=client.channel_address).nonce,
        "sync",
    )
    before = client.get_channel()
    node_nonce = w3.eth.get_transaction_count(client.node_address)

    with pytest.raises(LimitError) as dust:
        client.withdraw(1)  # the node would pay ~60,000 gas to move one wei
    with pytest.raises(LimitError) as unjustified:
        client.request_collateral(ETH, 50 * MILLI)  # ten times what the user brought

    assert (dust.value.code, dust.value.status) == ("withdrawal_too_small", 400)
    assert dust.value.details["minimum"] == str(MILLI)
    assert (unjustified.value.code, unjustified.value.details["justified"]) == (
        "collateral_not_justified",
        str(5 * MILLI),
    )
    assert client.get_channel()["state"] == before["state"]
    assert w3.eth.get_transaction_count(client.node_address) == node_nonce
    assert not Withdrawal.objects.filter(channel__address=client.channel_address).exists()


# -- restore -----------------------------------------------------------------------------------------


def test_a_client_that_lost_its_store_restores_the_channel_from_the_node(live_node, clients, w3, tmp_path):
    key = new_user(w3)
    store = tmp_path / "wallet.db"
    first = connect(live_node, clients, key, store_path=str(store))
    first.deposit(12 * MILLI)
    before = first.get_channel()
    first.close()
    clients.remove(first)
    for path in tmp_path.glob("wallet.db*"):
        path.unlink()

    again = connect(live_node, clients, key, store_path=str(store))

    after = again.get_channel()
    assert after["state"] == before["state"] or after["nonce"] > before["nonce"]
    assert again.get_free_balance(ETH)["user"] == 12 * MILLI
    assert store.exists()


# -- refusals ----------------------------------------------------------------------------------------


def raw(live_node: LiveNode, method: str, path: str, *, token: str = "", body: Any = None) -> tuple[int, Any]:
    """An HTTP request as any program could send it, bypassing the client's own checks."""
    request = urllib.request.Request(  # noqa: S310 - local test URL
        live_node.url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_forged_foreign_malformed_stale_and_replayed_requests_get_their_code_and_change_nothing(
    live_node, clients, w3
):
    alice = connect(live_node, clients, new_user(w3))
    set_profile(alice, ETH, (0, 0, E))  # no collateral moves: the channel stays as the test leaves it
    alice.deposit(10 * MILLI)
    alice.deposit(1 * MILLI)
    bob = connect(live_node, clients, new_user(w3))
    token = alice.async_client.api.token
    bob_token = bob.async_client.api.token
    before = alice.get_channel()
    chain_before = w3.eth.get_balance(alice.channel_address)
    _, history = raw(live_node, "GET", "/api/channel/history", token=token)
    older, deposit = history["updates"][-2], history["updates"][-1]
    stale_deposit = {**deposit["update"], "totalDepositsUser": str(12 * MILLI)}

    answers = {
        "forged token": raw(live_node, "GET", "/api/channel", token="forged" + secrets.token_hex(16)),
        "another user's channel": raw(
            live_node,
            "POST",
            "/api/channel/updates",
            token=bob_token,
            body={
                "update": {**deposit["update"], "nonce": str(before["nonce"] + 1), "initiator": bob.address},
                "signature": deposit["userSignature"],
            },
        ),
        "negative amount": raw(
            live_node, "POST", "/api/channel/collateral", token=token, body={"assetId": ETH, "amount": "-1"}
        ),
        "huge amount": raw(
            live_node,
            "POST",
            "/api/channel/updates",
            token=token,
            body={
                "update": {**deposit["update"], "totalDepositsUser": str(2**256)},
                "signature": deposit["userSignature"],
            },
        ),
        "malformed address": raw(
            live_node, "POST", "/api/channel/collateral", token=token, body={"assetId": "0x1234"}
        ),
        "stale nonce": raw(
            live_node,
            "POST",
            "/api/channel/updates",
            token=token,
            body={"update": stale_deposit, "signature": deposit["userSignature"]},
        ),
        "replayed old update": raw(
            live_node,
            "POST",
            "/api/channel/updates",
            token=token,
            body={"update": older["update"], "signature": older["userSignature"]},
        ),
    }
    replay_status, replay = raw(
        live_node,
        "POST",
        "/api/channel/updates",
        token=token,
        body={"update": deposit["update"], "signature": deposit["userSignature"]},
    )

    codes = {name: (status, body["error"]["code"]) for name, (status, body) in answers.items()}
    assert codes == {
        "forged token": (401, "invalid_token"),
        "another user's channel": (403, "not_your_channel"),
        "negative amount": (400, "invalid_input"),
        "huge amount": (400, "malformed_update"),
        "malformed address": (400, "invalid_input"),
        "stale nonce": (409, "stale_nonce"),
        "replayed old update": (409, "stale_nonce"),
    }
    assert answers["stale nonce"][1]["error"]["latest"]["state"] == before["state"]
    assert replay_status == 200
    assert replay["nodeSignature"] == deposit["nodeSignature"]
    _, now = raw(live_node, "GET", "/api/channel", token=token)
    assert now["state"] == before["state"]
    assert now["proposal"] is None or now["state"]["nonce"] == before["state"]["nonce"]
    assert w3.eth.get_balance(alice.channel_address) == chain_before


def test_the_client_refuses_bad_arguments_before_sending_and_reports_node_codes_typed(live_node, clients, w3):
    client = connect(live_node, clients, new_user(w3))
    nonce = client.get_channel()["nonce"]

    with pytest.raises(InvalidArgumentError) as negative:
        client.withdraw(-1)
    with pytest.raises(InvalidArgumentError) as huge:
        client.deposit(2**256)
    with pytest.raises(InvalidArgumentError) as malformed:
        client.withdraw(1, recipient="0x1234")

    assert (negative.value.code, huge.value.code, malformed.value.code) == (
        "invalid_amount",
        "invalid_amount",
        "invalid_address",
    )
    assert client.get_channel()["nonce"] == nonce


# -- two node processes, two devices -----------------------------------------------------------------


def test_two_node_processes_on_one_database_serve_one_user_on_two_devices(live_node, clients, w3, tmp_path):
    key = new_user(w3)
    phone = connect(live_node, clients, key, node=0, store_path=str(tmp_path / "phone.db"))
    set_profile(phone, ETH, (0, 0, E))
    laptop = connect(live_node, clients, key, node=1, store_path=str(tmp_path / "laptop.db"))

    phone.deposit(20 * MILLI)
    until(lambda: laptop.get_channel()["nonce"] == phone.get_channel()["nonce"], "the laptop to sync")
    tx_hash = laptop.withdraw(5 * MILLI, ETH, Account.create().address)
    until(lambda: phone.get_channel()["nonce"] == laptop.get_channel()["nonce"], "the phone to sync")

    assert w3.eth.get_transaction_receipt(tx_hash)["status"] == 1
    assert phone.get_channel()["state"] == laptop.get_channel()["state"]
    assert phone.get_free_balance(ETH)["user"] == 15 * MILLI
    channel = Channel.objects.get(address=phone.channel_address)
    assert channel.nonce == phone.get_channel()["nonce"]
    assert channel.pending_update is None


# -- the CLI -----------------------------------------------------------------------------------------


CLI = [sys.executable, "-m", "connext.client.cli"]


def cli(live_node: LiveNode, key_file: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No --rpc: the CLI takes the chain RPC the node publishes in its config.
    return subprocess.run(
        [*CLI, "--node", live_node.url, "--key-file", str(key_file), "--store", str(store), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_deposits_shows_balances_and_withdraws_against_the_live_node(live_node, w3, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(new_user(w3) + "\n")
    store = tmp_path / "cli.db"
    recipient = Account.create().address

    # Opens the channel; refused: the account has brought nothing that would justify collateral.
    unjustified = cli(live_node, key_file, store, "collateral", "--amount", "0.003eth")
    RebalanceProfile.objects.create(  # the operator's profile: it trusts this account, no automatic moves
        channel=Channel.objects.get(user_address=Account.from_key(key_file.read_text().strip()).address),
        asset_id=ETH,
        collateralize_threshold=0,
        target=0,
        reclaim_threshold=E,
    )
    collateral = cli(live_node, key_file, store, "collateral", "--amount", "0.003eth")
    deposit = cli(live_node, key_file, store, "deposit", "0.02eth")
    balance = cli(live_node, key_file, store, "balance", "--asset", "eth")
    withdraw = cli(live_node, key_file, store, "withdraw", "5000000000000000wei", "--to", recipient)
    too_much = cli(live_node, key_file, store, "withdraw", "1eth")
    bad_amount = cli(live_node, key_file, store, "deposit", "1.5 bananas")

    assert (unjustified.returncode, unjustified.stderr.strip()[:38]) == (
        1,
        "error: collateral_not_justified (400):",
    )
    assert collateral.returncode == 0, collateral.stderr
    assert "the node deposited collateral" in collateral.stdout
    assert "ETH: you 0 eth (0 wei), node 0.003 eth (3000000000000000 wei)" in collateral.stdout
    assert deposit.returncode == 0, deposit.stderr
    assert "sent 0x" in deposit.stdout
    assert "deposited 0.02 eth" in deposit.stdout
    assert balance.returncode == 0, balance.stderr
    assert "ETH: you 0.02 eth" in balance.stdout
    assert withdraw.returncode == 0, withdraw.stderr
    assert "withdrew 0.005 eth" in withdraw.stdout
    assert w3.eth.get_balance(recipient) == 5 * MILLI
    assert (too_much.returncode, too_much.stderr.strip()[:28]) == (1, "error: insufficient_balance:")
    assert (bad_amount.returncode, bad_amount.stderr.strip()[:22]) == (1, "error: invalid_amount:")


def test_an_offline_receivers_first_balance_holds_the_payment_its_sender_sees_completed(
    live_node, clients, w3, tmp_path
):
    """Tried as a new user would: Bob opens his channel and goes offline, Alice pays him; his first
    `balance` finishes the sync (the node forwards the payment once he is online, the client resolves
    it) before it prints, so it never says 0 while Alice's history says completed."""
    key_file, store = tmp_path / "bob.key", tmp_path / "bob.db"
    key_file.write_text(new_user(w3) + "\n")
    bob = Account.from_key(key_file.read_text().strip()).address
    opened = cli(live_node, key_file, store, "balance", "--wait", "0")
    alice = connect(live_node, clients, new_user(w3))
    alice.deposit(20 * MILLI)

    payment_id = alice.transfer(bob, 3 * MILLI)
    balance = cli(live_node, key_file, store, "balance", "--asset", "eth")
    after = alice.wait_for_transfer(payment_id)

    assert opened.returncode == 0, opened.stderr
    assert "ETH: you 0 eth" in opened.stdout
    assert balance.returncode == 0, balance.stderr
    assert after["status"] == "completed"
    assert "ETH: you 0.003 eth (3000000000000000 wei)" in balance.stdout, balance.stdout
    assert "pending in" not in balance.stdout


def test_balance_shows_what_is_still_on_its_way_in_and_out(live_node, clients, w3, tmp_path):
    """A payment the receiver cannot settle yet (a HashLock whose secret only the sender has) is shown as
    pending on both sides: out of the sender's balance, not yet in the receiver's."""
    alice_key, bob_key = new_user(w3), new_user(w3)
    alice = connect(live_node, clients, alice_key)
    bob = connect(live_node, clients, bob_key)
    alice.deposit(20 * MILLI)
    payment_id = alice.conditional_transfer(
        "hashlock",
        2 * MILLI,
        bob.address,
        lock_hash=keccak(secrets.token_bytes(32)),
        expiry=int(time.time()) + 2 * 3600,
    )
    until(lambda: bob.get_transfer(payment_id)["status"] == "forwarded", "the node's side offered to Bob")
    key_file = tmp_path / "alice.key"
    key_file.write_text(alice_key + "\n")

    shown = cli(live_node, key_file, tmp_path / "alice.db", "balance", "--asset", "eth", "--wait", "0")

    assert shown.returncode == 0, shown.stderr
    assert "ETH: you 0.018 eth (18000000000000000 wei)" in shown.stdout, shown.stdout
    assert "  pending out: 0.002 eth (2000000000000000 wei) in 1 payment" in shown.stdout
    in_flight = bob.settle(timeout=0)
    assert (in_flight[ETH].incoming, in_flight[ETH].incoming_count, in_flight[ETH].outgoing_count) == (
        2 * MILLI,
        1,
        0,
    )


# -- the websocket comes back ------------------------------------------------------------------------


def test_a_client_whose_node_restarts_reconnects_and_syncs_what_happened_meanwhile(
    live_node, clients, w3, tmp_path
):
    key = new_user(w3)
    roaming = connect(live_node, clients, key, node=1, store_path=str(tmp_path / "roaming.db"))
    set_profile(roaming, ETH, (0, 0, E))
    other = connect(live_node, clients, key, node=0, store_path=str(tmp_path / "other.db"))
    lost: list[dict] = []
    synced: list[dict] = []
    roaming.on("connection.lost", lost.append)
    roaming.on("channel.synced", synced.append)

    assert live_node.nodes[1].stop() == 0
    other.deposit(3 * MILLI)  # while the roaming client's node is down
    live_node.nodes[1].start()
    live_node.nodes[1].wait_serving()

    until(
        lambda: synced and synced[-1]["nonce"] == other.get_channel()["nonce"],
        "the resync after reconnecting",
    )
    assert lost
    assert roaming.get_free_balance(ETH)["user"] == 3 * MILLI
