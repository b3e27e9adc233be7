"""Payment records: what the node tells users about a routed payment, and its registration.

Registration happens in the same transaction that stores the sender's doubly signed transfer to the
node, so a payment (a link, say) can be redeemed or looked up the moment its sender has it countersigned.
Kept apart from the router (`payments`) so the channel service can call it.
"""

from __future__ import annotations

from typing import Any

from channels_app import realtime
from channels_app.models import Payment, Transfer
from connext.protocol import serialization
from connext.protocol.types import DefinitionKind

ROUTED_KINDS = (DefinitionKind.LINKED.value, DefinitionKind.HASHLOCK.value, DefinitionKind.SIGNED.value)


def payment_json(payment: Payment) -> dict[str, Any]:
    meta = payment.sender_transfer.meta or {}
    return {
        "paymentId": payment.payment_id,
        "kind": payment.kind,
        "sender": payment.sender,
        "recipient": payment.recipient or None,
        "assetId": payment.asset_id,
        "amount": str(int(payment.amount)),
        "status": payment.status,
        "failure": payment.failure or None,
        "meta": {key: value for key, value in meta.items() if key != "encryptedPreimage"},
        "createdAt": payment.created_at.isoformat(),
        "updatedAt": payment.updated_at.isoformat(),
    }


def _push(address: str, event: str, payment: Payment) -> None:
    if address:
        realtime.push_event_on_commit(realtime.user_group(address), event, payment_json(payment))


def payment_register(*, sender_transfer: Transfer) -> Payment | None:
    """Record the payment a sender's transfer to the node starts (once)."""
    if sender_transfer.kind not in ROUTED_KINDS:
        return None
    recipient = sender_transfer.meta.get("recipient") or ""
    payment, created = Payment.objects.get_or_create(
        payment_id=sender_transfer.payment_id,
        defaults={
            "kind": sender_transfer.kind,
            "sender": sender_transfer.initiator,
            "recipient": serialization.parse_address(recipient, field="recipient") if recipient else "",
            "asset_id": sender_transfer.asset_id,
            "amount": sender_transfer.amount,
            "sender_transfer": sender_transfer,
        },
    )
    if created:
        _push(payment.sender, "transfer.created", payment)
    return payment


def payment_receiver_locked(*, receiver_transfer: Transfer) -> None:
    """The receiver countersigned its side: link it to the payment and tell the receiver."""
    payment = Payment.objects.filter(payment_id=receiver_transfer.payment_id).first()
    if payment is None or payment.receiver_transfer_id is not None:
        return
    payment.receiver_transfer = receiver_transfer
    payment.save(update_fields=["receiver_transfer", "updated_at"])
    _push(payment.recipient, "transfer.received", payment)


def payment_sender_settled(*, transfer_id: str) -> None:
    """The sender side was resolved or refunded (both signed): the payment is over."""
    payment = (
        Payment.objects.select_related("sender_transfer")
        .filter(sender_transfer__transfer_id=transfer_id)
        .first()
    )
    if payment is None or payment.status in (Payment.Status.COMPLETED, Payment.Status.REFUNDED):
        return
    if payment.sender_transfer.status == Transfer.Status.RESOLVED:
        payment.status = Payment.Status.COMPLETED
        payment.save(update_fields=["status", "updated_at"])
        _push(payment.sender, "transfer.resolved", payment)
        _push(payment.recipient, "transfer.resolved", payment)
        return
    was_failed = payment.status == Payment.Status.FAILED
    payment.status = Payment.Status.REFUNDED
    payment.save(update_fields=["status", "updated_at"])
    if not was_failed:  # a failure was announced when it happened
        _push(payment.sender, "transfer.failed", payment)
