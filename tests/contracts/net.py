"""The deployed contracts and the parties of the contract tests, with helpers to send, expect reverts,
build and sign states, and keep a gas ledger so ETH balances can be compared net of gas."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.logs import DISCARD

from connext.chain import devchain
from connext.chain.artifacts import load_artifact
from connext.chain.contracts import channel_address, contract_at
from connext.chain.deploy import deploy
from tests.contracts import encoding as enc

ETH = enc.ZERO_ADDRESS
ARTIFACTS = Path(__file__).resolve().parents[2] / "connext" / "chain" / "artifacts"


@dataclass(frozen=True)
class Party:
    address: str
    key: str

    def sign(self, message_hash: bytes) -> bytes:
        return enc.sign(self.key, message_hash)


def _party(index: int) -> Party:
    key = devchain.DEV_PRIVATE_KEYS[index]
    return Party(Account.from_key(key).address, key)


@cache
def _error_names() -> dict[bytes, str]:
    """4-byte selector → error name, over every artifact (errors bubble up from definitions and tokens)."""
    names: dict[bytes, str] = {}
    for path in ARTIFACTS.glob("*.json"):
        for item in load_artifact(path.stem).abi:
            if item["type"] == "error":
                signature = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                names[function_signature_to_4byte_selector(signature)] = item["name"]
    return names


def _abi_type(item: dict[str, Any]) -> str:
    if item["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + item["type"][5:]
    return str(item["type"])


def revert_name(exc: Exception) -> str:
    """The custom error's name (or the reason string / panic) of a revert raised by web3."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        selector = bytes.fromhex(data[2:10])
        return _error_names().get(selector, data[:10])
    return str(exc)


@dataclass
class Net:
    url: str
    w3: Web3
    chain_id: int
    addresses: dict[str, str]
    deployer: Party
    node: Party
    user: Party
    other: Party
    factory: Contract
    token: Contract
    evil: Contract
    gas_spent: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    # ------------------------------------------------------------ transactions

    def send(self, fn: ContractFunction, sender: Party | str, *, value: int = 0) -> Any:
        """Sends `fn` from an (anvil-unlocked) account and returns the successful receipt."""
        address = sender.address if isinstance(sender, Party) else sender
        tx_hash = fn.transact({"from": address, "value": value})
        return self._receipt(tx_hash, address)

    def send_eth(self, sender: Party, to: str, value: int) -> Any:
        tx_hash = self.w3.eth.send_transaction({"from": sender.address, "to": to, "value": value})
        return self._receipt(tx_hash, sender.address)

    def _receipt(self, tx_hash: bytes, sender: str) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        self.gas_spent[sender] += receipt["gasUsed"] * receipt["effectiveGasPrice"]
        return receipt

    def expect_revert(
        self, fn: ContractFunction | ContractConstructor, sender: Party | str, error: str, *, value: int = 0
    ) -> None:
        """Asserts that `fn` reverts with the custom error (or reason) `error`, without sending it."""
        address = sender.address if isinstance(sender, Party) else sender
        run = fn.estimate_gas if isinstance(fn, ContractConstructor) else fn.call
        with pytest.raises((ContractCustomError, ContractLogicError, ContractPanicError)) as caught:
            run({"from": address, "value": value})
        assert revert_name(caught.value) == error, str(caught.value)

    def expect_revert_tx(self, tx: dict[str, Any], error: str) -> None:
        """Asserts that a raw call (e.g. a plain ETH transfer) reverts with `error`."""
        with pytest.raises((ContractCustomError, ContractLogicError, ContractPanicError)) as caught:
            self.w3.eth.call(tx)  # type: ignore[arg-type]
        assert revert_name(caught.value) == error, str(caught.value)

    @staticmethod
    def revert_selector(data: bytes) -> str:
        """The error name of raw revert data (as a contract caught it)."""
        return _error_names().get(bytes(data[:4]), "0x" + bytes(data[:4]).hex())

    @staticmethod
    def events(contract: Contract, name: str, receipt: Any) -> list[dict[str, Any]]:
        """The `name` events `contract` emitted in `receipt` (other contracts' logs are skipped)."""
        return [dict(e["args"]) for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)]

    def reset_ledger(self) -> None:
        self.gas_spent.clear()

    # ------------------------------------------------------------ reads

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def balance(self, asset: str, owner: str) -> int:
        if asset == ETH:
            return int(self.w3.eth.get_balance(to_checksum_address(owner)))
        return int(self.contract("TestToken", asset).functions.balanceOf(owner).call())

    def net_balance(self, asset: str, owner: str) -> int:
        """Balance plus the ETH this account spent on gas in this test: moves only with payments."""
        return self.balance(asset, owner) + (self.gas_spent[owner] if asset == ETH else 0)

    def contract(self, name: str, address: str) -> Contract:
        return contract_at(self.w3, name, address)

    # ------------------------------------------------------------ channels

    def channel_address(self, node: str | None = None, user: str | None = None) -> str:
        return channel_address(
            factory=self.addresses["ChannelFactory"],
            mastercopy=self.addresses["Channel"],
            node=node or self.node.address,
            user=user or self.user.address,
            chain_id=self.chain_id,
        )

    def channel(self, address: str | None = None) -> Contract:
        return self.contract("Channel", address or self.channel_address())

    def create_channel(self) -> Contract:
        self.send(self.factory.functions.createChannel(self.node.address, self.user.address), self.other)
        return self.channel()

    def state(self, channel: Contract, **fields: Any) -> enc.ChannelState:
        """A state of `channel` (ETH only, nothing credited) with `fields` overriding the defaults."""
        values: dict[str, Any] = {
            "channel_address": channel.address,
            "chain_id": self.chain_id,
            "node": self.node.address,
            "user": self.user.address,
            "asset_ids": (ETH,),
            "balances": ((0, 0),),
            "processed_deposits": ((0, 0),),
            "defund_nonces": (1,),
            "timeout": 3600,
            "nonce": 2,
        }
        values.update(fields)
        return enc.ChannelState(**values)

    def sign_state(self, state: enc.ChannelState) -> tuple[bytes, bytes]:
        digest = state.hash()
        return self.node.sign(digest), self.user.sign(digest)

    def dispute(self, channel: Contract, state: enc.ChannelState, sender: Party | None = None) -> Any:
        node_sig, user_sig = self.sign_state(state)
        return self.send(
            channel.functions.disputeChannel(state.as_abi(), node_sig, user_sig), sender or self.other
        )

    def deploy(self, name: str, *args: Any) -> Contract:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.send(factory.constructor(*args), self.deployer)
        return self.contract(name, receipt["contractAddress"])

    def definition(self, name: str) -> str:
        return self.addresses[name]

    def mint(self, token: Contract, owners: Iterable[str], amount: int) -> None:
        for owner in owners:
            self.send(token.functions.mint(owner, amount), self.deployer)


