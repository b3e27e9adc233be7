"""The connected client's watch over its channel: dispute steps and the node's liveness.

- Every `poll_seconds` it runs `ChannelDisputes.step` in a worker thread: a stale dispute is answered
  with the latest doubly signed state inside the consensus window; after it, what is owed to the user is
  defunded. A failing step is logged and tried again on the next poll; it never stops the client.
- Its speed sets the shortest on-chain window the client signs (`WatchOptions.min_window_seconds`):
  a dispute must stay answerable for a poll interval, the blocks the answer needs and a margin.
- When the websocket to the node has been down for `node_timeout_seconds` while the user has funds at
  stake (a balance, or a transfer it locked or can resolve), it emits `node.unresponsive` once per
  outage, so the app can offer the unilateral exit (`connext exit`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connext.client import policy
from connext.client.disputes import ChannelDisputes
from connext.client.events import EventBus
from connext.client.onchain import UserChain
from connext.client.store import ChannelSetup, Store
from connext.errors import InvalidArgumentError
from connext.protocol.encoding import normalize_address
from connext.protocol.types import ChannelState, DefinitionKind

logger = logging.getLogger("connext.client")


@dataclass(frozen=True)
class WatchOptions:
    poll_seconds: float = policy.DEFAULT_POLL_SECONDS  # how often the chain is read for the channel's dispute
    node_timeout_seconds: float = 120.0  # node unreachable this long with funds at stake: tell the user
    confirmations: int = policy.DEFAULT_CONFIRMATIONS  # blocks until an answer counts (1: mined)
    block_seconds: float = policy.DEFAULT_BLOCK_SECONDS  # the chain's block time
    margin_seconds: float = policy.DEFAULT_MARGIN_SECONDS  # on top: congestion, a slow RPC, a restart

    def __post_init__(self) -> None:
        if not self.poll_seconds > 0 or not self.node_timeout_seconds > 0:
            raise InvalidArgumentError("invalid_argument", "poll_seconds and node_timeout_seconds are > 0")
        if self.confirmations < 0 or self.block_seconds < 0 or self.margin_seconds < 0:
            raise InvalidArgumentError(
                "invalid_argument", "confirmations, block_seconds and margin_seconds are >= 0"
            )

    @property
    def min_window_seconds(self) -> int:
        """The shortest on-chain window the client signs (a transfer's, a HashLock's, the channel's)."""
        return policy.min_window(
            poll_seconds=self.poll_seconds,
            confirmations=self.confirmations,
            block_seconds=self.block_seconds,
            margin_seconds=self.margin_seconds,
        )


def funds_at_stake(state: ChannelState) -> dict[str, int]:
    """Per asset: the user's balance plus what is locked in the channel's transfers with the user."""
    stake: dict[str, int] = {}
    for index, asset_id in enumerate(state.asset_ids):
        if state.balances[index][1]:
            stake[asset_id] = state.balances[index][1]
    for transfer in state.transfers:
        stake[transfer.asset_id] = stake.get(transfer.asset_id, 0) + transfer.locked
    return stake


class ChannelWatch:
    """The watcher's background tasks on the client's loop."""

    def __init__(
        self,
        disputes: ChannelDisputes | None,
        events: EventBus,
        options: WatchOptions,
        latest: Callable[[], ChannelState | None],
    ) -> None:
        self._disputes = disputes
        self._events = events
        self._options = options
        self._latest = latest
        self._lost_since: float | None = None
        self._told = False
        events.on("connection.lost", self._lost)
        events.on("channel.synced", self._synced)

    def tasks(self) -> list[asyncio.Task[Any]]:
        tasks = [asyncio.create_task(self._watch_liveness(), name="connext-liveness")]
        if self._disputes is not None:
            tasks.append(asyncio.create_task(self._watch_disputes(), name="connext-disputes"))
        return tasks

    def _lost(self, payload: dict[str, Any]) -> None:
        if self._lost_since is None:
            self._lost_since = time.monotonic()

    def _synced(self, payload: dict[str, Any]) -> None:
        self._lost_since = None
        self._told = False

    async def _watch_disputes(self) -> None:
        assert self._disputes is not None
        while True:
            try:
                await asyncio.to_thread(self._disputes.step, idle_owed=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "a dispute watch step failed (tried again in %ss): %r", self._options.poll_seconds, exc
                )
            await asyncio.sleep(self._options.poll_seconds)

    async def _watch_liveness(self) -> None:
        interval = max(0.05, min(1.0, self._options.node_timeout_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            since = self._lost_since
            if since is None or self._told:
                continue
            down = time.monotonic() - since
            state = self._latest()
            stake = funds_at_stake(state) if state is not None else {}
            if down < self._options.node_timeout_seconds or not any(stake.values()):
                continue
            self._told = True
            logger.warning(
                "the node has not answered for %.0fs while you have funds in the channel; `connext exit`"
                " takes them out on chain without it",
                down,
            )
            self._events.emit(
                "node.unresponsive",
                {
                    "unreachableSeconds": round(down, 1),
                    "atStake": {asset: str(amount) for asset, amount in stake.items()},
                    "hint": "run `connext exit` (or dispute_channel) to take the funds out on chain",
                },
            )


def setup_from_config(
    config: dict[str, Any], *, channel_address: str, user: str, rpc_url: str
) -> ChannelSetup:
    """The channel's setup from the node's `GET /api/config`."""
    return ChannelSetup(
        channel_address=channel_address,
        chain_id=int(config["chainId"]),
        node=normalize_address(config["nodeAddress"]),
        user=user,
        factory=normalize_address(config["contracts"]["ChannelFactory"]),
        definitions={
            normalize_address(address): DefinitionKind(kind)
            for kind, address in config["transferDefinitions"].items()
        },
        assets=tuple(normalize_address(asset) for asset in config["supportedAssets"]),
        chain_rpc_url=rpc_url,
    )


def start_watch(
    *,
    setup: ChannelSetup,
    chain: UserChain | None,
    store: Store,
    events: EventBus,
    enabled: bool,
    options: WatchOptions,
    latest: Callable[[], ChannelState | None],
) -> tuple[ChannelDisputes | None, list[asyncio.Task[Any]]]:
    """Keep the channel's setup in the store (so `connext watch` and `connext exit` work without the node),
    and start the watch on the running loop. The dispute steps (None without a chain RPC) and the tasks."""
    store.save_setup(setup)
    disputes: ChannelDisputes | None = None
    if chain is not None:
        loop = asyncio.get_running_loop()

        def report(event: str, payload: dict[str, Any]) -> None:  # from the worker thread of a step
            loop.call_soon_threadsafe(events.emit, event, payload)

        disputes = ChannelDisputes(chain, store, setup, report=report)
    watch = ChannelWatch(disputes if enabled else None, events, options, latest)
    return disputes, watch.tasks()
