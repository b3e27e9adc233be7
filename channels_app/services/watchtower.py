"""The watchtower: the node's side of every dispute of its channels.

The chain watcher reports the dispute events (`*_observe`); `dispute_advance` then does, for one dispute
round, whatever is missing at the current **chain** time (the contract's clock, never the local one):

- consensus phase: a state older than the node's latest doubly signed one is replaced with the latest;
  if the window closed on the older state anyway (the node was down), the node rebuilds that state from
  its update records and the round goes on with it (`_rebuild_disputed_state`);
- defund phase: `defundChannel` for every asset that pays anyone, `disputeTransfer` for each active
  transfer the node has a stake in (it locked the funds, or it holds a resolver that pays it);
- any time after a transfer is disputed: `defundTransfer` with the node's resolver inside the transfer's
  window, or the refund of the node's own lock after it;
- when nothing is owed to the node any more the round is `defunded`; after the defund window the
  channel continues: the node proposes the `resume` update (the defunded assets' balances paid out,
  defund nonces raised, transfers paid out on chain dropped) and the round is `resumed`. When the round
  was on a state other than the node's latest, or a proposal of the node was open when it started, the
  round and the channel are `closed` instead (the user may hold the proposal countersigned).
- a transfer paid out on chain after the resume is dropped by a resume of its own (`channel_reconcile`).

Every step reads what the chain and the database already hold and only sends what is missing (one
in-flight transaction per step, a bounded number of failed attempts), so running it twice, in two
processes, or after a restart does the same thing once. Transactions go through the one sender.
A disputed channel is frozen off chain: the channel service refuses every update of a non-open channel.
It opens again only together with the resume proposal, which blocks every other update until the user
countersigns it: nothing can be credited or spent from balances the defund already paid out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from web3 import Web3

from channels_app import after_commit, chain, network, realtime
from channels_app.models import (
    Channel,
    Dispute,
    DisputeAction,
    OnchainTransaction,
    Payment,
    Transfer,
    TransferDispute,
)
from channels_app.services import channels, payments, withdrawals
from channels_app.services.errors import ServiceError
from channels_app.services.transactions import transaction_enqueue
from connext.chain import channel_reads, disputes
from connext.protocol import definitions, serialization
from connext.protocol.definitions import HashLockState
from connext.protocol.errors import ProtocolError
from connext.protocol.types import (
    ChainDispute,
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    ResolveUpdate,
    ResumeUpdate,
    TransferState,
)

logger = logging.getLogger(__name__)

Status = Dispute.Status
Kind = DisputeAction.Kind
TxStatus = OnchainTransaction.Status
IN_FLIGHT = (TxStatus.QUEUED, TxStatus.PENDING)
MAX_FAILED_ATTEMPTS = 3  # a step that keeps failing needs an operator, not more gas


class DisputeError(ServiceError):
    """Refused by the watchtower service."""


def _hex(raw: bytes) -> str:
    return serialization.hex_bytes(raw)


def _party(channel: Channel, address: str) -> str:
    if address == channel.node_address:
        return Dispute.Party.NODE
    if address == channel.user_address:
        return Dispute.Party.USER
    return Dispute.Party.OTHER


def dispute_json(dispute: Dispute) -> dict[str, Any]:
    """A dispute as the user's events and the API show it (amounts and times as decimal strings)."""
    return {
        "channelAddress": dispute.channel.address,
        "status": dispute.status,
        "disputedBy": dispute.disputed_by,
        "startedNonce": str(dispute.started_nonce),
        "nonce": str(dispute.nonce),
        "stateHash": dispute.state_hash,
        "consensusExpiry": str(dispute.consensus_expiry or 0),
        "defundExpiry": str(dispute.defund_expiry or 0),
        "defunds": dispute.defunds,
    }


def _push(dispute: Dispute, event: str) -> None:
    realtime.push_event_on_commit(
        realtime.user_group(dispute.channel.user_address), event, dispute_json(dispute)
    )


def _schedule_advance(dispute_id: int) -> None:
    after_commit.run_task("channels_app.tasks.dispute_advance", dispute_id)


def _active_dispute(channel: Channel) -> Dispute | None:
    return Dispute.objects.select_for_update().filter(channel=channel, status__in=Dispute.ACTIVE).first()


def _known_state_json(channel: Channel, state_hash: str) -> dict[str, Any] | None:
    """The disputed state when the node has it whole: its latest, or its open proposal (which the user
    may have countersigned and taken to the chain)."""
    for candidate in (channel.latest_state, channel.pending_state):
        if candidate is not None:
            state = serialization.channel_state_from_json(candidate)
            if _hex(state.state_hash) == state_hash:
                return dict(candidate)
    return None


# -- what the chain watcher saw -------------------------------------------------------------------


