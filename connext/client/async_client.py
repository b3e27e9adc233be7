"""`AsyncClient`: the user's side of a channel with a connext-py node, on asyncio.

Invariants:
- Every state the client signs is one it derived itself with `connext.protocol` from its own latest
  doubly signed state; node proposals are countersigned only after `policy.check_node_proposal`.
- The client adopts a state from the node only when both signatures on it verify and it names this
  channel, this user, the node and the chain; it never goes back to a lower nonce.
- One update at a time: every exchange that signs runs under one lock; waits (receipts, events) run
  outside it, so node proposals keep being answered while the user waits.
- The websocket reconnects with backoff; after every (re)connection the client syncs with the node
  (latest state, open proposal, the user's update that was left unanswered, uncredited deposits,
  the node's withdrawals waiting for the user's signature) and emits `channel.synced`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import aiohttp

from connext.chain import disputes
from connext.chain.contracts import channel_address as compute_channel_address
from connext.client import arguments, policy
from connext.client.amounts import check_amount
from connext.client.disputes import PREIMAGE_KINDS, ChannelDisputes
from connext.client.events import Callback, EventBus, Predicate
from connext.client.events import wait as wait_future
from connext.client.node_api import NodeApi
from connext.client.onchain import UserChain
from connext.client.store import SENDING, ChannelSetup, PaymentRecord, Store
from connext.client.store import SignedState as SignedChannelState
from connext.client.watcher import WatchOptions, setup_from_config, start_watch
from connext.errors import (
    AuthenticationError,
    ChainError,
    ConnextError,
    InvalidArgumentError,
    NodeError,
    NodeUnavailableError,
    OutcomeUnknownError,
    SlippageError,
    TimeoutError,
    ValidationError,
)
from connext.protocol import ecies, serialization, signing, validation
from connext.protocol import meta as transfer_meta
from connext.protocol.definitions import (
    HashLockState,
    LinkedState,
    PreimageResolver,
    SignedResolver,
    SignedState,
    WithdrawResolver,
    WithdrawState,
)
from connext.protocol.encoding import ZERO_ADDRESS, ZERO_BYTES32, keccak256, normalize_address
from connext.protocol.errors import ProtocolError
from connext.protocol.signing import Signer
from connext.protocol.types import (
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

logger = logging.getLogger("connext.client")

ETH = ZERO_ADDRESS
WITHDRAW_TRANSFER_TIMEOUT = 3 * 24 * 3600
PAYMENT_TRANSFER_TIMEOUT = 24 * 3600  # how long a payment's transfer can be disputed on chain
LINK_LIFETIME_SECONDS = 7 * 24 * 3600  # an unredeemed link can be taken back after this
REGISTRATION_POLL_SECONDS = 2.0
FINAL_STATUSES = ("completed", "refunded", "failed")
SETTLE_WAIT_SECONDS = 10.0  # how long `settle` waits for a linked payment on its way to the user
DEFAULT_WAIT_SECONDS = 180.0
CLOSE_ROUND_SECONDS = 1.0  # how long close() waits for cancelled work before cancelling it again
CLOSE_ROUNDS = 10
# A node reconciling after a restore first reads the chain's record of the time in between.
RECONCILE_WAIT_SECONDS = 60.0
RECONCILE_RETRY_SECONDS = 1.0
MAX_UPDATE_ATTEMPTS = 8
HISTORY_PAGE, MAX_HISTORY_PAGE = 200, 500  # payments per page of history: default, most the node serves
RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
WITHDRAWAL_POLL_SECONDS = 3.0
DEPOSIT_RETRY_SECONDS = 2.0

Build = Callable[[ChannelState], tuple[Update, dict[str, tuple[int, int]]] | None]


@dataclass
class InFlight:
    """Payments of one asset not final yet: what comes in to the user and what goes out."""

    incoming: int = 0
    outgoing: int = 0
    incoming_count: int = 0
    outgoing_count: int = 0


@dataclass(frozen=True)
class _PreparedAnswer:
    """The user's countersignature of a node proposal, checked and signed, not yet sent."""

    previous: ChannelState
    update: Update
    new: ChannelState
    node_signature: bytes
    signature: bytes
    meta: dict[str, Any]


