"""The committed vectors are what the core computes, and they agree with eth_abi and eth-account.

If this fails after an intended change of the encoding, regenerate with `scripts/make_vectors.py` and
tell the contracts and the card (docs/protocol.md: a new version tag, never a silent change).
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import keccak

from connext.protocol import definitions, encoding
from connext.protocol import serialization as sz
from connext.protocol.errors import ProtocolError
from connext.protocol.types import DefinitionKind, Update
from connext.protocol.updates import apply_update
from tests.protocol.test_encoding import reference_state_encoding, reference_transfer_encoding

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_vectors", ROOT / "scripts" / "make_vectors.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def load(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


def b(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def account(name: str) -> str:
    return next(a["address"] for a in load("common")["accounts"] if a["name"] == name)


def recover_personal(message_hash: bytes, signature: str) -> str:
    return str(Account.recover_message(encode_defunct(primitive=message_hash), signature=b(signature)))


def test_committed_vectors_equal_what_the_core_generates() -> None:
    generated = _generator().build_all()
    committed = {path.name: path.read_text() for path in VECTORS.glob("*.json")}
    assert sorted(committed) == sorted(generated)
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale: run scripts/make_vectors.py"


def test_common_tags_and_accounts() -> None:
    common = load("common")
    for tag in common["tags"]:
        assert b(tag["value"]) == keccak(text=tag["preimage"])
    for entry in common["accounts"]:
        assert Account.from_key(b(entry["privateKey"])).address == entry["address"]


@pytest.mark.parametrize("case", load("channel_states")["cases"], ids=lambda c: c["name"])
def test_channel_state_vectors(case: dict[str, Any]) -> None:
    state = sz.channel_state_from_json(case["state"])
    assert reference_state_encoding(state) == b(case["encoded"])
    assert keccak(b(case["encoded"])) == b(case["stateHash"])
    assert recover_personal(b(case["stateHash"]), case["signatures"]["node"]) == state.node == account("node")
    assert recover_personal(b(case["stateHash"]), case["signatures"]["user"]) == state.user == account("user")


@pytest.mark.parametrize("case", load("transfers")["cases"], ids=lambda c: c["name"])
def test_transfer_vectors(case: dict[str, Any]) -> None:
    transfer = sz.transfer_state_from_json(case["transfer"])
    chain_id = int(load("common")["chainId"])
    id_values = [
        encoding.TRANSFER_ID_TAG,
        transfer.channel_address,
        transfer.payment_id,
        transfer.create_nonce,
    ]
    assert abi_encode(list(encoding.TRANSFER_ID_TYPES), id_values) == b(case["transferIdEncoded"])
    assert keccak(b(case["transferIdEncoded"])) == transfer.transfer_id
    assert reference_transfer_encoding(transfer) == b(case["encoded"])
    assert keccak(b(case["encoded"])) == b(case["transferHash"])
    kind = DefinitionKind(case["definition"])
    for resolver in case["resolvers"]:

        def run(resolver: dict[str, Any] = resolver) -> tuple[int, int]:
            return definitions.resolve(
                kind,
                transfer.balance,
                transfer.encoded_state,
                b(resolver["encodedResolver"]),
                chain_id=chain_id,
                definition=transfer.definition,
                now=int(resolver["now"]),
            )

        if "error" in resolver:
            with pytest.raises(ProtocolError) as raised:
                run()
            assert raised.value.code == resolver["error"]
        else:
            assert [str(amount) for amount in run()] == resolver["result"]
        resolver_values = [
            encoding.RESOLVER_TAG,
            chain_id,
            transfer.transfer_hash,
            keccak(b(resolver["encodedResolver"])),
        ]
        assert keccak(abi_encode(list(encoding.RESOLVER_HASH_TYPES), resolver_values)) == b(
            resolver["resolverHash"]
        )
        signer = recover_personal(b(resolver["resolverHash"]), resolver["responderResolverSignature"])
        assert signer == transfer.responder


def _oz_verify(proof: list[bytes], root: bytes, leaf: bytes) -> bool:
    computed = leaf
    for sibling in proof:
        computed = keccak(min(computed, sibling) + max(computed, sibling))
    return computed == root


@pytest.mark.parametrize("case", load("merkle")["cases"], ids=lambda c: c["name"])
def test_merkle_vectors(case: dict[str, Any]) -> None:
    leaves = [b(leaf) for leaf in case["leaves"]]
    assert [b(leaf) for leaf in case["sortedLeaves"]] == sorted(leaves)
    if not leaves:
        assert b(case["root"]) == bytes(32)
    for entry in case["proofs"]:
        assert _oz_verify([b(p) for p in entry["proof"]], b(case["root"]), b(entry["leaf"]))


@pytest.mark.parametrize("case", load("withdraw")["cases"], ids=lambda c: c["encoded"][-8:])
def test_withdraw_vectors(case: dict[str, Any]) -> None:
    commitment = sz.withdraw_commitment_from_json(case["commitment"])
    values = [
        encoding.WITHDRAW_TAG,
        commitment.chain_id,
        commitment.channel_address,
        commitment.asset_id,
        commitment.recipient,
        commitment.amount,
        commitment.nonce,
    ]
    assert abi_encode(list(encoding.WITHDRAW_HASH_TYPES), values) == b(case["encoded"])
    assert keccak(b(case["encoded"])) == b(case["withdrawHash"])
    assert recover_personal(b(case["withdrawHash"]), case["signatures"]["node"]) == account("node")
    assert recover_personal(b(case["withdrawHash"]), case["signatures"]["user"]) == account("user")


@pytest.mark.parametrize("case", load("receipts")["cases"], ids=lambda c: c["digest"][-8:])
def test_receipt_vectors(case: dict[str, Any]) -> None:
    domain = case["domain"]
    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Receipt": [{"name": "paymentId", "type": "bytes32"}, {"name": "data", "type": "bytes32"}],
            },
            "primaryType": "Receipt",
            "domain": {**domain, "chainId": int(domain["chainId"])},
            "message": {k: b(v) for k, v in case["message"].items()},
        }
    )
    assert keccak(b"\x19" + typed.version + typed.header + typed.body) == b(case["digest"])
    assert typed.header == b(case["domainSeparator"])
    assert typed.body == b(case["structHash"])
    assert Account.recover_message(typed, signature=b(case["signature"])) == case["signer"]


def test_update_history_replays_to_the_same_states_and_signatures() -> None:
    history = load("updates")
    state = None
    states = []
    for step in history["steps"]:
        update: Update = sz.update_from_json(step["update"])
        context = sz.update_context_from_json(step["context"])
        state = apply_update(state, update, context=context)
        assert sz.channel_state_to_json(state) == step["state"]
        assert sz.channel_state_from_json(step["state"]) == state
        assert state.state_hash == b(step["stateHash"])
        signers = {
            recover_personal(state.state_hash, step[k]) for k in ("initiatorSignature", "responderSignature")
        }
        assert signers == {state.node, state.user}
        assert recover_personal(state.state_hash, step["initiatorSignature"]) == update.initiator
        states.append(state)
    for rejection in history["rejections"]:
        previous = states[rejection["afterStep"]]
        with pytest.raises(ProtocolError) as raised:
            apply_update(
                previous,
                sz.update_from_json(rejection["update"]),
                context=sz.update_context_from_json(rejection["context"]),
            )
        assert raised.value.code == rejection["error"]
