"""The responder's side of an update: decide whether the state the initiator signed is safe to sign.

The responder never trusts a state it is sent. It re-derives the new state from its own latest state and
the update (`apply_update`, every rule and invariant), then checks that the initiator signed exactly that
state's hash. Only then does it countersign.
"""

from __future__ import annotations

from connext.protocol import signing
from connext.protocol.errors import BadSignatureError
from connext.protocol.signing import Signer
from connext.protocol.types import ChannelState, Update, UpdateContext
from connext.protocol.updates import apply_update


def validate_update(
    previous: ChannelState | None,
    update: Update,
    initiator_signature: bytes,
    *,
    context: UpdateContext,
) -> ChannelState:
    """The new state to countersign, or a `ProtocolError` (then nothing may be signed or stored)."""
    new = apply_update(previous, update, context=context)
    signer = signing.recover_signer(new, initiator_signature)
    if signer != update.initiator:
        raise BadSignatureError(
            f"the initiator signature is by {signer}, not {update.initiator}", field="initiator_signature"
        )
    return new


def countersign(
    previous: ChannelState | None,
    update: Update,
    initiator_signature: bytes,
    key: Signer | bytes,
    *,
    context: UpdateContext,
) -> tuple[ChannelState, bytes]:
    """`validate_update`, then the responder's own signature on the new state."""
    signer = signing.as_signer(key)
    new = validate_update(previous, update, initiator_signature, context=context)
    if new.party(signer.address) is None or signer.address == update.initiator:
        raise BadSignatureError("the responder key is not the channel's other party", field="key")
    return new, signing.sign_state(new, signer)


def initiate_update(
    previous: ChannelState | None, update: Update, key: Signer | bytes, *, context: UpdateContext
) -> tuple[ChannelState, bytes]:
    """The initiator's side: apply its own update and sign the result."""
    signer = signing.as_signer(key)
    if signer.address != update.initiator:
        raise BadSignatureError("the key is not the update's initiator", field="key")
    new = apply_update(previous, update, context=context)
    return new, signing.sign_state(new, signer)
