"""Generate the shared test vectors in tests/vectors/ from the Python protocol core.

    .venv/bin/python scripts/make_vectors.py          # rewrite the files
    .venv/bin/python scripts/make_vectors.py --check  # exit 1 if the committed files differ

Deterministic: fixed keys (keccak256 of a label), fixed times, RFC 6979 signatures. The Solidity contracts
and the card's JavaScript check themselves against these files; tests/vectors/README.md documents every
field. Regenerate only on purpose: a changed vector means a changed encoding (see docs/protocol.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import coincurve  # noqa: E402

from connext.chain import contracts  # noqa: E402
from connext.protocol import auth, definitions, ecies, encoding, merkle, signing  # noqa: E402
from connext.protocol import meta as transfer_meta  # noqa: E402
from connext.protocol import serialization as sz  # noqa: E402
from connext.protocol.encoding import MAX_UINT256, ZERO_ADDRESS, ZERO_BYTES32, keccak256  # noqa: E402
from connext.protocol.errors import ProtocolError  # noqa: E402
from connext.protocol.types import (  # noqa: E402
    AssetDefund,
    ChainDispute,
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    ResumeUpdate,
    SetupUpdate,
    SwapUpdate,
    TransferState,
    Update,
    UpdateContext,
    WithdrawCommitment,
)
from connext.protocol.updates import apply_update  # noqa: E402
from connext.protocol.validation import validate_update  # noqa: E402

VECTORS_DIR = ROOT / "tests" / "vectors"
Json = dict[str, Any]


def _key(label: str) -> bytes:
    return keccak256(f"connext-py/vectors/{label}".encode())


def _address(label: str) -> str:
    return encoding.checksum_address(keccak256(f"connext-py/vectors/{label}".encode())[12:])


NODE = signing.Signer(_key("node"))
USER = signing.Signer(_key("user"))
RECEIPT_SIGNER = signing.Signer(_key("receipt-signer"))
STRANGER = signing.Signer(_key("stranger"))
KEYS = {"node": NODE, "user": USER, "receiptSigner": RECEIPT_SIGNER, "stranger": STRANGER}
BY_ADDRESS = {signer.address: signer for signer in KEYS.values()}
CHAIN_ID = 31337  # anvil's, so commitments and resolver hashes verify on the dev chain as they are
CHANNEL = _address("channel")
TOKEN = _address("token")
RECIPIENT = _address("recipient")
DEFINITION_ADDRESSES = {
    DefinitionKind.LINKED: _address("Linked"),
    DefinitionKind.HASHLOCK: _address("HashLock"),
    DefinitionKind.SIGNED: _address("Signed"),
    DefinitionKind.WITHDRAW: _address("Withdraw"),
}
DEFINITIONS = {address: kind for kind, address in DEFINITION_ADDRESSES.items()}
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
TIMEOUT = 86_400
TRANSFER_TIMEOUT = 3_600


def hx(raw: bytes) -> str:
    return "0x" + raw.hex()


def context(*, now: int = NOW, deposits: dict[str, tuple[int, int]] | None = None) -> UpdateContext:
    return UpdateContext(now=now, definitions=DEFINITIONS, chain_deposits=deposits or {})


# -- common ----------------------------------------------------------------------------------------


def build_common() -> Json:
    tags = {
        "CHANNEL_STATE_TAG": "connext-py/ChannelState/v1",
        "TRANSFER_STATE_TAG": "connext-py/TransferState/v1",
        "WITHDRAW_TAG": "connext-py/Withdraw/v1",
        "RESOLVER_TAG": "connext-py/Resolver/v1",
        "TRANSFER_ID_TAG": "connext-py/TransferId/v1",
    }
    return {
        "about": "Shared constants of every vector file: domain tags, ABI type strings, test accounts.",
        "chainId": str(CHAIN_ID),
        "tags": [
            {"name": name, "preimage": text, "value": hx(keccak256(text.encode()))}
            for name, text in tags.items()
        ],
        "abiTypes": {
            "stateHash": list(encoding.STATE_HASH_TYPES),
            "transferHash": list(encoding.TRANSFER_HASH_TYPES),
            "transferId": list(encoding.TRANSFER_ID_TYPES),
            "withdrawHash": list(encoding.WITHDRAW_HASH_TYPES),
            "resolverHash": list(encoding.RESOLVER_HASH_TYPES),
            "linkedState": ["bytes32"],
            "linkedResolver": ["bytes32"],
            "hashLockState": ["bytes32", "uint256"],
            "hashLockResolver": ["bytes32"],
            "signedState": ["address", "bytes32"],
            "signedResolver": ["bytes32", "bytes"],
            "withdrawState": list(definitions.WITHDRAW_STATE_TYPES),
            "withdrawResolver": ["bytes"],
        },
        "accounts": [
            {
                "name": name,
                "privateKey": hx(_key({"receiptSigner": "receipt-signer"}.get(name, name))),
                "address": s.address,
            }
            for name, s in KEYS.items()
        ],
        "addresses": {
            "channel": CHANNEL,
            "token": TOKEN,
            "eth": ZERO_ADDRESS,
            "recipient": RECIPIENT,
            **{f"{kind.value}Definition": address for kind, address in DEFINITION_ADDRESSES.items()},
        },
    }


# -- channel states --------------------------------------------------------------------------------


def _transfer(
    kind: DefinitionKind,
    encoded_state: bytes,
    *,
    amount: int,
    create_nonce: int,
    initiator: str,
    payment_label: str,
    asset: str = ZERO_ADDRESS,
    meta_hash: bytes = ZERO_BYTES32,
) -> TransferState:
    return TransferState(
        channel_address=CHANNEL,
        payment_id=keccak256(f"payment/{payment_label}".encode()),
        create_nonce=create_nonce,
        definition=DEFINITION_ADDRESSES[kind],
        initiator=initiator,
        responder=USER.address if initiator == NODE.address else NODE.address,
        asset_id=asset,
        balance=(amount, 0),
        transfer_timeout=TRANSFER_TIMEOUT,
        encoded_state=encoded_state,
        meta_hash=meta_hash,
    )


def _state_case(name: str, state: ChannelState) -> Json:
    return {
        "name": name,
        "state": sz.channel_state_to_json(state),
        "encoded": hx(encoding.encode_channel_state(state)),
        "stateHash": hx(state.state_hash),
        "ethSignedMessageHash": hx(encoding.eth_signed_message_hash(state.state_hash)),
        "signatures": {
            "node": hx(signing.sign_state(state, NODE)),
            "user": hx(signing.sign_state(state, USER)),
        },
    }


def build_channel_states() -> Json:
    base = ChannelState(
        channel_address=CHANNEL,
        chain_id=CHAIN_ID,
        node=NODE.address,
        user=USER.address,
        timeout=TIMEOUT,
        nonce=1,
    )
    eth = ChannelState(
        **{
            **base.__dict__,
            "asset_ids": (ZERO_ADDRESS,),
            "balances": ((5 * 10**18, 2 * 10**18),),
            "processed_deposits": ((5 * 10**18, 2 * 10**18),),
            "defund_nonces": (1,),
            "nonce": 2,
        }
    )
    transfers = (
        _transfer(
            DefinitionKind.LINKED,
            definitions.LinkedState(keccak256(keccak256(b"preimage/1"))).encode(),
            amount=10**17,
            create_nonce=4,
            initiator=USER.address,
            payment_label="1",
        ),
        _transfer(
            DefinitionKind.HASHLOCK,
            definitions.HashLockState(keccak256(keccak256(b"preimage/2")), NOW + 3600).encode(),
            amount=25,
            create_nonce=5,
            initiator=NODE.address,
            payment_label="2",
            asset=TOKEN,
            meta_hash=keccak256(b'{"memo":"coffee"}'),
        ),
        _transfer(
            DefinitionKind.SIGNED,
            definitions.SignedState(RECEIPT_SIGNER.address, keccak256(b"payment/3")).encode(),
            amount=3 * 10**16,
            create_nonce=7,
            initiator=USER.address,
            payment_label="3",
        ),
    )
    two_assets = ChannelState(
        **{
            **base.__dict__,
            "asset_ids": (ZERO_ADDRESS, TOKEN),
            "balances": ((5 * 10**18 + 10**16, 2 * 10**18 - 10**17 - 3 * 10**16 - 10**16), (975, 0)),
            "processed_deposits": ((5 * 10**18, 2 * 10**18), (1000, 0)),
            "defund_nonces": (1, 3),
            "nonce": 9,
            "transfers": transfers,
        }
    )
    extreme = ChannelState(
        **{
            **base.__dict__,
            "chain_id": MAX_UINT256,
            "asset_ids": (TOKEN,),
            "balances": ((MAX_UINT256, 0),),
            "processed_deposits": ((MAX_UINT256, 0),),
            "defund_nonces": (MAX_UINT256,),
            "timeout": 1,
            "nonce": MAX_UINT256,
        }
    )
    return {
        "about": (
            "Channel states: `encoded` is abi.encode(CHANNEL_STATE_TAG, state), `stateHash` its keccak256, "
            "`signatures` EIP-191 personal signatures of stateHash by node and user. `state.transfers` are "
            "the active transfers (not hashed; `merkleRoot` is their root)."
        ),
        "cases": [
            _state_case("setup: no assets, no transfers", base),
            _state_case("ETH deposited by both", eth),
            _state_case("two assets, three active transfers, raised defund nonce", two_assets),
            _state_case("extreme values: uint256 max everywhere it is allowed", extreme),
        ],
    }


# -- transfers -------------------------------------------------------------------------------------


def _resolver_case(
    transfer: TransferState,
    kind: DefinitionKind,
    name: str,
    encoded_resolver: bytes,
    decoded: Json,
    *,
    now: int,
) -> Json:
    case: Json = {"name": name, "decoded": decoded, "encodedResolver": hx(encoded_resolver), "now": str(now)}
    try:
        out = definitions.resolve(
            kind,
            transfer.balance,
            transfer.encoded_state,
            encoded_resolver,
            chain_id=CHAIN_ID,
            definition=transfer.definition,
            now=now,
        )
        case["result"] = [str(out[0]), str(out[1])]
    except ProtocolError as error:
        case["error"] = error.code
    resolver_hash = encoding.resolver_hash(CHAIN_ID, transfer.transfer_hash, encoded_resolver)
    case["resolverHash"] = hx(resolver_hash)
    case["responderResolverSignature"] = hx(signing.sign_hash(resolver_hash, BY_ADDRESS[transfer.responder]))
    return case


def _transfer_case(
    name: str, kind: DefinitionKind, transfer: TransferState, decoded: Json, resolvers: list[Json]
) -> Json:
    return {
        "name": name,
        "definition": kind.value,
        "decodedState": decoded,
        "transfer": sz.transfer_state_to_json(transfer),
        "transferIdEncoded": hx(
            encoding.TRANSFER_ID_TAG
            + bytes(12)
            + encoding.address_to_bytes(transfer.channel_address)
            + transfer.payment_id
            + transfer.create_nonce.to_bytes(32, "big")
        ),
        "encoded": hx(encoding.encode_transfer_state(transfer)),
        "transferHash": hx(transfer.transfer_hash),
        "resolvers": resolvers,
    }


def build_transfers() -> Json:
    cases: list[Json] = []
    amount = 10**17

    preimage = keccak256(b"preimage/linked")
    linked_state = definitions.LinkedState(keccak256(preimage))
    linked = _transfer(
        DefinitionKind.LINKED,
        linked_state.encode(),
        amount=amount,
        create_nonce=3,
        initiator=USER.address,
        payment_label="linked",
    )
    cases.append(
        _transfer_case(
            "Linked, user pays node",
            DefinitionKind.LINKED,
            linked,
            {"lockHash": hx(linked_state.lock_hash)},
            [
                _resolver_case(
                    linked, DefinitionKind.LINKED, "claim", preimage, {"preimage": hx(preimage)}, now=NOW
                ),
                _resolver_case(
                    linked,
                    DefinitionKind.LINKED,
                    "cancel",
                    ZERO_BYTES32,
                    {"preimage": hx(ZERO_BYTES32)},
                    now=NOW,
                ),
                _resolver_case(
                    linked,
                    DefinitionKind.LINKED,
                    "wrong preimage",
                    keccak256(b"x"),
                    {"preimage": hx(keccak256(b"x"))},
                    now=NOW,
                ),
            ],
        )
    )

    preimage = keccak256(b"preimage/hashlock")
    expiry = NOW + 600
    hashlock_state = definitions.HashLockState(keccak256(preimage), expiry)
    hashlock = _transfer(
        DefinitionKind.HASHLOCK,
        hashlock_state.encode(),
        amount=amount,
        create_nonce=4,
        initiator=NODE.address,
        payment_label="hashlock",
        meta_hash=keccak256(b'{"route":"hop 2"}'),
    )
    cases.append(
        _transfer_case(
            "HashLock, node pays user",
            DefinitionKind.HASHLOCK,
            hashlock,
            {"lockHash": hx(hashlock_state.lock_hash), "expiry": str(expiry)},
            [
                _resolver_case(
                    hashlock,
                    DefinitionKind.HASHLOCK,
                    "claim before expiry",
                    preimage,
                    {"preimage": hx(preimage)},
                    now=expiry - 1,
                ),
                _resolver_case(
                    hashlock,
                    DefinitionKind.HASHLOCK,
                    "claim at expiry",
                    preimage,
                    {"preimage": hx(preimage)},
                    now=expiry,
                ),
                _resolver_case(
                    hashlock,
                    DefinitionKind.HASHLOCK,
                    "cancel after expiry",
                    ZERO_BYTES32,
                    {"preimage": hx(ZERO_BYTES32)},
                    now=expiry + 1,
                ),
                _resolver_case(
                    hashlock,
                    DefinitionKind.HASHLOCK,
                    "wrong preimage before expiry",
                    keccak256(b"y"),
                    {"preimage": hx(keccak256(b"y"))},
                    now=NOW,
                ),
            ],
        )
    )

    payment_id = keccak256(b"payment/signed")
    signed_state = definitions.SignedState(RECEIPT_SIGNER.address, payment_id)
    signed = _transfer(
        DefinitionKind.SIGNED,
        signed_state.encode(),
        amount=amount,
        create_nonce=5,
        initiator=USER.address,
        payment_label="signed",
    )
    data = keccak256(b"receipt/data")
    good = signing.sign_receipt(CHAIN_ID, signed.definition, payment_id, data, RECEIPT_SIGNER)
    bad = signing.sign_receipt(CHAIN_ID, signed.definition, payment_id, data, STRANGER)
    cases.append(
        _transfer_case(
            "Signed, user pays node on the receipt signer's signature",
            DefinitionKind.SIGNED,
            signed,
            {"signer": signed_state.signer, "paymentId": hx(payment_id)},
            [
                _resolver_case(
                    signed,
                    DefinitionKind.SIGNED,
                    "claim",
                    definitions.SignedResolver(data, good).encode(),
                    {"data": hx(data), "signature": hx(good)},
                    now=NOW,
                ),
                _resolver_case(
                    signed,
                    DefinitionKind.SIGNED,
                    "cancel (empty signature)",
                    definitions.SignedResolver(ZERO_BYTES32, b"").encode(),
                    {"data": hx(ZERO_BYTES32), "signature": "0x"},
                    now=NOW,
                ),
                _resolver_case(
                    signed,
                    DefinitionKind.SIGNED,
                    "signature by someone else",
                    definitions.SignedResolver(data, bad).encode(),
                    {"data": hx(data), "signature": hx(bad)},
                    now=NOW,
                ),
            ],
        )
    )

    create_nonce = 6
    commitment = WithdrawCommitment(
        chain_id=CHAIN_ID,
        channel_address=CHANNEL,
        asset_id=ZERO_ADDRESS,
        recipient=RECIPIENT,
        amount=amount,
        nonce=create_nonce,
    )
    withdraw_state = definitions.WithdrawState(
        channel_address=CHANNEL,
        asset_id=ZERO_ADDRESS,
        recipient=RECIPIENT,
        amount=amount,
        nonce=create_nonce,
        initiator=USER.address,
        responder=NODE.address,
        initiator_signature=signing.sign_withdraw(commitment, USER),
    )
    withdraw = _transfer(
        DefinitionKind.WITHDRAW,
        withdraw_state.encode(),
        amount=amount,
        create_nonce=create_nonce,
        initiator=USER.address,
        payment_label="withdraw",
    )
    node_signature = signing.sign_withdraw(commitment, NODE)
    user_again = signing.sign_withdraw(commitment, USER)
    cases.append(
        _transfer_case(
            "Withdraw, user withdraws to a recipient; the node's signature resolves it",
            DefinitionKind.WITHDRAW,
            withdraw,
            {
                "channelAddress": CHANNEL,
                "assetId": ZERO_ADDRESS,
                "recipient": RECIPIENT,
                "amount": str(amount),
                "nonce": str(create_nonce),
                "initiator": USER.address,
                "responder": NODE.address,
                "initiatorSignature": hx(withdraw_state.initiator_signature),
                "withdrawHash": hx(commitment.withdraw_hash),
            },
            [
                _resolver_case(
                    withdraw,
                    DefinitionKind.WITHDRAW,
                    "responder signs the commitment",
                    definitions.WithdrawResolver(node_signature).encode(),
                    {"responderSignature": hx(node_signature)},
                    now=NOW,
                ),
                _resolver_case(
                    withdraw,
                    DefinitionKind.WITHDRAW,
                    "cancel (empty signature)",
                    definitions.WithdrawResolver(b"").encode(),
                    {"responderSignature": "0x"},
                    now=NOW,
                ),
                _resolver_case(
                    withdraw,
                    DefinitionKind.WITHDRAW,
                    "initiator's own signature",
                    definitions.WithdrawResolver(user_again).encode(),
                    {"responderSignature": hx(user_again)},
                    now=NOW,
                ),
            ],
        )
    )
    return {
        "about": (
            "One transfer per definition. `transfer` is the TransferState (struct fields plus `createNonce` and "
            "`encodedState`); `transferIdEncoded` is abi.encode(TRANSFER_ID_TAG, channelAddress, paymentId, "
            "createNonce); `encoded` is abi.encode(TRANSFER_STATE_TAG, transfer) and `transferHash` its keccak256. "
            "Each resolver gives the definition's `resolve(balance, encodedState, encodedResolver)` at time `now` "
            "as `result` [toInitiator, toResponder] or the revert as `error`, plus the resolverHash and the "
            "responder's EIP-191 signature of it."
        ),
        "cases": cases,
    }


# -- merkle ----------------------------------------------------------------------------------------


def build_merkle() -> Json:
    cases: list[Json] = []
    for count in (0, 1, 2, 3, 5):
        leaves = [keccak256(f"leaf/{count}/{i}".encode()) for i in range(count)]
        root = merkle.merkle_root(leaves)
        cases.append(
            {
                "name": f"{count} leaves",
                "leaves": [hx(leaf) for leaf in leaves],
                "sortedLeaves": [hx(leaf) for leaf in sorted(leaves)],
                "root": hx(root),
                "proofs": [
                    {"leaf": hx(leaf), "proof": [hx(p) for p in merkle.merkle_proof(leaves, leaf)]}
                    for leaf in leaves
                ],
            }
        )
    return {
        "about": (
            "Merkle roots of transfer hashes: leaves sorted ascending, OpenZeppelin commutative keccak pairs, an "
            "odd last node moves up unchanged; zero leaves give bytes32(0). Each proof verifies with "
            "MerkleProof.verify(proof, root, leaf). `leaves` is the input order (unsorted)."
        ),
        "cases": cases,
    }


# -- withdraw commitments, receipts -----------------------------------------------------------------


def build_withdraw() -> Json:
    commitments = [
        WithdrawCommitment(
            chain_id=CHAIN_ID,
            channel_address=CHANNEL,
            asset_id=ZERO_ADDRESS,
            recipient=RECIPIENT,
            amount=10**18,
            nonce=7,
        ),
        WithdrawCommitment(
            chain_id=CHAIN_ID,
            channel_address=CHANNEL,
            asset_id=TOKEN,
            recipient=USER.address,
            amount=1,
            nonce=MAX_UINT256,
        ),
        WithdrawCommitment(
            chain_id=1,
            channel_address=CHANNEL,
            asset_id=TOKEN,
            recipient=NODE.address,
            amount=MAX_UINT256,
            nonce=2,
        ),
    ]
    return {
        "about": (
            "Withdraw commitments: `encoded` is abi.encode(WITHDRAW_TAG, chainId, channelAddress, assetId, "
            "recipient, amount, nonce), `withdrawHash` its keccak256, signatures are EIP-191 by node and user."
        ),
        "cases": [
            {
                "commitment": sz.withdraw_commitment_to_json(c),
                "encoded": hx(encoding.encode_withdraw_commitment(c)),
                "withdrawHash": hx(c.withdraw_hash),
                "signatures": {
                    "node": hx(signing.sign_withdraw(c, NODE)),
                    "user": hx(signing.sign_withdraw(c, USER)),
                },
            }
            for c in commitments
        ],
    }


def build_receipts() -> Json:
    cases: list[Json] = []
    for chain_id, payment_label, data_label in (
        (CHAIN_ID, "a", "delivered"),
        (1, "b", "other"),
        (CHAIN_ID, "c", None),
    ):
        verifying_contract = DEFINITION_ADDRESSES[DefinitionKind.SIGNED]
        payment_id = keccak256(f"payment/{payment_label}".encode())
        data = keccak256(data_label.encode()) if data_label else ZERO_BYTES32
        cases.append(
            {
                "domain": {
                    "name": encoding.SIGNED_DOMAIN_NAME,
                    "version": encoding.SIGNED_DOMAIN_VERSION,
                    "chainId": str(chain_id),
                    "verifyingContract": verifying_contract,
                },
                "message": {"paymentId": hx(payment_id), "data": hx(data)},
                "domainSeparator": hx(encoding.receipt_domain_separator(chain_id, verifying_contract)),
                "structHash": hx(encoding.receipt_struct_hash(payment_id, data)),
                "digest": hx(encoding.receipt_digest(chain_id, verifying_contract, payment_id, data)),
                "signer": RECEIPT_SIGNER.address,
                "signature": hx(
                    signing.sign_receipt(chain_id, verifying_contract, payment_id, data, RECEIPT_SIGNER)
                ),
            }
        )
    return {
        "about": (
            "EIP-712 Receipt signatures for Signed transfers (raw ECDSA over `digest`, no EIP-191 prefix). "
            "verifyingContract is the Signed definition's address; a deployed definition at another address "
            "re-signs with the receiptSigner key from common.json."
        ),
        "primaryType": "Receipt",
        "types": {
            "EIP712Domain": "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
            "Receipt": "Receipt(bytes32 paymentId,bytes32 data)",
        },
        "domainTypehash": hx(encoding.EIP712_DOMAIN_TYPEHASH),
        "receiptTypehash": hx(encoding.RECEIPT_TYPEHASH),
        "cases": cases,
    }


# -- an update history -----------------------------------------------------------------------------


def build_updates() -> Json:
    steps: list[Json] = []
    rejections: list[Json] = []
    deposits: dict[str, tuple[int, int]] = {}
    state: ChannelState | None = None
    history_state_hashes: list[bytes] = []
    now = NOW

    def step(name: str, update: Update, ctx: UpdateContext | None = None) -> ChannelState:
        nonlocal state
        ctx = ctx or context(now=now, deposits=deposits)
        initiator = BY_ADDRESS[update.initiator]
        new = apply_update(state, update, context=ctx)
        signature = signing.sign_state(new, initiator)
        assert validate_update(state, update, signature, context=ctx) == new
        responder = NODE if initiator is USER else USER
        steps.append(
            {
                "name": name,
                "update": sz.update_to_json(update),
                "context": sz.update_context_to_json(ctx),
                "state": sz.channel_state_to_json(new),
                "stateHash": hx(new.state_hash),
                "initiatorSignature": hx(signature),
                "responderSignature": hx(signing.sign_state(new, responder)),
            }
        )
        state = new
        history_state_hashes.append(new.state_hash)
        return new

    def reject(name: str, update: Update, ctx: UpdateContext | None = None) -> None:
        ctx = ctx or context(now=now, deposits=deposits)
        try:
            apply_update(state, update, context=ctx)
        except ProtocolError as error:
            rejections.append(
                {
                    "name": name,
                    "afterStep": len(steps) - 1,
                    "update": sz.update_to_json(update),
                    "context": sz.update_context_to_json(ctx),
                    "error": error.code,
                }
            )
            return
        raise AssertionError(f"{name} was accepted")

    def common(current: ChannelState, initiator: signing.Signer) -> Json:
        return {"channel_address": CHANNEL, "nonce": current.nonce + 1, "initiator": initiator.address}

    current = step(
        "user sets up the channel",
        SetupUpdate(
            channel_address=CHANNEL,
            nonce=1,
            initiator=USER.address,
            chain_id=CHAIN_ID,
            node=NODE.address,
            user=USER.address,
            timeout=TIMEOUT,
        ),
    )
    deposits[ZERO_ADDRESS] = (0, 2 * 10**18)
    eth_deposit = DepositUpdate(
        **common(current, USER), asset_id=ZERO_ADDRESS, total_deposits_node=0, total_deposits_user=2 * 10**18
    )
    reject("a nonce not above the current one", DepositUpdate(**{**eth_deposit.__dict__, "nonce": 1}))
    reject("a nonce that skips ahead", DepositUpdate(**{**eth_deposit.__dict__, "nonce": 3}))
    reject(
        "an update for another channel", DepositUpdate(**{**eth_deposit.__dict__, "channel_address": TOKEN})
    )
    reject(
        "a stranger initiates an update",
        DepositUpdate(**{**eth_deposit.__dict__, "initiator": STRANGER.address}),
    )
    reject(
        "a deposit that credits nothing", DepositUpdate(**{**eth_deposit.__dict__, "total_deposits_user": 0})
    )
    reject(
        "a second setup",
        SetupUpdate(
            channel_address=CHANNEL,
            nonce=2,
            initiator=USER.address,
            chain_id=CHAIN_ID,
            node=NODE.address,
            user=USER.address,
            timeout=TIMEOUT,
        ),
    )
    reject(
        "resume with no dispute on chain",
        ResumeUpdate(**common(current, USER), defunds=(), dropped_transfer_ids=()),
    )
    reject(
        "deposit more than the chain shows",
        DepositUpdate(
            **common(current, USER),
            asset_id=ZERO_ADDRESS,
            total_deposits_node=0,
            total_deposits_user=3 * 10**18,
        ),
    )
    current = step(
        "user's ETH deposit is credited",
        DepositUpdate(
            **common(current, USER),
            asset_id=ZERO_ADDRESS,
            total_deposits_node=0,
            total_deposits_user=2 * 10**18,
        ),
    )
    deposits[ZERO_ADDRESS] = (10**18, 2 * 10**18)
    current = step(
        "node collateralizes ETH",
        DepositUpdate(
            **common(current, NODE),
            asset_id=ZERO_ADDRESS,
            total_deposits_node=10**18,
            total_deposits_user=2 * 10**18,
        ),
    )
    reject(
        "deposit totals below what is already processed",
        DepositUpdate(
            **common(current, NODE),
            asset_id=ZERO_ADDRESS,
            total_deposits_node=0,
            total_deposits_user=2 * 10**18,
        ),
    )
    deposits[TOKEN] = (500, 0)
    current = step(
        "node deposits a token",
        DepositUpdate(
            **common(current, NODE), asset_id=TOKEN, total_deposits_node=500, total_deposits_user=0
        ),
    )
    preimage = keccak256(b"history/preimage")
    linked = CreateUpdate(
        **common(current, USER),
        asset_id=ZERO_ADDRESS,
        amount=3 * 10**17,
        definition=DEFINITION_ADDRESSES[DefinitionKind.LINKED],
        payment_id=keccak256(b"history/payment/1"),
        encoded_state=definitions.LinkedState(keccak256(preimage)).encode(),
        transfer_timeout=TRANSFER_TIMEOUT,
    )
    reject("create more than the balance", CreateUpdate(**{**linked.__dict__, "amount": 2 * 10**18 + 1}))
    reject("create of nothing", CreateUpdate(**{**linked.__dict__, "amount": 0}))
    reject("create with an unknown definition", CreateUpdate(**{**linked.__dict__, "definition": RECIPIENT}))
    reject(
        "create in an asset the channel does not hold",
        CreateUpdate(**{**linked.__dict__, "asset_id": _address("other-token")}),
    )
    reject("create with a zero transfer timeout", CreateUpdate(**{**linked.__dict__, "transfer_timeout": 0}))
    reject(
        "create with a transfer timeout past uint32",
        CreateUpdate(**{**linked.__dict__, "transfer_timeout": 2**32}),
    )
    reject(
        "Linked lock hash of the zero preimage (the cancel value)",
        CreateUpdate(**{**linked.__dict__, "encoded_state": keccak256(ZERO_BYTES32)}),
    )
    reject(
        "Linked state that is not one bytes32",
        CreateUpdate(**{**linked.__dict__, "encoded_state": keccak256(preimage)[:31]}),
    )
    reject(
        "HashLock already expired at create",
        CreateUpdate(
            **{
                **linked.__dict__,
                "definition": DEFINITION_ADDRESSES[DefinitionKind.HASHLOCK],
                "encoded_state": definitions.HashLockState(keccak256(preimage), now).encode(),
            }
        ),
    )
    current = step("user locks a Linked transfer to the node", linked)
    linked_id = current.transfers[-1].transfer_id
    reject(
        "the transfer's initiator tries to resolve it",
        ResolveUpdate(**common(current, USER), transfer_id=linked_id, encoded_resolver=preimage),
    )
    reject(
        "wrong preimage",
        ResolveUpdate(**common(current, NODE), transfer_id=linked_id, encoded_resolver=keccak256(b"guess")),
    )
    reject(
        "a preimage resolver that is not one bytes32",
        ResolveUpdate(**common(current, NODE), transfer_id=linked_id, encoded_resolver=preimage + b"\x00"),
    )
    reject(
        "resolve of a transfer that is not active",
        ResolveUpdate(
            **common(current, NODE), transfer_id=keccak256(b"no such transfer"), encoded_resolver=preimage
        ),
    )
    reject(
        "resolve of a transfer disputed on chain (it settles there only)",
        ResolveUpdate(**common(current, NODE), transfer_id=linked_id, encoded_resolver=preimage),
        UpdateContext(
            now=now,
            definitions=DEFINITIONS,
            chain_deposits=deposits,
            dispute=ChainDispute(
                state_hash=current.state_hash,
                defund_expiry=now + 2 * TIMEOUT,
                chain_time=now,
                disputed_transfers=frozenset({current.transfers[-1].transfer_hash}),
            ),
        ),
    )
    hashlock_preimage = keccak256(b"history/hashlock")
    current = step(
        "node locks a HashLock transfer of tokens to the user",
        CreateUpdate(
            **common(current, NODE),
            asset_id=TOKEN,
            amount=120,
            definition=DEFINITION_ADDRESSES[DefinitionKind.HASHLOCK],
            payment_id=keccak256(b"history/payment/2"),
            encoded_state=definitions.HashLockState(keccak256(hashlock_preimage), now + 300).encode(),
            transfer_timeout=TRANSFER_TIMEOUT,
            meta_hash=keccak256(b'{"memo":"lunch"}'),
        ),
    )
    hashlock_id = current.transfers[-1].transfer_id
    current = step(
        "node resolves the Linked transfer with the preimage",
        ResolveUpdate(**common(current, NODE), transfer_id=linked_id, encoded_resolver=preimage),
    )
    now += 300
    reject(
        "HashLock claimed at its expiry",
        ResolveUpdate(**common(current, USER), transfer_id=hashlock_id, encoded_resolver=hashlock_preimage),
    )
    current = step(
        "user cancels the expired HashLock (refund to the node)",
        ResolveUpdate(**common(current, USER), transfer_id=hashlock_id, encoded_resolver=ZERO_BYTES32),
    )
    # Swaps at the protocol level: either party may initiate one (who may is the node's and the clients'
    # policy). Each is one doubly signed state; per asset node + user is unchanged.
    swap = SwapUpdate(
        **common(current, USER),
        give_asset=ZERO_ADDRESS,
        give_amount=10**17,
        take_asset=TOKEN,
        take_amount=100,
    )
    other_token = _address("other-token")
    reject("swap taking an asset the channel does not hold", replace(swap, take_asset=other_token))
    reject("swap giving an asset the channel does not hold", replace(swap, give_asset=other_token))
    reject("swap of an asset for itself", replace(swap, take_asset=ZERO_ADDRESS))
    reject("swap giving nothing", replace(swap, give_amount=0))
    reject("swap taking nothing", replace(swap, take_amount=0))
    reject("swap giving more than the initiator holds", replace(swap, give_amount=17 * 10**17 + 1))
    reject("swap taking more than the responder holds", replace(swap, take_amount=501))
    reject("swap at a nonce not above the current one", replace(swap, nonce=current.nonce))
    reject("swap at a nonce that skips ahead", replace(swap, nonce=current.nonce + 2))
    reject("swap initiated by a stranger", replace(swap, initiator=STRANGER.address))
    current = step("user swaps ETH for the node's tokens", swap)
    current = step(
        "node swaps ETH for the user's tokens",
        SwapUpdate(
            **common(current, NODE),
            give_asset=ZERO_ADDRESS,
            give_amount=5 * 10**16,
            take_asset=TOKEN,
            take_amount=50,
        ),
    )
    current = step(
        "user swaps its tokens back for ETH",
        SwapUpdate(
            **common(current, USER),
            give_asset=TOKEN,
            give_amount=50,
            take_asset=ZERO_ADDRESS,
            take_amount=4 * 10**16,
        ),
    )
    withdraw_nonce = current.nonce + 1
    commitment = WithdrawCommitment(
        chain_id=CHAIN_ID,
        channel_address=CHANNEL,
        asset_id=ZERO_ADDRESS,
        recipient=RECIPIENT,
        amount=5 * 10**17,
        nonce=withdraw_nonce,
    )
    current = step(
        "user creates a Withdraw to a recipient",
        CreateUpdate(
            **common(current, USER),
            asset_id=ZERO_ADDRESS,
            amount=5 * 10**17,
            definition=DEFINITION_ADDRESSES[DefinitionKind.WITHDRAW],
            payment_id=keccak256(b"history/payment/3"),
            encoded_state=definitions.WithdrawState(
                channel_address=CHANNEL,
                asset_id=ZERO_ADDRESS,
                recipient=RECIPIENT,
                amount=5 * 10**17,
                nonce=withdraw_nonce,
                initiator=USER.address,
                responder=NODE.address,
                initiator_signature=signing.sign_withdraw(commitment, USER),
            ).encode(),
            transfer_timeout=TRANSFER_TIMEOUT,
        ),
    )
    withdraw_id = current.transfers[-1].transfer_id
    to_channel = replace(commitment, recipient=CHANNEL, amount=10**17, nonce=current.nonce + 1)
    reject(
        "a Withdraw to the channel itself",
        CreateUpdate(
            **common(current, USER),
            asset_id=ZERO_ADDRESS,
            amount=10**17,
            definition=DEFINITION_ADDRESSES[DefinitionKind.WITHDRAW],
            payment_id=keccak256(b"history/payment/3b"),
            encoded_state=definitions.WithdrawState(
                channel_address=CHANNEL,
                asset_id=ZERO_ADDRESS,
                recipient=CHANNEL,
                amount=10**17,
                nonce=to_channel.nonce,
                initiator=USER.address,
                responder=NODE.address,
                initiator_signature=signing.sign_withdraw(to_channel, USER),
            ).encode(),
            transfer_timeout=TRANSFER_TIMEOUT,
        ),
    )
    reject(
        "a Withdraw resolved with the initiator's own signature",
        ResolveUpdate(
            **common(current, NODE),
            transfer_id=withdraw_id,
            encoded_resolver=definitions.WithdrawResolver(signing.sign_withdraw(commitment, USER)).encode(),
        ),
    )
    current = step(
        "node resolves the Withdraw with its commitment signature (the amount leaves the channel)",
        ResolveUpdate(
            **common(current, NODE),
            transfer_id=withdraw_id,
            encoded_resolver=definitions.WithdrawResolver(signing.sign_withdraw(commitment, NODE)).encode(),
        ),
    )
    payment_id = keccak256(b"history/payment/4")
    current = step(
        "node locks a Signed transfer to the user",
        CreateUpdate(
            **common(current, NODE),
            asset_id=ZERO_ADDRESS,
            amount=10**17,
            definition=DEFINITION_ADDRESSES[DefinitionKind.SIGNED],
            payment_id=payment_id,
            encoded_state=definitions.SignedState(RECEIPT_SIGNER.address, payment_id).encode(),
            transfer_timeout=TRANSFER_TIMEOUT,
        ),
    )
    data = keccak256(b"history/receipt")
    current = step(
        "user resolves the Signed transfer with the receipt",
        ResolveUpdate(
            **common(current, USER),
            transfer_id=current.transfers[-1].transfer_id,
            encoded_resolver=definitions.SignedResolver(
                data,
                signing.sign_receipt(
                    CHAIN_ID, DEFINITION_ADDRESSES[DefinitionKind.SIGNED], payment_id, data, RECEIPT_SIGNER
                ),
            ).encode(),
        ),
    )
    # The node disputes this state; after the windows the chain defunds ETH, paying the user's deposit made
    # meanwhile on top of its balance. The channel continues with a resume that follows the chain.
    eth = current.asset_index(ZERO_ADDRESS)
    assert eth is not None
    late_deposit = 10**17
    balance = current.balances[eth]
    defund = AssetDefund(
        asset_id=ZERO_ADDRESS, defund_nonce=1, payout=(balance[0], balance[1] + late_deposit)
    )
    defund_expiry = now + 2 * TIMEOUT

    def disputed(*, chain_time: int = defund_expiry, state_hash: bytes = current.state_hash) -> UpdateContext:
        dispute = ChainDispute(
            state_hash=state_hash,
            defund_expiry=defund_expiry,
            chain_time=chain_time,
            defunds={ZERO_ADDRESS: defund},
        )
        return UpdateContext(now=now, definitions=DEFINITIONS, chain_deposits=deposits, dispute=dispute)

    resume = ResumeUpdate(**common(current, NODE), defunds=(defund,), dropped_transfer_ids=())
    reject("resume before the defund window ended", resume, disputed(chain_time=defund_expiry - 1))
    reject(
        "resume of a state the chain did not dispute",
        resume,
        disputed(state_hash=history_state_hashes[-2]),
    )
    reject(
        "resume with another payout than the chain's",
        replace(resume, defunds=(replace(defund, payout=(balance[0], balance[1])),)),
        disputed(),
    )
    reject("resume that leaves out an asset the chain defunded", replace(resume, defunds=()), disputed())
    reject(
        "resume at another defund nonce than the chain's",
        replace(resume, defunds=(replace(defund, defund_nonce=2),)),
        disputed(),
    )
    step(
        "node resumes after the chain defunded ETH (the late deposit counts as processed)", resume, disputed()
    )
    return {
        "about": (
            "A channel's history, update by update. Each step applies `update` to the previous step's state "
            "(none before the first) under `context`, giving `state`; the initiator and the responder both "
            "signed its stateHash (EIP-191). Each rejection applies `update` to the state of step `afterStep` "
            "and must fail with the error code `error`."
        ),
        "steps": steps,
        "rejections": rejections,
    }


# -- ECIES, login, meta (what the card's JavaScript checks beside the channel rules) -----------------


def _public_key(label: str, *, compressed: bool = False) -> bytes:
    return coincurve.PrivateKey(_key(label)).public_key.format(compressed=compressed)


def build_ecies() -> Json:
    cases: list[Json] = []
    for name, recipient, compressed, message in (
        ("a preimage to the user", "user", False, keccak256(b"ecies/preimage/1")),
        ("a preimage to the node, public key given compressed", "node", True, keccak256(b"ecies/preimage/2")),
        ("an empty message", "user", False, b""),
        ("a longer message", "user", False, "a memo, café ☕".encode() * 3),
    ):
        index = len(cases) + 1
        ephemeral_key = _key(f"ecies/ephemeral/{index}")
        nonce = keccak256(f"ecies/nonce/{index}".encode())[: ecies.NONCE_BYTES]
        public_key = _public_key(recipient, compressed=compressed)
        cases.append(
            {
                "name": name,
                "recipient": recipient,
                "publicKey": hx(public_key),
                "message": hx(message),
                "ephemeralKey": hx(ephemeral_key),
                "nonce": hx(nonce),
                "ciphertext": hx(
                    ecies.encrypt(public_key, message, ephemeral_key=ephemeral_key, nonce=nonce)
                ),
            }
        )
    sealed = bytes.fromhex(cases[0]["ciphertext"][2:])
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    compressed_ephemeral = coincurve.PublicKey(sealed[:65]).format(compressed=True) + sealed[65:]
    refusals: list[Json] = []
    for name, key_name, ciphertext in (
        ("sealed for another key", "node", sealed),
        ("one bit of the ciphertext flipped", "user", bytes(flipped)),
        ("the tag changed", "user", sealed[:81] + bytes([sealed[81] ^ 1]) + sealed[82:]),
        ("truncated below the overhead", "user", sealed[: ecies.OVERHEAD - 1]),
        ("a compressed ephemeral key", "user", compressed_ephemeral),
    ):
        try:
            ecies.decrypt(_key(key_name), ciphertext)
        except ProtocolError as error:
            refusals.append(
                {"name": name, "recipient": key_name, "ciphertext": hx(ciphertext), "error": error.code}
            )
            continue
        raise AssertionError(f"{name} decrypted")
    return {
        "about": (
            "ECIES over secp256k1 (connext/protocol/ecies.py, eciespy's defaults): `ciphertext` = ephemeral public "
            "key (65, uncompressed) ‖ nonce (16) ‖ tag (16) ‖ AES-256-GCM(message), key = HKDF-SHA256(ephemeral "
            "public key ‖ shared point, both uncompressed; no salt, no info). Each case fixes the randomness "
            "(`ephemeralKey`, `nonce`): encrypting `message` to `publicKey` with it gives `ciphertext`, and the "
            "recipient's private key (common.json accounts) decrypts it. Each refusal must fail with `error`."
        ),
        "cases": cases,
        "refusals": refusals,
    }


def build_login() -> Json:
    cases: list[Json] = []
    for nonce, chain_id, signer_name in (("a1B2c3D4e5", CHAIN_ID, "user"), ("0" * 64, 1, "node")):
        message = auth.login_message(node_address=NODE.address.lower(), chain_id=chain_id, nonce=nonce)
        signer = KEYS[signer_name]
        cases.append(
            {
                "nodeAddress": NODE.address.lower(),
                "chainId": str(chain_id),
                "nonce": nonce,
                "message": message,
                "digest": hx(auth.login_digest(message)),
                "signer": signer.address,
                "signature": hx(auth.sign_login(message, signer)),
            }
        )
    refusals: list[Json] = []
    for nonce in ("", "not alnum!", "x" * 65, "a-b"):
        try:
            auth.login_message(node_address=NODE.address, chain_id=CHAIN_ID, nonce=nonce)
        except ProtocolError as error:
            refusals.append(
                {"nodeAddress": NODE.address, "chainId": str(CHAIN_ID), "nonce": nonce, "error": error.code}
            )
            continue
        raise AssertionError(f"nonce {nonce!r} was accepted")
    return {
        "about": (
            "Login (connext/protocol/auth.py): `message` is the text the client signs for a node-issued `nonce`, "
            "`digest` its EIP-191 personal-sign digest over the UTF-8 text (length prefix in decimal), "
            "`signature` by `signer`. `nodeAddress` is given lowercase; the message names it checksummed. Each "
            "refusal must fail with `error`."
        ),
        "cases": cases,
        "refusals": refusals,
    }


def build_meta() -> Json:
    metas: list[tuple[str, dict[str, Any] | None]] = [
        ("no meta", None),
        ("empty meta", {}),
        (
            "a routed payment",
            {"recipient": USER.address, "memo": "lunch", "encryptedPreimage": "0x" + "ab" * 16},
        ),
        ("nested, sorted at every level", {"b": 1, "a": {"d": [1, 2, "x", True, None], "c": False}}),
        ("text outside ASCII and control characters", {"memo": 'café ☕ "quoted" \\ \n\t\u0001\u007f'}),
        ("keys sorted by code point, not UTF-16 unit", {"\U0001f600": 1, "\uffff": 2, "Z": 3, "a": 4}),
        ("a large integer", {"expiry": 2**60}),
    ]
    cases: list[Json] = []
    for name, meta in metas:
        case: Json = {"name": name, "meta": meta, "metaHash": hx(transfer_meta.meta_hash(meta))}
        if meta:
            case["canonical"] = transfer_meta.canonical_meta(meta).decode()
        cases.append(case)
    return {
        "about": (
            "Transfer meta (connext/protocol/meta.py): `canonical` is json.dumps(meta, sort_keys=True, "
            "separators=(',', ':'), ensure_ascii=False) (keys sorted by code point), `metaHash` the keccak256 of "
            "its UTF-8 bytes; no meta and empty meta hash to bytes32(0) and have no `canonical`."
        ),
        "cases": cases,
    }


def build_channel_addresses() -> Json:
    cases: list[Json] = []
    for factory, mastercopy, node, user, chain_id in (
        (_address("factory"), _address("mastercopy"), NODE.address, USER.address, CHAIN_ID),
        (_address("factory"), _address("mastercopy"), NODE.address, USER.address, 1),
        (_address("factory"), _address("mastercopy"), USER.address, NODE.address, CHAIN_ID),
        (_address("factory/2"), _address("mastercopy/2"), NODE.address, STRANGER.address, MAX_UINT256),
    ):
        cases.append(
            {
                "factory": factory,
                "mastercopy": mastercopy,
                "node": node,
                "user": user,
                "chainId": str(chain_id),
                "salt": hx(contracts.channel_salt(node, user, chain_id)),
                "channelAddress": contracts.channel_address(
                    factory=factory, mastercopy=mastercopy, node=node, user=user, chain_id=chain_id
                ),
            }
        )
    return {
        "about": (
            "Channel addresses (docs/protocol.md, On chain): CREATE2 by `factory` with salt = "
            "keccak256(abi.encode(node, user, chainId)) of the EIP-1167 clone of `mastercopy` with the immutable "
            "args abi.encodePacked(node, user). A client computes its own channel's address from these."
        ),
        "cases": cases,
    }


BUILDERS: dict[str, Callable[[], Json]] = {
    "common": build_common,
    "channel_states": build_channel_states,
    "transfers": build_transfers,
    "merkle": build_merkle,
    "withdraw": build_withdraw,
    "receipts": build_receipts,
    "updates": build_updates,
    "ecies": build_ecies,
    "login": build_login,
    "meta": build_meta,
    "channel_addresses": build_channel_addresses,
}


def render(document: Json) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def build_all() -> dict[str, str]:
    """File name -> file text, for every vector file."""
    return {f"{name}.json": render(builder()) for name, builder in BUILDERS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for filename, text in build_all().items():
        path = VECTORS_DIR / filename
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(filename)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale vectors: {', '.join(stale)} (run scripts/make_vectors.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
