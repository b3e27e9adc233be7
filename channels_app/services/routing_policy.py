"""The node's terms for routing a payment: checked before it countersigns the sender's transfer, when it
sizes the receiver's side, and before it countersigns the receiver's resolve.

The rule they keep (docs/protocol.md, "Routing windows"): whatever the sender and the receiver do on
chain, and whenever they do it, the node can claim upstream everything it may have to pay downstream.
Separate from `payments` so the channel service can apply them without importing the router.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from channels_app import network
from channels_app.models import Dispute, Payment, Transfer, TransferDispute
from channels_app.services.errors import ServiceError
from connext.protocol import serialization
from connext.protocol.definitions import HashLockState, PreimageResolver, SignedResolver
from connext.protocol.encoding import ZERO_BYTES32
from connext.protocol.errors import ProtocolError
from connext.protocol.types import DefinitionKind, TransferState


class PaymentError(ServiceError):
    """A payment the node will not route, settle or hand out as asked."""


def reaction() -> int:
    """R: the longest the node takes to see a chain event and get its answer mined."""
    return int(settings.ROUTING_REACTION_SECONDS)


def receiver_min_window() -> int:
    """The least on-chain window (and HashLock lead) the node gives a receiver."""
    return int(settings.HASHLOCK_MIN_WINDOW_SECONDS)


def hop_margin() -> int:
    """How much earlier the receiver's HashLock expires than the sender's: enough for the node to
    take the sender side to the chain (one dispute window) and two reactions (see the receiver's
    reveal, then land its claims) to spare."""
    return settings.DISPUTE_TIMEOUT_SECONDS + max(settings.HASHLOCK_MIN_WINDOW_SECONDS, 2 * reaction())


def sender_min_transfer_timeout() -> int:
    """The least `transferTimeout` a sender may give a routed transfer: the receiver's least window plus
    the three reactions the node needs between the two sides (channels with the node's dispute window)."""
    return receiver_min_window() + 3 * reaction()


def receiver_transfer_timeout(
    *, sender_timeout: int, sender_channel_timeout: int, receiver_channel_timeout: int
) -> int | None:
    """The receiver side's `transferTimeout`, or None when it would leave the receiver less than its
    least window.

    Once the sender disputes at t, its on-chain window closes no earlier than t + T_s + tt_s. The node
    disputes the receiver's channel by t + R, disputes the receiver side by t + R + T_r + R, so the
    receiver's last reveal lands before t + 2R + T_r + tt_r, and the node's upstream claim lands by
    t + 3R + T_r + tt_r = t + T_s + tt_s."""
    window = sender_timeout + sender_channel_timeout - receiver_channel_timeout - 3 * reaction()
    return window if window >= receiver_min_window() else None


def upstream_window_end(sender: Transfer) -> int | None:
    """The earliest chain time at which the sender side's on-chain window can close: while its channel
    is disputed (the window opens at the consensus expiry at the earliest) or the transfer itself is
    disputed on chain. None while no such window runs."""
    state = serialization.transfer_state_from_json(sender.transfer_state)
    ends = list(
        TransferDispute.objects.filter(transfer_id=sender.transfer_id).values_list("expiry", flat=True)
    )
    consensus = (
        Dispute.objects.filter(
            channel_id=sender.channel_id, status__in=Dispute.ACTIVE, consensus_expiry__isnull=False
        )
        .values_list("consensus_expiry", flat=True)
        .first()
    )
    if consensus is not None:
        ends.append(consensus + state.transfer_timeout)
    if not ends:
        return None
    if sender.kind == DefinitionKind.HASHLOCK.value:
        ends.append(HashLockState.decode(state.encoded_state).expiry)
    return min(ends)


def pays_out(kind: DefinitionKind, encoded_resolver: bytes) -> bool:
    """Whether a resolver is more than the responder's cancel (a malformed one counts: the protocol
    core refuses it anyway)."""
    try:
        if kind is DefinitionKind.SIGNED:
            return SignedResolver.decode(encoded_resolver).signature != b""
        return PreimageResolver.decode(encoded_resolver).preimage != ZERO_BYTES32
    except ProtocolError:
        return True


def check_downstream_resolve(
    *, transfer_id: str, encoded_resolver: bytes, chain_now: Callable[[], int]
) -> None:
    """Refuse a receiver's resolve that pays it when the node can no longer be sure to claim the sender
    side: refunded on chain already, or its on-chain window closes within one reaction.
    `chain_now()` reads the chain's time; it is called only when such a window runs."""
    payment = (
        Payment.objects.filter(receiver_transfer__transfer_id=transfer_id)
        .select_related("sender_transfer")
        .first()
    )
    if payment is None or not pays_out(DefinitionKind(payment.kind), encoded_resolver):
        return
    sender = payment.sender_transfer
    if sender.status == Transfer.Status.CANCELLED:
        raise PaymentError(
            "upstream_refunded",
            "The sender's side of this payment was refunded on chain, so the node does not pay it.",
            status=409,
        )
    if sender.status != Transfer.Status.ACTIVE:
        return
    window_end = upstream_window_end(sender)
    if window_end is not None and int(chain_now()) + reaction() >= window_end:
        raise PaymentError(
            "upstream_unclaimable",
            "The sender's side of this payment is on chain and its window closes before the node could"
            " claim it, so the node does not pay it.",
            status=409,
        )


def check_routed_create(*, transfer: TransferState, kind: DefinitionKind, meta: dict[str, Any]) -> None:
    """The node's own terms for a transfer it is asked to route (beyond the protocol's rules)."""
    recipient = meta.get("recipient")
    if recipient is not None and not isinstance(recipient, str):
        raise PaymentError("bad_meta", "meta.recipient must be an address or absent (a link).")
    if recipient is not None:
        try:
            recipient = serialization.parse_address(recipient, field="meta.recipient")
        except Exception:
            raise PaymentError("bad_meta", "meta.recipient is not an address.") from None
        if recipient in (transfer.initiator, network.network().node_address):
            raise PaymentError("bad_recipient", "A payment goes to another user of this node.")
    elif kind is not DefinitionKind.LINKED:
        raise PaymentError("bad_meta", "Only a linked transfer can be a link payment (no recipient).")
    least, most = sender_min_transfer_timeout(), int(settings.ROUTING_MAX_TRANSFER_TIMEOUT_SECONDS)
    if transfer.transfer_timeout < least:
        raise PaymentError(
            "transfer_timeout_too_short",
            f"A routed transfer's transferTimeout must be at least {least} seconds: the receiver's side"
            " gets a shorter one, and the node must have time to claim this side after paying it.",
        )
    if transfer.transfer_timeout > most:
        raise PaymentError(
            "transfer_timeout_too_long", f"A routed transfer's transferTimeout is at most {most} seconds."
        )
    if kind is DefinitionKind.HASHLOCK:
        expiry = HashLockState.decode(transfer.encoded_state).expiry
        if expiry - hop_margin() <= int(time.time()) + settings.HASHLOCK_MIN_WINDOW_SECONDS:
            raise PaymentError(
                "expiry_too_soon",
                f"A routed hashlock must expire more than {hop_margin() + settings.HASHLOCK_MIN_WINDOW_SECONDS}"
                " seconds from now, so the node can always claim it after paying the receiver.",
            )
