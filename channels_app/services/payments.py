"""Routed payments: A's transfer to the node, then the node's matching transfer to B, unlocked by the
same resolver.

Order is the safety rule: the node creates the receiver side only after the sender side is doubly
signed (the receiver never gets a free option), tops up its collateral in B's channel first (the
payment waits meanwhile), shortens a HashLock's expiry by `hop margin` so it can always claim upstream,
and resolves the sender side with the receiver's own resolver as soon as B resolves. A receiver side
that is cancelled or expires refunds the sender side.

Everything here is driven by `channel_reconcile` of the channel concerned and is idempotent: each step
looks at the stored state and does what is missing, so retries, restarts and concurrent workers are safe.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from channels_app import after_commit, network, realtime, rows
from channels_app.models import Channel, OnchainTransaction, Payment, Transfer, TransferDispute
from channels_app.services import channels, collateral, routing_policy
from channels_app.services.payment_records import (
    ROUTED_KINDS,
    _push,
    payment_receiver_locked,
    payment_receiver_settled,
    payment_register,
    payment_sender_settled,
    payment_status,
)
from channels_app.services.routing_policy import PaymentError, hop_margin
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization
from connext.protocol.definitions import HashLockState, PreimageResolver, SignedResolver
from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.errors import ProtocolError
from connext.protocol.types import CreateUpdate, DefinitionKind

logger = logging.getLogger(__name__)

PaymentStatus = Payment.Status


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
    transfer_timeout = routing_policy.receiver_transfer_timeout(
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
    finds a channel busy is picked up when that channel's proposal is answered."""
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


STALLED_AFTER_SECONDS = 10


def payments_overdue_channels() -> list[int]:
    """Channels holding a payment the node must move on without being asked: one that failed, a link
    that expired unredeemed, a HashLock whose receiver side has expired (reconciling a channel only
    follows its own updates; a receiver who never comes back sends none), any open payment that
    has not moved for a while (its inline follow-up was lost, e.g. to a crash between a commit and
    the next step), and any channel whose open proposal has waited that long."""
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
