"""Channel updates: the one writer of every channel.

Each update runs in a database transaction that locks the channel row, re-derives the new state with
the pure protocol core (`connext.protocol`), signs it, stores it and announces it after commit; what
it did to the channel's transfers is returned (`Applied`) for the payments built on them
(`payments`, which owns the transaction of a user's update). Two directions:

- the user initiates (`channel_open`, `check_user_update` then `countersign_user_update`): the node
  validates and countersigns;
- the node initiates (`propose_locked`): the node signs and stores a *proposal*, pushes it to the user,
  and `countersign_proposal` completes it. The node never signs a different state at a proposed nonce,
  so a user holding the proposal can never pick between two node-signed states.

A re-sent update gets the same answer; an update behind the latest state gets the latest state back
(error `stale_nonce` with `latest`) so the peer can sync.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_app import after_commit, chain, crash_points, network, realtime, rows
from channels_app.models import Channel, ChannelUpdate, Dispute, Transfer, TransferDispute
from channels_app.services import capital, fence, swaps
from channels_app.services.errors import ServiceError
from connext.chain import disputes
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization, signing, updates, validation
from connext.protocol.errors import NonceGapError, ProtocolError, StaleNonceError
from connext.protocol.types import (
    AssetDefund,
    ChainDispute,
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    SwapUpdate,
    TransferState,
    Update,
    UpdateContext,
)

_PROTOCOL_STATUS = {
    "stale_nonce": 409,
    "nonce_gap": 409,
    "unauthorized": 403,
}


class ChannelFields(Protocol):
    """What the API's JSON of a channel reads: a `Channel` row, or the update engine's record of one."""

    @property
    def user_address(self) -> str: ...

    @property
    def nonce(self) -> int: ...

    @property
    def address(self) -> str: ...
    @property
    def latest_state(self) -> Any: ...
    @property
    def node_signature(self) -> str: ...
    @property
    def user_signature(self) -> str: ...
    @property
    def pending_update(self) -> Any: ...
    @property
    def pending_node_signature(self) -> str: ...
    @property
    def pending_meta(self) -> Any: ...
    @property
    def fence_min_nonce(self) -> int: ...


class ChannelError(ServiceError):
    """A refused channel operation: a stable `code`, a message, an HTTP status and optional extras."""

    @classmethod
    def from_protocol(cls, error: ProtocolError, channel: ChannelFields | None = None) -> ChannelError:
        extra: dict[str, Any] = {"field": error.field} if error.field else {}
        if channel is not None and isinstance(error, StaleNonceError | NonceGapError):
            extra["latest"] = signed_state_json(channel)
        return cls(error.code, error.message, status=_PROTOCOL_STATUS.get(error.code, 400), extra=extra)


@dataclass(frozen=True)
class SignedState:
    state: ChannelState
    node_signature: bytes
    user_signature: bytes


def signed_state_json(channel: ChannelFields) -> dict[str, Any]:
    """The latest doubly signed state of a channel, as the API returns it."""
    return {
        "state": channel.latest_state,
        "nodeSignature": channel.node_signature,
        "userSignature": channel.user_signature,
    }


def proposal_json(channel: ChannelFields) -> dict[str, Any] | None:
    """The node's open proposal (update + node signature) or None."""
    if channel.pending_update is None:
        return None
    return {
        "update": channel.pending_update,
        "nodeSignature": channel.pending_node_signature,
        "meta": channel.pending_meta or {},
    }


_PARSED_STATES: OrderedDict[tuple[str, int, str], ChannelState] = OrderedDict()
_PARSED_STATES_MAX = 4096
_PARSED_STATES_LOCK = threading.Lock()


def latest_state(channel: Channel) -> ChannelState:
    """The channel's latest doubly signed state, parsed (and checked) once per process and nonce.

    The node's signature identifies the state (it signs exactly one state per nonce), so a state
    parsed before is reused as long as the stored nonce and signature are the same.
    """
    key = (channel.address, channel.nonce, channel.node_signature)
    with _PARSED_STATES_LOCK:
        state = _PARSED_STATES.get(key)
        if state is not None:
            _PARSED_STATES.move_to_end(key)
            return state
    state = serialization.channel_state_from_json(channel.latest_state)
    _remember_state(key, state)
    return state


def _remember_state(key: tuple[str, int, str], state: ChannelState) -> None:
    with _PARSED_STATES_LOCK:
        _PARSED_STATES[key] = state
        if len(_PARSED_STATES) > _PARSED_STATES_MAX:
            _PARSED_STATES.popitem(last=False)


