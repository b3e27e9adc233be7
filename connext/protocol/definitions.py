"""Python mirrors of the transfer definition contracts: Linked, HashLock, Signed, Withdraw.

`create` and `resolve` mirror the contracts' functions of the same names (docs/protocol.md and
contracts/definitions/), with the
current time passed in where a contract reads `block.timestamp` and the chain id and the definition's
own address passed in where it reads `block.chainid` and `address(this)`. A revert is a
`ProtocolError`. `resolve` returns `(to_initiator, to_responder)` and never more than it got.

`create` refuses, like the contracts, a lock hash of zero or of the zero preimage (the cancel value would
be the only way to open it) and a Signed signer of zero. `accept` adds what an honest responder demands on
top of `create` before it countersigns (a hashlock not yet expired; a withdraw bound to this channel,
asset, create nonce and parties, to a recipient `Channel.withdraw` accepts). It only refuses more; it never
changes what `resolve` pays.

Encodings are canonical: a value is accepted only if re-encoding what was decoded gives the same bytes,
so what Python accepts Solidity's `abi.decode` accepts too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError

from connext.protocol import encoding, signing
from connext.protocol.encoding import ZERO_ADDRESS, ZERO_BYTES32, keccak256
from connext.protocol.errors import (
    BadResolverError,
    BadSignatureError,
    BadTransferStateError,
    ExpiredError,
    ProtocolError,
)
from connext.protocol.types import DefinitionKind, TransferState, WithdrawCommitment

EMPTY_PREIMAGE_HASH = keccak256(ZERO_BYTES32)


def _decode(types: tuple[str, ...], data: bytes, error: type[ProtocolError], what: str) -> tuple[Any, ...]:
    try:
        values = abi_decode(types, data)
        canonical = abi_encode(types, values) == data
    except (DecodingError, ValueError, TypeError, OverflowError):
        canonical = False
    if not canonical:
        raise error(f"{what} is not the canonical ABI encoding of {', '.join(types)}")
    return values


def _bytes32(data: bytes, error: type[ProtocolError], what: str) -> bytes:
    if not isinstance(data, bytes) or len(data) != 32:
        raise error(f"{what} must be the ABI encoding of one bytes32 (32 bytes)")
    return data


@dataclass(frozen=True)
class LinkedState:
    lock_hash: bytes

    def encode(self) -> bytes:
        return self.lock_hash

    @classmethod
    def decode(cls, data: bytes) -> LinkedState:
        return cls(_bytes32(data, BadTransferStateError, "the Linked state"))


@dataclass(frozen=True)
class HashLockState:
    lock_hash: bytes
    expiry: int  # unix seconds

    def encode(self) -> bytes:
        return self.lock_hash + self.expiry.to_bytes(32, "big")

    @classmethod
    def decode(cls, data: bytes) -> HashLockState:
        if not isinstance(data, bytes) or len(data) != 64:
            raise BadTransferStateError("the HashLock state must be abi.encode(bytes32, uint256)")
        return cls(data[:32], int.from_bytes(data[32:], "big"))


@dataclass(frozen=True)
class PreimageResolver:
    """Linked and HashLock resolver; the all-zero preimage is the responder's cancel."""

    preimage: bytes

    def encode(self) -> bytes:
        return self.preimage

    @classmethod
    def decode(cls, data: bytes) -> PreimageResolver:
        return cls(_bytes32(data, BadResolverError, "the preimage resolver"))


@dataclass(frozen=True)
class SignedState:
    signer: str
    payment_id: bytes

    def encode(self) -> bytes:
        return b"\x00" * 12 + encoding.address_to_bytes(self.signer) + self.payment_id

    @classmethod
    def decode(cls, data: bytes) -> SignedState:
        if not isinstance(data, bytes) or len(data) != 64 or any(data[:12]):
            raise BadTransferStateError("the Signed state must be abi.encode(address, bytes32)")
        return cls(encoding.checksum_address(data[12:32]), data[32:])