def channel_disputed_observe(
    *,
    channel_address: str,
    disputer: str,
    nonce: int,
    state_hash: str,
    consensus_expiry: int,
    defund_expiry: int,
) -> Dispute | None:
    """`ChannelDisputed`: a round started, or a newer state replaced the disputed one."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(address=channel_address).first()
        if channel is None:
            return None
        dispute = _active_dispute(channel)
        if dispute is not None and dispute.defund_expiry not in (None, defund_expiry):
            dispute.status = Status.CLOSED  # a new round can only start after this one's defund window
            dispute.save(update_fields=["status", "updated_at"])
            dispute = None
        if dispute is None:
            dispute = Dispute(
                channel=channel,
                disputed_by=_party(channel, disputer),
                disputer=disputer,
                started_nonce=nonce,
                status=Status.STARTED,
            )
        elif dispute.status == Status.REQUESTED:  # the node's own dispute, now on chain
            dispute.disputer = disputer
            dispute.disputed_by = _party(channel, disputer)
            dispute.started_nonce = nonce
        new_round = dispute.consensus_expiry is None
        was_stale = not new_round and dispute.nonce < channel.nonce
        dispute.nonce = nonce
        dispute.state_hash = state_hash
        dispute.state = _known_state_json(channel, state_hash)
        if nonce > channel.nonce and dispute.state is not None:  # the user took the node's proposal
            payments.proposal_taken_on_chain_locked(channel)
        dispute.consensus_expiry = consensus_expiry
        dispute.defund_expiry = defund_expiry
        if nonce < channel.nonce:
            dispute.status = Status.STARTED
        elif was_stale:
            dispute.status = Status.ANSWERED
        elif new_round:
            dispute.status = Status.UNCONTESTED
        dispute.save()
        if channel.status != Channel.Status.DISPUTED:
            channel.status = Channel.Status.DISPUTED
            channel.save(update_fields=["status", "updated_at"])
        if new_round:
            _push(dispute, "dispute.started")
        elif was_stale and dispute.status == Status.ANSWERED:
            _push(dispute, "dispute.answered")
        _schedule_advance(dispute.pk)
    logger.info("channel %s disputed at nonce %s (%s)", channel_address, nonce, dispute.status)
    return dispute


def channel_defunded_observe(
    *, channel_address: str, asset_id: str, defund_nonce: int, to_node: int, to_user: int
) -> None:
    """`ChannelDefunded`: one asset of the disputed state was paid out (by anyone)."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(address=channel_address).first()
        if channel is None:
            return
        dispute = _active_dispute(channel) or channel.disputes.order_by("-pk").first()
        if dispute is None:
            return
        dispute.defunds = {
            **dispute.defunds,
            asset_id: {"defundNonce": str(defund_nonce), "toNode": str(to_node), "toUser": str(to_user)},
        }
        dispute.save(update_fields=["defunds", "updated_at"])
        _schedule_advance(dispute.pk)


