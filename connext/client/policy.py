"""What the client signs: the user's side of validation.

A node proposal is countersigned only when
1. the protocol core re-derives the new state from the client's own latest state and the update
   (`validation.validate_update`: every rule and invariant, deposit totals against the chain reading the
   client made itself, definitions' checks) and the node's signature is over exactly that state; and
2. the client's policy accepts what the update does to the user's money: the user's balance in no asset
   goes down, and only the kinds of update this client understands are signed:
   - a deposit credit;
   - the node's own withdraw transfer (reclaimed collateral);
   - an incoming payment: a Linked, HashLock or Signed transfer from the node to the user whose meta
     (sent with the proposal) hashes to the transfer's `metaHash` and names the same payment id, and a
     HashLock that leaves the user at least `min_window` seconds to resolve it;
   - the node's resolve of the user's own transfer to it: the protocol re-runs the definition with the
     node's resolver, so only a resolver the definition accepts (or the node's refund) gets through.

   Never a swap: the user initiates swaps, and the node never moves the user's funds by proposal.

   Every transfer the node creates leaves the user at least `min_window` seconds to answer on chain
   once it is disputed (`transferTimeout`): what the client's watcher needs to notice a dispute and
   have its answer mined (`min_window`: poll interval + confirmations × block time + a margin).

Anything else raises `ValidationError` and nothing is signed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from connext.errors import ValidationError
from connext.protocol import meta as transfer_meta
from connext.protocol import validation
from connext.protocol.definitions import HashLockState
from connext.protocol.errors import ProtocolError
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    SwapUpdate,
    Update,
    UpdateContext,
)

PAYMENT_KINDS = (DefinitionKind.LINKED, DefinitionKind.HASHLOCK, DefinitionKind.SIGNED)

# How fast the client's watcher answers on chain, by default (`WatchOptions` sets each one).
DEFAULT_POLL_SECONDS = 5.0  # between two reads of the channel's dispute
DEFAULT_CONFIRMATIONS = 3  # blocks until an answer counts, the one that mines it included
DEFAULT_BLOCK_SECONDS = 12.0  # the chain's block time
DEFAULT_MARGIN_SECONDS = 300.0  # a congested chain, a slow RPC, a client restarting


def min_window(
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    confirmations: int = DEFAULT_CONFIRMATIONS,
    block_seconds: float = DEFAULT_BLOCK_SECONDS,
    margin_seconds: float = DEFAULT_MARGIN_SECONDS,
) -> int:
    """The shortest on-chain window (seconds) the client signs: the time its watcher needs to notice
    a dispute, have its answer mined and confirmed, with a margin."""
    return math.ceil(poll_seconds + confirmations * block_seconds + margin_seconds)


DEFAULT_MIN_WINDOW = min_window()  # 5 + 3 × 12 + 300 = 341 s, under the node's least receiver window (600 s)


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
    meta: Mapping[str, Any] | None = None,
    min_window: int = DEFAULT_MIN_WINDOW,
) -> ChannelState:
    """The state to countersign for the node's `update` (with the `meta` its proposal carried), or
    `ValidationError`."""
    if update.initiator != previous.node:
        raise refuse("unauthorized", "a node proposal must be initiated by the node", field="initiator")
    if isinstance(update, SetupUpdate):
        raise refuse("invalid_update", "the channel is already set up")
    if isinstance(update, SwapUpdate):
        raise refuse(
            "unsupported_update",
            "the user initiates swaps: this client signs no swap the node proposes",
            field="type",
        )
    if isinstance(update, DepositUpdate) and update.asset_id not in context.chain_deposits:
        raise refuse("no_chain_reading", "a deposit credit needs the client's own reading of the chain")
    if isinstance(update, ResumeUpdate) and context.dispute is None:
        raise refuse("no_chain_reading", "a resume needs the client's own reading of the dispute on chain")
    try:
        new = validation.validate_update(previous, update, node_signature, context=context)
    except ProtocolError as exc:
        raise from_protocol(exc) from None

    if isinstance(update, CreateUpdate):
        check_window("transfer_timeout", update.transfer_timeout, min_window)
        kind = context.definitions.get(update.definition)
        if kind in PAYMENT_KINDS:
            check_incoming_payment(update, kind, meta or {}, now=context.now, min_window=min_window)
        elif kind is not DefinitionKind.WITHDRAW:
            raise refuse("unsupported_transfer", f"this client does not accept {kind or update.definition}")
    elif isinstance(update, ResolveUpdate):
        transfer = previous.transfer(update.transfer_id)
        assert transfer is not None  # validate_update refused an unknown transfer
        kind = context.definitions.get(transfer.definition)
        # The protocol ran the definition's resolve with the node's resolver above: a resolver it does
        # not accept was refused there; what remains pays the node as the condition says, or refunds.
        if kind is not DefinitionKind.WITHDRAW and kind not in PAYMENT_KINDS:
            raise refuse("unsupported_transfer", f"this client does not let the node resolve {kind}")
    if meta and not isinstance(update, CreateUpdate):
        raise refuse("bad_meta", "only a transfer's creation carries meta")
    if not isinstance(update, ResumeUpdate):  # a resume zeroes what the chain paid out (checked above)
        check_user_not_debited(previous, new)
    return new


def check_window(field: str, seconds: int, min_window: int) -> None:
    """An on-chain window (a transfer's `transferTimeout`, the channel's dispute `timeout`) the
    client's watcher can answer in."""
    if seconds < min_window:
        raise refuse(
            "window_too_short",
            f"{field} is {seconds}s: shorter than the {min_window}s this client needs to answer on chain",
            field=field,
        )


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


def check_incoming_payment(
    update: CreateUpdate,
    kind: DefinitionKind,
    meta: Mapping[str, Any],
    *,
    now: int,
    min_window: int,
) -> None:
    """The node's transfer to the user for a payment: its meta is the one it committed to, and a
    HashLock lives long enough for the user to resolve it on chain."""
    try:
        matches = transfer_meta.meta_hash(meta) == update.meta_hash
    except ProtocolError as exc:
        raise from_protocol(exc) from None
    if not matches:
        raise refuse("bad_meta", "the proposal's meta does not hash to the transfer's metaHash", field="meta")
    payment_id = meta.get("paymentId")
    if payment_id is not None and payment_id != "0x" + update.payment_id.hex():
        raise refuse("bad_meta", "the meta names another payment than the transfer", field="meta")
    if kind is DefinitionKind.HASHLOCK:
        expiry = HashLockState.decode(update.encoded_state).expiry
        if expiry < now + min_window:
            raise refuse(
                "expiring",
                f"the hashlock expires at {expiry}, less than {min_window}s from now ({now})",
                field="encoded_state",
            )
