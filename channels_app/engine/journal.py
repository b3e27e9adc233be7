"""What the owner writes, as SQL over the writer's session (plain psycopg, no Django).

The journal is the channel's update log (`ChannelUpdate`: one row per nonce, the update both parties
signed, the state hash and both signatures; a resume's whole state). Rebuilding a channel means
replaying it (`channels.state_at`). The channel row and the transfer rows are its projections: the
latest state, the open proposal and each transfer's status, for readers (selectors, admin,
dashboard, tasks) and for loading the owner's memory. Both are written in the batch that journals the
state, so a reader never sees one without the other.

Every channel-row write is compare-and-set on what the owner last read or wrote (the nonce and the
open proposal's signature, the channel open and not fenced): while writers outside the owner remain
(a task on the row-lock path), a row that moved under the owner aborts the owner's write instead of
overwriting a state or a proposal someone else signed. The check runs inside the statement
(`engine_expect_rows`, migration 0008), so it holds in a pipeline too, where no result is read
before the commit.
"""

# Tables and columns are this module's constants; every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb

CHANNEL = "channels_app_channel"
UPDATE = "channels_app_channelupdate"
TRANSFER = "channels_app_transfer"
PAYMENT = "channels_app_payment"
DISPUTE = "channels_app_dispute"
TRANSFER_DISPUTE = "channels_app_transferdispute"
REBALANCE_PROFILE = "channels_app_rebalanceprofile"
# Whether the sender's transfer `s` of a payment was proven on chain in a dispute.
_SENDER_DISPUTED = f"EXISTS (SELECT 1 FROM {TRANSFER_DISPUTE} d WHERE d.transfer_id = s.transfer_id)"

# engine_expect_rows' SQLSTATEs: the channel's row moved under its owner (read it again, decide again);
# a row a decision builds on is not as it expected (the decision is refused, `Unexpected`).
STALE = "CX001"
UNEXPECTED = "CX002"

Cursor = psycopg.AsyncCursor[Any]


def moved(error: BaseException | None) -> bool:
    """True when `error` (a failed write's cause) is the compare-and-set refusing a moved row."""
    return isinstance(error, psycopg.Error) and error.sqlstate == STALE


def unexpected(error: BaseException | None) -> bool:
    """True when `error` is a decision's own expectation of a row failing (`expect_one`)."""
    return isinstance(error, psycopg.Error) and error.sqlstate == UNEXPECTED


async def expect_one(cursor: Cursor, update: str, params: tuple[Any, ...], what: str) -> None:
    """Run `update` (an UPDATE ... RETURNING 1) and abort the transaction (`UNEXPECTED`, `what`) unless
    it changed exactly one row: in the statement itself, so it holds in a pipeline."""
    await cursor.execute(
        f"WITH changed AS ({update}) SELECT engine_expect_rows((SELECT count(*) FROM changed), 1, %s, %s)",
        (*params, UNEXPECTED, what),
    )


def constraint_of(error: BaseException | None) -> str | None:
    """The unique constraint a failed write's cause violated, if that is what it was."""
    if isinstance(error, psycopg.errors.UniqueViolation):
        return error.diag.constraint_name
    return None


@dataclass(frozen=True)
class ChannelRow:
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
    last_update: dict[str, Any] | None  # the journal's update at `nonce`, for a re-sent one
    last_user_signature: str | None


_LOAD = f"""
SELECT c.id, c.address, c.user_address, c.node_address, c.status, c.nonce, c.latest_state,
       c.node_signature, c.user_signature, c.pending_update, c.pending_state,
       c.pending_node_signature, c.pending_meta, c.fenced_since, c.fence_min_nonce,
       u.update, u.user_signature
FROM {CHANNEL} c LEFT JOIN {UPDATE} u ON u.channel_id = c.id AND u.nonce = c.nonce
WHERE c.address = %s
"""


async def load_channel(cursor: Cursor, address: str) -> ChannelRow | None:
    await cursor.execute(_LOAD, (address,))
    row = await cursor.fetchone()
    return None if row is None else ChannelRow(*row)


_STORE = f"""
WITH moved AS (
    UPDATE {CHANNEL} SET nonce = %s, latest_state = %s, node_signature = %s, user_signature = %s,
        pending_update = %s, pending_state = %s, pending_node_signature = %s, pending_meta = %s,
        updated_at = now()
    WHERE id = %s AND nonce = %s AND pending_node_signature = %s AND status = 'open'
        AND fenced_since IS NULL
    RETURNING 1
)
SELECT engine_expect_rows((SELECT count(*) FROM moved), 1, 'CX001', %s)
"""


@dataclass(frozen=True)
class Proposal:
    """The node's open proposal as the channel row holds it (JSON as the API shows it)."""

    update: dict[str, Any]
    state: dict[str, Any]
    node_signature: str
    meta: dict[str, Any]


