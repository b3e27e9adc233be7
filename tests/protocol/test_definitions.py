"""The definition mirrors resolve as docs/protocol.md says, cancel on the empty resolver, and revert otherwise."""

from __future__ import annotations

import pytest

from connext.protocol import definitions, signing
from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.errors import BadResolverError, BadTransferStateError, ExpiredError
from connext.protocol.types import DefinitionKind, WithdrawCommitment
from connext.protocol.updates import apply_update
from tests.protocol import protocol_helpers as h

PREIMAGE = h.preimage_for("secret")
AMOUNT = 1000


def resolve(kind: DefinitionKind, state: bytes, resolver: bytes, *, now: int = h.NOW) -> tuple[int, int]:
    definition = {v: k for k, v in h.DEFINITIONS.items()}[kind]
    return definitions.resolve(
        kind, (AMOUNT, 0), state, resolver, chain_id=h.CHAIN_ID, definition=definition, now=now
    )


def test_linked_pays_the_responder_on_the_right_preimage() -> None:
    assert resolve(DefinitionKind.LINKED, h.linked_state(PREIMAGE), PREIMAGE) == (0, AMOUNT)


def test_linked_refunds_on_the_zero_preimage() -> None:
    assert resolve(DefinitionKind.LINKED, h.linked_state(PREIMAGE), ZERO_BYTES32) == (AMOUNT, 0)


def test_linked_with_wrong_preimage_reverts() -> None:
    with pytest.raises(BadResolverError):
        resolve(DefinitionKind.LINKED, h.linked_state(PREIMAGE), keccak256(PREIMAGE))


def test_hashlock_pays_before_expiry_and_reverts_at_expiry() -> None:
    state = h.hashlock_state(PREIMAGE, h.NOW + 10)
    assert resolve(DefinitionKind.HASHLOCK, state, PREIMAGE, now=h.NOW + 9) == (0, AMOUNT)
    with pytest.raises(ExpiredError):
        resolve(DefinitionKind.HASHLOCK, state, PREIMAGE, now=h.NOW + 10)


def test_hashlock_cancel_works_after_expiry() -> None:
    state = h.hashlock_state(PREIMAGE, h.NOW + 10)
    assert resolve(DefinitionKind.HASHLOCK, state, ZERO_BYTES32, now=h.NOW + 100) == (AMOUNT, 0)


def test_signed_pays_on_the_signers_receipt_and_reverts_on_anothers() -> None:
    payment_id = keccak256(b"pay")
    state = h.signed_state(payment_id)
    data = keccak256(b"receipt data")
    assert resolve(DefinitionKind.SIGNED, state, h.receipt_resolver(payment_id, data)) == (0, AMOUNT)
    with pytest.raises(BadResolverError):
        resolve(DefinitionKind.SIGNED, state, h.receipt_resolver(payment_id, data, h.STRANGER))
    with pytest.raises(BadResolverError):
        resolve(DefinitionKind.SIGNED, state, h.receipt_resolver(keccak256(b"other"), data))


def test_signed_receipt_is_bound_to_the_definition_address_and_chain() -> None:
    payment_id = keccak256(b"pay")
    data = keccak256(b"d")
    signature = signing.sign_receipt(h.CHAIN_ID + 1, h.SIGNED, payment_id, data, h.RECEIPT_SIGNER)
    with pytest.raises(BadResolverError):
        resolve(
            DefinitionKind.SIGNED,
            h.signed_state(payment_id),
            definitions.SignedResolver(data, signature).encode(),
        )


def test_signed_refunds_on_the_empty_signature() -> None:
    resolver = definitions.SignedResolver(keccak256(b"anything"), b"").encode()
    assert resolve(DefinitionKind.SIGNED, h.signed_state(keccak256(b"p")), resolver) == (AMOUNT, 0)


def test_withdraw_pays_out_nothing_in_channel_when_the_responder_signs() -> None:
    state = h.funded_state()
    encoded = h.withdraw_state(state, initiator=h.USER, amount=AMOUNT)
    withdraw = definitions.WithdrawState.decode(encoded)
    definitions.create(DefinitionKind.WITHDRAW, (AMOUNT, 0), encoded, chain_id=h.CHAIN_ID)
    signature = signing.sign_withdraw(withdraw.commitment(h.CHAIN_ID), h.NODE)
    resolver = definitions.WithdrawResolver(signature).encode()
    assert resolve(DefinitionKind.WITHDRAW, encoded, resolver) == (0, 0)
    assert resolve(DefinitionKind.WITHDRAW, encoded, definitions.WithdrawResolver(b"").encode()) == (
        AMOUNT,
        0,
    )
    wrong = signing.sign_withdraw(withdraw.commitment(h.CHAIN_ID), h.STRANGER)
    with pytest.raises(BadResolverError):
        resolve(DefinitionKind.WITHDRAW, encoded, definitions.WithdrawResolver(wrong).encode())