# Updates whose state is stored whole (`ChannelUpdate.resumed_state`): a rebuild starts from the last.
KEPT_WHOLE = ("resume", "reconcile")


def state_at(channel: Channel, nonce: int) -> ChannelState | None:
    """The doubly signed state the channel had at `nonce`, rebuilt from the updates the node stored
    (it keeps every update and the hash both parties signed, not every state): each update applied
    by the protocol core as it was at the time it was stored, and each result checked against the
    signed hash. A resume's outcome depends on the chain's record of its dispute as it was then, so
    the rebuild starts from the state the last resume up to `nonce` made, kept whole. None when it
    cannot be rebuilt exactly (a record that does not hash to what was signed, or a resume stored
    before resumed states were kept)."""
    definitions = network.network().definitions
    state: ChannelState | None = None
    records = ChannelUpdate.objects.filter(channel=channel, nonce__lte=nonce)
    resume = records.filter(kind__in=KEPT_WHOLE).order_by("-nonce").first()
    if resume is not None:
        if resume.resumed_state is None:
            return None
        try:
            state = serialization.channel_state_from_json(resume.resumed_state)
        except ProtocolError:
            return None
        if state.nonce != resume.nonce or serialization.hex_bytes(state.state_hash) != resume.state_hash:
            return None
        records = records.filter(nonce__gt=resume.nonce)
    for record in records.order_by("nonce").iterator():
        update = serialization.update_from_json(record.update)
        deposits = (
            {update.asset_id: (update.total_deposits_node, update.total_deposits_user)}
            if isinstance(update, DepositUpdate)
            else {}
        )
        context = UpdateContext(
            now=int(record.created_at.timestamp()), definitions=definitions, chain_deposits=deposits
        )
        try:
            state = updates.apply_update(state, update, context=context)
        except ProtocolError:
            return None
        if state.nonce != record.nonce or serialization.hex_bytes(state.state_hash) != record.state_hash:
            return None
    return state if state is not None and state.nonce == nonce else None


def chain_dispute(*, channel_address: str) -> ChainDispute | None:
    """The channel's last dispute as the chain watcher recorded it (every round's defunds, the latest
    per asset; every transfer disputed or paid out on chain), with the chain's time now. None when the
    channel was never disputed on chain."""
    rounds = list(
        Dispute.objects.filter(channel__address=channel_address, consensus_expiry__isnull=False).order_by(
            "pk"
        )
    )
    if not rounds:
        return None
    defunds: dict[str, AssetDefund] = {}
    for record in rounds:
        for asset_id, defund in record.defunds.items():
            nonce = int(defund["defundNonce"])
            if asset_id not in defunds or defunds[asset_id].defund_nonce < nonce:
                payout = (int(defund["toNode"]), int(defund["toUser"]))
                defunds[asset_id] = AssetDefund(asset_id=asset_id, defund_nonce=nonce, payout=payout)
    transfer_disputes = TransferDispute.objects.filter(channel__address=channel_address)
    latest = rounds[-1]
    assert latest.defund_expiry is not None
    return ChainDispute(
        state_hash=_bytes(latest.state_hash),
        defund_expiry=latest.defund_expiry,
        chain_time=disputes.chain_time(chain.web3()),
        defunds=defunds,
        disputed_transfers=frozenset(_bytes(r.transfer_hash) for r in transfer_disputes),
        defunded_transfers=frozenset(
            _bytes(r.transfer_hash) for r in transfer_disputes if r.status == TransferDispute.Status.DEFUNDED
        ),
    )


def _dispute_for(update: Update) -> ChainDispute | None:
    """What a resolve (never of a transfer disputed on chain) or a resume is checked against. A resolve
    only asks whether its transfer was disputed: the full record (and the chain's time) is read only
    when it was, so the payment path pays one indexed lookup, never a chain read."""
    if isinstance(update, ResumeUpdate):
        return chain_dispute(channel_address=update.channel_address)
    if isinstance(update, ResolveUpdate) and rows.exists(
        TransferDispute, transfer_id=serialization.hex_bytes(update.transfer_id)
    ):
        return chain_dispute(channel_address=update.channel_address)
    return None


# -- the user's updates --------------------------------------------------------------------------


