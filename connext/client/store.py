"""The client's own record of its channel: SQLite (a file, or in memory).

It keeps the latest doubly signed state with both signatures (what the user can take to the chain on
its own), the update the user signed and sent but has not seen answered (so a restart re-sends
exactly that update instead of signing a different one at the same nonce), and a record of each payment
the user sent or received, with the secret that opens it when the user holds one (a link it created or
redeemed, a preimage decrypted for it), so payments are known and resolvable offline. It also keeps the
channel's setup (its contracts, definitions and assets as the node published them), so a dispute can be
watched and an exit made with only the chain, the key and this file.

Durability (docs/protocol.md, "The client's store"): no signature leaves the client before the write that
holds it is on disk. The update the user signed and is about to send, and the node's proposal the user
countersigned (with both signatures) before that countersignature is sent, commit synced
(`synchronous=FULL`): one fsync per request that carries the user's signatures, which also makes every
earlier write durable (the WAL is written in order). So do a retracted update (`clear_pending`) and a
latest state that gives the user more than the one before it. Everything else is batched: written
with the next transaction, or in one of its own BATCH_SECONDS later on the client's event loop, unsynced
(`synchronous=NORMAL` in WAL). A crash of the process can drop that batch, an OS crash or power loss the
tail since the last synced commit: other states (the file still holds the pending update or the
countersigned proposal they came from), payment records and the setup, which the client learns again
from the node at the next sync.

The latest state, the pending update, the countersigned proposal and recently used payment records are
kept in memory once read or written: a synced write once its commit returned, a batched one at once; a
transaction that fails empties the memory of what it held (the batch). A commit by another connection
to the file (another process) empties that memory too, seen before the next write and within
FRESH_SECONDS by reads.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connext.protocol import serialization
from connext.protocol.types import ChannelState, DefinitionKind, Update

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channel_state (
    channel_address TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    state TEXT NOT NULL,
    node_signature TEXT NOT NULL,
    user_signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_update (
    channel_address TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    update_json TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS countersigned (
    channel_address TEXT PRIMARY KEY,
    nonce INTEGER NOT NULL,
    state TEXT NOT NULL,
    node_signature TEXT NOT NULL,
    user_signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payment (
    payment_id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    status TEXT NOT NULL,
    failure TEXT NOT NULL DEFAULT '',
    secret TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS channel_setup (
    channel_address TEXT PRIMARY KEY,
    setup TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SignedState:
    """A channel state with the node's and the user's signatures on its hash."""

    state: ChannelState
    node_signature: bytes
    user_signature: bytes


@dataclass(frozen=True)
class ChannelSetup:
    """What acting on chain without the node needs: the channel's parties and chain, the factory that
    deploys it, the transfer definitions by address and the assets the node serves."""

    channel_address: str
    chain_id: int
    node: str
    user: str
    factory: str
    definitions: dict[str, DefinitionKind]
    assets: tuple[str, ...]
    chain_rpc_url: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "channelAddress": self.channel_address,
            "chainId": self.chain_id,
            "node": self.node,
            "user": self.user,
            "factory": self.factory,
            "definitions": {address: kind.value for address, kind in self.definitions.items()},
            "assets": list(self.assets),
            "chainRpcUrl": self.chain_rpc_url,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ChannelSetup:
        return cls(
            channel_address=str(value["channelAddress"]),
            chain_id=int(value["chainId"]),
            node=str(value["node"]),
            user=str(value["user"]),
            factory=str(value["factory"]),
            definitions={str(a): DefinitionKind(k) for a, k in dict(value["definitions"]).items()},
            assets=tuple(str(a) for a in value["assets"]),
            chain_rpc_url=str(value.get("chainRpcUrl", "")),
        )


@dataclass(frozen=True)
class PendingUpdate:
    """An update the user signed and sent, not yet answered."""

    update: Update
    signature: bytes


SENDING = "sending"  # an outgoing payment sent whose answer the client has not seen: its outcome is unknown


@dataclass(frozen=True)
class PaymentRecord:
    """What the client knows of one payment of its user. `direction` is `outgoing` or `incoming`;
    `status` uses the node's words (pending, forwarded, completed, refunded, failed), or `sending`
    for an outgoing one recorded before it was sent and not answered yet; `secret` is the preimage
    when the user holds it (never shown in `as_json`)."""

    payment_id: str
    direction: str
    kind: str
    sender: str
    recipient: str
    asset_id: str
    amount: int
    status: str
    failure: str = ""
    secret: bytes = b""
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "paymentId": self.payment_id,
            "direction": self.direction,
            "kind": self.kind,
            "sender": self.sender,
            "recipient": self.recipient or None,
            "assetId": self.asset_id,
            "amount": self.amount,
            "status": self.status,
            "failure": self.failure or None,
            "meta": {key: value for key, value in self.meta.items() if key != "encryptedPreimage"},
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


_SELECT_PAYMENTS = (
    "SELECT payment_id, direction, kind, sender, recipient, asset_id, amount, status, failure, secret,"
    " meta, created_at, updated_at FROM payment"
)
_SELECT_PAYMENTS_BEFORE = (
    "SELECT payment_id, direction, kind, sender, recipient, asset_id, amount, status, failure, secret,"
    " meta, created_at, updated_at FROM payment"
    " WHERE (created_at, rowid) < (SELECT created_at, rowid FROM payment WHERE payment_id = ?)"
    " ORDER BY created_at DESC, rowid DESC LIMIT ?"
)
_SAVE_PAYMENT = (
    "INSERT OR REPLACE INTO payment (payment_id, direction, kind, sender, recipient, asset_id, amount,"
    " status, failure, secret, meta, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _payment_from_row(row: tuple[Any, ...]) -> PaymentRecord:
    return PaymentRecord(
        payment_id=row[0],
        direction=row[1],
        kind=row[2],
        sender=row[3],
        recipient=row[4],
        asset_id=row[5],
        amount=int(row[6]),
        status=row[7],
        failure=row[8],
        secret=bytes.fromhex(row[9]),
        meta=json.loads(row[10]),
        created_at=row[11],
        updated_at=row[12],
    )


PAYMENTS_KEPT = 4096  # payment records kept in memory (the most recently used)
BATCH_SECONDS = 0.05  # how long a batched write waits for a transaction before the loop's timer writes it
FRESH_SECONDS = 0.1  # a read looks for another connection's commit at most this often (each write does)


def _gives_user_more(previous: ChannelState | None, new: ChannelState) -> bool:
    """`new` gives the user a higher balance than `previous` in some asset: losing it would cost the
    user what only this state proves (the node's signature on it)."""
    for index, asset_id in enumerate(new.asset_ids):
        before = 0
        if previous is not None:
            held = previous.asset_index(asset_id)
            before = previous.balances[held][1] if held is not None else 0
        if new.balances[index][1] > before:
            return True
    return False


def _signed_row(row: tuple[Any, ...]) -> SignedState:
    return SignedState(
        state=serialization.channel_state_from_json(json.loads(row[0])),
        node_signature=bytes.fromhex(row[1][2:]),
        user_signature=bytes.fromhex(row[2][2:]),
    )


def _signed_values(signed: SignedState) -> tuple[str, int, str, str, str]:
    state = signed.state
    return (
        state.channel_address,
        state.nonce,
        json.dumps(serialization.channel_state_to_json(state)),
        serialization.hex_bytes(signed.node_signature),
        serialization.hex_bytes(signed.user_signature),
    )


logger = logging.getLogger("connext.client")

_MISSING: Any = object()  # not read yet (None is a read that found nothing)


class Store:
    """The latest signed state and the pending update of each channel (one per client, in practice)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from whichever thread runs the client; the lock serialises access.
        self._db = sqlite3.connect(
            ":memory:" if self.path is None else str(self.path), check_same_thread=False, isolation_level=None
        )
        self._lock = threading.RLock()
        self._batch: list[tuple[str, tuple[Any, ...]]] = []  # news written to memory, not to the file yet
        self._batch_since = 0.0
        self._later: Callable[[float, Callable[[], None]], object] | None = None
        self._closed = False
        self._checked_at = 0.0
        self._synchronous = ""
        self.commits = 0  # transactions committed by this store, and how many of them synced
        self.synced_commits = 0
        self._latest: dict[str, SignedState | None] = {}
        self._pending: dict[str, PendingUpdate | None] = {}
        self._countersigned: dict[str, SignedState | None] = {}
        self._payments: OrderedDict[str, PaymentRecord | None] = OrderedDict()
        with self._lock:
            self._db.execute(
                "PRAGMA journal_mode=WAL" if self.path is not None else "PRAGMA journal_mode=MEMORY"
            )
            self._db.executescript(_SCHEMA)
            self._data_version = self._read_data_version()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._commit_batch()
            finally:
                self._db.close()

    def flush(self) -> None:
        """Commit the batched writes now (unsynced)."""
        with self._lock:
            if not self._closed:
                self._commit_batch()

    def flush_with(self, later: Callable[[float, Callable[[], None]], object]) -> None:
        """Commit each batch BATCH_SECONDS after it began by `later(delay, callback)` (the client's
        event loop, thread-safe). Without it a batch waits for the next transaction, a read of the
        file, a store call after its time, `flush()` or `close()`."""
        self._later = later

    # -- transactions and memory ----------------------------------------------------------------------

    @contextmanager
    def _write(self, *, synced: bool) -> Iterator[sqlite3.Connection]:
        """One transaction (the caller holds the lock); committed with an fsync when `synced`. The
        caller changes the memory after this block, still under the lock: a write that raises leaves
        the memory as the file is."""
        self._forget_if_changed(writing=True)
        wanted = "FULL" if synced else "NORMAL"
        if wanted != self._synchronous:  # set between transactions: it applies to the next commit
            self._db.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement, values in self._batch:  # the batch goes first, in the order it was written
                self._db.execute(statement, values)
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if self._batch:  # the memory held the batch: it is the file's again
                self._batch.clear()
                self._forget()
            raise
        self._batch.clear()
        self.commits += 1
        self.synced_commits += synced

    def _add_to_batch(self, statement: str, values: tuple[Any, ...]) -> None:
        """Write `statement` with the next transaction, or BATCH_SECONDS later (the caller holds the
        lock and changes the memory as if it were written)."""
        if not self._batch:
            self._batch_since = time.monotonic()
            if self._later is not None:
                self._later(BATCH_SECONDS, self._flush_due)
        self._batch.append((statement, values))

    def _commit_batch(self) -> None:
        if self._batch:
            with self._write(synced=False):
                pass

    def _commit_batch_if_due(self) -> None:
        if self._batch and time.monotonic() - self._batch_since >= BATCH_SECONDS:
            self._commit_batch()

    def _flush_due(self) -> None:
        with self._lock:
            try:
                if not self._closed:
                    self._commit_batch_if_due()
            except (sqlite3.Error, ValueError) as exc:
                logger.warning("the store could not write its batch: %r; trying again", exc)
                if self._batch and self._later is not None:
                    # Kept (the file was locked): tried again on a timer of its own, rather than
                    # whenever the next store call comes. (A batch not due yet has its own timer.)
                    self._later(BATCH_SECONDS, self._flush_due)

    def _read_data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _forget_if_changed(self, *, writing: bool = False) -> None:
        """Empty the memory when another connection committed to the file since it was filled (its
        batch written first, on top). Before a write always; before a read at most every
        FRESH_SECONDS (the PRAGMA costs more than the read it guards)."""
        if self.path is None:
            return
        now = time.monotonic()
        if not writing and now - self._checked_at < FRESH_SECONDS:
            self._commit_batch_if_due()
            return
        self._checked_at = now
        version = self._read_data_version()
        if version == self._data_version:
            return
        self._data_version = version
        self._commit_batch()
        self._forget()

    def _forget(self) -> None:
        self._latest.clear()
        self._pending.clear()
        self._countersigned.clear()
        self._payments.clear()

    # -- the channel's states ------------------------------------------------------------------------

    def latest(self, channel_address: str) -> SignedState | None:
        with self._lock:
            self._forget_if_changed()
            known = self._latest.get(channel_address, _MISSING)
            if known is not _MISSING:
                return known  # type: ignore[no-any-return]
            row = self._db.execute(
                "SELECT state, node_signature, user_signature FROM channel_state WHERE channel_address = ?",
                (channel_address,),
            ).fetchone()
            signed = None if row is None else _signed_row(row)
            self._latest[channel_address] = signed
            return signed

    def save_latest(self, signed: SignedState) -> None:
        """Store `signed` as the channel's latest state, and drop the pending update and countersigned
        proposal it supersedes. Synced when it gives the user more than the latest state before it and
        the file does not hold it already (as the countersigned proposal, written before the user's
        countersignature was sent); else batched: until it is written the file holds the pending update
        the node answers again, or the countersigned proposal, and the node shows the state again."""
        state = signed.state
        address = state.channel_address
        with self._lock:
            held = self.countersigned(address)
            before = self.latest(address)
            already_durable = (
                held is not None
                and held.state.nonce == state.nonce
                and (held.node_signature, held.user_signature)
                == (signed.node_signature, signed.user_signature)
            )
            statements = [
                (
                    "INSERT INTO channel_state (channel_address, nonce, state, node_signature, user_signature)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_address) DO UPDATE SET"
                    " nonce = excluded.nonce, state = excluded.state,"
                    " node_signature = excluded.node_signature, user_signature = excluded.user_signature",
                    _signed_values(signed),
                ),
                (
                    "DELETE FROM pending_update WHERE channel_address = ? AND nonce <= ?",
                    (address, state.nonce),
                ),
                (
                    "DELETE FROM countersigned WHERE channel_address = ? AND nonce <= ?",
                    (address, state.nonce),
                ),
            ]
            if not already_durable and _gives_user_more(before.state if before else None, state):
                with self._write(synced=True) as db:
                    for statement, values in statements:
                        db.execute(statement, values)
            else:  # lost, the file still holds what brings it back: the pending update, the proposal
                for statement, values in statements:
                    self._add_to_batch(statement, values)
            self._latest[address] = signed
            pending = self._pending.get(address)
            if pending is not None and pending.update.nonce <= state.nonce:
                self._pending[address] = None
            if held is not None and held.state.nonce <= state.nonce:
                self._countersigned[address] = None

    def pending(self, channel_address: str) -> PendingUpdate | None:
        with self._lock:
            self._forget_if_changed()
            known = self._pending.get(channel_address, _MISSING)
            if known is not _MISSING:
                return known  # type: ignore[no-any-return]
            row = self._db.execute(
                "SELECT update_json, signature FROM pending_update WHERE channel_address = ?",
                (channel_address,),
            ).fetchone()
            pending = (
                None
                if row is None
                else PendingUpdate(
                    update=serialization.update_from_json(json.loads(row[0])),
                    signature=bytes.fromhex(row[1][2:]),
                )
            )
            self._pending[channel_address] = pending
            return pending

    def save_pending(self, update: Update, signature: bytes, *, answered: SignedState | None = None) -> None:
        """Keep the user's own update, signed and about to be sent, synced: a restart sends exactly it
        again instead of signing another state at its nonce. `answered`: the node's proposal the same
        request countersigns, kept in the same transaction (`save_countersigned`)."""
        update_json = json.dumps(serialization.update_to_json(update))
        with self._lock:
            with self._write(synced=True) as db:
                if answered is not None:
                    self._insert_countersigned(db, answered)
                db.execute(
                    "INSERT INTO pending_update (channel_address, nonce, update_json, signature)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (channel_address) DO UPDATE SET"
                    " nonce = excluded.nonce, update_json = excluded.update_json,"
                    " signature = excluded.signature",
                    (update.channel_address, update.nonce, update_json, serialization.hex_bytes(signature)),
                )
            if answered is not None:
                self._countersigned[answered.state.channel_address] = answered
            self._pending[update.channel_address] = PendingUpdate(update, signature)

    def clear_pending(self, channel_address: str) -> None:
        """Forget the update left unanswered (the node refused it, or it can no longer apply). Synced:
        the user may be told it failed, and a restart must not send it again."""
        with self._lock:
            with self._write(synced=True) as db:
                db.execute("DELETE FROM pending_update WHERE channel_address = ?", (channel_address,))
            self._pending[channel_address] = None

    def countersigned(self, channel_address: str) -> SignedState | None:
        """The node's proposal the user countersigned and sent (or is about to) whose state the store
        does not hold as the latest yet, with the node's and the user's signatures."""
        with self._lock:
            self._forget_if_changed()
            known = self._countersigned.get(channel_address, _MISSING)
            if known is not _MISSING:
                return known  # type: ignore[no-any-return]
            row = self._db.execute(
                "SELECT state, node_signature, user_signature FROM countersigned WHERE channel_address = ?",
                (channel_address,),
            ).fetchone()
            signed = None if row is None else _signed_row(row)
            self._countersigned[channel_address] = signed
            return signed

    def save_countersigned(self, signed: SignedState) -> None:
        """Keep the node's proposal the user countersigned, synced, before the countersignature is sent:
        after a crash the client knows the state it signed at that nonce and signs no other there."""
        with self._lock:
            with self._write(synced=True) as db:
                self._insert_countersigned(db, signed)
            self._countersigned[signed.state.channel_address] = signed

    @staticmethod
    def _insert_countersigned(db: sqlite3.Connection, signed: SignedState) -> None:
        db.execute(
            "INSERT INTO countersigned (channel_address, nonce, state, node_signature, user_signature)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_address) DO UPDATE SET"
            " nonce = excluded.nonce, state = excluded.state,"
            " node_signature = excluded.node_signature, user_signature = excluded.user_signature",
            _signed_values(signed),
        )

    # -- the channel's setup ---------------------------------------------------------------------------

    def save_setup(self, setup: ChannelSetup) -> None:
        with self._lock:
            self._add_to_batch(
                "INSERT INTO channel_setup (channel_address, setup) VALUES (?, ?)"
                " ON CONFLICT (channel_address) DO UPDATE SET setup = excluded.setup",
                (setup.channel_address, json.dumps(setup.as_json(), sort_keys=True)),
            )

    def setup(self, channel_address: str | None = None) -> ChannelSetup | None:
        """The setup of `channel_address`; without one, of the store's only channel (None when there are
        none or several)."""
        with self._lock:
            self._commit_batch()
            if channel_address is None:
                rows = self._db.execute("SELECT setup FROM channel_setup LIMIT 2").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT setup FROM channel_setup WHERE channel_address = ?", (channel_address,)
                ).fetchall()
        if len(rows) != 1:
            return None
        return ChannelSetup.from_json(json.loads(rows[0][0]))

    # -- payments -------------------------------------------------------------------------------------

    def payment(self, payment_id: str) -> PaymentRecord | None:
        with self._lock:
            self._forget_if_changed()
            known = self._payments.get(payment_id, _MISSING)
            if known is not _MISSING:
                self._payments.move_to_end(payment_id)
                return known  # type: ignore[no-any-return]
            row = self._db.execute(_SELECT_PAYMENTS + " WHERE payment_id = ?", (payment_id,)).fetchone()
            record = None if row is None else _payment_from_row(row)
            self._keep_payment(payment_id, record)
            return record

    def _keep_payment(self, payment_id: str, record: PaymentRecord | None) -> None:
        self._payments[payment_id] = record
        self._payments.move_to_end(payment_id)
        if len(self._payments) > PAYMENTS_KEPT:
            self._payments.popitem(last=False)

    def payments(self, limit: int = 200, *, before: str | None = None) -> list[PaymentRecord]:
        """The user's payments, newest first; with `before` (a payment id), those recorded before it."""
        with self._lock:
            self._commit_batch()
            if before is None:
                rows = self._db.execute(
                    _SELECT_PAYMENTS + " ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._db.execute(_SELECT_PAYMENTS_BEFORE, (before, limit)).fetchall()
        return [_payment_from_row(row) for row in rows]

    def payments_with_status(self, status: str) -> list[PaymentRecord]:
        with self._lock:
            self._commit_batch()
            rows = self._db.execute(_SELECT_PAYMENTS + " WHERE status = ?", (status,)).fetchall()
        return [_payment_from_row(row) for row in rows]

    def delete_payment(self, payment_id: str) -> None:
        """Forget a payment that never happened (the node refused it, or never took it)."""
        with self._lock:
            self._add_to_batch("DELETE FROM payment WHERE payment_id = ?", (payment_id,))
            self._keep_payment(payment_id, None)

    def save_payment(self, record: PaymentRecord) -> PaymentRecord:
        """Insert or replace a payment record; a secret once known is never forgotten. News that
        changes nothing is not written (the node tells a payment's news more than once). Unsynced: a
        record a signature depends on (the create of the user's payment, the secret its resolve
        reveals) is written before that signature's synced commit, which makes it durable too."""
        with self._lock:
            now = time.time()
            existing = self.payment(record.payment_id)
            record = replace(
                record,
                secret=record.secret or (existing.secret if existing is not None else b""),
                created_at=existing.created_at if existing is not None else (record.created_at or now),
                updated_at=now,
            )
            if existing is not None and replace(record, updated_at=existing.updated_at) == existing:
                return existing
            self._add_to_batch(
                _SAVE_PAYMENT,
                (
                    record.payment_id,
                    record.direction,
                    record.kind,
                    record.sender,
                    record.recipient,
                    record.asset_id,
                    str(record.amount),
                    record.status,
                    record.failure,
                    record.secret.hex(),
                    json.dumps(record.meta, sort_keys=True),
                    record.created_at,
                    record.updated_at,
                ),
            )
            self._keep_payment(record.payment_id, record)
        return record
