"""Hostile tokens and recipients: re-entry, refusals and lies must not drain, double-pay or block payouts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3.contract import Contract

from tests.contracts import encoding as enc
from tests.contracts.net import ETH, Net, make_transfer

E = 10**18
TIMEOUT = 3600
REVERTING_CODE = bytes.fromhex("5f5ffd")  # PUSH0 PUSH0 REVERT


@pytest.fixture
def channel(net: Net) -> Contract:
    """Node and user each hold 4 ETH, 400 good tokens and 400 evil tokens in the channel."""
    channel = net.create_channel()
    net.send(channel.functions.depositNode(ETH, 4 * E), net.node, value=4 * E)
    net.send_eth(net.user, channel.address, 4 * E)
    for token in (net.token, net.evil):
        net.send(token.functions.approve(channel.address, 400), net.node)
        net.send(channel.functions.depositNode(token.address, 400), net.node)
        net.send(token.functions.transfer(channel.address, 400), net.user)
    return channel


def withdraw_fn(net: Net, channel: Contract, asset: str, recipient: str, amount: int, nonce: int):
    c = (channel.address, asset, recipient, amount, nonce)
    digest = enc.withdraw_hash(net.chain_id, *c)
    return channel.functions.withdraw(c, net.node.sign(digest), net.user.sign(digest))


def calldata(fn) -> bytes:
    return bytes.fromhex(fn._encode_transaction_data()[2:])


def arm(net: Net, victim: str, fn, times: int = 1) -> None:
    net.send(net.evil.functions.arm(victim, calldata(fn), times), net.other)


def state_of(net: Net, channel: Contract, **fields) -> enc.ChannelState:
    values = {
        "asset_ids": (ETH, net.token.address, net.evil.address),
        "balances": ((4 * E, 4 * E), (400, 400), (400, 400)),
        "processed_deposits": ((4 * E, 4 * E), (400, 400), (400, 400)),
        "defund_nonces": (1, 1, 1),
        "timeout": TIMEOUT,
    }
    values.update(fields)
    return net.state(channel, **values)


def assert_untouched(net: Net, channel: Contract) -> None:
    """The other assets are all still there."""
    assert net.balance(ETH, channel.address) == 8 * E
    assert net.balance(net.token.address, channel.address) == 800


# ---------------------------------------------------------------- re-entry


def test_a_token_replaying_the_withdraw_from_inside_its_transfer_is_stopped(
    net: Net, channel: Contract
) -> None:
    fn = withdraw_fn(net, channel, net.evil.address, net.user.address, 100, 3)
    arm(net, channel.address, fn)
    before = net.balance(net.evil.address, net.user.address)
    net.send(fn, net.node)
    assert net.evil.functions.attacksLeft().call() == 0
    assert net.evil.functions.lastAttackSucceeded().call() is False
    assert net.revert_selector(net.evil.functions.lastAttackReturn().call()) == "ReentrancyGuardReentrantCall"
    assert net.balance(net.evil.address, net.user.address) - before == 100
    assert channel.functions.getTotalWithdrawn(net.evil.address).call() == 100
    assert_untouched(net, channel)


def test_a_token_reentering_a_node_deposit_cannot_inflate_the_total(net: Net, channel: Contract) -> None:
    evil = net.evil.address
    net.send(net.evil.functions.approve(channel.address, 10**6), net.node)
    arm(net, channel.address, channel.functions.depositNode(evil, 0))
    net.send(channel.functions.depositNode(evil, 100), net.node)
    assert net.evil.functions.lastAttackSucceeded().call() is False
    assert channel.functions.getTotalDepositsNode(evil).call() == 500
    assert net.balance(evil, channel.address) == 900


def test_a_token_reentering_defund_channel_gets_nothing_twice(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    state = state_of(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    evil = net.evil.address
    arm(net, channel.address, channel.functions.defundChannel(state.as_abi(), [evil]), times=2)
    net.send(channel.functions.defundChannel(state.as_abi(), [evil]), net.other)
    assert net.evil.functions.lastAttackSucceeded().call() is False
    assert net.balance(evil, channel.address) == 0
    assert channel.functions.getTotalWithdrawn(evil).call() == 800
    assert_untouched(net, channel)
    net.send(channel.functions.defundChannel(state.as_abi(), [ETH, net.token.address]), net.other)
    assert net.balance(ETH, channel.address) == 0


def test_a_token_reentering_defund_transfer_gets_nothing_twice(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    evil = net.evil.address
    preimage = b"\x33" * 32
    transfer = make_transfer(
        net, channel, definition="LinkedTransfer", encoded_state=enc.linked_state(enc.lock_hash(preimage)),
        initiator=net.user, responder=net.node, amount=100, create_nonce=5, asset=evil,
    )  # fmt: skip
    state = state_of(
        net, channel, balances=((4 * E, 4 * E), (400, 400), (400, 300)), merkle_root=transfer.hash()
    )
    net.dispute(channel, state)
    advance(TIMEOUT)
    net.send(channel.functions.disputeTransfer(transfer.as_abi(), []), net.other)
    fn = channel.functions.defundTransfer(
        transfer.as_abi(), transfer.encoded_state, enc.preimage_resolver(preimage), b""
    )
    arm(net, channel.address, fn)
    before = net.balance(evil, net.node.address)
    net.send(fn, net.node)
    assert net.evil.functions.lastAttackSucceeded().call() is False
    assert net.balance(evil, net.node.address) - before == 100
    assert net.balance(evil, channel.address) == 700
    assert_untouched(net, channel)


def test_an_eth_recipient_reentering_withdraw_is_stopped(net: Net, channel: Contract) -> None:
    receiver = net.deploy("ReentrantReceiver")
    fn = withdraw_fn(net, channel, ETH, receiver.address, E, 3)
    net.send(receiver.functions.arm(channel.address, calldata(fn)), net.other)
    net.send(fn, net.node)
    assert receiver.functions.attacked().call() is True
    assert receiver.functions.lastAttackSucceeded().call() is False
    assert net.balance(ETH, receiver.address) == E
    assert net.balance(ETH, channel.address) == 7 * E


# ---------------------------------------------------------------- refusals: deferred, never blocking


def test_a_token_refusing_the_user_does_not_block_the_nodes_payout(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    evil = net.evil.address
    state = state_of(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    net.send(net.evil.functions.setBlocked(net.user.address), net.other)
    node_before = net.balance(evil, net.node.address)
    receipt = net.send(
        channel.functions.defundChannel(state.as_abi(), [ETH, evil, net.token.address]), net.other
    )
    assert net.events(channel, "PayoutDeferred", receipt) == [
        {"assetId": evil, "owner": net.user.address, "amount": 400}
    ]
    assert net.balance(evil, net.node.address) - node_before == 400
    assert net.balance(ETH, channel.address) == 0
    assert net.balance(net.token.address, channel.address) == 0
    assert channel.functions.getClaimable(evil, net.user.address).call() == 400
    # the derived total is unchanged while the payout waits
    assert channel.functions.getTotalDepositsUser(evil).call() == 400
    # the blacklisted user claims to another address of theirs
    net.expect_revert(channel.functions.claim(evil, net.user.address), net.user, "Blocked")
    net.expect_revert(channel.functions.claim(evil, net.other.address), net.node, "NothingToClaim")
    net.expect_revert(channel.functions.claim(evil, channel.address), net.user, "InvalidRecipient")
    receipt = net.send(channel.functions.claim(evil, net.other.address), net.user)
    assert net.events(channel, "Claimed", receipt) == [
        {"assetId": evil, "owner": net.user.address, "recipient": net.other.address, "amount": 400}
    ]
    assert net.balance(evil, channel.address) == 0
    assert channel.functions.getTotalWithdrawn(evil).call() == 800
    net.expect_revert(channel.functions.claim(evil, net.other.address), net.user, "NothingToClaim")


def test_a_token_answering_false_defers_the_payout_until_it_pays(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    evil = net.evil.address
    state = state_of(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    net.send(net.evil.functions.setReturnFalse(True), net.other)
    net.send(channel.functions.defundChannel(state.as_abi(), [evil]), net.other)
    assert channel.functions.getClaimable(evil, net.node.address).call() == 400
    assert channel.functions.getClaimable(evil, net.user.address).call() == 400
    assert channel.functions.getTotalWithdrawn(evil).call() == 0
    net.expect_revert(channel.functions.claim(evil, net.node.address), net.node, "SafeERC20FailedOperation")
    net.send(net.evil.functions.setReturnFalse(False), net.other)
    net.send(channel.functions.claim(evil, net.node.address), net.node)
    net.send(channel.functions.claim(evil, net.user.address), net.user)
    assert net.balance(evil, channel.address) == 0
    assert_untouched(net, channel)


def test_a_user_account_refusing_eth_gets_it_later_by_claim(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    # The user's account runs code that refuses ETH (an EIP-7702 delegation to a reverting contract).
    reverter = net.deploy("ReentrantReceiver")
    net.w3.provider.make_request("anvil_setCode", [reverter.address, "0x" + REVERTING_CODE.hex()])
    delegation = "0xef0100" + reverter.address[2:].lower()
    net.w3.provider.make_request("anvil_setCode", [net.user.address, delegation])
    try:
        state = state_of(net, channel)
        net.dispute(channel, state)
        advance(TIMEOUT)
        node_before = net.net_balance(ETH, net.node.address)
        net.send(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other)
        assert net.net_balance(ETH, net.node.address) - node_before == 4 * E
        assert channel.functions.getClaimable(ETH, net.user.address).call() == 4 * E
        assert net.balance(ETH, channel.address) == 4 * E
        before = net.balance(ETH, net.other.address)
        net.send(channel.functions.claim(ETH, net.other.address), net.user)
        assert net.balance(ETH, net.other.address) - before == 4 * E
        assert net.balance(ETH, channel.address) == 0
    finally:
        net.w3.provider.make_request("anvil_setCode", [net.user.address, "0x"])
