"""The user's own view of the chain: its deposits into the channel and the readings it validates with.

Blocking web3 calls; `AsyncClient` runs them in a worker thread. The client never takes the node's word
for what the chain holds: deposit credits are checked against readings made here.
"""

from __future__ import annotations

import threading
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted
from web3.types import TxReceipt

from connext.chain import channel_reads
from connext.chain.rpc import http_web3
from connext.errors import ChainError, TimeoutError

_ERC20_TRANSFER = [
    {
        "type": "function",
        "name": "transfer",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]
GAS_MARGIN_NUMERATOR, GAS_MARGIN_DENOMINATOR = 5, 4


class UserChain:
    """Reads and the user's own transactions, through one RPC endpoint."""

    def __init__(self, rpc_url: str, private_key: bytes) -> None:
        self.rpc_url = rpc_url
        self.w3 = http_web3(rpc_url, timeout=30)
        self._account = Account.from_key(private_key)
        self._send_lock = threading.Lock()  # one nonce at a time for the user's own transactions

    @property
    def address(self) -> str:
        return str(self._account.address)

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def deposit_totals(self, channel_address: str, asset_id: str, block: int) -> tuple[int, int]:
        """(node, user) deposit totals of the channel at `block`."""
        totals = channel_reads.deposit_totals(self.w3, channel_address, asset_id, block=block)
        return totals.node, totals.user

    def balance(self, holder: str, asset_id: str) -> int:
        return channel_reads.asset_balance(self.w3, holder, asset_id)

    def send_deposit(self, channel_address: str, asset_id: str, amount: int) -> str:
        """Send `amount` of `asset_id` from the user to the channel address (plain transfer); the hash."""
        if int(asset_id, 16) == 0:
            tx: dict[str, Any] = {"from": self.address, "to": channel_address, "value": amount, "data": "0x"}
        else:
            token = self.w3.eth.contract(address=Web3.to_checksum_address(asset_id), abi=_ERC20_TRANSFER)
            tx = {
                "from": self.address,
                "to": Web3.to_checksum_address(asset_id),
                "value": 0,
                "data": token.encode_abi("transfer", args=[channel_address, amount]),
            }
        return self._send(tx)

    def send_call(self, to: str, data: bytes, timeout: float) -> TxReceipt:
        """Send a contract call from the user's account (the user pays the gas) and wait until it is
        mined; its receipt. `ChainError` when the chain refuses or reverts it."""
        tx_hash = self._send({"from": self.address, "to": to, "value": 0, "data": "0x" + data.hex()})
        self.wait_receipt(tx_hash, timeout)
        return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]

    def _send(self, tx: dict[str, Any]) -> str:
        with self._send_lock:
            try:
                gas = int(self.w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
            except (ContractLogicError, ValueError) as exc:
                raise ChainError("transaction_refused", f"the chain refuses the transaction: {exc}") from None
            base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
            priority = int(self.w3.eth.max_priority_fee)
            signed = self._account.sign_transaction(
                {
                    **tx,
                    "chainId": self.chain_id(),
                    "nonce": self.w3.eth.get_transaction_count(self._account.address, "pending"),
                    "gas": gas * GAS_MARGIN_NUMERATOR // GAS_MARGIN_DENOMINATOR,
                    "maxFeePerGas": 2 * base_fee + priority,
                    "maxPriorityFeePerGas": priority,
                    "type": 2,
                }
            )
            try:
                return self.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()
            except ValueError as exc:
                raise ChainError("transaction_refused", f"the chain refuses the transaction: {exc}") from None

    def wait_receipt(self, tx_hash: str, timeout: float) -> int:
        """Wait until `tx_hash` is mined; its block number. `ChainError` when it reverted."""
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash,  # type: ignore[arg-type]
                timeout=timeout,
                poll_latency=0.2,
            )
        except TimeExhausted:
            raise TimeoutError(f"transaction {tx_hash} was not mined within {timeout}s") from None
        if receipt["status"] != 1:
            raise ChainError("transaction_reverted", f"transaction {tx_hash} reverted")
        return int(receipt["blockNumber"])