def channel_open(*, user: str, update: SetupUpdate, signature: bytes) -> tuple[Channel, bool]:
    """Countersign the setup state of `user`'s channel. Opening again returns the existing channel.

    Returns the channel and whether it was created now.
    """
    net = network.network()
    expected = {
        "initiator": (update.initiator, user),
        "user": (update.user, user),
        "node": (update.node, net.node_address),
        "chain_id": (update.chain_id, net.chain_id),
        "channel_address": (update.channel_address, net.channel_address_for(user)),
        "timeout": (update.timeout, settings.DISPUTE_TIMEOUT_SECONDS),
    }
    for field, (given, wanted) in expected.items():
        if given != wanted:
            if field in ("initiator", "user"):
                raise ChannelError("unauthorized", "A channel is opened by its own user.", status=403)
            raise ChannelError("invalid_setup", f"The setup's {field} must be {wanted}, not {given}.")
    existing = Channel.objects.filter(address=update.channel_address).first()
    if existing is not None:
        return existing, False
    context = network.update_context()
    try:
        new, node_signature = validation.countersign(
            None, update, signature, network.node_signer(), context=context
        )
    except ProtocolError as exc:
        raise ChannelError.from_protocol(exc) from None
    try:
        with transaction.atomic():
            channel = Channel.objects.create(
                address=new.channel_address,
                chain_id=new.chain_id,
                node_address=new.node,
                user_address=new.user,
                nonce=new.nonce,
                latest_state=serialization.channel_state_to_json(new),
                node_signature=serialization.hex_bytes(node_signature),
                user_signature=serialization.hex_bytes(signature),
                user_public_key=serialization.hex_bytes(
                    signing.recover_public_key(new.state_hash, signature)
                ),
            )
            _record_update(channel, update, new, node_signature, signature)
    except IntegrityError:  # opened concurrently by another request: that one won
        return Channel.objects.get(address=update.channel_address), False
    after_commit.run_task(
        "channels_app.tasks.channel_reconcile", channel.pk
    )  # payments waiting for this user
    return channel, True


@dataclass(frozen=True)
class Checked:
    """A user's update that passed every check made before its channel is locked: its own shape, the
    chain's reads it is validated against, and (a swap) the node's quote or refusal."""

    user: str
    update: Update
    meta: dict[str, Any]
    context: UpdateContext
    quote: swaps.Quote | None
    quote_refused: swaps.SwapError | None


@dataclass(frozen=True)
class Applied:
    """What storing one doubly signed state did: the payments built on the channel follow from it.

    `created` is the row of the transfer a create locked; `resolved` the transfer a resolve settled
    (as `previous` held it). A `superseded` state has another update after it in the same
    transaction (the proposal a user's update answered first): that one is announced and checked.
    `checked_since` is the state the node's collateral was last checked against."""

    channel: Channel
    update: Update
    update_type: str  # the update's `type` in the protocol's JSON
    previous: ChannelState
    new: ChannelState
    created: Transfer | None = None
    resolved: TransferState | None = None
    proposal_answered: bool = False
    superseded: bool = False
    checked_since: ChannelState | None = None

    def node_balance_moved(self) -> bool:
        return node_balances(self.checked_since or self.previous) != node_balances(self.new)


@dataclass(frozen=True)
class Countersigned:
    """The doubly signed state a request ends at, and what each state it stored did, in order (none
    for a request sent again: its first answer)."""

    signed: SignedState
    applied: tuple[Applied, ...]


def check_user_update(*, user: str, update: Update, meta: dict[str, Any] | None = None) -> Checked:
    """The checks of a user's update (deposit, create, resolve, swap) that need no lock: who sent it,
    its meta, and the chain's reads it is validated against (an update refused here changes nothing
    and holds no lock). A swap is priced here against the node's own offer (`swaps`): the core accepts
    a swap at any rate both sign, so the node's rate, limits and exposure are what stop a user naming
    its own price. A `create` may carry `meta` (e.g. the recipient of a routed payment); its hash
    must be the update's `metaHash`."""
    meta = check_user_fields(user=user, update=update, meta=meta)
    context = _user_update_context(update)
    # A swap's price is read before the lock; a refusal waits for the replay check (a swap sent again
    # gets its first answer even when the price went stale since).
    quote, quote_refused = _swap_quote(update) if isinstance(update, SwapUpdate) else (None, None)
    return Checked(user, update, meta, context, quote, quote_refused)


