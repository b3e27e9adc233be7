"""Deposits (user by plain transfer, node by `depositNode`) and `withdraw`, for ETH and a token."""

from __future__ import annotations

import pytest
from web3.contract import Contract

from tests.contracts import encoding as enc
from tests.contracts.net import ETH, Net

E = 10**18


@pytest.fixture(params=["eth", "token"])
def asset(request: pytest.FixtureRequest, net: Net) -> str:
    return ETH if request.param == "eth" else net.token.address


def user_deposit(net: Net, channel: str, asset: str, amount: int) -> None:
    if asset == ETH:
        net.send_eth(net.user, channel, amount)
    else:
        net.send(net.token.functions.transfer(channel, amount), net.user)


def node_deposit(net: Net, channel: Contract, asset: str, amount: int) -> None:
    if asset == ETH:
        net.send(channel.functions.depositNode(ETH, amount), net.node, value=amount)
    else:
        net.send(net.token.functions.approve(channel.address, amount), net.node)
        net.send(channel.functions.depositNode(asset, amount), net.node)


# ---------------------------------------------------------------- deposits


def test_user_deposits_before_and_after_deployment_count_as_the_users(net: Net, asset: str) -> None:
    user_deposit(net, net.channel_address(), asset, 3 * E)
    channel = net.create_channel()
    user_deposit(net, channel.address, asset, 2 * E)
    assert channel.functions.getTotalDepositsUser(asset).call() == 5 * E
    assert channel.functions.getTotalDepositsNode(asset).call() == 0


def test_node_deposit_records_the_running_total(net: Net, asset: str) -> None:
    channel = net.create_channel()
    node_deposit(net, channel, asset, E)
    node_deposit(net, channel, asset, 2 * E)
    user_deposit(net, channel.address, asset, 7)
    assert channel.functions.getTotalDepositsNode(asset).call() == 3 * E
    assert channel.functions.getTotalDepositsUser(asset).call() == 7
    assert net.balance(asset, channel.address) == 3 * E + 7


def test_node_deposit_rejects_a_value_that_does_not_match(net: Net) -> None:
    channel = net.create_channel()
    net.expect_revert(channel.functions.depositNode(ETH, E), net.node, "WrongValue", value=E + 1)
    net.expect_revert(channel.functions.depositNode(net.token.address, 1), net.node, "WrongValue", value=1)


def test_node_deposit_of_a_token_without_allowance_reverts(net: Net) -> None:
    channel = net.create_channel()
    net.expect_revert(
        channel.functions.depositNode(net.token.address, 1), net.node, "ERC20InsufficientAllowance"
    )


# ---------------------------------------------------------------- withdraw


def commitment(channel: Contract, asset: str, recipient: str, amount: int, nonce: int) -> tuple:
    return (channel.address, asset, recipient, amount, nonce)


def withdraw_sigs(net: Net, channel: Contract, asset: str, recipient: str, amount: int, nonce: int) -> tuple:
    digest = enc.withdraw_hash(net.chain_id, channel.address, asset, recipient, amount, nonce)
    return net.node.sign(digest), net.user.sign(digest)


@pytest.fixture
def funded(net: Net, asset: str) -> Contract:
    channel = net.create_channel()
    node_deposit(net, channel, asset, 4 * E)
    user_deposit(net, channel.address, asset, 6 * E)
    return channel


def test_withdraw_pays_the_recipient_once_and_counts_as_withdrawn(
    net: Net, funded: Contract, asset: str
) -> None:
    recipient = net.other.address
    before = net.net_balance(asset, recipient)
    sigs = withdraw_sigs(net, funded, asset, recipient, 2 * E, 9)
    receipt = net.send(
        funded.functions.withdraw(commitment(funded, asset, recipient, 2 * E, 9), *sigs), net.node
    )
    assert net.events(funded, "Withdrawn", receipt) == [
        {"assetId": asset, "recipient": recipient, "amount": 2 * E, "nonce": 9}
    ]
    assert net.net_balance(asset, recipient) - before == 2 * E
    assert funded.functions.getTotalWithdrawn(asset).call() == 2 * E
    assert funded.functions.isWithdrawExecuted(9).call()
    assert not funded.functions.isWithdrawExecuted(8).call()
    # the user's derived total does not move when money leaves
    assert funded.functions.getTotalDepositsUser(asset).call() == 6 * E
    # replay
    net.expect_revert(
        funded.functions.withdraw(commitment(funded, asset, recipient, 2 * E, 9), *sigs),
        net.node,
        "WithdrawAlreadyExecuted",
    )
    # a different commitment cannot reuse the nonce either
    other = withdraw_sigs(net, funded, asset, recipient, E, 9)
    net.expect_revert(
        funded.functions.withdraw(commitment(funded, asset, recipient, E, 9), *other),
        net.node,
        "WithdrawAlreadyExecuted",
    )


def test_withdraw_nonces_in_the_same_and_in_other_words_are_independent(
    net: Net, funded: Contract, asset: str
) -> None:
    for nonce in (1, 255, 256, 2**255):
        sigs = withdraw_sigs(net, funded, asset, net.user.address, 1, nonce)
        net.send(
            funded.functions.withdraw(commitment(funded, asset, net.user.address, 1, nonce), *sigs), net.other
        )
    for nonce in (1, 255, 256, 2**255):
        assert funded.functions.isWithdrawExecuted(nonce).call()
    assert funded.functions.getTotalWithdrawn(asset).call() == 4


