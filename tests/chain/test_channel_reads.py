"""Channel totals read from the chain, deployed or not, and below a token's deployment block."""

from __future__ import annotations

from eth_account import Account
from web3 import HTTPProvider, Web3

from connext.chain import channel_reads, devchain
from connext.chain.artifacts import load_artifact

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


def test_totals_asked_for_latest_read_one_block_even_when_a_new_one_lands(chain, monkeypatch):
    w3 = Web3(HTTPProvider(chain))
    channel = Account.create().address
    w3.provider.make_request("anvil_setBalance", [channel, hex(10**18)])
    real_get_code = w3.eth.get_code
    blocks_read = []

    def get_code_then_mine(address, block_identifier="latest"):
        blocks_read.append(block_identifier)
        code = real_get_code(address, block_identifier=block_identifier)
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
        return code

    monkeypatch.setattr(w3.eth, "get_code", get_code_then_mine)

    totals = channel_reads.deposit_totals(w3, channel, ETH, block="latest")

    assert isinstance(blocks_read[0], int)
    assert totals.user == 10**18