def countersign_user_update(
    checked: Checked, signature: bytes, *, answer: tuple[int, bytes] | None = None
) -> Countersigned:
    """Countersign and store a checked user update, inside the caller's transaction (it locks the
    channel's row). `answer` (nonce, user signature) countersigns the node's open proposal first and
    the update builds on it: a user whose channel receives a stream of proposals still gets its own
    updates in (the node cannot slip a new proposal in between)."""
    update, meta, quote = checked.update, checked.meta, checked.quote
    channel = locked_channel(update.channel_address, checked.user)
    if update.nonce == channel.nonce and _is_replay(channel, update, signature):
        return Countersigned(
            SignedState(latest_state(channel), _bytes(channel.node_signature), signature), ()
        )
    if checked.quote_refused is not None:
        raise checked.quote_refused
    before = latest_state(channel)  # an answered proposal is checked with this update
    answered = _countersign_locked(channel, *answer, superseded=True) if answer is not None else None
    previous = latest_state(channel)
    if channel.pending_update is not None and update.nonce >= channel.nonce + 1:
        raise ChannelError(
            "update_pending",
            "The node proposed an update at this nonce; countersign it first, then retry at the next nonce.",
            status=409,
            extra={"proposal": proposal_json(channel), "latest": signed_state_json(channel)},
        )
    if isinstance(update, CreateUpdate):
        _check_withdrawal_limits(channel, update)
    if quote is not None:
        assert isinstance(update, SwapUpdate)
        swaps.check_locked(channel, previous, update, quote)
    try:
        new, node_signature = validation.countersign(
            previous, update, signature, network.node_signer(), context=checked.context
        )
    except ProtocolError as exc:
        raise ChannelError.from_protocol(exc, channel) from None
    signed = SignedState(new, node_signature, signature)
    applied = _store(
        channel, update, previous, signed, meta=meta, checked_since=before, after_answer=answered is not None
    )
    if quote is not None:
        assert isinstance(update, SwapUpdate)
        swaps.record_locked(channel, update, quote)
    return Countersigned(signed, (*answered.applied, applied) if answered else (applied,))


def check_user_fields(*, user: str, update: Update, meta: dict[str, Any] | None) -> dict[str, Any]:
    """The checks of a user's update that read nothing: not a setup, sent by its initiator, and its
    meta (only a create's, hashing to its `metaHash`). Returns the meta."""
    meta = meta or {}
    if isinstance(update, SetupUpdate):
        raise ChannelError("invalid_update", "Open a channel with the setup endpoint.")
    if update.initiator != user:
        raise ChannelError(
            "unauthorized", "The update's initiator must be the logged-in address.", status=403
        )
    if not isinstance(update, CreateUpdate) and meta:
        raise ChannelError("bad_meta", "Only a create update carries meta.")
    if isinstance(update, CreateUpdate):
        try:
            matches = transfer_meta.meta_hash(meta) == update.meta_hash
        except ProtocolError as exc:
            raise ChannelError.from_protocol(exc) from None
        if not matches:
            raise ChannelError("bad_meta", "The meta does not hash to the update's metaHash.")
    return meta


def _user_update_context(update: Update) -> UpdateContext:
    """What a user's update is checked against. Its chain reads happen before the lock (the channel is
    locked only for the update itself); one that fails refuses the update unchanged (`chain.READ_ERRORS`
    are answered 503 at the API's edge)."""
    deposits_of = None
    if isinstance(update, DepositUpdate):
        if update.asset_id not in network.network().assets:  # not a token: its reads would revert
            raise ChannelError("unknown_asset", f"The node does not serve asset {update.asset_id}.")
        deposits_of = (update.channel_address, update.asset_id)
    return network.update_context(deposits_of=deposits_of, dispute=_dispute_for(update))


def _swap_quote(update: SwapUpdate) -> tuple[swaps.Quote | None, swaps.SwapError | None]:
    """The node's rate for a user's swap, or its refusal."""
    try:
        return swaps.quote_for(update.give_asset, update.take_asset), None
    except swaps.SwapError as exc:
        return None, exc


def _check_withdrawal_limits(channel: Channel, update: CreateUpdate) -> None:
    """The node pays the gas of a user's withdrawal: its limits apply before anything is signed (the
    caller holds the channel's lock, so concurrent withdrawals are counted one after the other)."""
    if network.network().definitions.get(update.definition) is not DefinitionKind.WITHDRAW:
        return
    capital.withdrawal_check(
        channel=channel, asset_id=update.asset_id, amount=update.amount, now=timezone.now()
    )


