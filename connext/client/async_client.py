"""`AsyncClient`: the user's side of a channel with a connext-py node, on asyncio.

A thin facade: each method is one call into the part of the client that owns it, all of them sharing
one `ClientCore` (`connext.client.core`: identity, configuration, latest state, store, events, lock):
- `connext.client.session`: connecting, the websocket and its reconnects, the inbox, closing;
- `connext.client.exchange`: the one-update-at-a-time exchange of signatures with the node;
- `connext.client.incoming`: the node's transfers to the user (resolving, recording, expiring);
- `connext.client.payments`: the user's payments, links, records and history;
- `connext.client.funds`: deposits, collateral, withdrawals and swaps;
- disputes run `connext.client.disputes.ChannelDisputes` (started with the session's watch) in a thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from connext.client import arguments
from connext.client.core import DEFAULT_WAIT_SECONDS, ETH, PAYMENT_TRANSFER_TIMEOUT, ClientCore
from connext.client.events import Callback, Predicate
from connext.client.exchange import Exchange
from connext.client.funds import Funds
from connext.client.incoming import Incoming
from connext.client.node_api import NodeApi
from connext.client.payments import (
    FINAL_STATUSES,
    HISTORY_PAGE,
    LINK_LIFETIME_SECONDS,
    MAX_HISTORY_PAGE,
    SETTLE_WAIT_SECONDS,
    InFlight,
    Payments,
)
from connext.client.session import Session
from connext.client.watcher import WatchOptions
from connext.protocol.types import ChannelState

__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "ETH",
    "FINAL_STATUSES",
    "HISTORY_PAGE",
    "LINK_LIFETIME_SECONDS",
    "MAX_HISTORY_PAGE",
    "PAYMENT_TRANSFER_TIMEOUT",
    "SETTLE_WAIT_SECONDS",
    "AsyncClient",
    "InFlight",
]


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
        key, watch = arguments.key_bytes(private_key), watch_options or WatchOptions()
        self._core = ClientCore(node_url, key, store_path, chain_rpc_url, watch_disputes, watch)
        self._exchange = Exchange(self._core)
        self._incoming = Incoming(self._core, self._exchange)
        self._exchange.follow_up = self._incoming
        self._payments = Payments(self._core, self._exchange, self._incoming)
        self._funds = Funds(self._core, self._exchange)
        self._session = Session(self._core, self._exchange, self._incoming, self._payments, self._funds)

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
            await client._session.start()
        except BaseException:
            await client.close()
            raise
        return client

    async def close(self) -> None:
        """Stop the websocket and background work; close the store."""
        await self._session.close()

    async def logout(self) -> None:
        """Revoke this client's token at the node (its websocket closes on every node process), then
        close the client: a client left running would only log in again."""
        await self._session.logout()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- identity -----------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._core.address

    @property
    def channel_address(self) -> str:
        return self._core.channel_address

    @property
    def chain_id(self) -> int:
        return self._core.chain_id

    @property
    def node_address(self) -> str:
        return self._core.node_address

    @property
    def supported_assets(self) -> tuple[str, ...]:
        return self._core.supported_assets

    @property
    def config(self) -> dict[str, Any]:
        """The node's configuration as `GET /api/config` answered it."""
        return dict(self._core.config)

    @property
    def api(self) -> NodeApi:
        return self._core.api

    # -- events -------------------------------------------------------------------------------------

    def on(self, event: str, callback: Callback) -> None:
        self._core.events.on(event, callback)

    def once(self, event: str, callback: Callback) -> None:
        self._core.events.once(event, callback)

    def off(self, event: str, callback: Callback) -> None:
        self._core.events.off(event, callback)

    async def wait_for(
        self, event: str, timeout: float | None = DEFAULT_WAIT_SECONDS, predicate: Predicate | None = None
    ) -> dict[str, Any]:
        """The payload of the next `event` (that matches `predicate`); `TimeoutError` after `timeout`."""
        return await self._core.events.wait_for(event, timeout, predicate)

    # -- disputes (connext.client.disputes; the user sends and pays the gas) ------------------------

    async def dispute_channel(self) -> str:
        """Take the latest doubly signed state to the chain (starts a dispute, or answers a stale one)."""
        return await asyncio.to_thread(self._core.need_disputes().dispute_channel)

    async def defund_channel(self, assets: list[str] | None = None) -> str:
        """In the defund phase: pay out the disputed balances of `assets` (default: those owed to you)."""
        return await asyncio.to_thread(self._core.need_disputes().defund_channel, assets)

    async def dispute_transfer(self, payment_id: str | bytes) -> str:
        """In the defund phase: prove an active transfer of the disputed state, starting its window."""
        return await asyncio.to_thread(self._core.need_disputes().dispute_transfer, payment_id)

    async def defund_transfer(self, payment_id: str | bytes) -> str:
        """Pay out a disputed transfer: yours refunded after its window, an incoming one with its secret."""
        return await asyncio.to_thread(self._core.need_disputes().defund_transfer, payment_id)

    async def dispute_status(self) -> dict[str, Any]:
        """The channel's dispute on chain and what the chain still owes you of the latest state."""
        outlook = await asyncio.to_thread(self._core.need_disputes().outlook)
        return {**outlook.view.as_json(), "owed": [vars(item) for item in outlook.owed]}

    # -- reading the channel ------------------------------------------------------------------------

    @property
    def state(self) -> ChannelState:
        return self._core.state

    async def settle(self, *, timeout: float = SETTLE_WAIT_SECONDS) -> dict[str, InFlight]:
        """Finish what the node has for this user before a balance is read: sync (answer its open
        proposal, resolve incoming payments whose secret this client holds), then wait up to `timeout`
        while a linked payment to this user is still on its way (the node forwards it once the user is
        online, and the client resolves it at once). What is still in flight then, per asset, is
        returned: amounts coming in and going out, and how many payments each."""
        return await self._payments.settle(timeout)

    def get_free_balance(self, asset_id: str = ETH) -> dict[str, int]:
        """The user's and the node's balance of `asset_id` in the latest doubly signed state."""
        return self._core.get_free_balance(asset_id)

    def get_channel(self) -> dict[str, Any]:
        """The latest doubly signed state: nonce, per-asset balances and deposits, active transfers."""
        return self._core.get_channel()

    async def restore_state(self) -> dict[str, Any]:
        """Replace the local state with the node's latest, after verifying both signatures on it.

        Refused (`ValidationError`) when the node's state is older than the one held locally."""
        await self._exchange.restore_state()
        return self._core.get_channel()

    # -- deposits and collateral --------------------------------------------------------------------

    async def deposit(self, amount: int, asset_id: str = ETH, *, wait: bool = True) -> str:
        """Send `amount` of `asset_id` to the channel address from the user's key and have it credited.

        With `wait` (default) returns once the deposit is credited in a doubly signed state; otherwise
        once the transaction is sent (crediting continues in the background: `deposit.confirmed`).
        Returns the transaction hash."""
        return await self._funds.deposit(amount, asset_id, wait)

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
        return await self._funds.request_collateral(asset_id, amount, wait, timeout)

    # -- swaps --------------------------------------------------------------------------------------

    async def get_swap_rates(self) -> dict[str, Any]:
        """The node's swap offer (`GET /api/swap/rates`): per direction its rate (`rate`, a fraction of
        take base units per give base unit), mid price, spread and limits; the node pushes
        `swap.rates` when a price moves."""
        return await self._funds.get_swap_rates()

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
        return await self._funds.swap(amount, from_asset, to_asset, max_slippage, timeout)

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
        return await self._funds.withdraw(amount, asset_id, recipient, wait)

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
        return await self._payments.transfer(recipient, amount, asset_id, meta, payment_id)

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
        return await self._payments.conditional_transfer(
            kind,
            amount,
            recipient,
            asset_id,
            lock_hash=lock_hash,
            expiry=expiry,
            signer=signer,
            payment_id=payment_id,
            meta=meta,
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
        return await self._incoming.resolve_condition(payment_id, preimage, signature, data)

    async def create_link(
        self, amount: int, asset_id: str = ETH, *, expires_in: int = LINK_LIFETIME_SECONDS
    ) -> dict[str, str]:
        """A link payment: whoever holds its payment id and secret can redeem it into their channel.
        After `expires_in` seconds an unredeemed link can no longer be redeemed (`link_expired`): the
        node refunds it to the sender on its own (`transfer.failed`), or at once on `cancel_transfer`.
        Returns `{"payment_id", "secret", "url"}` once the node registered the payment (so the link
        can be redeemed at once); the secret is in the URL's fragment."""
        return await self._payments.create_link(amount, asset_id, expires_in)

    async def redeem_link(
        self, payment_id: str | bytes, secret: str | bytes, *, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> dict[str, Any]:
        """Claim a link payment into this channel with its secret. Returns the payment's record once
        this client resolved the transfer the node created for it (`link_closed`, `link_expired`,
        `already_redeemed`, `bad_preimage`, `unknown_payment` when the node refuses)."""
        return await self._payments.redeem_link(payment_id, secret, timeout)

    async def cancel_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        """Take back a payment nobody received: a link after it expired, or a payment the node could
        not deliver yet. The refund arrives as the node's resolve (`transfer.failed`)."""
        return await self._payments.cancel_transfer(payment_id)

    async def get_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        """One payment this user sent or received: the node's record, or the client's own when the node
        cannot be reached (`unknown_payment` when neither knows it)."""
        return await self._payments.get_transfer(payment_id)

    async def wait_for_transfer(
        self, payment_id: str | bytes, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> dict[str, Any]:
        """The payment once it is completed, refunded or failed, as this client knows it; at once when it
        is already. Unlike waiting for the `transfer.resolved` event, news that arrived before the call
        (even before `transfer()` returned: the node may settle a payment that fast) is not missed.
        `TimeoutError` after `timeout`."""
        return await self._payments.wait_for_transfer(payment_id, timeout)

    async def get_transfer_history(
        self, *, limit: int = HISTORY_PAGE, before: str | bytes | None = None
    ) -> list[dict[str, Any]]:
        """The payments this user sent or received, newest first, at most `limit` (1 to 500); `before`
        (a payment id, the last of the page you have) gives the next page, and a page shorter than
        `limit` is the last. The client's own records when the node cannot be reached."""
        return await self._payments.get_transfer_history(limit, before)