def transfer_disputed_observe(
    *, channel_address: str, transfer_id: str, transfer_hash: str, expiry: int
) -> TransferDispute | None:
    """`TransferDisputed`: a transfer of the disputed state was proven on chain (by anyone)."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(address=channel_address).first()
        if channel is None:
            return None
        dispute = _active_dispute(channel)
        record, _ = TransferDispute.objects.get_or_create(
            transfer_hash=transfer_hash,
            defaults={
                "dispute": dispute,
                "channel": channel,
                "transfer_record": Transfer.objects.filter(transfer_id=transfer_id).first(),
                "transfer_id": transfer_id,
                "expiry": expiry,
            },
        )
        if dispute is not None:
            _schedule_advance(dispute.pk)
    return record


def transfer_defunded_observe(
    *,
    channel_address: str,
    transfer_id: str,
    transfer_hash: str,
    to_initiator: int,
    to_responder: int,
    encoded_resolver: bytes | None,
) -> None:
    """`TransferDefunded`: a disputed transfer was paid out. A resolve on chain tells the node the
    resolver (read from the call), which settles the other side of a routed payment like an off-chain
    resolve would."""
    decided: int | None = None  # the payment whose receiver side this pays out
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(address=channel_address).first()
        if channel is None:
            return
        record, _ = TransferDispute.objects.select_for_update().get_or_create(
            transfer_hash=transfer_hash,
            defaults={"channel": channel, "transfer_id": transfer_id, "expiry": 0},
        )
        if record.status == TransferDispute.Status.DEFUNDED:
            return
        resolved = to_initiator == 0 and to_responder > 0
        record.status = TransferDispute.Status.DEFUNDED
        record.to_initiator = to_initiator
        record.to_responder = to_responder
        if resolved and encoded_resolver is not None:
            record.encoded_resolver = _hex(encoded_resolver)
        record.save()
        transfer = Transfer.objects.select_for_update().filter(transfer_id=transfer_id).first()
        if transfer is None or transfer.status != Transfer.Status.ACTIVE:
            pass
        elif resolved and encoded_resolver is None:
            logger.warning("transfer %s was resolved on chain by a call the node cannot read", transfer_id)
        else:  # refunded, resolved, or a withdraw paid through `withdraw` ([0, 0])
            transfer.status = Transfer.Status.CANCELLED if to_initiator > 0 else Transfer.Status.RESOLVED
            transfer.encoded_resolver = record.encoded_resolver
            transfer.save(update_fields=["status", "encoded_resolver", "updated_at"])
            decided = payments.routed_side_settled(
                transfer_id=transfer.transfer_id, payment_id=transfer.payment_id
            )
        if record.dispute_id is not None:
            _schedule_advance(record.dispute_id)
        if channel.status == Channel.Status.OPEN:  # resumed already: the paid-out transfer leaves the state
            after_commit.run_task("channels_app.tasks.channel_reconcile", channel.pk)
        if decided is not None:  # a receiver side paid out on chain settles the sender side next
            after_commit.run_inline(
                payments.payments_follow_up,
                retry_task="channels_app.tasks.payments_follow_up",
                settle_payment=(decided.payment_pk, decided.sender_channel_id),
            )


# -- the node's steps ---------------------------------------------------------------------------------


def _failed_attempts(dispute: Dispute, kind: str, transfer_id: str = "") -> int:
    return DisputeAction.objects.filter(
        dispute=dispute, kind=kind, transfer_id=transfer_id, transaction__status=TxStatus.FAILED
    ).count()


def _may_send(dispute: Dispute, kind: str, transfer_id: str = "") -> bool:
    """No transaction of this step in flight, and not given up on."""
    in_flight = DisputeAction.objects.filter(
        dispute=dispute, kind=kind, transfer_id=transfer_id, transaction__status__in=IN_FLIGHT
    ).exists()
    return not in_flight and _failed_attempts(dispute, kind, transfer_id) < MAX_FAILED_ATTEMPTS


def _send(
    dispute: Dispute,
    kind: str,
    calldata: bytes,
    *,
    transfer_id: str = "",
    asset_ids: Iterable[str] = (),
    after: OnchainTransaction | None = None,
) -> DisputeAction:
    record = transaction_enqueue(
        reason=OnchainTransaction.Reason.DISPUTE,
        to=dispute.channel.address,
        data=calldata,
        channel_address=dispute.channel.address,
        after=after,
    )
    return DisputeAction.objects.create(
        dispute=dispute, kind=kind, transaction=record, transfer_id=transfer_id, asset_ids=list(asset_ids)
    )


def _locked(dispute_id: int, *, resumed: bool = False) -> Dispute | None:
    """The dispute, with its channel row locked first (the lock order of every channel write); None
    when it is over (unless `resumed` asks for a round whose channel continued)."""
    channel_id = Dispute.objects.values_list("channel_id", flat=True).get(pk=dispute_id)
    Channel.objects.select_for_update().get(pk=channel_id)
    dispute = Dispute.objects.select_for_update().select_related("channel").get(pk=dispute_id)
    if dispute.status in Dispute.ACTIVE or (resumed and dispute.status == Dispute.Status.RESUMED):
        return dispute
    return None


def disputes_advance_all() -> int:
    """Advance every active dispute round. Returns how many were looked at."""
    ids = list(
        Dispute.objects.filter(status__in=Dispute.ACTIVE, consensus_expiry__isnull=False).values_list(
            "pk", flat=True
        )
    )
    for dispute_id in ids:
        try:
            dispute_advance(dispute_id=dispute_id)
        except Exception:
            logger.exception("advancing dispute %s failed", dispute_id)
    resumed_transfers_advance()
    downstream_guard()
    return len(ids)


def dispute_advance(*, dispute_id: int) -> None:
    """Do what is missing in one dispute round at the current chain time."""
    dispute = Dispute.objects.select_related("channel").get(pk=dispute_id)
    if dispute.status not in Dispute.ACTIVE or dispute.consensus_expiry is None:
        return
    downstream_guard(sender_channel_id=dispute.channel_id)
    w3 = chain.web3()
    now = disputes.chain_time(w3)
    if now < dispute.consensus_expiry:
        _answer(dispute_id)
        return
    if dispute.state is None:
        if dispute.status == Status.MISSED or not _rebuild_disputed_state(dispute_id):
            _mark_missed(dispute_id, "the window closed on a state the node cannot rebuild")
            return
        dispute.refresh_from_db(fields=["state"])
        assert dispute.state is not None
    state = serialization.channel_state_from_json(dispute.state)
    assert dispute.defund_expiry is not None
    if now < dispute.defund_expiry:
        _defund_channel(dispute_id, state, w3)
        _dispute_transfers(dispute_id, state, w3, now)
    _defund_transfers(dispute_id, state, w3, now)
    _conclude(dispute_id, state, w3, now)


def _rebuild_disputed_state(dispute_id: int) -> bool:
    """The window closed on an older state than the node's latest (the node was not there to answer):
    that state is what the chain pays out now. Rebuild it from the node's update records so the node
    still defunds what that state owes it (its balance, its locks, transfers it can claim) instead of
    leaving its share in the contract. True when the round now holds the state."""
    dispute = Dispute.objects.select_related("channel").get(pk=dispute_id)
    state = channels.state_at(dispute.channel, dispute.nonce)
    if state is None or _hex(state.state_hash) != dispute.state_hash:
        return False
    with transaction.atomic():
        locked = _locked(dispute_id)
        if locked is None or locked.nonce != dispute.nonce:
            return False
        locked.state = serialization.channel_state_to_json(state)
        locked.save(update_fields=["state", "updated_at"])
    logger.error(
        "dispute %s of %s: the window closed on the older state at nonce %s (the node's latest is %s); "
        "the node collects what that state owes it, later updates are void on chain",
        dispute_id,
        dispute.channel.address,
        dispute.nonce,
        dispute.channel.nonce,
    )
    return True


def _answer(dispute_id: int) -> None:
    """Replace a stale disputed state with the node's latest doubly signed one."""
    dispute = Dispute.objects.select_related("channel").get(pk=dispute_id)
    if disputes.read_dispute(chain.web3(), dispute.channel.address).nonce >= dispute.channel.nonce:
        return  # answered on chain already; the event is on its way
    with transaction.atomic():
        dispute = _locked(dispute_id)
        if dispute is None:
            return
        channel = dispute.channel
        if dispute.nonce >= channel.nonce or not _may_send(dispute, Kind.DISPUTE_CHANNEL):
            return
        latest = channels.latest_state(channel)
        _send(dispute, Kind.DISPUTE_CHANNEL, _dispute_with_latest(chain.web3(), channel))
        logger.info("answering dispute %s of %s with nonce %s", dispute.pk, channel.address, latest.nonce)


