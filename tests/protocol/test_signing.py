"""coincurve-backed signing gives exactly eth-account's bytes; recovery enforces OpenZeppelin's rules."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from connext.protocol import encoding, signing
from connext.protocol.errors import BadSignatureError, MalformedError
from tests.protocol import protocol_helpers as h
from tests.protocol.strategies import PROTOCOL_SETTINGS, addresses, bytes32

private_keys = st.integers(1, signing.SECP256K1_N - 1).map(lambda n: n.to_bytes(32, "big"))


@PROTOCOL_SETTINGS
@given(private_keys, bytes32)
def test_personal_sign_equals_eth_account(key: bytes, message_hash: bytes) -> None:
    expected = Account.sign_message(encode_defunct(primitive=message_hash), private_key=key)
    ours = signing.sign_hash(message_hash, key)
    assert ours == expected.signature
    assert signing.recover_hash(message_hash, ours) == Account.from_key(key).address
    assert (
        Account.recover_message(encode_defunct(primitive=message_hash), signature=ours)
        == signing.Signer(key).address
    )


@PROTOCOL_SETTINGS
@given(private_keys, bytes32)
def test_raw_digest_signature_equals_eth_account(key: bytes, digest: bytes) -> None:
    expected = Account.unsafe_sign_hash(digest, private_key=key)
    assert signing.Signer(key).sign_digest(digest) == expected.signature
    assert signing.recover_digest(digest, expected.signature) == Account.from_key(key).address


@PROTOCOL_SETTINGS
@given(private_keys, st.integers(1, 2**64), addresses, bytes32, bytes32)
def test_receipt_digest_and_signature_equal_eth_account_eip712(
    key: bytes, chain_id: int, verifying_contract: str, payment_id: bytes, data: bytes
) -> None:
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
            "domain": {
                "name": "Connext Signed Transfer",
                "version": "1",
                "chainId": chain_id,
                "verifyingContract": verifying_contract,
            },
            "message": {"paymentId": payment_id, "data": data},
        }
    )
    expected = Account.sign_message(typed, private_key=key)
    assert encoding.receipt_digest(chain_id, verifying_contract, payment_id, data) == expected.message_hash
    ours = signing.sign_receipt(chain_id, verifying_contract, payment_id, data, key)
    assert ours == expected.signature
    assert signing.recover_receipt_signer(chain_id, verifying_contract, payment_id, data, ours) == (
        Account.from_key(key).address
    )


def test_signer_address_matches_eth_account() -> None:
    key = encoding.keccak256(b"k")
    assert signing.Signer(key).address == Account.from_key(key).address


def test_state_signatures_recover_to_node_and_user() -> None:
    state = h.funded_state()
    node_signature = signing.sign_state(state, h.NODE)
    user_signature = signing.sign_state(state, h.USER)
    assert signing.recover_signer(state, node_signature) == h.NODE.address
    signing.verify_state_signatures(state, node_signature, user_signature)
    with pytest.raises(BadSignatureError):
        signing.verify_state_signatures(state, user_signature, node_signature)


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    return signature[:32] + (signing.SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - v,))


def test_high_s_twin_of_a_valid_signature_is_rejected() -> None:
    digest = encoding.keccak256(b"m")
    signature = h.NODE.sign_digest(digest)
    twin = _high_s(signature)
    # The twin is a mathematically valid signature by the same key; OpenZeppelin rejects it, so must we.
    assert int.from_bytes(twin[32:64], "big") > signing.SECP256K1_HALF_N
    with pytest.raises(BadSignatureError):
        signing.recover_digest(digest, twin)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda sig: sig[:64] + b"\x00",
        lambda sig: sig[:64] + b"\x01",
        lambda sig: sig[:64] + b"\x1d",
        lambda sig: sig[:64],
        lambda sig: sig + b"\x00",
        lambda sig: bytes(32) + sig[32:],
        lambda sig: sig[:32] + bytes(32) + sig[64:],
        lambda sig: signing.SECP256K1_N.to_bytes(32, "big") + sig[32:],
    ],
    ids=["v0", "v1", "v29", "short", "long", "r0", "s0", "r=n"],
)
def test_malformed_signatures_are_rejected(mangle: object) -> None:
    digest = encoding.keccak256(b"m")
    signature = h.NODE.sign_digest(digest)
    with pytest.raises(BadSignatureError):
        signing.recover_digest(digest, mangle(signature))  # type: ignore[operator]


def test_bad_private_keys_are_rejected() -> None:
    with pytest.raises(MalformedError):
        signing.Signer(b"\x01" * 31)
    with pytest.raises(MalformedError):
        signing.Signer(bytes(32))


def test_signer_repr_does_not_show_the_key() -> None:
    assert repr(h.NODE) == f"Signer({h.NODE.address})"