def locked_channel(channel_address: str, user: str) -> Channel:
    channel = rows.get(Channel, address=channel_address, for_update=True)
    if channel is None:
        raise ChannelError("no_channel", f"No channel at {channel_address}.", status=404)
    if channel.user_address != user:
        raise ChannelError("not_your_channel", "This channel belongs to another user.", status=403)
    if channel.status != Channel.Status.OPEN:
        raise ChannelError("channel_not_open", f"The channel is {channel.status}.", status=409)
    if channel.fenced_since is not None:
        raise fence.refusal(channel)
    return channel


def _bytes(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.removeprefix("0x"))


def _is_replay(channel: Channel, update: Update, signature: bytes) -> bool:
    """The same user update with the same signature as the one that made the latest state."""
    record = rows.get(ChannelUpdate, channel_id=channel.pk, nonce=update.nonce)
    return (
        record is not None
        and record.update == serialization.update_to_json(update)
        and _bytes(record.user_signature) == signature
    )


# -- the node's updates ------------------------------------------------------------------------------


def propose_locked(
    channel: Channel, update: Update, *, meta: dict[str, Any] | None = None
) -> tuple[ChannelState, bytes]:
    """Sign `update` as the node and store it as the channel's open proposal.

    The caller holds the channel's row lock (inside its transaction) and has checked that there is no
    open proposal. The proposal is pushed to the user after commit.
    """
    if channel.pending_update is not None:
        raise ChannelError("update_pending", "The channel already has an open proposal.", status=409)
    if channel.fenced_since is not None:
        raise fence.refusal(channel)
    previous = latest_state(channel)
    deposits_of = (update.channel_address, update.asset_id) if isinstance(update, DepositUpdate) else None
    context = network.update_context(deposits_of=deposits_of, dispute=_dispute_for(update))
    new, node_signature = validation.initiate_update(previous, update, network.node_signer(), context=context)
    channel.pending_update = serialization.update_to_json(update)
    channel.pending_state = serialization.channel_state_to_json(new)
    channel.pending_node_signature = serialization.hex_bytes(node_signature)
    channel.pending_meta = meta or {}
    rows.update(channel, _PENDING_FIELDS)
    if crash_points.ARMED:
        update_type = channel.pending_update["type"]
        transaction.on_commit(lambda: crash_points.reached("proposed", channel.user_address, update_type))
    realtime.push_event_on_commit(
        realtime.user_group(channel.user_address), "update.proposed", proposal_json(channel) or {}
    )
    return new, node_signature


def propose_resolve_locked(
    channel: Channel, state: ChannelState, transfer_id: bytes, resolver: bytes
) -> None:
    """Propose resolving the active transfer `transfer_id` of `state` (the channel's latest) with
    `resolver`, as the node (`propose_locked`'s terms: channel locked, no open proposal)."""
    propose_locked(
        channel,
        ResolveUpdate(
            channel_address=channel.address,
            nonce=state.nonce + 1,
            initiator=channel.node_address,
            transfer_id=transfer_id,
            encoded_resolver=resolver,
        ),
    )


PROPOSAL_REMIND_AFTER_SECONDS = 10


def proposal_remind(*, channel_id: int) -> bool:
    """True when the channel has an open proposal. One left unanswered for a while is pushed again:
    a push is a notification that can be lost (a Redis or socket blip), and an idle user would
    otherwise never learn of the payment waiting for its countersignature."""
    channel = rows.get(Channel, pk=channel_id)
    if channel is None or channel.pending_update is None:
        return False
    if channel.updated_at <= timezone.now() - timedelta(seconds=PROPOSAL_REMIND_AFTER_SECONDS):
        realtime.push_event_now(
            realtime.user_group(channel.user_address), "update.proposed", proposal_json(channel) or {}
        )
    return True


def lock_for_proposal(channel_id: int) -> Channel | None:
    """The channel, locked, when the node may propose in it now (open, no open proposal); else None."""
    channel = rows.get(Channel, pk=channel_id, for_update=True)
    if channel is None:
        raise Channel.DoesNotExist(f"no channel {channel_id}")
    if (
        channel.pending_update is not None
        or channel.status != Channel.Status.OPEN
        or channel.fenced_since is not None  # the signing fence: nothing until the user reconciles
    ):
        return None
    return channel


