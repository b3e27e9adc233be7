"""Channel totals read from the chain, deployed or not, and below a token's deployment block."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from connext.chain import channel_reads, devchain
from connext.chain.artifacts import load_artifact
from connext.chain.contracts import contract_at

ETH = channel_reads.ETH


def deploy_token(w3: Web3) -> str:
    deployer = Account.from_key(devchain.DEV_PRIVATE_KEYS[7])
    artifact = load_artifact("TestToken")
    constructor = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor("T", "T")
    tx = constructor.build_transaction(
        {"from": deployer.address, "nonce": w3.eth.get_transaction_count(deployer.address)}
    )
    signed = deployer.sign_transaction(tx)
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))[
        "contractAddress"
    ]


def test_an_undeployed_channel_credits_everything_it_holds_to_the_user(chain):
    w3 = Web3(HTTPProvider(chain))
    channel = Account.create().address
    w3.provider.make_request("anvil_setBalance", [channel, hex(3 * 10**18)])

    totals = channel_reads.deposit_totals(w3, channel, ETH, block="latest")

    assert totals == channel_reads.DepositTotals(node=0, user=3 * 10**18)
    assert not channel_reads.is_deployed(w3, channel)


def test_a_token_read_below_its_deployment_block_holds_nothing(chain):
    w3 = Web3(HTTPProvider(chain))
    before = w3.eth.block_number
    token = deploy_token(w3)

    assert channel_reads.asset_balance(w3, Account.create().address, token, block=before) == 0
    assert channel_reads.deposit_totals(w3, Account.create().address, token, block=before).user == 0


def test_confirmed_block_stays_the_depth_below_the_head(chain):
    w3 = Web3(HTTPProvider(chain))
    devchain.rpc_call(chain, "evm_mine")

    assert channel_reads.confirmed_block(w3, 1) == w3.eth.block_number - 1
    assert channel_reads.confirmed_block(w3, 10**6) == 0


def _send(w3: Web3, key_index: int, fn, value: int = 0) -> None:
    sender = Account.from_key(devchain.DEV_PRIVATE_KEYS[key_index])
    tx = fn.build_transaction(
        {"from": sender.address, "value": value, "nonce": w3.eth.get_transaction_count(sender.address)}
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    )
    assert receipt["status"] == 1


class CountingProvider(HTTPProvider):
    """An HTTP provider that counts the HTTP requests it makes (a batch is one)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.requests: list[int] = []  # calls per HTTP request

    def make_request(self, method, params):
        self.requests.append(1)
        return super().make_request(method, params)

    def make_batch_request(self, requests):
        self.requests.append(len(requests))
        return super().make_batch_request(requests)


def test_many_channels_are_read_in_two_batched_rounds_and_agree_with_reads_one_by_one(chain, deployments):
    counting = CountingProvider(chain)
    w3 = Web3(counting)
    node = Account.from_key(devchain.DEV_PRIVATE_KEYS[0]).address
    factory = contract_at(w3, "ChannelFactory", deployments["ChannelFactory"])
    token = contract_at(w3, "TestToken", deployments["TestToken"])
    users = [Account.create().address for _ in range(12)]
    channels = [factory.functions.getChannelAddress(node, user).call() for user in users]
    # Four channels deployed with a node deposit of ETH, then paid into by their users; the rest not
    # deployed, holding what users sent to the address.
    for index, (user, channel) in enumerate(zip(users, channels, strict=True)):
        if index < 4:
            _send(
                w3,
                0,
                factory.functions.createChannelAndDepositNode(user, ETH, 10**15 * (index + 1)),
                10**15 * (index + 1),
            )
        w3.provider.make_request(
            "anvil_setBalance", [channel, hex(w3.eth.get_balance(channel) + 10**16 * index)]
        )
        _send(w3, 0, token.functions.mint(channel, 10**18 * index))
    pairs = [(channel, asset) for channel in channels for asset in (ETH, token.address)]
    block = w3.eth.block_number
    counting.requests.clear()

    batched = channel_reads.deposit_totals_many(w3, pairs, block=block, batch_size=100)

    assert counting.requests == [12 + 1, 4 * 2 * 2 + 8 * 2]  # codes of channels and token; the totals
    one_by_one = {pair: channel_reads.deposit_totals(w3, *pair, block=block) for pair in pairs}
    assert batched == one_by_one
    assert batched[(channels[2], ETH)] == channel_reads.DepositTotals(node=3 * 10**15, user=2 * 10**16)
    assert batched[(channels[7], ETH)] == channel_reads.DepositTotals(node=0, user=7 * 10**16)
    assert batched[(channels[5], token.address)] == channel_reads.DepositTotals(node=0, user=5 * 10**18)
    counting.requests.clear()
    assert channel_reads.deposit_totals_many(w3, pairs, block=block, batch_size=7) == batched
    assert max(counting.requests) == 7
    counting.requests.clear()
    assert channel_reads.deposit_totals_many(w3, pairs, block=block, batch_size=1) == batched
    assert set(counting.requests) == {1}  # for providers that refuse batches


def test_a_read_the_chain_refuses_is_an_error_naming_it(chain, deployments):
    w3 = Web3(HTTPProvider(chain))
    not_a_channel = deployments["TestToken"]  # has code, but no totals to ask for: the call reverts

    with pytest.raises(channel_reads.ChainReadError, match="eth_call"):
        channel_reads.deposit_totals_many(w3, [(not_a_channel, ETH)], block=w3.eth.block_number)


def test_totals_asked_for_latest_read_one_block_even_when_a_new_one_lands(chain):
    w3 = Web3(HTTPProvider(chain))
    channel = Account.create().address
    w3.provider.make_request("anvil_setBalance", [channel, hex(10**18)])
    real_make_request = w3.provider.make_request
    blocks_read = []

    def read_then_mine(method, params):
        answer = real_make_request(method, params)
        if method == "eth_getCode":
            blocks_read.append(params[1])
            funder = Account.from_key(devchain.DEV_PRIVATE_KEYS[8])
            signed = funder.sign_transaction(
                {
                    "chainId": 31337,
                    "nonce": w3.eth.get_transaction_count(funder.address),
                    "to": channel,
                    "value": 4 * 10**18,
                    "gas": 21_000,
                    "maxFeePerGas": 10**11,
                    "maxPriorityFeePerGas": 1,
                }
            )
            w3.eth.wait_for_transaction_receipt(
                w3.eth.send_raw_transaction(signed.raw_transaction)
            )  # a new block
        return answer

    w3.provider.make_request = read_then_mine

    totals = channel_reads.deposit_totals(w3, channel, ETH, block="latest")

    assert blocks_read[0] != "latest"
    assert totals.user == 10**18
