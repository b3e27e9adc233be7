"""Every error code has a trigger here, and the table must cover `ERROR_CODES` exactly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from connext.protocol import signing
from connext.protocol.encoding import keccak256
from connext.protocol.errors import ERROR_CODES, ProtocolError
from connext.protocol.serialization import channel_state_from_json, channel_state_to_json, update_from_json
from connext.protocol.types import AssetDefund, ChainDispute, ResumeUpdate, TransferState
from connext.protocol.updates import MAX_TIMEOUT, apply_update
from connext.protocol.validation import validate_update
from tests.protocol import protocol_helpers as h

PREIMAGE = h.preimage_for("error-codes")


def _with_linked_transfer() -> tuple[h.ChannelState, bytes]:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=10, preimage=PREIMAGE)
    new = apply_update(state, update, context=h.context())
    return new, new.transfers[0].transfer_id


def malformed() -> None:
    update_from_json(
        {
            "type": "deposit",
            "channelAddress": h.CHANNEL,
            "nonce": "01",
            "initiator": h.NODE.address,
            "assetId": h.ETH,
            "totalDepositsNode": "1",
            "totalDepositsUser": "0",
        }
    )


def stale_nonce() -> None:
    state = h.funded_state()
    update = replace(h.deposit_update(state, node=10**18, user=10**18 + 1), nonce=state.nonce)
    apply_update(state, update, context=h.context(deposits={h.ETH: (10**18, 10**18 + 1)}))


def nonce_gap() -> None:
    state = h.funded_state()
    update = replace(h.deposit_update(state, node=10**18, user=10**18 + 1), nonce=state.nonce + 2)
    apply_update(state, update, context=h.context(deposits={h.ETH: (10**18, 10**18 + 1)}))


def wrong_channel() -> None:
    state = h.funded_state()
    update = replace(h.deposit_update(state, node=10**18, user=10**18 + 1), channel_address=h.TOKEN)
    apply_update(state, update, context=h.context(deposits={h.ETH: (10**18, 10**18 + 1)}))


def channel_exists() -> None:
    apply_update(h.setup_state(), h.setup_update(), context=h.context())


def no_channel() -> None:
    state = h.setup_state()
    apply_update(None, h.deposit_update(state, node=1), context=h.context(deposits={h.ETH: (1, 0)}))


def invalid_setup() -> None:
    apply_update(None, h.setup_update(user=h.NODE.address), context=h.context())


def bad_timeout() -> None:
    apply_update(None, h.setup_update(timeout=MAX_TIMEOUT + 1), context=h.context())


def unauthorized() -> None:
    state, transfer_id = _with_linked_transfer()
    update = h.resolve_update(state, transfer_id=transfer_id, initiator=h.USER.address, resolver=PREIMAGE)
    apply_update(state, update, context=h.context())


def bad_signature() -> None:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=10, preimage=PREIMAGE)
    new = apply_update(state, update, context=h.context())
    validate_update(state, update, signing.sign_state(new, h.NODE), context=h.context())


def amount_out_of_range() -> None:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=0, preimage=PREIMAGE)
    apply_update(state, update, context=h.context())


def insufficient_balance() -> None:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=10**18 + 1, preimage=PREIMAGE)
    apply_update(state, update, context=h.context())


def unknown_asset() -> None:
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=1, preimage=PREIMAGE, asset=h.TOKEN)
    apply_update(state, update, context=h.context())


def unknown_definition() -> None:
    state = h.funded_state()
    update = h.create_update(
        state, initiator=h.USER.address, definition=h.TOKEN, encoded_state=h.linked_state(PREIMAGE), amount=1
    )
    apply_update(state, update, context=h.context())


def bad_transfer_state() -> None:
    state = h.funded_state()
    update = h.create_update(
        state, initiator=h.USER.address, definition=h.LINKED, encoded_state=b"\x01" * 31, amount=1
    )
    apply_update(state, update, context=h.context())


def duplicate_transfer() -> None:
    # Unreachable through the rules (ids are bound to create nonces); a forged state can hold one.
    state = h.funded_state()
    update = h.linked_create(state, initiator=h.USER.address, amount=1, preimage=PREIMAGE)
    forged = TransferState(
        channel_address=state.channel_address,
        payment_id=update.payment_id,
        create_nonce=update.nonce,
        definition=h.LINKED,
        initiator=h.USER.address,
        responder=h.NODE.address,
        asset_id=h.ETH,
        balance=(1, 0),
        transfer_timeout=h.TRANSFER_TIMEOUT,
        encoded_state=h.linked_state(PREIMAGE),
    )
    apply_update(replace(state, transfers=(forged,)), update, context=h.context())


def unknown_transfer() -> None:
    state, _ = _with_linked_transfer()
    update = h.resolve_update(
        state, transfer_id=keccak256(b"nope"), initiator=h.NODE.address, resolver=PREIMAGE
    )
    apply_update(state, update, context=h.context())


def bad_resolver() -> None:
    state, transfer_id = _with_linked_transfer()
    update = h.resolve_update(
        state, transfer_id=transfer_id, initiator=h.NODE.address, resolver=keccak256(b"x")
    )
    apply_update(state, update, context=h.context())


def expired() -> None:
    state = h.funded_state()
    update = h.create_update(
        state,
        initiator=h.USER.address,
        definition=h.HASHLOCK,
        encoded_state=h.hashlock_state(PREIMAGE, h.NOW + 60),
        amount=1,
    )
    new = apply_update(state, update, context=h.context())
    resolve = h.resolve_update(
        new, transfer_id=new.transfers[0].transfer_id, initiator=h.NODE.address, resolver=PREIMAGE
    )
    apply_update(new, resolve, context=h.context(now=h.NOW + 60))


def bad_deposit() -> None:
    state = h.funded_state()
    update = h.deposit_update(state, node=10**18 - 1, user=10**18 + 5)
    apply_update(state, update, context=h.context(deposits={h.ETH: (10**18, 10**18 + 5)}))


def no_new_deposit() -> None:
    state = h.funded_state()
    update = h.deposit_update(state, node=10**18, user=10**18)
    apply_update(state, update, context=h.context(deposits={h.ETH: (10**18, 10**18)}))


def deposit_exceeds_chain() -> None:
    state = h.funded_state()
    update = h.deposit_update(state, node=10**18, user=10**18 + 2)
    apply_update(state, update, context=h.context(deposits={h.ETH: (10**18, 10**18 + 1)}))


def _resume_after_dispute(*, chain_time: int) -> None:
    state = h.funded_state()
    update = ResumeUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=h.NODE.address,
        defunds=(AssetDefund(asset_id=h.ETH, defund_nonce=1, payout=(10**18, 10**18 + 1)),),
    )
    dispute = ChainDispute(
        state_hash=state.state_hash,
        defund_expiry=h.NOW,
        chain_time=chain_time,
        defunds={h.ETH: AssetDefund(asset_id=h.ETH, defund_nonce=1, payout=(10**18, 10**18))},
    )
    apply_update(state, update, context=replace(h.context(), dispute=dispute))


def dispute_not_over() -> None:
    _resume_after_dispute(chain_time=h.NOW - 1)


def dispute_mismatch() -> None:
    _resume_after_dispute(chain_time=h.NOW)  # the chain paid the user 1 wei less than the update says


def same_asset() -> None:
    state = h.two_asset_state()
    update = h.swap_update(state, initiator=h.USER.address, give_amount=1, take_asset=h.ETH, take_amount=1)
    apply_update(state, update, context=h.context())


def invariant_violated() -> None:
    document = channel_state_to_json(h.funded_state())
    document["balances"] = [[str(10**18), str(10**18 + 1)]]
    channel_state_from_json(document)


def bad_ciphertext() -> None:
    from connext.protocol import ecies

    ecies.decrypt(b"\x01" * 32, b"\x04" + b"\x00" * 200)


TRIGGERS: dict[str, Callable[[], None]] = {
    "malformed": malformed,
    "stale_nonce": stale_nonce,
    "nonce_gap": nonce_gap,
    "wrong_channel": wrong_channel,
    "channel_exists": channel_exists,
    "no_channel": no_channel,
    "invalid_setup": invalid_setup,
    "bad_timeout": bad_timeout,
    "unauthorized": unauthorized,
    "bad_signature": bad_signature,
    "amount_out_of_range": amount_out_of_range,
    "insufficient_balance": insufficient_balance,
    "unknown_asset": unknown_asset,
    "unknown_definition": unknown_definition,
    "bad_transfer_state": bad_transfer_state,
    "duplicate_transfer": duplicate_transfer,
    "unknown_transfer": unknown_transfer,
    "bad_resolver": bad_resolver,
    "expired": expired,
    "bad_deposit": bad_deposit,
    "no_new_deposit": no_new_deposit,
    "deposit_exceeds_chain": deposit_exceeds_chain,
    "dispute_not_over": dispute_not_over,
    "dispute_mismatch": dispute_mismatch,
    "invariant_violated": invariant_violated,
    "bad_ciphertext": bad_ciphertext,
    "same_asset": same_asset,
}


def test_every_error_code_has_a_trigger() -> None:
    assert set(TRIGGERS) == ERROR_CODES


@pytest.mark.parametrize("code", sorted(TRIGGERS))
def test_trigger_raises_its_code(code: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        TRIGGERS[code]()
    assert raised.value.code == code
    assert raised.value.message


def test_errors_render_code_field_and_message() -> None:
    with pytest.raises(ProtocolError) as raised:
        malformed()
    assert str(raised.value).startswith("malformed (nonce): ")
    assert raised.value.field == "nonce"
