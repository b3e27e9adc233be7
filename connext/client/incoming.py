"""The node's transfers to the user: recording the payments its countersigned proposals bring,
resolving them (with the secret the sender encrypted to the user, or the user's own resolver),
cancelling incoming HashLocks that expired, and resolving the node's withdraws with the user's
commitment signature. It is the exchange's `FollowUp`.

A secret is kept in the store before the resolve that reveals it is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from connext.client import arguments, policy
from connext.client.core import ClientCore
from connext.client.disputes import PREIMAGE_KINDS
from connext.client.exchange import Exchange, PreparedAnswer
from connext.client.store import PaymentRecord
from connext.errors import ConnextError, InvalidArgumentError
from connext.protocol import ecies, serialization, signing
from connext.protocol.definitions import (
    HashLockState,
    LinkedState,
    PreimageResolver,
    SignedResolver,
    WithdrawResolver,
    WithdrawState,
)
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

logger = logging.getLogger("connext.client")


class Incoming:
    """What the user does with the transfers the node makes to it."""

    def __init__(self, core: ClientCore, exchange: Exchange) -> None:
        self._core = core
        self._exchange = exchange
        self._expiry_timers: set[int] = set()
        self._decrypted: tuple[str, bytes] = ("", b"")  # the last encrypted preimage opened, and its preimage

    async def resolve_condition(
        self,
        payment_id: str | bytes,
        preimage: bytes | str | None,
        signature: bytes | str | None,
        data: bytes | str | None,
    ) -> dict[str, Any]:
        core = self._core
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        async with core.lock:
            transfer = self._incoming_transfer(payment_hex)
            if transfer is None:
                raise InvalidArgumentError(
                    "unknown_transfer", f"no active payment {payment_hex} to this user"
                )
            kind = core.definitions.get(transfer.definition)
            if kind is DefinitionKind.SIGNED:
                if signature is None:
                    raise InvalidArgumentError(
                        "missing_argument", "a signed transfer resolves with a signature"
                    )
                resolver = SignedResolver(
                    ZERO_BYTES32 if data is None else arguments.bytes32(data, "data"),
                    arguments.hex_bytes(signature, "signature"),
                ).encode()
            else:
                if preimage is None:
                    raise InvalidArgumentError("missing_argument", "this transfer resolves with a preimage")
                secret = arguments.bytes32(preimage, "preimage")
                resolver = PreimageResolver(secret).encode()
                if kind is not None and keccak256(secret) == _lock_of(kind, transfer.encoded_state)[0]:
                    self._keep_secret(payment_hex, transfer, kind, secret)
            await self._resolve_incoming_locked(transfer.transfer_id, resolver)
        record = core.store.payment(payment_hex)
        return record.as_json() if record is not None else {"paymentId": payment_hex, "status": "completed"}

    def _keep_secret(
        self, payment_hex: str, transfer: TransferState, kind: DefinitionKind, secret: bytes
    ) -> None:
        """Store the preimage before the resolve is sent: if the node never answers, the watcher and
        `connext exit` resolve the transfer on chain with it."""
        record = self._core.store.payment(payment_hex) or PaymentRecord(
            payment_id=payment_hex,
            direction="incoming",
            kind=kind.value,
            sender=self._core.node_address,
            recipient=self._core.address,
            asset_id=transfer.asset_id,
            amount=transfer.locked,
            status="forwarded",
        )
        if record.secret != secret:
            self._core.store.save_payment(replace(record, secret=secret))

    def _incoming_transfer(self, payment_hex: str) -> TransferState | None:
        state = self._core.state
        return next(
            (
                t
                for t in state.transfers
                if serialization.hex_bytes(t.payment_id) == payment_hex
                and t.responder == self._core.address
                and t.initiator == state.node
            ),
            None,
        )

    async def _resolve_incoming_locked(
        self, transfer_id: bytes, resolver: bytes, *, answer: PreparedAnswer | None = None
    ) -> bool:
        """Resolve the node's transfer to the user (with `answer`: the proposal that creates it,
        countersigned in the same request); True when this call did it."""
        core = self._core
        await core.refuse_while_disputed()

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]] | None:
            if state.transfer(transfer_id) is None:
                return None  # resolved meanwhile (by another device, or a nested follow-up)
            update = ResolveUpdate(
                channel_address=state.channel_address,
                nonce=state.nonce + 1,
                initiator=core.address,
                transfer_id=transfer_id,
                encoded_resolver=resolver,
            )
            return update, {}

        previous = answer.new if answer is not None else core.state
        transfer = previous.transfer(transfer_id)
        new = await self._exchange.propose_locked(build, with_answer=answer)
        if new is None or transfer is None:
            return False
        index = new.asset_index(transfer.asset_id)
        assert index is not None
        paid = new.balances[index][1] > previous.balances[index][1]
        record = core.store.payment(serialization.hex_bytes(transfer.payment_id))
        if record is not None:
            # A cancel fails the payment; it is refunded once the node refunds the sender's side.
            core.store.save_payment(replace(record, status="completed" if paid else "failed"))
        core.signal_state()
        return True

    # -- the exchange's follow-up -------------------------------------------------------------------

    def note_countersigned(self, previous: ChannelState, update: Update, meta: dict[str, Any]) -> None:
        core = self._core
        if isinstance(update, CreateUpdate):
            kind = core.definitions.get(update.definition)
            if kind not in policy.PAYMENT_KINDS or kind is None:
                return
            payment_hex = serialization.hex_bytes(update.payment_id)
            secret = self._decrypt_secret(kind, update.encoded_state, meta)
            sender = meta.get("sender")
            core.store.save_payment(
                PaymentRecord(
                    payment_id=payment_hex,
                    direction="incoming",
                    kind=kind.value,
                    sender=sender if isinstance(sender, str) else core.node_address,
                    recipient=core.address,
                    asset_id=update.asset_id,
                    amount=update.amount,
                    status="forwarded",
                    secret=secret,
                    meta=meta,
                )
            )
        elif isinstance(update, ResolveUpdate):
            transfer = previous.transfer(update.transfer_id)
            if transfer is None or transfer.initiator != core.address:
                return
            record = core.store.payment(serialization.hex_bytes(transfer.payment_id))
            if record is None:
                return
            index = previous.asset_index(transfer.asset_id)
            refunded = index is not None and core.state.balances[index][1] > previous.balances[index][1]
            core.store.save_payment(replace(record, status="refunded" if refunded else "completed"))

    def _decrypt_secret(self, kind: DefinitionKind, encoded_state: bytes, meta: dict[str, Any]) -> bytes:
        """The preimage the sender encrypted to this user, when it opens the transfer; else empty."""
        encrypted = meta.get("encryptedPreimage")
        if not isinstance(encrypted, str) or kind is DefinitionKind.SIGNED:
            return b""
        if self._decrypted[0] == encrypted:  # checked against the lock below when first opened
            return (
                self._decrypted[1]
                if keccak256(self._decrypted[1]) == _lock_of(kind, encoded_state)[0]
                else b""
            )
        try:
            preimage = ecies.decrypt(
                self._core.key, serialization.parse_bytes(encrypted, field="encryptedPreimage")
            )
        except ProtocolError as exc:
            logger.warning("an incoming payment's encrypted preimage does not decrypt: %s", exc)
            return b""
        self._decrypted = (encrypted, preimage)
        lock_hash, _ = _lock_of(kind, encoded_state)
        if keccak256(preimage) != lock_hash:
            logger.warning("an incoming payment's decrypted preimage does not open its lock")
            return b""
        return preimage

    async def resolve_with_answer_locked(self, prepared: PreparedAnswer) -> bool:
        """An incoming Linked or HashLock payment whose secret this client holds (decrypted from the
        proposal): countersign it and resolve it in one request. True when the proposal is answered;
        False when there is nothing to resolve at once or the request did not go through (the caller
        then answers the proposal alone)."""
        core = self._core
        update = prepared.update
        if not isinstance(update, CreateUpdate) or update.initiator != core.node_address:
            return False
        kind = core.definitions.get(update.definition)
        if kind not in PREIMAGE_KINDS:
            return False
        created = next((t for t in prepared.new.transfers if t.create_nonce == prepared.new.nonce), None)
        if created is None or created.responder != core.address:
            return False
        secret = self._decrypt_secret(kind, update.encoded_state, prepared.meta)
        lock_hash, expiry = _lock_of(kind, created.encoded_state)
        if not secret or keccak256(secret) != lock_hash or (expiry is not None and time.time() >= expiry):
            return False
        if core.disputes is not None and core.disputes.seen_disputed():
            return False
        try:
            await self._resolve_incoming_locked(
                created.transfer_id, PreimageResolver(secret).encode(), answer=prepared
            )
        except ConnextError as exc:
            logger.warning("could not resolve the incoming payment at once: %s", exc)
        return core.state.nonce >= prepared.new.nonce

    async def follow_up_locked(self) -> None:
        """What the user owes the channel after a change: resolve the node's withdraw transfers
        (reclaimed collateral) with the user's commitment signature; resolve incoming payments whose
        secret the user holds; cancel incoming HashLocks that expired (freeing the node's collateral)."""
        core = self._core
        for transfer in core.state.transfers:
            if transfer.initiator != core.state.node or transfer.responder != core.address:
                continue
            kind = core.definitions.get(transfer.definition)
            if kind is DefinitionKind.WITHDRAW:
                await self._resolve_node_withdraw_locked(transfer.transfer_id)
            elif kind in (DefinitionKind.LINKED, DefinitionKind.HASHLOCK):
                await self._settle_incoming_locked(transfer.transfer_id, kind)

    async def _resolve_node_withdraw_locked(self, transfer_id: bytes) -> None:
        core = self._core

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]] | None:
            transfer = state.transfer(transfer_id)
            if transfer is None:
                return None  # resolved meanwhile (by another device of this user)
            withdraw = WithdrawState.decode(transfer.encoded_state)
            signature = signing.sign_withdraw(withdraw.commitment(state.chain_id), core.signer)
            update = ResolveUpdate(
                channel_address=state.channel_address,
                nonce=state.nonce + 1,
                initiator=core.address,
                transfer_id=transfer_id,
                encoded_resolver=WithdrawResolver(signature).encode(),
            )
            return update, {}

        try:
            await self._exchange.propose_locked(build)
        except ConnextError as exc:
            logger.warning("could not resolve the node's withdraw 0x%s: %s", transfer_id.hex(), exc)

    async def _settle_incoming_locked(self, transfer_id: bytes, kind: DefinitionKind) -> None:
        """Resolve an incoming Linked or HashLock transfer whose secret this client holds; cancel an
        incoming HashLock that expired (its payment is refunded to the sender)."""
        transfer = self._core.state.transfer(transfer_id)
        if transfer is None:
            return
        now = int(time.time())
        lock_hash, expiry = _lock_of(kind, transfer.encoded_state)
        resolver: bytes | None = None
        if expiry is not None and now >= expiry:
            resolver = PreimageResolver(ZERO_BYTES32).encode()
        else:
            record = self._core.store.payment(serialization.hex_bytes(transfer.payment_id))
            if record is not None and record.secret and keccak256(record.secret) == lock_hash:
                resolver = PreimageResolver(record.secret).encode()
            elif expiry is not None:
                self._expire_at(expiry)
        if resolver is None:
            return
        try:
            await self._resolve_incoming_locked(transfer_id, resolver)
        except ConnextError as exc:
            logger.warning("could not settle the incoming transfer 0x%s: %s", transfer_id.hex(), exc)

    def _expire_at(self, expiry: int) -> None:
        """Wake the follow-up when an incoming HashLock expires, to cancel it."""
        if expiry in self._expiry_timers:
            return
        self._expiry_timers.add(expiry)

        async def wake() -> None:
            await asyncio.sleep(max(0.0, expiry - time.time()) + 0.05)
            self._expiry_timers.discard(expiry)
            await self._core.inbox.put({"type": "expiry"})

        self._core.background(wake())


def _lock_of(kind: DefinitionKind, encoded_state: bytes) -> tuple[bytes, int | None]:
    """(lock hash, expiry or None) of a Linked or HashLock transfer state."""
    if kind is DefinitionKind.HASHLOCK:
        lock = HashLockState.decode(encoded_state)
        return lock.lock_hash, lock.expiry
    return LinkedState.decode(encoded_state).lock_hash, None
