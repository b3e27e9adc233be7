"""ECDSA signing and recovery on secp256k1, as OpenZeppelin `ECDSA` accepts them.

A signature is 65 bytes `r ‖ s ‖ v` with `v ∈ {27, 28}`, `0 < r < n` and `0 < s ≤ n/2` (low s); anything
else is rejected with `bad_signature`, never normalised, so a signature Python accepts is one the
contracts accept. Channel objects (states, withdraw commitments, resolvers) are signed EIP-191
"personal sign" over their 32-byte hash; the Signed transfer's Receipt is signed raw over its EIP-712
digest. libsecp256k1 (through coincurve) does the curve work; signing is deterministic (RFC 6979), so
it gives the same bytes as eth-account.
"""

from __future__ import annotations

import coincurve

from connext.protocol import encoding
from connext.protocol.errors import BadSignatureError, MalformedError
from connext.protocol.types import ChannelState, WithdrawCommitment

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2


def _address_of(public_key: coincurve.PublicKey) -> str:
    return encoding.checksum_address(encoding.keccak256(public_key.format(compressed=False)[1:])[12:])


class Signer:
    """A private key with its address computed once (signing is on the node's hot path)."""

    __slots__ = ("_key", "address")

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise MalformedError("a private key is 32 bytes", field="private_key")
        try:
            self._key = coincurve.PrivateKey(private_key)
        except ValueError:
            raise MalformedError("not a valid secp256k1 private key", field="private_key") from None
        self.address: str = _address_of(self._key.public_key)

    def __repr__(self) -> str:
        return f"Signer({self.address})"

    def sign_digest(self, digest: bytes) -> bytes:
        """Raw ECDSA over a 32-byte digest: `r ‖ s ‖ v`, low s, v in {27, 28}."""
        if len(digest) != 32:
            raise MalformedError("a digest is 32 bytes", field="digest")
        signature = self._key.sign_recoverable(digest, hasher=None)
        return signature[:64] + bytes((signature[64] + 27,))


def as_signer(key: Signer | bytes) -> Signer:
    return key if isinstance(key, Signer) else Signer(key)


def check_signature_form(signature: bytes) -> None:
    """Reject what OpenZeppelin `ECDSA.recover` rejects: wrong length, bad v, zero r/s, high s."""
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise BadSignatureError("a signature is 65 bytes r ‖ s ‖ v")
    if signature[64] not in (27, 28):
        raise BadSignatureError("signature v must be 27 or 28")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_HALF_N:
        raise BadSignatureError("signature r or s out of range (s must be in the lower half)")


def _public_key_from(digest: bytes, signature: bytes) -> coincurve.PublicKey:
    check_signature_form(signature)
    try:
        return coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes((signature[64] - 27,)), digest, hasher=None
        )
    except ValueError:
        raise BadSignatureError("no public key recovers from this signature") from None


def recover_public_key(message_hash: bytes, signature: bytes) -> bytes:
    """The uncompressed public key (65 bytes) behind an EIP-191 signature over a 32-byte hash:
    what a sender encrypts a preimage to."""
    return _public_key_from(encoding.eth_signed_message_hash(message_hash), signature).format(
        compressed=False
    )


def address_of_public_key(public_key: bytes) -> str:
    """The address of a secp256k1 public key (33 or 65 bytes)."""
    try:
        return _address_of(coincurve.PublicKey(public_key))
    except (ValueError, TypeError):
        raise MalformedError("not a secp256k1 public key", field="public_key") from None


def recover_digest(digest: bytes, signature: bytes) -> str:
    """The address that made `signature` over the raw 32-byte `digest`."""
    return _address_of(_public_key_from(digest, signature))


def sign_hash(message_hash: bytes, key: Signer | bytes) -> bytes:
    """EIP-191 personal signature over a 32-byte hash (`encode_defunct(primitive=hash)`)."""
    return as_signer(key).sign_digest(encoding.eth_signed_message_hash(message_hash))


def recover_hash(message_hash: bytes, signature: bytes) -> str:
    return recover_digest(encoding.eth_signed_message_hash(message_hash), signature)


def sign_state(state: ChannelState, key: Signer | bytes) -> bytes:
    return sign_hash(state.state_hash, key)


def recover_signer(state: ChannelState, signature: bytes) -> str:
    """The address that signed `state` with `signature`."""
    return recover_hash(state.state_hash, signature)


def verify_state_signatures(state: ChannelState, node_signature: bytes, user_signature: bytes) -> None:
    """Raise `bad_signature` unless node and user both signed `state` (what the chain requires)."""
    if recover_signer(state, node_signature) != state.node:
        raise BadSignatureError("the node signature is not by the channel's node", field="node_signature")
    if recover_signer(state, user_signature) != state.user:
        raise BadSignatureError("the user signature is not by the channel's user", field="user_signature")


def sign_withdraw(commitment: WithdrawCommitment, key: Signer | bytes) -> bytes:
    return sign_hash(commitment.withdraw_hash, key)


def recover_withdraw_signer(commitment: WithdrawCommitment, signature: bytes) -> str:
    return recover_hash(commitment.withdraw_hash, signature)


def sign_resolver(chain_id: int, transfer_hash: bytes, encoded_resolver: bytes, key: Signer | bytes) -> bytes:
    """The responder's consent that anyone may defund the transfer on chain with this resolver."""
    return sign_hash(encoding.resolver_hash(chain_id, transfer_hash, encoded_resolver), key)


def recover_resolver_signer(
    chain_id: int, transfer_hash: bytes, encoded_resolver: bytes, signature: bytes
) -> str:
    return recover_hash(encoding.resolver_hash(chain_id, transfer_hash, encoded_resolver), signature)


def sign_receipt(
    chain_id: int, verifying_contract: str, payment_id: bytes, data: bytes, key: Signer | bytes
) -> bytes:
    """EIP-712 `Receipt(paymentId, data)` signature for a Signed transfer's resolver."""
    digest = encoding.receipt_digest(chain_id, verifying_contract, payment_id, data)
    return as_signer(key).sign_digest(digest)


def recover_receipt_signer(
    chain_id: int, verifying_contract: str, payment_id: bytes, data: bytes, signature: bytes
) -> str:
    return recover_digest(encoding.receipt_digest(chain_id, verifying_contract, payment_id, data), signature)
