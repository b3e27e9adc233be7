"""What moves funds in and out of the channel or between its assets: the user's deposits and their
credit, the node's collateral, withdrawals, and swaps at the node's rates.

A deposit is credited only as far as the chain shows it; the node checks the claim at its confirmation
depth, so a credit it refuses for now is proposed again as blocks arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from fractions import Fraction
from typing import Any

from connext.client import arguments
from connext.client.amounts import check_amount
from connext.client.core import DEFAULT_WAIT_SECONDS, ClientCore, processed_user
from connext.client.exchange import MAX_UPDATE_ATTEMPTS, Exchange
from connext.errors import (
    ChainError,
    ConnextError,
    InvalidArgumentError,
    NodeError,
    NodeUnavailableError,
    SlippageError,
    TimeoutError,
)
from connext.protocol import serialization, signing
from connext.protocol.definitions import WithdrawState
from connext.protocol.encoding import ZERO_ADDRESS, normalize_address
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    SwapUpdate,
    Update,
)

WITHDRAW_TRANSFER_TIMEOUT = 3 * 24 * 3600
WITHDRAWAL_POLL_SECONDS = 3.0
DEPOSIT_RETRY_SECONDS = 2.0


class Funds:
    """The user's deposits, withdrawals and swaps, and the node's collateral."""

    def __init__(self, core: ClientCore, exchange: Exchange) -> None:
        self._core = core
        self._exchange = exchange
        self._withdrawals: dict[str, dict[str, Any]] = {}  # transfer id -> the node's latest news

    # -- deposits -----------------------------------------------------------------------------------

    async def deposit(self, amount: int, asset_id: str, wait: bool) -> str:
        core = self._core
        amount = check_amount(amount)
        asset_id = core.asset(asset_id)
        chain = core.need_chain()
        tx_hash = await asyncio.to_thread(chain.send_deposit, core.channel_address, asset_id, amount)
        core.events.emit(
            "deposit.started", {"assetId": asset_id, "amount": str(amount), "transactionHash": tx_hash}
        )
        if not wait:
            core.background(self._finish_deposit(tx_hash, asset_id, amount))
            return tx_hash
        await self._finish_deposit(tx_hash, asset_id, amount)
        return tx_hash

    async def _finish_deposit(self, tx_hash: str, asset_id: str, amount: int) -> None:
        chain = self._core.need_chain()
        failure = {"assetId": asset_id, "amount": str(amount), "transactionHash": tx_hash}
        try:
            block = await asyncio.to_thread(chain.wait_receipt, tx_hash, DEFAULT_WAIT_SECONDS)
            _, user_total = await asyncio.to_thread(
                chain.deposit_totals, self._core.channel_address, asset_id, block
            )
            await self._ensure_credited(asset_id, user_total, DEFAULT_WAIT_SECONDS)
        except ConnextError as exc:
            self._core.events.emit("deposit.failed", {**failure, "error": exc.code, "message": exc.message})
            raise

    async def _ensure_credited(self, asset_id: str, user_total: int, timeout: float) -> None:
        """Propose the deposit credit until the channel credits `user_total` of the user's deposits.

        The node checks the claim against the chain at its confirmation depth, which may trail the
        block the client read: then the claim is refused for now (`deposit_exceeds_chain`) and is made
        again as blocks arrive, or when the node's watcher reports the deposit."""
        core = self._core
        deadline = time.monotonic() + timeout
        refused: NodeError | None = None
        while processed_user(core.state, asset_id) < user_total:
            async with core.lock:
                try:
                    await self.credit_deposit_locked(asset_id)
                except NodeError as exc:
                    if exc.code != "deposit_exceeds_chain":
                        raise
                    refused = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = "" if refused is None else f" (its last refusal: {refused.message})"
                raise TimeoutError(
                    f"the node did not credit the {asset_id} deposit of a total of {user_total} "
                    f"within {timeout}s{why}"
                )
            await core.wait_state(
                lambda state: processed_user(state, asset_id) >= user_total,
                min(remaining, DEPOSIT_RETRY_SECONDS),
                "",
                quiet=True,
            )

    async def credit_deposit_locked(self, asset_id: str, block: int | None = None) -> None:
        """Propose crediting what the chain shows at `block` (default: the latest) beyond what is
        processed. Nothing happens when it is all credited already."""
        core = self._core
        chain = core.need_chain()
        latest = await asyncio.to_thread(chain.block_number)
        at = latest if block is None else min(block, latest)
        node_total, user_total = await asyncio.to_thread(
            chain.deposit_totals, core.channel_address, asset_id, at
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
                initiator=core.address,
                asset_id=asset_id,
                total_deposits_node=totals[0],
                total_deposits_user=totals[1],
            )
            return update, {asset_id: totals}

        await self._exchange.propose_locked(build)

    async def credit_deposits_locked(self) -> None:
        """After a sync: credit what the chain shows of every asset; a credit the node refuses for now
        goes on in the background until it lands."""
        core = self._core
        if core.chain is None:
            return
        for asset_id in core.supported_assets:
            try:
                await self.credit_deposit_locked(asset_id)
            except NodeError as exc:
                if exc.code != "deposit_exceeds_chain":
                    raise
                chain = core.chain
                _, user_total = await asyncio.to_thread(
                    chain.deposit_totals,
                    core.channel_address,
                    asset_id,
                    await asyncio.to_thread(chain.block_number),
                )
                core.background(self._ensure_credited(asset_id, user_total, DEFAULT_WAIT_SECONDS))

    # -- collateral ---------------------------------------------------------------------------------

    async def request_collateral(
        self, asset_id: str, amount: int | None, wait: bool, timeout: float
    ) -> dict[str, Any]:
        core = self._core
        asset_id = core.asset(asset_id)
        body: dict[str, Any] = {"assetId": asset_id}
        if amount is not None:
            body["amount"] = str(check_amount(amount))
        credited = _processed_node(core.state, asset_id)
        answer: dict[str, Any] = await core.api.post("/api/channel/collateral", body)
        if wait and await self._collateral_on_its_way(
            asset_id, amount, requested=bool(answer.get("requested"))
        ):
            await core.wait_state(
                lambda state: (
                    _processed_node(state, asset_id) > credited
                    or (amount is not None and _node_balance(state, asset_id) >= amount)
                ),
                timeout,
                f"credit of the node's {asset_id} collateral",
            )
        return answer

    async def _collateral_on_its_way(self, asset_id: str, amount: int | None, *, requested: bool) -> bool:
        """Whether a node deposit is still to be credited after a collateral request: one the node
        just queued, one it had queued before (when the node holds less than `amount`), or one the
        chain shows and the channel does not credit yet."""
        core = self._core
        if requested:
            return True
        if amount is not None:
            return _node_balance(core.state, asset_id) < amount
        if core.chain is None:
            return False
        chain = core.chain
        node_total, _ = await asyncio.to_thread(
            chain.deposit_totals, core.channel_address, asset_id, await asyncio.to_thread(chain.block_number)
        )
        return node_total > _processed_node(core.state, asset_id)

    # -- swaps --------------------------------------------------------------------------------------

    async def get_swap_rates(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._core.api.get("/api/swap/rates")
        return answer

    async def swap(
        self, amount: int, from_asset: str, to_asset: str, max_slippage: float | str, timeout: float
    ) -> int:
        core = self._core
        amount = check_amount(amount)
        give_asset, take_asset = core.asset(from_asset), core.asset(to_asset)
        if give_asset == take_asset:
            raise InvalidArgumentError("same_asset", "a swap exchanges two different assets")
        slippage = arguments.fraction(max_slippage, "max_slippage")
        await core.refuse_while_disputed()
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
                    initiator=core.address,
                    give_asset=give_asset,
                    give_amount=amount,
                    take_asset=take_asset,
                    take_amount=take,
                )
                return update, {}

            try:  # the node's deposit first when it is short: its prepare checks the rate too
                if _node_balance(core.state, take_asset) < take:
                    await self._swap_collateral(give_asset, amount, take_asset, take, deadline)
                async with core.lock:
                    new = await self._exchange.propose_locked(build)
            except NodeError as exc:
                if exc.code == "rate_moved" and str(exc.details.get("offered", "")).isdigit():
                    offered = int(exc.details["offered"])
                    if offered < least:
                        raise SlippageError(quoted=quoted, offered=offered, least=least) from None
                    take = offered
                    continue
                raise
            assert new is not None
            core.events.emit(
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
        await self._core.api.post(
            "/api/swap/prepare",
            {
                "giveAssetId": give_asset,
                "giveAmount": str(give),
                "takeAssetId": take_asset,
                "takeAmount": str(take),
            },
        )

        def enough(state: ChannelState) -> bool:
            return _node_balance(state, take_asset) >= take

        await self._core.wait_state(
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

    async def withdraw(self, amount: int, asset_id: str, recipient: str | None, wait: bool) -> str:
        core = self._core
        amount = check_amount(amount)
        asset_id = core.asset(asset_id)
        to = core.address if recipient is None else arguments.address(recipient, "recipient")
        if to in (ZERO_ADDRESS, core.channel_address):
            raise InvalidArgumentError("invalid_address", "withdraw to the channel or the zero address")
        await core.refuse_while_disputed()
        payment_id = secrets.token_bytes(32)

        def build(state: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]]:
            nonce = state.nonce + 1
            unsigned = WithdrawState(
                channel_address=state.channel_address,
                asset_id=asset_id,
                recipient=to,
                amount=amount,
                nonce=nonce,
                initiator=core.address,
                responder=state.node,
                initiator_signature=b"",
            )
            commitment_signature = signing.sign_withdraw(unsigned.commitment(state.chain_id), core.signer)
            withdraw = WithdrawState(**{**unsigned.__dict__, "initiator_signature": commitment_signature})
            update = CreateUpdate(
                channel_address=state.channel_address,
                nonce=nonce,
                initiator=core.address,
                asset_id=asset_id,
                amount=amount,
                definition=core.definition(DefinitionKind.WITHDRAW),
                payment_id=payment_id,
                encoded_state=withdraw.encode(),
                transfer_timeout=WITHDRAW_TRANSFER_TIMEOUT,
            )
            return update, {}

        async with core.lock:
            new = await self._exchange.propose_locked(build)
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
            if not await self._core.next_change(min(remaining, WITHDRAWAL_POLL_SECONDS)):
                await self.poll_withdrawals()  # a push may have been lost with the connection

    async def poll_withdrawals(self) -> None:
        """Catch up on the withdrawals this client waits for (pushes are lost while disconnected)."""
        if all(
            news.get("transactionHash") or news.get("status") == "failed"
            for news in self._withdrawals.values()
        ):
            return
        with contextlib.suppress(NodeUnavailableError):
            listing = await self._core.api.get("/api/channel/withdrawals")
            for news in listing.get("withdrawals", []):
                known = self._withdrawals.get(news.get("transferId"))
                if known is None:
                    continue
                if known.get("status") != news.get("status"):
                    self.note_withdrawal(news, f"withdrawal.{news.get('status')}")
                elif not known.get("transactionHash"):
                    self.note_withdrawal(news, "")

    def note_withdrawal(self, news: dict[str, Any], event: str) -> None:
        self._withdrawals[str(news.get("transferId", ""))] = news
        if event in ("withdrawal.started", "withdrawal.confirmed", "withdrawal.failed"):
            self._core.events.emit(event, news)
        self._core.signal_state()


def _processed_node(state: ChannelState, asset_id: str) -> int:
    index = state.asset_index(asset_id)
    return 0 if index is None else state.processed_deposits[index][0]


def _node_balance(state: ChannelState, asset_id: str) -> int:
    index = state.asset_index(asset_id)
    return 0 if index is None else state.balances[index][0]
