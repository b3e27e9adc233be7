"""ChannelFactory: address prediction, creation, creation with the node's first deposit."""

from __future__ import annotations

from eth_utils import to_checksum_address

from connext.chain.artifacts import load_artifact
from tests.contracts.net import ETH, Net

E = 10**18


def test_predicted_address_is_the_same_in_python_and_on_chain(net: Net) -> None:
    on_chain = net.factory.functions.getChannelAddress(net.node.address, net.user.address).call()
    assert on_chain == net.channel_address()
    assert net.channel_address(net.user.address, net.node.address) != on_chain  # roles are not symmetric


def test_create_channel_deploys_at_the_predicted_address_with_its_owners(net: Net) -> None:
    receipt = net.send(net.factory.functions.createChannel(net.node.address, net.user.address), net.other)
    (event,) = net.events(net.factory, "ChannelCreated", receipt)
    assert event == {"channel": net.channel_address(), "node": net.node.address, "user": net.user.address}
    channel = net.channel()
    assert channel.functions.node().call() == net.node.address
    assert channel.functions.user().call() == net.user.address
    assert channel.functions.factory().call() == net.factory.address


def test_creating_the_same_channel_twice_is_rejected(net: Net) -> None:
    net.create_channel()
    net.expect_revert(
        net.factory.functions.createChannel(net.node.address, net.user.address), net.other, "ChannelExists"
    )


def test_create_channel_rejects_zero_or_equal_owners(net: Net) -> None:
    for node, user in (
        (ETH, net.user.address),
        (net.node.address, ETH),
        (net.node.address, net.node.address),
    ):
        net.expect_revert(net.factory.functions.createChannel(node, user), net.other, "InvalidParties")


def test_create_and_deposit_node_with_eth_records_the_deposit(net: Net) -> None:
    receipt = net.send(
        net.factory.functions.createChannelAndDepositNode(net.user.address, ETH, 2 * E), net.node, value=2 * E
    )
    channel = net.channel()
    (event,) = net.events(channel, "NodeDeposited", receipt)
    assert event == {"assetId": ETH, "amount": 2 * E, "totalDepositsNode": 2 * E}
    assert channel.functions.getTotalDepositsNode(ETH).call() == 2 * E
    assert channel.functions.getTotalDepositsUser(ETH).call() == 0
    assert net.balance(ETH, channel.address) == 2 * E


def test_create_and_deposit_node_with_a_token_pulls_from_the_node(net: Net) -> None:
    net.send(net.token.functions.approve(net.factory.address, 70), net.node)
    net.send(
        net.factory.functions.createChannelAndDepositNode(net.user.address, net.token.address, 70), net.node
    )
    channel = net.channel()
    assert channel.functions.getTotalDepositsNode(net.token.address).call() == 70
    assert net.balance(net.token.address, channel.address) == 70


def test_create_and_deposit_node_keeps_what_the_user_sent_first(net: Net) -> None:
    net.send_eth(net.user, net.channel_address(), 5 * E)
    net.send(net.factory.functions.createChannelAndDepositNode(net.user.address, ETH, E), net.node, value=E)
    channel = net.channel()
    assert channel.functions.getTotalDepositsUser(ETH).call() == 5 * E
    assert channel.functions.getTotalDepositsNode(ETH).call() == E


def test_create_and_deposit_node_rejects_a_wrong_value(net: Net) -> None:
    fn = net.factory.functions.createChannelAndDepositNode(net.user.address, ETH, E)
    net.expect_revert(fn, net.node, "WrongValue", value=E - 1)
    token_fn = net.factory.functions.createChannelAndDepositNode(net.user.address, net.token.address, 1)
    net.expect_revert(token_fn, net.node, "WrongValue", value=1)


def test_create_and_deposit_node_without_allowance_reverts(net: Net) -> None:
    fn = net.factory.functions.createChannelAndDepositNode(net.user.address, net.token.address, 1)
    net.expect_revert(fn, net.node, "ERC20InsufficientAllowance")


def test_create_and_deposit_node_twice_is_rejected(net: Net) -> None:
    net.send(net.factory.functions.createChannelAndDepositNode(net.user.address, ETH, 1), net.node, value=1)
    fn = net.factory.functions.createChannelAndDepositNode(net.user.address, ETH, 1)
    net.expect_revert(fn, net.node, "ChannelExists", value=1)


def test_the_mastercopy_itself_cannot_be_used(net: Net) -> None:
    mastercopy = net.contract("Channel", net.addresses["Channel"])
    net.expect_revert(mastercopy.functions.depositNode(ETH, 1), net.node, "NotAClone", value=1)
    net.expect_revert(mastercopy.functions.node(), net.node, "NotAClone")
    net.expect_revert(mastercopy.functions.claim(ETH, net.node.address), net.node, "NotAClone")
    net.expect_revert_tx({"from": net.user.address, "to": mastercopy.address, "value": 1}, "NotAClone")


def test_the_factory_rejects_missing_definitions(net: Net) -> None:
    artifact_factory = net.w3.eth.contract(
        abi=net.factory.abi, bytecode=load_artifact("ChannelFactory").bytecode
    )
    definitions = [net.definition(n) for n in ("LinkedTransfer", "HashLockTransfer", "SignedTransfer")]
    net.expect_revert(artifact_factory.constructor(*definitions, ETH), net.deployer, "InvalidDefinitions")


def test_the_mastercopy_accepts_exactly_the_deployed_definitions(net: Net) -> None:
    channel = net.create_channel()
    for name in ("LinkedTransfer", "HashLockTransfer", "SignedTransfer", "WithdrawTransfer"):
        assert channel.functions.isKnownDefinition(net.definition(name)).call()
    assert not channel.functions.isKnownDefinition(net.token.address).call()
    assert not channel.functions.isKnownDefinition(ETH).call()
    assert to_checksum_address(channel.functions.withdrawTransfer().call()) == net.definition(
        "WithdrawTransfer"
    )
