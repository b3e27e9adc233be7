"""ECIES over secp256k1: a pinned vector, checked against textbook curve arithmetic; round trips;
every altered or misdirected ciphertext refused."""

from __future__ import annotations

import coincurve
import pytest
from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from connext.protocol import ecies, signing
from connext.protocol.errors import BadCiphertextError, MalformedError

RECIPIENT_KEY = bytes.fromhex("11" * 32)
RECIPIENT_PUBLIC = coincurve.PrivateKey(RECIPIENT_KEY).public_key.format(compressed=False)
EPHEMERAL_KEY = bytes.fromhex("22" * 32)
NONCE = bytes.fromhex("33" * 16)
MESSAGE = bytes.fromhex("ab" * 32)
VECTOR = bytes.fromhex(
    "04466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276728176c3c6431f8eeda4538dc37c865"
    "e2784f3a9e77d044f33e407797e1278a33333333333333333333333333333333a40b73be33752eef844e4626053ee3ee"
    "241f57aae09c28aa24a0f6f4105a338257da58f8198dee1934cf16b8ff63402c"
)

# secp256k1 in textbook affine arithmetic: an independent check of the ECDH inside the vector.
P = 2**256 - 2**32 - 977
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def _add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        slope = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        slope = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (slope * slope - a[0] - b[0]) % P
    return x, (slope * (a[0] - x) - a[1]) % P


def _multiply(scalar: int, point: tuple[int, int]) -> tuple[int, int]:
    result: tuple[int, int] | None = None
    addend: tuple[int, int] | None = point
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    assert result is not None
    return result


def _uncompressed(point: tuple[int, int]) -> bytes:
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def test_the_pinned_vector_encrypts_and_decrypts() -> None:
    assert ecies.encrypt(RECIPIENT_PUBLIC, MESSAGE, ephemeral_key=EPHEMERAL_KEY, nonce=NONCE) == VECTOR
    assert ecies.decrypt(RECIPIENT_KEY, VECTOR) == MESSAGE


def test_the_vector_follows_the_documented_construction_in_plain_arithmetic() -> None:
    ephemeral = _multiply(int.from_bytes(EPHEMERAL_KEY, "big"), G)
    recipient = _multiply(int.from_bytes(RECIPIENT_KEY, "big"), G)
    shared = _multiply(int.from_bytes(EPHEMERAL_KEY, "big"), recipient)
    key = HKDF(_uncompressed(ephemeral) + _uncompressed(shared), 32, b"", SHA256)
    encrypted, tag = AES.new(key, AES.MODE_GCM, nonce=NONCE).encrypt_and_digest(MESSAGE)

    assert _uncompressed(recipient) == RECIPIENT_PUBLIC
    assert _uncompressed(ephemeral) + NONCE + tag + encrypted == VECTOR


@settings(max_examples=25, deadline=None)
@given(
    recipient=st.binary(min_size=32, max_size=32).filter(lambda k: 0 < int.from_bytes(k, "big") < 2**255),
    ephemeral=st.binary(min_size=32, max_size=32).filter(lambda k: 0 < int.from_bytes(k, "big") < 2**255),
    nonce=st.binary(min_size=16, max_size=16),
    message=st.binary(max_size=200),
)
def test_whatever_is_encrypted_to_a_key_decrypts_with_it(
    recipient: bytes, ephemeral: bytes, nonce: bytes, message: bytes
) -> None:
    public = coincurve.PrivateKey(recipient).public_key
    for form in (public.format(compressed=False), public.format(compressed=True)):
        sealed = ecies.encrypt(form, message, ephemeral_key=ephemeral, nonce=nonce)
        assert len(sealed) == ecies.OVERHEAD + len(message)
        assert ecies.decrypt(recipient, sealed) == message


@pytest.mark.parametrize("position", [0, 1, 40, 64, 65, 80, 81, 96, 97, len(VECTOR) - 1])
def test_a_ciphertext_with_any_byte_changed_is_refused(position: int) -> None:
    tampered = bytearray(VECTOR)
    tampered[position] ^= 0x01
    with pytest.raises(BadCiphertextError):
        ecies.decrypt(RECIPIENT_KEY, bytes(tampered))


def test_a_truncated_or_extended_ciphertext_is_refused() -> None:
    for altered in (VECTOR[:-1], VECTOR[: ecies.OVERHEAD - 1], VECTOR + b"\x00", b""):
        with pytest.raises(BadCiphertextError):
            ecies.decrypt(RECIPIENT_KEY, altered)


def test_another_key_cannot_decrypt() -> None:
    with pytest.raises(BadCiphertextError) as refused:
        ecies.decrypt(bytes.fromhex("12" * 32), VECTOR)
    assert refused.value.code == "bad_ciphertext"


def test_bad_keys_and_nonces_are_refused_before_encrypting() -> None:
    with pytest.raises(MalformedError):
        ecies.encrypt(b"\x04" + b"\x00" * 64, MESSAGE, ephemeral_key=EPHEMERAL_KEY, nonce=NONCE)
    with pytest.raises(MalformedError):
        ecies.encrypt(RECIPIENT_PUBLIC, MESSAGE, ephemeral_key=b"\x00" * 32, nonce=NONCE)
    with pytest.raises(MalformedError):
        ecies.encrypt(RECIPIENT_PUBLIC, MESSAGE, ephemeral_key=EPHEMERAL_KEY, nonce=NONCE[:12])


def test_the_recipient_key_maps_to_its_address_in_either_form() -> None:
    public = coincurve.PrivateKey(RECIPIENT_KEY).public_key
    expected = signing.Signer(RECIPIENT_KEY).address

    assert signing.address_of_public_key(public.format(compressed=False)) == expected
    assert signing.address_of_public_key(public.format(compressed=True)) == expected
    with pytest.raises(MalformedError):
        signing.address_of_public_key(b"\x04" + b"\x00" * 64)
