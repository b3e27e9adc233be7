"""Routed payments on the update engine's owner (issue #21): the payment path of `services.payments`
with the channels decided in the owner's memory and the payment records written in the same batch as
the states that make them.

A payment is two linked transfers through the node: the sender's to the node, the node's to the
receiver, unlocked by the same resolver. The router takes the steps of its common path itself:

1. the sender's create: the node's routing terms on the state it makes, the payment recorded with it;
2. with it: the node's forward into the receiver's channel (its proposal, and the payment
   `forwarded`, in one write: a payment is forwarded once, whoever else tries), committed in the
   create's batch when the receiver's channel is this process's, in memory and free (a companion,
   `owner.Companion`), otherwise right after the commit;
3. the receiver's countersignature of it (the payment linked to its receiver side);
4. the receiver's resolve (or cancel): the payment decided with it, told to the receiver;
5. with it (a companion, as 2) or right after: the node's resolve (or refund) of the sender's side
   with the receiver's resolver, then the sender told;
6. the sender's countersignature: the payment over.

Every other step stays with `services.payments` on its row-lock path, called after the commit as the
row-lock path calls it (a receiver without a channel or the node's collateral, a payment the node must
fail or refund, the next proposal of a channel its user just answered, a rebalance, an update that
is not a payment's): both paths may write one channel, and the owner's compare-and-set makes that
safe (docs/protocol.md, "The update engine"). Nothing here is revealed before its batch committed:
the events are returned for the caller to push.
"""

# Tables and columns are this module's constants; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections

from channels_app.engine import journal
from channels_app.engine.owner import ChannelOwner, ChannelRecord, Companion, Event, Outcome, Stored, Write
from channels_app.engine.reader import Reader
from channels_app.engine.shard_writer import NotOwner
from channels_app.services import channels, collateral, payments
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization
from connext.protocol.definitions import HashLockState
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    ResolveUpdate,
    Update,
    UpdateContext,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)
ROUTED = (DefinitionKind.LINKED, DefinitionKind.HASHLOCK, DefinitionKind.SIGNED)
PAYMENT = "channels_app_payment"


class Unserved(Exception):
    """An update the router does not take (a swap, a withdrawal, a deposit): the caller sends it the
    row-lock way (`services.payments.user_update`)."""


@dataclass(frozen=True)
class Routed:
    """What one request through the router did, known committed: the owner's outcome for the
    request's own channel, and every event to push, in order (the channel's, the payments', and
    those of the steps taken after the commit). Asked to answer first, the steps are not taken yet:
    `later` takes them (after the answer) and returns their events."""

    outcome: Outcome
    events: tuple[Event, ...]
    later: Callable[[], Awaitable[list[Event]]] | None = None


