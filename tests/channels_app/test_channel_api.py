"""The channel API against Postgres and anvil: open, deposit, sync, withdraw, collateral."""

from __future__ import annotations

import urllib.parse

import pytest
from django.test import override_settings
from web3 import Web3

from channels_app import network
from channels_app.models import Channel, ChannelUpdate, OnchainTransaction, RebalanceProfile, Withdrawal
from channels_app.services import collateral, node_actions
from connext.chain import channel_reads
from tests.channels_app.conftest import FUNDER_KEY, NODE_KEY
from tests.support.node_work import run_node_work
from tests.support.outage import CuttableRelay
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db
E = 10**18


@pytest.fixture
def wallet(client, w3):
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    return wallet


def test_config_names_chain_node_contracts_assets_and_definitions(wallet, deployments):
    config = wallet.config

    assert config["chainId"] == "31337"
    assert config["nodeAddress"] == Web3().eth.account.from_key(NODE_KEY).address
    assert config["contracts"]["ChannelFactory"] == deployments["ChannelFactory"]
    assert config["supportedAssets"] == [ETH, deployments["TestToken"]]
    assert set(config["transferDefinitions"]) == {"linked", "hashlock", "signed", "withdraw"}
    assert config["disputeTimeout"] == "3600"


def test_opening_a_channel_gets_the_setup_countersigned_and_opening_again_returns_it(wallet):
    first = wallet.open()
    assert first.status_code == 201
    assert first.json()["channelAddress"] == wallet.channel_address()

    again = wallet.open()

    assert again.status_code == 200
    assert Channel.objects.count() == 1
    assert ChannelUpdate.objects.get().kind == "setup"


def test_a_setup_with_a_wrong_address_or_timeout_is_refused(wallet):
    wallet.config = {**wallet.config, "disputeTimeout": "999"}
    response = wallet.open()

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_setup"
    assert not Channel.objects.exists()


def test_a_deposit_sent_before_deployment_is_credited_exactly_as_the_chain_shows(wallet, w3):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, 3 * E)
    assert not channel_reads.is_deployed(w3, wallet.state.channel_address)

    response = wallet.deposit_update()

    assert response.status_code == 200
    assert wallet.state.balances == ((0, 3 * E),)
    assert Channel.objects.get().nonce == 2


def test_claiming_more_than_the_chain_holds_is_refused_and_changes_nothing(wallet):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)

    response = wallet.deposit_update(claim=(0, 2 * E))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "deposit_exceeds_chain"
    assert Channel.objects.get().nonce == 1


def test_a_replayed_update_gets_the_same_answer_and_a_stale_one_gets_the_latest_state(wallet):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    before = wallet.state
    first = wallet.deposit_update()
    update_body = ChannelUpdate.objects.get(nonce=2).update

    replay = wallet.post(
        "/api/channel/updates",
        {"update": update_body, "signature": ChannelUpdate.objects.get(nonce=2).user_signature},
    )
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    wallet.state = before  # a client that missed the answer builds on nonce 1 again
    stale = wallet.deposit_update()

    assert replay.status_code == 200
    assert replay.json()["nodeSignature"] == first.json()["nodeSignature"]
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_nonce"
    assert stale.json()["error"]["latest"]["state"]["nonce"] == "2"
    assert Channel.objects.get().nonce == 2


def test_another_users_channel_cannot_be_updated_or_read(wallet, client, w3):
    wallet.open()
    intruder = Wallet(client=client, w3=w3)
    intruder.log_in()

    response = intruder.post(
        "/api/channel/updates",
        {
            "update": {
                "type": "deposit",
                "channelAddress": wallet.state.channel_address,
                "nonce": "2",
                "initiator": intruder.address,
                "assetId": ETH,
                "totalDepositsNode": "0",
                "totalDepositsUser": "0",
            },
            "signature": "0x" + "11" * 65,
        },
    )
    posing = intruder.post(
        "/api/channel/updates",
        {"update": {**ChannelUpdate.objects.get().update, "type": "deposit"}, "signature": "0x" + "11" * 65},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_your_channel"
    assert posing.status_code in (400, 403)
    assert intruder.get("/api/channel").status_code == 404
    assert Channel.objects.get().nonce == 1


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda body: body["update"].update(nonce="-1"), "malformed_update"),
        (lambda body: body["update"].update(totalDepositsUser=str(2**256)), "malformed_update"),
        (lambda body: body["update"].update(assetId="0x1234"), "malformed_update"),
        (lambda body: body.update(signature="0x" + "00" * 65), "bad_signature"),
    ],
)
def test_malformed_updates_are_refused_with_their_code(wallet, mutate, code):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    body = {
        "update": {
            "type": "deposit",
            "channelAddress": wallet.state.channel_address,
            "nonce": "2",
            "initiator": wallet.address,
            "assetId": ETH,
            "totalDepositsNode": "0",
            "totalDepositsUser": str(E),
        },
        "signature": "0x" + "11" * 65,
    }
    mutate(body)

    response = wallet.post("/api/channel/updates", body)

    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code
    assert Channel.objects.get().nonce == 1


