"""The update rules: what each update does to the state, and who may make it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from connext.protocol import definitions, invariants, signing
from connext.protocol.encoding import ZERO_ADDRESS, ZERO_BYTES32, keccak256
from connext.protocol.errors import (
    BadSignatureError,
    BadTransferStateError,
    ExpiredError,
    InvariantViolationError,
    ProtocolError,
    UnauthorizedError,
    UnknownTransferError,
)
from connext.protocol.types import DefinitionKind, DepositUpdate
from connext.protocol.updates import apply_update
from connext.protocol.validation import countersign, initiate_update, validate_update
from tests.protocol import protocol_helpers as h

ONE = 10**18
PREIMAGE = h.preimage_for("updates")


def test_setup_gives_an_empty_state_at_nonce_one() -> None:
    state = h.setup_state()
    assert (state.nonce, state.asset_ids, state.transfers, state.merkle_root) == (1, (), (), ZERO_BYTES32)
    assert (state.node, state.user, state.timeout) == (h.NODE.address, h.USER.address, h.TIMEOUT)


def test_a_user_may_set_up_the_channel_but_a_stranger_may_not() -> None:
    assert apply_update(None, h.setup_update(initiator=h.USER.address), context=h.context()).nonce == 1
    with pytest.raises(UnauthorizedError):
        apply_update(None, h.setup_update(initiator=h.STRANGER.address), context=h.context())


def test_first_deposit_of_an_asset_appends_it_with_defund_nonce_one() -> None:
    state = h.funded_state()
    update = h.deposit_update(state, asset=h.TOKEN, node=5, user=7, initiator=h.USER.address)
    new = apply_update(state, update, context=h.context(deposits={h.TOKEN: (5, 9)}))
    assert new.asset_ids == (h.ETH, h.TOKEN)
    assert new.balances[1] == (5, 7)
    assert new.processed_deposits[1] == (5, 7)
    assert new.defund_nonces == (1, 1)


def test_deposit_credits_only_the_difference_to_processed_deposits() -> None:
    state = h.funded_state(node=ONE, user=ONE)
    spent = apply_update(
        state,
        h.linked_create(state, initiator=h.USER.address, amount=100, preimage=PREIMAGE),
        context=h.context(),
    )
    update = h.deposit_update(spent, node=ONE, user=ONE + 50)
    new = apply_update(spent, update, context=h.context(deposits={h.ETH: (ONE, ONE + 80)}))
    assert new.balances[0] == (ONE, ONE - 100 + 50)
    assert new.processed_deposits[0] == (ONE, ONE + 50)
    assert new.withdrawn(h.ETH) == 0


def test_create_locks_the_initiators_amount_in_a_transfer_to_the_other_party() -> None:
    state = h.funded_state()
    new = apply_update(
        state,
        h.linked_create(state, initiator=h.NODE.address, amount=30, preimage=PREIMAGE),
        context=h.context(),
    )
    (transfer,) = new.transfers
    assert new.balances[0] == (ONE - 30, ONE)
    assert (transfer.initiator, transfer.responder, transfer.balance) == (
        h.NODE.address,
        h.USER.address,
        (30, 0),
    )
    assert transfer.create_nonce == new.nonce
    assert new.merkle_root == transfer.transfer_hash
    assert new.locked(h.ETH) == 30


def test_transfer_ids_are_bound_to_the_create_nonce() -> None:
    state = h.funded_state()
    payment_id = keccak256(b"same payment")
    first = h.create_update(
        state,
        initiator=h.USER.address,
        definition=h.LINKED,
        encoded_state=h.linked_state(PREIMAGE),
        amount=1,
        payment_id=payment_id,
    )
    state = apply_update(state, first, context=h.context())
    second = replace(first, nonce=state.nonce + 1)
    state = apply_update(state, second, context=h.context())
    assert len({t.transfer_id for t in state.transfers}) == 2


def test_responder_resolves_and_is_paid() -> None:
    state = h.funded_state()
    state = apply_update(
        state,
        h.linked_create(state, initiator=h.USER.address, amount=30, preimage=PREIMAGE),
        context=h.context(),
    )
    transfer_id = state.transfers[0].transfer_id
    new = apply_update(
        state,
        h.resolve_update(state, transfer_id=transfer_id, initiator=h.NODE.address, resolver=PREIMAGE),
        context=h.context(),
    )
    assert new.balances[0] == (ONE + 30, ONE - 30)
    assert new.transfers == ()
    assert new.merkle_root == ZERO_BYTES32


def test_responder_cancel_refunds_the_initiator() -> None:
    state = h.funded_state()
    state = apply_update(
        state,
        h.linked_create(state, initiator=h.USER.address, amount=30, preimage=PREIMAGE),
        context=h.context(),
    )
    new = apply_update(
        state,
        h.resolve_update(
            state, transfer_id=state.transfers[0].transfer_id, initiator=h.NODE.address, resolver=ZERO_BYTES32
        ),
        context=h.context(),
    )
    assert new.balances[0] == (ONE, ONE)


def _withdraw_created(amount: int = 400) -> tuple[h.ChannelState, bytes]:
    state = h.funded_state()
    update = h.create_update(
        state,
        initiator=h.USER.address,
        definition=h.WITHDRAW,
        encoded_state=h.withdraw_state(state, initiator=h.USER, amount=amount),
        amount=amount,
    )
    new = apply_update(state, update, context=h.context())
    return new, new.transfers[0].transfer_id


def test_withdraw_resolve_takes_the_amount_out_of_the_channel_once() -> None:
    state, transfer_id = _withdraw_created(400)
    resolver = h.withdraw_resolver(state, transfer_id, h.NODE)
    new = apply_update(
        state,
        h.resolve_update(state, transfer_id=transfer_id, initiator=h.NODE.address, resolver=resolver),
        context=h.context(),
    )
    assert new.balances[0] == (ONE, ONE - 400)
    assert new.processed_deposits[0] == (ONE, ONE)
    assert new.withdrawn(h.ETH) == 400
    node_plus_user = sum(new.balances[0])
    assert node_plus_user + new.locked(h.ETH) == sum(new.processed_deposits[0]) - new.withdrawn(h.ETH)


def test_withdraw_the_initiator_cannot_resolve_with_its_own_signature() -> None:
    state, transfer_id = _withdraw_created()
    resolver = h.withdraw_resolver(state, transfer_id, h.USER)
    with pytest.raises(UnauthorizedError):
        apply_update(
            state,
            h.resolve_update(state, transfer_id=transfer_id, initiator=h.USER.address, resolver=resolver),
            context=h.context(),
        )


def test_withdraw_cancel_returns_the_amount_to_the_initiator() -> None:
    state, transfer_id = _withdraw_created(400)
    resolver = definitions.WithdrawResolver(b"").encode()
    new = apply_update(
        state,
        h.resolve_update(state, transfer_id=transfer_id, initiator=h.NODE.address, resolver=resolver),
        context=h.context(),
    )
    assert new.balances[0] == (ONE, ONE)
    assert new.withdrawn(h.ETH) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"nonce": 99},
        {"asset": h.TOKEN},
        {"recipient": ZERO_ADDRESS},
        {"recipient": h.CHANNEL},
    ],
    ids=["other-nonce", "other-asset", "zero-recipient", "channel-recipient"],
)
def test_withdraw_must_be_bound_to_this_channel_asset_and_nonce(overrides: dict[str, object]) -> None:
    state = h.funded_state()
    encoded = h.withdraw_state(state, initiator=h.USER, amount=5, **overrides)  # type: ignore[arg-type]
    update = h.create_update(
        state, initiator=h.USER.address, definition=h.WITHDRAW, encoded_state=encoded, amount=5
    )
    with pytest.raises(BadTransferStateError):
        apply_update(state, update, context=h.context())


def test_withdraw_for_the_counterparty_is_refused() -> None:
    state = h.funded_state()
    encoded = h.withdraw_state(state, initiator=h.NODE, amount=5)
    update = h.create_update(
        state, initiator=h.USER.address, definition=h.WITHDRAW, encoded_state=encoded, amount=5
    )
    with pytest.raises(BadTransferStateError):
        apply_update(state, update, context=h.context())


def test_hashlock_already_expired_at_create_is_refused() -> None:
    state = h.funded_state()
    update = h.create_update(
        state,
        initiator=h.USER.address,
        definition=h.HASHLOCK,
        encoded_state=h.hashlock_state(PREIMAGE, h.NOW),
        amount=1,
    )
    with pytest.raises(ExpiredError):
        apply_update(state, update, context=h.context())


def test_signed_transfer_full_cycle_pays_the_responder() -> None:
    state = h.funded_state()
    payment_id = keccak256(b"signed")
    state = apply_update(
        state,
        h.create_update(
            state,
            initiator=h.NODE.address,
            definition=h.SIGNED,
            encoded_state=h.signed_state(payment_id),
            amount=9,
            payment_id=payment_id,
        ),
        context=h.context(),
    )
    resolver = h.receipt_resolver(payment_id, keccak256(b"proof of delivery"))
    new = apply_update(
        state,
        h.resolve_update(
            state, transfer_id=state.transfers[0].transfer_id, initiator=h.USER.address, resolver=resolver
        ),
        context=h.context(),
    )
    assert new.balances[0] == (ONE - 9, ONE + 9)


def test_validate_update_returns_the_state_the_initiator_signed() -> None:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=3, preimage=PREIMAGE)
    expected, user_signature = initiate_update(state, update, h.USER, context=h.context())
    assert validate_update(state, update, user_signature, context=h.context()) == expected
    new, node_signature = countersign(state, update, user_signature, h.NODE, context=h.context())
    signing.verify_state_signatures(new, node_signature, user_signature)


def test_a_signature_over_a_different_state_is_refused() -> None:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=3, preimage=PREIMAGE)
    other = h.linked_create(state, initiator=h.USER.address, amount=4, preimage=PREIMAGE)
    _, signature = initiate_update(state, other, h.USER, context=h.context())
    with pytest.raises(BadSignatureError):
        validate_update(state, update, signature, context=h.context())


def test_the_initiator_cannot_countersign_its_own_update() -> None:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=3, preimage=PREIMAGE)
    _, signature = initiate_update(state, update, h.USER, context=h.context())
    with pytest.raises(BadSignatureError):
        countersign(state, update, signature, h.USER, context=h.context())
    with pytest.raises(BadSignatureError):
        initiate_update(state, update, h.NODE, context=h.context())


def test_a_resolve_that_loses_funds_outside_a_withdraw_breaks_the_invariant() -> None:
    state = h.funded_state()
    state = apply_update(
        state,
        h.linked_create(state, initiator=h.USER.address, amount=30, preimage=PREIMAGE),
        context=h.context(),
    )
    update = h.resolve_update(
        state, transfer_id=state.transfers[0].transfer_id, initiator=h.NODE.address, resolver=PREIMAGE
    )
    lossy = replace(state, nonce=state.nonce + 1, transfers=(), balances=((ONE + 10, ONE - 30),))
    with pytest.raises(InvariantViolationError):
        invariants.check_transition(state, lossy, update, definition_kind=DefinitionKind.LINKED)
    invariants.check_transition(state, lossy, update, definition_kind=DefinitionKind.WITHDRAW)


def test_a_deposit_that_credits_more_than_it_processes_breaks_the_invariant() -> None:
    state = h.funded_state()
    update = DepositUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=h.NODE.address,
        asset_id=h.ETH,
        total_deposits_node=ONE + 1,
        total_deposits_user=ONE,
    )
    inflated = replace(
        state, nonce=state.nonce + 1, balances=((ONE + 2, ONE),), processed_deposits=((ONE + 2, ONE),)
    )
    invariants.check_transition(state, inflated, update)  # consistent with itself...
    wrong = replace(inflated, balances=((ONE + 3, ONE),), processed_deposits=((ONE + 2, ONE),))
    with pytest.raises(InvariantViolationError):
        invariants.check_transition(state, wrong, update)


@pytest.mark.parametrize(
    "forge",
    [
        lambda s: replace(s, balances=((1, 2),) * 2),
        lambda s: replace(s, defund_nonces=(0,)),
        lambda s: replace(s, user=s.node),
        lambda s: replace(s, nonce=0),
        lambda s: replace(s, transfers=(replace(s.transfers[0], create_nonce=s.nonce + 1),)),
        lambda s: replace(s, transfers=(replace(s.transfers[0], balance=(1, 1)),)),
        lambda s: replace(s, transfers=(replace(s.transfers[0], responder=h.STRANGER.address),)),
        lambda s: replace(s, transfers=(replace(s.transfers[0], asset_id=h.TOKEN),)),
        lambda s: replace(s, transfers=(replace(s.transfers[0], channel_address=h.TOKEN),)),
        lambda s: replace(s, transfers=(s.transfers[0], s.transfers[0])),
    ],
    ids=[
        "list-lengths",
        "defund-nonce-0",
        "node-is-user",
        "nonce-0",
        "future-transfer",
        "transfer-responder-balance",
        "transfer-stranger",
        "transfer-unknown-asset",
        "transfer-other-channel",
        "duplicate-transfer",
    ],
)
def test_check_state_rejects_forged_states(forge: object) -> None:
    state = h.funded_state()
    state = apply_update(
        state,
        h.linked_create(state, initiator=h.USER.address, amount=30, preimage=PREIMAGE),
        context=h.context(),
    )
    invariants.check_state(state)
    with pytest.raises(InvariantViolationError):
        invariants.check_state(forge(state))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"initiator": h.USER.address.lower()}, "malformed", "initiator"),
        ({"asset_id": "0x00"}, "malformed", "asset_id"),
        ({"payment_id": b"short"}, "malformed", "payment_id"),
        ({"encoded_state": "0x00"}, "malformed", "encoded_state"),
        ({"nonce": True}, "malformed", "nonce"),
        ({"transfer_timeout": -1}, "malformed", "transfer_timeout"),
        ({"amount": -1}, "amount_out_of_range", "amount"),
        ({"amount": 2**256}, "amount_out_of_range", "amount"),
        ({"transfer_timeout": 0}, "bad_timeout", "transfer_timeout"),
    ],
)
def test_ill_typed_update_fields_are_rejected_by_name(
    overrides: dict[str, object], code: str, field: str
) -> None:
    state = h.funded_state()
    update = replace(
        h.linked_create(state, initiator=h.USER.address, amount=1, preimage=PREIMAGE), **overrides
    )
    with pytest.raises(ProtocolError) as raised:
        apply_update(state, update, context=h.context())
    assert (raised.value.code, raised.value.field) == (code, field)


def test_merkle_proof_of_an_unknown_transfer_is_refused() -> None:
    with pytest.raises(UnknownTransferError):
        h.funded_state().merkle_proof(keccak256(b"none"))
