"""A whole channel life on chain, with funds conservation checked at the end."""

from __future__ import annotations

from collections.abc import Callable

from tests.contracts import encoding as enc
from tests.contracts.net import ETH, Net, make_transfer

E = 10**18
T = 10**6


def _withdraw(net: Net, channel, *, asset: str, amount: int, nonce: int) -> None:
    digest = enc.withdraw_hash(net.chain_id, channel.address, asset, net.user.address, amount, nonce)
    commitment = (channel.address, asset, net.user.address, amount, nonce)
    net.send(
        channel.functions.withdraw(commitment, net.node.sign(digest), net.user.sign(digest)),
        net.node,
    )


def test_channel_life_from_prediction_to_a_second_dispute_conserves_funds(
    net: Net, advance: Callable[[int], None]
) -> None:
    token = net.token.address
    node, user = net.node.address, net.user.address
    address = net.channel_address()
    start = {(asset, who): net.net_balance(asset, who) for asset in (ETH, token) for who in (node, user)}

    # The user funds the predicted address before the channel exists.
    assert net.w3.eth.get_code(address) == b""
    net.send_eth(net.user, address, 5 * E)
    net.send(net.token.functions.transfer(address, 500 * T), net.user)

    # The node deploys with its ETH deposit, then deposits tokens.
    receipt = net.send(
        net.factory.functions.createChannelAndDepositNode(user, ETH, 3 * E), net.node, value=3 * E
    )
    assert net.events(net.factory, "ChannelCreated", receipt)[0]["channel"] == address
    channel = net.channel(address)
    net.send(net.token.functions.approve(address, 300 * T), net.node)
    net.send(channel.functions.depositNode(token, 300 * T), net.node)
    assert channel.functions.getTotalDepositsNode(ETH).call() == 3 * E
    assert channel.functions.getTotalDepositsUser(ETH).call() == 5 * E
    assert channel.functions.getTotalDepositsNode(token).call() == 300 * T
    assert channel.functions.getTotalDepositsUser(token).call() == 500 * T

    # The user withdraws 1 ETH (the withdraw transfer created at nonce 4, resolved at 5).
    _withdraw(net, channel, asset=ETH, amount=E, nonce=4)
    assert channel.functions.getTotalDepositsUser(ETH).call() == 5 * E  # derived total unchanged

    # Two payments: A (Linked, user → node, 1 ETH, nonce 6) and B (HashLock, node → user, 100 TOK, nonce 7).
    preimage_a = b"\xaa" * 32
    transfer_a = make_transfer(
        net,
        channel,
        definition="LinkedTransfer",
        encoded_state=enc.linked_state(enc.lock_hash(preimage_a)),
        initiator=net.user,
        responder=net.node,
        amount=E,
        create_nonce=6,
    )
    transfer_b = make_transfer(
        net,
        channel,
        definition="HashLockTransfer",
        encoded_state=enc.hashlock_state(enc.lock_hash(b"\xbb" * 32), net.now() + 10_000),
        initiator=net.node,
        responder=net.user,
        amount=100 * T,
        create_nonce=7,
        asset=token,
    )
    common = {
        "asset_ids": (ETH, token),
        "processed_deposits": ((3 * E, 5 * E), (300 * T, 500 * T)),
        "defund_nonces": (1, 1),
    }
    older = net.state(
        channel,
        nonce=6,
        balances=((3 * E, 3 * E), (300 * T, 500 * T)),
        merkle_root=enc.merkle_root([transfer_a.hash()]),
        **common,
    )
    leaves = [transfer_a.hash(), transfer_b.hash()]
    latest = net.state(
        channel,
        nonce=7,
        balances=((3 * E, 3 * E), (200 * T, 500 * T)),
        merkle_root=enc.merkle_root(leaves),
        **common,
    )

    # The user disputes with the older state; the node answers with the newer one inside the window.
    net.dispute(channel, older, net.user)
    net.dispute(channel, latest, net.node)
    dispute = channel.functions.getDispute().call()
    assert dispute[0] == latest.hash()
    assert dispute[2] == 7

    advance(3601)
    net.send(channel.functions.defundChannel(latest.as_abi(), [ETH, token]), net.other)
    for transfer in (transfer_a, transfer_b):
        net.send(
            channel.functions.disputeTransfer(transfer.as_abi(), enc.merkle_proof(leaves, transfer.hash())),
            net.other,
        )
    # A resolves by its preimage (the node is A's responder); B is left to lapse and is refunded.
    net.send(
        channel.functions.defundTransfer(
            transfer_a.as_abi(), transfer_a.encoded_state, enc.preimage_resolver(preimage_a), b""
        ),
        net.node,
    )
    advance(601)
    net.send(
        channel.functions.defundTransfer(transfer_b.as_abi(), transfer_b.encoded_state, b"", b""),
        net.other,
    )
    assert net.balance(ETH, address) == 0
    assert net.balance(token, address) == 0

    # The channel continues: the user deposits again, and a later state (defund nonces raised,
    # balances spent) is disputed after the first dispute's defund window.
    advance(3600)
    net.send_eth(net.user, address, 2 * E)
    _withdraw(net, channel, asset=ETH, amount=E, nonce=10)
    after = net.state(
        channel,
        nonce=11,
        asset_ids=(ETH, token),
        balances=((0, E), (0, 0)),
        processed_deposits=((3 * E, 7 * E), (300 * T, 500 * T)),
        defund_nonces=(2, 2),
    )
    net.dispute(channel, after, net.user)
    advance(3601)
    net.send(channel.functions.defundChannel(after.as_abi(), [ETH, token]), net.user)

    # Conservation: the channel is empty and each side got exactly its deposits moved by the payments.
    assert net.balance(ETH, address) == 0
    assert net.balance(token, address) == 0
    deltas = {key: net.net_balance(*key) - value for key, value in start.items()}
    assert deltas[(ETH, node)] == -3 * E + 3 * E + E  # deposit 3; defund 3; transfer A 1
    assert (
        deltas[(ETH, user)] == -7 * E + E + 3 * E + E + E
    )  # deposits 7; withdraw 1, defund 3, withdraw 1, defund 1
    assert deltas[(token, node)] == -300 * T + 200 * T + 100 * T  # defund 200, B refunded 100
    assert deltas[(token, user)] == 0
    assert sum(deltas[(ETH, who)] for who in (node, user)) == 0
    assert sum(deltas[(token, who)] for who in (node, user)) == 0
    assert channel.functions.getTotalWithdrawn(ETH).call() == 10 * E
    assert channel.functions.getTotalWithdrawn(token).call() == 800 * T