@pytest.mark.parametrize("which", ["node", "user"])
def test_withdraw_with_a_signature_of_someone_else_is_rejected(
    net: Net, funded: Contract, asset: str, which: str
) -> None:
    digest = enc.withdraw_hash(net.chain_id, funded.address, asset, net.user.address, E, 3)
    node_sig, user_sig = net.node.sign(digest), net.user.sign(digest)
    if which == "node":
        node_sig = net.other.sign(digest)
    else:
        user_sig = net.other.sign(digest)
    fn = funded.functions.withdraw(commitment(funded, asset, net.user.address, E, 3), node_sig, user_sig)
    net.expect_revert(fn, net.node, "InvalidSignature")


def test_withdraw_with_swapped_or_mismatched_signatures_is_rejected(
    net: Net, funded: Contract, asset: str
) -> None:
    node_sig, user_sig = withdraw_sigs(net, funded, asset, net.user.address, E, 3)
    fn = funded.functions.withdraw(commitment(funded, asset, net.user.address, E, 3), user_sig, node_sig)
    net.expect_revert(fn, net.node, "InvalidSignature")
    # signatures over another amount
    fn = funded.functions.withdraw(commitment(funded, asset, net.user.address, 2 * E, 3), node_sig, user_sig)
    net.expect_revert(fn, net.node, "InvalidSignature")


def test_withdraw_signed_for_another_chain_is_rejected(net: Net, funded: Contract, asset: str) -> None:
    digest = enc.withdraw_hash(net.chain_id + 1, funded.address, asset, net.user.address, E, 3)
    fn = funded.functions.withdraw(
        commitment(funded, asset, net.user.address, E, 3), net.node.sign(digest), net.user.sign(digest)
    )
    net.expect_revert(fn, net.node, "InvalidSignature")


def test_withdraw_signed_for_another_channel_is_rejected(net: Net, funded: Contract, asset: str) -> None:
    elsewhere = net.channel_address(net.node.address, net.other.address)
    sigs = withdraw_sigs(net, net.channel(elsewhere), asset, net.user.address, E, 3)
    fn = funded.functions.withdraw(commitment(funded, asset, net.user.address, E, 3), *sigs)
    net.expect_revert(fn, net.node, "InvalidSignature")
    fn = funded.functions.withdraw((elsewhere, asset, net.user.address, E, 3), *sigs)
    net.expect_revert(fn, net.node, "WrongChannel")


def test_withdraw_rejects_malformed_and_high_s_signatures(net: Net, funded: Contract, asset: str) -> None:
    node_sig, user_sig = withdraw_sigs(net, funded, asset, net.user.address, E, 3)
    c = commitment(funded, asset, net.user.address, E, 3)
    net.expect_revert(
        funded.functions.withdraw(c, enc.high_s(node_sig), user_sig), net.node, "ECDSAInvalidSignatureS"
    )
    net.expect_revert(
        funded.functions.withdraw(c, node_sig[:64], user_sig), net.node, "ECDSAInvalidSignatureLength"
    )
    net.expect_revert(funded.functions.withdraw(c, node_sig, b"\x00" * 65), net.node, "ECDSAInvalidSignature")


def test_withdraw_to_the_channel_itself_or_to_zero_is_rejected(
    net: Net, funded: Contract, asset: str
) -> None:
    for recipient in (funded.address, ETH):
        sigs = withdraw_sigs(net, funded, asset, recipient, E, 3)
        fn = funded.functions.withdraw(commitment(funded, asset, recipient, E, 3), *sigs)
        net.expect_revert(fn, net.node, "InvalidRecipient")


def test_withdraw_of_more_than_the_channel_holds_reverts(net: Net, funded: Contract, asset: str) -> None:
    sigs = withdraw_sigs(net, funded, asset, net.user.address, 11 * E, 3)
    fn = funded.functions.withdraw(commitment(funded, asset, net.user.address, 11 * E, 3), *sigs)
    net.expect_revert(fn, net.node, "EthTransferFailed" if asset == ETH else "ERC20InsufficientBalance")


def test_withdraw_to_a_recipient_that_refuses_eth_reverts_and_stays_executable(net: Net) -> None:
    channel = net.create_channel()
    net.send_eth(net.user, channel.address, E)
    receiver = net.deploy("ReentrantReceiver")
    net.send(receiver.functions.setRefuse(True), net.other)
    sigs = withdraw_sigs(net, channel, ETH, receiver.address, E, 3)
    fn = channel.functions.withdraw(commitment(channel, ETH, receiver.address, E, 3), *sigs)
    net.expect_revert(fn, net.node, "EthTransferFailed")
    net.send(receiver.functions.setRefuse(False), net.other)
    net.send(fn, net.node)
    assert net.balance(ETH, receiver.address) == E


def test_node_deposits_beyond_the_recorded_limit_revert_instead_of_wrapping(net: Net) -> None:
    channel = net.create_channel()
    huge = 2**192
    net.send(net.token.functions.mint(net.node.address, huge), net.node)
    net.send(net.token.functions.approve(channel.address, huge), net.node)
    net.expect_revert(
        channel.functions.depositNode(net.token.address, huge), net.node, "SafeCastOverflowedUintDowncast"
    )
    net.send(channel.functions.depositNode(net.token.address, huge - 1), net.node)
    assert channel.functions.getTotalDepositsNode(net.token.address).call() == huge - 1