class AsyncClient:
    """The user's side of one channel with one node. Create it with `await AsyncClient.connect(...)`."""

    def __init__(
        self,
        node_url: str,
        private_key: str | bytes,
        *,
        store_path: str | None,
        chain_rpc_url: str | None,
        watch_disputes: bool = True,
        watch_options: WatchOptions | None = None,
    ) -> None:
        key = arguments.key_bytes(private_key)
        self._watch_options = watch_options or WatchOptions()
        self._min_window = self._watch_options.min_window_seconds
        if self._min_window > PAYMENT_TRANSFER_TIMEOUT:
            raise InvalidArgumentError(
                "invalid_argument",
                f"watch_options ask for on-chain windows of {self._min_window}s: longer than the"
                f" {PAYMENT_TRANSFER_TIMEOUT}s of the client's own payments",
            )
        try:
            self._signer = Signer(key)
        except ProtocolError:
            raise InvalidArgumentError("invalid_key", "not a valid secp256k1 private key") from None
        self._key = key
        self._node_url = node_url
        self._chain_rpc_url = chain_rpc_url
        self._store = Store(store_path)
        self._events = EventBus()
        self._lock = asyncio.Lock()
        self._public_keys: dict[str, bytes] = {}
        self._state_changed = asyncio.Event()
        self._withdrawals: dict[str, dict[str, Any]] = {}  # transfer id -> the node's latest news
        self._session: aiohttp.ClientSession | None = None
        self._api: NodeApi | None = None
        self._chain: UserChain | None = None
        self._signed: SignedChannelState | None = None
        self._config: dict[str, Any] = {}
        self._definitions: dict[str, DefinitionKind] = {}
        self._setup: ChannelSetup | None = None  # the node's config for this channel, once connected
        self._tasks: list[asyncio.Task[Any]] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._closed = False
        self._expiry_timers: set[int] = set()
        self._watch_disputes = watch_disputes
        self._disputes: ChannelDisputes | None = None

    # -- connecting ---------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        node_url: str,
        private_key: str | bytes,
        *,
        store_path: str | None = None,
        chain_rpc_url: str | None = None,
        watch_disputes: bool = True,
        watch_options: WatchOptions | None = None,
    ) -> AsyncClient:
        """Log in, open the channel if there is none (or restore it if the store is empty), start the
        websocket and sync. Returns once the client's state matches the node's.

        `watch_disputes`: answer stale disputes and defund what is owed on chain while connected (needs a
        chain RPC); `watch_options`: its poll interval, how long the node may be unreachable before
        `node.unresponsive`, and the chain's pace (confirmations, block time) and a margin, which set the
        shortest on-chain window the client signs (`WatchOptions.min_window_seconds`, under 6 minutes
        by default): a node proposal with a shorter transfer window, an incoming HashLock expiring
        sooner or a channel dispute timeout below it is refused (`window_too_short`, `expiring`)."""
        client = cls(
            node_url,
            private_key,
            store_path=store_path,
            chain_rpc_url=chain_rpc_url,
            watch_disputes=watch_disputes,
            watch_options=watch_options,
        )
        try:
            await client._start()
        except BaseException:
            await client.close()
            raise
        return client

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._api = NodeApi(self._node_url, self._signer, self._session)
        await self._api.log_in()
        self._config = await self._api.get("/api/config")
        self._api.set_limits(self._config.get("limits") or {})
        rpc_url = self._chain_rpc_url or self._config.get("chainRpcUrl")
        if rpc_url:
            self._chain = UserChain(rpc_url, self._key)
            chain_id = await asyncio.to_thread(self._chain.chain_id)
            if chain_id != self.chain_id:
                raise ConnextError(
                    "wrong_chain", f"the RPC serves chain {chain_id}, the node chain {self.chain_id}"
                )
        self._channel_address = compute_channel_address(
            factory=self._config["contracts"]["ChannelFactory"],
            mastercopy=self._config["contracts"]["Channel"],
            node=self.node_address,
            user=self.address,
            chain_id=self.chain_id,
        )
        self._setup = setup_from_config(
            self._config,
            channel_address=self._channel_address,
            user=self.address,
            rpc_url=self._chain.rpc_url if self._chain is not None else "",
        )
        self._definitions = self._setup.definitions
        self._signed = self._store.latest(self._channel_address)
        async with self._lock:
            channel = await self._fetch_channel()
            if channel is None and self._signed is not None:
                await self._reconcile_locked()  # a node restored from before this channel was opened
            elif channel is None:
                await self._open_locked()
            elif self._signed is None:
                self._adopt(self._verified(channel), restoring=True)
        self._start_watch()
        self._tasks.append(asyncio.create_task(self._process_inbox(), name="connext-inbox"))
        synced = self._events.waiter("channel.synced")
        self._tasks.append(asyncio.create_task(self._run_socket(), name="connext-socket"))
        await wait_future(synced, 60, "first sync with the node")

    async def close(self) -> None:
        """Stop the websocket and background work; close the store."""
        self._closed = True
        # Background work may start more while the rest winds down (an answer's follow-up, say):
        # cancel in rounds until none is left. Iterating the live list instead skipped tasks that
        # removed themselves and awaited one started mid-close, uncancelled: `close()` hung.
        # A task that swallowed its cancellation (a library racing an answer against it, as
        # `asyncio.wait_for` of Python 3.11 does) is cancelled again rather than awaited forever.
        rounds = 0
        while self._tasks:
            tasks, self._tasks = list(self._tasks), []
            for task in tasks:
                task.cancel()
            _, still_running = await asyncio.wait(tasks, timeout=CLOSE_ROUND_SECONDS)
            self._tasks.extend(still_running)
            rounds += 1
            if still_running and rounds >= CLOSE_ROUNDS:
                logger.warning(
                    "closing left %d background tasks running: %s", len(still_running), still_running
                )
                self._tasks.clear()
        if self._session is not None:
            await self._session.close()
        self._store.close()

    async def logout(self) -> None:
        """Revoke this client's token at the node (its websocket closes on every node process), then
        close the client: a client left running would only log in again."""
        try:
            await self.api.log_out()
        finally:
            await self.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- identity -----------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._signer.address

    @property
    def channel_address(self) -> str:
        return self._channel_address

    @property
    def chain_id(self) -> int:
        return int(self._config["chainId"])

    @property
    def node_address(self) -> str:
        return normalize_address(self._config["nodeAddress"])

    @property
    def supported_assets(self) -> tuple[str, ...]:
        return tuple(normalize_address(a) for a in self._config["supportedAssets"])

    @property
    def config(self) -> dict[str, Any]:
        """The node's configuration as `GET /api/config` answered it."""
        return dict(self._config)

    @property
    def api(self) -> NodeApi:
        assert self._api is not None, "not connected"
        return self._api

    # -- events -------------------------------------------------------------------------------------

    def on(self, event: str, callback: Callback) -> None:
        self._events.on(event, callback)

    def once(self, event: str, callback: Callback) -> None:
        self._events.once(event, callback)

    def off(self, event: str, callback: Callback) -> None:
        self._events.off(event, callback)

    async def wait_for(
        self, event: str, timeout: float | None = DEFAULT_WAIT_SECONDS, predicate: Predicate | None = None
    ) -> dict[str, Any]:
        """The payload of the next `event` (that matches `predicate`); `TimeoutError` after `timeout`."""
        return await self._events.wait_for(event, timeout, predicate)

    # -- disputes (connext.client.disputes; the user sends and pays the gas) ---------------------------

    def _start_watch(self) -> None:
        assert self._setup is not None
        self._disputes, tasks = start_watch(
            setup=self._setup,
            chain=self._chain,
            store=self._store,
            events=self._events,
            enabled=self._watch_disputes,
            options=self._watch_options,
            latest=lambda: self._signed.state if self._signed is not None else None,
        )
        self._tasks.extend(tasks)

    def _recently_undisputed(self) -> bool:
        """The running watcher read the chain within two polls and no dispute ever started."""
        return (
            self._watch_disputes
            and self._disputes is not None
            and self._disputes.never_disputed(within_seconds=2 * self._watch_options.poll_seconds + 1)
        )

    async def _refuse_while_disputed(self) -> None:
        """No new payment, withdrawal or off-chain resolve while the channel is disputed on chain."""
        if self._disputes is not None and self._disputes.seen_disputed():
            await asyncio.to_thread(self._disputes.refuse_while_disputed)

    def _need_disputes(self) -> ChannelDisputes:
        self._need_chain()
        assert self._disputes is not None
        return self._disputes

    async def dispute_channel(self) -> str:
        """Take the latest doubly signed state to the chain (starts a dispute, or answers a stale one)."""
        return await asyncio.to_thread(self._need_disputes().dispute_channel)

    async def defund_channel(self, assets: list[str] | None = None) -> str:
        """In the defund phase: pay out the disputed balances of `assets` (default: those owed to you)."""
        return await asyncio.to_thread(self._need_disputes().defund_channel, assets)

    async def dispute_transfer(self, payment_id: str | bytes) -> str:
        """In the defund phase: prove an active transfer of the disputed state, starting its window."""
        return await asyncio.to_thread(self._need_disputes().dispute_transfer, payment_id)

    async def defund_transfer(self, payment_id: str | bytes) -> str:
        """Pay out a disputed transfer: yours refunded after its window, an incoming one with its secret."""
        return await asyncio.to_thread(self._need_disputes().defund_transfer, payment_id)

    async def dispute_status(self) -> dict[str, Any]:
        """The channel's dispute on chain and what the chain still owes you of the latest state."""
        outlook = await asyncio.to_thread(self._need_disputes().outlook)
        return {**outlook.view.as_json(), "owed": [vars(item) for item in outlook.owed]}

    # -- reading the channel ------------------------------------------------------------------------

    @property
    def state(self) -> ChannelState:
        assert self._signed is not None, "not connected"
        return self._signed.state

    async def settle(self, *, timeout: float = SETTLE_WAIT_SECONDS) -> dict[str, InFlight]:
        """Finish what the node has for this user before a balance is read: sync (answer its open
        proposal, resolve incoming payments whose secret this client holds), then wait up to `timeout`
        while a linked payment to this user is still on its way (the node forwards it once the user is
        online, and the client resolves it at once). What is still in flight then, per asset, is
        returned: amounts coming in and going out, and how many payments each."""
        deadline = time.monotonic() + timeout
        async with self._lock:
            await self._sync_locked()
        while True:
            page = await self.get_transfer_history(limit=MAX_HISTORY_PAGE)
            moving = [payment for payment in page if payment["status"] not in FINAL_STATUSES]
            arriving = [
                payment
                for payment in moving
                if payment["kind"] == "linked" and payment.get("recipient") == self.address
            ]
            if not arriving or time.monotonic() >= deadline:
                break
            await self._next_change(min(0.5, max(0.0, deadline - time.monotonic())))
        async with self._lock:  # a resolve under way finishes before the balance is read
            pass
        summary: dict[str, InFlight] = {}
        for payment in moving:
            entry = summary.setdefault(payment["assetId"], InFlight())
            amount = int(payment["amount"])
            if payment["sender"] == self.address:
                entry.outgoing += amount
                entry.outgoing_count += 1
            else:
                entry.incoming += amount
                entry.incoming_count += 1
        return summary

    def get_free_balance(self, asset_id: str = ETH) -> dict[str, int]:
        """The user's and the node's balance of `asset_id` in the latest doubly signed state."""
        asset_id = arguments.address(asset_id, "asset_id")
        index = self.state.asset_index(asset_id)
        if index is None:
            return {"user": 0, "node": 0}
        node, user = self.state.balances[index]
        return {"user": user, "node": node}

    def get_channel(self) -> dict[str, Any]:
        """The latest doubly signed state: nonce, per-asset balances and deposits, active transfers."""
        assert self._signed is not None, "not connected"
        state = self._signed.state
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
            "nodeSignature": serialization.hex_bytes(self._signed.node_signature),
            "userSignature": serialization.hex_bytes(self._signed.user_signature),
        }

    async def restore_state(self) -> dict[str, Any]:
        """Replace the local state with the node's latest, after verifying both signatures on it.

        Refused (`ValidationError`) when the node's state is older than the one held locally."""
        async with self._lock:
            channel = await self._fetch_channel()
            if channel is None:
                raise NodeError("no_channel", "the node has no channel for this user", 404)
            signed = self._verified(channel)
            if self._signed is not None and signed.state.nonce < self._signed.state.nonce:
                raise ValidationError(
                    "node_behind",
                    f"the node's latest state has nonce {signed.state.nonce}, this client holds"
                    f" {self._signed.state.nonce} signed by both",
                )
            self._adopt(signed, restoring=True)
            await self._answer_proposal_locked(channel.get("proposal"))
        return self.get_channel()

    # -- deposits -----------------------------------------------------------------------------------

    async def deposit(self, amount: int, asset_id: str = ETH, *, wait: bool = True) -> str:
        """Send `amount` of `asset_id` to the channel address from the user's key and have it credited.

        With `wait` (default) returns once the deposit is credited in a doubly signed state; otherwise
        once the transaction is sent (crediting continues in the background: `deposit.confirmed`).
        Returns the transaction hash."""
        amount = check_amount(amount)
        asset_id = self._asset(asset_id)
        chain = self._need_chain()
        tx_hash = await asyncio.to_thread(chain.send_deposit, self.channel_address, asset_id, amount)
        self._events.emit(
            "deposit.started", {"assetId": asset_id, "amount": str(amount), "transactionHash": tx_hash}
        )
        if not wait:
            self._background(self._finish_deposit(tx_hash, asset_id, amount))
            return tx_hash
        await self._finish_deposit(tx_hash, asset_id, amount)
        return tx_hash

    async def _finish_deposit(self, tx_hash: str, asset_id: str, amount: int) -> None:
        chain = self._need_chain()
        failure = {"assetId": asset_id, "amount": str(amount), "transactionHash": tx_hash}
        try:
            block = await asyncio.to_thread(chain.wait_receipt, tx_hash, DEFAULT_WAIT_SECONDS)
            _, user_total = await asyncio.to_thread(
                chain.deposit_totals, self.channel_address, asset_id, block
            )
            await self._ensure_credited(asset_id, user_total, DEFAULT_WAIT_SECONDS)
        except ConnextError as exc:
            self._events.emit("deposit.failed", {**failure, "error": exc.code, "message": exc.message})
            raise

    async def _ensure_credited(self, asset_id: str, user_total: int, timeout: float) -> None:
        """Propose the deposit credit until the channel credits `user_total` of the user's deposits.

        The node checks the claim against the chain at its confirmation depth, which may trail the
        block the client read: then the claim is refused for now (`deposit_exceeds_chain`) and is made
        again as blocks arrive, or when the node's watcher reports the deposit."""
        deadline = time.monotonic() + timeout
        while self._processed_user(self.state, asset_id) < user_total:
            async with self._lock:
                try:
                    await self._credit_deposit_locked(asset_id)
                except NodeError as exc:
                    if exc.code != "deposit_exceeds_chain":
                        raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the node did not credit the {asset_id} deposit within {timeout}s")
            await self._wait_state(
                lambda state: self._processed_user(state, asset_id) >= user_total,
                min(remaining, DEPOSIT_RETRY_SECONDS),
                "",
                quiet=True,
            )

    async def _credit_deposit_locked(self, asset_id: str, block: int | None = None) -> None:
        """Propose crediting what the chain shows at `block` (default: the latest) beyond what is
        processed. Nothing happens when it is all credited already."""
        chain = self._need_chain()
        latest = await asyncio.to_thread(chain.block_number)
        at = latest if block is None else min(block, latest)
        node_total, user_total = await asyncio.to_thread(
            chain.deposit_totals, self.channel_address, asset_id, at
        )

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]] | None:
            index = state.asset_index(asset_id)
            processed = state.processed_deposits[index] if index is not None else (0, 0)
            if user_total <= processed[1]:
                return None
            # The node's processed total is in a state both signed; the reading may predate it.
            totals = (max(node_total, processed[0]), user_total)
            update = DepositUpdate(
                channel_address=state.channel_address,
                nonce=state.nonce + 1,
                initiator=self.address,
                asset_id=asset_id,
                total_deposits_node=totals[0],
                total_deposits_user=totals[1],
            )
            return update, {asset_id: totals}

        await self._propose_locked(build)

    # -- collateral ---------------------------------------------------------------------------------

    async def request_collateral(
        self,
        asset_id: str = ETH,
        amount: int | None = None,
        *,
        wait: bool = True,
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> dict[str, Any]:
        """Ask the node to top its side up to `amount` (default: its rebalance target).

        Returns the node's answer, `{"requested": bool, "transactionId": ...}`. The node matches
        collateral to the user's own balance and recent incoming payments: more raises `LimitError`
        (`collateral_not_justified`, with `details["justified"]`; also `collateral_too_small`,
        `collateral_limit`). With `wait` (default)
        it returns once the collateral is credited in a doubly signed state (the node's deposit
        credit, countersigned), `TimeoutError` after `timeout`; at once when nothing is on its way
        (the node holds `amount` already, or without `amount` neither the node's answer nor the chain
        shows a deposit to credit). Without `wait`, once the node answered: the credit arrives as a
        node proposal the client countersigns (`channel.updated`)."""
        asset_id = self._asset(asset_id)
        body: dict[str, Any] = {"assetId": asset_id}
        if amount is not None:
            body["amount"] = str(check_amount(amount))
        credited = self._processed_node(self.state, asset_id)
        answer: dict[str, Any] = await self.api.post("/api/channel/collateral", body)
        if wait and await self._collateral_on_its_way(
            asset_id, amount, requested=bool(answer.get("requested"))
        ):
            await self._wait_state(
                lambda state: (
                    self._processed_node(state, asset_id) > credited
                    or (amount is not None and self._node_balance(state, asset_id) >= amount)
                ),
                timeout,
                f"credit of the node's {asset_id} collateral",
            )
        return answer

    async def _collateral_on_its_way(self, asset_id: str, amount: int | None, *, requested: bool) -> bool:
        """Whether a node deposit is still to be credited after a collateral request: one the node
        just queued, one it had queued before (when the node holds less than `amount`), or one the
        chain shows and the channel does not credit yet."""
        if requested:
            return True
        if amount is not None:
            return self._node_balance(self.state, asset_id) < amount
        if self._chain is None:
            return False
        chain = self._chain
        node_total, _ = await asyncio.to_thread(
            chain.deposit_totals, self.channel_address, asset_id, await asyncio.to_thread(chain.block_number)
        )
        return node_total > self._processed_node(self.state, asset_id)

    # -- swaps --------------------------------------------------------------------------------------

    async def get_swap_rates(self) -> dict[str, Any]:
        """The node's swap offer (`GET /api/swap/rates`): per direction its rate (`rate`, a fraction of
        take base units per give base unit), mid price, spread and limits; the node pushes
        `swap.rates` when a price moves."""
        answer: dict[str, Any] = await self.api.get("/api/swap/rates")
        return answer

    async def swap(
        self,
        amount: int,
        from_asset: str,
        to_asset: str,
        *,
        max_slippage: float | str = "0.01",
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> int:
        """Swap `amount` of the user's `from_asset` for the node's `to_asset` at the node's rate, in one
        doubly signed update; returns the amount received.

        The amount is the node's offer when the call starts. When the node's rate moves before the swap
        lands (`rate_moved`), the client takes the new offer as long as it is at most `max_slippage`
        (a fraction: "0.01" is 1 %) below the first one, and raises `SlippageError` otherwise. When
        the node holds too little `to_asset` in the channel, the client asks it to deposit first
        (`POST /api/swap/prepare`) and waits for that credit (`TimeoutError` after `timeout`). The
        node's refusals (`swap_not_offered`, `stale_rate`, `below_tolerance`, `insufficient_balance`;
        `LimitError` for `swap_over_limit`, `swap_daily_limit`, `exposure_limit`) raise with nothing
        moved."""
        amount = check_amount(amount)
        give_asset, take_asset = self._asset(from_asset), self._asset(to_asset)
        if give_asset == take_asset:
            raise InvalidArgumentError("same_asset", "a swap exchanges two different assets")
        slippage = arguments.fraction(max_slippage, "max_slippage")
        await self._refuse_while_disputed()
        rate = await self._swap_rate(give_asset, take_asset)
        quoted = amount * rate.numerator // rate.denominator
        if quoted <= 0:
            raise InvalidArgumentError(
                "amount_too_small", f"{amount} of {give_asset} buys nothing at the node's rate"
            )
        least = math.ceil(quoted * (1 - slippage))
        take = quoted
        deadline = time.monotonic() + timeout
        for _ in range(MAX_UPDATE_ATTEMPTS):

            def build(state: ChannelState, take: int = take) -> tuple[Update, dict[str, tuple[int, int]]]:
                update = SwapUpdate(
                    channel_address=state.channel_address,
                    nonce=state.nonce + 1,
                    initiator=self.address,
                    give_asset=give_asset,
                    give_amount=amount,
                    take_asset=take_asset,
                    take_amount=take,
                )
                return update, {}

            try:  # the node's deposit first when it is short: its prepare checks the rate too
                if self._node_balance(self.state, take_asset) < take:
                    await self._swap_collateral(give_asset, amount, take_asset, take, deadline)
                async with self._lock:
                    new = await self._propose_locked(build)
            except NodeError as exc:
                if exc.code == "rate_moved" and str(exc.details.get("offered", "")).isdigit():
                    offered = int(exc.details["offered"])
                    if offered < least:
                        raise SlippageError(quoted=quoted, offered=offered, least=least) from None
                    take = offered
                    continue
                raise
            assert new is not None
            self._events.emit(
                "swap.completed",
                {
                    "nonce": new.nonce,
                    "giveAssetId": give_asset,
                    "giveAmount": str(amount),
                    "takeAssetId": take_asset,
                    "takeAmount": str(take),
                },
            )
            return take
        raise ConnextError("update_contended", "the node's rate kept moving; try again")

    async def _swap_collateral(
        self, give_asset: str, give: int, take_asset: str, take: int, deadline: float
    ) -> None:
        """Have the node deposit what the swap pays out (`POST /api/swap/prepare`, which checks the swap
        as the update would be) and wait until the channel credits it."""
        await self.api.post(
            "/api/swap/prepare",
            {
                "giveAssetId": give_asset,
                "giveAmount": str(give),
                "takeAssetId": take_asset,
                "takeAmount": str(take),
            },
        )

        def enough(state: ChannelState) -> bool:
            return self._node_balance(state, take_asset) >= take

        await self._wait_state(
            enough, max(0.0, deadline - time.monotonic()), f"credit of the node's {take_asset} for the swap"
        )

    async def _swap_rate(self, give_asset: str, take_asset: str) -> Fraction:
        """The node's offer for giving `give_asset` for `take_asset`, refused before anything is signed
        when the node offers no such swap or its price is stale."""
        rates = await self.get_swap_rates()
        for entry in rates.get("rates", []):
            if (
                normalize_address(str(entry.get("giveAssetId", ""))) == give_asset
                and normalize_address(str(entry.get("takeAssetId", ""))) == take_asset
            ):
                if entry.get("stale"):
                    raise NodeError(
                        "stale_rate", f"the node's price for {give_asset} is stale; try later", 409
                    )
                rate = entry["rate"]
                return Fraction(int(rate["numerator"]), int(rate["denominator"]))
        raise NodeError("swap_not_offered", f"the node does not swap {give_asset} for {take_asset}", 400)

    # -- withdrawals --------------------------------------------------------------------------------

    async def withdraw(
        self, amount: int, asset_id: str = ETH, recipient: str | None = None, *, wait: bool = True
    ) -> str:
        """Withdraw `amount` of the user's `asset_id` to `recipient` (default: the user); the node sends
        the transaction and pays its gas.

        With `wait` returns the transaction hash once it is mined (`withdrawal.confirmed`); without,
        returns the withdraw transfer's id (events name it `transferId`) once the node accepted it.
        A withdrawal over the node's limits raises `LimitError` (`withdrawal_too_small`,
        `withdrawal_rate_limited`, `withdrawal_gas_limit`) and changes nothing."""
        amount = check_amount(amount)
        asset_id = self._asset(asset_id)
        to = self.address if recipient is None else arguments.address(recipient, "recipient")
        if to in (ZERO_ADDRESS, self.channel_address):
            raise InvalidArgumentError("invalid_address", "withdraw to the channel or the zero address")
        await self._refuse_while_disputed()
        payment_id = secrets.token_bytes(32)

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]]:
            nonce = state.nonce + 1
            unsigned = WithdrawState(
                channel_address=state.channel_address,
                asset_id=asset_id,
                recipient=to,
                amount=amount,
                nonce=nonce,
                initiator=self.address,
                responder=state.node,
                initiator_signature=b"",
            )
            commitment_signature = signing.sign_withdraw(unsigned.commitment(state.chain_id), self._signer)
            withdraw = WithdrawState(**{**unsigned.__dict__, "initiator_signature": commitment_signature})
            update = CreateUpdate(
                channel_address=state.channel_address,
                nonce=nonce,
                initiator=self.address,
                asset_id=asset_id,
                amount=amount,
                definition=self._definition(DefinitionKind.WITHDRAW),
                payment_id=payment_id,
                encoded_state=withdraw.encode(),
                transfer_timeout=WITHDRAW_TRANSFER_TIMEOUT,
            )
            return update, {}

        async with self._lock:
            new = await self._propose_locked(build)
        assert new is not None
        transfer = new.transfers[-1]
        transfer_id = serialization.hex_bytes(transfer.transfer_id)
        self._withdrawals.setdefault(transfer_id, {"transferId": transfer_id, "status": "requested"})
        if not wait:
            return transfer_id
        news = await self._wait_withdrawal(transfer_id, DEFAULT_WAIT_SECONDS)
        if news["status"] != "confirmed":
            raise ChainError("withdrawal_failed", f"withdrawal {transfer_id} failed: {news.get('error', '')}")
        return str(news["transactionHash"])

    async def _wait_withdrawal(self, transfer_id: str, timeout: float) -> dict[str, Any]:
        """The node's final news of a withdrawal: pushed events, or its withdrawals list as a fallback."""
        deadline = time.monotonic() + timeout
        while True:
            news = self._withdrawals.get(transfer_id)
            if news is not None and (
                news.get("status") == "failed"
                or (news.get("status") == "confirmed" and news.get("transactionHash"))
            ):
                return news
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"withdrawal {transfer_id} not confirmed within {timeout}s")
            if not await self._next_change(min(remaining, WITHDRAWAL_POLL_SECONDS)):
                await self._poll_withdrawals()  # a push may have been lost with the connection

    async def _poll_withdrawals(self) -> None:
        """Catch up on the withdrawals this client waits for (pushes are lost while disconnected)."""
        if all(
            news.get("transactionHash") or news.get("status") == "failed"
            for news in self._withdrawals.values()
        ):
            return
        with contextlib.suppress(NodeUnavailableError):
            listing = await self.api.get("/api/channel/withdrawals")
            for news in listing.get("withdrawals", []):
                known = self._withdrawals.get(news.get("transferId"))
                if known is None:
                    continue
                if known.get("status") != news.get("status"):
                    self._note_withdrawal(news, f"withdrawal.{news.get('status')}")
                elif not known.get("transactionHash"):
                    self._note_withdrawal(news, "")

    def _note_withdrawal(self, news: dict[str, Any], event: str) -> None:
        self._withdrawals[str(news.get("transferId", ""))] = news
        if event in ("withdrawal.started", "withdrawal.confirmed", "withdrawal.failed"):
            self._events.emit(event, news)
        self._signal_state()

    # -- payments -----------------------------------------------------------------------------------

    async def transfer(
        self,
        recipient: str,
        amount: int,
        asset_id: str = ETH,
        *,
        meta: dict[str, Any] | None = None,
        payment_id: bytes | str | None = None,
    ) -> str:
        """Pay `amount` of `asset_id` to the user `recipient` through the node: a Linked transfer whose
        preimage travels encrypted to the recipient's public key (the node relays it and cannot read it;
        the recipient's client resolves it on its own). Returns the payment id once the node
        countersigned the sender side.

        `payment_id` (32 bytes, default random) makes a retry safe: the payment is recorded in the
        store before it is sent, and a call with an id the store knows pays nothing again; it returns
        the id once the payment is known to be made (`wait_for_transfer` tells its outcome).
        `OutcomeUnknownError` (it carries `payment_id`) when the node stopped answering after the
        payment was sent: retry with that id."""
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
        asset_id: str = ETH,
        *,
        lock_hash: bytes | str | None = None,
        expiry: int | None = None,
        signer: str | None = None,
        payment_id: bytes | str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Pay `recipient` through the node once a condition is met; returns the payment id.

        - `"hashlock"`: the preimage of `lock_hash` revealed before `expiry` (unix seconds); the
          node gives the recipient a shorter expiry, so it can always claim this side in time.
        - `"signed"`: a receipt `signer` signs (EIP-712) over the payment id and some data; pass
          `payment_id` (32 bytes) when the signer must know it beforehand.
        - `"linked"`: the preimage of `lock_hash`, with no expiry.

        A `payment_id` the store knows is a retry: nothing is paid again (see `transfer`)."""
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
                if expiry < int(time.time()) + self._min_window:
                    raise InvalidArgumentError(
                        "window_too_short",
                        f"the expiry {expiry} is less than {self._min_window}s away: too soon to claim on chain",
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

    async def resolve_condition(
        self,
        payment_id: str | bytes,
        *,
        preimage: bytes | str | None = None,
        signature: bytes | str | None = None,
        data: bytes | str | None = None,
    ) -> dict[str, Any]:
        """Unlock a payment to this user: the `preimage` of a Linked or HashLock transfer, or the
        signer's receipt `signature` over (payment id, `data`) of a Signed one. The client checks the
        resolver with the definition before it signs (`bad_resolver`, `expired`). Returns the payment's
        record once the node countersigned; the node then resolves the sender's side."""
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        async with self._lock:
            transfer = self._incoming_transfer(payment_hex)
            if transfer is None:
                raise InvalidArgumentError(
                    "unknown_transfer", f"no active payment {payment_hex} to this user"
                )
            kind = self._definitions.get(transfer.definition)
            if kind is DefinitionKind.SIGNED:
                if signature is None:
                    raise InvalidArgumentError(
                        "missing_argument", "a signed transfer resolves with a signature"
                    )
                resolver = SignedResolver(
                    ZERO_BYTES32 if data is None else arguments.bytes32(data, "data"),
                    arguments.hex_bytes(signature, "signature"),
                ).encode()
            else:
                if preimage is None:
                    raise InvalidArgumentError("missing_argument", "this transfer resolves with a preimage")
                secret = arguments.bytes32(preimage, "preimage")
                resolver = PreimageResolver(secret).encode()
                if kind is not None and keccak256(secret) == _lock_of(kind, transfer.encoded_state)[0]:
                    self._keep_secret(payment_hex, transfer, kind, secret)
            await self._resolve_incoming_locked(transfer.transfer_id, resolver)
        record = self._store.payment(payment_hex)
        return record.as_json() if record is not None else {"paymentId": payment_hex, "status": "completed"}

    async def create_link(
        self, amount: int, asset_id: str = ETH, *, expires_in: int = LINK_LIFETIME_SECONDS
    ) -> dict[str, str]:
        """A link payment: whoever holds its payment id and secret can redeem it into their channel.
        After `expires_in` seconds an unredeemed link can no longer be redeemed (`link_expired`): the
        node refunds it to the sender on its own (`transfer.failed`), or at once on `cancel_transfer`.
        Returns `{"payment_id", "secret", "url"}` once the node registered the payment (so the link
        can be redeemed at once); the secret is in the URL's fragment."""
        secret = secrets.token_bytes(32)
        id_bytes = secrets.token_bytes(32)
        payment_hex = serialization.hex_bytes(id_bytes)
        registered = self._events.waiter("transfer.created", lambda p: p.get("paymentId") == payment_hex)
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
        url = f"{self._node_url.rstrip('/')}/redeem#paymentId={payment_id}&secret={secret_hex}"
        return {"payment_id": payment_id, "secret": secret_hex, "url": url}

    async def redeem_link(
        self, payment_id: str | bytes, secret: str | bytes, *, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> dict[str, Any]:
        """Claim a link payment into this channel with its secret. Returns the payment's record once
        this client resolved the transfer the node created for it (`link_closed`, `link_expired`,
        `already_redeemed`, `bad_preimage`, `unknown_payment` when the node refuses)."""
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        secret_bytes = arguments.bytes32(secret, "secret")
        known = self._store.payment(payment_hex)
        if known is not None and known.direction == "outgoing":
            raise InvalidArgumentError("bad_recipient", "take back your own link with cancel_transfer")
        answer = await self.api.post(
            f"/api/transfers/{payment_hex}/redeem", {"preimage": serialization.hex_bytes(secret_bytes)}
        )
        self._store.save_payment(
            replace(self._record_from_node(answer), direction="incoming", secret=secret_bytes)
        )
        async with self._lock:  # its transfer may have arrived before the answer: resolve it now
            await self._follow_up_locked()
        return await self._wait_payment(payment_hex, FINAL_STATUSES, timeout)

    async def cancel_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        """Take back a payment nobody received: a link after it expired, or a payment the node could
        not deliver yet. The refund arrives as the node's resolve (`transfer.failed`)."""
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        answer = await self.api.post(f"/api/transfers/{payment_hex}/cancel", {})
        return self._note_payment_news(answer)

    async def get_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        """One payment this user sent or received: the node's record, or the client's own when the node
        cannot be reached (`unknown_payment` when neither knows it)."""
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        try:
            answer = await self.api.get(f"/api/transfers/{payment_hex}")
        except (NodeUnavailableError, NodeError) as exc:
            if isinstance(exc, NodeError) and exc.code != "unknown_payment":
                raise
            record = self._store.payment(payment_hex)
            if record is None:
                raise
            return record.as_json()
        return self._note_payment_news(answer)

    async def wait_for_transfer(
        self, payment_id: str | bytes, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> dict[str, Any]:
        """The payment once it is completed, refunded or failed, as this client knows it; at once when it
        is already. Unlike waiting for the `transfer.resolved` event, news that arrived before the call
        (even before `transfer()` returned: the node may settle a payment that fast) is not missed.
        `TimeoutError` after `timeout`."""
        payment_hex = serialization.hex_bytes(arguments.bytes32(payment_id, "payment_id"))
        return await self._wait_payment(payment_hex, FINAL_STATUSES, timeout)

    async def get_transfer_history(
        self, *, limit: int = HISTORY_PAGE, before: str | bytes | None = None
    ) -> list[dict[str, Any]]:
        """The payments this user sent or received, newest first, at most `limit` (1 to 500); `before`
        (a payment id, the last of the page you have) gives the next page, and a page shorter than
        `limit` is the last. The client's own records when the node cannot be reached."""
        if not 1 <= limit <= MAX_HISTORY_PAGE:
            raise InvalidArgumentError("invalid_argument", f"limit is 1 to {MAX_HISTORY_PAGE}, not {limit}")
        before_hex = None if before is None else serialization.hex_bytes(arguments.bytes32(before, "before"))
        params = {"limit": str(limit)} | ({"before": before_hex} if before_hex else {})
        try:
            answer = await self.api.get("/api/transfers", **params)
        except NodeUnavailableError:
            return [record.as_json() for record in self._store.payments(limit, before=before_hex)]
        return [self._note_payment_news(payment) for payment in answer.get("transfers", [])]

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
                    await self.api.get(f"/api/transfers/{payment_hex}")
                    return
                except NodeError as exc:
                    if exc.code != "unknown_payment":
                        raise
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the node did not register payment {payment_hex}")
        finally:
            registered.cancel()

    async def _public_key_of(self, user: str) -> bytes:
        """The user's public key from the node, checked to be the key of that address (a node
        handing out its own key would read the preimage). Kept once checked: an address's key never
        changes."""
        known = self._public_keys.get(user)
        if known is not None:
            return known
        answer = await self.api.get(f"/api/users/{user}/key")
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
            sender=self.address,
            recipient=recipient or "",
            asset_id=self._asset(asset_id),
            amount=check_amount(amount),
            status=SENDING,
        )

    async def _made_before(
        self, kind: DefinitionKind, amount: int, asset_id: str, recipient: str | None, payment_id: bytes
    ) -> bool:
        async with self._lock:
            return await self._made_before_locked(
                self._outgoing_record(kind, amount, asset_id, recipient, payment_id)
            )

    async def _made_before_locked(self, wanted: PaymentRecord) -> bool:
        """True when the store knows the payment `wanted` names and it was made: a retry, which returns
        the first call's outcome. An unknown outcome is settled with the node first
        (`OutcomeUnknownError` while it cannot be). False for a new id, or one whose payment never
        happened (it may be made now). `payment_id_reused` for an id of another payment."""
        known = self._store.payment(wanted.payment_id)
        if known is None:
            return False
        terms = ("direction", "kind", "recipient", "asset_id", "amount")
        if any(getattr(known, term) != getattr(wanted, term) for term in terms):
            raise InvalidArgumentError(
                "payment_id_reused", f"payment {known.payment_id} is another payment: {known.as_json()}"
            )
        if known.status == SENDING:
            try:
                await self._sync_locked()
                await self._settle_sending_locked()
            except NodeUnavailableError as exc:
                raise self._outcome_unknown(known.payment_id, exc) from exc
            settled = self._store.payment(known.payment_id)
            if settled is None:
                return False
            if settled.status == SENDING:
                raise self._outcome_unknown(known.payment_id, None)
        return True

    @staticmethod
    def _outcome_unknown(payment_hex: str, cause: ConnextError | None) -> OutcomeUnknownError:
        reason = f"the node stopped answering ({cause.message})" if cause is not None else "no answer yet"
        return OutcomeUnknownError(
            payment_hex,
            f"payment {payment_hex} was sent, {reason}: the node may have taken it. Retry with this"
            " payment id (nothing is paid twice); the client settles it with the node first.",
        )

    def _unanswered(self, payment_id: bytes) -> bool:
        """The user's create of `payment_id` is the update signed and sent but not answered."""
        pending = self._store.pending(self.channel_address)
        return (
            pending is not None
            and isinstance(pending.update, CreateUpdate)
            and pending.update.payment_id == payment_id
        )

    async def _settle_sending_locked(self) -> None:
        """After a sync: settle the payments sent whose answer was never seen. One the node knows or
        the channel holds was made (the node's news of it is kept); one still waiting as the update
        left unanswered stays unknown; any other never happened and is forgotten (nothing moved, its
        id is free again: the signed create can no longer apply, its nonce is taken)."""
        for record in self._store.payments_with_status(SENDING):
            id_bytes = arguments.bytes32(record.payment_id, "payment_id")
            if self._unanswered(id_bytes):
                continue
            try:
                news: dict[str, Any] | None = await self.api.get(f"/api/transfers/{record.payment_id}")
            except NodeError as exc:
                if exc.code != "unknown_payment":
                    raise
                news = None
            if news is not None:
                self._note_payment_news(news)
            elif any(t.payment_id == id_bytes and t.initiator == self.address for t in self.state.transfers):
                self._store.save_payment(replace(record, status="pending"))
            else:
                self._store.delete_payment(record.payment_id)
        self._signal_state()

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
        amount = check_amount(amount)
        asset_id = self._asset(asset_id)
        await self._refuse_while_disputed()
        if recipient is not None:
            if recipient in (self.address, self.node_address):
                raise InvalidArgumentError("bad_recipient", "a payment goes to another user of the node")
            meta = {**meta, "recipient": recipient}
        payment_hex = serialization.hex_bytes(payment_id)

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]]:
            update = CreateUpdate(
                channel_address=state.channel_address,
                nonce=state.nonce + 1,
                initiator=self.address,
                asset_id=asset_id,
                amount=amount,
                definition=self._definition(kind),
                payment_id=payment_id,
                encoded_state=encoded_state,
                transfer_timeout=PAYMENT_TRANSFER_TIMEOUT,
                meta_hash=transfer_meta.meta_hash(meta),
            )
            return update, {}

        record = replace(
            self._outgoing_record(kind, amount, asset_id, recipient, payment_id), secret=secret, meta=meta
        )
        async with self._lock:
            if await self._made_before_locked(record):  # a concurrent call with this id made it
                return payment_hex
            try:
                transfer_meta.canonical_meta(meta)
            except ProtocolError as exc:
                raise policy.from_protocol(exc) from None
            # Known before it is sent: a lost answer or a crash leaves a payment to settle, not a
            # stranger that an application would pay again.
            self._store.save_payment(record)
            try:
                await self._propose_locked(build, meta=meta)
            except BaseException as exc:
                if not self._unanswered(payment_id):  # refused: no signed create of it can still apply
                    self._store.delete_payment(payment_hex)
                elif isinstance(exc, NodeUnavailableError):
                    raise self._outcome_unknown(payment_hex, exc) from exc
                raise
            known = self._store.payment(payment_hex)
            if known is None or known.status == SENDING:  # else the node's news came before its answer
                self._store.save_payment(replace(record, status="pending"))
        return payment_hex

    def _keep_secret(
        self, payment_hex: str, transfer: TransferState, kind: DefinitionKind, secret: bytes
    ) -> None:
        """Store the preimage before the resolve is sent: if the node never answers, the watcher and
        `connext exit` resolve the transfer on chain with it."""
        record = self._store.payment(payment_hex) or PaymentRecord(
            payment_id=payment_hex,
            direction="incoming",
            kind=kind.value,
            sender=self.node_address,
            recipient=self.address,
            asset_id=transfer.asset_id,
            amount=transfer.locked,
            status="forwarded",
        )
        if record.secret != secret:
            self._store.save_payment(replace(record, secret=secret))

    def _incoming_transfer(self, payment_hex: str) -> TransferState | None:
        return next(
            (
                t
                for t in self.state.transfers
                if serialization.hex_bytes(t.payment_id) == payment_hex
                and t.responder == self.address
                and t.initiator == self.state.node
            ),
            None,
        )

    async def _resolve_incoming_locked(
        self, transfer_id: bytes, resolver: bytes, *, answer: _PreparedAnswer | None = None
    ) -> bool:
        """Resolve the node's transfer to the user (with `answer`: the proposal that creates it,
        countersigned in the same request); True when this call did it."""
        await self._refuse_while_disputed()

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]] | None:
            if state.transfer(transfer_id) is None:
                return None  # resolved meanwhile (by another device, or a nested follow-up)
            update = ResolveUpdate(
                channel_address=state.channel_address,
                nonce=state.nonce + 1,
                initiator=self.address,
                transfer_id=transfer_id,
                encoded_resolver=resolver,
            )
            return update, {}

        previous = answer.new if answer is not None else self.state
        transfer = previous.transfer(transfer_id)
        new = await self._propose_locked(build, with_answer=answer)
        if new is None or transfer is None:
            return False
        index = new.asset_index(transfer.asset_id)
        assert index is not None
        paid = new.balances[index][1] > previous.balances[index][1]
        record = self._store.payment(serialization.hex_bytes(transfer.payment_id))
        if record is not None:
            # A cancel fails the payment; it is refunded once the node refunds the sender's side.
            self._store.save_payment(replace(record, status="completed" if paid else "failed"))
        self._signal_state()
        return True

    async def _settle_incoming_locked(self, transfer_id: bytes, kind: DefinitionKind) -> None:
        """Resolve an incoming Linked or HashLock transfer whose secret this client holds; cancel an
        incoming HashLock that expired (its payment is refunded to the sender)."""
        transfer = self.state.transfer(transfer_id)
        if transfer is None:
            return
        now = int(time.time())
        lock_hash, expiry = _lock_of(kind, transfer.encoded_state)
        resolver: bytes | None = None
        if expiry is not None and now >= expiry:
            resolver = PreimageResolver(ZERO_BYTES32).encode()
        else:
            record = self._store.payment(serialization.hex_bytes(transfer.payment_id))
            if record is not None and record.secret and keccak256(record.secret) == lock_hash:
                resolver = PreimageResolver(record.secret).encode()
            elif expiry is not None:
                self._expire_at(expiry)
        if resolver is None:
            return
        try:
            await self._resolve_incoming_locked(transfer_id, resolver)
        except ConnextError as exc:
            logger.warning("could not settle the incoming transfer 0x%s: %s", transfer_id.hex(), exc)

    def _expire_at(self, expiry: int) -> None:
        """Wake the follow-up when an incoming HashLock expires, to cancel it."""
        if expiry in self._expiry_timers:
            return
        self._expiry_timers.add(expiry)

        async def wake() -> None:
            await asyncio.sleep(max(0.0, expiry - time.time()) + 0.05)
            self._expiry_timers.discard(expiry)
            await self._inbox.put({"type": "expiry"})

        self._background(wake())

    def _note_countersigned(self, previous: ChannelState, update: Update, meta: dict[str, Any]) -> None:
        """Record what a node proposal the user countersigned did to the user's payments."""
        if isinstance(update, CreateUpdate):
            kind = self._definitions.get(update.definition)
            if kind not in policy.PAYMENT_KINDS or kind is None:
                return
            payment_hex = serialization.hex_bytes(update.payment_id)
            secret = self._decrypt_secret(kind, update.encoded_state, meta)
            sender = meta.get("sender")
            self._store.save_payment(
                PaymentRecord(
                    payment_id=payment_hex,
                    direction="incoming",
                    kind=kind.value,
                    sender=sender if isinstance(sender, str) else self.node_address,
                    recipient=self.address,
                    asset_id=update.asset_id,
                    amount=update.amount,
                    status="forwarded",
                    secret=secret,
                    meta=meta,
                )
            )
        elif isinstance(update, ResolveUpdate):
            transfer = previous.transfer(update.transfer_id)
            if transfer is None or transfer.initiator != self.address:
                return
            record = self._store.payment(serialization.hex_bytes(transfer.payment_id))
            if record is None:
                return
            index = previous.asset_index(transfer.asset_id)
            refunded = index is not None and self.state.balances[index][1] > previous.balances[index][1]
            self._store.save_payment(replace(record, status="refunded" if refunded else "completed"))

    def _decrypt_secret(self, kind: DefinitionKind, encoded_state: bytes, meta: dict[str, Any]) -> bytes:
        """The preimage the sender encrypted to this user, when it opens the transfer; else empty."""
        encrypted = meta.get("encryptedPreimage")
        if not isinstance(encrypted, str) or kind is DefinitionKind.SIGNED:
            return b""
        try:
            preimage = ecies.decrypt(
                self._key, serialization.parse_bytes(encrypted, field="encryptedPreimage")
            )
        except ProtocolError as exc:
            logger.warning("an incoming payment's encrypted preimage does not decrypt: %s", exc)
            return b""
        lock_hash, _ = _lock_of(kind, encoded_state)
        if keccak256(preimage) != lock_hash:
            logger.warning("an incoming payment's decrypted preimage does not open its lock")
            return b""
        return preimage

    def _record_from_node(self, payment: dict[str, Any]) -> PaymentRecord:
        sender = str(payment.get("sender") or "")
        return PaymentRecord(
            payment_id=str(payment["paymentId"]),
            direction="outgoing" if sender == self.address else "incoming",
            kind=str(payment.get("kind", "")),
            sender=sender,
            recipient=str(payment.get("recipient") or ""),
            asset_id=str(payment.get("assetId", ETH)),
            amount=int(payment.get("amount", 0)),
            status=str(payment.get("status", "")),
            failure=str(payment.get("failure") or ""),
            meta=dict(payment.get("meta") or {}),
        )

    def _note_payment_news(self, payment: dict[str, Any]) -> dict[str, Any]:
        """Keep the node's news of a payment in the store; the payment as the client reports it."""
        try:
            news = self._record_from_node(payment)
        except (KeyError, TypeError, ValueError):
            return payment
        known = self._store.payment(news.payment_id)
        if known is not None:
            news = replace(news, direction=known.direction, meta=known.meta or news.meta)
            if known.status in FINAL_STATUSES and news.status not in FINAL_STATUSES:
                # This side is settled in a doubly signed state; the node's news lags (it settles
                # the other side next, possibly while that user is offline).
                news = replace(news, status=known.status)
        record = self._store.save_payment(news)
        self._signal_state()
        return record.as_json()

    async def _wait_payment(
        self, payment_hex: str, statuses: tuple[str, ...], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self._store.payment(payment_hex)
            if record is not None and record.status in statuses:
                return record.as_json()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"payment {payment_hex} not settled within {timeout}s")
            await self._next_change(remaining)

    # -- the update exchange (under the lock) -------------------------------------------------------

    async def _propose_locked(
        self, build: Build, *, meta: dict[str, Any] | None = None, with_answer: _PreparedAnswer | None = None
    ) -> ChannelState | None:
        """Sign and send the update `build` makes from the latest state (with `meta` for a transfer's
        creation). When the node holds a proposal open, the client checks and countersigns it and
        sends that answer with its own update built on top, in one request (a stream of proposals
        cannot starve the user's updates); on a stale state it syncs first. Returns the new state, or
        None when `build` finds nothing to do. `with_answer`: a proposal already checked and signed,
        sent with the update."""
        prepared: _PreparedAnswer | None = with_answer
        for _ in range(MAX_UPDATE_ATTEMPTS):
            base = prepared.new if prepared is not None else self.state
            built = build(base)
            if built is None:
                if prepared is not None:
                    await self._send_answer_locked(prepared)
                return None
            update, chain_deposits = built
            new, signature = self._sign_own(update, chain_deposits, base=base)
            body: dict[str, Any] = {
                "update": serialization.update_to_json(update),
                "signature": serialization.hex_bytes(signature),
            }
            if meta:
                body["meta"] = meta
            if prepared is not None:
                body["answer"] = {
                    "nonce": str(prepared.new.nonce),
                    "signature": serialization.hex_bytes(prepared.signature),
                }
            try:
                answer = await self.api.post("/api/channel/updates", body)
            except NodeError as exc:
                prepared = None
                if exc.code == "update_pending" and exc.details.get("proposal"):
                    if "latest" in exc.details:
                        self._adopt_if_newer(self._verified(exc.details["latest"]))
                    prepared = await self._prepare_answer_locked(exc.details["proposal"])
                    if prepared is not None:
                        continue
                if not await self._recover_locked(exc):
                    self._store.clear_pending(self.channel_address)
                    raise
                continue
            if prepared is not None:
                self._adopt_answered(prepared, prepared.node_signature)
            self._accept_answer(answer, new, signature)
            if prepared is not None:
                self._background_follow_up()
            return new
        raise ConnextError("update_contended", "the node kept proposing updates; try again")

    def _sign_own(
        self,
        update: Update,
        chain_deposits: dict[str, tuple[int, int]],
        *,
        base: ChannelState | None = None,
    ) -> tuple[ChannelState, bytes]:
        """Derive and sign the user's own update (on `base`, the latest state by default); it is kept
        as pending until answered. No transfer of the user's has an on-chain window its watcher could
        not answer in."""
        if isinstance(update, CreateUpdate):
            policy.check_window("transfer_timeout", update.transfer_timeout, self._min_window)
        context = self._context(chain_deposits)
        try:
            new, signature = validation.initiate_update(
                base if base is not None else self.state, update, self._signer, context=context
            )
        except ProtocolError as exc:
            raise policy.from_protocol(exc) from None
        self._store.save_pending(update, signature)
        return new, signature

    async def _recover_locked(self, exc: NodeError) -> bool:
        """Bring the client up to date after a refusal the client can recover from; False otherwise."""
        if exc.code == "channel_reconciling" or (
            exc.code in ("stale_nonce", "nonce_gap") and self._node_behind(exc.details.get("latest"))
        ):
            self._store.clear_pending(self.channel_address)
            await self._reconcile_locked()
            return True
        if exc.code == "update_pending":
            if "latest" in exc.details:
                self._adopt_if_newer(self._verified(exc.details["latest"]))
            await self._answer_proposal_locked(exc.details.get("proposal"))
            return True
        if exc.code in ("stale_nonce", "nonce_gap"):
            self._store.clear_pending(self.channel_address)
            if "latest" in exc.details:
                self._adopt_if_newer(self._verified(exc.details["latest"]))
            else:
                await self._sync_locked()
            return True
        return False

    def _accept_answer(self, answer: dict[str, Any], new: ChannelState, user_signature: bytes) -> None:
        node_signature = _hex(answer.get("nodeSignature"), "nodeSignature")
        try:
            signer = signing.recover_signer(new, node_signature)
        except ProtocolError as exc:
            raise policy.from_protocol(exc) from None
        if signer != self.node_address:
            raise ValidationError(
                "bad_signature", "the node's countersignature is not over the state we signed"
            )
        self._adopt(SignedChannelState(new, node_signature, user_signature))

    async def _answer_proposal_locked(self, proposal: dict[str, Any] | None) -> None:
        """Validate the node's open proposal and countersign it; refusals are emitted, never signed."""
        prepared = await self._prepare_answer_locked(proposal)
        if prepared is None or await self._answer_with_resolve_locked(prepared):
            return
        await self._send_answer_locked(prepared)
        await self._follow_up_locked()

    async def _answer_with_resolve_locked(self, prepared: _PreparedAnswer) -> bool:
        """An incoming Linked or HashLock payment whose secret this client holds (decrypted from the
        proposal): countersign it and resolve it in one request. True when the proposal is answered;
        False when there is nothing to resolve at once or the request did not go through (the caller
        then answers the proposal alone)."""
        update = prepared.update
        if not isinstance(update, CreateUpdate) or update.initiator != self.node_address:
            return False
        kind = self._definitions.get(update.definition)
        if kind not in PREIMAGE_KINDS:
            return False
        created = next((t for t in prepared.new.transfers if t.create_nonce == prepared.new.nonce), None)
        if created is None or created.responder != self.address:
            return False
        secret = self._decrypt_secret(kind, update.encoded_state, prepared.meta)
        lock_hash, expiry = _lock_of(kind, created.encoded_state)
        if not secret or keccak256(secret) != lock_hash or (expiry is not None and time.time() >= expiry):
            return False
        if self._disputes is not None and self._disputes.seen_disputed():
            return False
        try:
            await self._resolve_incoming_locked(
                created.transfer_id, PreimageResolver(secret).encode(), answer=prepared
            )
        except ConnextError as exc:
            logger.warning("could not resolve the incoming payment at once: %s", exc)
        return self.state.nonce >= prepared.new.nonce

    async def _prepare_answer_locked(self, proposal: dict[str, Any] | None) -> _PreparedAnswer | None:
        """The client's checked countersignature of the node's open proposal (built on the latest
        state), or None when there is nothing to answer or the client refuses (emitted)."""
        if not proposal:
            return None
        try:
            update = serialization.update_from_json(proposal["update"])
            node_signature = _hex(proposal.get("nodeSignature"), "nodeSignature")
        except (ProtocolError, KeyError, TypeError) as exc:
            self._refused(ValidationError("malformed", f"unreadable proposal: {exc}"), None)
            return None
        if update.nonce <= self.state.nonce:
            return None  # already answered (by this client or another device of the same user)
        if update.nonce > self.state.nonce + 1:
            await self._sync_locked(answer_proposal=False)
            if update.nonce != self.state.nonce + 1:
                return None
        chain_deposits: dict[str, tuple[int, int]] = {}
        if isinstance(update, DepositUpdate) and self._chain is not None:
            chain = self._chain
            block = await asyncio.to_thread(chain.block_number)
            totals = await asyncio.to_thread(
                chain.deposit_totals, self.channel_address, update.asset_id, block
            )
            chain_deposits[update.asset_id] = totals
        dispute: ChainDispute | None = None
        # Checked against the chain's own record of a past dispute, never the node's word; a resolve
        # needs no read of its own when the watcher found no dispute moments ago.
        needs_reading = isinstance(update, ResumeUpdate) or (
            isinstance(update, ResolveUpdate) and not self._recently_undisputed()
        )
        if needs_reading and self._chain is not None:
            dispute = await asyncio.to_thread(
                disputes.read_chain_dispute, self._chain.w3, self.state, self.supported_assets
            )
        meta = proposal.get("meta") or {}
        if not isinstance(meta, dict):
            self._refused(ValidationError("bad_meta", "the proposal's meta is not an object"), update)
            return None
        previous = self.state
        try:
            new = policy.check_node_proposal(
                previous,
                update,
                node_signature,
                context=replace(self._context(chain_deposits), dispute=dispute),
                meta=meta,
                min_window=self._min_window,
            )
        except ValidationError as exc:
            self._refused(exc, update)
            return None
        signature = signing.sign_state(new, self._signer)
        return _PreparedAnswer(previous, update, new, node_signature, signature, meta)

    async def _send_answer_locked(self, prepared: _PreparedAnswer) -> None:
        new = prepared.new
        try:
            answer = await self.api.post(
                "/api/channel/countersign",
                {"nonce": str(new.nonce), "signature": serialization.hex_bytes(prepared.signature)},
            )
        except NodeError as exc:
            if exc.code != "no_proposal":
                raise
            await self._sync_locked(answer_proposal=False)  # the node moved on (another device answered)
            return
        answered = self._verified(answer)
        if answered.state.state_hash != new.state_hash:
            raise ValidationError("state_mismatch", "the node stored a different state than the proposal")
        self._adopt_answered(prepared, answered.node_signature)

    def _adopt_answered(self, prepared: _PreparedAnswer, node_signature: bytes) -> None:
        """Adopt the node's proposal the user countersigned, and record what it did to payments."""
        self._adopt(SignedChannelState(prepared.new, node_signature, prepared.signature))
        self._note_countersigned(prepared.previous, prepared.update, prepared.meta)

    def _background_follow_up(self) -> None:
        """Run the follow-up of a proposal answered inside another update once the lock is free."""

        async def follow_up() -> None:
            async with self._lock:
                await self._follow_up_locked()

        self._background(follow_up())

    def _refused(self, error: ValidationError, update: Update | None) -> None:
        logger.warning("refused to countersign the node's proposal: %s", error)
        self._events.emit(
            "update.refused",
            {
                "code": error.code,
                "message": error.message,
                "update": serialization.update_to_json(update) if update is not None else None,
            },
        )

    async def _follow_up_locked(self) -> None:
        """What the user owes the channel after a change: resolve the node's withdraw transfers
        (reclaimed collateral) with the user's commitment signature; resolve incoming payments whose
        secret the user holds; cancel incoming HashLocks that expired (freeing the node's collateral)."""
        for transfer in self.state.transfers:
            if transfer.initiator != self.state.node or transfer.responder != self.address:
                continue
            kind = self._definitions.get(transfer.definition)
            if kind is DefinitionKind.WITHDRAW:
                await self._resolve_node_withdraw_locked(transfer.transfer_id)
            elif kind in (DefinitionKind.LINKED, DefinitionKind.HASHLOCK):
                await self._settle_incoming_locked(transfer.transfer_id, kind)

    async def _resolve_node_withdraw_locked(self, transfer_id: bytes) -> None:
        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]] | None:
            transfer = state.transfer(transfer_id)
            if transfer is None:
                return None  # resolved meanwhile (by another device of this user)
            withdraw = WithdrawState.decode(transfer.encoded_state)
            signature = signing.sign_withdraw(withdraw.commitment(state.chain_id), self._signer)
            update = ResolveUpdate(
                channel_address=state.channel_address,
                nonce=state.nonce + 1,
                initiator=self.address,
                transfer_id=transfer_id,
                encoded_resolver=WithdrawResolver(signature).encode(),
            )
            return update, {}

        try:
            await self._propose_locked(build)
        except ConnextError as exc:
            logger.warning("could not resolve the node's withdraw 0x%s: %s", transfer_id.hex(), exc)

    async def _sync_locked(self, *, answer_proposal: bool = True, credit_deposits: bool = False) -> None:
        """Match the node: adopt its latest state when newer, re-send the update left unanswered,
        answer its open proposal, resolve what waits for the user, credit uncredited deposits."""
        channel = await self._fetch_channel()
        if channel is None and self._signed is not None:
            await self._reconcile_locked()
            channel = await self._fetch_channel()
        if channel is None:
            raise ConnextError("node_lost_channel", "the node has no record of this channel")
        node_latest = self._verified(channel)
        if channel.get("fenced") or (
            self._signed is not None and node_latest.state.nonce < self._signed.state.nonce
        ):
            await self._reconcile_locked()
            channel = await self._fetch_channel() or channel
            node_latest = self._verified(channel)
        self._adopt_if_newer(node_latest)
        pending = self._store.pending(self.channel_address)
        if (
            pending is not None
            and pending.update.nonce == self.state.nonce + 1
            and channel.get("proposal") is None
        ):
            await self._resend_locked(pending.update, pending.signature)
        if answer_proposal:
            await self._answer_proposal_locked(channel.get("proposal"))
            await self._follow_up_locked()
        if credit_deposits and self._chain is not None:
            for asset_id in self.supported_assets:
                try:
                    await self._credit_deposit_locked(asset_id)
                except NodeError as exc:
                    if exc.code != "deposit_exceeds_chain":
                        raise
                    chain = self._chain
                    _, user_total = await asyncio.to_thread(
                        chain.deposit_totals,
                        self.channel_address,
                        asset_id,
                        await asyncio.to_thread(chain.block_number),
                    )
                    self._background(self._ensure_credited(asset_id, user_total, DEFAULT_WAIT_SECONDS))

    async def _resend_locked(self, update: Update, signature: bytes) -> None:
        """Send again exactly the update signed before a crash or a lost answer (never a new one)."""
        try:
            new = validation.validate_update(
                self.state, update, signature, context=self._context({}, lenient=True)
            )
        except ProtocolError:
            self._store.clear_pending(self.channel_address)
            return
        body: dict[str, Any] = {
            "update": serialization.update_to_json(update),
            "signature": serialization.hex_bytes(signature),
        }
        meta = self._sent_meta(update)
        if meta:
            body["meta"] = meta
        try:
            answer = await self.api.post("/api/channel/updates", body)
        except NodeError as exc:
            self._store.clear_pending(self.channel_address)
            logger.info("the node refused the update left unanswered: %s", exc)
            return
        self._accept_answer(answer, new, signature)

    def _sent_meta(self, update: Update) -> dict[str, Any]:
        """The meta a payment's create was sent with (its record keeps it), so it can be sent again."""
        if not isinstance(update, CreateUpdate):
            return {}
        record = self._store.payment(serialization.hex_bytes(update.payment_id))
        if record is None or transfer_meta.meta_hash(record.meta) != update.meta_hash:
            return {}
        return record.meta

    # -- adopting states ----------------------------------------------------------------------------

    async def _fetch_channel(self) -> dict[str, Any] | None:
        try:
            channel: dict[str, Any] = await self.api.get("/api/channel")
        except NodeError as exc:
            if exc.code == "no_channel":
                return None
            raise
        if channel.get("channelAddress") != self.channel_address:
            raise ValidationError(
                "channel_address_mismatch",
                f"the node names channel {channel.get('channelAddress')}, this client computes {self.channel_address}",
            )
        return channel

    def _verified(self, body: dict[str, Any]) -> SignedChannelState:
        """A doubly signed state from the node's JSON, checked to be this channel's and signed by both."""
        try:
            state = serialization.channel_state_from_json(body["state"])
            node_signature = _hex(body.get("nodeSignature"), "nodeSignature")
            user_signature = _hex(body.get("userSignature"), "userSignature")
            signing.verify_state_signatures(state, node_signature, user_signature)
        except (ProtocolError, KeyError, TypeError) as exc:
            if isinstance(exc, ProtocolError):
                raise policy.from_protocol(exc) from None
            raise ValidationError("malformed", f"the node sent an unreadable state: {exc!r}") from None
        expected = {
            "channel_address": self.channel_address,
            "chain_id": self.chain_id,
            "node": self.node_address,
            "user": self.address,
        }
        for field, value in expected.items():
            if getattr(state, field) != value:
                raise ValidationError(
                    "wrong_channel", f"the node's state has {field} {getattr(state, field)}"
                )
        return SignedChannelState(state, node_signature, user_signature)

    def _node_behind(self, latest: Any) -> bool:
        """The node's latest state (from a refusal) is older than ours: its records were restored."""
        if not isinstance(latest, dict) or self._signed is None:
            return False
        return self._verified(latest).state.nonce < self._signed.state.nonce

    async def _reconcile_locked(self) -> None:
        """Show the node our latest doubly signed state. A node whose records are behind it (restored
        from a backup) adopts it, and signs nothing for the channel until it has; while it is still
        reading the chain's record of the time in between, wait and show it again."""
        signed = self._signed
        assert signed is not None, "nothing to reconcile with"
        body = {
            "state": serialization.channel_state_to_json(signed.state),
            "nodeSignature": serialization.hex_bytes(signed.node_signature),
            "userSignature": serialization.hex_bytes(signed.user_signature),
        }
        deadline = asyncio.get_running_loop().time() + RECONCILE_WAIT_SECONDS
        while True:
            try:
                answer = await self.api.post("/api/channel/reconcile", body)
            except NodeError as exc:
                if exc.code == "stale_state" and "latest" in exc.details:  # the node is ahead: adopt
                    self._adopt_if_newer(self._verified(exc.details["latest"]))
                    return
                raise
            self._adopt_if_newer(self._verified(answer))
            if not answer.get("fenced"):
                logger.info("reconciled the channel with the node at nonce %s", signed.state.nonce)
                return
            if answer.get("waitingFor") != "chain":
                raise ConnextError(
                    "channel_fenced",
                    "the chain shows this channel at a later nonce than this client holds; the node"
                    " signs nothing for it until that state is shown",
                )
            if asyncio.get_running_loop().time() > deadline:
                raise ConnextError(
                    "channel_reconciling", "the node is still reading the chain before it signs again"
                )
            await asyncio.sleep(RECONCILE_RETRY_SECONDS)

    def _adopt_if_newer(self, signed: SignedChannelState) -> None:
        if self._signed is None or signed.state.nonce > self._signed.state.nonce:
            self._adopt(signed)
        elif signed.state.nonce < self._signed.state.nonce:
            logger.warning(
                "the node's latest state (nonce %s) is behind ours (%s)",
                signed.state.nonce,
                self._signed.state.nonce,
            )

    def _adopt(self, signed: SignedChannelState, *, restoring: bool = False) -> None:
        previous = self._signed.state if self._signed is not None else None
        self._store.save_latest(signed)
        self._signed = signed
        self._signal_state()
        state = signed.state
        if not restoring:
            for index, asset_id in enumerate(state.asset_ids):
                before = self._processed_user(previous, asset_id) if previous is not None else 0
                after = state.processed_deposits[index][1]
                if after > before:
                    self._events.emit(
                        "deposit.confirmed",
                        {
                            "assetId": asset_id,
                            "amount": str(after - before),
                            "totalDepositsUser": str(after),
                            "nonce": state.nonce,
                        },
                    )
        self._events.emit("channel.updated", {"nonce": state.nonce, "channelAddress": state.channel_address})

    async def _open_locked(self) -> None:
        """Open the channel with the node's dispute timeout, once the watcher can answer inside it."""
        policy.check_window("timeout", int(self._config["disputeTimeout"]), self._min_window)
        update = SetupUpdate(
            channel_address=self.channel_address,
            nonce=1,
            initiator=self.address,
            chain_id=self.chain_id,
            node=self.node_address,
            user=self.address,
            timeout=int(self._config["disputeTimeout"]),
        )
        try:
            new, signature = validation.initiate_update(None, update, self._signer, context=self._context({}))
        except ProtocolError as exc:
            raise policy.from_protocol(exc) from None
        answer = await self.api.post(
            "/api/channel",
            {"update": serialization.update_to_json(update), "signature": serialization.hex_bytes(signature)},
        )
        if answer.get("state", {}).get("nonce") == "1":
            self._accept_answer(answer, new, signature)
        else:  # opened meanwhile by another device: take the node's latest, verified
            self._adopt(self._verified(answer), restoring=True)

    # -- the websocket ------------------------------------------------------------------------------

    async def _run_socket(self) -> None:
        failures = 0
        while not self._closed:
            try:
                await self._socket_session()
                failures = 0
            except asyncio.CancelledError:
                raise
            except AuthenticationError:
                with contextlib.suppress(ConnextError):
                    await self.api.log_in()
            except Exception as exc:
                logger.info("websocket to the node lost: %r", exc)
            if self._closed:
                return
            self._events.emit("connection.lost", {"attempt": failures + 1})
            await asyncio.sleep(RECONNECT_BACKOFF[min(failures, len(RECONNECT_BACKOFF) - 1)])
            failures += 1

    async def _socket_session(self) -> None:
        assert self._session is not None
        async with self._session.ws_connect(
            self.api.ws_url, heartbeat=20, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        ) as ws:
            await ws.send_json({"type": "auth", "token": self.api.token, "id": "auth"})
            reply = await ws.receive_json(timeout=15)
            if reply.get("type") == "error" and reply.get("code") in ("invalid_token", "token_expired"):
                raise AuthenticationError(str(reply["code"]), str(reply.get("message", "")), 401)
            if reply.get("type") != "authenticated":
                raise NodeError(str(reply.get("code", "bad_reply")), f"websocket auth answered {reply}", 400)
            await self._inbox.put({"type": "sync"})
            self.api.attach_socket(ws.send_json)
            try:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        try:
                            frame = json.loads(message.data)
                        except ValueError:
                            continue
                        if not isinstance(frame, dict):
                            continue
                        if frame.get("type") == "event":
                            await self._inbox.put(frame)
                        elif frame.get("type") == "response":
                            self.api.socket_response(frame)
                    elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
            finally:
                self.api.detach_socket()

    async def _process_inbox(self) -> None:
        """Handle syncs and the node's pushes one at a time, in order."""
        while True:
            frame = await self._inbox.get()
            try:
                await self._handle_frame(frame)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("handling %s failed: %r", frame.get("event", frame.get("type")), exc)
                if frame.get("type") == "sync" or isinstance(exc, NodeUnavailableError):
                    # A sync must happen: try again. So must one after a push the node could not be
                    # asked about (its proposal, say, whose countersignature it failed to take): a
                    # proposal left unanswered keeps the channel busy for every payment of the user's.
                    await asyncio.sleep(1)
                    await self._inbox.put({"type": "sync"})

    async def _handle_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "expiry":
            async with self._lock:
                await self._follow_up_locked()
            return
        if frame.get("type") == "sync":
            async with self._lock:
                await self._sync_locked(credit_deposits=True)
                await self._settle_sending_locked()
            await self._poll_withdrawals()
            self._events.emit("channel.synced", self.get_channel())
            return
        event, payload = str(frame.get("event")), frame.get("payload") or {}
        if event == "update.proposed":
            async with self._lock:
                await self._answer_proposal_locked(payload)
        elif event == "channel.updated":
            async with self._lock:
                if int(payload.get("nonce", 0)) > self.state.nonce:
                    self._adopt_if_newer(self._verified(payload))
                    await self._follow_up_locked()
        elif event == "deposit.confirmed":  # the node's watcher sees more on chain than is credited
            asset_id = normalize_address(payload.get("assetId", ETH))
            block = int(payload.get("blockNumber", 0)) or None
            if self._chain is not None and asset_id in self.supported_assets:
                async with self._lock:
                    await self._credit_deposit_locked(asset_id, block)
        elif event.startswith("withdrawal."):
            self._note_withdrawal(payload, event)
        elif event.startswith("transfer."):
            self._note_payment_news(payload)
            self._events.emit(event, payload)
        else:
            self._events.emit(event, payload)

    # -- helpers ------------------------------------------------------------------------------------

    def _context(self, chain_deposits: dict[str, tuple[int, int]], *, lenient: bool = False) -> UpdateContext:
        deposits = chain_deposits
        if lenient:  # re-checking our own signed update: its claimed totals are what we read then
            deposits = dict.fromkeys(self.supported_assets, (2**256 - 1, 2**256 - 1))
        return UpdateContext(now=int(time.time()), definitions=self._definitions, chain_deposits=deposits)

    def _definition(self, kind: DefinitionKind) -> str:
        return next(address for address, known in self._definitions.items() if known is kind)

    def _asset(self, asset_id: str) -> str:
        asset_id = arguments.address(asset_id, "asset_id")
        if asset_id not in self.supported_assets:
            raise InvalidArgumentError("unknown_asset", f"the node does not serve asset {asset_id}")
        return asset_id

    def _need_chain(self) -> UserChain:
        if self._chain is None:
            raise ConnextError(
                "no_chain_rpc", "this needs a chain RPC: pass chain_rpc_url (the node publishes none)"
            )
        return self._chain

    @staticmethod
    def _processed_node(state: ChannelState, asset_id: str) -> int:
        index = state.asset_index(asset_id)
        return 0 if index is None else state.processed_deposits[index][0]

    @staticmethod
    def _node_balance(state: ChannelState, asset_id: str) -> int:
        index = state.asset_index(asset_id)
        return 0 if index is None else state.balances[index][0]

    @staticmethod
    def _processed_user(state: ChannelState | None, asset_id: str) -> int:
        if state is None:
            return 0
        index = state.asset_index(asset_id)
        return 0 if index is None else state.processed_deposits[index][1]

    def _signal_state(self) -> None:
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    async def _wait_state(
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
            await self._next_change(remaining)

    async def _next_change(self, within: float) -> bool:
        """Until the client's state or records change next (True), or `within` seconds pass (False).
        Not `asyncio.wait_for`: on Python 3.11 it can drop a cancellation that meets the wake-up."""
        changed = self._state_changed
        try:
            async with asyncio.timeout(within):
                await changed.wait()
        except builtins.TimeoutError:
            return False
        return True

    def _background(self, work: Any) -> None:
        if self._closed:  # closing: start nothing new
            work.close()
            return
        task = asyncio.ensure_future(work)
        self._tasks.append(task)

        def done(finished: asyncio.Future[Any]) -> None:
            with contextlib.suppress(ValueError):
                self._tasks.remove(task)
            if not finished.cancelled() and finished.exception() is not None:
                logger.warning("background work failed: %s", finished.exception())

        task.add_done_callback(done)


def _hex(value: object, field: str) -> bytes:
    try:
        return serialization.parse_bytes(value, field=field)
    except ProtocolError as exc:
        raise policy.from_protocol(exc) from None


def _fresh_private_key() -> bytes:
    """32 random bytes that are a valid secp256k1 key (all but a 2**-128 fraction are)."""
    while True:
        candidate = secrets.token_bytes(32)
        if 0 < int.from_bytes(candidate, "big") < signing.SECP256K1_N:
            return candidate


def _lock_of(kind: DefinitionKind, encoded_state: bytes) -> tuple[bytes, int | None]:
    """(lock hash, expiry or None) of a Linked or HashLock transfer state."""
    if kind is DefinitionKind.HASHLOCK:
        lock = HashLockState.decode(encoded_state)
        return lock.lock_hash, lock.expiry
    return LinkedState.decode(encoded_state).lock_hash, None
