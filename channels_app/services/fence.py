"""The signing fence: a node whose data is behind what it has signed signs nothing more for a channel
until the channel's user has shown its latest doubly signed state (docs/protocol.md, "Restored data").

A node restored from a backup has forgotten every state it signed since. Signing at one of those nonces
again would give the user two doubly signed states at one nonce (to dispute with whichever pays it
more), and signing on top of the old balances would pay out money the user has already spent. So
whenever the node learns that its data is behind (`data_behind`: a restore, a user's state newer than
the stored one, the chain showing a nonce the node never stored) every channel is fenced: `channels`
refuses every user update and countersignature (`channel_reconciling`) and the node proposes nothing.
`reconcile` lets a channel go once its user presents a state at least as new as the stored one and as
the chain's evidence, and the chain watcher has read up to the block where the fence went up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from channels_app import chain, network, realtime, rows
from channels_app.models import BlockCursor, Channel, ChannelUpdate, DataFence, Transfer
from channels_app.services.errors import ServiceError
from connext.protocol import serialization, signing
from connext.protocol.errors import ProtocolError
from connext.protocol.types import ChannelState

if TYPE_CHECKING:
    from channels_app.services.channels import ChannelFields

logger = logging.getLogger(__name__)

# The chain watcher whose cursor says how far the node has read the chain's record (services.watcher).
LOGS_CURSOR = "logs"
RECONCILE_RETRY_SECONDS = 5


class FenceError(ServiceError):
    pass


@dataclass(frozen=True)
class Reconciled:
    channel: Channel
    adopted: bool  # the user's state replaced the stored one
    # Why the channel is still fenced: "chain" (the watcher has not read far enough) or "state" (the
    # chain shows a later nonce); None once it is let go.
    waiting_for: str | None


def fenced(channel: Channel) -> bool:
    return channel.fenced_since is not None


def refusal(channel: ChannelFields) -> FenceError:
    """What a fenced channel answers to anything that would have the node sign."""
    from channels_app.services.channels import signed_state_json

    return FenceError(
        "channel_reconciling",
        "The node's records of this channel may be behind what it has signed (restored from a backup):"
        " it signs nothing for it until you show your latest signed state (POST /api/channel/reconcile).",
        status=409,
        extra={"latest": signed_state_json(channel), "minNonce": str(channel.fence_min_nonce)},
    )


def data_behind(*, reason: str, detail: dict[str, Any], chain_block: int | None = None) -> DataFence:
    """Record that the node's data was found behind and fence every channel that is not closed.
    `chain_block`: the chain's head now (read when not given); no channel is let go before the watcher
    has read that far."""
    if chain_block is None:
        chain_block = int(chain.web3().eth.block_number)
    with transaction.atomic():
        fence = DataFence.objects.create(reason=reason, detail=detail, chain_block=chain_block)
        count = Channel.objects.exclude(status=Channel.Status.CLOSED).update(
            fenced_since=timezone.now(),
            pending_update=None,
            pending_state=None,
            pending_node_signature="",
            pending_meta={},
        )
    # A stored proposal is as old as the data: countersigned, it would complete a state at a nonce the
    # node may have signed differently since. It is dropped with the fence.
    logger.critical(
        "the node's data is behind what it signed (%s, %s): %d channels fenced until their users reconcile",
        reason,
        detail,
        count,
    )
    return fence


def chain_shows_nonce(*, channel_address: str, nonce: int, event: str) -> None:
    """The chain recorded `channel_address` at `nonce` (a withdraw commitment executed, a dispute). A
    nonce above the stored one proves the data behind: the channel may only be let go at that nonce or
    later, and everything is fenced if it was not yet."""
    channel = rows.get(Channel, address=channel_address)
    if channel is None or nonce <= max(channel.nonce, channel.fence_min_nonce):
        return
    if channel.pending_state is not None and int(channel.pending_state["nonce"]) == nonce:
        return  # the node's open proposal, countersigned by the user alone and taken on chain
    Channel.objects.filter(pk=channel.pk, fence_min_nonce__lt=nonce).update(fence_min_nonce=nonce)
    if channel.fenced_since is None:
        data_behind(
            reason=DataFence.Reason.CHAIN_AHEAD,
            detail={"channel": channel_address, "nonce": nonce, "stored": channel.nonce, "event": event},
        )
    else:
        Channel.objects.filter(pk=channel.pk).update(fenced_since=timezone.now())


def _chain_read_to_fence() -> bool:
    """The watcher has read the chain up to the newest fence's block."""
    newest = DataFence.objects.order_by("-chain_block").values_list("chain_block", flat=True).first()
    if newest is None:
        return True
    net = network.network()
    cursor = BlockCursor.objects.filter(name=LOGS_CURSOR, chain_id=net.chain_id).first()
    return cursor is not None and cursor.block_number >= newest