def _dispute_with_latest(w3: Web3, channel: Channel) -> bytes:
    """`disputeChannel` calldata with the channel's latest doubly signed state."""
    return disputes.dispute_channel_calldata(
        w3,
        channels.latest_state(channel),
        serialization.parse_bytes(channel.node_signature, field="nodeSignature"),
        serialization.parse_bytes(channel.user_signature, field="userSignature"),
    )


def _mark_missed(dispute_id: int, why: str) -> None:
    with transaction.atomic():
        dispute = _locked(dispute_id)
        if dispute is None or dispute.status == Status.MISSED:
            return
        dispute.status = Status.MISSED
        dispute.save(update_fields=["status", "updated_at"])
    logger.error("dispute %s: %s; an operator must look at it", dispute_id, why)


def _assets_to_defund(state: ChannelState, w3: Web3) -> list[str]:
    """Assets not defunded yet at this state's defund nonce that pay anyone anything."""
    assets = list(state.asset_ids)
    for asset_id in network.network().assets:  # deposits of an asset nobody credited are paid out too
        if asset_id not in assets and channel_reads.asset_balance(w3, state.channel_address, asset_id) > 0:
            assets.append(asset_id)
    due: list[str] = []
    for asset_id in assets:
        index = state.asset_index(asset_id)
        balance, processed, defund_nonce = (
            ((0, 0), (0, 0), 1)
            if index is None
            else (state.balances[index], state.processed_deposits[index], state.defund_nonces[index])
        )
        if disputes.read_defund_nonce(w3, state.channel_address, asset_id) >= defund_nonce:
            continue
        totals = channel_reads.deposit_totals(w3, state.channel_address, asset_id, block="latest")
        to_node = balance[0] + max(0, totals.node - processed[0])
        to_user = balance[1] + max(0, totals.user - processed[1])
        if to_node or to_user:
            due.append(asset_id)
    return due


def _defund_channel(dispute_id: int, state: ChannelState, w3: Web3) -> None:
    due = _assets_to_defund(state, w3)
    if not due:
        return
    with transaction.atomic():
        dispute = _locked(dispute_id)
        if dispute is None or not _may_send(dispute, Kind.DEFUND_CHANNEL):
            return
        _send(dispute, Kind.DEFUND_CHANNEL, disputes.defund_channel_calldata(w3, state, due), asset_ids=due)


def _kind(transfer: TransferState) -> DefinitionKind | None:
    return network.network().definitions.get(transfer.definition)