@dataclass(frozen=True)
class SignedResolver:
    """Signed resolver; an empty signature is the responder's cancel."""

    data: bytes
    signature: bytes

    def encode(self) -> bytes:
        return abi_encode(("bytes32", "bytes"), (self.data, self.signature))

    @classmethod
    def decode(cls, data: bytes) -> SignedResolver:
        receipt_data, signature = _decode(("bytes32", "bytes"), data, BadResolverError, "the Signed resolver")
        return cls(receipt_data, signature)


WITHDRAW_STATE_TYPES = ("address", "address", "address", "uint256", "uint256", "address", "address", "bytes")


@dataclass(frozen=True)
class WithdrawState:
    channel_address: str
    asset_id: str
    recipient: str
    amount: int
    nonce: int
    initiator: str
    responder: str
    initiator_signature: bytes

    def encode(self) -> bytes:
        return abi_encode(
            WITHDRAW_STATE_TYPES,
            (
                self.channel_address,
                self.asset_id,
                self.recipient,
                self.amount,
                self.nonce,
                self.initiator,
                self.responder,
                self.initiator_signature,
            ),
        )

    @classmethod
    def decode(cls, data: bytes) -> WithdrawState:
        values = _decode(WITHDRAW_STATE_TYPES, data, BadTransferStateError, "the Withdraw state")
        channel, asset, recipient, amount, nonce, initiator, responder, signature = values
        return cls(
            channel_address=encoding.normalize_address(channel),
            asset_id=encoding.normalize_address(asset),
            recipient=encoding.normalize_address(recipient),
            amount=amount,
            nonce=nonce,
            initiator=encoding.normalize_address(initiator),
            responder=encoding.normalize_address(responder),
            initiator_signature=signature,
        )

    def commitment(self, chain_id: int) -> WithdrawCommitment:
        return WithdrawCommitment(
            chain_id=chain_id,
            channel_address=self.channel_address,
            asset_id=self.asset_id,
            recipient=self.recipient,
            amount=self.amount,
            nonce=self.nonce,
        )


@dataclass(frozen=True)
class WithdrawResolver:
    """Withdraw resolver: the responder's signature on the commitment; empty is the cancel."""

    responder_signature: bytes

    def encode(self) -> bytes:
        return abi_encode(("bytes",), (self.responder_signature,))

    @classmethod
    def decode(cls, data: bytes) -> WithdrawResolver:
        (signature,) = _decode(("bytes",), data, BadResolverError, "the Withdraw resolver")
        return cls(signature)


def _signed_by(expected: str, recover: Any, error: type[ProtocolError], what: str) -> None:
    try:
        signer = recover()
    except BadSignatureError as exc:
        raise error(f"{what}: {exc.message}") from None
    if signer != expected:
        raise error(f"{what} is not by {expected}")


def _check_lock_hash(lock_hash: bytes) -> None:
    if lock_hash in (ZERO_BYTES32, EMPTY_PREIMAGE_HASH):
        raise BadTransferStateError("the lock hash is zero or opens with the cancel value (zero preimage)")


def create(kind: DefinitionKind, balance: tuple[int, int], encoded_state: bytes, *, chain_id: int) -> None:
    """Mirror of the definition contract's `create`: raise unless the transfer may be created."""
    if balance[1] != 0 or balance[0] <= 0:
        raise BadTransferStateError("a transfer is created with balance [amount > 0, 0]")
    if kind is DefinitionKind.LINKED:
        _check_lock_hash(LinkedState.decode(encoded_state).lock_hash)
    elif kind is DefinitionKind.HASHLOCK:
        hashlock = HashLockState.decode(encoded_state)
        _check_lock_hash(hashlock.lock_hash)
        if hashlock.expiry == 0:
            raise BadTransferStateError("a HashLock expiry must be above zero")
    elif kind is DefinitionKind.SIGNED:
        if SignedState.decode(encoded_state).signer == ZERO_ADDRESS:
            raise BadTransferStateError("the Signed signer is the zero address")
    else:
        state = WithdrawState.decode(encoded_state)
        if state.amount != balance[0]:
            raise BadTransferStateError("the Withdraw amount must equal the locked amount")
        _check_initiator_signature(state, chain_id)


