"""Conservation checks. On chain: everything paid out of a channel equals everything deposited into it.
Off chain (`assert_offchain_conserved`): across channels, balances plus locked amounts equal deposits
minus withdrawals, so no payment created or destroyed money on its way through the node.

On chain, both sides are counted from the chain itself, independently of the contract's own bookkeeping:
deposits are the node's `NodeDeposited` events plus plain transfers into the channel (ETH sent with no
calldata, or ERC20 `Transfer`s to it); payouts are `Withdrawn`, `ChannelDefunded`, `TransferDefunded`
and `Claimed`, minus what a refused payout left `PayoutDeferred`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from connext.chain import channel_reads
from connext.chain.contracts import contract_at
from connext.protocol.types import ChannelState

ETH = "0x0000000000000000000000000000000000000000"
_ERC20_TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


@dataclass(frozen=True)
class ChannelFlows:
    deposited: int
    paid_out: int
    held: int  # what the channel address holds now
    deferred: int  # refused payouts not claimed yet


def _events(w3: Web3, channel_address: str, name: str) -> list[dict]:
    channel = contract_at(w3, "Channel", channel_address)
    return [dict(log["args"]) for log in channel.events[name]().get_logs(from_block=0, to_block="latest")]


def _plain_eth_in(w3: Web3, channel_address: str) -> int:
    total = 0
    for number in range(int(w3.eth.block_number) + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            plain = tx["to"] == channel_address and tx["value"] and bytes(tx["input"]) == b""
            if plain and w3.eth.get_transaction_receipt(tx["hash"])["status"] == 1:
                total += int(tx["value"])
    return total


def _tokens_in(w3: Web3, channel_address: str, asset_id: str) -> int:
    logs = w3.eth.get_logs(
        {
            "address": to_checksum_address(asset_id),
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [_ERC20_TRANSFER_TOPIC, None, "0x" + "00" * 12 + channel_address[2:].lower()],  # type: ignore[list-item]
        }
    )
    return sum(int.from_bytes(bytes(log["data"]), "big") for log in logs)


def _transfer_payouts(w3: Web3, channel_address: str) -> list[tuple[str, int]]:
    """(asset, amount) of every `TransferDefunded`: the event has no asset, the `defundTransfer` call does."""
    channel = contract_at(w3, "Channel", channel_address)
    payouts = []
    for log in channel.events.TransferDefunded().get_logs(from_block=0, to_block="latest"):
        tx = w3.eth.get_transaction(log["transactionHash"])
        _, params = channel.decode_function_input(tx["input"])
        asset = to_checksum_address(params["transfer"]["assetId"])
        payouts.append((asset, log["args"]["toInitiator"] + log["args"]["toResponder"]))
    return payouts


def node_net(w3: Web3, channel_addresses: Iterable[str], node: str, asset_id: str = ETH) -> int:
    """What the channels paid the node on chain minus what the node deposited into them: 0 once they are
    paid out, when no payment through the node cost it anything."""
    asset_id = to_checksum_address(asset_id)
    net = 0
    for address in (to_checksum_address(a) for a in channel_addresses):

        def of_asset(name: str, address: str = address) -> list[dict]:
            return [e for e in _events(w3, address, name) if e.get("assetId", asset_id) == asset_id]

        net -= sum(e["amount"] for e in of_asset("NodeDeposited"))
        net += sum(e["amount"] for e in of_asset("Withdrawn") if e["recipient"] == node)
        net += sum(e["toNode"] for e in of_asset("ChannelDefunded"))
        net -= sum(e["amount"] for e in of_asset("PayoutDeferred") if e["owner"] == node)
        net += sum(e["amount"] for e in of_asset("Claimed") if e["owner"] == node)
        channel = contract_at(w3, "Channel", address)
        for log in channel.events.TransferDefunded().get_logs(from_block=0, to_block="latest"):
            _, params = channel.decode_function_input(w3.eth.get_transaction(log["transactionHash"])["input"])
            transfer = params["transfer"]
            if to_checksum_address(transfer["assetId"]) != asset_id:
                continue
            if transfer["initiator"] == node:
                net += log["args"]["toInitiator"]
            if transfer["responder"] == node:
                net += log["args"]["toResponder"]
    return net


def channel_flows(w3: Web3, channel_address: str, asset_id: str = ETH) -> ChannelFlows:
    channel_address = to_checksum_address(channel_address)
    asset_id = to_checksum_address(asset_id)

    def of_asset(name: str) -> list[dict]:
        return [e for e in _events(w3, channel_address, name) if e["assetId"] == asset_id]

    node_deposits = sum(e["amount"] for e in of_asset("NodeDeposited"))
    if asset_id == ETH:
        user_deposits = _plain_eth_in(w3, channel_address)
    else:  # node deposits arrive as token transfers too: count them once, through their event
        user_deposits = _tokens_in(w3, channel_address, asset_id) - node_deposits
    paid = sum(e["amount"] for e in of_asset("Withdrawn"))
    paid += sum(e["toNode"] + e["toUser"] for e in of_asset("ChannelDefunded"))
    paid += sum(amount for asset, amount in _transfer_payouts(w3, channel_address) if asset == asset_id)
    deferred = sum(e["amount"] for e in of_asset("PayoutDeferred"))
    claimed = sum(e["amount"] for e in of_asset("Claimed"))
    return ChannelFlows(
        deposited=node_deposits + user_deposits,
        paid_out=paid - deferred + claimed,
        held=channel_reads.asset_balance(w3, channel_address, asset_id),
        deferred=deferred - claimed,
    )


def assert_conserved(w3: Web3, channel_address: str, asset_id: str = ETH) -> ChannelFlows:
    """Everything deposited into the channel has left it, and exactly that much was paid out."""
    flows = channel_flows(w3, channel_address, asset_id)
    assert flows.held == 0, flows
    assert flows.deferred == 0, flows
    assert flows.paid_out == flows.deposited, flows
    return flows


# -- off chain: what the channels' latest states hold against what was deposited ----------------------


@dataclass(frozen=True)
class OffchainHoldings:
    """One asset across many channels' latest doubly signed states, by party, against the chain."""

    users: int  # users' balances plus what users locked in active transfers
    node: int  # the node's balances plus what the node locked
    credited: int  # processed deposits (node + user) in the states
    deposited: int  # deposit totals the channels report on chain
    withdrawn: int  # `Withdrawn` amounts on chain

    @property
    def held(self) -> int:
        return self.users + self.node


