"""Swaps end to end through the client SDK and the CLI: a real node (two daphne processes, a Celery
worker with beat) offering ETH/TestToken at a fixed 2000 less a 0.3 % spread, Postgres, Redis, anvil
and websockets. What a user checks: what each asset holds in the channel, that each asset is
conserved across the channels, and that the swapped asset is spendable like any other."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from channels_app.models import Channel, ChannelUpdate, Swap, SwapExposure
from connext import ETH, Client
from connext.chain import channel_reads, devchain
from connext.protocol import serialization
from tests.channels_app.test_swaps import PRICE, SPREAD_BPS, offer_json
from tests.integration.conftest import LIVE_NODE_KEY, LiveNode
from tests.support.client_wallets import (
    SWAP_EVENTS,
    TRANSFER_EVENTS,
    Funder,
    Wallet,
    conserved_once_credited,
    settled,
    until,
)
from tests.support.processes import ROOT

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[6]
E = 10**18
MILLI = 10**15
NODE_ADDRESS = Account.from_key(LIVE_NODE_KEY).address


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, str]:
    """The node-level tests' offer: ETH/TestToken at a fixed 2000, a 0.3 % spread."""
    return {"SWAPS": offer_json()}


@pytest.fixture(scope="module")
def funder(live_node: LiveNode, deployments: dict[str, str]) -> Funder:
    """The module's dev account; it first mints the node the TestTokens it pays swaps out of."""
    funder = Funder(Web3(HTTPProvider(live_node.chain_url)), FUNDER_KEY)
    funder.mint(deployments["TestToken"], NODE_ADDRESS, 1000 * E)
    return funder


@pytest.fixture(scope="module")
def token(deployments: dict[str, str]) -> str:
    return deployments["TestToken"]


@pytest.fixture
def wallets(live_node: LiveNode) -> Iterator[list[Wallet]]:
    opened: list[Wallet] = []
    yield opened
    for wallet in opened:
        wallet.client.close()


def connect(live_node: LiveNode, wallets: list[Wallet], key: str, *, node: int = 0) -> Wallet:
    client = Client.connect(live_node.nodes[node].url, key, chain_rpc_url=live_node.chain_url)
    wallet = Wallet(client, events=(*TRANSFER_EVENTS, *SWAP_EVENTS))
    wallets.append(wallet)
    return wallet


def offered(give: int, *, eth_to_token: bool) -> int:
    """The node's offer for `give`: the fixed price less the spread, rounded down."""
    mid = Fraction(PRICE) if eth_to_token else Fraction(1, PRICE)
    offer = mid * Fraction(10_000 - SPREAD_BPS, 10_000)
    return give * offer.numerator // offer.denominator


def rate_of(rates: dict[str, Any], give_asset: str, take_asset: str) -> Fraction:
    (entry,) = (r for r in rates["rates"] if (r["giveAssetId"], r["takeAssetId"]) == (give_asset, take_asset))
    return Fraction(int(entry["rate"]["numerator"]), int(entry["rate"]["denominator"]))


def exposure(asset_id: str) -> int:
    row = SwapExposure.objects.filter(asset_id=asset_id.lower()).first()
    return 0 if row is None else int(row.paid_out)


def updates_of(wallet: Wallet) -> list[tuple[int, str, str]]:
    """(nonce, kind, initiator) of every update the node stored for the wallet's channel."""
    return list(
        ChannelUpdate.objects.filter(channel__address=wallet.channel_address)
        .order_by("nonce")
        .values_list("nonce", "kind", "initiator")
    )


def one_state_per_nonce(wallet: Wallet) -> None:
    """The client holds exactly the node's latest state (once any update the node proposed on its own,
    a collateral credit, is answered), and the node stored one update for every nonce up to it."""

    def agreed() -> bool:
        channel = Channel.objects.get(address=wallet.channel_address)
        latest = serialization.channel_state_from_json(channel.latest_state)
        return channel.pending_update is None and wallet.async_client.state.state_hash == latest.state_hash

    until(agreed, "the client and the node to hold the same latest state")
    nonces = [nonce for nonce, _, _ in updates_of(wallet)]
    assert nonces == list(range(nonces[0], wallet.get_channel()["nonce"] + 1))