def test_withdraw_create_requires_the_amount_and_the_initiators_signature() -> None:
    state = h.funded_state()
    encoded = h.withdraw_state(state, initiator=h.USER, amount=AMOUNT)
    with pytest.raises(BadTransferStateError):
        definitions.create(DefinitionKind.WITHDRAW, (AMOUNT + 1, 0), encoded, chain_id=h.CHAIN_ID)
    with pytest.raises(BadTransferStateError):
        definitions.create(DefinitionKind.WITHDRAW, (AMOUNT, 0), encoded, chain_id=h.CHAIN_ID + 1)
    forged = definitions.WithdrawState.decode(encoded)
    commitment = WithdrawCommitment(
        chain_id=h.CHAIN_ID,
        channel_address=forged.channel_address,
        asset_id=forged.asset_id,
        recipient=forged.recipient,
        amount=forged.amount,
        nonce=forged.nonce,
    )
    by_node = definitions.WithdrawState(
        **{**forged.__dict__, "initiator_signature": signing.sign_withdraw(commitment, h.NODE)}
    ).encode()
    with pytest.raises(BadTransferStateError):
        definitions.create(DefinitionKind.WITHDRAW, (AMOUNT, 0), by_node, chain_id=h.CHAIN_ID)


@pytest.mark.parametrize("kind", list(DefinitionKind))
@pytest.mark.parametrize("balance", [(0, 0), (5, 1)])
def test_create_requires_a_positive_initiator_balance_only(
    kind: DefinitionKind, balance: tuple[int, int]
) -> None:
    with pytest.raises(BadTransferStateError):
        definitions.create(kind, balance, h.linked_state(PREIMAGE), chain_id=h.CHAIN_ID)


@pytest.mark.parametrize(
    ("kind", "encoded"),
    [
        (DefinitionKind.LINKED, b"\x00" * 31),
        (DefinitionKind.LINKED, b"\x00" * 33),
        (DefinitionKind.HASHLOCK, b"\x11" * 32),
        (DefinitionKind.HASHLOCK, keccak256(PREIMAGE) + bytes(32)),
        (DefinitionKind.SIGNED, b"\x01" + bytes(63)),
        (DefinitionKind.WITHDRAW, b"\x00" * 64),
    ],
    ids=[
        "linked-short",
        "linked-long",
        "hashlock-short",
        "hashlock-zero-expiry",
        "signed-dirty-address",
        "withdraw",
    ],
)
def test_create_rejects_malformed_or_non_canonical_states(kind: DefinitionKind, encoded: bytes) -> None:
    with pytest.raises(BadTransferStateError):
        definitions.create(kind, (1, 0), encoded, chain_id=h.CHAIN_ID)


def test_non_canonical_dynamic_resolver_is_rejected() -> None:
    resolver = definitions.SignedResolver(keccak256(b"d"), b"").encode()
    with pytest.raises(BadResolverError):
        resolve(DefinitionKind.SIGNED, h.signed_state(keccak256(b"p")), resolver + bytes(32))


def test_preimage_resolver_must_be_32_bytes() -> None:
    with pytest.raises(BadResolverError):
        resolve(DefinitionKind.LINKED, h.linked_state(PREIMAGE), PREIMAGE + b"\x00")


@pytest.mark.parametrize(
    ("kind", "state_bytes"),
    [
        (DefinitionKind.LINKED, h.linked_state(ZERO_BYTES32)),
        (DefinitionKind.HASHLOCK, h.hashlock_state(ZERO_BYTES32, h.NOW + 10)),
    ],
)
def test_a_lock_that_the_cancel_value_opens_is_not_accepted(kind: DefinitionKind, state_bytes: bytes) -> None:
    state = h.funded_state()
    definition = {v: k for k, v in h.DEFINITIONS.items()}[kind]
    update = h.create_update(
        state, initiator=h.USER.address, definition=definition, encoded_state=state_bytes, amount=1
    )
    with pytest.raises(BadTransferStateError):
        apply_update(state, update, context=h.context())


def test_withdraw_resolve_rechecks_the_initiator_signature_as_the_contract_does() -> None:
    state = h.funded_state()
    withdraw = definitions.WithdrawState.decode(h.withdraw_state(state, initiator=h.USER, amount=AMOUNT))
    commitment = withdraw.commitment(h.CHAIN_ID)
    forged = definitions.WithdrawState(
        **{**withdraw.__dict__, "initiator_signature": signing.sign_withdraw(commitment, h.STRANGER)}
    ).encode()
    resolver = definitions.WithdrawResolver(signing.sign_withdraw(commitment, h.NODE)).encode()
    with pytest.raises(BadTransferStateError):
        resolve(DefinitionKind.WITHDRAW, forged, resolver)


def test_a_paid_transfer_pays_the_whole_balance_to_the_responder() -> None:
    out = definitions.resolve(
        DefinitionKind.LINKED,
        (AMOUNT, 7),
        h.linked_state(PREIMAGE),
        PREIMAGE,
        chain_id=h.CHAIN_ID,
        definition=h.LINKED,
        now=h.NOW,
    )
    assert out == (0, AMOUNT + 7)
