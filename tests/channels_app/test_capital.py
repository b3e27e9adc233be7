"""What one account can make the node spend (Postgres, anvil, the node driven in-process): the capital
it locks as collateral and the gas it pays for withdrawals. Each attack is refused with its code and
changes nothing; the honest paths still work. docs/protocol.md, "The node's capital and gas"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from eth_account import Account

from channels_app.models import Channel, ChannelUpdate, OnchainTransaction, Payment, Transfer, Withdrawal
from channels_app.services import capital, collateral
from connext.chain import channel_reads
from tests.channels_app.conftest import FUNDER_KEY, NODE_KEY
from tests.support.node_work import run_node_work
from tests.support.wallet import ETH, Wallet

pytestmark = [pytest.mark.django_db, pytest.mark.chain]
E = 10**18
MILLI = 10**15
NODE = Account.from_key(NODE_KEY).address
RECLAIM_THRESHOLD = 5 * 10**17  # the default profile's: a request for exactly this was never reclaimed


def new_wallet(w3, *, deposit: int = 0) -> Wallet:
    wallet = Wallet(client=Client(), w3=w3)
    wallet.log_in()
    assert wallet.open().status_code == 201
    if deposit:
        wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, deposit)
        assert wallet.deposit_update().status_code == 200
    return wallet


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused request must leave as it was."""

    node_nonce: int
    node_balance: int
    transactions: int
    updates: int
    transfers: int
    channels: tuple[tuple[str, int, str, bool], ...]
    chain_balances: tuple[int, ...]


def snapshot(w3, *wallets: Wallet) -> Snapshot:
    return Snapshot(
        node_nonce=w3.eth.get_transaction_count(NODE, "pending"),
        node_balance=w3.eth.get_balance(NODE),
        transactions=OnchainTransaction.objects.count(),
        updates=ChannelUpdate.objects.count(),
        transfers=Transfer.objects.count(),
        channels=tuple(
            Channel.objects.order_by("pk").values_list("address", "nonce", "node_signature", "deployed")
        ),
        chain_balances=tuple(w3.eth.get_balance(w.state.channel_address) for w in wallets),
    )


def node_deposited(w3, wallet: Wallet) -> int:
    return channel_reads.deposit_totals(w3, wallet.state.channel_address, ETH, block="latest").node


def ask(wallet: Wallet, amount: int | None = None):
    body = {"assetId": ETH} | ({} if amount is None else {"amount": str(amount)})
    return wallet.post("/api/channel/collateral", body)


# -- collateral: the node's capital ------------------------------------------------------------------


def test_a_fresh_account_asking_for_collateral_is_refused_and_the_node_sends_no_transaction(w3):
    wallet = new_wallet(w3)
    before = snapshot(w3, wallet)

    answers = [ask(wallet), ask(wallet, RECLAIM_THRESHOLD), ask(wallet, MILLI)]
    run_node_work(wallet)  # nor does the node's own rebalancing deposit anything later

    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (400, "collateral_not_justified")
    ] * 3
    assert all(a.json()["error"]["justified"] == "0" for a in answers)
    assert snapshot(w3, wallet) == before
    assert node_deposited(w3, wallet) == 0
    assert not channel_reads.is_deployed(w3, wallet.state.channel_address)


def test_three_fresh_accounts_cannot_lock_more_than_the_per_account_bound_in_total(w3):
    """The attack of the issue: three accounts that bring nothing each ask for the reclaim threshold
    (0.5 ETH, never reclaimed), which locked 1.5 ETH of the node's plus three deployments' gas."""
    accounts = [new_wallet(w3) for _ in range(3)]
    node_before = w3.eth.get_balance(NODE)

    for wallet in accounts:
        ask(wallet, RECLAIM_THRESHOLD)
        ask(wallet)
    run_node_work(*accounts)

    locked = sum(node_deposited(w3, wallet) for wallet in accounts)
    assert locked <= collateral_bound()  # in fact nothing: none of them justifies any
    assert locked == 0
    assert w3.eth.get_balance(NODE) == node_before
    assert not OnchainTransaction.objects.exists()


def collateral_bound() -> int:
    from django.conf import settings

    return int(settings.COLLATERAL_MAX_PER_ACCOUNT["eth"])


def test_an_account_gets_collateral_up_to_its_own_balance_and_never_above_the_per_account_bound(w3):
    small = new_wallet(w3, deposit=30 * MILLI)  # below the profile's target (0.1 ETH)
    large = new_wallet(w3, deposit=2 * E)

    refused = ask(small, 50 * MILLI)
    asked = ask(small)  # without an amount: the target, cut down to what the account justifies
    with override_settings(COLLATERAL_MAX_PER_ACCOUNT={"eth": 40 * MILLI, "token": 0}):
        over_the_bound = ask(large, 50 * MILLI)
        bounded = ask(large)
        run_node_work(small, large)

    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "collateral_not_justified")
    assert refused.json()["error"]["justified"] == str(30 * MILLI)
    assert over_the_bound.json()["error"] == {
        "code": "collateral_not_justified",
        "message": over_the_bound.json()["error"]["message"],
        "justified": str(40 * MILLI),
    }
    assert asked.status_code == bounded.status_code == 202
    assert node_deposited(w3, small) == 30 * MILLI
    assert node_deposited(w3, large) == 40 * MILLI
    assert small.state.balances == ((30 * MILLI, 30 * MILLI),)
    assert large.state.balances == ((40 * MILLI, 2 * E),)


