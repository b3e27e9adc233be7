"""`disputeChannel` and `defundChannel`: phases, replacement by newer states, payouts, defund nonces."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3.contract import Contract

from tests.contracts import encoding as enc
from tests.contracts.net import ETH, Net

E = 10**18
TIMEOUT = 3600


@pytest.fixture
def channel(net: Net) -> Contract:
    """Node deposited 4 ETH + 400 tokens, user 6 ETH + 600 tokens."""
    channel = net.create_channel()
    net.send(channel.functions.depositNode(ETH, 4 * E), net.node, value=4 * E)
    net.send(net.token.functions.approve(channel.address, 400), net.node)
    net.send(channel.functions.depositNode(net.token.address, 400), net.node)
    net.send_eth(net.user, channel.address, 6 * E)
    net.send(net.token.functions.transfer(channel.address, 600), net.user)
    return channel


def two_asset_state(net: Net, channel: Contract, **fields) -> enc.ChannelState:
    values = {
        "asset_ids": (ETH, net.token.address),
        "balances": ((3 * E, 7 * E), (500, 500)),
        "processed_deposits": ((4 * E, 6 * E), (400, 600)),
        "defund_nonces": (1, 1),
        "timeout": TIMEOUT,
        "nonce": 5,
    }
    values.update(fields)
    return net.state(channel, **values)


# ---------------------------------------------------------------- disputeChannel


def test_dispute_records_the_state_hash_and_the_windows(net: Net, channel: Contract) -> None:
    state = two_asset_state(net, channel, merkle_root=b"\x01" * 32)
    receipt = net.dispute(channel, state, net.user)
    now = net.now()
    stored = channel.functions.getDispute().call()
    assert stored == (state.hash(), b"\x01" * 32, 5, now + TIMEOUT, now + 2 * TIMEOUT)
    (event,) = net.events(channel, "ChannelDisputed", receipt)
    assert event["disputer"] == net.user.address
    assert event["nonce"] == 5
    assert event["consensusExpiry"] == now + TIMEOUT


def test_a_newer_state_replaces_the_disputed_one_inside_the_window(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    net.dispute(channel, two_asset_state(net, channel, nonce=5))
    expiries = channel.functions.getDispute().call()[3:]
    advance(TIMEOUT - 100)
    newer = two_asset_state(net, channel, nonce=8, balances=((2 * E, 8 * E), (500, 500)))
    net.dispute(channel, newer)
    stored = channel.functions.getDispute().call()
    assert stored[0] == newer.hash()
    assert stored[2] == 8
    assert stored[3:] == expiries  # replacing does not extend the window


def test_a_stale_or_equal_nonce_cannot_replace_the_disputed_state(net: Net, channel: Contract) -> None:
    net.dispute(channel, two_asset_state(net, channel, nonce=5))
    for nonce in (4, 5):
        state = two_asset_state(net, channel, nonce=nonce, balances=((E, 9 * E), (500, 500)))
        fn = channel.functions.disputeChannel(state.as_abi(), *net.sign_state(state))
        net.expect_revert(fn, net.other, "StaleNonce")


def test_no_dispute_after_the_consensus_window_until_the_defund_window_ends(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    net.dispute(channel, two_asset_state(net, channel, nonce=5))
    advance(TIMEOUT + 1)
    newer = two_asset_state(net, channel, nonce=6)
    fn = channel.functions.disputeChannel(newer.as_abi(), *net.sign_state(newer))
    net.expect_revert(fn, net.other, "DisputeInProgress")
    advance(TIMEOUT)
    net.send(fn, net.other)  # a new dispute may start after the defund window
    assert channel.functions.getDispute().call()[2] == 6


def test_a_finished_dispute_can_restart_with_the_same_state_but_not_an_older_one(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    state = two_asset_state(net, channel, nonce=5)
    net.dispute(channel, state)
    advance(2 * TIMEOUT + 1)
    older = two_asset_state(net, channel, nonce=4)
    net.expect_revert(
        channel.functions.disputeChannel(older.as_abi(), *net.sign_state(older)), net.other, "StaleNonce"
    )
    net.dispute(channel, state)  # e.g. to defund an asset nobody defunded in time


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("channel_address", "0x000000000000000000000000000000000000dEaD", "WrongChannel"),
        ("chain_id", 1, "WrongChainId"),
        ("node", "0x000000000000000000000000000000000000dEaD", "WrongParties"),
        ("user", "0x000000000000000000000000000000000000dEaD", "WrongParties"),
        ("defund_nonces", (1,), "MalformedState"),
        ("balances", ((1, 1),), "MalformedState"),
        ("processed_deposits", ((1, 1), (1, 1), (1, 1)), "MalformedState"),
        ("timeout", 0, "InvalidTimeout"),
    ],
)
def test_dispute_rejects_a_state_that_is_not_this_channels(
    net: Net, channel: Contract, field: str, value: object, error: str
) -> None:
    state = two_asset_state(net, channel, **{field: value})
    fn = channel.functions.disputeChannel(state.as_abi(), *net.sign_state(state))
    net.expect_revert(fn, net.other, error)


def test_dispute_rejects_bad_signatures(net: Net, channel: Contract) -> None:
    state = two_asset_state(net, channel)
    node_sig, user_sig = net.sign_state(state)
    forged = net.other.sign(state.hash())
    fn = channel.functions.disputeChannel
    net.expect_revert(fn(state.as_abi(), forged, user_sig), net.other, "InvalidSignature")
    net.expect_revert(fn(state.as_abi(), node_sig, forged), net.other, "InvalidSignature")
    net.expect_revert(fn(state.as_abi(), user_sig, node_sig), net.other, "InvalidSignature")
    other_state = two_asset_state(net, channel, nonce=6)
    net.expect_revert(fn(other_state.as_abi(), node_sig, user_sig), net.other, "InvalidSignature")
    net.expect_revert(fn(state.as_abi(), enc.high_s(node_sig), user_sig), net.other, "ECDSAInvalidSignatureS")


def test_a_huge_timeout_or_nonce_is_rejected_instead_of_wrapping(net: Net, channel: Contract) -> None:
    for fields in ({"timeout": 2**64}, {"nonce": 2**128}):
        state = two_asset_state(net, channel, **fields)
        fn = channel.functions.disputeChannel(state.as_abi(), *net.sign_state(state))
        net.expect_revert(fn, net.other, "SafeCastOverflowedUintDowncast")


# ---------------------------------------------------------------- defundChannel


def test_defund_pays_balances_plus_uncredited_deposits_for_eth_and_a_token(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    token = net.token.address
    # deposits the state has not credited yet: user 1 ETH, node 50 tokens
    net.send_eth(net.user, channel.address, E)
    net.send(net.token.functions.approve(channel.address, 50), net.node)
    net.send(channel.functions.depositNode(token, 50), net.node)
    state = two_asset_state(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    before = {
        (a, w): net.net_balance(a, w) for a in (ETH, token) for w in (net.node.address, net.user.address)
    }
    receipt = net.send(channel.functions.defundChannel(state.as_abi(), [ETH, token]), net.other)
    assert net.events(channel, "ChannelDefunded", receipt) == [
        {"assetId": ETH, "defundNonce": 1, "toNode": 3 * E, "toUser": 8 * E},
        {"assetId": token, "defundNonce": 1, "toNode": 550, "toUser": 500},
    ]
    gained = {key: net.net_balance(*key) - value for key, value in before.items()}
    assert gained == {
        (ETH, net.node.address): 3 * E,
        (ETH, net.user.address): 8 * E,
        (token, net.node.address): 550,
        (token, net.user.address): 500,
    }
    # conservation: everything deposited is paid out
    assert net.balance(ETH, channel.address) == 0
    assert net.balance(token, channel.address) == 0
    assert channel.functions.getTotalWithdrawn(ETH).call() == 11 * E
    assert channel.functions.getDefundNonce(ETH).call() == 1


def test_defund_of_one_asset_leaves_the_other_for_later(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    token = net.token.address
    state = two_asset_state(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    net.send(channel.functions.defundChannel(state.as_abi(), [token]), net.other)
    assert net.balance(token, channel.address) == 0
    assert net.balance(ETH, channel.address) == 10 * E
    net.send(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other)
    assert net.balance(ETH, channel.address) == 0


def test_double_defund_of_an_asset_is_rejected(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    state = two_asset_state(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    net.send(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other)
    net.expect_revert(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other, "AlreadyDefunded")
    net.expect_revert(
        channel.functions.defundChannel(state.as_abi(), [net.token.address, net.token.address]),
        net.other,
        "AlreadyDefunded",
    )


def test_defund_of_an_asset_the_state_never_listed_returns_all_its_deposits(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    token = net.token.address
    state = net.state(channel, balances=((4 * E, 6 * E),), processed_deposits=((4 * E, 6 * E),))
    net.dispute(channel, state)
    advance(TIMEOUT)
    receipt = net.send(channel.functions.defundChannel(state.as_abi(), [token]), net.other)
    assert net.events(channel, "ChannelDefunded", receipt) == [
        {"assetId": token, "defundNonce": 1, "toNode": 400, "toUser": 600}
    ]
    assert net.balance(token, channel.address) == 0


def test_defund_before_the_consensus_window_ends_is_rejected(net: Net, channel: Contract) -> None:
    state = two_asset_state(net, channel)
    net.dispute(channel, state)
    net.expect_revert(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other, "NotInDefundPhase")


def test_defund_after_the_defund_window_is_rejected(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    state = two_asset_state(net, channel)
    net.dispute(channel, state)
    advance(2 * TIMEOUT + 1)
    net.expect_revert(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other, "NotInDefundPhase")


def test_defund_without_a_dispute_is_rejected(net: Net, channel: Contract) -> None:
    state = two_asset_state(net, channel)
    net.expect_revert(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other, "NoDispute")


def test_defund_with_a_state_other_than_the_disputed_one_is_rejected(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    state = two_asset_state(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    richer = two_asset_state(net, channel, balances=((0, 10 * E), (0, 1000)))
    net.expect_revert(channel.functions.defundChannel(richer.as_abi(), [ETH]), net.other, "WrongState")


def test_the_channel_continues_after_a_dispute_with_raised_defund_nonces(
    net: Net, channel: Contract, advance: Callable[[int], None]
) -> None:
    state = two_asset_state(net, channel)
    net.dispute(channel, state)
    advance(TIMEOUT)
    net.send(channel.functions.defundChannel(state.as_abi(), [ETH]), net.other)
    advance(TIMEOUT)
    # off chain: ETH paid out (balances 0, defund nonce 2); tokens untouched; then the user deposits 2 ETH
    net.send_eth(net.user, channel.address, 2 * E)
    later = two_asset_state(net, channel, nonce=9, balances=((0, 2 * E), (500, 500)), defund_nonces=(2, 1))
    later = later.evolve(processed_deposits=((4 * E, 8 * E), (400, 600)))
    net.dispute(channel, later)
    advance(TIMEOUT)
    before = net.net_balance(ETH, net.user.address)
    net.send(channel.functions.defundChannel(later.as_abi(), [ETH, net.token.address]), net.other)
    assert net.net_balance(ETH, net.user.address) - before == 2 * E
    assert net.balance(ETH, channel.address) == 0
    assert net.balance(net.token.address, channel.address) == 0
    assert channel.functions.getDefundNonce(ETH).call() == 2