def countersign_proposal(*, user: str, channel_address: str, nonce: int, signature: bytes) -> Countersigned:
    """Complete the node's proposal at `nonce` with the user's signature, inside the caller's
    transaction (it locks the channel's row)."""
    return _countersign_locked(locked_channel(channel_address, user), nonce, signature)


def answers_proposal(
    channel: ChannelFields, proposed: ChannelState | None, nonce: int, signature: bytes
) -> bool:
    """Whether `signature` (the user's, at `nonce`) completes the channel's open proposal `proposed`;
    False when it is the answer that completed the latest state, sent again; else refused
    (`no_proposal`, `bad_signature`). The row-lock path's and the update engine's one check."""
    if channel.pending_update is None or proposed is None:
        if channel.nonce == nonce and _bytes(channel.user_signature) == signature:
            return False
        raise ChannelError(
            "no_proposal",
            "There is no open proposal at this nonce.",
            status=409,
            extra={"latest": signed_state_json(channel)},
        )
    if proposed.nonce != nonce:
        raise ChannelError(
            "no_proposal",
            f"The open proposal is at nonce {proposed.nonce}.",
            status=409,
            extra={"proposal": proposal_json(channel), "latest": signed_state_json(channel)},
        )
    try:
        signer = signing.recover_signer(proposed, signature)
    except ProtocolError as exc:
        raise ChannelError.from_protocol(exc) from None
    if signer != channel.user_address:
        raise ChannelError(
            "bad_signature", "The signature is not the channel user's over the proposed state."
        )
    return True


def _countersign_locked(
    channel: Channel, nonce: int, signature: bytes, *, superseded: bool = False
) -> Countersigned:
    """Complete the open proposal. `superseded`: the user's own update follows in this transaction,
    so this state is announced and checked against the collateral profile only through that one."""
    proposed = (
        None
        if channel.pending_state is None
        else serialization.channel_state_from_json(channel.pending_state)
    )
    if not answers_proposal(channel, proposed, nonce, signature):
        return Countersigned(
            SignedState(latest_state(channel), _bytes(channel.node_signature), signature), ()
        )
    assert proposed is not None
    new = proposed
    update = serialization.update_from_json(channel.pending_update)
    previous = latest_state(channel)
    node_signature = _bytes(channel.pending_node_signature)
    meta = channel.pending_meta or {}
    channel.pending_update = None
    channel.pending_state = None
    channel.pending_node_signature = ""
    channel.pending_meta = {}
    signed = SignedState(new, node_signature, signature)
    applied = _store(
        channel, update, previous, signed, meta=meta, proposal_answered=True, superseded=superseded
    )
    return Countersigned(signed, (applied,))


# -- storing a doubly signed state -------------------------------------------------------------------

_STATE_FIELDS = ["nonce", "latest_state", "node_signature", "user_signature"]
_PENDING_FIELDS = ["pending_update", "pending_state", "pending_node_signature", "pending_meta"]


def _record_update(
    channel: Channel, update: Update, new: ChannelState, node_sig: bytes, user_sig: bytes
) -> str:
    """Store the update that made `new`; returns its type."""
    update_json = serialization.update_to_json(update)
    rows.insert(
        ChannelUpdate(
            channel=channel,
            nonce=new.nonce,
            kind=update_json["type"],
            initiator=update.initiator,
            update=update_json,
            state_hash=serialization.hex_bytes(new.state_hash),
            node_signature=serialization.hex_bytes(node_sig),
            user_signature=serialization.hex_bytes(user_sig),
            resumed_state=serialization.channel_state_to_json(new)
            if isinstance(update, ResumeUpdate)
            else None,
        )
    )
    return str(update_json["type"])


