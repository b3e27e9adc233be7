"""The owner of a process's shards of channels: their latest states and open proposals in memory,
every state it signs for them journaled through the writer before anyone sees it.

One `ChannelOwner` per node process, over its `ShardWriter`. For a channel of a shard it owns it
answers what `services.channels` answers with a row lock (a user's update, a countersignature of
the node's proposal, a proposal of the node's), with the same checks and the same refusals, but:

- it reads the channel from memory (loaded once per session from the channel row and the journal's
  last update), not a locked row per request;
- the channel's operations run one at a time (a lock per channel, held until its write committed),
  and the writes of different channels commit together in the writer's batches;
- it returns what happened (`Outcome`: the state the request ends at, each state stored and what it
  did to the channel's transfers, the events to push) and pushes nothing itself: the caller answers
  and pushes only once `Outcome` exists, which is after the commit. A write that failed leaves
  memory as the database has it (memory changes only after the commit; a lost session or a moved
  row drops the channel, read again on its next use).

The payments built on these states are the caller's (`engine.router`): it passes a `policy` (its
terms, checked on the state a user's update makes before anything is stored or revealed) and
`records` (what the states do to its own rows, written in the same batch, and who to tell).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from channels_app import crash_points
from channels_app.engine import journal
from channels_app.engine.shard_writer import NotOwner, OwnershipLost, ShardWriter, WriteFailed, shard_of
from channels_app.services import fence
from channels_app.services.channels import (
    ChannelError,
    SignedState,
    answers_proposal,
    created_transfer,
    is_refund,
    proposal_json,
    signed_state_json,
)
from channels_app.services.errors import ServiceError
from connext.protocol import serialization, validation
from connext.protocol.errors import ProtocolError
from connext.protocol.signing import Signer
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    TransferState,
    Update,
    UpdateContext,
)

logger = logging.getLogger(__name__)
OPEN = "open"
# A unique row another update took first: the whole decision is refused, as the row-lock path does.
CONFLICTS = {
    "one_payment_per_id": (
        "duplicate_payment",
        "A payment with this id exists already: pick a fresh random payment id.",
    ),
}
ATTEMPTS = 5  # a row moved under the owner: read it again and decide again, this many times in all

Policy = Callable[["ChannelRecord", ChannelState, Update, Mapping[str, Any]], None]
"""The caller's terms for a user's update: the channel it builds on, the state it makes, the update
and its meta (the routing terms of a payment); raises a `ServiceError` to refuse it. Run before anything is stored,
so a refusal changes nothing (the node's signature on the refused state is dropped unseen)."""

Event = tuple[str, str, dict[str, Any]]
"""(the user to tell, the event, its payload): pushed by the caller once the outcome exists."""


@dataclass(frozen=True)
class ChannelRecord:
    """A channel as its owner holds it: the projected row's fields (named as `Channel`'s, so the
    API's JSON helpers read it as they read a row) and the parsed states."""

    id: int
    address: str
    user_address: str
    node_address: str
    status: str
    nonce: int
    latest_state: dict[str, Any]
    node_signature: str
    user_signature: str
    pending_update: dict[str, Any] | None
    pending_state: dict[str, Any] | None
    pending_node_signature: str
    pending_meta: dict[str, Any]
    fenced_since: datetime | None
    fence_min_nonce: int
    last_update: dict[str, Any] | None
    last_user_signature: str | None
    state: ChannelState
    proposed: ChannelState | None
    epoch: int

    @classmethod
    def from_row(cls, row: journal.ChannelRow, epoch: int) -> ChannelRecord:
        return cls(
            **{name: getattr(row, name) for name in journal.ChannelRow.__dataclass_fields__},
            state=serialization.channel_state_from_json(row.latest_state),
            proposed=None
            if row.pending_state is None
            else serialization.channel_state_from_json(row.pending_state),
            epoch=epoch,
        )

    def signed(self) -> SignedState:
        return SignedState(self.state, _bytes(self.node_signature), _bytes(self.user_signature))


@dataclass(frozen=True)
class Stored:
    """One doubly signed state the owner stored: the update that made it, what it built on, and what
    it did to the channel's transfers (`created` the transfer a create locked, `resolved` the one a
    resolve settled as `previous` held it, `refunded` when that gave the amount back). A `superseded`
    state has the request's own update after it (the proposal a user's update answered first)."""

    update: Update
    update_type: str
    previous: ChannelState
    signed: SignedState
    meta: Mapping[str, Any]
    created: TransferState | None = None
    resolved: TransferState | None = None
    refunded: bool = False
    proposal_answered: bool = False
    superseded: bool = False

    @property
    def new(self) -> ChannelState:
        return self.signed.state


@dataclass(frozen=True)
class Outcome:
    """What one request did, known committed: the channel after it, the doubly signed state it ends
    at, the states it stored (none for a request sent again: its first answer) and the events the
    channel's user is to be told, in order."""

    channel: ChannelRecord
    signed: SignedState
    stored: tuple[Stored, ...]
    events: tuple[Event, ...]
    # The companions (`Companion`) committed with it, by their keys: the proposal each made.
    companions: Mapping[str, Outcome] = field(default_factory=dict)


Write = Callable[[journal.Cursor], Awaitable[None]]

Records = Callable[["ChannelRecord", tuple[Stored, ...]], tuple[tuple[Write, ...], tuple[Event, ...]]]
"""The caller's writes for the states a decision stores (in the same batch, after the channel's own)
and the events they make; must not await (the decision is made in one step)."""


@dataclass(frozen=True)
class Companion:
    """A node proposal on another channel this process owns, asked for by a decision and committed in
    the decision's batch instead of after it (`user_update`'s `companions`): a payment forwarded with
    the create that starts it, settled upstream with the resolve that decides it. Made only when it
    costs no wait (the channel in memory and free); otherwise the caller proposes it after the commit.

    Its `writes` begin with a guard that fails unless the decision's own writes are committed (the
    batch runs them first, in the same transaction or, split one by one, in an earlier one), so a
    companion never commits without what it builds on (docs/protocol.md, "Companion proposals")."""

    key: str  # the caller's name for it, in `Outcome.companions`
    user: str
    channel_address: str
    build: Callable[[ChannelRecord], Update | None]
    context: UpdateContext
    meta: Mapping[str, Any]
    writes: tuple[Write, ...]


Companions = Callable[[], tuple[Companion, ...]]
"""The companions a decision asks for, asked once the decision is made (after `records`)."""


@dataclass
class _Held:
    """A companion decided on its channel, whose lock is held until its write is settled."""

    companion: Companion
    lock: asyncio.Lock
    shard: int
    plan: _Plan | None = None
    done: asyncio.Future[None] | None = None


@dataclass(frozen=True)
class _Plan:
    """A decision not yet committed: the writes that make it durable and the channel after them."""

    after: ChannelRecord
    stored: tuple[Stored, ...]
    events: tuple[Event, ...]
    writes: tuple[Write, ...]


class ChannelOwner:
    """Signs for the channels of the shards `writer` owns (see the module's docstring)."""

    def __init__(
        self, writer: ShardWriter, *, signer: Signer, definitions: Mapping[str, DefinitionKind]
    ) -> None:
        self._writer = writer
        self._signer = signer
        self._definitions = definitions
        self._book: dict[str, ChannelRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.loads = 0  # channels read from the database, for tests and benches

    # -- the writer's callbacks: a shard taken or lost starts again from the database ------------------

    async def shards_changed(self, shards: frozenset[int]) -> None:
        """`on_acquired` and `on_lost` of the writer: forget the channels of `shards`."""
        for address, record in list(self._book.items()):
            if shard_of(record.user_address, self._writer.shards) in shards:
                del self._book[address]

    # -- what a channel's user asks -------------------------------------------------------------------

    async def channel(self, *, user: str, channel_address: str) -> ChannelRecord:
        """The channel as its owner holds it (read from the database on first use in a session)."""
        async with self._locks.setdefault(channel_address, asyncio.Lock()):
            return await self._record(shard_of(user, self._writer.shards), channel_address, user)

    async def user_update(
        self,
        *,
        user: str,
        update: Update,
        signature: bytes,
        context: UpdateContext,
        meta: Mapping[str, Any] | None = None,
        answer: tuple[int, bytes] | None = None,
        policy: Policy | None = None,
        records: Records | None = None,
        companions: Companions | None = None,
    ) -> Outcome:
        """Countersign and store a user's update (its own checks, `channels.check_user_update`, are the
        caller's and passed). `answer` (nonce, signature) countersigns the node's open proposal first
        and the update builds on it. `companions`: the node's proposals it calls for on other channels,
        committed in its batch where they can be (`Companion`)."""
        if isinstance(update, SetupUpdate | ResumeUpdate):
            raise ChannelError("invalid_update", f"A {type(update).__name__} is not a user's update here.")

        def decide(record: ChannelRecord) -> _Plan | Outcome:
            if update.nonce == record.nonce and _is_replay(record, update, signature):
                return Outcome(record, record.signed(), (), ())
            stored: list[Stored] = []
            current = record
            if answer is not None:
                answered = _answer(current, *answer, superseded=True)
                if isinstance(answered, Outcome):  # answered before: nothing to store for it
                    current = answered.channel
                else:
                    stored.extend(answered.stored)
                    current = answered.after
            if current.pending_update is not None and update.nonce >= current.nonce + 1:
                raise ChannelError(
                    "update_pending",
                    "The node proposed an update at this nonce; countersign it first, then retry at the"
                    " next nonce.",
                    status=409,
                    extra={"proposal": proposal_json(current), "latest": signed_state_json(current)},
                )
            previous = current.state
            try:
                new, node_signature = validation.countersign(
                    previous, update, signature, self._signer, context=context
                )
            except ProtocolError as exc:
                raise ChannelError.from_protocol(exc, current) from None
            if policy is not None:
                policy(current, new, update, meta or {})
            signed = SignedState(new, node_signature, signature)
            stored.append(_stored_of(update, previous, signed, meta or {}))
            return self._plan(record, _advanced(current, update, signed), tuple(stored), records)

        return await self._run(update.channel_address, user, decide, companions)

    async def countersign(
        self,
        *,
        user: str,
        channel_address: str,
        nonce: int,
        signature: bytes,
        records: Records | None = None,
    ) -> Outcome:
        """Complete the node's open proposal at `nonce` with its user's signature."""

        def decide(record: ChannelRecord) -> _Plan | Outcome:
            answered = _answer(record, nonce, signature, superseded=False)
            if isinstance(answered, Outcome):
                return answered
            return self._plan(record, answered.after, answered.stored, records)

        return await self._run(channel_address, user, decide)

    # -- what the node proposes -----------------------------------------------------------------------

    async def propose(
        self,
        *,
        user: str,
        channel_address: str,
        build: Callable[[ChannelRecord], Update | None],
        context: UpdateContext,
        meta: Mapping[str, Any] | None = None,
        writes: tuple[Write, ...] = (),
    ) -> Outcome | None:
        """Sign the update `build` makes on the channel as it is (None: nothing to propose now) and
        store it as the channel's open proposal (the user's countersignature completes it,
        `countersign`), with the caller's `writes` in the same batch. The node signs one state per
        nonce: with a proposal open it proposes nothing. None when `build` proposed nothing."""

        def decide(record: ChannelRecord) -> _Plan | Outcome:
            if record.pending_update is not None:
                raise ChannelError("update_pending", "The channel already has an open proposal.", status=409)
            return self._proposal(record, build, context, meta, writes) or Outcome(
                record, record.signed(), (), ()
            )

        outcome = await self._run(channel_address, user, decide)
        if not outcome.events:
            return None
        _reached_proposed(outcome)
        return outcome

    def _proposal(
        self,
        record: ChannelRecord,
        build: Callable[[ChannelRecord], Update | None],
        context: UpdateContext,
        meta: Mapping[str, Any] | None,
        writes: tuple[Write, ...],
    ) -> _Plan | None:
        """The node's proposal of what `build` makes on `record` (no proposal open), signed; None when
        it makes nothing."""
        update = build(record)
        if update is None:
            return None
        try:
            new, node_signature = validation.initiate_update(
                record.state, update, self._signer, context=context
            )
        except ProtocolError as exc:
            raise ChannelError.from_protocol(exc, record) from None
        proposal = journal.Proposal(
            update=serialization.update_to_json(update),
            state=serialization.channel_state_to_json(new),
            node_signature=serialization.hex_bytes(node_signature),
            meta=dict(meta or {}),
        )
        after = replace(
            record,
            pending_update=proposal.update,
            pending_state=proposal.state,
            pending_node_signature=proposal.node_signature,
            pending_meta=proposal.meta,
            proposed=new,
        )
        return _Plan(
            after,
            (),
            ((record.user_address, "update.proposed", proposal_json(after) or {}),),
            (self._store_row(record, after), *writes),
        )

    # -- inside -----------------------------------------------------------------------------------------

    async def _run(
        self,
        address: str,
        user: str,
        decide: Callable[[ChannelRecord], _Plan | Outcome],
        companions: Companions | None = None,
    ) -> Outcome:
        """Decide on the channel as memory holds it and commit the decision, one operation per
        channel at a time; a row that moved under the owner is read again and decided again. A
        refusal is only ever made on the channel as just read: memory may be behind what the
        row-lock path wrote since (refused on memory, the channel is read again and decided again)."""
        shard = shard_of(user, self._writer.shards)
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            for attempt in range(ATTEMPTS):
                held = self._book.get(address)
                fresh = held is None or held.epoch != self._writer.epoch
                try:
                    record = await self._record(shard, address, user)
                    decided = decide(record)
                except ServiceError:
                    if fresh or attempt + 1 == ATTEMPTS:
                        raise
                    self._book.pop(address, None)
                    continue
                if isinstance(decided, Outcome):
                    return decided
                holds = await self._hold(address, _asked(companions))
                try:
                    written = self._writer.submit(shard, _work(decided.writes))
                    self._submit(holds)  # after the decision's write: into its batch, behind it
                    await written
                except WriteFailed as failed:
                    self._book.pop(address, None)
                    if journal.moved(failed.__cause__) and attempt + 1 < ATTEMPTS:
                        continue
                    refusal = CONFLICTS.get(journal.constraint_of(failed.__cause__) or "")
                    if refusal is not None:
                        raise ChannelError(*refusal, status=409) from None
                    if journal.unexpected(failed.__cause__):  # a record it builds on moved
                        raise ChannelError(
                            "conflict",
                            "A concurrent update wrote the same record; sync and retry.",
                            status=409,
                        ) from None
                    raise
                except OwnershipLost:
                    self._book.pop(address, None)
                    raise
                finally:
                    made = await self._settle(holds)
                self._book[address] = decided.after
                return Outcome(decided.after, decided.after.signed(), decided.stored, decided.events, made)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _hold(self, address: str, companions: Iterable[Companion]) -> list[_Held]:
        """The companions that can be decided without waiting: on another channel this process holds in
        memory, whose lock is free (taken now, so nothing else decides on it until its write is
        settled), with no proposal open, that `build` makes a proposal on. Never waits for a lock held
        by someone, so two decisions asking for each other's channels cannot wait on each other."""
        held: list[_Held] = []
        try:
            for companion in companions:
                target = companion.channel_address
                lock = self._locks.setdefault(target, asyncio.Lock())
                if target == address or lock.locked():
                    continue
                await lock.acquire()  # free: taken at once
                hold = _Held(companion, lock, shard_of(companion.user, self._writer.shards))
                held.append(hold)
                record = self._book.get(target)
                if record is None or not _proposable(record, companion.user, self._writer.epoch):
                    continue
                try:
                    hold.plan = self._proposal(
                        record, companion.build, companion.context, companion.meta, companion.writes
                    )
                except ServiceError:
                    continue  # refused on memory: the caller's own proposal decides on the row
                except Exception:  # the caller's step after the commit meets it again, and reports it
                    logger.exception("the companion %s was not made", companion.key)
        except BaseException:
            for hold in held:
                hold.lock.release()
            raise
        return held

    def _submit(self, held: list[_Held]) -> None:
        for hold in held:
            if hold.plan is None:
                continue
            try:
                hold.done = self._writer.submit(hold.shard, _work(hold.plan.writes))
            except NotOwner:
                hold.plan = None

    async def _settle(self, held: list[_Held]) -> dict[str, Outcome]:
        """Each held companion's write awaited (its decision's was), memory set to what committed, then
        every lock released (also when the wait is cancelled): the proposals made, by key."""
        made: dict[str, Outcome] = {}
        try:
            for hold in held:
                if hold.plan is None or hold.done is None:
                    continue
                target = hold.companion.channel_address
                try:
                    await hold.done
                except (WriteFailed, OwnershipLost):
                    self._book.pop(target, None)  # read again on its next use
                    continue
                except BaseException:  # cancelled while it commits: memory may be behind the row
                    self._book.pop(target, None)
                    raise
                after = hold.plan.after
                self._book[target] = after
                outcome = Outcome(after, after.signed(), (), hold.plan.events)
                _reached_proposed(outcome)
                made[hold.companion.key] = outcome
        finally:
            for hold in held:
                hold.lock.release()
        return made

    async def _record(self, shard: int, address: str, user: str) -> ChannelRecord:
        """The channel as its owner holds it, read from the database on first use in a session;
        refused unless it is `user`'s, open and not fenced."""
        record = self._book.get(address)
        if record is None or record.epoch != self._writer.epoch:
            row, epoch = await self._writer.read(shard, lambda cursor: journal.load_channel(cursor, address))
            self.loads += 1
            if row is None:
                raise ChannelError("no_channel", f"No channel at {address}.", status=404)
            record = ChannelRecord.from_row(row, epoch)
            self._book[address] = record
        if record.user_address != user:
            raise ChannelError("not_your_channel", "This channel belongs to another user.", status=403)
        if record.status != OPEN:
            raise ChannelError("channel_not_open", f"The channel is {record.status}.", status=409)
        if record.fenced_since is not None:
            raise fence.refusal(record)
        return record

    def _plan(
        self,
        seen: ChannelRecord,
        after: ChannelRecord,
        stored: tuple[Stored, ...],
        records: Records | None,
    ) -> _Plan:
        """The writes of `stored` (built on `seen`, ending at `after`): the channel row once, the
        journal and the transfer rows per state, then the caller's `records`; the user is told of
        the last state."""
        writes: list[Write] = [self._store_row(seen, after)]
        for done in stored:
            writes.append(_append(after.id, done))
            if done.created is not None:
                kind = self._definitions[done.created.definition]
                writes.append(_insert_transfer(after.id, done.created, kind, done.meta))
            elif done.resolved is not None:
                assert isinstance(done.update, ResolveUpdate)
                writes.append(_resolve_transfer(done))
        last = stored[-1]
        events: tuple[Event, ...] = (
            (
                after.user_address,
                "channel.updated",
                {"nonce": str(last.new.nonce), "type": last.update_type, **signed_state_json(after)},
            ),
        )
        if records is not None:
            more, told = records(after, stored)
            writes.extend(more)
            events += told
        return _Plan(after, stored, events, tuple(writes))

    @staticmethod
    def _store_row(seen: ChannelRecord, after: ChannelRecord) -> Write:
        proposal = (
            None
            if after.pending_update is None or after.pending_state is None
            else journal.Proposal(
                after.pending_update, after.pending_state, after.pending_node_signature, after.pending_meta
            )
        )

        async def write(cursor: journal.Cursor) -> None:
            await journal.store_channel(
                cursor,
                channel_id=seen.id,
                address=seen.address,
                seen_nonce=seen.nonce,
                seen_proposal_signature=seen.pending_node_signature,
                nonce=after.nonce,
                latest_state=after.latest_state,
                node_signature=after.node_signature,
                user_signature=after.user_signature,
                proposal=proposal,
            )

        return write


# -- pure steps -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answered:
    after: ChannelRecord
    stored: tuple[Stored, ...]


def _answer(record: ChannelRecord, nonce: int, signature: bytes, *, superseded: bool) -> _Answered | Outcome:
    """The user's countersignature of the open proposal at `nonce`, decided on `record`: the channel
    after it, or (sent again) the latest state as the first answer gave it."""
    if not answers_proposal(record, record.proposed, nonce, signature):
        return Outcome(record, record.signed(), (), ())
    new = record.proposed
    assert new is not None
    update = serialization.update_from_json(record.pending_update)
    signed = SignedState(new, _bytes(record.pending_node_signature), signature)
    stored = _stored_of(
        update, record.state, signed, record.pending_meta, proposal_answered=True, superseded=superseded
    )
    return _Answered(_advanced(record, update, signed), (stored,))


def _stored_of(
    update: Update,
    previous: ChannelState,
    signed: SignedState,
    meta: Mapping[str, Any],
    *,
    proposal_answered: bool = False,
    superseded: bool = False,
) -> Stored:
    """What storing `signed` (made by `update` on `previous`) does to the channel's transfers."""
    new = signed.state
    created = resolved = None
    refunded = False
    if isinstance(update, CreateUpdate):
        created = created_transfer(new)
    elif isinstance(update, ResolveUpdate):
        resolved = previous.transfer(update.transfer_id)
        assert resolved is not None  # the protocol core refused the update otherwise
        refunded = is_refund(previous, new, resolved.asset_id, resolved.initiator, resolved.balance[0])
    return Stored(
        update,
        str(serialization.update_to_json(update)["type"]),
        previous,
        signed,
        meta,
        created=created,
        resolved=resolved,
        refunded=refunded,
        proposal_answered=proposal_answered,
        superseded=superseded,
    )


def _advanced(record: ChannelRecord, update: Update, signed: SignedState) -> ChannelRecord:
    """`record` once `signed`, made by `update`, is its latest doubly signed state (no proposal open)."""
    new, node_signature, user_signature = signed.state, signed.node_signature, signed.user_signature
    return replace(
        record,
        nonce=new.nonce,
        latest_state=serialization.channel_state_to_json(new),
        node_signature=serialization.hex_bytes(node_signature),
        user_signature=serialization.hex_bytes(user_signature),
        pending_update=None,
        pending_state=None,
        pending_node_signature="",
        pending_meta={},
        last_update=serialization.update_to_json(update),
        last_user_signature=serialization.hex_bytes(user_signature),
        state=new,
        proposed=None,
    )


def _is_replay(record: ChannelRecord, update: Update, signature: bytes) -> bool:
    """The same user update with the same signature as the one that made the latest state."""
    return (
        record.last_update is not None
        and record.last_user_signature is not None
        and record.last_update == serialization.update_to_json(update)
        and _bytes(record.last_user_signature) == signature
    )


def _asked(companions: Companions | None) -> tuple[Companion, ...]:
    """The companions a decision asks for; none when asking fails (its steps are then all taken after
    the commit, which report the failure): a companion never turns the decision into an error."""
    if companions is None:
        return ()
    try:
        return companions()
    except Exception:
        logger.exception("the companions of a decision were not asked")
        return ()


def _proposable(record: ChannelRecord, user: str, epoch: int) -> bool:
    """Whether the node may propose on `record` as memory holds it: read in this session, `user`'s,
    open, not fenced, no proposal open."""
    return (
        record.epoch == epoch
        and record.user_address == user
        and record.status == OPEN
        and record.fenced_since is None
        and record.pending_update is None
    )


def _reached_proposed(outcome: Outcome) -> None:
    if crash_points.ARMED and outcome.channel.pending_update is not None:
        crash_points.reached(
            "proposed", outcome.channel.user_address, str(outcome.channel.pending_update["type"])
        )


def _bytes(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.removeprefix("0x"))


def _work(writes: Iterable[Write]) -> Callable[[journal.Cursor], Awaitable[None]]:
    async def work(cursor: journal.Cursor) -> None:
        for write in writes:
            await write(cursor)

    return work


def _append(channel_id: int, stored: Stored) -> Write:
    async def write(cursor: journal.Cursor) -> None:
        await journal.append_update(
            cursor,
            channel_id=channel_id,
            nonce=stored.new.nonce,
            kind=stored.update_type,
            initiator=stored.update.initiator,
            update=serialization.update_to_json(stored.update),
            state_hash=serialization.hex_bytes(stored.new.state_hash),
            node_signature=serialization.hex_bytes(stored.signed.node_signature),
            user_signature=serialization.hex_bytes(stored.signed.user_signature),
        )

    return write


def _insert_transfer(
    channel_id: int, transfer: TransferState, kind: DefinitionKind, meta: Mapping[str, Any]
) -> Write:
    async def write(cursor: journal.Cursor) -> None:
        await journal.insert_transfer(
            cursor,
            channel_id=channel_id,
            transfer_id=serialization.hex_bytes(transfer.transfer_id),
            payment_id=serialization.hex_bytes(transfer.payment_id),
            kind=kind.value,
            definition=transfer.definition,
            initiator=transfer.initiator,
            responder=transfer.responder,
            asset_id=transfer.asset_id,
            amount=transfer.balance[0],
            transfer_state=serialization.transfer_state_to_json(transfer),
            meta=dict(meta),
            created_nonce=transfer.create_nonce,
        )

    return write


def _resolve_transfer(stored: Stored) -> Write:
    update = stored.update
    assert isinstance(update, ResolveUpdate)

    async def write(cursor: journal.Cursor) -> None:
        await journal.resolve_transfer(
            cursor,
            transfer_id=serialization.hex_bytes(update.transfer_id),
            status="cancelled" if stored.refunded else "resolved",
            encoded_resolver=serialization.hex_bytes(update.encoded_resolver),
            resolved_nonce=stored.new.nonce,
        )

    return write
