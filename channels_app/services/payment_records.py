"""Payment records: what the node tells users about a routed payment, and its registration.

Registration happens in the same transaction that stores the sender's doubly signed transfer to the
node, so a payment (a link, say) can be redeemed or looked up the moment its sender has it countersigned.
Kept apart from the router (`payments`) so the channel service can call it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.utils import timezone

from channels_app import realtime, rows
from channels_app.models import Payment, Transfer
from connext.protocol import serialization
from connext.protocol.types import DefinitionKind

ROUTED_KINDS = (DefinitionKind.LINKED.value, DefinitionKind.HASHLOCK.value, DefinitionKind.SIGNED.value)


def payment_status(payment: Payment) -> str:
    """The status both parties see, read from the two transfers themselves so it never waits for the
    node's bookkeeping (nor for an offline sender): `completed` once the receiver resolved its side
    (it holds the money; the node holds the resolver that settles the sender's lock), `failed` once
    the receiver's side is cancelled or expired (the sender's refund is under way), `refunded` once the
    sender's side is refunded in a doubly signed state. Otherwise the stored status (pending,
    forwarded, or failed when it could not be forwarded)."""
    sender = payment.sender_transfer
    receiver = payment.receiver_transfer
    if sender.status == Transfer.Status.CANCELLED:
        return Payment.Status.REFUNDED
    if sender.status == Transfer.Status.RESOLVED or (
        receiver is not None and receiver.status == Transfer.Status.RESOLVED
    ):
        return Payment.Status.COMPLETED
    if receiver is not None and receiver.status == Transfer.Status.CANCELLED:
        return Payment.Status.FAILED
    return payment.status


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