async def store_channel(
    cursor: Cursor,
    *,
    channel_id: int,
    address: str,
    seen_nonce: int,
    seen_proposal_signature: str,
    nonce: int,
    latest_state: dict[str, Any],
    node_signature: str,
    user_signature: str,
    proposal: Proposal | None,
) -> None:
    """The channel row's latest state and open proposal, if it is still at (`seen_nonce`,
    `seen_proposal_signature`), open and not fenced; else the transaction aborts (`RowMoved`'s
    SQLSTATE)."""
    await cursor.execute(
        _STORE,
        (
            nonce,
            Jsonb(latest_state),
            node_signature,
            user_signature,
            None if proposal is None else Jsonb(proposal.update),
            None if proposal is None else Jsonb(proposal.state),
            "" if proposal is None else proposal.node_signature,
            Jsonb({} if proposal is None else proposal.meta),
            channel_id,
            seen_nonce,
            seen_proposal_signature,
            f"channel {address} moved under its owner (it was at nonce {seen_nonce})",
        ),
    )


_APPEND = f"""
INSERT INTO {UPDATE} (channel_id, nonce, kind, initiator, update, state_hash, node_signature,
    user_signature, resumed_state, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
"""


async def append_update(
    cursor: Cursor,
    *,
    channel_id: int,
    nonce: int,
    kind: str,
    initiator: str,
    update: dict[str, Any],
    state_hash: str,
    node_signature: str,
    user_signature: str,
    resumed_state: dict[str, Any] | None = None,
) -> None:
    """Journal one doubly signed state's update (one per nonce: the table's unique constraint)."""
    await cursor.execute(
        _APPEND,
        (
            channel_id,
            nonce,
            kind,
            initiator,
            Jsonb(update),
            state_hash,
            node_signature,
            user_signature,
            None if resumed_state is None else Jsonb(resumed_state),
        ),
    )


_INSERT_TRANSFER = f"""
INSERT INTO {TRANSFER} (channel_id, transfer_id, payment_id, kind, definition, initiator, responder,
    asset_id, amount, status, transfer_state, meta, encoded_resolver, created_nonce, created_at,
    updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'active', %s, %s, '', %s, now(), now())
"""


async def insert_transfer(
    cursor: Cursor,
    *,
    channel_id: int,
    transfer_id: str,
    payment_id: str,
    kind: str,
    definition: str,
    initiator: str,
    responder: str,
    asset_id: str,
    amount: int,
    transfer_state: dict[str, Any],
    meta: dict[str, Any],
    created_nonce: int,
) -> None:
    await cursor.execute(
        _INSERT_TRANSFER,
        (
            channel_id,
            transfer_id,
            payment_id,
            kind,
            definition,
            initiator,
            responder,
            asset_id,
            amount,
            Jsonb(transfer_state),
            Jsonb(meta),
            created_nonce,
        ),
    )


_RESOLVE_TRANSFER = f"""
UPDATE {TRANSFER} SET status = %s, encoded_resolver = %s, resolved_nonce = %s, updated_at = now()
WHERE transfer_id = %s
"""


async def resolve_transfer(
    cursor: Cursor, *, transfer_id: str, status: str, encoded_resolver: str, resolved_nonce: int
) -> None:
    await cursor.execute(_RESOLVE_TRANSFER, (status, encoded_resolver, resolved_nonce, transfer_id))


# -- reads of the projections a payment's decision needs ------------------------------------------------


@dataclass(frozen=True)
class PaymentRow:
    """A payment as its row reads, with what its JSON shows of its two transfers."""

    payment_id: str
    kind: str
    sender: str
    recipient: str
    asset_id: str
    amount: int
    status: str
    failure: str
    created_at: datetime
    updated_at: datetime
    sender_status: str
    sender_meta: dict[str, Any]
    receiver_status: str | None
    sender_disputed: bool  # its sender side proven on chain: settled against the chain's record


async def payment_rows(cursor: Cursor, payment_ids: list[str]) -> list[PaymentRow]:
    await cursor.execute(
        f"SELECT p.payment_id, p.kind, p.sender, p.recipient, p.asset_id, p.amount, p.status, p.failure,"
        f" p.created_at, p.updated_at, s.status, s.meta, r.status,"
        f" {_SENDER_DISPUTED} FROM {PAYMENT} p"
        f" JOIN {TRANSFER} s ON s.id = p.sender_transfer_id LEFT JOIN {TRANSFER} r ON r.id = p.receiver_transfer_id"
        " WHERE p.payment_id = ANY(%s)",
        (payment_ids,),
    )
    return [
        PaymentRow(
            payment_id=row[0],
            kind=row[1],
            sender=row[2],
            recipient=row[3],
            asset_id=row[4],
            amount=int(row[5]),
            status=row[6],
            failure=row[7],
            created_at=row[8],
            updated_at=row[9],
            sender_status=row[10],
            sender_meta=row[11],
            receiver_status=row[12],
            sender_disputed=bool(row[13]),
        )
        for row in await cursor.fetchall()
    ]