def offchain_holdings(w3: Web3, states: Iterable[ChannelState], asset_id: str = ETH) -> OffchainHoldings:
    asset_id = to_checksum_address(asset_id)
    users = node = credited = deposited = withdrawn = 0
    for state in states:
        index = state.asset_index(asset_id)
        if index is not None:
            node += state.balances[index][0]
            users += state.balances[index][1]
            credited += sum(state.processed_deposits[index])
        for transfer in state.transfers:
            if transfer.asset_id == asset_id:
                locked = sum(transfer.balance)
                if transfer.initiator == state.node:
                    node += locked
                else:
                    users += locked
        totals = channel_reads.deposit_totals(w3, state.channel_address, asset_id, block="latest")
        deposited += totals.node + totals.user
        withdrawn += sum(
            e["amount"] for e in _events(w3, state.channel_address, "Withdrawn") if e["assetId"] == asset_id
        )
    return OffchainHoldings(
        users=users, node=node, credited=credited, deposited=deposited, withdrawn=withdrawn
    )


def assert_offchain_conserved(
    w3: Web3, states: Iterable[ChannelState], asset_ids: Iterable[str] = (ETH,)
) -> dict[str, OffchainHoldings]:
    """Per asset: the channels' balances plus locked amounts equal everything deposited into them
    (all of it credited) minus everything withdrawn. Pass every channel the payments touched."""
    states = list(states)
    holdings = {}
    for asset_id in asset_ids:
        found = offchain_holdings(w3, states, asset_id)
        assert found.credited == found.deposited, found
        assert found.held == found.deposited - found.withdrawn, found
        holdings[asset_id] = found
    return holdings