def _store(
    channel: Channel,
    update: Update,
    previous: ChannelState,
    signed: SignedState,
    *,
    meta: dict[str, Any] | None = None,
    proposal_answered: bool = False,
    superseded: bool = False,
    after_answer: bool = False,
    checked_since: ChannelState | None = None,
) -> Applied:
    """Store a doubly signed state, the update that made it and what it did to the channel's
    transfers, and announce it to the user after commit. A `superseded` state is announced, and its
    channel row written, through the update that follows it in the same transaction (that one is
    stored `after_answer`: the answered proposal's fields are cleared with its own). Returns what it
    did, for the payments it moves."""
    new, node_sig, user_sig = signed.state, signed.node_signature, signed.user_signature
    channel.nonce = new.nonce
    channel.latest_state = serialization.channel_state_to_json(new)
    channel.node_signature = serialization.hex_bytes(node_sig)
    channel.user_signature = serialization.hex_bytes(user_sig)
    if not superseded:
        fields = _STATE_FIELDS + _PENDING_FIELDS if proposal_answered or after_answer else _STATE_FIELDS
        rows.update(channel, fields)
    _remember_state((channel.address, new.nonce, channel.node_signature), new)
    update_type = _record_update(channel, update, new, node_sig, user_sig)
    created: Transfer | None = None
    resolved: TransferState | None = None
    if isinstance(update, CreateUpdate):
        created = _insert_transfer(channel, created_transfer(new), meta or {})
    elif isinstance(update, ResolveUpdate):
        resolved = previous.transfer(update.transfer_id)
        assert resolved is not None  # the protocol core refused the update otherwise
        refunded = is_refund(previous, new, resolved.asset_id, resolved.initiator, resolved.balance[0])
        rows.update_where(
            Transfer,
            {"transfer_id": serialization.hex_bytes(update.transfer_id)},
            {
                "status": Transfer.Status.CANCELLED if refunded else Transfer.Status.RESOLVED,
                "encoded_resolver": serialization.hex_bytes(update.encoded_resolver),
                "resolved_nonce": new.nonce,
            },
        )
    if not superseded:
        realtime.push_event_on_commit(
            realtime.user_group(channel.user_address),
            "channel.updated",
            {
                "nonce": str(new.nonce),
                "type": update_type,
                **signed_state_json(channel),
            },
        )
    return Applied(
        channel,
        update,
        update_type,
        previous,
        new,
        created=created,
        resolved=resolved,
        proposal_answered=proposal_answered,
        superseded=superseded,
        checked_since=checked_since,
    )


def created_transfer(new: ChannelState) -> TransferState:
    """The transfer the create that made `new` locked."""
    return next(t for t in new.transfers if t.create_nonce == new.nonce)


def _insert_transfer(channel: Channel, transfer: TransferState, meta: dict[str, Any]) -> Transfer:
    row, _kind = transfer_row(channel, transfer, meta)
    rows.insert(row)
    return row


def transfer_row(
    channel: Channel, transfer: TransferState, meta: dict[str, Any]
) -> tuple[Transfer, DefinitionKind]:
    """The (unsaved) row of an active transfer of the channel, and its kind."""
    kind = network.network().definitions[transfer.definition]
    row = Transfer(
        channel=channel,
        transfer_id=serialization.hex_bytes(transfer.transfer_id),
        payment_id=serialization.hex_bytes(transfer.payment_id),
        kind=kind.value,
        definition=transfer.definition,
        initiator=transfer.initiator,
        responder=transfer.responder,
        asset_id=transfer.asset_id,
        amount=transfer.balance[0],
        transfer_state=serialization.transfer_state_to_json(transfer),
        meta=meta,
        created_nonce=transfer.create_nonce,
    )
    return row, kind


def proposal_taken_on_chain_locked(channel: Channel) -> Transfer | None:
    """The user countersigned the node's open proposal alone and disputed with it: what it creates is
    the user's to claim on chain now. A transfer it locks is recorded, and its row returned (the
    receiver side of a payment is then linked to its payment), so the node follows it on chain like
    one countersigned off chain. The caller holds the channel's row lock; the proposal stays open
    (the round then closes the channel)."""
    if channel.pending_update is None or channel.pending_state is None:
        return None
    update = serialization.update_from_json(channel.pending_update)
    if not isinstance(update, CreateUpdate):
        return None
    new = serialization.channel_state_from_json(channel.pending_state)
    transfer = created_transfer(new)
    if rows.exists(Transfer, transfer_id=serialization.hex_bytes(transfer.transfer_id)):
        return None
    return _insert_transfer(channel, transfer, channel.pending_meta or {})


def node_balances(state: ChannelState) -> dict[str, int]:
    return {asset_id: balance[0] for asset_id, balance in zip(state.asset_ids, state.balances, strict=True)}


def is_refund(previous: ChannelState, new: ChannelState, asset_id: str, initiator: str, amount: int) -> bool:
    """True when a resolve gave the locked amount back to the initiator."""
    index = previous.asset_index(asset_id)
    side = 0 if initiator == previous.node else 1
    assert index is not None
    return new.balances[index][side] - previous.balances[index][side] == amount and amount > 0
