"""Routed payments, and the payment path every user update takes.

A payment from A to B is A's transfer to the node, then the node's matching transfer to B, unlocked
by the same resolver. Order is the safety rule: the node creates the receiver side only after the
sender side is doubly signed (the receiver never gets a free option), tops up its collateral in B's
channel first (the payment waits meanwhile), shortens a HashLock's expiry by `hop_margin` so it can
always claim upstream, and resolves the sender side with the receiver's own resolver as soon as B
resolves. A receiver side that is cancelled or expires refunds the sender side.

The path (`user_update`, `countersign`): `channels` checks, signs and stores the channel's state and
says what it did (`channels.Applied`); here the node's routing terms apply, the payment it starts or
moves is recorded in the same transaction, and its next step (`payments_follow_up`) runs right after
the commit: forward into the receiver's channel, settle the sender's side, propose what waits for a
channel just freed. Every step looks at the stored rows and does what is missing, so retries,
restarts and concurrent workers are safe; `channel_reconcile` and the periodic sweeps pick up anything
a lost follow-up left.

The routing terms keep one rule (docs/protocol.md, "Routing windows"): whatever the sender and the
receiver do on chain, and whenever they do it, the node can claim upstream everything it may have to
pay downstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from channels_app import after_commit, chain, crash_points, network, realtime, rows
from channels_app.models import (
    Channel,
    Dispute,
    OnchainTransaction,
    Payment,
    Transfer,
    TransferDispute,
)
from channels_app.services import channels, collateral
from channels_app.services.errors import ServiceError
from connext.chain import disputes
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization
from connext.protocol.definitions import HashLockState, PreimageResolver, SignedResolver
from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.errors import ProtocolError
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    ResolveUpdate,
    TransferState,
    Update,
)

logger = logging.getLogger(__name__)

PaymentStatus = Payment.Status
ROUTED_KINDS = (DefinitionKind.LINKED.value, DefinitionKind.HASHLOCK.value, DefinitionKind.SIGNED.value)


class PaymentError(ServiceError):
    """A payment the node will not route, settle or hand out as asked."""


# -- the payment path: a user's update or countersignature, and what follows it ---------------------


def user_update(
    *,
    user: str,
    update: Update,
    signature: bytes,
    meta: dict[str, Any] | None = None,
    answer: tuple[int, bytes] | None = None,
) -> channels.SignedState:
    """Countersign a user's update (deposit, create, resolve, swap; `answer` countersigns the node's
    open proposal first, `channels.countersign_user_update`). Beside the channel's own checks, the
    node's terms apply to a payment it is asked to route (`check_routed_create`) or to pay out
    (`check_downstream_resolve`); what the update does to payments is recorded in its transaction."""
    checked = channels.check_user_update(user=user, update=update, meta=meta)
    if isinstance(update, ResolveUpdate):  # its reads (the chain's time among them) before the lock
        check_downstream_resolve(
            channel_address=update.channel_address,
            transfer_id=serialization.hex_bytes(update.transfer_id),
            encoded_resolver=update.encoded_resolver,
            chain_now=lambda: disputes.chain_time(chain.web3()),
        )
    try:
        with transaction.atomic():
            done = channels.countersign_user_update(checked, signature, answer=answer)
            if done.applied and isinstance(update, CreateUpdate):  # the user's own is the last
                _check_routing_terms(done.applied[-1].new, checked.meta)
            for applied in done.applied:
                _record(applied)
    except IntegrityError:  # a unique row (a payment id, say) written concurrently by another update
        raise channels.ChannelError(
            "conflict", "A concurrent update wrote the same record; sync and retry.", status=409
        ) from None
    if done.applied:
        crash_points.reached("committed", user, done.applied[-1].update_type)
    return done.signed


def countersign(*, user: str, channel_address: str, nonce: int, signature: bytes) -> channels.SignedState:
    """The user's countersignature of the node's open proposal at `nonce` (a payment's receiver side
    or its settlement, collateral, a withdrawal's resolve), stored and recorded as `user_update`'s."""
    with transaction.atomic():
        done = channels.countersign_proposal(
            user=user, channel_address=channel_address, nonce=nonce, signature=signature
        )
        for applied in done.applied:
            _record(applied)
    if done.applied:
        crash_points.reached("committed", user, done.applied[-1].update_type)
    return done.signed


def _check_routing_terms(new: ChannelState, meta: dict[str, Any]) -> None:
    """A transfer to the node other than a withdraw is a payment to route: the node's terms apply."""
    transfer = new.transfers[-1]
    kind = network.network().definitions.get(transfer.definition)
    if transfer.responder != new.node or kind in (None, DefinitionKind.WITHDRAW):
        return
    check_routed_create(transfer=transfer, kind=kind, meta=meta)


def _record(applied: channels.Applied) -> None:
    """Record what one stored state did to the payments through its channel (inside its transaction)
    and register what follows the commit: the payments' next steps inline (they are what a payment
    waits for), a check of the node's collateral where a payment moved its balance, and for any other
    update the channel's reconcile by a worker."""
    net = network.network()
    channel = applied.channel
    follow_up: dict[str, Any] = {}
    routed = False
    created, resolved = applied.created, applied.resolved
    if created is not None and created.kind in ROUTED_KINDS:
        routed = True
        if created.responder == net.node_address:  # a payment the node is asked to route starts here
            try:
                payment = payment_insert(sender_transfer=created)
            except IntegrityError:  # the payment id is taken: the whole update is rolled back
                raise channels.ChannelError(
                    "duplicate_payment",
                    "A payment with this id exists already: pick a fresh random payment id.",
                    status=409,
                ) from None
            if payment.recipient:
                follow_up["forward_to"] = payment.recipient
        else:  # the receiver side of a payment is locked
            payment_receiver_locked(receiver_transfer=created)
    elif resolved is not None and net.definitions[resolved.definition].value in ROUTED_KINDS:
        routed = True
        # The receiver decided: settle the sender's side now, and only then tell the sender. Told
        # first, a sender sends its next update at once and it crosses the node's proposal on the
        # wire: refused, answered, sent again (about one per payment).
        decided = routed_side_settled(
            transfer_id=serialization.hex_bytes(resolved.transfer_id),
            payment_id=serialization.hex_bytes(resolved.payment_id),
            tell_sender=False,
        )
        if decided is not None:
            follow_up["settle_payment"] = (decided.payment_pk, decided.sender_channel_id)
            if decided.tell_sender is not None:
                follow_up["then_tell_sender"] = decided.tell_sender
    if applied.proposal_answered:  # the channel is free for the node's next proposal
        follow_up["channel_freed"] = (channel.pk, channel.user_address)
    if follow_up:
        after_commit.run_inline(
            payments_follow_up, retry_task="channels_app.tasks.payments_follow_up", **follow_up
        )
    if not routed:
        after_commit.run_task("channels_app.tasks.channel_reconcile", channel.pk)
    elif not applied.superseded and applied.node_balance_moved():
        # A user locking or being paid from the node's transfers leaves the node's balance where the
        # last check saw it: only a payment that moved it is checked against the profile.
        after_commit.run_inline(collateral.collateral_check_profile, channel=channel, state=applied.new)


def payments_follow_up(
    *,
    forward_to: str | None = None,
    settle_payment: tuple[int, int] | None = None,
    then_tell_sender: tuple[str, dict[str, Any]] | None = None,
    channel_freed: tuple[int, str] | None = None,
) -> None:
    """The next step of the payments an update just moved, run right after its commit: forward a
    payment whose sender side is signed, settle the sender side of one the receiver decided, and give
    a channel whose proposal was just answered its next proposal. Each step is idempotent; whatever
    finds a channel busy is picked up when that channel's proposal is answered. A step that fails
    is tried again by a worker (`tasks.payments_follow_up`)."""
    if settle_payment is not None:
        # The proposal and the news reach the sender in one push.
        with realtime.batched():
            try:
                _settle_sender_side(*settle_payment)
            finally:  # the sender hears of the payment after the node's proposal to settle it
                if then_tell_sender is not None:
                    event, news = then_tell_sender
                    realtime.push_event_on_commit(realtime.user_group(news["sender"]), event, news)
    if forward_to is not None:
        _forward_to(forward_to)
    if channel_freed is not None:
        channel_id, user = channel_freed
        payments_settle_upstream(channel_id=channel_id) or payments_forward(channel_id=channel_id, user=user)


# -- the node's terms for routing a payment ---------------------------------------------------------


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
    *, channel_address: str, transfer_id: str, encoded_resolver: bytes, chain_now: Callable[[], int]
) -> None:
    """Refuse a receiver's resolve that pays it when the node can no longer be sure to claim the sender
    side: refunded on chain already, or its on-chain window closes within one reaction.
    `chain_now()` reads the chain's time; it is called only when such a window runs. The receiver's
    side is the stored transfer, or the one the node's open proposal in the channel creates (answered
    and resolved in one request, as the client takes a payment: docs/protocol.md, "Routing windows")."""
    payment = (
        Payment.objects.filter(receiver_transfer__transfer_id=transfer_id)
        .select_related("sender_transfer")
        .first()
    )
    if payment is None:
        channel = Channel.objects.filter(address=channel_address).first()
        proposed = None if channel is None else proposed_forward(channel, transfer_id)
        if proposed is not None:
            payment = (
                Payment.objects.filter(payment_id=proposed, recipient=channel.user_address)
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


def proposed_forward(channel: Channel, transfer_id: str) -> str | None:
    """The payment id of the transfer `transfer_id` the node's open proposal in `channel` creates for
    its user (a payment's receiver side not stored yet), or None."""
    if channel.pending_state is None:
        return None
    proposed = serialization.channel_state_from_json(channel.pending_state)
    return forwarded_payment_id(proposed, transfer_id, node=channel.node_address, user=channel.user_address)


def forwarded_payment_id(state: ChannelState, transfer_id: str, *, node: str, user: str) -> str | None:
    """The payment id of the node's transfer `transfer_id` to `user` active in `state`, or None."""
    wanted = serialization.parse_bytes(transfer_id, field="transferId")
    transfer = state.transfer(wanted)
    if transfer is None or transfer.initiator != node or transfer.responder != user:
        return None
    return serialization.hex_bytes(transfer.payment_id)


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


# -- payment records: what the node tells users about a payment --------------------------------


def payment_status(payment: Payment) -> str:
    """The status both parties see, read from the two transfers themselves so it never waits for the
    node's bookkeeping (nor for an offline sender): `completed` once the receiver resolved its side
    (it holds the money; the node holds the resolver that settles the sender's lock), `failed` once
    the receiver's side is cancelled or expired (the sender's refund is under way), `refunded` once the
    sender's side is refunded in a doubly signed state. Otherwise the stored status (pending,
    forwarded, or failed when it could not be forwarded)."""
    receiver = payment.receiver_transfer
    return status_seen(
        payment.status, payment.sender_transfer.status, None if receiver is None else receiver.status
    )


def status_seen(stored: str, sender_status: str, receiver_status: str | None) -> str:
    """`payment_status` from the statuses alone (the payment's stored one, its two transfers')."""
    if sender_status == Transfer.Status.CANCELLED:
        return str(Payment.Status.REFUNDED)
    if Transfer.Status.RESOLVED in (sender_status, receiver_status):
        return str(Payment.Status.COMPLETED)
    if receiver_status == Transfer.Status.CANCELLED:
        return str(Payment.Status.FAILED)
    return stored


def payment_json(payment: Payment) -> dict[str, Any]:
    meta = payment.sender_transfer.meta or {}
    return {
        "paymentId": payment.payment_id,
        "kind": payment.kind,
        "sender": payment.sender,
        "recipient": payment.recipient or None,
        "assetId": payment.asset_id,
        "amount": str(int(payment.amount)),
        "status": payment_status(payment),
        "failure": payment.failure or None,
        "meta": {key: value for key, value in meta.items() if key != "encryptedPreimage"},
        "createdAt": payment.created_at.isoformat(),
        "updatedAt": payment.updated_at.isoformat(),
    }


def _push(address: str, event: str, payment: Payment) -> None:
    if address:
        realtime.push_event_on_commit(realtime.user_group(address), event, payment_json(payment))


def payment_register(*, sender_transfer: Transfer) -> Payment | None:
    """Record the payment a sender's transfer to the node starts (once); an existing payment with
    the same id is returned as it is."""
    if sender_transfer.kind not in ROUTED_KINDS:
        return None
    existing = rows.get(Payment, payment_id=sender_transfer.payment_id)
    if existing is not None:
        return existing
    return payment_insert(sender_transfer=sender_transfer)


def payment_insert(*, sender_transfer: Transfer) -> Payment:
    """Record the payment a sender's routed transfer to the node starts. A payment with the same id
    raises the database's `IntegrityError` (the caller's update is then refused as a whole)."""
    recipient = sender_transfer.meta.get("recipient") or ""
    payment = rows.insert(
        Payment(
            payment_id=sender_transfer.payment_id,
            kind=sender_transfer.kind,
            sender=sender_transfer.initiator,
            recipient=serialization.parse_address(recipient, field="recipient") if recipient else "",
            asset_id=sender_transfer.asset_id,
            amount=sender_transfer.amount,
            sender_transfer=sender_transfer,
        )
    )
    _push(payment.sender, "transfer.created", payment)
    return payment


def payment_receiver_locked(*, receiver_transfer: Transfer) -> None:
    """The receiver countersigned its side: link it to the payment and tell the receiver."""
    payment = rows.get_related(Payment, ("sender_transfer",), payment_id=receiver_transfer.payment_id)
    if payment is None or payment.receiver_transfer_id is not None:
        return
    payment.receiver_transfer = receiver_transfer
    rows.update(payment, ["receiver_transfer_id"])
    _push(payment.recipient, "transfer.received", payment)


def payment_receiver_settled(*, payment: Payment, tell_sender: bool = True) -> str | None:
    """The receiver resolved or cancelled its side: tell both parties now, not only once the sender
    side settles (its user may stay offline for long). Announced once, whichever process gets here:
    returns the event when this call announced it. Without `tell_sender` the sender's announcement is
    the caller's to make."""
    assert payment.receiver_transfer is not None
    paid = payment.receiver_transfer.status == Transfer.Status.RESOLVED
    decided = Payment.Status.COMPLETED if paid else Payment.Status.FAILED
    failure = "" if paid else "the receiver's side was cancelled or expired"
    # Compare and set on the status read with the payment: whichever process moves it out of an
    # open one announces (a receiver side exists only once the payment is forwarded, so the status
    # read is the row's unless another process just decided it).
    now = timezone.now()
    announced = payment.status in (Payment.Status.PENDING, Payment.Status.FORWARDED) and bool(
        rows.update_where(
            Payment,
            {"pk": payment.pk, "status": payment.status},
            {"status": decided, "failure": failure, "updated_at": now},
        )
    )
    payment.status, payment.failure, payment.updated_at = decided, failure, now
    if not announced:
        return None
    event = "transfer.resolved" if paid else "transfer.failed"
    if tell_sender:
        _push(payment.sender, event, payment)
    _push(payment.recipient, event, payment)
    return event


def payment_sender_settled(*, payment: Payment) -> None:
    """The sender side was resolved or refunded (both signed): the payment is over."""
    if payment.status in (Payment.Status.COMPLETED, Payment.Status.REFUNDED):
        return
    if payment.sender_transfer.status == Transfer.Status.RESOLVED:
        payment.status = Payment.Status.COMPLETED
        rows.update(payment, ["status"])
        _push(payment.sender, "transfer.resolved", payment)
        _push(payment.recipient, "transfer.resolved", payment)
        return
    was_failed = payment.status == Payment.Status.FAILED
    payment.status = Payment.Status.REFUNDED
    rows.update(payment, ["status"])
    if not was_failed:  # a failure was announced when it happened
        _push(payment.sender, "transfer.failed", payment)
        _push(payment.recipient, "transfer.failed", payment)


class Decided(NamedTuple):
    """A payment its receiver's side just decided: settle its sender side (in `sender_channel_id`)
    next, then, when set, tell the sender `tell_sender` (the event and the payment as decided)."""

    payment_pk: int
    sender_channel_id: int
    tell_sender: tuple[str, dict[str, Any]] | None


def routed_side_settled(*, transfer_id: str, payment_id: str, tell_sender: bool = True) -> Decided | None:
    """One side of a routed payment was resolved or refunded (off chain or on chain; its transfer row
    already says which): record it and tell both parties. The sender's side ends the payment; the
    receiver's side decides it, and that payment is returned: its sender side is settled next
    (`payments.payments_follow_up(settle_payment=...)`). Both sides carry the payment's id. Without
    `tell_sender`, the sender's announcement is left to the follow-up (returned in `Decided`)."""
    payment = rows.get_related(Payment, ("sender_transfer", "receiver_transfer"), payment_id=payment_id)
    if payment is None:
        return None
    if payment.sender_transfer.transfer_id == transfer_id:
        payment_sender_settled(payment=payment)
        return None
    if payment.receiver_transfer is None or payment.receiver_transfer.transfer_id != transfer_id:
        return None  # a transfer of this payment id that is neither side: nothing to record
    event = payment_receiver_settled(payment=payment, tell_sender=tell_sender)
    news = None if tell_sender or event is None else (event, payment_json(payment))
    return Decided(payment.pk, payment.sender_transfer.channel_id, news)


# -- forwarding into the receiver's channel ------------------------------------------------------


def cancel_resolver(kind: str) -> bytes:
    if kind == DefinitionKind.SIGNED.value:
        return SignedResolver(ZERO_BYTES32, b"").encode()
    return PreimageResolver(ZERO_BYTES32).encode()


def payments_forward(*, channel_id: int, user: str | None = None) -> bool:
    """Create the receiver side of the oldest payment waiting for this channel's user (`user`, when the
    caller knows it).

    Returns True when a proposal was made (the channel is then busy until the user answers).
    """
    if user is None:
        user = rows.value(Channel, "user_address", pk=channel_id)
    waiting = rows.find(Payment, recipient=user, status=PaymentStatus.PENDING, order_by="id")
    for payment in waiting:
        if _forward(channel_id, payment.pk):
            return True
        if rows.value(Payment, "status", pk=payment.pk) == PaymentStatus.PENDING:
            return False  # waiting (collateral, busy channel): keep the order
    return False


def _forward(channel_id: int, payment_pk: int) -> bool:
    """Propose the receiver side of one payment. While the node lacks collateral in the receiver's
    channel the payment waits (pending) for the deposit; its credit reconciles the channel again."""
    with transaction.atomic():
        proposed, collateral_needed = _forward_locked(channel_id, payment_pk)
    if collateral_needed:
        payment = Payment.objects.get(pk=payment_pk)
        try:
            collateral.collateral_request(
                channel_id=channel_id, asset_id=payment.asset_id, amount=collateral_needed, for_payment=True
            )
        except collateral.CollateralError as exc:  # disputed meanwhile: the payment waits for it to end
            logger.info("payment %s waits: %s", payment.payment_id, exc.message)
    return proposed


def _forward_locked(channel_id: int, payment_pk: int) -> tuple[bool, int]:
    """(proposed, collateral to ask for), inside the caller's transaction."""
    net = network.network()
    channel = channels.lock_for_proposal(channel_id)
    if channel is None:
        return False, 0
    payment = _payment(payment_pk, SENDER_SIDE, for_update=True)
    if payment.status != PaymentStatus.PENDING:
        return False, 0
    sender = payment.sender_transfer
    if sender.status != Transfer.Status.ACTIVE:
        payment.status = PaymentStatus.REFUNDED
        rows.update(payment, ["status"])
        return False, 0
    sender_channel_status, sender_channel_state = rows.values(
        Channel, ("status", "latest_state"), pk=sender.channel_id
    ) or (None, None)
    if sender_channel_status != Channel.Status.OPEN:
        # The sender's channel is in dispute: its transfer's on-chain window may close before the
        # receiver reveals, so the node must not pay downstream what it might not claim upstream.
        _fail(payment, "the sender's channel is in dispute")
        return False, 0
    if rows.exists(TransferDispute, transfer_id=sender.transfer_id):
        # Disputed on chain in a round that is over: its window runs on its own clock.
        _fail(payment, "the sender's side is disputed on chain")
        return False, 0
    state = channels.latest_state(channel)
    sender_state = serialization.transfer_state_from_json(sender.transfer_state)
    transfer_timeout = receiver_transfer_timeout(
        sender_timeout=sender_state.transfer_timeout,
        sender_channel_timeout=int(sender_channel_state["timeout"]),
        receiver_channel_timeout=state.timeout,
    )
    if transfer_timeout is None:
        _fail(payment, "the receiver's channel has a longer dispute window than this payment leaves room for")
        return False, 0
    amount = int(payment.amount)
    if collateral.node_balance(state, payment.asset_id) < amount:
        return False, _collateral_for(channel, payment, amount)
    encoded_state = sender_state.encoded_state
    if payment.kind == DefinitionKind.HASHLOCK.value:
        lock = HashLockState.decode(encoded_state)
        receiver_expiry = lock.expiry - hop_margin()
        if receiver_expiry <= int(time.time()) + settings.HASHLOCK_MIN_WINDOW_SECONDS:
            _fail(payment, "the hashlock expires too soon to forward")
            return False, 0
        encoded_state = HashLockState(lock.lock_hash, receiver_expiry).encode()
    receiver_meta = {"sender": payment.sender, "paymentId": payment.payment_id}
    for key in ("encryptedPreimage", "memo"):
        if key in sender.meta:
            receiver_meta[key] = sender.meta[key]
    channels.propose_locked(
        channel,
        CreateUpdate(
            channel_address=channel.address,
            nonce=state.nonce + 1,
            initiator=net.node_address,
            asset_id=payment.asset_id,
            amount=amount,
            definition=net.definition_address(DefinitionKind(payment.kind)),
            payment_id=bytes.fromhex(payment.payment_id[2:]),
            encoded_state=encoded_state,
            transfer_timeout=transfer_timeout,
            meta_hash=transfer_meta.meta_hash(receiver_meta),
        ),
        meta=receiver_meta,
    )
    payment.status = PaymentStatus.FORWARDED
    rows.update(payment, ["status"])
    return True, 0


SENDER_SIDE = ("sender_transfer",)
BOTH_SIDES = ("sender_transfer", "receiver_transfer")


def _payment(payment_pk: int, sides: tuple[str, ...], *, for_update: bool = False) -> Payment:
    """The payment with its transfers `sides` loaded, in one statement; `for_update` locks the
    payment's row (inside the caller's transaction)."""
    payment = rows.get_related(Payment, sides, pk=payment_pk, for_update=for_update)
    if payment is None:
        raise Payment.DoesNotExist(f"no payment {payment_pk}")
    return payment


def _collateral_for(channel: Channel, payment: Payment, amount: int) -> int:
    """How much collateral to ask for so the node can lock `amount` and keep its target (as far as
    the account's activity justifies it); 0 when the node already tried and could not (the payment
    then fails and the sender is refunded)."""
    failed = OnchainTransaction.objects.filter(
        reason=OnchainTransaction.Reason.COLLATERALIZATION,
        channel_address=channel.address,
        asset_id=payment.asset_id,
        status=OnchainTransaction.Status.FAILED,
        created_at__gte=payment.created_at,
    ).first()
    if failed is not None:
        _fail(payment, f"the node could not collateralize the receiver's channel: {failed.error or 'failed'}")
        return 0
    # What the payment needs, plus the headroom the account's own activity justifies (under the
    # default profile): a fresh receiver gets exactly the payment, a busy one room for the next.
    state = channels.latest_state(channel)
    return amount + collateral.collateral_ceiling(channel, payment.asset_id, state, now=timezone.now())


def _fail(payment: Payment, reason: str) -> None:
    payment.status = PaymentStatus.FAILED
    payment.failure = reason[:300]
    rows.update(payment, ["status", "failure"])
    _push(payment.sender, "transfer.failed", payment)
    _push(payment.recipient, "transfer.failed", payment)


# -- after the receiver side changed -------------------------------------------------------------


def payments_settle_upstream(*, channel_id: int) -> bool:
    """Resolve (or refund) sender-side transfers in this channel whose payment is decided downstream.

    Returns True when a proposal was made.
    """
    now = int(time.time())
    for payment_pk in _upstream_candidates(channel_id):
        payment = _payment(payment_pk, BOTH_SIDES)
        if _upstream_resolver(payment, now) is not None and _settle_sender_side(payment.pk, channel_id):
            return True
    return False


def _upstream_candidates(channel_id: int) -> list[int]:
    """Payments whose sender side is active in this channel and may be decided: the receiver side
    resolved or cancelled, the payment failed, a HashLock (whose receiver side may have expired) or a
    link nobody redeemed (which may have expired).
    Plain SQL: this runs every time a channel's proposal is answered."""
    payments, transfers = rows.table(Payment), rows.table(Transfer)
    sql = (
        f"SELECT p.id FROM {payments} p JOIN {transfers} s ON s.id = p.sender_transfer_id "  # noqa: S608
        f"LEFT JOIN {transfers} r ON r.id = p.receiver_transfer_id "
        "WHERE s.channel_id = %s AND s.status = %s "
        "AND (r.status IN (%s, %s) OR p.status = %s OR p.kind = %s OR (p.recipient = %s AND p.status = %s)) "
        "ORDER BY p.id"
    )
    params = [
        channel_id,
        Transfer.Status.ACTIVE,
        Transfer.Status.RESOLVED,
        Transfer.Status.CANCELLED,
        PaymentStatus.FAILED,
        DefinitionKind.HASHLOCK.value,
        "",  # a link not redeemed yet (it may have expired)
        PaymentStatus.PENDING,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _upstream_resolver(payment: Payment, now: int) -> bytes | None:
    """What settles the sender side of `payment` now: the receiver's resolver, a cancel, or None
    (still undecided)."""
    receiver = payment.receiver_transfer
    if receiver is not None and receiver.status == Transfer.Status.RESOLVED:
        return bytes.fromhex(receiver.encoded_resolver[2:])
    if (receiver is not None and receiver.status == Transfer.Status.CANCELLED) or (
        payment.status == PaymentStatus.FAILED
    ):
        return cancel_resolver(payment.kind)
    if payment.kind == DefinitionKind.HASHLOCK.value and _receiver_expired(payment, now):
        return cancel_resolver(payment.kind)  # the receiver can no longer claim: refund the sender
    if payment.status == PaymentStatus.PENDING and _link_expired(payment, now):
        return cancel_resolver(payment.kind)  # nobody redeemed it in time: back to the sender
    return None


def _secret_opens(payment: Payment, preimage: bytes) -> bool:
    """The preimage hashes to the lock of the payment's sender side (a Linked transfer's state)."""
    state = serialization.transfer_state_from_json(payment.sender_transfer.transfer_state)
    return keccak256(preimage) == state.encoded_state


def _link_expired(payment: Payment, now: int) -> bool:
    """A link (no recipient yet) whose `expiresAt` has passed."""
    expires_at = payment.sender_transfer.meta.get("expiresAt")
    return not payment.recipient and isinstance(expires_at, int) and now >= expires_at


STALLED_AFTER_SECONDS = 10


def payments_overdue_channels() -> list[int]:
    """Channels holding a payment the node must move on without being asked: one that failed, a link
    that expired unredeemed, a HashLock whose receiver side has expired (reconciling a channel only
    follows its own updates; a receiver who never comes back sends none), any open payment that
    has not moved for a while (its inline follow-up was lost, e.g. to a crash between a commit and
    the next step), a decided one whose sender side is still open after that while, and any channel
    whose open proposal has waited that long."""
    now = int(time.time())
    open_payments = (
        Payment.objects.filter(sender_transfer__status=Transfer.Status.ACTIVE)
        .filter(Q(status=PaymentStatus.FAILED) | Q(kind=DefinitionKind.HASHLOCK.value))
        .select_related("sender_transfer", "receiver_transfer")
    )
    overdue = {
        payment.sender_transfer.channel_id
        for payment in open_payments
        if payment.status == PaymentStatus.FAILED or _receiver_expired(payment, now)
    }
    unredeemed_links = Payment.objects.filter(
        recipient="", status=PaymentStatus.PENDING, sender_transfer__status=Transfer.Status.ACTIVE
    ).select_related("sender_transfer")
    overdue.update(p.sender_transfer.channel_id for p in unredeemed_links if _link_expired(p, now))
    stalled = (
        Payment.objects.filter(updated_at__lt=timezone.now() - timedelta(seconds=STALLED_AFTER_SECONDS))
        .exclude(status__in=[PaymentStatus.COMPLETED, PaymentStatus.REFUNDED])
        .values_list("sender_transfer__channel_id", "receiver_transfer__channel_id")
    )
    for sender_channel, receiver_channel in stalled:
        overdue.add(sender_channel)
        if receiver_channel is not None:
            overdue.add(receiver_channel)
    # A payment its receiver decided is completed (or failed) at once, before its sender side is
    # settled: one whose settling step was lost (the process died right after the receiver's commit)
    # would otherwise leave the node's claim upstream open until the sender happened to update.
    overdue.update(
        Payment.objects.filter(
            updated_at__lt=timezone.now() - timedelta(seconds=STALLED_AFTER_SECONDS),
            sender_transfer__status=Transfer.Status.ACTIVE,
            receiver_transfer__status__in=[Transfer.Status.RESOLVED, Transfer.Status.CANCELLED],
        ).values_list("sender_transfer__channel_id", flat=True)
    )
    # An open proposal left unanswered (its push lost to a Redis restart, its user idle) keeps its
    # channel busy, and the payments waiting for that user may not name the channel: its reconcile
    # pushes the proposal again (`channels.proposal_remind`).
    overdue.update(
        Channel.objects.filter(
            status=Channel.Status.OPEN,
            pending_update__isnull=False,
            updated_at__lt=timezone.now() - timedelta(seconds=STALLED_AFTER_SECONDS),
        ).values_list("id", flat=True)
    )
    return sorted(overdue)


def _receiver_expired(payment: Payment, now: int) -> bool:
    state = serialization.transfer_state_from_json(payment.sender_transfer.transfer_state)
    receiver_expiry = HashLockState.decode(state.encoded_state).expiry - hop_margin()
    return now >= receiver_expiry and (
        payment.receiver_transfer is None or payment.receiver_transfer.status == Transfer.Status.ACTIVE
    )


def _settle_sender_side(payment_pk: int, sender_channel_id: int) -> bool:
    """Resolve (or refund) the sender side of one decided payment, when its channel is free now
    (otherwise the answer to that channel's open proposal settles it). What settles it is read again
    under the payment's lock: a link redeemed a moment ago is no longer one to refund."""
    with transaction.atomic():
        channel = channels.lock_for_proposal(sender_channel_id)
        if channel is None:
            return False
        payment = _payment(payment_pk, BOTH_SIDES, for_update=True)
        if payment.sender_transfer.status != Transfer.Status.ACTIVE:
            return False
        resolver = _upstream_resolver(payment, int(time.time()))
        if resolver is None:
            return False
        return _propose_sender_resolve(channel, payment, resolver)


def _propose_sender_resolve(channel: Channel, payment: Payment, resolver: bytes) -> bool:
    """Propose resolving `payment`'s sender side in its channel (locked, free) with `resolver`."""
    status_before = payment.status
    if payment.status == PaymentStatus.PENDING and _link_expired(payment, int(time.time())):
        _fail(payment, "the link expired unredeemed")  # announced: nobody asked for this refund
        status_before = payment.status
    elif payment.status == PaymentStatus.PENDING:
        # Not forwarded: nobody downstream can claim it any more once we refund.
        payment.status = PaymentStatus.FAILED
    state = channels.latest_state(channel)
    transfer_id = bytes.fromhex(payment.sender_transfer.transfer_id[2:])
    if state.transfer(transfer_id) is None:
        return False
    try:
        channels.propose_resolve_locked(channel, state, transfer_id, resolver)
    except ProtocolError as exc:
        # e.g. `dispute_mismatch`: the transfer was disputed on chain and settles there only. Refused
        # before anything was written; the other payments of the channel still move on.
        logger.warning("cannot settle payment %s off chain: %s", payment.payment_id, exc)
        return False
    if payment.status != status_before:
        rows.update(payment, ["status"])
    return True


def payments_sync(*, channel_id: int) -> None:
    """Carry every payment touching this channel one step on, in the other channel where needed."""
    node = network.network().node_address
    unregistered = Transfer.objects.filter(
        channel_id=channel_id, responder=node, kind__in=ROUTED_KINDS, payment_as_sender__isnull=True
    )
    for transfer in unregistered:  # registered with the update normally; this catches anything missed
        payment_register(sender_transfer=transfer)
    waiting_recipients = (
        Payment.objects.filter(sender_transfer__channel_id=channel_id, status=PaymentStatus.PENDING)
        .exclude(recipient="")
        .values_list("recipient", flat=True)
    )
    for recipient in sorted(set(waiting_recipients)):
        _forward_to(recipient)
    new_receiver_sides = Transfer.objects.filter(
        channel_id=channel_id, initiator=node, kind__in=ROUTED_KINDS, payment_as_receiver__isnull=True
    )
    for transfer in new_receiver_sides:
        payment_receiver_locked(receiver_transfer=transfer)
    decided_here = Payment.objects.filter(
        receiver_transfer__channel_id=channel_id,
        receiver_transfer__status__in=[Transfer.Status.RESOLVED, Transfer.Status.CANCELLED],
        status__in=[PaymentStatus.PENDING, PaymentStatus.FORWARDED],
    )
    for payment in decided_here.select_related("sender_transfer", "receiver_transfer"):
        payment_receiver_settled(payment=payment)
    decided_downstream = Payment.objects.filter(
        receiver_transfer__channel_id=channel_id,
        receiver_transfer__status__in=[Transfer.Status.RESOLVED, Transfer.Status.CANCELLED],
        sender_transfer__status=Transfer.Status.ACTIVE,
    ).values_list("sender_transfer__channel_id", flat=True)
    for sender_channel_id in sorted(set(decided_downstream)):
        payments_settle_upstream(channel_id=sender_channel_id)
    settled_here = Payment.objects.filter(
        sender_transfer__channel_id=channel_id,
        sender_transfer__status__in=[Transfer.Status.RESOLVED, Transfer.Status.CANCELLED],
    ).exclude(status__in=[PaymentStatus.COMPLETED, PaymentStatus.REFUNDED])
    for payment in settled_here.select_related("sender_transfer", "receiver_transfer"):
        payment_sender_settled(payment=payment)


def _forward_to(recipient: str) -> None:
    """Forward what waits for `recipient` when its channel is open and free now. Otherwise it waits:
    for the recipient to open a channel, or for the answer to the channel's open proposal, whose
    commit forwards the next payment (`channel_freed`)."""
    channel = rows.values(
        Channel, ("id", "pending_update"), user_address=recipient, status=Channel.Status.OPEN
    )
    if channel is not None and channel[1] is None:
        payments_forward(channel_id=channel[0], user=recipient)


def proposal_taken_on_chain_locked(channel: Channel) -> None:
    """The user took the node's open proposal to the chain (`channels.proposal_taken_on_chain_locked`):
    a payment's receiver side it locks is linked to its payment, as one countersigned off chain."""
    row = channels.proposal_taken_on_chain_locked(channel)
    if row is not None and row.initiator == channel.node_address and row.kind in ROUTED_KINDS:
        payment_receiver_locked(receiver_transfer=row)


# -- links, cancels, history ---------------------------------------------------------------------


def link_redeem(*, redeemer: str, payment_id: str, preimage: bytes) -> Payment:
    """Claim a link payment (no named recipient) for `redeemer`'s channel with the link's secret."""
    if Channel.objects.filter(user_address=redeemer, status=Channel.Status.OPEN).first() is None:
        raise PaymentError("no_channel", "Open a channel before redeeming a link.", status=404)
    with transaction.atomic():
        payment = (
            Payment.objects.select_for_update(of=("self",))
            .select_related("sender_transfer")
            .filter(payment_id=payment_id)
            .first()
        )
        if payment is None or payment.kind != DefinitionKind.LINKED.value:
            raise PaymentError("unknown_payment", "No link payment with this id.", status=404)
        if payment.recipient:
            raise PaymentError("already_redeemed", "This link was redeemed already.", status=409)
        if (
            payment.status != PaymentStatus.PENDING
            or payment.sender_transfer.status != Transfer.Status.ACTIVE
        ):
            raise PaymentError("link_closed", f"This link is {payment.status}.", status=409)
        if _link_expired(payment, int(time.time())):
            raise PaymentError(
                "link_expired", "This link expired unredeemed; it goes back to its sender.", status=409
            )
        if not _secret_opens(payment, preimage):
            raise PaymentError("bad_preimage", "The secret does not open this link.")
        if redeemer == payment.sender:
            raise PaymentError("bad_recipient", "Reclaim your own link with cancel after it expires.")
        payment.recipient = redeemer
        payment.redeemer = redeemer
        payment.save(update_fields=["recipient", "redeemer", "updated_at"])
    _schedule_reconcile(Channel.objects.get(user_address=redeemer, status=Channel.Status.OPEN).pk)
    return payment


LINK_STATUSES = ("pending", "expired", "redeemed", "completed", "refunded", "failed")


def link_status(*, payment_id: str, preimage: bytes) -> dict[str, Any]:
    """What a link's holder may know before redeeming it: whether it can still be redeemed (`pending`),
    is past its expiry (`expired`), was claimed by somebody (`redeemed`, then `completed` once paid
    out), or went back to its sender (`refunded`, `failed`), with its amount, asset and expiry. Only
    for the secret's holder: a wrong secret, a payment that is no link and no payment at all all get
    the same `unknown_payment`, so the answer reveals nothing the link itself does not."""
    payment = (
        Payment.objects.select_related("sender_transfer", "receiver_transfer")
        .filter(payment_id=payment_id, kind=DefinitionKind.LINKED.value)
        .first()
    )
    is_link = payment is not None and (not payment.recipient or bool(payment.redeemer))
    if payment is None or not is_link or not _secret_opens(payment, preimage):
        raise PaymentError("unknown_payment", "No link with this id opens with this secret.", status=404)
    status = payment_status(payment)
    if status in (PaymentStatus.PENDING, PaymentStatus.FORWARDED):
        if payment.recipient:
            status = "redeemed"
        elif _link_expired(payment, int(time.time())):
            status = "expired"
    expires_at = payment.sender_transfer.meta.get("expiresAt")
    return {
        "paymentId": payment.payment_id,
        "status": status,
        "assetId": payment.asset_id,
        "amount": str(int(payment.amount)),
        "expiresAt": expires_at if isinstance(expires_at, int) else None,
    }


def payment_cancel(*, sender: str, payment_id: str) -> Payment:
    """The sender takes back a payment nobody received: a link nobody redeemed after it expired, or
    a payment not forwarded yet (its receiver never came online)."""
    with transaction.atomic():
        payment = (
            Payment.objects.select_for_update(of=("self",))
            .select_related("sender_transfer")
            .filter(payment_id=payment_id, sender=sender)
            .first()
        )
        if payment is None:
            raise PaymentError("unknown_payment", "No payment of yours with this id.", status=404)
        if payment.status in (PaymentStatus.FAILED, PaymentStatus.REFUNDED) and not payment.redeemer:
            return payment  # on its way back (an expired link the node refunds on its own) or back
        if payment.status != PaymentStatus.PENDING:
            raise PaymentError("not_cancellable", f"The payment is {payment.status}.", status=409)
        if payment.redeemer:  # its holder claimed it; it only waits for the node to deliver it
            raise PaymentError("already_redeemed", "This link was redeemed already.", status=409)
        expires_at = payment.sender_transfer.meta.get("expiresAt")
        if not payment.recipient and isinstance(expires_at, int) and time.time() < expires_at:
            raise PaymentError(
                "link_not_expired", f"The link can be reclaimed after {expires_at}.", status=409
            )
        _fail(payment, "cancelled by the sender")  # the refund that follows is not announced again
    _schedule_reconcile(payment.sender_transfer.channel_id)
    return payment


def _schedule_reconcile(channel_id: int) -> None:
    after_commit.run_task("channels_app.tasks.channel_reconcile", channel_id)