def _paying_resolver(channel: Channel, transfer: TransferState, now: int) -> bytes | None:
    """A resolver the node holds that pays this transfer to the node (its responder), checked with the
    definition's own rules at chain time `now`: the node's own record of a later resolve, its open
    proposal, or the resolver of the payment's other side."""
    kind = _kind(transfer)
    if kind is None or kind is DefinitionKind.WITHDRAW or transfer.responder != channel.node_address:
        return None
    transfer_hex = _hex(transfer.transfer_id)
    candidates: list[str] = []
    record = Transfer.objects.filter(transfer_id=transfer_hex).first()
    if record is not None:
        candidates.append(record.encoded_resolver)
        payment = Payment.objects.filter(sender_transfer=record).select_related("receiver_transfer").first()
        if payment is not None and payment.receiver_transfer is not None:
            candidates.append(payment.receiver_transfer.encoded_resolver)
    if channel.pending_update is not None:
        proposal = serialization.update_from_json(channel.pending_update)
        if isinstance(proposal, ResolveUpdate) and proposal.transfer_id == transfer.transfer_id:
            candidates.append(_hex(proposal.encoded_resolver))
    for candidate in candidates:
        if not candidate:
            continue
        resolver = bytes.fromhex(candidate.removeprefix("0x"))
        try:
            payout = definitions.resolve(
                kind,
                transfer.balance,
                transfer.encoded_state,
                resolver,
                chain_id=network.network().chain_id,
                definition=transfer.definition,
                now=now,
            )
        except ProtocolError:
            continue
        if payout[1] > 0:
            return resolver
    return None


def _node_has_stake(channel: Channel, transfer: TransferState, now: int) -> bool:
    """The node locked the funds (a refund is owed to it unless the user resolves), or it can claim them."""
    if transfer.initiator == channel.node_address:
        return True
    return _paying_resolver(channel, transfer, now) is not None


def _dispute_transfers(dispute_id: int, state: ChannelState, w3: Web3, now: int) -> None:
    dispute = Dispute.objects.select_related("channel").get(pk=dispute_id)
    for transfer in state.transfers:
        if not _node_has_stake(dispute.channel, transfer, now):
            continue
        if disputes.read_transfer_dispute(w3, state.channel_address, transfer.transfer_hash).expiry:
            continue  # disputed already (by anyone)
        transfer_hex = _hex(transfer.transfer_id)
        with transaction.atomic():
            locked = _locked(dispute_id)
            if locked is None or not _may_send(locked, Kind.DISPUTE_TRANSFER, transfer_hex):
                continue
            _send(
                locked,
                Kind.DISPUTE_TRANSFER,
                disputes.dispute_transfer_calldata(w3, state, transfer),
                transfer_id=transfer_hex,
            )


def _defund_transfers(dispute_id: int, state: ChannelState, w3: Web3, now: int) -> None:
    dispute = Dispute.objects.select_related("channel").get(pk=dispute_id)
    open_disputes = TransferDispute.objects.filter(
        channel=dispute.channel, status=TransferDispute.Status.DISPUTED
    )
    for record in open_disputes:
        _defund_transfer(dispute_id, dispute.channel, record, state, w3, now)


def _defund_transfer(
    dispute_id: int,
    channel: Channel,
    record: TransferDispute,
    state: ChannelState,
    w3: Web3,
    now: int,
    *,
    resumed: bool = False,
) -> None:
    """Pay out one transfer disputed on chain: to the node with a resolver it holds while the window is
    open, or back to the node after the window when the node locked it."""
    transfer = state.transfer(bytes.fromhex(record.transfer_id[2:]))
    if transfer is None:
        return
    resolver: bytes | None = None
    if now < record.expiry:
        resolver = _paying_resolver(channel, transfer, now)
    elif transfer.initiator == channel.node_address:
        resolver = b""  # the window is over: the lock goes back to the node as it stands
    if resolver is None:
        return
    if disputes.read_transfer_dispute(w3, channel.address, transfer.transfer_hash).defunded:
        return  # the event is on its way
    with transaction.atomic():
        locked = _locked(dispute_id, resumed=resumed)
        if locked is None or not _may_send(locked, Kind.DEFUND_TRANSFER, record.transfer_id):
            return
        _send(
            locked,
            Kind.DEFUND_TRANSFER,
            disputes.defund_transfer_calldata(w3, transfer, resolver),
            transfer_id=record.transfer_id,
        )


def resumed_transfers_advance() -> int:
    """A transfer disputed on chain stays in its channel's state after the channel resumed, until the
    chain pays it out; the node still claims it when it learns the resolver later (the receiver of
    the payment revealed after the round) and takes back its own after the window. Returns how many
    such transfers were looked at."""
    records = list(
        TransferDispute.objects.filter(
            status=TransferDispute.Status.DISPUTED, channel__status=Channel.Status.OPEN
        ).select_related("channel")
    )
    if not records:
        return 0
    w3 = chain.web3()
    now = disputes.chain_time(w3)
    for record in records:
        resumed = (
            Dispute.objects.filter(channel=record.channel, status=Dispute.Status.RESUMED)
            .order_by("-pk")
            .first()
        )
        if resumed is None:
            continue
        try:
            state = channels.latest_state(record.channel)
            _defund_transfer(resumed.pk, record.channel, record, state, w3, now, resumed=True)
        except Exception:
            logger.exception("claiming transfer %s after its channel resumed failed", record.transfer_id)
    return len(records)


