"""Canonical encoding and hashing, byte for byte as docs/protocol.md and the contracts define them.

Every hash is keccak256 over Solidity's standard ABI encoding (`abi.encode`) of a domain tag followed by
the object. The encoders here write the ABI words by hand because this is the node's hot path (eth_abi
is about 30 times slower for a channel state); the tests prove them equal to `eth_abi.encode` with the
type strings below, over random values.

Addresses inside the core are checksummed strings; `normalize_address` is the one place that accepts
other spellings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from Crypto.Hash import keccak as _keccak
from Crypto.Util import _raw_api

from connext.protocol.errors import MalformedError

if TYPE_CHECKING:
    from connext.protocol.types import ChannelState, TransferState, WithdrawCommitment

MAX_UINT256 = 2**256 - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_BYTES32 = bytes(32)

CHANNEL_STATE_TYPE = (
    "(address,uint256,address,address,address[],uint256[2][],uint256[2][],uint256[],uint256,uint256,bytes32)"
)
TRANSFER_STATE_TYPE = (
    "(address,bytes32,bytes32,address,address,address,address,uint256[2],uint256,bytes32,bytes32)"
)
# The ABI type lists hashed for each object (first element is always the domain tag).
STATE_HASH_TYPES = ("bytes32", CHANNEL_STATE_TYPE)
TRANSFER_HASH_TYPES = ("bytes32", TRANSFER_STATE_TYPE)
TRANSFER_ID_TYPES = ("bytes32", "address", "bytes32", "uint256")
WITHDRAW_HASH_TYPES = ("bytes32", "uint256", "address", "address", "address", "uint256", "uint256")
RESOLVER_HASH_TYPES = ("bytes32", "uint256", "bytes32", "bytes32")


def keccak256_reference(data: bytes) -> bytes:
    """Keccak-256 through pycryptodome's public API (the fallback, and the tests' reference)."""
    return _keccak.new(data=data, digest_bits=256).digest()


def _fast_keccak256() -> Callable[[bytes], bytes] | None:
    """Keccak-256 straight on pycryptodome's C core: half the cost of its Python wrapper.

    Each thread reuses one C hash state (reset before every use), so it is thread-safe without locks.
    Returns None when this pycryptodome does not expose its core through cffi; callers then use the
    public API. The tests prove it equal to `keccak256_reference`.
    """
    lib: Any = getattr(_keccak, "_raw_keccak_lib", None)
    ffi: Any = getattr(_raw_api, "ffi", None)
    if lib is None or ffi is None or getattr(_raw_api, "backend", None) != "cffi":
        return None
    local = threading.local()
    buffer = ffi.buffer

    def new_state() -> tuple[Any, Any]:
        pointer = ffi.new("void **")
        if lib.keccak_init(pointer, 64, 24) != 0:  # capacity 512 bits, 24 rounds: Keccak-256
            raise RuntimeError("keccak_init failed")
        pair = (ffi.gc(pointer[0], lib.keccak_destroy), ffi.new("uint8_t[32]"))
        local.state = pair
        return pair

    def keccak256(data: bytes) -> bytes:
        try:
            state, out = local.state
        except AttributeError:
            state, out = new_state()
        lib.keccak_reset(state)
        lib.keccak_absorb(state, data, len(data))
        lib.keccak_digest(state, out, 32, 0x01)  # 0x01: original Keccak padding, not SHA-3's 0x06
        return bytes(buffer(out, 32))

    if keccak256(b"") != keccak256_reference(b""):  # pragma: no cover - a changed C core
        return None
    return keccak256


keccak256: Callable[[bytes], bytes] = _fast_keccak256() or keccak256_reference
"""Keccak-256 (Ethereum's, not SHA3-256) of `data`."""


CHANNEL_STATE_TAG = keccak256(b"connext-py/ChannelState/v1")
TRANSFER_STATE_TAG = keccak256(b"connext-py/TransferState/v1")
WITHDRAW_TAG = keccak256(b"connext-py/Withdraw/v1")
RESOLVER_TAG = keccak256(b"connext-py/Resolver/v1")
TRANSFER_ID_TAG = keccak256(b"connext-py/TransferId/v1")

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@lru_cache(maxsize=65536)
def checksum_address(raw: bytes) -> str:
    """EIP-55 checksummed spelling of a 20-byte address."""
    if len(raw) != 20:
        raise MalformedError(f"an address is 20 bytes, not {len(raw)}")
    lower = raw.hex()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(ch.upper() if ch > "9" and digest[i] >= "8" else ch for i, ch in enumerate(lower))


@lru_cache(maxsize=65536)
def _normalize(value: str) -> str | None:
    if len(value) != 42 or value[:2] != "0x" or not _HEX_DIGITS.issuperset(value[2:]):
        return None
    checksummed = checksum_address(bytes.fromhex(value[2:]))
    body = value[2:]
    if body == body.lower() or body == body.upper() or value == checksummed:
        return checksummed
    return None


def normalize_address(value: object, *, field: str = "address") -> str:
    """The checksummed form of an address given as 0x-hex (any single case, or a valid checksum)."""
    if not isinstance(value, str):
        raise MalformedError("an address must be a 0x-prefixed hex string", field=field)
    normalized = _normalize(value)
    if normalized is None:
        raise MalformedError(f"not an address or a bad EIP-55 checksum: {value[:50]!r}", field=field)
    return normalized


def is_checksum_address(value: object) -> bool:
    """True when `value` is an address already in its checksummed spelling."""
    return isinstance(value, str) and _normalize(value) == value


def address_to_bytes(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def _uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address(address: str) -> bytes:
    return b"\x00" * 12 + bytes.fromhex(address[2:])


def encode_channel_state(state: ChannelState) -> bytes:
    """`abi.encode(CHANNEL_STATE_TAG, state)`: the preimage of the state hash."""
    count = len(state.asset_ids)
    assets_offset = 11 * 32
    balances_offset = assets_offset + 32 + 32 * count
    processed_offset = balances_offset + 32 + 64 * count
    nonces_offset = processed_offset + 32 + 64 * count
    length = _uint(count)
    parts = [
        CHANNEL_STATE_TAG,
        _uint(0x40),
        _address(state.channel_address),
        _uint(state.chain_id),
        _address(state.node),
        _address(state.user),
        _uint(assets_offset),
        _uint(balances_offset),
        _uint(processed_offset),
        _uint(nonces_offset),
        _uint(state.timeout),
        _uint(state.nonce),
        state.merkle_root,
        length,
    ]
    parts.extend(_address(asset) for asset in state.asset_ids)
    parts.append(length)
    for node_amount, user_amount in state.balances:
        parts.append(_uint(node_amount))
        parts.append(_uint(user_amount))
    parts.append(length)
    for node_amount, user_amount in state.processed_deposits:
        parts.append(_uint(node_amount))
        parts.append(_uint(user_amount))
    parts.append(length)
    parts.extend(_uint(defund_nonce) for defund_nonce in state.defund_nonces)
    return b"".join(parts)


def channel_state_hash(state: ChannelState) -> bytes:
    """`stateHash`: what both parties sign (EIP-191) to make a state valid."""
    return keccak256(encode_channel_state(state))


def transfer_id(channel_address: str, payment_id: bytes, create_nonce: int) -> bytes:
    """`keccak256(abi.encode(TRANSFER_ID_TAG, channelAddress, paymentId, createNonce))`."""
    return keccak256(TRANSFER_ID_TAG + _address(channel_address) + payment_id + _uint(create_nonce))


def encode_transfer_state(transfer: TransferState) -> bytes:
    """`abi.encode(TRANSFER_STATE_TAG, transfer)`: the preimage of the transfer hash (a merkle leaf)."""
    return b"".join(
        (
            TRANSFER_STATE_TAG,
            _address(transfer.channel_address),
            transfer.transfer_id,
            transfer.payment_id,
            _address(transfer.definition),
            _address(transfer.initiator),
            _address(transfer.responder),
            _address(transfer.asset_id),
            _uint(transfer.balance[0]),
            _uint(transfer.balance[1]),
            _uint(transfer.transfer_timeout),
            transfer.initial_state_hash,
            transfer.meta_hash,
        )
    )


def transfer_hash(transfer: TransferState) -> bytes:
    return keccak256(encode_transfer_state(transfer))


def encode_withdraw_commitment(commitment: WithdrawCommitment) -> bytes:
    """`abi.encode(WITHDRAW_TAG, chainId, channelAddress, assetId, recipient, amount, nonce)`."""
    return b"".join(
        (
            WITHDRAW_TAG,
            _uint(commitment.chain_id),
            _address(commitment.channel_address),
            _address(commitment.asset_id),
            _address(commitment.recipient),
            _uint(commitment.amount),
            _uint(commitment.nonce),
        )
    )


def withdraw_hash(commitment: WithdrawCommitment) -> bytes:
    return keccak256(encode_withdraw_commitment(commitment))


def encode_resolver_commitment(chain_id: int, transfer_hash_: bytes, encoded_resolver: bytes) -> bytes:
    """`abi.encode(RESOLVER_TAG, chainId, transferHash, keccak256(encodedResolver))`."""
    return RESOLVER_TAG + _uint(chain_id) + transfer_hash_ + keccak256(encoded_resolver)


def resolver_hash(chain_id: int, transfer_hash_: bytes, encoded_resolver: bytes) -> bytes:
    """What a transfer's responder signs so a third party can defund the transfer with its resolver."""
    return keccak256(encode_resolver_commitment(chain_id, transfer_hash_, encoded_resolver))


# EIP-712 for the Signed transfer's Receipt.
EIP712_DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
RECEIPT_TYPEHASH = keccak256(b"Receipt(bytes32 paymentId,bytes32 data)")
SIGNED_DOMAIN_NAME = "Connext Signed Transfer"
SIGNED_DOMAIN_VERSION = "1"
_NAME_HASH = keccak256(SIGNED_DOMAIN_NAME.encode())
_VERSION_HASH = keccak256(SIGNED_DOMAIN_VERSION.encode())


def receipt_domain_separator(chain_id: int, verifying_contract: str) -> bytes:
    return keccak256(
        EIP712_DOMAIN_TYPEHASH + _NAME_HASH + _VERSION_HASH + _uint(chain_id) + _address(verifying_contract)
    )


def receipt_struct_hash(payment_id: bytes, data: bytes) -> bytes:
    return keccak256(RECEIPT_TYPEHASH + payment_id + data)


def receipt_digest(chain_id: int, verifying_contract: str, payment_id: bytes, data: bytes) -> bytes:
    """The EIP-712 digest a Signed transfer's signer signs (raw ECDSA, no EIP-191 prefix)."""
    return keccak256(
        b"\x19\x01"
        + receipt_domain_separator(chain_id, verifying_contract)
        + receipt_struct_hash(payment_id, data)
    )


def eth_signed_message_hash(message_hash: bytes) -> bytes:
    """EIP-191 personal-sign digest of a 32-byte hash: what channel signatures are over."""
    return keccak256(b"\x19Ethereum Signed Message:\n32" + message_hash)
