"""The user's payments through the node: sending them (Linked, HashLock, Signed), links, cancelling,
the records the store keeps of every payment and the node's news of them, history, and `settle`.

A payment is recorded in the store (status `sending`) before its update is sent, so a lost answer or
a crash leaves a payment to settle with the node, never one an application would pay again; a retry
with a payment id the store knows pays nothing twice.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from connext.client import arguments, policy
from connext.client.amounts import check_amount
from connext.client.core import DEFAULT_WAIT_SECONDS, ETH, PAYMENT_TRANSFER_TIMEOUT, ClientCore
from connext.client.exchange import Exchange
from connext.client.incoming import Incoming
from connext.client.store import SENDING, PaymentRecord
from connext.errors import (
    ConnextError,
    InvalidArgumentError,
    NodeError,
    NodeUnavailableError,
    OutcomeUnknownError,
    TimeoutError,
    ValidationError,
)
from connext.protocol import ecies, serialization, signing
from connext.protocol import meta as transfer_meta
from connext.protocol.definitions import HashLockState, LinkedState, SignedState
from connext.protocol.encoding import keccak256
from connext.protocol.errors import ProtocolError
from connext.protocol.types import ChannelState, CreateUpdate, DefinitionKind, Update

LINK_LIFETIME_SECONDS = 7 * 24 * 3600  # an unredeemed link can be taken back after this
REGISTRATION_POLL_SECONDS = 2.0
FINAL_STATUSES = ("completed", "refunded", "failed")
SETTLE_WAIT_SECONDS = 10.0  # how long `settle` waits for a linked payment on its way to the user
HISTORY_PAGE, MAX_HISTORY_PAGE = 200, 500  # payments per page of history: default, most the node serves


@dataclass
class InFlight:
    """Payments of one asset not final yet: what comes in to the user and what goes out."""

    incoming: int = 0
    outgoing: int = 0
    incoming_count: int = 0
    outgoing_count: int = 0


class Payments:
    """The user's payments: the ones it sends, and the records of all of them."""

    def __init__(self, core: ClientCore, exchange: Exchange, incoming: Incoming) -> None:
        self._core = core
        self._exchange = exchange
        self._incoming = incoming
        self._public_keys: dict[str, bytes] = {}

    async def settle(self, timeout: float) -> dict[str, InFlight]:
        core = self._core
        deadline = time.monotonic() + timeout
        async with core.lock:
            await self._exchange.sync_locked()
        while True:
            page = await self.get_transfer_history(MAX_HISTORY_PAGE, None)
            moving = [payment for payment in page if payment["status"] not in FINAL_STATUSES]
            arriving = [
                payment
                for payment in moving
                if payment["kind"] == "linked" and payment.get("recipient") == core.address
            ]
            if not arriving or time.monotonic() >= deadline:
                break
            await core.next_change(min(0.5, max(0.0, deadline - time.monotonic())))
        async with core.lock:  # a resolve under way finishes before the balance is read
            pass
        summary: dict[str, InFlight] = {}
        for payment in moving:
            entry = summary.setdefault(payment["assetId"], InFlight())
            amount = int(payment["amount"])
            if payment["sender"] == core.address:
                entry.outgoing += amount
                entry.outgoing_count += 1
            else:
                entry.incoming += amount
                entry.incoming_count += 1
        return summary

    # -- sending ------------------------------------------------------------------------------------

    async def transfer(
        self,
        recipient: str,
        amount: int,
        asset_id: str,
        meta: dict[str, Any] | None,
        payment_id: bytes | str | None,
    ) -> str:
        recipient = arguments.address(recipient, "recipient")
        id_bytes = (
            secrets.token_bytes(32) if payment_id is None else arguments.bytes32(payment_id, "payment_id")
        )
        if payment_id is not None and await self._made_before(
            DefinitionKind.LINKED, amount, asset_id, recipient, id_bytes
        ):  # a retry: the first call's secret and meta stand
            return serialization.hex_bytes(id_bytes)
        public_key = await self._public_key_of(recipient)
        preimage = secrets.token_bytes(32)
        encrypted = ecies.encrypt(
            public_key, preimage, ephemeral_key=_fresh_private_key(), nonce=secrets.token_bytes(16)
        )
        meta = {**(meta or {}), "encryptedPreimage": serialization.hex_bytes(encrypted)}
        return await self._send_payment(
            DefinitionKind.LINKED,
            amount,
            asset_id,
            recipient=recipient,
            encoded_state=LinkedState(keccak256(preimage)).encode(),
            payment_id=id_bytes,
            meta=meta,
            secret=preimage,
        )

    async def conditional_transfer(
        self,
        kind: str,
        amount: int,
        recipient: str,
        asset_id: str,
        *,
        lock_hash: bytes | str | None,
        expiry: int | None,
        signer: str | None,
        payment_id: bytes | str | None,
        meta: dict[str, Any] | None,
    ) -> str:
        recipient = arguments.address(recipient, "recipient")
        id_bytes = (
            secrets.token_bytes(32) if payment_id is None else arguments.bytes32(payment_id, "payment_id")
        )
        definitions = {
            "signed": DefinitionKind.SIGNED,
            "hashlock": DefinitionKind.HASHLOCK,
            "linked": DefinitionKind.LINKED,
        }
        if (
            payment_id is not None
            and kind in definitions
            and await self._made_before(definitions[kind], amount, asset_id, recipient, id_bytes)
        ):
            return serialization.hex_bytes(id_bytes)
        if kind == "signed":
            if signer is None:
                raise InvalidArgumentError("missing_argument", "a signed transfer names its signer")
            encoded = SignedState(arguments.address(signer, "signer"), id_bytes).encode()
            definition = DefinitionKind.SIGNED
        elif kind in ("hashlock", "linked"):
            if lock_hash is None:
                raise InvalidArgumentError("missing_argument", f"a {kind} transfer needs its lock_hash")
            lock = arguments.bytes32(lock_hash, "lock_hash")
            if kind == "linked":
                encoded, definition = LinkedState(lock).encode(), DefinitionKind.LINKED
            else:
                if expiry is None:
                    raise InvalidArgumentError("missing_argument", "a hashlock transfer needs its expiry")
                if expiry <= int(time.time()):
                    raise InvalidArgumentError("expired", f"the expiry {expiry} has passed")
                min_window = self._core.min_window
                if expiry < int(time.time()) + min_window:
                    raise InvalidArgumentError(
                        "window_too_short",
                        f"the expiry {expiry} is less than {min_window}s away: too soon to claim on chain",
                    )
                encoded, definition = HashLockState(lock, expiry).encode(), DefinitionKind.HASHLOCK
        else:
            raise InvalidArgumentError("unsupported_transfer", f"no transfer of kind {kind!r}")
        return await self._send_payment(
            definition,
            amount,
            asset_id,
            recipient=recipient,
            encoded_state=encoded,
            payment_id=id_bytes,
            meta=dict(meta or {}),
        )

    async def _public_key_of(self, user: str) -> bytes:
        """The user's public key from the node, checked to be the key of that address (a node
        handing out its own key would read the preimage). Kept once checked: an address's key never
        changes."""
        known = self._public_keys.get(user)
        if known is not None:
            return known
        answer = await self._core.api.get(f"/api/users/{user}/key")
        try:
            public_key = serialization.parse_bytes(answer.get("publicKey"), field="publicKey")
            address = signing.address_of_public_key(public_key)
        except ProtocolError as exc:
            raise policy.from_protocol(exc) from None
        if address != user:
            raise ValidationError("bad_public_key", f"the node's key for {user} belongs to {address}")
        self._public_keys[user] = public_key
        return public_key

    def _outgoing_record(
        self, kind: DefinitionKind, amount: int, asset_id: str, recipient: str | None, payment_id: bytes
    ) -> PaymentRecord:
        """The store's record of a payment of the user's, before it is sent."""
        return PaymentRecord(
            payment_id=serialization.hex_bytes(payment_id),
            direction="outgoing",
            kind=kind.value,
            sender=self._core.address,
            recipient=recipient or "",
            asset_id=self._core.asset(asset_id),
            amount=check_amount(amount),
            status=SENDING,
        )

    async def _made_before(
        self, kind: DefinitionKind, amount: int, asset_id: str, recipient: str | None, payment_id: bytes
    ) -> bool:
        async with self._core.lock:
            return await self._made_before_locked(
                self._outgoing_record(kind, amount, asset_id, recipient, payment_id)
            )

    async def _made_before_locked(self, wanted: PaymentRecord) -> bool:
        """True when the store knows the payment `wanted` names and it was made: a retry, which returns
        the first call's outcome. An unknown outcome is settled with the node first
        (`OutcomeUnknownError` while it cannot be). False for a new id, or one whose payment never
        happened (it may be made now). `payment_id_reused` for an id of another payment."""
        store = self._core.store
        known = store.payment(wanted.payment_id)
        if known is None:
            return False
        terms = ("direction", "kind", "recipient", "asset_id", "amount")
        if any(getattr(known, term) != getattr(wanted, term) for term in terms):
            raise InvalidArgumentError(
                "payment_id_reused", f"payment {known.payment_id} is another payment: {known.as_json()}"
            )
        if known.status == SENDING:
            try:
                await self._exchange.sync_locked()
                await self.settle_sending_locked()
            except NodeUnavailableError as exc:
                raise _outcome_unknown(known.payment_id, exc) from exc
            settled = store.payment(known.payment_id)
            if settled is None:
                return False
            if settled.status == SENDING:
                raise _outcome_unknown(known.payment_id, None)
        return True

    def _unanswered(self, payment_id: bytes) -> bool:
        """The user's create of `payment_id` is the update signed and sent but not answered."""
        pending = self._core.store.pending(self._core.channel_address)
        return (
            pending is not None
            and isinstance(pending.update, CreateUpdate)
            and pending.update.payment_id == payment_id
        )

    async def settle_sending_locked(self) -> None:
        """After a sync: settle the payments sent whose answer was never seen. One the node knows or
        the channel holds was made (the node's news of it is kept); one still waiting as the update
        left unanswered stays unknown; any other never happened and is forgotten (nothing moved, its
        id is free again: the signed create can no longer apply, its nonce is taken)."""
        core = self._core
        for record in core.store.payments_with_status(SENDING):
            id_bytes = arguments.bytes32(record.payment_id, "payment_id")
            if self._unanswered(id_bytes):
                continue
            try:
                news: dict[str, Any] | None = await core.api.get(f"/api/transfers/{record.payment_id}")
            except NodeError as exc:
                if exc.code != "unknown_payment":
                    raise
                news = None
            if news is not None:
                self.note_payment_news(news)
            elif any(t.payment_id == id_bytes and t.initiator == core.address for t in core.state.transfers):
                core.store.save_payment(replace(record, status="pending"))
            else:
                core.store.delete_payment(record.payment_id)
        core.signal_state()

    async def catch_up_locked(self) -> None:
        """After a sync that moved the channel: keep the node's news of the latest payments this
        client does not hold as settled. The pushes that carry it are lost with a socket (or with the
        node process that was to send them, right after committing the update that made them): an
        incoming payment whose countersignature was never answered is otherwise never recorded."""
        try:
            answer = await self._core.api.get("/api/transfers", limit=str(HISTORY_PAGE))
        except NodeUnavailableError:
            return  # the next sync asks again
        for payment in answer.get("transfers", []):
            known = self._core.store.payment(str(payment.get("paymentId")))
            if known is None or known.status not in FINAL_STATUSES:
                self.note_payment_news(payment)

    async def _send_payment(
        self,
        kind: DefinitionKind,
        amount: int,
        asset_id: str,
        *,
        recipient: str | None,
        encoded_state: bytes,
        payment_id: bytes,
        meta: dict[str, Any],
        secret: bytes = b"",
    ) -> str:
        core = self._core
        amount = check_amount(amount)
        asset_id = core.asset(asset_id)
        await core.refuse_while_disputed()
        if recipient is not None:
            if recipient in (core.address, core.node_address):
                raise InvalidArgumentError("bad_recipient", "a payment goes to another user of the node")
            meta = {**meta, "recipient": recipient}
        payment_hex = serialization.hex_bytes(payment_id)

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]]:
            update = CreateUpdate(
                channel_address=state.channel_address,
                nonce=state.nonce + 1,
                initiator=core.address,
                asset_id=asset_id,
                amount=amount,
                definition=core.definition(kind),
                payment_id=payment_id,
                encoded_state=encoded_state,
                transfer_timeout=PAYMENT_TRANSFER_TIMEOUT,
                meta_hash=transfer_meta.meta_hash(meta),
            )
            return update, {}

        record = replace(
            self._outgoing_record(kind, amount, asset_id, recipient, payment_id), secret=secret, meta=meta
        )
        async with core.lock:
            if await self._made_before_locked(record):  # a concurrent call with this id made it
                return payment_hex
            try:
                transfer_meta.canonical_meta(meta)
            except ProtocolError as exc:
                raise policy.from_protocol(exc) from None
            # Known before it is sent: a lost answer or a crash leaves a payment to settle, not a
            # stranger that an application would pay again.
            core.store.save_payment(record)
            try:
                await self._exchange.propose_locked(build, meta=meta)
            except BaseException as exc:
                if not self._unanswered(payment_id):  # refused: no signed create of it can still apply
                    core.store.delete_payment(payment_hex)
                elif isinstance(exc, NodeUnavailableError):
                    raise _outcome_unknown(payment_hex, exc) from exc
                raise
            known = core.store.payment(payment_hex)
            if known is None or known.status == SENDING:  # else the node's news came before its answer
                core.store.save_payment(replace(record, status="pending"))
        return payment_hex

    # -- links --------------------------------------------------------------------------------------

    async def create_link(self, amount: int, asset_id: str, expires_in: int) -> dict[str, str]:
        secret = secrets.token_bytes(32)
        id_bytes = secrets.token_bytes(32)
        payment_hex = serialization.hex_bytes(id_bytes)
        registered = self._core.events.waiter("transfer.created", lambda p: p.get("paymentId") == payment_hex)
        payment_id = await self._send_payment(
            DefinitionKind.LINKED,
            amount,
            asset_id,
            recipient=None,
            encoded_state=LinkedState(keccak256(secret)).encode(),
            payment_id=id_bytes,
            meta={"expiresAt": int(time.time()) + expires_in},
            secret=secret,
        )
        await self._wait_registered(payment_hex, registered)
        secret_hex = serialization.hex_bytes(secret)
        url = f"{self._core.node_url.rstrip('/')}/redeem#paymentId={payment_id}&secret={secret_hex}"
        return {"payment_id": payment_id, "secret": secret_hex, "url": url}

    async def _wait_registered(self, payment_hex: str, registered: asyncio.Future[dict[str, Any]]) -> None:
        """Until the node announced (`transfer.created`) or lists the payment: it registers a
        sender's transfer right after countersigning it, in its workers."""
        deadline = time.monotonic() + DEFAULT_WAIT_SECONDS
        try:
            while not registered.done():
                with contextlib.suppress(builtins.TimeoutError):
                    async with asyncio.timeout(REGISTRATION_POLL_SECONDS):
                        await asyncio.shield(registered)
                    return
                try:
                    await self._core.api.get(f"/api/transfers/{payment_hex}")
                    return
                except NodeError as exc:
                    if exc.code != "unknown_payment":
                        raise
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the node did not register payment {payment_hex}")
        finally:
            registered.cancel()

    async def redeem_link(
        self, payment_id: str | bytes, secret: str | bytes, timeout: float
    ) -> dict[str, Any]:
        core = self._core
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        secret_bytes = arguments.bytes32(secret, "secret")
        known = core.store.payment(payment_hex)
        if known is not None and known.direction == "outgoing":
            raise InvalidArgumentError("bad_recipient", "take back your own link with cancel_transfer")
        answer = await core.api.post(
            f"/api/transfers/{payment_hex}/redeem", {"preimage": serialization.hex_bytes(secret_bytes)}
        )
        core.store.save_payment(
            replace(self._record_from_node(answer), direction="incoming", secret=secret_bytes)
        )
        async with core.lock:  # its transfer may have arrived before the answer: resolve it now
            await self._incoming.follow_up_locked()
        return await self._wait_payment(payment_hex, FINAL_STATUSES, timeout)

    async def cancel_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        answer = await self._core.api.post(f"/api/transfers/{payment_hex}/cancel", {})
        return self.note_payment_news(answer)

    # -- records ------------------------------------------------------------------------------------

    async def get_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        try:
            answer = await self._core.api.get(f"/api/transfers/{payment_hex}")
        except (NodeUnavailableError, NodeError) as exc:
            if isinstance(exc, NodeError) and exc.code != "unknown_payment":
                raise
            record = self._core.store.payment(payment_hex)
            if record is None:
                raise
            return record.as_json()
        return self.note_payment_news(answer)

    async def wait_for_transfer(self, payment_id: str | bytes, timeout: float) -> dict[str, Any]:
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        return await self._wait_payment(payment_hex, FINAL_STATUSES, timeout)

    async def get_transfer_history(self, limit: int, before: str | bytes | None) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_HISTORY_PAGE:
            raise InvalidArgumentError("invalid_argument", f"limit is 1 to {MAX_HISTORY_PAGE}, not {limit}")
        before_hex = None if before is None else serialization.hex_bytes(arguments.bytes32(before, "before"))
        params = {"limit": str(limit)} | ({"before": before_hex} if before_hex else {})
        try:
            answer = await self._core.api.get("/api/transfers", **params)
        except NodeUnavailableError:
            return [record.as_json() for record in self._core.store.payments(limit, before=before_hex)]
        return [self.note_payment_news(payment) for payment in answer.get("transfers", [])]

    def _record_from_node(self, payment: dict[str, Any]) -> PaymentRecord:
        sender = str(payment.get("sender") or "")
        return PaymentRecord(
            payment_id=str(payment["paymentId"]),
            direction="outgoing" if sender == self._core.address else "incoming",
            kind=str(payment.get("kind", "")),
            sender=sender,
            recipient=str(payment.get("recipient") or ""),
            asset_id=str(payment.get("assetId", ETH)),
            amount=int(payment.get("amount", 0)),
            status=str(payment.get("status", "")),
            failure=str(payment.get("failure") or ""),
            meta=dict(payment.get("meta") or {}),
        )

    def note_payment_news(self, payment: dict[str, Any]) -> dict[str, Any]:
        """Keep the node's news of a payment in the store; the payment as the client reports it."""
        try:
            news = self._record_from_node(payment)
        except (KeyError, TypeError, ValueError):
            return payment
        known = self._core.store.payment(news.payment_id)
        if known is not None:
            news = replace(news, direction=known.direction, meta=known.meta or news.meta)
            if known.status in FINAL_STATUSES and news.status not in FINAL_STATUSES:
                # This side is settled in a doubly signed state; the node's news lags (it settles
                # the other side next, possibly while that user is offline).
                news = replace(news, status=known.status)
        record = self._core.store.save_payment(news)
        self._core.signal_state()
        return record.as_json()

    async def _wait_payment(
        self, payment_hex: str, statuses: tuple[str, ...], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self._core.store.payment(payment_hex)
            if record is not None and record.status in statuses:
                return record.as_json()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"payment {payment_hex} not settled within {timeout}s")
            await self._core.next_change(remaining)


def _outcome_unknown(payment_hex: str, cause: ConnextError | None) -> OutcomeUnknownError:
    reason = f"the node stopped answering ({cause.message})" if cause is not None else "no answer yet"
    return OutcomeUnknownError(
        payment_hex,
        f"payment {payment_hex} was sent, {reason}: the node may have taken it. Retry with this"
        " payment id (nothing is paid twice); the client settles it with the node first.",
    )


def _fresh_private_key() -> bytes:
    """32 random bytes that are a valid secp256k1 key (all but a 2**-128 fraction are)."""
    while True:
        candidate = secrets.token_bytes(32)
        if 0 < int.from_bytes(candidate, "big") < signing.SECP256K1_N:
            return candidate