async def transfer_disputed(cursor: Cursor, transfer_id: str) -> bool:
    """Whether the transfer was proven on chain in a dispute (its resolve is checked against it)."""
    await cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {TRANSFER_DISPUTE} WHERE transfer_id = %s)", (transfer_id,)
    )
    row = await cursor.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Upstream:
    """The sender side of the payment a receiver's transfer belongs to, and whether a window on chain
    may run for it (its transfer or its channel disputed)."""

    kind: str
    sender_status: str
    on_chain: bool
    sender: str


async def upstream_of(cursor: Cursor, channel_address: str, receiver_transfer_id: str) -> Upstream | None:
    """The sender side of the payment whose receiver side is `receiver_transfer_id`: stored, or created
    by the node's open proposal in the channel (answered and resolved in one request; the row-lock
    path's `payments.check_downstream_resolve` reads the same)."""
    await cursor.execute(
        f"SELECT p.kind, s.status, p.sender,"
        f" {_SENDER_DISPUTED}"
        f" OR EXISTS (SELECT 1 FROM {DISPUTE} d WHERE d.channel_id = s.channel_id AND d.consensus_expiry IS NOT NULL)"
        f" FROM {PAYMENT} p JOIN {TRANSFER} s ON s.id = p.sender_transfer_id WHERE p.id = COALESCE("
        f"(SELECT id FROM {PAYMENT} WHERE receiver_transfer_id = (SELECT id FROM {TRANSFER} WHERE transfer_id = %s)),"
        f" (SELECT q.id FROM {PAYMENT} q, {CHANNEL} c, jsonb_array_elements(c.pending_state->'transfers') t"
        " WHERE c.address = %s AND t->>'transferId' = %s AND t->>'initiator' = c.pending_state->>'node'"
        " AND t->>'responder' = c.pending_state->>'user' AND q.payment_id = t->>'paymentId'"
        " AND q.receiver_transfer_id IS NULL AND lower(q.recipient) = lower(c.user_address)))",
        (receiver_transfer_id, channel_address, receiver_transfer_id),
    )
    row = await cursor.fetchone()
    return None if row is None else Upstream(str(row[0]), str(row[1]), bool(row[3]), str(row[2]))


async def expect_decided(cursor: Cursor, payment_id: str, receiver_transfer_id: str, nonce: int) -> None:
    """The guard of a sender side settled with its receiver's decision (a companion proposal): the
    receiver's transfer resolved at `nonce` (the decision committed), the sender's still active and
    not disputed on chain; else the transaction aborts (`Unexpected`)."""
    await expect_one(
        cursor,
        f"SELECT 1 FROM {PAYMENT} p JOIN {TRANSFER} r ON r.id = p.receiver_transfer_id"
        f" JOIN {TRANSFER} s ON s.id = p.sender_transfer_id WHERE p.payment_id = %s AND r.transfer_id = %s"
        f" AND r.resolved_nonce = %s AND s.status = 'active' AND NOT {_SENDER_DISPUTED}",
        (payment_id, receiver_transfer_id, nonce),
        f"payment {payment_id} is not decided at nonce {nonce} with its sender side open",
    )


@dataclass(frozen=True)
class NextProposal:
    """What waits for a proposal in a channel whose proposal was just answered, in
    `payments_follow_up(channel_freed=...)`'s order: first the oldest sender side in it that may be
    decided (`settle`, the id of its payment, with `decision` when its receiver decided it: anything
    else, a failed payment, a HashLock, a link, is the row-lock path's), else the oldest payment
    waiting to be forwarded to the channel's user (its `forward` facts)."""

    settle: str | None = None
    decision: Decision | None = None
    forward: ForwardFacts | None = None