def _checked(user: str, state: ChannelState, node_signature: bytes, user_signature: bytes) -> None:
    net = network.network()
    if state.user != user:
        raise FenceError("unauthorized", "A channel is reconciled by its own user.", status=403)
    expected = {
        "node": net.node_address,
        "chain_id": net.chain_id,
        "channel_address": net.channel_address_for(user),
    }
    for field, wanted in expected.items():
        if getattr(state, field) != wanted:
            raise FenceError("invalid_state", f"The state's {field} must be {wanted}.")
    try:
        signing.verify_state_signatures(state, node_signature, user_signature)
    except ProtocolError as exc:
        raise FenceError(
            "bad_signature", f"The state is not signed by both the node and you: {exc.message}"
        ) from None


def reconcile(*, user: str, state: ChannelState, node_signature: bytes, user_signature: bytes) -> Reconciled:
    """The user shows its latest doubly signed state. A newer one than the stored state is adopted
    (its signatures prove the node signed it, so the stored data was behind: every channel is fenced
    if it was not yet); the same one confirms the stored state; an older one is refused. The channel
    is let go once the chain has been read up to the fence and the state is at least as new as the
    chain's evidence."""
    _checked(user, state, node_signature, user_signature)
    with transaction.atomic():
        channel = rows.get(Channel, address=state.channel_address, for_update=True)
        if channel is None:
            channel = _adopt_lost_channel(state, node_signature, user_signature)
            adopted = newly_behind = True
        else:
            if channel.status != Channel.Status.OPEN:
                raise FenceError("channel_not_open", f"The channel is {channel.status}.", status=409)
            adopted = _compare_and_adopt(channel, state, node_signature, user_signature)
            newly_behind = adopted and channel.fenced_since is None
    if newly_behind:
        data_behind(
            reason=DataFence.Reason.USER_STATE_AHEAD,
            detail={"channel": channel.address, "nonce": state.nonce},
        )
    channel = Channel.objects.get(pk=channel.pk)
    waiting_for = None
    if state.nonce < channel.fence_min_nonce:
        waiting_for = "state"
    elif not _chain_read_to_fence():
        waiting_for = "chain"
    if waiting_for is None and channel.fenced_since is not None:
        # Only while the stored state is still the one shown (nothing else changes a fenced channel).
        Channel.objects.filter(pk=channel.pk, nonce=state.nonce).update(fenced_since=None)
        channel.refresh_from_db()
    if adopted:
        from channels_app.services.channels import signed_state_json

        realtime.push_event_now(
            realtime.user_group(channel.user_address),
            "channel.updated",
            {"nonce": str(channel.nonce), "type": "reconcile", **signed_state_json(channel)},
        )
    return Reconciled(channel, adopted, waiting_for)