def test_a_withdrawal_deploys_the_channel_and_pays_the_recipient_with_the_node_paying_gas(wallet, w3):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, 2 * E)
    wallet.deposit_update()
    recipient = Web3().eth.account.create().address

    response = wallet.withdraw_update(E // 2, recipient)
    assert response.status_code == 200
    node_actions.channel_reconcile(channel_id=Channel.objects.get().pk)
    wallet.countersign_proposal()
    run_node_work()

    withdrawal = Withdrawal.objects.get()
    assert withdrawal.status == Withdrawal.Status.CONFIRMED
    assert w3.eth.get_balance(recipient) == E // 2
    assert channel_reads.is_deployed(w3, wallet.state.channel_address)
    reasons = sorted(OnchainTransaction.objects.values_list("reason", flat=True))
    # the node also tops up its (empty) side once the channel holds ETH
    assert reasons == ["channel_deploy", "collateralization", "user_withdrawal"]
    assert wallet.state.balances == ((0, 3 * E // 2),)
    node_deposit = channel_reads.deposit_totals(w3, wallet.state.channel_address, ETH, block="latest").node
    assert w3.eth.get_balance(wallet.state.channel_address) == 3 * E // 2 + node_deposit


def test_requested_collateral_is_deposited_and_credited_through_a_node_proposal(wallet, w3):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    wallet.deposit_update()  # the user's own balance is what justifies the node's collateral

    response = wallet.post("/api/channel/collateral", {"assetId": ETH})
    assert response.status_code == 202
    run_node_work()
    totals = channel_reads.deposit_totals(w3, wallet.state.channel_address, ETH, block="latest")
    update, _ = wallet.countersign_proposal(deposits={ETH: (totals.node, totals.user)})

    target = collateral.rebalance_profile(Channel.objects.get(), ETH)[1]
    assert update.total_deposits_node == target
    assert wallet.state.balances == ((target, E),)
    assert wallet.post("/api/channel/collateral", {"assetId": ETH}).json()["requested"] is False


def test_collateral_into_a_disputed_channel_is_refused(wallet):
    wallet.open()
    Channel.objects.filter(address=wallet.state.channel_address).update(status=Channel.Status.DISPUTED)

    response = wallet.post("/api/channel/collateral", {"assetId": ETH})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "channel_not_open"
    assert not OnchainTransaction.objects.exists()


def test_collateral_above_the_reclaim_threshold_is_refused(wallet):
    wallet.open()

    response = wallet.post("/api/channel/collateral", {"assetId": ETH, "amount": str(10**30)})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "collateral_limit"
    assert not OnchainTransaction.objects.exists()


def test_collateral_above_the_reclaim_threshold_goes_back_to_the_node_through_a_withdrawal(wallet, w3):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    wallet.deposit_update()
    wallet.post("/api/channel/collateral", {"assetId": ETH})
    run_node_work()
    totals = channel_reads.deposit_totals(w3, wallet.state.channel_address, ETH, block="latest")
    wallet.countersign_proposal(deposits={ETH: (totals.node, totals.user)})
    channel = Channel.objects.get()
    RebalanceProfile.objects.create(
        channel=channel,
        asset_id=ETH,
        collateralize_threshold=0,
        target=2 * 10**16,
        reclaim_threshold=5 * 10**16,
    )
    node_before = w3.eth.get_balance(channel.node_address)

    node_actions.channel_reconcile(channel_id=channel.pk)
    update, _ = wallet.countersign_proposal()  # the node's withdraw transfer of the excess
    response = wallet.resolve_node_withdraw()
    run_node_work()

    excess = 10**17 - 2 * 10**16
    assert update.amount == excess
    assert response.status_code == 200
    assert wallet.state.balances == ((2 * 10**16, E),)
    withdrawal = Withdrawal.objects.get()
    assert withdrawal.status == Withdrawal.Status.CONFIRMED
    assert withdrawal.recipient == channel.node_address
    gas_paid = sum(
        tx.gas_used * w3.eth.get_transaction_receipt(tx.hash)["effectiveGasPrice"]
        for tx in OnchainTransaction.objects.filter(status="mined").exclude(reason="collateralization")
    )
    assert w3.eth.get_balance(channel.node_address) == node_before + excess - gas_paid


def test_a_deposit_of_an_asset_the_node_does_not_serve_is_refused_before_any_chain_read(wallet):
    """Once the channel is deployed, the contract's totals of a random address revert (it calls that
    address's balanceOf): the read failed and the node answered 500."""
    wallet.open()

    stranger = Web3.to_checksum_address("0x65eeab8cda3f3de2375d907ecac432f85aa6bf45")  # not a token
    response = wallet.deposit_update(stranger, claim=(0, 1))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_asset"
    assert Channel.objects.get().nonce == wallet.state.nonce


def test_a_deposit_the_node_cannot_check_on_chain_is_refused_as_unavailable_and_changes_nothing(
    wallet, anvil_url
):
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    anvil = urllib.parse.urlsplit(anvil_url)

    with CuttableRelay((anvil.hostname, anvil.port)) as relay, override_settings(CHAIN_RPC_URL=relay.url):
        assert network.network().assets  # the node reached the chain through the relay once
        relay.cut()  # then the chain's RPC went away
        response = wallet.deposit_update()  # (the wallet reads the chain on its own connection)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "chain_unavailable"
    assert Channel.objects.get().nonce == 1
    assert wallet.deposit_update().status_code == 200  # with the chain back, the same deposit goes in


def test_a_collateral_request_the_node_cannot_check_on_chain_is_refused_as_unavailable(wallet, anvil_url):
    """Chain reads fail the same way on every endpoint: a 503 at the API's edge, not a 500."""
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    wallet.deposit_update()  # a balance that justifies collateral: the request gets to its chain reads
    anvil = urllib.parse.urlsplit(anvil_url)

    with CuttableRelay((anvil.hostname, anvil.port)) as relay, override_settings(CHAIN_RPC_URL=relay.url):
        assert network.network().assets
        relay.cut()
        response = wallet.post("/api/channel/collateral", {"assetId": ETH})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "chain_unavailable"
    assert not OnchainTransaction.objects.exists()