def _node_is_paid(dispute: Dispute, state: ChannelState, w3: Web3, now: int) -> bool:
    """Every asset is defunded and every transfer the node has a stake in is paid out."""
    if _assets_to_defund(state, w3):
        return False
    for transfer in state.transfers:
        if not _node_has_stake(dispute.channel, transfer, now):
            continue
        if not disputes.read_transfer_dispute(w3, state.channel_address, transfer.transfer_hash).defunded:
            return False
    return True


def _records_caught_up(channel_address: str, state: ChannelState, w3: Web3) -> bool:
    """The chain watcher has recorded every defund and transfer dispute the chain holds for `state`. The
    resume is built from those records: one made before a `ChannelDefunded` is recorded would reopen the
    channel with balances the chain has already paid out."""
    try:
        onchain = disputes.read_chain_dispute(w3, state, network.network().assets)
    except LookupError:  # a defund nonce stored without its event yet: the chain is mid-way, look again
        return False
    recorded = channels.chain_dispute(channel_address=channel_address)
    if onchain is None or recorded is None:
        return onchain is None
    return (
        all(recorded.defunds.get(asset_id) == defund for asset_id, defund in onchain.defunds.items())
        and onchain.disputed_transfers <= recorded.disputed_transfers
        and onchain.defunded_transfers <= recorded.defunded_transfers
    )


def _conclude(dispute_id: int, state: ChannelState, w3: Web3, now: int) -> None:
    dispute = Dispute.objects.select_related("channel").get(pk=dispute_id)
    paid = _node_is_paid(dispute, state, w3, now)
    assert dispute.defund_expiry is not None
    window_over = now >= dispute.defund_expiry
    if not paid and not window_over:
        return
    if paid and window_over and not _records_caught_up(dispute.channel.address, state, w3):
        logger.info("dispute %s: waiting for the chain watcher to record the payouts", dispute_id)
        return  # the watcher's events schedule the next advance (and the beat runs every round)
    with transaction.atomic():
        locked = _locked(dispute_id)
        if locked is None:
            return
        if paid and locked.status != Status.DEFUNDED:
            locked.status = Status.DEFUNDED
            locked.save(update_fields=["status", "updated_at"])
            _push(locked, "dispute.defunded")
        if not window_over:
            return
        if not paid:
            # Something owed to the node was not paid in this round (the node was down, a step kept
            # failing): a new round with the same state can still pay it; an operator decides.
            if locked.status != Status.MISSED:
                locked.status = Status.MISSED
                locked.save(update_fields=["status", "updated_at"])
                logger.error("dispute %s ended with payouts to the node missing", dispute_id)
            return
        channel = locked.channel
        if _resume_locked(locked, channel):
            locked.status = Status.RESUMED
            locked.save(update_fields=["status", "updated_at"])
            _push(locked, "dispute.resumed")
            logger.info("dispute %s of %s over; the channel resumes", dispute_id, channel.address)
            return
        locked.status = Status.CLOSED
        locked.save(update_fields=["status", "updated_at"])
        channel.status = Channel.Status.CLOSED
        channel.save(update_fields=["status", "updated_at"])
        logger.info("dispute %s of %s closed", dispute_id, channel.address)


# -- after the dispute: the channel continues -----------------------------------------------------------


def resume_update_for(state: ChannelState, dispute: ChainDispute, *, initiator: str) -> ResumeUpdate | None:
    """The resume the chain's record calls for from `state`, or None when there is nothing to follow up
    (or the defunds were of another state: then the channel cannot continue from this one)."""
    defunds = []
    for asset_id in [*state.asset_ids, *sorted(a for a in dispute.defunds if a not in state.asset_ids)]:
        index = state.asset_index(asset_id)
        defund = dispute.defunds.get(asset_id)
        if defund is not None and defund.defund_nonce == (
            state.defund_nonces[index] if index is not None else 1
        ):
            defunds.append(defund)
    dropped = tuple(t.transfer_id for t in state.transfers if t.transfer_hash in dispute.defunded_transfers)
    if not defunds and not dropped:
        return None
    if defunds and dispute.state_hash != state.state_hash:
        return None
    return ResumeUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=initiator,
        defunds=tuple(defunds),
        dropped_transfer_ids=dropped,
    )


def _resume_locked(dispute: Dispute, channel: Channel) -> bool:
    """Open the channel again with the resume proposal (both rows locked by the caller); False when the
    channel cannot continue."""
    state = channels.latest_state(channel)
    if channel.pending_update is not None or dispute.state_hash != _hex(state.state_hash):
        return False
    facts = channels.chain_dispute(channel_address=channel.address)
    if facts is None or facts.state_hash != state.state_hash:
        return False
    update = resume_update_for(state, facts, initiator=channel.node_address)
    try:
        with transaction.atomic():
            channel.status = Channel.Status.OPEN
            channel.save(update_fields=["status", "updated_at"])
            if update is not None:
                channels.propose_locked(channel, update)
    except (ProtocolError, channels.ChannelError) as exc:
        channel.status = Channel.Status.DISPUTED
        logger.error("channel %s cannot resume after its dispute: %s", channel.address, exc)
        return False
    return True