def test_a_request_that_would_move_less_than_the_least_on_chain_amount_is_refused(w3):
    wallet = new_wallet(w3, deposit=20 * MILLI + 1)
    assert ask(wallet, 20 * MILLI).status_code == 202
    run_node_work(wallet)
    before = snapshot(w3, wallet)

    dust = ask(wallet, 20 * MILLI + 1)  # justified, but a transaction for one wei

    assert (dust.status_code, dust.json()["error"]["code"]) == (400, "collateral_too_small")
    assert dust.json()["error"]["minimum"] == str(MILLI)
    assert snapshot(w3, wallet) == before


def test_a_payment_waiting_for_collateral_gets_exactly_what_it_needs_and_completes(w3):
    alice = new_wallet(w3, deposit=E)
    bob = new_wallet(w3)  # a fresh receiver: nothing of his own justifies collateral beyond the payment
    run_node_work(alice, bob)

    response, payment_id, preimage = alice.pay(bob.address, 20 * MILLI)
    assert response.status_code == 200
    run_node_work(alice, bob)
    (for_the_payment,) = collateral_deposits(bob)
    assert bob.resolve_incoming(payment_id, preimage).status_code == 200
    run_node_work(alice, bob)

    assert for_the_payment == 20 * MILLI  # just in time, exactly the payment
    assert Payment.objects.get(payment_id=payment_id).status == Payment.Status.COMPLETED
    # Having been paid 0.02, Bob justifies as much room for the next payment: the node tops up to it.
    assert collateral_deposits(bob) == [20 * MILLI, 20 * MILLI]
    assert bob.state.balances == ((20 * MILLI, 20 * MILLI),)


def collateral_deposits(wallet: Wallet) -> list[int]:
    return [
        int(value)
        for value in OnchainTransaction.objects.filter(
            reason=OnchainTransaction.Reason.COLLATERALIZATION, channel_address=wallet.state.channel_address
        )
        .order_by("pk")
        .values_list("value", flat=True)
    ]


def test_idle_collateral_above_what_the_accounts_activity_justifies_is_reclaimed_after_the_idle_time(w3):
    """The cycle the idle rule closes: deposit, take collateral matched to it, withdraw the deposit.
    Without the rule the node's collateral stays locked in the channel for good."""
    bob = new_wallet(w3, deposit=50 * MILLI)
    assert ask(bob).status_code == 202  # justified by his own 0.05
    run_node_work(bob)
    assert bob.state.balances == ((50 * MILLI, 50 * MILLI),)
    assert bob.withdraw_update(50 * MILLI, bob.address).status_code == 200
    run_node_work(bob)
    assert bob.state.balances == ((50 * MILLI, 0),)
    channel = Channel.objects.get(user_address=bob.address)
    idle = timedelta(seconds=3600)
    node_before = w3.eth.get_balance(NODE)

    with override_settings(COLLATERAL_IDLE_SECONDS=3600):
        too_soon = collateral.collateral_reclaim_idle(channel_id=channel.pk, now=timezone.now() + idle / 2)
        assert Channel.objects.get(pk=channel.pk).pending_update is None
        later = collateral.collateral_reclaim_idle(channel_id=channel.pk, now=timezone.now() + idle * 1.01)
    update, _ = bob.countersign_proposal()  # the node's withdraw transfer of the idle collateral
    assert bob.resolve_node_withdraw().status_code == 200
    run_node_work(bob)

    assert (too_soon, later) == (False, True)
    assert update.amount == 50 * MILLI
    assert bob.state.balances == ((0, 0),)
    reclaim = Withdrawal.objects.get(recipient=NODE)
    assert reclaim.status == Withdrawal.Status.CONFIRMED
    gas = (
        reclaim.onchain_transaction.gas_used
        * w3.eth.get_transaction_receipt(reclaim.onchain_transaction.hash)["effectiveGasPrice"]
    )
    assert w3.eth.get_balance(NODE) == node_before + 50 * MILLI - gas


