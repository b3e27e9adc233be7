"""The transfer definitions called directly: `create` checks and `resolve` outcomes."""

from __future__ import annotations

import pytest
from web3.contract import Contract

from tests.contracts import encoding as enc
from tests.contracts.net import ETH, Net

PREIMAGE = b"\x09" * 32
ZERO_LOCK = enc.lock_hash(bytes(32))


def definition(net: Net, name: str) -> Contract:
    return net.contract(name, net.definition(name))


@pytest.mark.parametrize("name", ["LinkedTransfer", "HashLockTransfer", "SignedTransfer", "WithdrawTransfer"])
@pytest.mark.parametrize("balance", [(0, 0), (5, 1), (0, 5)])
def test_create_requires_an_amount_for_the_initiator_only(
    net: Net, name: str, balance: tuple[int, int]
) -> None:
    encoded = enc.hashlock_state(enc.lock_hash(PREIMAGE), 1) if name == "HashLockTransfer" else bytes(32 * 9)
    net.expect_revert(
        definition(net, name).functions.create(list(balance), encoded), net.other, "InvalidInitialBalance"
    )


def test_linked_create_and_resolve(net: Net) -> None:
    linked = definition(net, "LinkedTransfer").functions
    state = enc.linked_state(enc.lock_hash(PREIMAGE))
    assert linked.create([5, 0], state).call() is True
    for lock in (bytes(32), ZERO_LOCK):
        net.expect_revert(linked.create([5, 0], enc.linked_state(lock)), net.other, "InvalidLockHash")
    assert linked.resolve([5, 0], state, enc.preimage_resolver(PREIMAGE)).call() == [0, 5]
    assert linked.resolve([5, 0], state, enc.preimage_resolver(bytes(32))).call() == [5, 0]
    net.expect_revert(
        linked.resolve([5, 0], state, enc.preimage_resolver(b"\x01" * 32)), net.other, "InvalidPreimage"
    )


def test_hashlock_create_and_resolve_around_the_expiry(net: Net) -> None:
    hashlock = definition(net, "HashLockTransfer").functions
    now = net.now()
    state = enc.hashlock_state(enc.lock_hash(PREIMAGE), now + 1000)
    assert hashlock.create([5, 0], state).call() is True
    net.expect_revert(
        hashlock.create([5, 0], enc.hashlock_state(enc.lock_hash(PREIMAGE), 0)), net.other, "InvalidExpiry"
    )
    net.expect_revert(
        hashlock.create([5, 0], enc.hashlock_state(ZERO_LOCK, now + 1)), net.other, "InvalidLockHash"
    )
    assert hashlock.resolve([5, 0], state, enc.preimage_resolver(PREIMAGE)).call() == [0, 5]
    expired = enc.hashlock_state(enc.lock_hash(PREIMAGE), now - 1)
    net.expect_revert(
        hashlock.resolve([5, 0], expired, enc.preimage_resolver(PREIMAGE)), net.other, "Expired"
    )
    assert hashlock.resolve([5, 0], expired, enc.preimage_resolver(bytes(32))).call() == [5, 0]


def test_signed_create_and_resolve_bind_chain_and_contract(net: Net) -> None:
    signed = definition(net, "SignedTransfer")
    payment_id, data = b"\x01" * 32, b"\x02" * 32
    state = enc.signed_state(net.other.address, payment_id)
    assert signed.functions.create([5, 0], state).call() is True
    net.expect_revert(
        signed.functions.create([5, 0], enc.signed_state(ETH, payment_id)), net.other, "InvalidSigner"
    )
    good = enc.sign_receipt(net.other.key, net.chain_id, signed.address, payment_id, data)
    assert signed.functions.resolve([5, 0], state, enc.signed_resolver(data, good)).call() == [0, 5]
    for bad in (
        enc.sign_receipt(net.other.key, net.chain_id + 1, signed.address, payment_id, data),
        enc.sign_receipt(net.other.key, net.chain_id, net.token.address, payment_id, data),
        enc.sign_receipt(net.other.key, net.chain_id, signed.address, payment_id, b"\x03" * 32),
    ):
        net.expect_revert(
            signed.functions.resolve([5, 0], state, enc.signed_resolver(data, bad)),
            net.other,
            "InvalidReceiptSignature",
        )
    net.expect_revert(
        signed.functions.resolve([5, 0], state, enc.signed_resolver(data, enc.high_s(good))),
        net.other,
        "ECDSAInvalidSignatureS",
    )
    assert signed.functions.resolve([5, 0], state, enc.signed_resolver(data, b"")).call() == [5, 0]


def test_withdraw_create_and_resolve(net: Net) -> None:
    withdraw = definition(net, "WithdrawTransfer").functions
    channel = net.channel_address()
    digest = enc.withdraw_hash(net.chain_id, channel, ETH, net.user.address, 7, 4)

    def state(amount: int = 7, signature: bytes | None = None) -> bytes:
        return enc.withdraw_state(
            channel=channel, asset_id=ETH, recipient=net.user.address, amount=amount, nonce=4,
            initiator=net.user.address, responder=net.node.address,
            initiator_signature=net.user.sign(digest) if signature is None else signature,
        )  # fmt: skip

    assert withdraw.create([7, 0], state()).call() is True
    net.expect_revert(withdraw.create([7, 0], state(amount=6)), net.other, "AmountMismatch")
    net.expect_revert(
        withdraw.create([7, 0], state(signature=net.node.sign(digest))),
        net.other,
        "InvalidInitiatorSignature",
    )
    resolver = enc.withdraw_resolver(net.node.sign(digest))
    assert withdraw.resolve([7, 0], state(), resolver).call() == [0, 0]
    assert withdraw.resolve([7, 0], state(), enc.withdraw_resolver(b"")).call() == [7, 0]
    wrong = enc.withdraw_resolver(net.user.sign(digest))
    net.expect_revert(withdraw.resolve([7, 0], state(), wrong), net.other, "InvalidResponderSignature")
    unsigned = state(signature=net.other.sign(digest))
    net.expect_revert(withdraw.resolve([7, 0], unsigned, resolver), net.other, "InvalidInitiatorSignature")
    other_chain = enc.withdraw_hash(net.chain_id + 1, channel, ETH, net.user.address, 7, 4)
    net.expect_revert(
        withdraw.resolve([7, 0], state(), enc.withdraw_resolver(net.node.sign(other_chain))),
        net.other,
        "InvalidResponderSignature",
    )
