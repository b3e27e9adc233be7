"""The node's terms for routing a payment, checked before it countersigns the sender's transfer.

Separate from `payments` so the channel service can apply them without importing the router.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from channels_app import network
from connext.protocol import serialization
from connext.protocol.definitions import HashLockState
from connext.protocol.types import DefinitionKind, TransferState


class PaymentError(Exception):
    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def hop_margin() -> int:
    """How much earlier the receiver's HashLock expires than the sender's: enough for the node to
    take the sender side to the chain (one dispute window) and some minutes to spare."""
    return settings.DISPUTE_TIMEOUT_SECONDS + settings.HASHLOCK_MIN_WINDOW_SECONDS


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
    if kind is DefinitionKind.HASHLOCK:
        expiry = HashLockState.decode(transfer.encoded_state).expiry
        if expiry - hop_margin() <= int(time.time()) + settings.HASHLOCK_MIN_WINDOW_SECONDS:
            raise PaymentError(
                "expiry_too_soon",
                f"A routed hashlock must expire more than {hop_margin() + settings.HASHLOCK_MIN_WINDOW_SECONDS}"
                " seconds from now, so the node can always claim it after paying the receiver.",
            )
