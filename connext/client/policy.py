"""What the client signs: the user's side of validation.

A node proposal is countersigned only when
1. the protocol core re-derives the new state from the client's own latest state and the update
   (`validation.validate_update`: every rule and invariant, deposit totals against the chain reading the
   client made itself, definitions' checks) and the node's signature is over exactly that state; and
2. the client's policy accepts what the update does to the user's money: the user's balance in no asset
   goes down, and only the kinds of update this client understands are signed (a deposit credit, the
   node's own withdraw transfer, the resolve of the user's own withdraw).

Anything else raises `ValidationError` and nothing is signed.
"""

from __future__ import annotations

from connext.errors import ValidationError
from connext.protocol import validation
from connext.protocol.errors import ProtocolError
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    SetupUpdate,
    Update,
    UpdateContext,
)


def refuse(code: str, message: str, *, field: str | None = None) -> ValidationError:
    return ValidationError(code, message, field=field)


def from_protocol(error: ProtocolError) -> ValidationError:
    return ValidationError(error.code, error.message, field=error.field)


def check_node_proposal(
    previous: ChannelState,
    update: Update,
    node_signature: bytes,
    *,
    context: UpdateContext,
) -> ChannelState:
    """The state to countersign for the node's `update`, or `ValidationError`."""
    if update.initiator != previous.node:
        raise refuse("unauthorized", "a node proposal must be initiated by the node", field="initiator")
    if isinstance(update, SetupUpdate):
        raise refuse("invalid_update", "the channel is already set up")
    if isinstance(update, DepositUpdate) and update.asset_id not in context.chain_deposits:
        raise refuse("no_chain_reading", "a deposit credit needs the client's own reading of the chain")
    try:
        new = validation.validate_update(previous, update, node_signature, context=context)
    except ProtocolError as exc:
        raise from_protocol(exc) from None

    if isinstance(update, CreateUpdate):
        kind = context.definitions.get(update.definition)
        if kind is not DefinitionKind.WITHDRAW:
            raise refuse(
                "unsupported_transfer",
                f"this client accepts only withdraw transfers from the node, not {kind or update.definition}",
            )
    elif isinstance(update, ResolveUpdate):
        transfer = previous.transfer(update.transfer_id)
        assert transfer is not None  # validate_update refused an unknown transfer
        if context.definitions.get(transfer.definition) is not DefinitionKind.WITHDRAW:
            raise refuse("unsupported_transfer", "this client lets the node resolve only withdraw transfers")
    check_user_not_debited(previous, new)
    return new


def check_user_not_debited(previous: ChannelState, new: ChannelState) -> None:
    """No node-initiated update may lower the user's balance or processed deposits in any asset."""
    for index, asset_id in enumerate(previous.asset_ids):
        new_index = new.asset_index(asset_id)
        if new_index is None:
            raise refuse("asset_removed", f"the update drops asset {asset_id} from the channel")
        if new.balances[new_index][1] < previous.balances[index][1]:
            raise refuse(
                "user_debited",
                f"the update lowers the user's {asset_id} balance from {previous.balances[index][1]}"
                f" to {new.balances[new_index][1]}",
            )
        if new.processed_deposits[new_index][1] < previous.processed_deposits[index][1]:
            raise refuse("user_debited", f"the update lowers the user's processed {asset_id} deposits")
