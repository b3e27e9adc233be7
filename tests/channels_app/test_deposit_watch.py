"""The deposit watch over many channels: every channel's totals read in a few batched RPC requests."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from eth_account import Account

from channels_app import chain, realtime
from channels_app.models import Channel
from channels_app.services import watcher
from tests.channels_app.conftest import FUNDER_KEY
from tests.channels_app.test_collateral import mint
from tests.support.wallet import ETH, Wallet

pytestmark = [pytest.mark.django_db, pytest.mark.chain]
E = 10**18


def pay(w3, to: str, value: int) -> None:
    funder = Account.from_key(FUNDER_KEY)
    signed = funder.sign_transaction(
        {
            "chainId": 31337,
            "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
            "to": to,
            "value": value,
            "gas": 21_000,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 1,
        }
    )
    assert w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))["status"]


@pytest.fixture
def rpc_requests(w3, monkeypatch):
    """The calls per HTTP request the node's own web3 makes (a batch is one request). A fresh web3:
    one already used has composed its middleware with the provider's method as it was then."""
    chain._web3_for.cache_clear()
    provider = chain.web3().provider
    requests: list[int] = []
    make_request, make_batch_request = provider.make_request, provider.make_batch_request

    def one(method, params):
        requests.append(1)
        return make_request(method, params)

    def batch(calls):
        requests.append(len(calls))
        return make_batch_request(calls)

    monkeypatch.setattr(provider, "make_request", one)
    monkeypatch.setattr(provider, "make_batch_request", batch)
    yield requests
    chain._web3_for.cache_clear()


def test_the_watch_reads_every_channel_in_two_batches_and_tells_each_depositor_once(
    w3, deployments, rpc_requests, monkeypatch
):
    token = deployments["TestToken"]
    wallets = [Wallet(client=Client(), w3=w3) for _ in range(8)]
    for wallet in wallets:
        wallet.log_in()
        assert wallet.open().status_code in (200, 201)
    channels = {c.user_address: c.address for c in Channel.objects.all()}
    for index, wallet in enumerate(wallets[:3]):
        pay(w3, channels[wallet.address], (index + 1) * E)
    mint(w3, token, channels[wallets[5].address], 7 * E)
    told = []
    push = realtime.push_event_now
    monkeypatch.setattr(
        realtime,
        "push_event_now",
        lambda group, event, payload: (told.append(payload), push(group, event, payload)),
    )
    cache.clear()
    rpc_requests.clear()

    with override_settings(CHAIN_RPC_BATCH_SIZE=100):
        assert watcher.deposits_watch() == []  # the node deposited nowhere

    # Block number, the block's hash, then one batch for the code of 8 channels and the token and
    # one for the 16 balances: not three requests per channel and asset.
    assert len(rpc_requests) == 4
    assert sorted(rpc_requests[2:]) == [9, 16]
    assert sorted((p["channelAddress"], p["assetId"], p["totalDepositsUser"]) for p in told) == sorted(
        [(channels[w.address], ETH, str((i + 1) * E)) for i, w in enumerate(wallets[:3])]
        + [(channels[wallets[5].address], token, str(7 * E))]
    )

    told.clear()
    rpc_requests.clear()
    watcher.deposits_watch()  # the same block again: nothing read twice, nobody told twice
    assert rpc_requests == [1, 1]
    assert told == []
