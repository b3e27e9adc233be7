"""The node's collateral deposits on chain (services, Postgres, anvil), where ordering matters."""

from __future__ import annotations

import pytest
from django.test import Client
from eth_account import Account

from channels_app.models import Channel, OnchainTransaction
from channels_app.services import collateral, transactions
from connext.chain import channel_reads
from connext.chain.contracts import contract_at
from tests.channels_app.conftest import FUNDER_KEY, NODE_KEY
from tests.support.wallet import Wallet

pytestmark = [pytest.mark.django_db, pytest.mark.chain]
E = 10**18
Status = OnchainTransaction.Status


def mint(w3, token: str, to: str, amount: int) -> None:
    funder = Account.from_key(FUNDER_KEY)
    tx = (
        contract_at(w3, "TestToken", token)
        .functions.mint(to, amount)
        .build_transaction(
            {"from": funder.address, "nonce": w3.eth.get_transaction_count(funder.address, "pending")}
        )
    )
    tx_hash = w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1


def opened_channel(w3) -> Channel:
    wallet = Wallet(client=Client(), w3=w3)
    wallet.log_in()
    assert wallet.open().status_code in (200, 201)
    return Channel.objects.get(user_address=wallet.address)


def send_and_mine(record: OnchainTransaction) -> OnchainTransaction:
    transactions.transaction_send(transaction_id=record.pk)  # anvil mines it at once
    transactions.transactions_track_all()
    return OnchainTransaction.objects.get(pk=record.pk)


def test_token_collateral_for_two_channels_in_flight_at_once_arrives_in_both_whatever_the_order(
    w3, deployments
):
    token = deployments["TestToken"]
    mint(w3, token, Account.from_key(NODE_KEY).address, 100 * E)
    first, second = opened_channel(w3), opened_channel(w3)

    # Both deposits go through the factory (neither channel exists yet), queued before either is sent.
    collateral.collateral_request(channel_id=first.pk, asset_id=token, amount=20 * E, for_payment=True)
    collateral.collateral_request(channel_id=second.pk, asset_id=token, amount=21 * E, for_payment=True)
    deposits = {
        record.channel_address: record
        for record in OnchainTransaction.objects.filter(after__isnull=False).select_related("after")
    }
    # The order that broke exact approvals: both approvals mined first, then the deposits.
    for record in (deposits[first.address].after, deposits[second.address].after):
        assert send_and_mine(record).status == Status.MINED
    outcomes = [send_and_mine(deposits[c.address]) for c in (first, second)]

    assert [(o.status, o.error) for o in outcomes] == [(Status.MINED, ""), (Status.MINED, "")]
    assert channel_reads.deposit_totals(w3, first.address, token, block="latest").node == 20 * E
    assert channel_reads.deposit_totals(w3, second.address, token, block="latest").node == 21 * E

    # With the factory approved for good, the next token deposit through it needs no approval.
    third = opened_channel(w3)
    collateral.collateral_request(channel_id=third.pk, asset_id=token, amount=5 * E, for_payment=True)
    deposit = OnchainTransaction.objects.get(channel_address=third.address)
    assert deposit.after is None
    assert send_and_mine(deposit).status == Status.MINED
    assert channel_reads.deposit_totals(w3, third.address, token, block="latest").node == 5 * E


def test_a_collateral_deposit_on_chain_but_not_yet_marked_mined_is_not_in_flight_and_not_sent_twice(w3):
    eth = "0x" + "00" * 20
    wallet = Wallet(client=Client(), w3=w3)
    wallet.log_in()
    assert wallet.open().status_code in (200, 201)
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)  # the user's own deposit
    assert wallet.deposit_update().status_code == 200  # justifies the collateral asked for below
    channel = Channel.objects.get(user_address=wallet.address)
    first = collateral.collateral_request(channel_id=channel.pk, asset_id=eth, amount=E // 20)
    assert first is not None
    transactions.transaction_send(transaction_id=first.pk)  # mined on anvil; the tracker has not run
    assert OnchainTransaction.objects.get(pk=first.pk).status == Status.PENDING

    # On chain but not credited yet: a second request sends nothing (never a double deposit).
    assert collateral.collateral_request(channel_id=channel.pk, asset_id=eth, amount=E // 10) is None

    # Credited (the user countersigns the node's deposit update) while the record is still pending: a
    # request for more is a new deposit of the difference, not refused as one already on its way.
    collateral.node_deposit_seen(channel_address=channel.address)
    assert collateral.node_deposits_credit(channel_id=channel.pk) is True
    totals = channel_reads.deposit_totals(w3, channel.address, eth, block="latest")
    wallet.countersign_proposal(deposits={eth: (totals.node, totals.user)})
    assert OnchainTransaction.objects.get(pk=first.pk).status == Status.PENDING
    second = collateral.collateral_request(channel_id=channel.pk, asset_id=eth, amount=E // 10)
    assert second is not None
    assert int(second.value) == E // 20
