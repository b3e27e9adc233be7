"""The client's own record of its channel: SQLite (a file, or in memory).

It keeps the latest doubly signed state with both signatures (what the user can take to the chain on
its own) and the update the user signed and sent but has not seen answered (so a restart re-sends
exactly that update instead of signing a different one at the same nonce). Every write is one
transaction; the file survives crashes at any point.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from connext.protocol import serialization
from connext.protocol.types import ChannelState, Update

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
"""


@dataclass(frozen=True)
class SignedState:
    """A channel state with the node's and the user's signatures on its hash."""

    state: ChannelState
    node_signature: bytes
    user_signature: bytes


@dataclass(frozen=True)
class PendingUpdate:
    """An update the user signed and sent, not yet answered."""

    update: Update
    signature: bytes


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
