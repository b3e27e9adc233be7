"""End-to-end helpers around the real client SDK: connected wallets that record every transfer event,
funding from a dev account, and waits on the node's records. Every wait has a timeout."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

from eth_account import Account
from web3 import Web3

from channels_app.models import Channel, RebalanceProfile
from connext import Client
from connext.chain.contracts import contract_at
from connext.protocol import serialization
from tests.support.conservation import assert_offchain_conserved
from tests.support.processes import wait_until

ETH = "0x" + "00" * 20


def operator_trusts(channel_address: str, asset_id: str = ETH) -> None:
    """The operator gives the channel a rebalance profile (what the admin's profile form saves), here the
    node's defaults: the node then collateralizes it on request though the account has brought nothing
    yet, as for an account the operator knows. Without one, a fresh receiver gets its collateral just
    in time, with each payment (docs/protocol.md, "The node's capital and gas")."""
    RebalanceProfile.objects.update_or_create(
        channel=Channel.objects.get(address=channel_address),
        asset_id=asset_id,
        defaults={"collateralize_threshold": 5 * 10**16, "target": 10**17, "reclaim_threshold": 5 * 10**17},
    )


TRANSFER_EVENTS = ("transfer.created", "transfer.received", "transfer.resolved", "transfer.failed")
SWAP_EVENTS = ("swap.completed", "swap.rates")
WAIT = 60.0


class Wallet:
    """A connected `Client` with every transfer event (or every one of `events`) it saw, to wait on
    without missing one."""

    def __init__(self, client: Client, events: Iterable[str] = TRANSFER_EVENTS) -> None:
        self.client = client
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()
        for event in events:
            client.async_client.on(event, lambda payload, event=event: self._note(event, payload))

    def _note(self, event: str, payload: dict[str, Any]) -> None:
        with self._changed:
            self.seen.append((event, payload))
            self._changed.notify_all()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def events(self, event: str, payment_id: str) -> list[dict[str, Any]]:
        with self._changed:
            return [p for e, p in self.seen if e == event and p.get("paymentId") == payment_id]

    def event(self, event: str, payment_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """The payload of the first `event` for `payment_id`, once it arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._first(event, payment_id) is not None, timeout):
                raise AssertionError(f"no {event} for {payment_id} within {timeout}s; saw {self.seen[-5:]}")
            payload = self._first(event, payment_id)
        assert payload is not None
        return payload

    def first_seen(
        self, event: str, matches: Callable[[dict[str, Any]], bool], timeout: float = WAIT
    ) -> dict[str, Any]:
        """The payload of the first `event` that `matches`, once it arrived."""

        def found() -> dict[str, Any] | None:
            return next((p for e, p in self.seen if e == event and matches(p)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no matching {event} within {timeout}s; saw {self.seen[-5:]}")
            payload = found()
        assert payload is not None
        return payload

    def events_for(self, event: str, payment_ids: set[str], timeout: float) -> None:
        """Until `event` arrived for every one of `payment_ids`."""

        def done() -> bool:
            return payment_ids <= {p.get("paymentId") for e, p in self.seen if e == event}

        with self._changed:
            assert self._changed.wait_for(done, timeout), f"missing {event} for some payments"

    def _first(self, event: str, payment_id: str) -> dict[str, Any] | None:
        return next((p for e, p in self.seen if e == event and p.get("paymentId") == payment_id), None)

    def balance(self, asset_id: str) -> int:
        return self.client.get_free_balance(asset_id)["user"]


class Funder:
    """A dev account paying gas money and minting TestTokens for a test module (one at a time)."""

    def __init__(self, w3: Web3, key: str) -> None:
        self.w3 = w3
        self.account = Account.from_key(key)
        self._lock = threading.Lock()

    def _send(self, tx: dict[str, Any]) -> None:
        with self._lock:
            tx = {
                "chainId": self.w3.eth.chain_id,
                "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 10**9,
                **tx,
            }
            tx_hash = self.w3.eth.send_raw_transaction(self.account.sign_transaction(tx).raw_transaction)
        assert self.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1

    def send_eth(self, to: str, amount: int) -> None:
        self._send({"to": to, "value": amount, "gas": 100_000})

    def mint(self, token: str, to: str, amount: int) -> None:
        data = contract_at(self.w3, "TestToken", token).encode_abi("mint", args=[to, amount])
        self._send({"to": token, "data": data, "gas": 200_000})

    def new_key(self, gas_money: int = 10**17) -> str:
        key = "0x" + secrets.token_hex(32)
        self.send_eth(Account.from_key(key).address, gas_money)
        return key


def until(condition: Any, what: str, timeout: float = WAIT) -> Any:
    return wait_until(condition, timeout=timeout, what=what, interval=0.05)


def settled(*wallets: Wallet, timeout: float = WAIT) -> None:
    """Until no transfer is left in these channels and each client holds the node's latest state."""

    def quiet() -> bool:
        for wallet in wallets:
            channel = Channel.objects.get(address=wallet.channel_address)
            state = wallet.get_channel()
            if state["transfers"] or channel.pending_update is not None or channel.nonce != state["nonce"]:
                return False
        return True

    until(quiet, "every payment to settle", timeout)


def node_states(*wallets: Wallet) -> list[Any]:
    addresses = [w.channel_address for w in wallets]
    return [
        serialization.channel_state_from_json(c.latest_state)
        for c in Channel.objects.filter(address__in=addresses)
    ]


def conserved_once_credited(w3: Web3, wallets: list[Wallet], assets: list[str]) -> dict[str, Any]:
    """The per-asset conservation check, on one reading taken once the node credited its own deposits
    (its automatic collateral may still be on its way: a check that waits for the credit and then reads
    again can catch the next deposit mined in between)."""
    found: dict[str, Any] = {}

    def conserved() -> bool:
        try:
            found.update(assert_offchain_conserved(w3, node_states(*wallets), assets))
        except AssertionError:
            return False
        return True

    try:
        until(conserved, "the node's deposits to be credited")
    except AssertionError:
        assert_offchain_conserved(w3, node_states(*wallets), assets)  # says what does not add up
        raise
    return found