def _check_initiator_signature(state: WithdrawState, chain_id: int) -> None:
    commitment = state.commitment(chain_id)
    _signed_by(
        state.initiator,
        lambda: signing.recover_withdraw_signer(commitment, state.initiator_signature),
        BadTransferStateError,
        "the Withdraw initiator signature",
    )


def accept(kind: DefinitionKind, transfer: TransferState, *, chain_id: int, now: int) -> None:
    """`create` plus the responder's own checks of a new transfer in its channel."""
    create(kind, transfer.balance, transfer.encoded_state, chain_id=chain_id)
    if kind is DefinitionKind.HASHLOCK:
        expiry = HashLockState.decode(transfer.encoded_state).expiry
        if expiry <= now:
            raise ExpiredError(f"the hashlock expired at {expiry} (now {now})")
    elif kind is DefinitionKind.WITHDRAW:
        withdraw = WithdrawState.decode(transfer.encoded_state)
        expected = (
            transfer.channel_address,
            transfer.asset_id,
            transfer.create_nonce,
            transfer.initiator,
            transfer.responder,
        )
        actual = (
            withdraw.channel_address,
            withdraw.asset_id,
            withdraw.nonce,
            withdraw.initiator,
            withdraw.responder,
        )
        if actual != expected:
            raise BadTransferStateError(
                "the Withdraw state must name this channel, asset, create nonce, initiator and responder"
            )
        if withdraw.recipient in (ZERO_ADDRESS, transfer.channel_address):
            # Channel.withdraw refuses these recipients: the amount would leave the state and never the chain.
            raise BadTransferStateError("the Withdraw recipient is the zero address or the channel itself")


def resolve(
    kind: DefinitionKind,
    balance: tuple[int, int],
    encoded_state: bytes,
    encoded_resolver: bytes,
    *,
    chain_id: int,
    definition: str,
    now: int,
) -> tuple[int, int]:
    """Mirror of the definition contract's `resolve`: the final `(initiator, responder)` balance."""
    refund = (balance[0] + balance[1], 0)
    paid = (0, balance[0] + balance[1])
    if kind is DefinitionKind.LINKED or kind is DefinitionKind.HASHLOCK:
        preimage = PreimageResolver.decode(encoded_resolver).preimage
        if preimage == ZERO_BYTES32:
            return refund
        if kind is DefinitionKind.HASHLOCK:
            hashlock = HashLockState.decode(encoded_state)
            if now >= hashlock.expiry:
                raise ExpiredError(f"the hashlock expired at {hashlock.expiry} (now {now})")
            lock_hash = hashlock.lock_hash
        else:
            lock_hash = LinkedState.decode(encoded_state).lock_hash
        if keccak256(preimage) != lock_hash:
            raise BadResolverError("the preimage does not hash to the lock hash")
        return paid
    if kind is DefinitionKind.SIGNED:
        signed = SignedState.decode(encoded_state)
        resolver = SignedResolver.decode(encoded_resolver)
        if not resolver.signature:
            return refund
        _signed_by(
            signed.signer,
            lambda: signing.recover_receipt_signer(
                chain_id, definition, signed.payment_id, resolver.data, resolver.signature
            ),
            BadResolverError,
            "the receipt signature",
        )
        return paid
    withdraw = WithdrawState.decode(encoded_state)
    withdraw_resolver = WithdrawResolver.decode(encoded_resolver)
    if not withdraw_resolver.responder_signature:
        return refund
    # Both signatures, as the contract checks: what resolves to [0, 0] here, Channel.withdraw can execute.
    _check_initiator_signature(withdraw, chain_id)
    commitment = withdraw.commitment(chain_id)
    _signed_by(
        withdraw.responder,
        lambda: signing.recover_withdraw_signer(commitment, withdraw_resolver.responder_signature),
        BadResolverError,
        "the Withdraw responder signature",
    )
    return (0, 0)