async def in_django(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A call into the row-lock path (Django's ORM) off the event loop, its connection handled as a
    request's is."""

    def run() -> T:
        close_old_connections()
        try:
            return call(*args, **kwargs)
        finally:
            close_old_connections()

    return await asyncio.to_thread(run)


class Router:
    """The payment path over `owner` (see the module's docstring)."""

    def __init__(
        self,
        owner: ChannelOwner,
        reader: Reader,
        *,
        node_address: str,
        definitions: Mapping[str, DefinitionKind],
        channel_address_for: Callable[[str], str],
        definition_address: Callable[[DefinitionKind], str],
    ) -> None:
        self._owner = owner
        self._reader = reader
        self._node = node_address
        self._definitions = definitions
        self.channel_address_for = cache(channel_address_for)  # a CREATE2 hash each: ~0.3 ms
        self._definition_address = definition_address
        # Asks the engine owning a user's shard in another process to take a step on its channel
        # (`run_command`); True when it took it. None: no other engines to ask.
        self.remote: Callable[[str, str, dict[str, Any]], Awaitable[bool]] | None = None

    # -- what users send ------------------------------------------------------------------------------

    async def user_update(
        self,
        *,
        user: str,
        update: Update,
        signature: bytes,
        meta: dict[str, Any] | None = None,
        answer: tuple[int, bytes] | None = None,
        answer_first: bool = False,
    ) -> Routed:
        """A user's create or resolve of a payment (`services.payments.user_update`'s answer and
        refusals); `Unserved` for anything else. With `answer_first` the steps after the commit are
        left to `Routed.later`."""
        if not self._serves(update):
            raise Unserved(type(update).__name__)
        meta = channels.check_user_fields(user=user, update=update, meta=meta)
        upstream = await self._check_resolve(user, update) if isinstance(update, ResolveUpdate) else None
        news = _News()
        outcome = await self._owner.user_update(
            user=user,
            update=update,
            signature=signature,
            context=self._context(),
            meta=meta,
            answer=answer,
            policy=self._terms,
            records=news.recorder(self),
            companions=lambda: self._companions(news, update, upstream),
        )
        return await self._after(outcome, news, answer_first)

    async def countersign(
        self, *, user: str, channel_address: str, nonce: int, signature: bytes, answer_first: bool = False
    ) -> Routed:
        """A user's countersignature of the node's open proposal (`services.payments.countersign`)."""
        news = _News()
        outcome = await self._owner.countersign(
            user=user,
            channel_address=channel_address,
            nonce=nonce,
            signature=signature,
            records=news.recorder(self),
        )
        return await self._after(outcome, news, answer_first)

    async def _check_resolve(self, user: str, update: ResolveUpdate) -> journal.Upstream | None:
        """A resolve of a transfer disputed on chain is checked against the chain's record of it: the
        row-lock path's (`Unserved`). One that pays out a payment's receiver side is refused when the
        node could no longer claim the sender's side (`payments.check_downstream_resolve`, which
        this asks only when a window on chain may run). The sender's side as read, if a payment's."""
        transfer_id = serialization.hex_bytes(update.transfer_id)

        async def facts(cursor: journal.Cursor) -> tuple[bool, journal.Upstream | None]:
            return await journal.transfer_disputed(cursor, transfer_id), await journal.upstream_of(
                cursor, update.channel_address, transfer_id
            )

        disputed, upstream = await self._reader.read(facts)
        if disputed:
            raise Unserved("a resolve of a transfer disputed on chain")
        if upstream is None or not payments.pays_out(DefinitionKind(upstream.kind), update.encoded_resolver):
            return upstream
        if upstream.sender_status == "cancelled":
            raise payments.PaymentError(
                "upstream_refunded",
                "The sender's side of this payment was refunded on chain, so the node does not pay it.",
                status=409,
            )
        if upstream.sender_status == "active" and upstream.on_chain:
            await in_django(
                payments.check_downstream_resolve,
                channel_address=update.channel_address,
                transfer_id=transfer_id,
                encoded_resolver=update.encoded_resolver,
                chain_now=_chain_now,
            )
        return upstream

    def _context(self) -> UpdateContext:
        """What the protocol core checks an update against now."""
        return UpdateContext(now=int(time.time()), definitions=self._definitions)

    def _serves(self, update: Update) -> bool:
        if isinstance(update, CreateUpdate):
            return self._definitions.get(update.definition) in ROUTED
        return isinstance(update, ResolveUpdate)  # a routed transfer's, or one the core refuses

    def _terms(
        self, channel: ChannelRecord, new: ChannelState, update: Update, meta: Mapping[str, Any]
    ) -> None:
        """The node's terms for a payment it is asked to route, on the state the create makes."""
        if not isinstance(update, CreateUpdate):
            return
        transfer = channels.created_transfer(new)
        kind = self._definitions.get(transfer.definition)
        if transfer.responder == self._node and kind in ROUTED:
            assert kind is not None
            payments.check_routed_create(transfer=transfer, kind=kind, meta=dict(meta))

    # -- with the commit: the next steps that can ride in its batch --------------------------------------

    def _companions(
        self, news: _News, update: Update, upstream: journal.Upstream | None
    ) -> tuple[Companion, ...]:
        """The forwards of the payments the decision starts and the settle of the sender's side of the
        payment the user's resolve decides (`upstream`, read for it), as proposals committed in its
        batch (`owner.Companion`); the owner makes those it can without waiting, `_steps` takes the
        rest after the commit."""
        context = self._context()
        made: list[Companion] = []
        for started in news.started:
            address = self.channel_address_for(started.recipient)
            build, meta, _ = self._forward_terms(started, address)
            payment_id = serialization.hex_bytes(started.transfer.payment_id)
            at = news.inserted_at(payment_id)  # the row's time as told: one write, one time
            forwarded = _payment_forwarded(
                payment_id, serialization.hex_bytes(started.transfer.transfer_id), at
            )
            made.append(
                Companion(
                    _forward_key(payment_id), started.recipient, address, build, context, meta, (forwarded,)
                )
            )
        resolved = serialization.hex_bytes(update.transfer_id) if isinstance(update, ResolveUpdate) else None
        last = next((s for s in news.receiver_settled if s.transfer_id == resolved), None)
        if (
            last is not None
            and upstream is not None
            and upstream.sender_status == "active"
            and not upstream.on_chain
        ):
            address = self.channel_address_for(upstream.sender)
            build = self._settle_terms(last.payment_id, address, last.paid, last.resolver, last.kind)
            guard = _decided_guard(last)
            made.append(
                Companion(
                    _settle_key(last.payment_id), upstream.sender, address, build, context, {}, (guard,)
                )
            )
        return tuple(made)

    # -- after the commit -----------------------------------------------------------------------------

    async def _after(self, outcome: Outcome, news: _News, answer_first: bool = False) -> Routed:
        """Tell what the commit did, then take the payments' next steps (`_steps`): now, or, with
        `answer_first`, in `Routed.later` (the request is answered before them, as the row-lock path
        answers before its follow-ups)."""
        events: list[Event] = list(outcome.events)
        if not outcome.stored:  # sent again: the first answer, nothing more happened
            return Routed(outcome, ())
        news.forwarded_with(outcome.companions)
        try:
            facts = await self._facts(outcome, news)
        except Exception:
            # Committed already: the request is answered whatever the read. Without its facts the
            # payments it moved are told nothing more (their parties see them on their next sync) and
            # their next steps wait for the payments sweep, as a step that fails does (`_step`).
            logger.exception("reading what the commit of %s calls for failed", outcome.channel.address)
            facts = _Facts([], None, None)
        events += news.payloads(facts.payments)

        async def later() -> list[Event]:
            return await self._steps(outcome, news, facts)

        if answer_first:
            return Routed(outcome, tuple(events), later)
        return Routed(outcome, tuple(events + await later()))

    async def _facts(self, outcome: Outcome, news: _News) -> _Facts:
        """What the commit's events and next steps are decided on, read in one go once it committed:
        its payments' rows (but those it inserted: as it wrote them); whether anything waits for a
        proposal in a channel whose proposal was just answered; the profiles of a channel whose node
        balance the payments moved. Nothing to read (a sender's create), no read."""
        channel, ids = outcome.channel, news.payment_ids()
        answered, moved = _proposal_answered(outcome), _node_balance_moved(outcome, news)
        if not (ids or answered or moved):
            return _Facts([], None, None)

        async def read(cursor: journal.Cursor) -> _Facts:
            payments_read = await journal.payment_rows(cursor, ids) if ids else []
            waiting = (
                await journal.next_proposal(cursor, channel.id, channel.user_address) if answered else None
            )
            profiles = await journal.rebalance_profiles(cursor, channel.id) if moved else None
            return _Facts(payments_read, waiting, profiles)

        return await self._reader.read(read)

    async def _steps(self, outcome: Outcome, news: _News, facts: _Facts) -> list[Event]:
        """The payments' next steps after a commit, in `payments_follow_up`'s order: settle the sender
        side of a payment just decided (then tell its sender), forward a payment just started, give a
        channel just freed its next proposal; then a rebalance, or the reconcile of an update that
        was not a payment's. Their events, in order."""
        events: list[Event] = []
        made = dict(outcome.companions)  # proposals committed with the decision: told, not taken again
        for decided in news.decided:
            with_it = made.pop(_settle_key(decided.payment_id), None)
            if with_it is not None:
                events += with_it.events
            else:
                events += await _step(self._settle_upstream(decided), "settling upstream", decided.payment_id)
            # The sender hears of the payment after the node's proposal to settle it, and also when
            # that failed (the sweep settles it later, and tells nobody: it is decided already).
            events.append((decided.sender, decided.event, decided.payload))
        for started in news.started:
            payment_id = serialization.hex_bytes(started.transfer.payment_id)
            with_it = made.pop(_forward_key(payment_id), None)
            if with_it is not None:
                events += with_it.events
            else:
                events += await _step(self._forward(started), "forwarding", payment_id)
        for with_it in made.values():  # a settle of a payment decided before: its sender is asked
            events += with_it.events
        channel, last = outcome.channel, outcome.stored[-1].new
        if facts.next_proposal is not None:  # the channel's proposal was just answered: its next one
            events += await _step(
                self._next_proposal(channel, facts.next_proposal), "proposing", channel.address
            )
        if news.unrouted:  # not a payment's (a deposit, a withdrawal): the channel's reconcile
            await _step(in_django(_reconcile, channel.id), "queueing the reconcile", channel.address)
        if facts.profiles is not None and collateral.outside_profile(last, facts.profiles):
            # A rebalance: the payment took the node's balance out of the channel's profile (the
            # row-lock path weighs the account's activity); inside it nothing is needed.
            await _step(in_django(_check_profile, channel.id, last), "checking collateral", channel.address)
        return events

    async def _next_proposal(self, channel: ChannelRecord, waiting: journal.NextProposal) -> list[Event]:
        """The next proposal of a channel whose proposal was just answered: the settlement of a sender
        side its receiver decided, else the forward of the oldest payment waiting for its user, each
        made here on the channel as it is now (the steps `run_command` takes); what the engine does not
        take (a failed payment, a HashLock, a link; a sender side no longer active or disputed; the
        channel gone from this process) the row-lock path's `payments_follow_up(channel_freed=...)`."""
        user = channel.user_address
        record = None
        if waiting.decision is not None or (waiting.forward is not None and waiting.forward.ready):
            try:
                record = await self._owner.channel(user=user, channel_address=channel.address)
            except (NotOwner, channels.ChannelError):
                record = None
        if record is None:
            await in_django(_next_proposal, channel.id, user)
            return []
        if waiting.settle is not None and waiting.decision is not None:
            return await self._settle_owned(_decided_from(waiting.settle, waiting.decision), record)
        assert waiting.forward is not None
        return await self._forward_owned(_started_from(waiting.forward), record)

    async def _forward(self, started: _Started) -> list[Event]:
        """The receiver side of a payment just started, proposed now when the receiver's channel is
        this process's, free and holds the node's collateral; otherwise the row-lock path's forward
        (which asks for collateral, fails what cannot be forwarded, or leaves it waiting). Decided
        on the receiver's channel as it is when the node signs (`ChannelOwner.propose`)."""
        recipient = started.recipient
        address = self.channel_address_for(recipient)
        try:
            receiver = await self._owner.channel(user=recipient, channel_address=address)
        except NotOwner:
            payment_id = serialization.hex_bytes(started.transfer.payment_id)
            if not await self._ask_owner(recipient, "forward", {"paymentId": payment_id}):
                await in_django(payments._forward_to, recipient)
            return []
        except channels.ChannelError:
            await in_django(payments._forward_to, recipient)  # no channel (yet), not open
            return []
        return await self._forward_owned(started, receiver)

    async def _forward_owned(self, started: _Started, receiver: ChannelRecord) -> list[Event]:
        recipient = started.recipient
        address = receiver.address
        sender = started.transfer
        build, meta, handed_off = self._forward_terms(started, address)
        payment_id = serialization.hex_bytes(sender.payment_id)
        try:
            proposed = await self._owner.propose(
                user=recipient,
                channel_address=address,
                build=build,
                context=self._context(),
                meta=meta,
                writes=(_payment_forwarded(payment_id, serialization.hex_bytes(sender.transfer_id), _now()),),
            )
        except channels.ChannelError as refused:
            # A proposal got there first (forwarded on its answer, `payments_forward`), or the
            # payment was forwarded elsewhere first (the row-lock path's).
            if refused.code in ("update_pending", "conflict"):
                return []
            raise
        if proposed is None:
            if handed_off[0]:  # collateral to ask for, or a payment to fail: the row-lock path's
                await in_django(payments.payments_forward, channel_id=receiver.id, user=recipient)
            return []
        return list(proposed.events)

    def _forward_terms(
        self, started: _Started, address: str
    ) -> tuple[Callable[[ChannelRecord], Update | None], dict[str, Any], list[bool]]:
        """The forward of a payment just started into the receiver's channel at `address`: the build of
        the node's proposal (None when the row-lock path must take it, flagged in the list), its meta."""
        sender = started.transfer
        kind = self._definitions[sender.definition]
        meta = {"sender": sender.initiator, "paymentId": serialization.hex_bytes(sender.payment_id)}
        for key in ("encryptedPreimage", "memo"):
            if key in started.meta:
                meta[key] = started.meta[key]
        handed_off = [False]

        def build(channel: ChannelRecord) -> Update | None:
            handed_off[0] = False
            timeout = payments.receiver_transfer_timeout(
                sender_timeout=sender.transfer_timeout,
                sender_channel_timeout=started.sender_channel_timeout,
                receiver_channel_timeout=channel.state.timeout,
            )
            encoded_state = sender.encoded_state
            if kind is DefinitionKind.HASHLOCK:
                lock = HashLockState.decode(encoded_state)
                expiry = lock.expiry - payments.hop_margin()
                if expiry <= int(time.time()) + settings.HASHLOCK_MIN_WINDOW_SECONDS:
                    timeout = None  # the row-lock path fails it
                encoded_state = HashLockState(lock.lock_hash, expiry).encode()
            if timeout is None or collateral.node_balance(channel.state, sender.asset_id) < sender.balance[0]:
                handed_off[0] = True
                return None
            return CreateUpdate(
                channel_address=address,
                nonce=channel.nonce + 1,
                initiator=self._node,
                asset_id=sender.asset_id,
                amount=sender.balance[0],
                definition=self._definition_address(kind),
                payment_id=sender.payment_id,
                encoded_state=encoded_state,
                transfer_timeout=timeout,
                meta_hash=transfer_meta.meta_hash(meta),
            )

        return build, meta, handed_off

    async def _settle_upstream(self, decided: _Decided) -> list[Event]:
        """The sender side of a payment its receiver just decided, resolved with the receiver's
        resolver (or refunded). The row-lock path's settle when the sender's channel is not this
        process's or its transfer is disputed on chain; a busy channel's answer settles it
        (`payments_settle_upstream`)."""
        address = self.channel_address_for(decided.sender)
        try:
            sender = await self._owner.channel(user=decided.sender, channel_address=address)
        except NotOwner:
            if not await self._ask_owner(decided.sender, "settle", {"paymentId": decided.payment_id}):
                await in_django(_settle_upstream_of, decided.sender)
            return []
        except channels.ChannelError:
            await in_django(_settle_upstream_of, decided.sender)
            return []
        return await self._settle_owned(decided, sender)

    async def _settle_owned(self, decided: _Decided, sender: ChannelRecord) -> list[Event]:
        address = sender.address
        transfer = _transfer_of(sender.state, decided.payment_id)
        if transfer is None:
            return []
        if decided.sender_disputed:
            # Disputed on chain: the row-lock path settles it against the chain's record.
            await in_django(payments.payments_settle_upstream, channel_id=sender.id)
            return []
        build = self._settle_terms(decided.payment_id, address, decided.paid, decided.resolver, decided.kind)
        try:
            proposed = await self._owner.propose(
                user=decided.sender,
                channel_address=address,
                build=build,
                context=self._context(),
            )
        except channels.ChannelError as refused:
            if refused.code == "update_pending":
                return []
            raise
        return [] if proposed is None else list(proposed.events)

    def _settle_terms(
        self, payment_id: str, address: str, paid: bool, resolver: bytes, kind: str
    ) -> Callable[[ChannelRecord], Update | None]:
        """The build of the node's resolve of a payment's sender side in the sender's channel at
        `address`: with the receiver's resolver, or a refund (None: no such transfer active)."""
        encoded = resolver if paid else payments.cancel_resolver(kind)

        def build(channel: ChannelRecord) -> Update | None:
            active = _transfer_of(channel.state, payment_id)
            if active is None:
                return None
            return ResolveUpdate(
                channel_address=address,
                nonce=channel.nonce + 1,
                initiator=self._node,
                transfer_id=active.transfer_id,
                encoded_resolver=encoded,
            )

        return build

    # -- steps another process's engine asks this one to take (`remote`) ----------------------------

    async def _ask_owner(self, user: str, command: str, args: dict[str, Any]) -> bool:
        """Whether the engine owning `user`'s shard in another process took the step (it then pushes
        what it tells); when not, the caller takes it the row-lock way here."""
        if self.remote is None:
            return False
        try:
            return await self.remote(user, command, args)
        except Exception:
            logger.exception("asking the owner of %s to %s failed", user, command)
            return False

    async def run_command(self, user: str, command: str, args: dict[str, Any]) -> list[Event] | None:
        """A step asked by another process's engine on the channel of `user`, whose shard is this
        engine's: the events to push, or None when it is not this engine's to take (the shard moved
        away again; the asker takes it the row-lock way). A command names the payment only: the
        step is made from the payment as stored, never from the message (docs/protocol.md,
        "Forwarding to the owner"), and one the stored payment does not call for is a no-op."""
        address = self.channel_address_for(user)
        try:
            record = await self._owner.channel(user=user, channel_address=address)
        except NotOwner:
            return None
        payment_id = str(args["paymentId"])
        if command == "forward":
            facts = await self._reader.read(lambda cursor: journal.forward_facts(cursor, payment_id))
            if facts is None or facts.recipient != user:
                return []  # forwarded already, or not a payment to this user
            if not facts.ready:  # the row-lock path's to refund or fail
                await in_django(payments._forward_to, user)
                return []
            return await self._forward_owned(_started_from(facts), record)
        if command == "settle":
            decision = await self._reader.read(lambda cursor: journal.receiver_decision(cursor, payment_id))
            if decision is None or decision.sender != user:
                return []  # settled already, or undecided, or not this user's payment
            return await self._settle_owned(_decided_from(payment_id, decision), record)
        raise ValueError(f"unknown command {command!r}")


def _started_from(facts: journal.ForwardFacts) -> _Started:
    """A payment waiting to be forwarded, as stored, in the shape of one just started."""
    return _Started(
        transfer=serialization.transfer_state_from_json(facts.transfer_state, field="transfer"),
        recipient=facts.recipient,
        meta=facts.meta,
        sender_channel_timeout=facts.sender_channel_timeout,
    )


def _decided_from(payment_id: str, decision: journal.Decision) -> _Decided:
    """A payment its receiver decided, as stored, in the shape of one just decided (its sender was
    told where the receiver decided it)."""
    resolver = serialization.parse_bytes(decision.resolver, field="resolver") if decision.paid else b""
    return _Decided(
        payment_id=payment_id,
        kind=decision.kind,
        sender=decision.sender,
        paid=decision.paid,
        resolver=resolver,
        event="",
        payload={},
        sender_disputed=decision.sender_disputed,
    )


def _transfer_of(state: ChannelState, payment_id: str) -> Any:
    """The active transfer of `payment_id` in `state`, or None."""
    return next((t for t in state.transfers if serialization.hex_bytes(t.payment_id) == payment_id), None)


# -- what the states do to the payments' rows ---------------------------------------------------------


@dataclass(frozen=True)
class _Started:
    transfer: Any  # TransferState: the sender's side
    recipient: str
    meta: Mapping[str, Any]
    sender_channel_timeout: int


@dataclass(frozen=True)
class _Decided:
    payment_id: str
    kind: str
    sender: str
    paid: bool
    resolver: bytes
    event: str
    payload: dict[str, Any]
    sender_disputed: bool  # as read once the receiver's decision committed


@dataclass(frozen=True)
class _ReceiverSettled:
    """A receiver's side of a payment settled in the batch: paid (resolved) or not (cancelled), with
    the resolver, by its transfer's resolve at `nonce`."""

    payment_id: str
    kind: str
    paid: bool
    resolver: bytes
    transfer_id: str
    nonce: int


def _forward_key(payment_id: str) -> str:
    return f"forward:{payment_id}"


def _settle_key(payment_id: str) -> str:
    return f"settle:{payment_id}"


def _decided_guard(settled: _ReceiverSettled) -> Write:
    async def write(cursor: journal.Cursor) -> None:
        await journal.expect_decided(cursor, settled.payment_id, settled.transfer_id, settled.nonce)

    return write


@dataclass(frozen=True)
class _Facts:
    """What `Router._facts` read once a commit was made."""

    payments: list[journal.PaymentRow]
    next_proposal: journal.NextProposal | None  # None: the commit answered no proposal, or none waits
    profiles: dict[str, tuple[int, int, int]] | None  # None: the node's balance did not move


def _proposal_answered(outcome: Outcome) -> bool:
    return any(stored.proposal_answered for stored in outcome.stored)


def _node_balance_moved(outcome: Outcome, news: _News) -> bool:
    """Whether the payments of the commit moved the node's balance in its channel (then its profile
    is checked)."""
    first, last = outcome.stored[0], outcome.stored[-1]
    return news.routed and channels.node_balances(first.previous) != channels.node_balances(last.new)


class _News:
    """What one decision's states do to the payments (the writes `recorder` makes for them) and, once
    committed, what that asks for: the events to tell, the payments started and decided."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Before a decision is recorded (made again when the row moved, it records again)."""
        self._tell: list[tuple[str, str, str]] = []  # (user, event, payment id): told once committed
        self._inserted: dict[str, journal.PaymentRow] = {}  # payment id -> the row this batch inserts
        self.receiver_settled: list[_ReceiverSettled] = []
        self._sender_settled: list[tuple[str, bool]] = []  # (payment id, refunded)
        self.moved: dict[str, bool] = {}  # payment id -> this batch moved it out of an open status
        self.status_before: dict[str, str | None] = {}  # payment id -> its status when the sender settled
        self.started: list[_Started] = []
        self.decided: list[_Decided] = []
        self.routed = False
        self.unrouted = False

    def recorder(
        self, router: Router
    ) -> Callable[[ChannelRecord, tuple[Stored, ...]], tuple[tuple[Write, ...], tuple[Event, ...]]]:
        def record(
            channel: ChannelRecord, stored: tuple[Stored, ...]
        ) -> tuple[tuple[Write, ...], tuple[Event, ...]]:
            self.reset()
            writes: list[Write] = []
            for done in stored:
                writes += self._record(router, channel, done)
            return tuple(writes), ()

        return record

    def _record(self, router: Router, channel: ChannelRecord, done: Stored) -> list[Write]:
        node = router._node
        transfer = done.created or done.resolved
        kind = None if transfer is None else router._definitions.get(transfer.definition)
        if transfer is None or kind not in ROUTED:
            self.unrouted = True
            return []
        assert kind is not None
        self.routed = True
        payment_id = serialization.hex_bytes(transfer.payment_id)
        if done.created is not None:
            if transfer.responder == node:  # a payment the node is asked to route starts here
                recipient = str(done.meta.get("recipient") or "")
                if recipient:
                    recipient = serialization.parse_address(recipient, field="recipient")
                    self.started.append(_Started(transfer, recipient, done.meta, channel.state.timeout))
                self._tell.append((transfer.initiator, "transfer.created", payment_id))
                row = _new_payment(transfer, kind, recipient, done.meta)
                self._inserted[payment_id] = row
                return [_payment_insert(row, serialization.hex_bytes(transfer.transfer_id))]
            self._tell.append((channel.user_address, "transfer.received", payment_id))
            return [_payment_receiver_locked(payment_id, serialization.hex_bytes(transfer.transfer_id))]
        if transfer.responder == node:  # the sender's side settled: the payment is over
            self._sender_settled.append((payment_id, done.refunded))
            return [_payment_sender_settled(payment_id, refunded=done.refunded, news=self)]
        update = done.update
        assert isinstance(update, ResolveUpdate)
        paid = not done.refunded
        transfer_id = serialization.hex_bytes(update.transfer_id)
        self.receiver_settled.append(
            _ReceiverSettled(
                payment_id, kind.value, paid, update.encoded_resolver, transfer_id, done.new.nonce
            )
        )
        return [_payment_receiver_settled(payment_id, paid=paid, news=self)]

    def forwarded_with(self, companions: Mapping[str, Outcome]) -> None:
        """The payments this batch inserted and forwarded with it (a companion) are told as forwarded."""
        for payment_id, row in list(self._inserted.items()):
            if _forward_key(payment_id) in companions:
                self._inserted[payment_id] = replace(row, status="forwarded")

    def inserted_at(self, payment_id: str) -> datetime:
        row = self._inserted.get(payment_id)
        return _now() if row is None else row.updated_at

    def payment_ids(self) -> list[str]:
        """The payments whose rows the events are made from (`payloads`): those to tell of, those this
        batch decided, and those it ended that were not over already (the common end, a sender's
        countersignature of a payment its receiver decided, tells nobody and reads nothing)."""
        return sorted(
            {payment_id for _, _, payment_id in self._tell if payment_id not in self._inserted}
            | {settled.payment_id for settled in self.receiver_settled if self.moved.get(settled.payment_id)}
            | {payment_id for payment_id, _ in self._sender_settled if self._ends_open(payment_id)}
        )

    def _ends_open(self, payment_id: str) -> bool:
        """Whether the sender's settlement in this batch ended a payment that was not over yet."""
        return self.status_before.get(payment_id) not in (None, "completed", "refunded")

    def payloads(self, read: list[journal.PaymentRow]) -> list[Event]:
        """The events of the payments, each payload the payment as its row read once committed (the
        row-lock path's JSON, `payments.payment_json`), and the payments their receivers just decided."""
        rows = {**self._inserted, **{row.payment_id: row for row in read}}
        found = {payment_id: payment_json(row) for payment_id, row in rows.items()}
        events: list[Event] = [(user, event, found[pid]) for user, event, pid in self._tell if pid in found]
        for settled in self.receiver_settled:
            payment_id, kind, paid, resolver = (
                settled.payment_id,
                settled.kind,
                settled.paid,
                settled.resolver,
            )
            if not self.moved.get(payment_id) or payment_id not in found:
                continue  # decided before (on chain, by another process): announced there
            row = found[payment_id]
            event = "transfer.resolved" if paid else "transfer.failed"
            events += _to_parties(row, event, sender=False)
            disputed = rows[payment_id].sender_disputed
            self.decided.append(
                _Decided(payment_id, kind, row["sender"], paid, resolver, event, row, disputed)
            )
        for payment_id, refunded in self._sender_settled:
            if not self._ends_open(payment_id) or payment_id not in found:
                continue
            before = self.status_before[payment_id]
            if not refunded:
                events += _to_parties(found[payment_id], "transfer.resolved")
            elif before != "failed":  # a failure was told when it happened
                events += _to_parties(found[payment_id], "transfer.failed")
        return events


def _to_parties(row: dict[str, Any], event: str, *, sender: bool = True) -> list[Event]:
    """`event` with the payment to its sender (unless not `sender`) and its recipient (a link has none
    until redeemed)."""
    told: list[Event] = [(row["sender"], event, row)] if sender else []
    if row["recipient"]:
        told.append((row["recipient"], event, row))
    return told


def _new_payment(
    transfer: Any, kind: DefinitionKind, recipient: str, meta: Mapping[str, Any]
) -> journal.PaymentRow:
    """The payment a sender's create starts, as its row will read once inserted (`_payment_insert`,
    with the sender's transfer the owner inserts in the same batch): what its events are made of,
    with no read after the commit."""
    now = _now()
    return journal.PaymentRow(
        payment_id=serialization.hex_bytes(transfer.payment_id),
        kind=kind.value,
        sender=transfer.initiator,
        recipient=recipient,
        asset_id=transfer.asset_id,
        amount=transfer.balance[0],
        status="pending",
        failure="",
        created_at=now,
        updated_at=now,
        sender_status="active",
        sender_meta=dict(meta),
        receiver_status=None,
        sender_disputed=False,
    )


def _payment_insert(row: journal.PaymentRow, sender_transfer_id: str) -> Write:
    async def write(cursor: journal.Cursor) -> None:
        await journal.expect_one(
            cursor,
            f"INSERT INTO {PAYMENT} (payment_id, kind, sender, recipient, asset_id, amount, status,"
            " sender_transfer_id, redeemer, failure, created_at, updated_at)"
            f" SELECT %s, %s, %s, %s, %s, %s, %s, id, '', %s, %s, %s FROM {journal.TRANSFER}"
            " WHERE transfer_id = %s RETURNING 1",
            (
                row.payment_id,
                row.kind,
                row.sender,
                row.recipient,
                row.asset_id,
                row.amount,
                row.status,
                row.failure,
                row.created_at,
                row.updated_at,
                sender_transfer_id,
            ),
            f"the sender's transfer of payment {row.payment_id} is not stored",
        )

    return write


def _payment_receiver_locked(payment_id: str, transfer_id: str) -> Write:
    async def write(cursor: journal.Cursor) -> None:
        await cursor.execute(
            f"UPDATE {PAYMENT} SET receiver_transfer_id = (SELECT id FROM {journal.TRANSFER}"
            " WHERE transfer_id = %s), updated_at = now() WHERE payment_id = %s AND receiver_transfer_id IS NULL",
            (transfer_id, payment_id),
        )

    return write


def _payment_forwarded(payment_id: str, sender_transfer_id: str, at: datetime) -> Write:
    """The payment forwarded with the node's proposal, only if it is still waiting and is the payment
    of the sender's transfer `sender_transfer_id`: a payment is forwarded once, so a forward made
    elsewhere first (the row-lock path's) refuses this one whole, and one made with the create that
    starts it commits only once that create did (a create refused, say for reusing a waiting
    payment's id, forwards nothing: docs/protocol.md, "Companion proposals")."""

    async def write(cursor: journal.Cursor) -> None:
        await journal.expect_one(
            cursor,
            f"UPDATE {PAYMENT} SET status = 'forwarded', updated_at = %s"
            f" WHERE payment_id = %s AND status = 'pending' AND sender_transfer_id = (SELECT id FROM"
            f" {journal.TRANSFER} WHERE transfer_id = %s) RETURNING 1",
            (at, payment_id, sender_transfer_id),
            f"payment {payment_id} is not waiting to be forwarded",
        )

    return write


def _payment_receiver_settled(payment_id: str, *, paid: bool, news: _News) -> Write:
    """The receiver decided the payment: compare and set out of an open status (whichever process
    moves it announces it, as `payments.payment_receiver_settled`)."""
    status = "completed" if paid else "failed"
    failure = "" if paid else "the receiver's side was cancelled or expired"

    async def write(cursor: journal.Cursor) -> None:
        await cursor.execute(
            f"UPDATE {PAYMENT} SET status = %s, failure = %s, updated_at = now()"
            " WHERE payment_id = %s AND status IN ('pending', 'forwarded') RETURNING 1",
            (status, failure, payment_id),
        )
        news.moved[payment_id] = await cursor.fetchone() is not None

    return write


def _payment_sender_settled(payment_id: str, *, refunded: bool, news: _News) -> Write:
    """The sender's side resolved or refunded: the payment is over (`payments.payment_sender_settled`:
    told unless it is over already, or a refund of a failure told when it failed)."""

    async def write(cursor: journal.Cursor) -> None:
        await cursor.execute(f"SELECT status FROM {PAYMENT} WHERE payment_id = %s FOR UPDATE", (payment_id,))
        row = await cursor.fetchone()
        news.status_before[payment_id] = None if row is None else str(row[0])
        if row is None or row[0] in ("completed", "refunded"):
            return
        await cursor.execute(
            f"UPDATE {PAYMENT} SET status = %s, updated_at = now() WHERE payment_id = %s",
            ("refunded" if refunded else "completed", payment_id),
        )

    return write


def payment_json(row: journal.PaymentRow) -> dict[str, Any]:
    """`payments.payment_json` of a payment read as `journal.payment_rows` reads it (its status as both
    parties see it: `payments.payment_status`)."""
    status = payments.status_seen(row.status, row.sender_status, row.receiver_status)
    return {
        "paymentId": row.payment_id,
        "kind": row.kind,
        "sender": row.sender,
        "recipient": row.recipient or None,
        "assetId": row.asset_id,
        "amount": str(row.amount),
        "status": status,
        "failure": row.failure or None,
        "meta": {key: value for key, value in (row.sender_meta or {}).items() if key != "encryptedPreimage"},
        "createdAt": row.created_at.astimezone(UTC).isoformat(),
        "updatedAt": row.updated_at.astimezone(UTC).isoformat(),
    }


def _settle_upstream_of(sender: str) -> None:
    """The row-lock path's settle of what the sender's channel owes back upstream."""
    from channels_app import rows
    from channels_app.models import Channel

    channel_id = rows.value(Channel, "id", user_address=sender)
    if channel_id is not None:
        payments.payments_settle_upstream(channel_id=channel_id)


def _check_profile(channel_id: int, state: ChannelState) -> None:
    from channels_app import rows
    from channels_app.models import Channel

    channel = rows.get(Channel, pk=channel_id)
    if channel is not None:
        collateral.collateral_check_profile(channel=channel, state=state)


def _reconcile(channel_id: int) -> None:
    from django.utils.module_loading import import_string

    import_string("channels_app.tasks.channel_reconcile").delay(channel_id)


async def _step(step: Awaitable[Any], what: str, of: str) -> list[Event]:
    """A step taken after the commit: the request it follows is answered whatever becomes of it. One
    that fails is logged; the payments sweep takes it up (`payments_overdue_channels`)."""
    try:
        return list(await step or [])
    except Exception:
        logger.exception("%s %s failed after its commit; the sweep takes it up", what, of)
        return []


def _next_proposal(channel_id: int, user: str) -> None:
    """A channel whose proposal was just answered gets its next one: what it owes upstream, else the
    oldest payment waiting for its user (`payments_follow_up(channel_freed=...)`)."""
    payments.payments_settle_upstream(channel_id=channel_id) or payments.payments_forward(
        channel_id=channel_id, user=user
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _chain_now() -> int:
    from channels_app import chain
    from connext.chain import disputes

    return int(disputes.chain_time(chain.web3()))
