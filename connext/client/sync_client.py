"""`Client`: the blocking facade over `AsyncClient`, for scripts and the CLI.

The `AsyncClient` runs on a private event loop in a daemon thread; each method submits its coroutine
there and waits. Callbacks registered with `on`/`once` run on one more thread of their own, in event
order, so a callback may call the client's blocking methods without deadlocking it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from connext.client.async_client import (
    DEFAULT_WAIT_SECONDS,
    ETH,
    HISTORY_PAGE,
    SETTLE_WAIT_SECONDS,
    AsyncClient,
    InFlight,
)
from connext.client.events import Callback, Predicate
from connext.client.watcher import WatchOptions

T = TypeVar("T")


class Client:
    """The user's side of a channel, blocking. Create it with `Client.connect(...)`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, inner: AsyncClient) -> None:
        self._loop = loop
        self._thread = thread
        self._inner = inner
        self._callbacks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="connext-callbacks")
        self._wrapped: dict[tuple[str, Callback], Callback] = {}
        self._closed = False

    @classmethod
    def connect(
        cls,
        node_url: str,
        private_key: str | bytes,
        *,
        store_path: str | None = None,
        chain_rpc_url: str | None = None,
        watch_disputes: bool = True,
        watch_options: WatchOptions | None = None,
    ) -> Client:
        """Log in, open or restore the channel, start the websocket; returns once in sync with the node."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="connext-client", daemon=True)
        thread.start()
        future = asyncio.run_coroutine_threadsafe(
            AsyncClient.connect(
                node_url,
                private_key,
                store_path=store_path,
                chain_rpc_url=chain_rpc_url,
                watch_disputes=watch_disputes,
                watch_options=watch_options,
            ),
            loop,
        )
        try:
            inner = future.result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
            raise
        return cls(loop, thread, inner)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("blocking Client methods cannot run on the client's own event loop thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return function(*args, **kwargs)

        return self._run(call())

    # -- identity and reads ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._inner.address

    @property
    def channel_address(self) -> str:
        return self._inner.channel_address

    @property
    def chain_id(self) -> int:
        return self._inner.chain_id

    @property
    def node_address(self) -> str:
        return self._inner.node_address

    @property
    def supported_assets(self) -> tuple[str, ...]:
        return self._inner.supported_assets

    @property
    def config(self) -> dict[str, Any]:
        """The node's configuration as `GET /api/config` answered it."""
        return self._inner.config

    @property
    def async_client(self) -> AsyncClient:
        """The `AsyncClient` underneath (use it only from its own loop)."""
        return self._inner

    def get_free_balance(self, asset_id: str = ETH) -> dict[str, int]:
        result: dict[str, int] = self._call(self._inner.get_free_balance, asset_id)
        return result

    def settle(self, *, timeout: float = SETTLE_WAIT_SECONDS) -> dict[str, InFlight]:
        """See `AsyncClient.settle`: sync, let incoming linked payments arrive, and say what is still
        in flight per asset."""
        return self._run(self._inner.settle(timeout=timeout))

    def get_channel(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self._inner.get_channel)
        return result

    def restore_state(self) -> dict[str, Any]:
        return self._run(self._inner.restore_state())

    # -- money ----------------------------------------------------------------------------------------

    def deposit(self, amount: int, asset_id: str = ETH, *, wait: bool = True) -> str:
        return self._run(self._inner.deposit(amount, asset_id, wait=wait))

    def request_collateral(
        self,
        asset_id: str = ETH,
        amount: int | None = None,
        *,
        wait: bool = True,
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> dict[str, Any]:
        return self._run(self._inner.request_collateral(asset_id, amount, wait=wait, timeout=timeout))

    def withdraw(
        self, amount: int, asset_id: str = ETH, recipient: str | None = None, *, wait: bool = True
    ) -> str:
        return self._run(self._inner.withdraw(amount, asset_id, recipient, wait=wait))

    # -- swaps ----------------------------------------------------------------------------------------

    def get_swap_rates(self) -> dict[str, Any]:
        return self._run(self._inner.get_swap_rates())

    def swap(
        self,
        amount: int,
        from_asset: str,
        to_asset: str,
        *,
        max_slippage: float | str = "0.01",
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> int:
        return self._run(
            self._inner.swap(amount, from_asset, to_asset, max_slippage=max_slippage, timeout=timeout)
        )

    # -- payments -------------------------------------------------------------------------------------

    def transfer(
        self,
        recipient: str,
        amount: int,
        asset_id: str = ETH,
        *,
        meta: dict[str, Any] | None = None,
        payment_id: bytes | str | None = None,
    ) -> str:
        return self._run(self._inner.transfer(recipient, amount, asset_id, meta=meta, payment_id=payment_id))

    def conditional_transfer(
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
        return self._run(
            self._inner.conditional_transfer(
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
        )

    def resolve_condition(
        self,
        payment_id: str | bytes,
        *,
        preimage: bytes | str | None = None,
        signature: bytes | str | None = None,
        data: bytes | str | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._inner.resolve_condition(payment_id, preimage=preimage, signature=signature, data=data)
        )

    def create_link(self, amount: int, asset_id: str = ETH, **kwargs: Any) -> dict[str, str]:
        return self._run(self._inner.create_link(amount, asset_id, **kwargs))

    def redeem_link(self, payment_id: str | bytes, secret: str | bytes, **kwargs: Any) -> dict[str, Any]:
        return self._run(self._inner.redeem_link(payment_id, secret, **kwargs))

    def cancel_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        return self._run(self._inner.cancel_transfer(payment_id))

    def get_transfer(self, payment_id: str | bytes) -> dict[str, Any]:
        return self._run(self._inner.get_transfer(payment_id))

    def wait_for_transfer(
        self, payment_id: str | bytes, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> dict[str, Any]:
        return self._run(self._inner.wait_for_transfer(payment_id, timeout))

    def get_transfer_history(
        self, *, limit: int = HISTORY_PAGE, before: str | bytes | None = None
    ) -> list[dict[str, Any]]:
        return self._run(self._inner.get_transfer_history(limit=limit, before=before))

    # -- disputes (sent from the user's account; see AsyncClient) --------------------------------------

    def dispute_channel(self) -> str:
        return self._run(self._inner.dispute_channel())

    def defund_channel(self, assets: list[str] | None = None) -> str:
        return self._run(self._inner.defund_channel(assets))

    def dispute_transfer(self, payment_id: str | bytes) -> str:
        return self._run(self._inner.dispute_transfer(payment_id))

    def defund_transfer(self, payment_id: str | bytes) -> str:
        return self._run(self._inner.defund_transfer(payment_id))

    def dispute_status(self) -> dict[str, Any]:
        return self._run(self._inner.dispute_status())

    # -- events ---------------------------------------------------------------------------------------

    def on(self, event: str, callback: Callback) -> None:
        self._loop.call_soon_threadsafe(self._inner.on, event, self._wrap(event, callback))

    def once(self, event: str, callback: Callback) -> None:
        self._loop.call_soon_threadsafe(self._inner.once, event, self._wrap(event, callback))

    def off(self, event: str, callback: Callback) -> None:
        wrapped = self._wrapped.pop((event, callback), None)
        if wrapped is not None:
            self._loop.call_soon_threadsafe(self._inner.off, event, wrapped)

    def wait_for(
        self, event: str, timeout: float | None = DEFAULT_WAIT_SECONDS, predicate: Predicate | None = None
    ) -> dict[str, Any]:
        """The payload of the next `event`; `connext.errors.TimeoutError` after `timeout` seconds."""
        return self._run(self._inner.wait_for(event, timeout, predicate))

    def _wrap(self, event: str, callback: Callback) -> Callback:
        def run_on_callback_thread(payload: dict[str, Any]) -> None:
            if not self._closed:
                self._callbacks.submit(callback, payload)

        self._wrapped[(event, callback)] = run_on_callback_thread
        return run_on_callback_thread

    # -- lifetime -------------------------------------------------------------------------------------

    def logout(self) -> None:
        """Revoke the token at the node (its websocket closes there), then close the client."""
        if self._closed:
            return
        try:
            self._run(self._inner.api.log_out())
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._inner.close(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._callbacks.shutdown(wait=False)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