def test_collateral_a_receivers_recent_payments_justify_is_not_reclaimed_while_it_is_not_idle(w3):
    alice = new_wallet(w3, deposit=E)
    bob = new_wallet(w3)
    for amount in (20 * MILLI, 10 * MILLI):
        _, payment_id, preimage = alice.pay(bob.address, amount)
        run_node_work(alice, bob)
        assert bob.resolve_incoming(payment_id, preimage).status_code == 200
        run_node_work(alice, bob)
    channel = Channel.objects.get(user_address=bob.address)
    assert bob.state.balances == ((30 * MILLI, 30 * MILLI),)  # topped up to what he received lately

    assert collateral.collateral_reclaim_idle(channel_id=channel.pk, now=timezone.now()) is False
    # Days later his own 0.03 still justifies the node's 0.03: nothing is idle above it.
    assert (
        collateral.collateral_reclaim_idle(channel_id=channel.pk, now=timezone.now() + timedelta(days=2))
        is False
    )
    assert Channel.objects.get(pk=channel.pk).pending_update is None


# -- withdrawals: the node's gas -------------------------------------------------------------------------


def test_five_one_wei_withdrawals_are_refused_and_the_node_sends_no_transaction(w3):
    wallet = new_wallet(w3, deposit=E)
    run_node_work(wallet)
    before = snapshot(w3, wallet)

    answers = [wallet.withdraw_update(1, wallet.address) for _ in range(5)]
    run_node_work(wallet)

    assert {(a.status_code, a.json()["error"]["code"]) for a in answers} == {(400, "withdrawal_too_small")}
    assert answers[0].json()["error"]["minimum"] == str(MILLI)
    assert snapshot(w3, wallet) == before
    assert not Withdrawal.objects.exists()


def test_withdrawals_beyond_the_hourly_rate_are_refused_and_change_nothing_and_pass_an_hour_later(w3):
    wallet = new_wallet(w3, deposit=E)
    run_node_work(wallet)
    recipient = Account.create().address

    with override_settings(WITHDRAWAL_MAX_PER_HOUR=2):
        accepted = [wallet.withdraw_update(10 * MILLI, recipient) for _ in range(2)]
        run_node_work(wallet)
        before = snapshot(w3, wallet)
        refused = wallet.withdraw_update(10 * MILLI, recipient)
        run_node_work(wallet)
        after = snapshot(w3, wallet)
        channel = Channel.objects.get(user_address=wallet.address)
        capital.withdrawal_check(
            channel=channel,
            asset_id=ETH,
            amount=10 * MILLI,
            now=timezone.now() + timedelta(hours=1, seconds=1),
        )  # passes: the hour has gone by

    assert [a.status_code for a in accepted] == [200, 200]
    assert w3.eth.get_balance(recipient) == 20 * MILLI  # the honest withdrawals arrived
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "withdrawal_rate_limited")
    assert 0 < int(refused.json()["error"]["retryAfter"]) <= 3601
    assert after == before


@override_settings(COLLATERAL_MAX_PER_ACCOUNT={"eth": 0, "token": 0})  # the withdrawal deploys the channel
def test_withdrawals_over_the_daily_gas_budget_are_refused_and_change_nothing(w3):
    wallet = new_wallet(w3, deposit=E)
    run_node_work(wallet)
    recipient = Account.create().address

    # The budget covers one first withdrawal (deployment included) but not a second one as well.
    with override_settings(WITHDRAWAL_GAS_PER_DAY=250_000):
        first = wallet.withdraw_update(10 * MILLI, recipient)
        run_node_work(wallet)
        before = snapshot(w3, wallet)
        second = wallet.withdraw_update(10 * MILLI, recipient)
        run_node_work(wallet)
        after = snapshot(w3, wallet)
        channel = Channel.objects.get(user_address=wallet.address)
        capital.withdrawal_check(
            channel=channel,
            asset_id=ETH,
            amount=10 * MILLI,
            now=timezone.now() + timedelta(days=1, seconds=1),
        )  # passes: a day later the budget is whole again

    spent = sum(
        tx.gas_used
        for tx in OnchainTransaction.objects.filter(
            channel_address=wallet.state.channel_address,
            reason__in=[OnchainTransaction.Reason.CHANNEL_DEPLOY, OnchainTransaction.Reason.USER_WITHDRAWAL],
        )
    )
    assert first.status_code == 200
    assert w3.eth.get_balance(recipient) == 10 * MILLI
    assert (second.status_code, second.json()["error"]["code"]) == (429, "withdrawal_gas_limit")
    assert second.json()["error"]["gasSpent"] == str(spent)  # the node's own transactions, counted
    assert after == before


def test_withdrawals_in_flight_count_against_the_gas_budget_before_they_are_sent(w3):
    """Two withdrawals created before the node sends either: the second counts the first's reservation."""
    wallet = new_wallet(w3, deposit=E)
    run_node_work(wallet)  # the node's collateral deploys the channel: each withdrawal needs 120,000

    with override_settings(WITHDRAWAL_GAS_PER_DAY=230_000):
        first = wallet.withdraw_update(10 * MILLI, wallet.address)  # the node has not resolved it yet
        second = wallet.withdraw_update(10 * MILLI, wallet.address)

    assert first.status_code == 200
    assert (second.status_code, second.json()["error"]["code"]) == (429, "withdrawal_gas_limit")
    assert Transfer.objects.filter(kind="withdraw").count() == 1
