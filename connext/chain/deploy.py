"""Deploys the contracts to a chain and records their addresses per chain id in a JSON file.

Idempotent: an address recorded for this chain is reused when the chain still holds that contract's code
(immutables aside) and, for the factory, when it was built on the definitions deployed now; anything
else (a reset dev chain, changed sources) is deployed again. The file keeps other chains' entries:

    {"31337": {"LinkedTransfer": "0x…", …, "ChannelFactory": "0x…", "Channel": "0x…"}}

`Channel` is the mastercopy, created by the factory's constructor.

Command line (what the node calls): `python -m connext.chain.deploy --rpc URL --key 0x… --out FILE`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.types import TxParams, TxReceipt

from connext.chain.artifacts import load_artifact
from connext.chain.contracts import contract_at

DEFINITIONS = ("LinkedTransfer", "HashLockTransfer", "SignedTransfer", "WithdrawTransfer")
FACTORY = "ChannelFactory"
MASTERCOPY = "Channel"
TEST_TOKEN = "TestToken"  # noqa: S105 - a contract name, not a secret
# The mastercopy's getter for each definition it accepts.
_DEFINITION_GETTERS = {
    "LinkedTransfer": "linkedTransfer",
    "HashLockTransfer": "hashLockTransfer",
    "SignedTransfer": "signedTransfer",
    "WithdrawTransfer": "withdrawTransfer",
}


class DeployError(RuntimeError):
    """A deployment transaction failed or the address book cannot be used."""


def load_addresses(path: str | os.PathLike[str], chain_id: int) -> dict[str, str]:
    """The addresses recorded for `chain_id` (empty when the file or the chain is not there)."""
    book = _read_book(Path(path))
    return dict(book.get(str(chain_id), {}))


def deploy(
    w3: Web3,
    deployer: LocalAccount,
    out: str | os.PathLike[str],
    *,
    test_token: bool = False,
) -> dict[str, str]:
    """Deploys what is missing, records every address for this chain in `out`, returns them."""
    path = Path(out)
    chain_id = w3.eth.chain_id
    book = _read_book(path)
    recorded = book.get(str(chain_id), {})
    addresses: dict[str, str] = {}

    for name in DEFINITIONS:
        addresses[name] = _reuse(w3, name, recorded.get(name)) or _deploy(w3, deployer, name, ())

    factory = _reuse(w3, FACTORY, recorded.get(FACTORY))
    if factory is not None and not _factory_uses(w3, factory, addresses):
        factory = None
    if factory is None:
        factory = _deploy(w3, deployer, FACTORY, tuple(addresses[name] for name in DEFINITIONS))
    addresses[FACTORY] = factory
    addresses[MASTERCOPY] = to_checksum_address(
        contract_at(w3, FACTORY, factory).functions.mastercopy().call()
    )

    if test_token:
        addresses[TEST_TOKEN] = _reuse(w3, TEST_TOKEN, recorded.get(TEST_TOKEN)) or _deploy(
            w3, deployer, TEST_TOKEN, ("Test Token", "TST")
        )
    elif TEST_TOKEN in recorded and _reuse(w3, TEST_TOKEN, recorded[TEST_TOKEN]):
        addresses[TEST_TOKEN] = recorded[TEST_TOKEN]

    book[str(chain_id)] = addresses
    _write_book(path, book)
    return addresses


def _reuse(w3: Web3, name: str, address: str | None) -> str | None:
    if not address:
        return None
    code = bytes(w3.eth.get_code(to_checksum_address(address)))
    return to_checksum_address(address) if load_artifact(name).runtime_code_matches(code) else None


def _factory_uses(w3: Web3, factory: str, addresses: Mapping[str, str]) -> bool:
    mastercopy = contract_at(w3, FACTORY, factory).functions.mastercopy().call()
    if not load_artifact(MASTERCOPY).runtime_code_matches(bytes(w3.eth.get_code(mastercopy))):
        return False
    channel = contract_at(w3, MASTERCOPY, mastercopy)
    return all(
        to_checksum_address(channel.functions[getter]().call()) == addresses[name]
        for name, getter in _DEFINITION_GETTERS.items()
    )


def _deploy(w3: Web3, deployer: LocalAccount, name: str, args: Sequence[Any]) -> str:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = send_transaction(w3, deployer, factory.constructor(*args))
    address = receipt["contractAddress"]
    if not address:
        raise DeployError(f"{name}: no contract address in the receipt")
    return to_checksum_address(address)


def send_transaction(
    w3: Web3, sender: LocalAccount, call: ContractConstructor | ContractFunction, *, value: int = 0
) -> TxReceipt:
    """Signs `call` locally, sends it and waits for a successful receipt."""
    params: TxParams = {
        "from": sender.address,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "value": w3.to_wei(value, "wei"),
    }
    tx = call.build_transaction(params)
    signed = sender.sign_transaction(cast(dict[str, Any], tx))
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise DeployError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def _read_book(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    try:
        book = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DeployError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(book, dict):
        raise DeployError(f"{path} must hold an object keyed by chain id")
    return book


def _write_book(path: Path, book: Mapping[str, Mapping[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(book, indent=2, sort_keys=True) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connext.chain.deploy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rpc", required=True, help="JSON-RPC URL of the chain")
    parser.add_argument(
        "--key", default=os.environ.get("DEPLOYER_KEY"), help="deployer private key (or $DEPLOYER_KEY)"
    )
    parser.add_argument("--out", required=True, help="address book (JSON) to read and update")
    parser.add_argument(
        "--test-token", action="store_true", help="also deploy the mintable TestToken (dev chains)"
    )
    options = parser.parse_args(argv)
    if not options.key:
        parser.error("--key or $DEPLOYER_KEY is required")
    w3 = Web3(Web3.HTTPProvider(options.rpc))
    deployer: LocalAccount = Account.from_key(options.key)
    addresses = deploy(w3, deployer, options.out, test_token=options.test_token)
    json.dump({"chainId": w3.eth.chain_id, **addresses}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
