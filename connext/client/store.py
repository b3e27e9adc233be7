"""The client's own record of its channel: SQLite (a file, or in memory).

It keeps the latest doubly signed state with both signatures (what the user can take to the chain on
its own), the update the user signed and sent but has not seen answered (so a restart re-sends
exactly that update instead of signing a different one at the same nonce), and a record of each payment
the user sent or received, with the secret that opens it when the user holds one (a link it created or
redeemed, a preimage decrypted for it), so payments are known and resolvable offline. It also keeps the
channel's setup (its contracts, definitions and assets as the node published them), so a dispute can be
watched and an exit made with only the chain, the key and this file. Every write is one transaction; the
file survives crashes at any point.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
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
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "PRAGMA journal_mode=WAL" if self.path is not None else "PRAGMA journal_mode=MEMORY"
            )
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def latest(self, channel_address: str) -> SignedState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state, node_signature, user_signature FROM channel_state WHERE channel_address = ?",
                (channel_address,),
            ).fetchone()
        if row is None:
            return None
        return SignedState(
            state=serialization.channel_state_from_json(json.loads(row[0])),
            node_signature=bytes.fromhex(row[1][2:]),
            user_signature=bytes.fromhex(row[2][2:]),
        )

    def save_latest(self, signed: SignedState) -> None:
        """Store `signed` as the channel's latest state, and drop a pending update it supersedes."""
        state = signed.state
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO channel_state (channel_address, nonce, state, node_signature, user_signature)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel_address) DO UPDATE SET"
                    " nonce = excluded.nonce, state = excluded.state,"
                    " node_signature = excluded.node_signature, user_signature = excluded.user_signature",
                    (
                        state.channel_address,
                        state.nonce,
                        json.dumps(serialization.channel_state_to_json(state)),
                        serialization.hex_bytes(signed.node_signature),
                        serialization.hex_bytes(signed.user_signature),
                    ),
                )
                self._db.execute(
                    "DELETE FROM pending_update WHERE channel_address = ? AND nonce <= ?",
                    (state.channel_address, state.nonce),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self, channel_address: str) -> PendingUpdate | None:
        with self._lock:
            row = self._db.execute(
                "SELECT update_json, signature FROM pending_update WHERE channel_address = ?",
                (channel_address,),
            ).fetchone()
        if row is None:
            return None
        return PendingUpdate(
            update=serialization.update_from_json(json.loads(row[0])), signature=bytes.fromhex(row[1][2:])
        )

    def save_pending(self, update: Update, signature: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO pending_update (channel_address, nonce, update_json, signature)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (channel_address) DO UPDATE SET"
                " nonce = excluded.nonce, update_json = excluded.update_json, signature = excluded.signature",
                (
                    update.channel_address,
                    update.nonce,
                    json.dumps(serialization.update_to_json(update)),
                    serialization.hex_bytes(signature),
                ),
            )

    def clear_pending(self, channel_address: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pending_update WHERE channel_address = ?", (channel_address,))

    # -- the channel's setup ---------------------------------------------------------------------------

    def save_setup(self, setup: ChannelSetup) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO channel_setup (channel_address, setup) VALUES (?, ?)"
                " ON CONFLICT (channel_address) DO UPDATE SET setup = excluded.setup",
                (setup.channel_address, json.dumps(setup.as_json(), sort_keys=True)),
            )

    def setup(self, channel_address: str | None = None) -> ChannelSetup | None:
        """The setup of `channel_address`; without one, of the store's only channel (None when there are
        none or several)."""
        with self._lock:
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
            row = self._db.execute(_SELECT_PAYMENTS + " WHERE payment_id = ?", (payment_id,)).fetchone()
        return None if row is None else _payment_from_row(row)

    def payments(self, limit: int = 200, *, before: str | None = None) -> list[PaymentRecord]:
        """The user's payments, newest first; with `before` (a payment id), those recorded before it."""
        with self._lock:
            if before is None:
                rows = self._db.execute(
                    _SELECT_PAYMENTS + " ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._db.execute(_SELECT_PAYMENTS_BEFORE, (before, limit)).fetchall()
        return [_payment_from_row(row) for row in rows]

    def payments_with_status(self, status: str) -> list[PaymentRecord]:
        with self._lock:
            rows = self._db.execute(_SELECT_PAYMENTS + " WHERE status = ?", (status,)).fetchall()
        return [_payment_from_row(row) for row in rows]

    def delete_payment(self, payment_id: str) -> None:
        """Forget a payment that never happened (the node refused it, or never took it)."""
        with self._lock:
            self._db.execute("DELETE FROM payment WHERE payment_id = ?", (payment_id,))

    def save_payment(self, record: PaymentRecord) -> PaymentRecord:
        """Insert or replace a payment record; a secret once known is never forgotten. News that
        changes nothing is not written (each write is a synced commit, and the node tells a payment's
        news more than once)."""
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
        with self._lock:
            self._db.execute(
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
        return record
