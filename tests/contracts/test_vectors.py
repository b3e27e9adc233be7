"""The contracts against the shared test vectors (tests/vectors): hashes, merkle proofs, receipts and
definition outcomes computed by Solidity equal the pinned values (and so equal the Python core's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from web3.contract import Contract

from tests.contracts import encoding as enc
from tests.contracts.net import Net

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DEFINITIONS = {
    "linked": "LinkedTransfer",
    "hashlock": "HashLockTransfer",
    "signed": "SignedTransfer",
    "withdraw": "WithdrawTransfer",
}


def cases(name: str) -> list[dict[str, Any]]:
    return list(json.loads((VECTORS / f"{name}.json").read_text())["cases"])


def b32(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@pytest.fixture(scope="module")
def harness(session_net: Net) -> Contract:
    return session_net.deploy("HashHarness")


def test_state_hashes_match_the_vectors(harness: Contract) -> None:
    for case in cases("channel_states"):
        s = case["state"]
        state = enc.ChannelState(
            channel_address=s["channelAddress"],
            chain_id=int(s["chainId"]),
            node=s["node"],
            user=s["user"],
            asset_ids=tuple(s["assetIds"]),
            balances=tuple((int(a), int(b)) for a, b in s["balances"]),
            processed_deposits=tuple((int(a), int(b)) for a, b in s["processedDeposits"]),
            defund_nonces=tuple(int(n) for n in s["defundNonces"]),
            timeout=int(s["timeout"]),
            nonce=int(s["nonce"]),
            merkle_root=b32(s["merkleRoot"]),
        )
        assert state.hash() == b32(case["stateHash"]), case["name"]
        assert harness.functions.stateHash(state.as_abi()).call() == b32(case["stateHash"]), case["name"]


def vector_transfer(t: dict[str, Any]) -> enc.TransferState:
    return enc.TransferState(
        channel_address=t["channelAddress"],
        transfer_id=b32(t["transferId"]),
        payment_id=b32(t["paymentId"]),
        transfer_definition=t["transferDefinition"],
        initiator=t["initiator"],
        responder=t["responder"],
        asset_id=t["assetId"],
        balance=(int(t["balance"][0]), int(t["balance"][1])),
        transfer_timeout=int(t["transferTimeout"]),
        initial_state_hash=b32(t["initialStateHash"]),
        meta_hash=b32(t["metaHash"]),
        encoded_state=b32(t["encodedState"]),
    )


def test_transfer_and_resolver_hashes_match_the_vectors(harness: Contract) -> None:
    chain_id = int(json.loads((VECTORS / "common.json").read_text())["chainId"])
    for case in cases("transfers"):
        transfer = vector_transfer(case["transfer"])
        t = case["transfer"]
        assert (
            enc.transfer_id(t["channelAddress"], transfer.payment_id, int(t["createNonce"]))
            == transfer.transfer_id
        )
        assert harness.functions.transferHash(transfer.as_abi()).call() == b32(case["transferHash"]), case[
            "name"
        ]
        for resolver in case["resolvers"]:
            digest = harness.functions.resolverHash(
                chain_id, b32(case["transferHash"]), b32(resolver["encodedResolver"])
            ).call()
            assert digest == b32(resolver["resolverHash"]), (case["name"], resolver["name"])


def test_definitions_resolve_as_the_vectors_say(session_net: Net, chain: str) -> None:
    """Each definition's code placed at the vector's address (the Signed receipt binds it), then called."""
    net = session_net
    for case in cases("transfers"):
        if case["definition"] == "hashlock":
            continue  # its outcome depends on the vector's `now`, which this chain's clock has passed
        t = case["transfer"]
        code = net.w3.eth.get_code(net.definition(DEFINITIONS[case["definition"]]))
        net.w3.provider.make_request("anvil_setCode", [t["transferDefinition"], "0x" + bytes(code).hex()])
        definition = net.contract(DEFINITIONS[case["definition"]], t["transferDefinition"])
        balance = [int(v) for v in t["balance"]]
        for resolver in case["resolvers"]:
            if "result" not in resolver:
                continue
            result = definition.functions.resolve(
                balance, b32(t["encodedState"]), b32(resolver["encodedResolver"])
            )
            assert result.call() == [int(v) for v in resolver["result"]], (case["name"], resolver["name"])


def test_withdraw_hashes_match_the_vectors(harness: Contract) -> None:
    for case in cases("withdraw"):
        c = case["commitment"]
        args = (
            int(c["chainId"]),
            c["channelAddress"],
            c["assetId"],
            c["recipient"],
            int(c["amount"]),
            int(c["nonce"]),
        )
        assert enc.withdraw_hash(*args) == b32(case["withdrawHash"])
        assert harness.functions.withdrawHash(*args).call() == b32(case["withdrawHash"])


def test_merkle_proofs_of_the_vectors_verify_with_openzeppelin(harness: Contract) -> None:
    for case in cases("merkle"):
        leaves = [b32(leaf) for leaf in case["leaves"]]
        assert enc.merkle_root(leaves) == b32(case["root"]), case["name"]
        for item in case["proofs"]:
            proof = [b32(p) for p in item["proof"]]
            assert enc.merkle_proof(leaves, b32(item["leaf"])) == proof, case["name"]
            assert harness.functions.verifyProof(proof, b32(case["root"]), b32(item["leaf"])).call(), case[
                "name"
            ]


def test_receipt_digests_match_the_vectors(session_net: Net, chain: str) -> None:
    net = session_net
    code = net.w3.eth.get_code(net.definition("SignedTransfer"))
    for case in cases("receipts"):
        domain, message = case["domain"], case["message"]
        if int(domain["chainId"]) != net.chain_id:
            continue  # the contract reads the chain id it runs on
        net.w3.provider.make_request("anvil_setCode", [domain["verifyingContract"], "0x" + bytes(code).hex()])
        signed = net.contract("SignedTransfer", domain["verifyingContract"])
        digest = signed.functions.receiptDigest(b32(message["paymentId"]), b32(message["data"])).call()
        assert digest == b32(case["digest"])