# -- a swap, back, and the swapped asset spent -------------------------------------------------------


def test_a_user_swaps_eth_for_tokens_the_node_deposited_first_swaps_part_back_and_pays_them_on(
    live_node, wallets, funder, token
):
    w3 = funder.w3
    alice = connect(live_node, wallets, funder.new_key())
    bob = connect(live_node, wallets, funder.new_key(), node=1)
    alice.deposit(20 * MILLI)
    before = conserved_once_credited(w3, [alice, bob], [ETH, token])
    exposed = {asset: exposure(asset) for asset in (ETH, token)}
    assert alice.get_free_balance(token) == {"user": 0, "node": 0}
    quoted = 10 * MILLI * rate_of(alice.get_swap_rates(), ETH, token)
    first_swap_nonce = alice.get_channel()["nonce"] + 1

    received = alice.swap(10 * MILLI, ETH, token)

    assert received == int(quoted) == offered(10 * MILLI, eth_to_token=True) == 19_940 * MILLI
    completed = alice.first_seen("swap.completed", lambda p: p["takeAmount"] == str(received))
    assert completed["giveAssetId"] == ETH
    assert (completed["giveAmount"], completed["takeAssetId"]) == (str(10 * MILLI), token)
    # The node had no token in the channel: it deposited on chain, Alice countersigned the credit,
    # then her swap went at the next nonce.
    channel_updates = ChannelUpdate.objects.filter(channel__address=alice.channel_address)
    swap_update = channel_updates.get(nonce=completed["nonce"])
    assert (swap_update.kind, swap_update.initiator) == ("swap", alice.address)
    credits = channel_updates.filter(
        kind="deposit", initiator=NODE_ADDRESS, nonce__gte=first_swap_nonce, nonce__lt=completed["nonce"]
    )
    assert token in [credit.update["assetId"] for credit in credits]
    assert channel_reads.deposit_totals(w3, alice.channel_address, token, block="latest").node > received
    assert (alice.balance(ETH), alice.balance(token)) == (10 * MILLI, received)
    record = Swap.objects.get(channel__address=alice.channel_address, nonce=completed["nonce"])
    assert (record.give_asset, int(record.give_amount)) == (ETH, 10 * MILLI)
    assert (record.take_asset, int(record.take_amount)) == (token, received)
    assert int(record.spread) == 10 * MILLI * PRICE - received

    back = alice.swap(5 * E, token, ETH)

    assert back == offered(5 * E, eth_to_token=False) == 24_925 * 10**11
    assert (alice.balance(ETH), alice.balance(token)) == (10 * MILLI + back, received - 5 * E)

    payment = alice.transfer(bob.address, 1 * E, token)
    alice.event("transfer.resolved", payment)
    bob.event("transfer.resolved", payment)
    settled(alice, bob)

    assert (alice.balance(ETH), alice.balance(token)) == (10 * MILLI + back, received - 6 * E)
    assert (bob.balance(ETH), bob.balance(token)) == (0, 1 * E)
    after = conserved_once_credited(w3, [alice, bob], [ETH, token])
    # The users gave 10 milli-ETH less the swap back and got the tokens: the rest is the node's.
    assert after[ETH].users == before[ETH].users - 10 * MILLI + back
    assert after[token].users == before[token].users + received - 5 * E
    assert exposure(token) - exposed[token] == received - 5 * E
    assert exposure(ETH) - exposed[ETH] == back - 10 * MILLI
    for wallet in (alice, bob):
        one_state_per_nonce(wallet)


# -- a swap racing a payment into the same channel ---------------------------------------------------