def channel_resume_propose(*, channel_id: int) -> bool:
    """Propose the resume that drops transfers the chain paid out after the channel resumed (or any other
    follow-up the chain's record calls for). Returns whether it proposed."""
    address = Channel.objects.values_list("address", flat=True).get(pk=channel_id)
    if not TransferDispute.objects.filter(channel_id=channel_id).exists():
        return False
    facts = channels.chain_dispute(channel_address=address)  # chain reads before the lock
    if facts is None:
        return False
    with transaction.atomic():
        channel = channels.lock_for_proposal(channel_id)
        if channel is None:
            return False
        update = resume_update_for(channels.latest_state(channel), facts, initiator=channel.node_address)
        if update is None:
            return False
        try:
            channels.propose_locked(channel, update)
        except ProtocolError as exc:
            logger.error("resume of %s refused: %s", address, exc)
            return False
    return True


# -- the node's own disputes ----------------------------------------------------------------------


def dispute_start(*, channel_id: int, reason: str) -> Dispute:
    """Take the channel to the chain with the node's latest doubly signed state (operator action, or the
    node's funds at risk). Starting again while a round is active returns that round."""
    w3 = chain.web3()
    with transaction.atomic():
        channel = Channel.objects.select_for_update().get(pk=channel_id)
        active = _active_dispute(channel)
        if active is not None:
            return active
        if channel_reads.is_deployed(w3, channel.address):
            onchain = disputes.read_dispute(w3, channel.address)
            if disputes.chain_time(w3) < onchain.defund_expiry:
                raise DisputeError(
                    "dispute_in_progress", "The channel is in a dispute on chain; the watcher takes it up."
                )
        deployment = withdrawals.channel_deploy_transaction(channel)
        latest = channels.latest_state(channel)
        dispute = Dispute.objects.create(
            channel=channel,
            status=Status.REQUESTED,
            disputed_by=Dispute.Party.NODE,
            disputer=channel.node_address,
            reason=reason[:300],
            started_nonce=latest.nonce,
            nonce=latest.nonce,
            state_hash=_hex(latest.state_hash),
            state=channel.latest_state,
        )
        _send(dispute, Kind.DISPUTE_CHANNEL, _dispute_with_latest(w3, channel), after=deployment)
        channel.status = Channel.Status.DISPUTED  # frozen off chain from now on
        channel.save(update_fields=["status", "updated_at"])
    logger.info("node disputes channel %s at nonce %s: %s", channel.address, latest.nonce, reason)
    return dispute


def dispute_transaction_settled(*, transaction_id: int) -> None:
    """A dispute transaction settled: take the next step. The node's own dispute that failed before
    reaching the chain gives the channel back (open); every other outcome shows in the chain's events."""
    action = (
        DisputeAction.objects.select_related("dispute", "transaction")
        .filter(transaction_id=transaction_id)
        .first()
    )
    if action is None:
        return
    if action.transaction.status != TxStatus.FAILED:
        dispute_advance(dispute_id=action.dispute_id)
        return
    logger.warning("dispute step %s failed: %s", action.kind, action.transaction.error)
    with transaction.atomic():
        dispute = _locked(action.dispute_id)
        if dispute is None or dispute.status != Status.REQUESTED:
            return
        dispute.status = Status.FAILED
        dispute.save(update_fields=["status", "updated_at"])
        channel = dispute.channel
        if channel.status == Channel.Status.DISPUTED:
            channel.status = Channel.Status.OPEN
            channel.save(update_fields=["status", "updated_at"])


# -- disputes the node must start to not lose money ----------------------------------------------------


def downstream_guard(*, sender_channel_id: int | None = None) -> list[int]:
    """Settle on chain first the receiver side of every routed payment whose sender side has an
    on-chain window running (its channel disputed, or the transfer disputed on chain), unless the
    receiver can no longer reveal in time anyway: the node disputes the receiver's channel, so the
    receiver side's window (shorter by three reactions, `payments.receiver_transfer_timeout`)
    closes before the sender side's can (docs/protocol.md, "Routing windows"). Only `sender_channel_id`'s
    payments when given. Idempotent: the beat runs it every round. Returns the disputes started."""
    senders = Transfer.objects.filter(status=Transfer.Status.ACTIVE, payment_as_sender__isnull=False)
    senders = senders.filter(
        Q(channel__status=Channel.Status.DISPUTED)
        | Q(
            transfer_id__in=TransferDispute.objects.filter(status=TransferDispute.Status.DISPUTED).values(
                "transfer_id"
            )
        )
    )
    if sender_channel_id is not None:
        senders = senders.filter(channel_id=sender_channel_id)
    started: list[int] = []
    now: int | None = None
    for sender in senders.select_related("payment_as_sender__receiver_transfer"):
        payment = sender.payment_as_sender
        downstream = _claimable_downstream(payment)
        if downstream is None or downstream[0].pk in started:
            continue
        receiver_channel, receiver_side = downstream
        window_end = payments.upstream_window_end(sender)
        if window_end is None or _expires_in_time(payment, window_end):
            continue
        now = disputes.chain_time(chain.web3()) if now is None else now
        if now < _dispute_by(window_end, receiver_channel, receiver_side):
            continue  # the sender started its window late: the receiver may still settle off chain
        dispute = _dispute_for_the_node(
            receiver_channel,
            f"payment {payment.payment_id}: its sender side is on chain; the receiver side settles there first",
        )
        if dispute is not None:
            started.append(dispute.pk)
    return started


