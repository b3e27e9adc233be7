"""`disputeTransfer` and `defundTransfer` with every definition, for ETH and a token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from web3.contract import Contract

from tests.contracts import encoding as enc
from tests.contracts.net import ETH, Net, make_transfer

E = 10**18
TIMEOUT = 3600
WINDOW = 600
PREIMAGE = b"\x5e" * 32


@dataclass
class Disputed:
    channel: Contract
    state: enc.ChannelState
    transfers: dict[str, enc.TransferState]
    leaves: list[bytes]

    def proof(self, name: str) -> list[bytes]:
        return enc.merkle_proof(self.leaves, self.transfers[name].hash())


def build(net: Net, channel: Contract) -> tuple[enc.ChannelState, dict[str, enc.TransferState]]:
    token = net.token.address
    commitment = (channel.address, ETH, net.user.address, 2 * E, 13)
    withdraw_digest = enc.withdraw_hash(net.chain_id, *commitment)
    now = net.now()
    transfers = {
        "linked": make_transfer(
            net, channel, definition="LinkedTransfer", encoded_state=enc.linked_state(enc.lock_hash(PREIMAGE)),
            initiator=net.user, responder=net.node, amount=E, create_nonce=10, timeout=WINDOW,
        ),
        "hashlock": make_transfer(
            net, channel, definition="HashLockTransfer",
            encoded_state=enc.hashlock_state(enc.lock_hash(PREIMAGE), now + TIMEOUT + 300),
            initiator=net.node, responder=net.user, amount=100, create_nonce=11, asset=token, timeout=WINDOW,
        ),
        "signed": make_transfer(
            net, channel, definition="SignedTransfer",
            encoded_state=enc.signed_state(net.other.address, b"\x77" * 32),
            initiator=net.user, responder=net.node, amount=E, create_nonce=12, timeout=WINDOW,
        ),
        "withdraw": make_transfer(
            net, channel, definition="WithdrawTransfer",
            encoded_state=enc.withdraw_state(
                channel=channel.address, asset_id=ETH, recipient=net.user.address, amount=2 * E, nonce=13,
                initiator=net.user.address, responder=net.node.address,
                initiator_signature=net.user.sign(withdraw_digest),
            ),
            initiator=net.user, responder=net.node, amount=2 * E, create_nonce=13, timeout=WINDOW,
        ),
        "linked_token": make_transfer(
            net, channel, definition="LinkedTransfer", encoded_state=enc.linked_state(enc.lock_hash(PREIMAGE)),
            initiator=net.user, responder=net.node, amount=50, create_nonce=14, asset=token, timeout=WINDOW,
        ),
    }  # fmt: skip
    state = net.state(
        channel,
        asset_ids=(ETH, token),
        balances=((4 * E, 2 * E), (300, 550)),
        processed_deposits=((4 * E, 6 * E), (400, 600)),
        defund_nonces=(1, 1),
        timeout=TIMEOUT,
        nonce=14,
        merkle_root=enc.merkle_root([t.hash() for t in transfers.values()]),
    )
    return state, transfers


@pytest.fixture
def funded(net: Net) -> Contract:
    channel = net.create_channel()
    net.send(channel.functions.depositNode(ETH, 4 * E), net.node, value=4 * E)
    net.send(net.token.functions.approve(channel.address, 400), net.node)
    net.send(channel.functions.depositNode(net.token.address, 400), net.node)
    net.send_eth(net.user, channel.address, 6 * E)
    net.send(net.token.functions.transfer(channel.address, 600), net.user)
    return channel


@pytest.fixture
def disputed(net: Net, funded: Contract, advance: Callable[[int], None]) -> Disputed:
    """Channel disputed with five active transfers, now in its defund phase."""
    state, transfers = build(net, funded)
    net.dispute(funded, state)
    advance(TIMEOUT)
    return Disputed(funded, state, transfers, [t.hash() for t in transfers.values()])


def dispute_transfer(net: Net, d: Disputed, name: str) -> None:
    transfer = d.transfers[name]
    net.send(d.channel.functions.disputeTransfer(transfer.as_abi(), d.proof(name)), net.other)


def defund(d: Disputed, name: str, resolver: bytes, signature: bytes = b""):
    transfer = d.transfers[name]
    return d.channel.functions.defundTransfer(transfer.as_abi(), transfer.encoded_state, resolver, signature)


# ---------------------------------------------------------------- disputeTransfer


def test_dispute_transfer_starts_its_window_once(net: Net, disputed: Disputed) -> None:
    transfer = disputed.transfers["linked"]
    fn = disputed.channel.functions.disputeTransfer(transfer.as_abi(), disputed.proof("linked"))
    receipt = net.send(fn, net.other)
    expiry = net.now() + WINDOW
    assert net.events(disputed.channel, "TransferDisputed", receipt) == [
        {"transferId": transfer.transfer_id, "transferHash": transfer.hash(), "expiry": expiry}
    ]
    assert disputed.channel.functions.getTransferDispute(transfer.hash()).call() == (expiry, False)
    net.expect_revert(fn, net.other, "TransferAlreadyDisputed")


def test_dispute_transfer_with_a_wrong_proof_is_rejected(net: Net, disputed: Disputed) -> None:
    transfer = disputed.transfers["linked"]
    fn = disputed.channel.functions.disputeTransfer
    net.expect_revert(fn(transfer.as_abi(), disputed.proof("signed")), net.other, "InvalidMerkleProof")
    net.expect_revert(fn(transfer.as_abi(), []), net.other, "InvalidMerkleProof")
    changed = transfer.evolve(balance=(2 * E, 0))
    net.expect_revert(fn(changed.as_abi(), disputed.proof("linked")), net.other, "InvalidMerkleProof")


def test_dispute_transfer_of_an_unknown_definition_is_rejected(net: Net, funded: Contract, advance) -> None:
    rogue = make_transfer(
        net, funded, definition="LinkedTransfer", encoded_state=b"", initiator=net.user, responder=net.node,
        amount=E, create_nonce=3,
    ).evolve(transfer_definition=net.token.address)  # fmt: skip
    state = net.state(funded, balances=((4 * E, 5 * E),), merkle_root=rogue.hash())
    net.dispute(funded, state)
    advance(TIMEOUT)
    fn = funded.functions.disputeTransfer(rogue.as_abi(), [])
    net.expect_revert(fn, net.other, "UnknownTransferDefinition")


@pytest.mark.parametrize(
    ("field", "error"),
    [("channel_address", "WrongChannel"), ("initiator", "WrongParties"), ("responder", "WrongParties")],
)
def test_dispute_transfer_rejects_another_channel_or_party(
    net: Net, disputed: Disputed, field: str, error: str
) -> None:
    bad = disputed.transfers["linked"].evolve(**{field: net.other.address})
    net.expect_revert(disputed.channel.functions.disputeTransfer(bad.as_abi(), []), net.other, error)
    same = disputed.transfers["linked"].evolve(initiator=net.node.address)  # initiator == responder
    net.expect_revert(
        disputed.channel.functions.disputeTransfer(same.as_abi(), []), net.other, "WrongParties"
    )


def test_dispute_transfer_outside_the_defund_phase_is_rejected(net: Net, funded: Contract, advance) -> None:
    state, transfers = build(net, funded)
    leaves = [t.hash() for t in transfers.values()]
    transfer = transfers["linked"]
    fn = funded.functions.disputeTransfer(transfer.as_abi(), enc.merkle_proof(leaves, transfer.hash()))
    net.expect_revert(fn, net.other, "NoDispute")
    net.dispute(funded, state)
    net.expect_revert(fn, net.other, "NotInDefundPhase")  # consensus phase
    advance(2 * TIMEOUT)
    net.expect_revert(fn, net.other, "NotInDefundPhase")  # defund window over


# ---------------------------------------------------------------- defundTransfer: Linked


def test_linked_transfer_resolved_by_the_responder_pays_it(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "linked")
    before = net.net_balance(ETH, net.node.address)
    receipt = net.send(defund(disputed, "linked", enc.preimage_resolver(PREIMAGE)), net.node)
    assert net.net_balance(ETH, net.node.address) - before == E
    transfer = disputed.transfers["linked"]
    assert net.events(disputed.channel, "TransferDefunded", receipt) == [
        {
            "transferId": transfer.transfer_id,
            "transferHash": transfer.hash(),
            "toInitiator": 0,
            "toResponder": E,
        }
    ]
    net.expect_revert(
        defund(disputed, "linked", enc.preimage_resolver(PREIMAGE)), net.node, "TransferAlreadyDefunded"
    )


def test_a_third_party_resolves_with_the_responders_signature(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "linked")
    resolver = enc.preimage_resolver(PREIMAGE)
    digest = enc.resolver_hash(net.chain_id, disputed.transfers["linked"].hash(), resolver)
    net.expect_revert(defund(disputed, "linked", resolver), net.other, "ECDSAInvalidSignatureLength")
    net.expect_revert(
        defund(disputed, "linked", resolver, net.user.sign(digest)), net.other, "InvalidSignature"
    )
    wrong_chain = enc.resolver_hash(net.chain_id + 1, disputed.transfers["linked"].hash(), resolver)
    net.expect_revert(
        defund(disputed, "linked", resolver, net.node.sign(wrong_chain)), net.other, "InvalidSignature"
    )
    before = net.net_balance(ETH, net.node.address)
    net.send(defund(disputed, "linked", resolver, net.node.sign(digest)), net.other)
    assert net.net_balance(ETH, net.node.address) - before == E


def test_a_wrong_preimage_is_rejected_and_is_not_a_cancel(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "linked")
    net.expect_revert(
        defund(disputed, "linked", enc.preimage_resolver(b"\x01" * 32)), net.node, "InvalidPreimage"
    )


def test_the_responders_cancel_refunds_the_initiator(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "linked")
    before = net.net_balance(ETH, net.user.address)
    net.send(defund(disputed, "linked", enc.preimage_resolver(enc.ZERO_BYTES32)), net.node)
    assert net.net_balance(ETH, net.user.address) - before == E


def test_after_the_window_anyone_gets_the_initiator_refunded(
    net: Net, disputed: Disputed, advance: Callable[[int], None]
) -> None:
    dispute_transfer(net, disputed, "linked")
    advance(WINDOW)
    before = net.net_balance(ETH, net.user.address)
    net.send(defund(disputed, "linked", b""), net.other)
    assert net.net_balance(ETH, net.user.address) - before == E
    net.expect_revert(defund(disputed, "linked", b""), net.other, "TransferAlreadyDefunded")


def test_defund_of_an_undisputed_transfer_is_rejected(net: Net, disputed: Disputed) -> None:
    net.expect_revert(
        defund(disputed, "linked", enc.preimage_resolver(PREIMAGE)), net.node, "TransferNotDisputed"
    )


def test_defund_with_another_initial_state_is_rejected(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "linked")
    transfer = disputed.transfers["linked"]
    fn = disputed.channel.functions.defundTransfer(
        transfer.as_abi(),
        enc.linked_state(enc.lock_hash(b"\x01" * 32)),
        enc.preimage_resolver(b"\x01" * 32),
        b"",
    )
    net.expect_revert(fn, net.node, "WrongInitialState")


def test_a_token_transfer_pays_in_the_token(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "linked_token")
    before = net.balance(net.token.address, net.node.address)
    net.send(defund(disputed, "linked_token", enc.preimage_resolver(PREIMAGE)), net.node)
    assert net.balance(net.token.address, net.node.address) - before == 50


# ---------------------------------------------------------------- HashLock


def test_hashlock_resolves_before_its_expiry(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "hashlock")
    before = net.balance(net.token.address, net.user.address)
    net.send(defund(disputed, "hashlock", enc.preimage_resolver(PREIMAGE)), net.user)
    assert net.balance(net.token.address, net.user.address) - before == 100


def test_hashlock_preimage_after_expiry_is_rejected_then_refunded(
    net: Net, disputed: Disputed, advance: Callable[[int], None]
) -> None:
    dispute_transfer(net, disputed, "hashlock")
    advance(400)  # past the lock's expiry, inside the transfer window
    net.expect_revert(defund(disputed, "hashlock", enc.preimage_resolver(PREIMAGE)), net.user, "Expired")
    advance(WINDOW)
    before = net.balance(net.token.address, net.node.address)
    net.send(defund(disputed, "hashlock", b""), net.other)
    assert net.balance(net.token.address, net.node.address) - before == 100


# ---------------------------------------------------------------- Signed


def test_signed_transfer_resolves_with_the_named_signers_receipt(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "signed")
    signed = net.definition("SignedTransfer")
    data = b"\x42" * 32
    wrong = enc.sign_receipt(net.user.key, net.chain_id, signed, b"\x77" * 32, data)
    net.expect_revert(
        defund(disputed, "signed", enc.signed_resolver(data, wrong)), net.node, "InvalidReceiptSignature"
    )
    other_payment = enc.sign_receipt(net.other.key, net.chain_id, signed, b"\x78" * 32, data)
    net.expect_revert(
        defund(disputed, "signed", enc.signed_resolver(data, other_payment)),
        net.node,
        "InvalidReceiptSignature",
    )
    receipt_sig = enc.sign_receipt(net.other.key, net.chain_id, signed, b"\x77" * 32, data)
    before = net.net_balance(ETH, net.node.address)
    net.send(defund(disputed, "signed", enc.signed_resolver(data, receipt_sig)), net.node)
    assert net.net_balance(ETH, net.node.address) - before == E


def test_signed_transfer_cancel_with_an_empty_signature_refunds(net: Net, disputed: Disputed) -> None:
    dispute_transfer(net, disputed, "signed")
    before = net.net_balance(ETH, net.user.address)
    net.send(defund(disputed, "signed", enc.signed_resolver(b"\x00" * 32, b"")), net.node)
    assert net.net_balance(ETH, net.user.address) - before == E


# ---------------------------------------------------------------- Withdraw


def withdraw_call(net: Net, d: Disputed):
    c = (d.channel.address, ETH, net.user.address, 2 * E, 13)
    digest = enc.withdraw_hash(net.chain_id, *c)
    return d.channel.functions.withdraw(c, net.node.sign(digest), net.user.sign(digest))


def responder_resolver(net: Net, d: Disputed) -> bytes:
    digest = enc.withdraw_hash(net.chain_id, d.channel.address, ETH, net.user.address, 2 * E, 13)
    return enc.withdraw_resolver(net.node.sign(digest))


def test_a_countersigned_withdraw_transfer_pays_nothing_and_leaves_through_withdraw(
    net: Net, disputed: Disputed
) -> None:
    dispute_transfer(net, disputed, "withdraw")
    bad = enc.withdraw_resolver(net.other.sign(b"\x00" * 32))
    net.expect_revert(defund(disputed, "withdraw", bad), net.node, "InvalidResponderSignature")
    before = net.net_balance(ETH, net.user.address)
    receipt = net.send(defund(disputed, "withdraw", responder_resolver(net, disputed)), net.node)
    assert net.events(disputed.channel, "TransferDefunded", receipt)[0]["toInitiator"] == 0
    net.send(withdraw_call(net, disputed), net.node)
    assert net.net_balance(ETH, net.user.address) - before == 2 * E


def test_a_withdraw_executed_on_chain_is_not_refunded_again(
    net: Net, disputed: Disputed, advance: Callable[[int], None]
) -> None:
    net.send(withdraw_call(net, disputed), net.node)
    dispute_transfer(net, disputed, "withdraw")
    advance(WINDOW)
    before = net.net_balance(ETH, net.user.address)
    receipt = net.send(defund(disputed, "withdraw", b""), net.other)
    assert net.events(disputed.channel, "TransferDefunded", receipt)[0]["toInitiator"] == 0
    assert net.net_balance(ETH, net.user.address) == before


def test_a_refunded_withdraw_transfer_can_no_longer_execute(
    net: Net, disputed: Disputed, advance: Callable[[int], None]
) -> None:
    dispute_transfer(net, disputed, "withdraw")
    advance(WINDOW)
    before = net.net_balance(ETH, net.user.address)
    net.send(defund(disputed, "withdraw", b""), net.other)
    assert net.net_balance(ETH, net.user.address) - before == 2 * E
    net.expect_revert(withdraw_call(net, disputed), net.node, "WithdrawAlreadyExecuted")


# ---------------------------------------------------------------- conservation


def test_a_dispute_paying_every_transfer_and_balance_conserves_funds(
    net: Net, disputed: Disputed, advance: Callable[[int], None]
) -> None:
    token = net.token.address
    channel = disputed.channel
    parties = (net.node.address, net.user.address)
    start = {(a, w): net.net_balance(a, w) for a in (ETH, token) for w in parties}
    net.send(channel.functions.defundChannel(disputed.state.as_abi(), [ETH, token]), net.other)
    for name in disputed.transfers:
        dispute_transfer(net, disputed, name)
    net.send(defund(disputed, "linked", enc.preimage_resolver(PREIMAGE)), net.node)
    net.send(defund(disputed, "withdraw", responder_resolver(net, disputed)), net.node)
    net.send(withdraw_call(net, disputed), net.other)
    advance(WINDOW)
    for name in ("hashlock", "signed", "linked_token"):
        net.send(defund(disputed, name, b""), net.other)
    assert net.balance(ETH, channel.address) == 0
    assert net.balance(token, channel.address) == 0
    gained = {key: net.net_balance(*key) - value for key, value in start.items()}
    assert gained[(ETH, net.node.address)] + gained[(ETH, net.user.address)] == 10 * E
    assert gained[(token, net.node.address)] + gained[(token, net.user.address)] == 1000
    assert gained[(ETH, net.node.address)] == 4 * E + E  # balance + Linked
    assert gained[(token, net.node.address)] == 300 + 100  # balance + HashLock refund


def dispute_single(
    net: Net, channel: Contract, transfer: enc.TransferState, advance: Callable[[int], None]
) -> None:
    state = net.state(channel, balances=((4 * E, 4 * E),), processed_deposits=((4 * E, 6 * E),), nonce=20)
    net.dispute(channel, state.evolve(merkle_root=transfer.hash()))
    advance(TIMEOUT)
    net.send(channel.functions.disputeTransfer(transfer.as_abi(), []), net.other)


def test_a_withdraw_transfer_whose_commitment_does_not_match_cannot_resolve_to_nothing(
    net: Net, funded: Contract, advance: Callable[[int], None]
) -> None:
    # the commitment withdraws 1 ETH while the transfer locks 2: `withdraw` could never settle it
    digest = enc.withdraw_hash(net.chain_id, funded.address, ETH, net.user.address, E, 21)
    encoded = enc.withdraw_state(
        channel=funded.address, asset_id=ETH, recipient=net.user.address, amount=E, nonce=21,
        initiator=net.user.address, responder=net.node.address, initiator_signature=net.user.sign(digest),
    )  # fmt: skip
    transfer = make_transfer(
        net, funded, definition="WithdrawTransfer", encoded_state=encoded, initiator=net.user,
        responder=net.node, amount=2 * E, create_nonce=21, timeout=WINDOW,
    )  # fmt: skip
    dispute_single(net, funded, transfer, advance)
    fn = funded.functions.defundTransfer
    resolver = enc.withdraw_resolver(net.node.sign(digest))
    net.expect_revert(fn(transfer.as_abi(), encoded, resolver, b""), net.node, "InvalidWithdrawTransfer")
    advance(WINDOW)
    before = net.net_balance(ETH, net.user.address)
    net.send(fn(transfer.as_abi(), encoded, b"", b""), net.other)
    assert net.net_balance(ETH, net.user.address) - before == 2 * E
    assert funded.functions.isWithdrawExecuted(21).call()  # the commitment can no longer pay as well


def test_a_malformed_withdraw_transfer_is_still_refunded(
    net: Net, funded: Contract, advance: Callable[[int], None]
) -> None:
    encoded = b"\x01" * 40
    transfer = make_transfer(
        net, funded, definition="WithdrawTransfer", encoded_state=encoded, initiator=net.user,
        responder=net.node, amount=E, create_nonce=22, timeout=WINDOW,
    )  # fmt: skip
    dispute_single(net, funded, transfer, advance)
    advance(WINDOW)
    before = net.net_balance(ETH, net.user.address)
    net.send(funded.functions.defundTransfer(transfer.as_abi(), encoded, b"", b""), net.other)
    assert net.net_balance(ETH, net.user.address) - before == E