def test_swaps_racing_payments_into_the_same_channel_all_complete_with_one_state_per_nonce(
    live_node, wallets, funder, token
):
    w3 = funder.w3
    alice = connect(live_node, wallets, funder.new_key())
    bob = connect(live_node, wallets, funder.new_key(), node=1)
    alice.deposit(30 * MILLI)
    bob.deposit(10 * MILLI)
    first = alice.swap(5 * MILLI, ETH, token)  # the node's token in Alice's channel, before the race
    before = conserved_once_credited(w3, [alice, bob], [ETH, token])
    rounds = 3

    def race(_: int) -> tuple[int, dict[str, Any]]:
        both = threading.Barrier(2)
        with ThreadPoolExecutor(max_workers=2) as pool:
            # Bob's payment makes the node propose into Alice's channel while she proposes her swap.
            paid = pool.submit(lambda: (both.wait(), bob.transfer(alice.address, 1 * MILLI))[1])
            swapped = pool.submit(lambda: (both.wait(), alice.swap(2 * MILLI, ETH, token))[1])
            payment = paid.result(timeout=120)
            received = swapped.result(timeout=120)
        return received, alice.event("transfer.resolved", payment)

    results = [race(i) for i in range(rounds)]
    settled(alice, bob)

    assert all(received == offered(2 * MILLI, eth_to_token=True) for received, _ in results)
    assert all(resolved["status"] == "completed" for _, resolved in results)
    swapped_tokens = first + sum(received for received, _ in results)
    assert alice.balance(token) == swapped_tokens
    assert alice.balance(ETH) == 30 * MILLI - 5 * MILLI - rounds * 2 * MILLI + rounds * MILLI
    assert bob.balance(ETH) == 10 * MILLI - rounds * MILLI
    swaps = Swap.objects.filter(channel__address=alice.channel_address).order_by("nonce")
    assert swaps.count() == 1 + rounds
    swap_nonces = {nonce for nonce, kind, _ in updates_of(alice) if kind == "swap"}
    assert swap_nonces == set(swaps.values_list("nonce", flat=True))
    after = conserved_once_credited(w3, [alice, bob], [ETH, token])
    assert after[ETH].users == before[ETH].users - rounds * 2 * MILLI  # Bob's payments stayed with users
    assert after[token].users == before[token].users + swapped_tokens - first
    for wallet in (alice, bob):
        one_state_per_nonce(wallet)


# -- the CLI ------------------------------------------------------------------------------------------


def cli(live_node: LiveNode, key: str, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    key_file = store.with_suffix(".key")
    key_file.write_text(key + "\n")
    node = ["--node", live_node.url, "--key-file", str(key_file), "--store", str(store)]
    return subprocess.run(
        [sys.executable, "-m", "connext.client.cli", *node, "--rpc", live_node.chain_url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_prints_the_rates_and_what_a_swap_gave_and_received(
    live_node, wallets, funder, token, tmp_path
):
    key = funder.new_key()
    store = tmp_path / "carol.db"
    carol = Wallet(
        Client.connect(live_node.url, key, store_path=str(store), chain_rpc_url=live_node.chain_url)
    )
    carol.deposit(10 * MILLI)
    carol.client.close()

    rates = cli(live_node, key, store, "rates")
    swap = cli(live_node, key, store, "swap", "0.004eth", "eth", token, "--max-slippage", "0.005")

    assert rates.returncode == 0, rates.stderr
    assert rates.stdout.splitlines() == [
        f"{ETH} -> {token}: 1994 per base unit, spread 30 bps, at most {100 * MILLI} per swap",
        f"{token} -> {ETH}: 0.0004985 per base unit, spread 30 bps, at most {100 * MILLI * PRICE} per swap",
    ]
    assert swap.returncode == 0, swap.stderr
    received = offered(4 * MILLI, eth_to_token=True)
    lines = swap.stdout.splitlines()
    assert lines[0] == f"swapped {4 * MILLI} of {ETH} for {received} of {token}"
    assert lines[1].startswith(f"ETH: you 0.006 eth ({6 * MILLI} wei), node ")
    assert lines[2].startswith(f"{token}: you 7.976 eth ({received} wei), node ")
    record = Swap.objects.get(user_address=carol.address)
    assert (int(record.give_amount), int(record.take_amount)) == (4 * MILLI, received)