def _dispute_for_the_node(channel: Channel, reason: str) -> Dispute | None:
    """`dispute_start` for a dispute the node needs; None (logged) when the chain has one in progress."""
    try:
        return dispute_start(channel_id=channel.pk, reason=reason)
    except DisputeError as exc:
        logger.warning("could not dispute %s: %s", channel.address, exc.message)
        return None


def _claimable_downstream(payment: Payment) -> tuple[Channel, int] | None:
    """The receiver's channel, open, and the receiver side's `transferTimeout`, when its user holds the
    node's signature on that side and has not settled it: locked and active, or proposed (the user can
    countersign it alone)."""
    receiver = payment.receiver_transfer
    if receiver is not None:
        channel = Channel.objects.filter(pk=receiver.channel_id, status=Channel.Status.OPEN).first()
        if receiver.status != Transfer.Status.ACTIVE or channel is None:
            return None
        return channel, int(receiver.transfer_state["transferTimeout"])
    if not payment.recipient or payment.status != Payment.Status.FORWARDED:
        return None
    channel = Channel.objects.filter(user_address=payment.recipient, status=Channel.Status.OPEN).first()
    if channel is None or channel.pending_update is None:
        return None
    proposal = serialization.update_from_json(channel.pending_update)
    if isinstance(proposal, CreateUpdate) and _hex(proposal.payment_id) == payment.payment_id:
        return channel, proposal.transfer_timeout
    return None


def _dispute_by(upstream_window_end: int, receiver_channel: Channel, receiver_timeout: int) -> int:
    """The latest chain time the node may send its dispute of the receiver's channel: it lands within R,
    the consensus window and the node's `disputeTransfer` (R) follow, then the receiver's window, and the
    node's upstream claim (R) still lands before the sender side's window closes."""
    dispute_timeout = int(receiver_channel.latest_state["timeout"])
    return upstream_window_end - dispute_timeout - receiver_timeout - 3 * payments.reaction()


def _expires_in_time(payment: Payment, upstream_window_end: int) -> bool:
    """A HashLock whose receiver side expires two reactions before the sender side's window can close:
    the receiver's last reveal on chain is seen and claimed upstream in time without a dispute."""
    if payment.kind != DefinitionKind.HASHLOCK.value:
        return False
    state = serialization.transfer_state_from_json(payment.sender_transfer.transfer_state)
    receiver_expiry = HashLockState.decode(state.encoded_state).expiry - payments.hop_margin()
    return receiver_expiry + 2 * payments.reaction() <= upstream_window_end


def expiring_claims_check() -> list[int]:
    """Start a dispute in every open channel where the node holds a resolver that pays it a HashLock
    whose expiry is near, and the user has not countersigned the resolve: typically the sender side of a
    routed payment whose receiver already revealed the preimage (the node paid downstream), with the
    sender gone silent. The node must be on chain one dispute window (plus time to send) before the
    lock expires. Returns the ids of the disputes started."""
    net = network.network()
    w3 = chain.web3()
    now = disputes.chain_time(w3)
    grace = settings.HASHLOCK_MIN_WINDOW_SECONDS // 2  # the other half is for the transactions themselves
    started: list[int] = []
    disputed_channels: set[int] = set()
    at_risk = (
        Transfer.objects.filter(
            status=Transfer.Status.ACTIVE,
            kind=DefinitionKind.HASHLOCK.value,
            responder=net.node_address,
            channel__status=Channel.Status.OPEN,
        )
        .select_related("channel")
        .order_by("pk")
    )
    for record in at_risk:
        channel = record.channel
        if channel.pk in disputed_channels:
            continue
        transfer = serialization.transfer_state_from_json(record.transfer_state)
        expiry = HashLockState.decode(transfer.encoded_state).expiry
        timeout = int(channel.latest_state["timeout"])
        if now < expiry - timeout - grace or now >= expiry:
            continue
        if _paying_resolver(channel, transfer, now) is None:
            continue
        dispute = _dispute_for_the_node(
            channel, f"hashlock {record.transfer_id} expires at {expiry}; the user has not settled it"
        )
        if dispute is None:
            continue
        started.append(dispute.pk)
        disputed_channels.add(channel.pk)
    return started