def _compare_and_adopt(
    channel: Channel, state: ChannelState, node_signature: bytes, user_signature: bytes
) -> bool:
    from channels_app.services.channels import latest_state, signed_state_json

    if state.nonce < channel.nonce:
        raise FenceError(
            "stale_state",
            f"The node holds a later state (nonce {channel.nonce}): adopt it.",
            status=409,
            extra={"latest": signed_state_json(channel)},
        )
    stored_hash = serialization.hex_bytes(latest_state(channel).state_hash)
    if state.nonce == channel.nonce:
        if serialization.hex_bytes(state.state_hash) != stored_hash:
            logger.critical(
                "two doubly signed states at nonce %d of %s: stored %s, shown %s",
                state.nonce,
                channel.address,
                stored_hash,
                serialization.hex_bytes(state.state_hash),
            )
            raise FenceError(
                "conflicting_state",
                "This state differs from the node's at the same nonce; the operator has been alerted.",
                status=409,
                extra={"latest": signed_state_json(channel)},
            )
        return False
    _adopt(channel, state, node_signature, user_signature)
    return True


def _adopt(channel: Channel, state: ChannelState, node_signature: bytes, user_signature: bytes) -> None:
    """Replace the stored state with the user's newer one, kept whole (no update of the node's is
    behind it), and bring the transfer rows in line with its active transfers."""
    channel.nonce = state.nonce
    channel.latest_state = serialization.channel_state_to_json(state)
    channel.node_signature = serialization.hex_bytes(node_signature)
    channel.user_signature = serialization.hex_bytes(user_signature)
    channel.pending_update = None
    channel.pending_state = None
    channel.pending_node_signature = ""
    channel.pending_meta = {}
    rows.update(
        channel,
        [
            "nonce",
            "latest_state",
            "node_signature",
            "user_signature",
            "pending_update",
            "pending_state",
            "pending_node_signature",
            "pending_meta",
        ],
    )
    _record_adopted(channel, state, node_signature, user_signature)
    _match_transfers(channel, state)


def _record_adopted(
    channel: Channel, state: ChannelState, node_signature: bytes, user_signature: bytes
) -> None:
    ChannelUpdate.objects.create(
        channel=channel,
        nonce=state.nonce,
        kind="reconcile",
        initiator=channel.user_address,
        update={"type": "reconcile", "channelAddress": channel.address, "nonce": str(state.nonce)},
        state_hash=serialization.hex_bytes(state.state_hash),
        node_signature=serialization.hex_bytes(node_signature),
        user_signature=serialization.hex_bytes(user_signature),
        resumed_state=serialization.channel_state_to_json(state),
    )


def _match_transfers(channel: Channel, state: ChannelState) -> None:
    """Transfers active in the adopted state get rows (without meta: the node never saw their
    creates); stored active ones the state no longer holds were resolved in the forgotten updates."""
    from channels_app.services.channels import transfer_row

    active = {serialization.hex_bytes(t.transfer_id): t for t in state.transfers}
    known = set(
        Transfer.objects.filter(channel=channel, transfer_id__in=list(active)).values_list(
            "transfer_id", flat=True
        )
    )
    for transfer_id, transfer in active.items():
        if transfer_id not in known:
            transfer_row(channel, transfer, {})[0].save()
    Transfer.objects.filter(channel=channel, status=Transfer.Status.ACTIVE).exclude(
        transfer_id__in=list(active)
    ).update(status=Transfer.Status.RESOLVED, resolved_nonce=state.nonce)


def _adopt_lost_channel(state: ChannelState, node_signature: bytes, user_signature: bytes) -> Channel:
    """A channel opened after the backup: its row comes back from the user's state."""
    channel = Channel.objects.create(
        address=state.channel_address,
        chain_id=state.chain_id,
        node_address=state.node,
        user_address=state.user,
        user_public_key=serialization.hex_bytes(signing.recover_public_key(state.state_hash, user_signature)),
        nonce=state.nonce,
        latest_state=serialization.channel_state_to_json(state),
        node_signature=serialization.hex_bytes(node_signature),
        user_signature=serialization.hex_bytes(user_signature),
    )
    _record_adopted(channel, state, node_signature, user_signature)
    _match_transfers(channel, state)
    return channel
