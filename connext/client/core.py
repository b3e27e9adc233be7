"""What every part of one client shares: who the user is, the node's configuration, the latest doubly
signed state, the store, the events, the lock its signing exchanges run under, and its background work.

The session fills it in when it connects (the latest state from the store); after that only the
exchange changes the latest state. Waits here (`wait_state`, `next_change`) hold no lock.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from connext.client import arguments
from connext.client.disputes import ChannelDisputes
from connext.client.events import EventBus
from connext.client.node_api import NodeApi
from connext.client.onchain import UserChain
from connext.client.store import ChannelSetup, Store
from connext.client.store import SignedState as SignedChannelState
from connext.client.watcher import WatchOptions
from connext.errors import ConnextError, InvalidArgumentError, TimeoutError
from connext.protocol import serialization
from connext.protocol.encoding import ZERO_ADDRESS, normalize_address
from connext.protocol.errors import ProtocolError
from connext.protocol.signing import Signer
from connext.protocol.types import ChannelState, DefinitionKind, UpdateContext

logger = logging.getLogger("connext.client")

ETH = ZERO_ADDRESS
PAYMENT_TRANSFER_TIMEOUT = 24 * 3600  # how long a payment's transfer can be disputed on chain
DEFAULT_WAIT_SECONDS = 180.0


class ClientCore:
    """One user's channel with one node, as every part of the client sees it."""

    channel_address: str  # computed once the node's configuration is read

    def __init__(
        self,
        node_url: str,
        key: bytes,
        store_path: str | None,
        chain_rpc_url: str | None,
        watch_disputes: bool,
        watch_options: WatchOptions,
    ) -> None:
        self.watch_options = watch_options
        self.min_window = self.watch_options.min_window_seconds
        if self.min_window > PAYMENT_TRANSFER_TIMEOUT:
            raise InvalidArgumentError(
                "invalid_argument",
                f"watch_options ask for on-chain windows of {self.min_window}s: longer than the"
                f" {PAYMENT_TRANSFER_TIMEOUT}s of the client's own payments",
            )
        try:
            self.signer = Signer(key)
        except ProtocolError:
            raise InvalidArgumentError("invalid_key", "not a valid secp256k1 private key") from None
        self.key = key
        self.node_url = node_url
        self.chain_rpc_url = chain_rpc_url
        self.store = Store(store_path)
        self.events = EventBus()
        self.lock = asyncio.Lock()
        self._state_changed = asyncio.Event()
        self.http: aiohttp.ClientSession | None = None
        self.node_api: NodeApi | None = None
        self.chain: UserChain | None = None
        self.signed: SignedChannelState | None = None
        self.config: dict[str, Any] = {}
        self.definitions: dict[str, DefinitionKind] = {}
        self.setup: ChannelSetup | None = None  # the node's config for this channel, once connected
        self.tasks: list[asyncio.Task[Any]] = []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = False
        self.watch_disputes = watch_disputes
        self.disputes: ChannelDisputes | None = None

    # -- identity -----------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.signer.address

    @property
    def chain_id(self) -> int:
        return int(self.config["chainId"])

    @property
    def node_address(self) -> str:
        return normalize_address(self.config["nodeAddress"])

    @property
    def supported_assets(self) -> tuple[str, ...]:
        return tuple(normalize_address(a) for a in self.config["supportedAssets"])

    @property
    def api(self) -> NodeApi:
        assert self.node_api is not None, "not connected"
        return self.node_api

    # -- the channel --------------------------------------------------------------------------------

    @property
    def state(self) -> ChannelState:
        assert self.signed is not None, "not connected"
        return self.signed.state

    def get_free_balance(self, asset_id: str) -> dict[str, int]:
        asset_id = arguments.address(asset_id, "asset_id")
        index = self.state.asset_index(asset_id)
        if index is None:
            return {"user": 0, "node": 0}
        node, user = self.state.balances[index]
        return {"user": user, "node": node}

    def get_channel(self) -> dict[str, Any]:
        assert self.signed is not None, "not connected"
        state = self.signed.state
        return {
            "channelAddress": state.channel_address,
            "chainId": state.chain_id,
            "node": state.node,
            "user": state.user,
            "nonce": state.nonce,
            "timeout": state.timeout,
            "assets": {
                asset: {
                    "node": state.balances[i][0],
                    "user": state.balances[i][1],
                    "processedDepositsNode": state.processed_deposits[i][0],
                    "processedDepositsUser": state.processed_deposits[i][1],
                }
                for i, asset in enumerate(state.asset_ids)
            },
            "transfers": [serialization.transfer_state_to_json(t) for t in state.transfers],
            "state": serialization.channel_state_to_json(state),
            "nodeSignature": serialization.hex_bytes(self.signed.node_signature),
            "userSignature": serialization.hex_bytes(self.signed.user_signature),
        }

    def context(self, chain_deposits: dict[str, tuple[int, int]], *, lenient: bool = False) -> UpdateContext:
        deposits = chain_deposits
        if lenient:  # re-checking our own signed update: its claimed totals are what we read then
            deposits = dict.fromkeys(self.supported_assets, (2**256 - 1, 2**256 - 1))
        return UpdateContext(now=int(time.time()), definitions=self.definitions, chain_deposits=deposits)

    def definition(self, kind: DefinitionKind) -> str:
        return next(address for address, known in self.definitions.items() if known is kind)

    def asset(self, asset_id: str) -> str:
        asset_id = arguments.address(asset_id, "asset_id")
        if asset_id not in self.supported_assets:
            raise InvalidArgumentError("unknown_asset", f"the node does not serve asset {asset_id}")
        return asset_id

    def need_chain(self) -> UserChain:
        if self.chain is None:
            raise ConnextError(
                "no_chain_rpc", "this needs a chain RPC: pass chain_rpc_url (the node publishes none)"
            )
        return self.chain

    # -- disputes (connext.client.disputes; the user sends and pays the gas) ------------------------

    def recently_undisputed(self) -> bool:
        """The running watcher read the chain within two polls and no dispute ever started."""
        return (
            self.watch_disputes
            and self.disputes is not None
            and self.disputes.never_disputed(within_seconds=2 * self.watch_options.poll_seconds + 1)
        )

    async def refuse_while_disputed(self) -> None:
        """No new payment, withdrawal or off-chain resolve while the channel is disputed on chain."""
        if self.disputes is not None and self.disputes.seen_disputed():
            await asyncio.to_thread(self.disputes.refuse_while_disputed)

    def need_disputes(self) -> ChannelDisputes:
        self.need_chain()
        assert self.disputes is not None
        return self.disputes

    # -- waiting and background work ----------------------------------------------------------------

    def signal_state(self) -> None:
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    async def wait_state(
        self, condition: Callable[[ChannelState], bool], timeout: float, what: str, *, quiet: bool = False
    ) -> None:
        """Until `condition` holds for the latest state; `TimeoutError` after `timeout` (unless `quiet`)."""
        deadline = time.monotonic() + timeout
        while not condition(self.state):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if quiet:
                    return
                raise TimeoutError(f"no {what} within {timeout}s")
            await self.next_change(remaining)

    async def next_change(self, within: float) -> bool:
        """Until the client's state or records change next (True), or `within` seconds pass (False).
        Not `asyncio.wait_for`: on Python 3.11 it can drop a cancellation that meets the wake-up."""
        changed = self._state_changed
        try:
            async with asyncio.timeout(within):
                await changed.wait()
        except builtins.TimeoutError:
            return False
        return True

    def background(self, work: Any) -> None:
        if self.closed:  # closing: start nothing new
            work.close()
            return
        task = asyncio.ensure_future(work)
        self.tasks.append(task)

        def done(finished: asyncio.Future[Any]) -> None:
            with contextlib.suppress(ValueError):
                self.tasks.remove(task)
            if not finished.cancelled() and finished.exception() is not None:
                logger.warning("background work failed: %s", finished.exception())

        task.add_done_callback(done)


def processed_user(state: ChannelState | None, asset_id: str) -> int:
    if state is None:
        return 0
    index = state.asset_index(asset_id)
    return 0 if index is None else state.processed_deposits[index][1]