async def next_proposal(cursor: Cursor, channel_id: int, user: str) -> NextProposal | None:
    """What waits for a proposal in the channel (`NextProposal`), or None: nothing. One statement:
    it runs on every answer to a proposal, mostly to find nothing."""
    await cursor.execute(
        "SELECT u.payment_id, u.kind, u.sender, u.receiver_status, u.encoded_resolver, u.disputed,"
        f" f.* FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT p.payment_id, p.kind, p.sender,"
        f" r.status AS receiver_status, r.encoded_resolver, {_SENDER_DISPUTED} AS disputed"
        f" FROM {PAYMENT} p JOIN {TRANSFER} s ON s.id = p.sender_transfer_id"
        f" LEFT JOIN {TRANSFER} r ON r.id = p.receiver_transfer_id"
        " WHERE s.channel_id = %s AND s.status = 'active' AND (r.status IN ('resolved', 'cancelled')"
        " OR p.status = 'failed' OR p.kind = 'hashlock' OR (p.recipient = '' AND p.status = 'pending'))"
        " ORDER BY p.id LIMIT 1) u ON true"
        f" LEFT JOIN LATERAL (SELECT {_FORWARD_COLUMNS} FROM {PAYMENT} p {_FORWARD_JOINS}"
        " WHERE p.recipient = %s AND p.status = 'pending' ORDER BY p.id LIMIT 1) f ON true",
        (channel_id, user),
    )
    row = await cursor.fetchone()
    assert row is not None  # one row always (the LEFT JOINs' NULLs when nothing waits)
    if row[0] is not None:
        decision = None
        if row[3] in ("resolved", "cancelled"):
            decision = Decision(row[1], row[2], row[3] == "resolved", row[4] or "", bool(row[5]))
        return NextProposal(settle=str(row[0]), decision=decision)
    if row[6] is None:
        return None
    return NextProposal(forward=_forward_facts(row[6:]))


async def rebalance_profiles(cursor: Cursor, channel_id: int) -> dict[str, tuple[int, int, int]]:
    """The channel's operator-set profiles by asset, as `collateral.rebalance_profiles` reads them."""
    await cursor.execute(
        f"SELECT asset_id, collateralize_threshold, target, reclaim_threshold FROM {REBALANCE_PROFILE}"
        " WHERE channel_id = %s",
        (channel_id,),
    )
    return {str(row[0]): (int(row[1]), int(row[2]), int(row[3])) for row in await cursor.fetchall()}


@dataclass(frozen=True)
class ForwardFacts:
    """What the forward of a pending payment is made from, as stored: the sender's side (its
    transfer state and the meta its creator sent), the recipient, the sender channel's timeout."""

    transfer_state: dict[str, Any]
    meta: dict[str, Any]
    recipient: str
    sender_channel_timeout: int
    # False: not the engine's to forward. The sender side is no longer active (the row-lock path
    # refunds the payment), or its channel is in dispute or the transfer was disputed on chain (it
    # fails the payment: the node must not pay downstream what it might not claim upstream,
    # docs/protocol.md "Routing windows", rule 4).
    ready: bool = True


_FORWARD_COLUMNS = (
    "s.transfer_state, s.meta, p.recipient, c.latest_state->>'timeout' AS channel_timeout,"
    f" s.status AS sender_status, c.status AS channel_status, {_SENDER_DISPUTED} AS disputed"
)
_FORWARD_JOINS = f"JOIN {TRANSFER} s ON s.id = p.sender_transfer_id JOIN {CHANNEL} c ON c.id = s.channel_id"


def _forward_facts(row: Sequence[Any]) -> ForwardFacts:
    """The facts of `_FORWARD_COLUMNS`' row."""
    ready = row[4] == "active" and row[5] == "open" and not row[6]
    return ForwardFacts(row[0], row[1] or {}, row[2], int(row[3]), ready)


async def forward_facts(cursor: Cursor, payment_id: str) -> ForwardFacts | None:
    """The facts of a payment still waiting to be forwarded (`pending`, to a recipient), or None."""
    await cursor.execute(
        f"SELECT {_FORWARD_COLUMNS} FROM {PAYMENT} p {_FORWARD_JOINS}"
        " WHERE p.payment_id = %s AND p.status = 'pending' AND p.recipient <> ''",
        (payment_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else _forward_facts(row)


@dataclass(frozen=True)
class Decision:
    """What a payment's receiver decided, as stored: paid (its side resolved, with this resolver) or
    refused (cancelled)."""

    kind: str
    sender: str
    paid: bool
    resolver: str
    sender_disputed: bool


async def receiver_decision(cursor: Cursor, payment_id: str) -> Decision | None:
    """The stored decision of a payment's receiver while its sender side is open, or None."""
    await cursor.execute(
        f"SELECT p.kind, p.sender, r.status, r.encoded_resolver,"
        f" {_SENDER_DISPUTED} FROM {PAYMENT} p"
        f" JOIN {TRANSFER} s ON s.id = p.sender_transfer_id JOIN {TRANSFER} r ON r.id = p.receiver_transfer_id"
        " WHERE p.payment_id = %s AND s.status = 'active' AND r.status IN ('resolved', 'cancelled')",
        (payment_id,),
    )
    row = await cursor.fetchone()
    return None if row is None else Decision(row[0], row[1], row[2] == "resolved", row[3] or "", bool(row[4]))
