"""Test-side encodings of docs/protocol.md: states, transfers, commitments, merkle proofs, signatures.

Deliberately independent of the contracts (plain eth_abi + eth_account), so the contract tests check the
Solidity against the document, and loose enough to build the invalid values the revert tests need.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, replace
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_BYTES32 = bytes(32)

CHANNEL_STATE_TAG = keccak(b"connext-py/ChannelState/v1")
TRANSFER_STATE_TAG = keccak(b"connext-py/TransferState/v1")
WITHDRAW_TAG = keccak(b"connext-py/Withdraw/v1")
RESOLVER_TAG = keccak(b"connext-py/Resolver/v1")
TRANSFER_ID_TAG = keccak(b"connext-py/TransferId/v1")

CHANNEL_STATE_TYPE = (
    "(address,uint256,address,address,address[],uint256[2][],uint256[2][],uint256[],uint256,uint256,bytes32)"
)
TRANSFER_STATE_TYPE = (
    "(address,bytes32,bytes32,address,address,address,address,uint256[2],uint256,bytes32,bytes32)"
)
WITHDRAW_STATE_TYPES = ["address", "address", "address", "uint256", "uint256", "address", "address", "bytes"]


@dataclass(frozen=True)
class ChannelState:
    channel_address: str
    chain_id: int
    node: str
    user: str
    asset_ids: tuple[str, ...]
    balances: tuple[tuple[int, int], ...]
    processed_deposits: tuple[tuple[int, int], ...]
    defund_nonces: tuple[int, ...]
    timeout: int
    nonce: int
    merkle_root: bytes = ZERO_BYTES32

    def as_abi(self) -> tuple[Any, ...]:
        return (
            self.channel_address,
            self.chain_id,
            self.node,
            self.user,
            list(self.asset_ids),
            [list(pair) for pair in self.balances],
            [list(pair) for pair in self.processed_deposits],
            list(self.defund_nonces),
            self.timeout,
            self.nonce,
            self.merkle_root,
        )

    def hash(self) -> bytes:
        return keccak(encode(["bytes32", CHANNEL_STATE_TYPE], [CHANNEL_STATE_TAG, self.as_abi()]))

    def evolve(self, **changes: Any) -> ChannelState:
        return replace(self, **changes)


@dataclass(frozen=True)
class TransferState:
    channel_address: str
    transfer_id: bytes
    payment_id: bytes
    transfer_definition: str
    initiator: str
    responder: str
    asset_id: str
    balance: tuple[int, int]
    transfer_timeout: int
    initial_state_hash: bytes
    meta_hash: bytes = ZERO_BYTES32
    # not part of the struct: what the definition needs next to it
    encoded_state: bytes = field(default=b"", compare=False)

    def as_abi(self) -> tuple[Any, ...]:
        values = astuple(self)[:-1]
        return (*values[:7], list(self.balance), *values[8:])

    def hash(self) -> bytes:
        return keccak(encode(["bytes32", TRANSFER_STATE_TYPE], [TRANSFER_STATE_TAG, self.as_abi()]))

    def evolve(self, **changes: Any) -> TransferState:
        return replace(self, **changes)


def transfer_id(channel_address: str, payment_id: bytes, create_nonce: int) -> bytes:
    return keccak(
        encode(
            ["bytes32", "address", "bytes32", "uint256"],
            [TRANSFER_ID_TAG, channel_address, payment_id, create_nonce],
        )
    )


def withdraw_hash(
    chain_id: int, channel: str, asset_id: str, recipient: str, amount: int, nonce: int
) -> bytes:
    return keccak(
        encode(
            ["bytes32", "uint256", "address", "address", "address", "uint256", "uint256"],
            [WITHDRAW_TAG, chain_id, channel, asset_id, recipient, amount, nonce],
        )
    )


def resolver_hash(chain_id: int, transfer_hash: bytes, encoded_resolver: bytes) -> bytes:
    return keccak(
        encode(
            ["bytes32", "uint256", "bytes32", "bytes32"],
            [RESOLVER_TAG, chain_id, transfer_hash, keccak(encoded_resolver)],
        )
    )


def sign(key: str, message_hash: bytes) -> bytes:
    """EIP-191 personal signature over a 32-byte hash: r ‖ s ‖ v, v in {27, 28}, low s."""
    return bytes(Account.sign_message(encode_defunct(primitive=message_hash), key).signature)


def sign_receipt(key: str, chain_id: int, verifying_contract: str, payment_id: bytes, data: bytes) -> bytes:
    signed = Account.sign_typed_data(
        key,
        domain_data={
            "name": "Connext Signed Transfer",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": verifying_contract,
        },
        message_types={
            "Receipt": [{"name": "paymentId", "type": "bytes32"}, {"name": "data", "type": "bytes32"}]
        },
        message_data={"paymentId": payment_id, "data": data},
    )
    return bytes(signed.signature)


def high_s(signature: bytes) -> bytes:
    """The same signature with s replaced by n − s (valid for ecrecover, rejected by OpenZeppelin ECDSA)."""
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (n - s).to_bytes(32, "big") + bytes([55 - v])


# ---------------------------------------------------------------- merkle tree of active transfers


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


def merkle_root(leaves: list[bytes]) -> bytes:
    level = sorted(leaves)
    if not level:
        return ZERO_BYTES32
    while len(level) > 1:
        level = [
            _hash_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def merkle_proof(leaves: list[bytes], leaf: bytes) -> list[bytes]:
    level = sorted(leaves)
    index = level.index(leaf)
    proof: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = [
            _hash_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        index //= 2
    return proof


# ---------------------------------------------------------------- definition encodings


def linked_state(lock_hash: bytes) -> bytes:
    return encode(["bytes32"], [lock_hash])


def hashlock_state(lock_hash: bytes, expiry: int) -> bytes:
    return encode(["bytes32", "uint256"], [lock_hash, expiry])


def preimage_resolver(preimage: bytes) -> bytes:
    return encode(["bytes32"], [preimage])


def signed_state(signer: str, payment_id: bytes) -> bytes:
    return encode(["address", "bytes32"], [signer, payment_id])


def signed_resolver(data: bytes, signature: bytes) -> bytes:
    return encode(["bytes32", "bytes"], [data, signature])


def withdraw_state(
    *,
    channel: str,
    asset_id: str,
    recipient: str,
    amount: int,
    nonce: int,
    initiator: str,
    responder: str,
    initiator_signature: bytes,
) -> bytes:
    return encode(
        WITHDRAW_STATE_TYPES,
        [channel, asset_id, recipient, amount, nonce, initiator, responder, initiator_signature],
    )


def withdraw_resolver(responder_signature: bytes) -> bytes:
    return encode(["bytes"], [responder_signature])


def lock_hash(preimage: bytes) -> bytes:
    return keccak(preimage)