def deploy_net(url: str) -> Net:
    w3 = Web3(Web3.HTTPProvider(url))
    deployer = _party(0)
    book = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"connext-contracts-{os.getpid()}.json"
    try:
        addresses = deploy(w3, Account.from_key(deployer.key), book, test_token=True)
    finally:
        book.unlink(missing_ok=True)
    evil_artifact = load_artifact("MaliciousToken")
    evil_factory = w3.eth.contract(abi=evil_artifact.abi, bytecode=evil_artifact.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(
        evil_factory.constructor().transact({"from": deployer.address})
    )
    addresses["MaliciousToken"] = receipt["contractAddress"]
    net = Net(
        url=url,
        w3=w3,
        chain_id=w3.eth.chain_id,
        addresses=addresses,
        deployer=deployer,
        node=_party(1),
        user=_party(2),
        other=_party(3),
        factory=contract_at(w3, "ChannelFactory", addresses["ChannelFactory"]),
        token=contract_at(w3, "TestToken", addresses["TestToken"]),
        evil=contract_at(w3, "MaliciousToken", addresses["MaliciousToken"]),
    )
    for token in (net.token, net.evil):
        net.mint(token, (net.node.address, net.user.address, net.other.address), 10**30)
    net.reset_ledger()
    return net


def make_transfer(
    net: Net,
    channel: Contract,
    *,
    definition: str,
    encoded_state: bytes,
    initiator: Party,
    responder: Party,
    amount: int,
    create_nonce: int,
    asset: str = ETH,
    timeout: int = 600,
) -> enc.TransferState:
    payment_id = enc.keccak(b"payment" + create_nonce.to_bytes(32, "big"))
    return enc.TransferState(
        channel_address=channel.address,
        transfer_id=enc.transfer_id(channel.address, payment_id, create_nonce),
        payment_id=payment_id,
        transfer_definition=net.definition(definition),
        initiator=initiator.address,
        responder=responder.address,
        asset_id=asset,
        balance=(amount, 0),
        transfer_timeout=timeout,
        initial_state_hash=enc.keccak(encoded_state),
        encoded_state=encoded_state,
    )
