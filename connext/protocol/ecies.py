"""ECIES over secp256k1: encrypt a short secret (a transfer's preimage) to a user's public key.

    ciphertext = ephemeral public key (65, uncompressed) ‖ nonce (16) ‖ tag (16) ‖ AES-256-GCM(message)
    key        = HKDF-SHA256(ephemeral public key ‖ shared point, both uncompressed; no salt, no info)

where the shared point is the recipient's public key times the ephemeral private key (ECDH, libsecp256k1
through coincurve). This is the layout and key derivation of eciespy's defaults. The caller passes the
randomness (ephemeral key and nonce): nothing here reads a clock or an entropy source. Anything that does
not decrypt — a wrong key, a changed byte, a truncated ciphertext, a point off the curve — raises
`BadCiphertextError` (`bad_ciphertext`), never returns garbage.
"""

from __future__ import annotations

import coincurve
from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from connext.protocol.errors import BadCiphertextError, MalformedError

PUBLIC_KEY_BYTES = 65
NONCE_BYTES = 16
TAG_BYTES = 16
OVERHEAD = PUBLIC_KEY_BYTES + NONCE_BYTES + TAG_BYTES


def _public_key(data: bytes, field: str) -> coincurve.PublicKey:
    try:
        return coincurve.PublicKey(data)
    except (ValueError, TypeError):
        raise MalformedError("not a secp256k1 public key", field=field) from None


def _private_key(data: bytes, field: str) -> coincurve.PrivateKey:
    if len(data) != 32:
        raise MalformedError("a private key is 32 bytes", field=field)
    try:
        return coincurve.PrivateKey(data)
    except ValueError:
        raise MalformedError("not a valid secp256k1 private key", field=field) from None


def _symmetric_key(ephemeral: coincurve.PublicKey, shared: coincurve.PublicKey) -> bytes:
    master = ephemeral.format(compressed=False) + shared.format(compressed=False)
    key = HKDF(master, 32, b"", SHA256)
    assert isinstance(key, bytes)
    return key


def encrypt(public_key: bytes, message: bytes, *, ephemeral_key: bytes, nonce: bytes) -> bytes:
    """Encrypt `message` to `public_key` (33 or 65 bytes). `ephemeral_key` (32 bytes) and `nonce`
    (16 bytes) must be fresh random bytes for every message: reusing them reveals the message."""
    recipient = _public_key(public_key, "public_key")
    ephemeral = _private_key(ephemeral_key, "ephemeral_key")
    if len(nonce) != NONCE_BYTES:
        raise MalformedError(f"the nonce is {NONCE_BYTES} bytes", field="nonce")
    shared = recipient.multiply(ephemeral.secret)
    cipher = AES.new(_symmetric_key(ephemeral.public_key, shared), AES.MODE_GCM, nonce=nonce)
    encrypted, tag = cipher.encrypt_and_digest(message)
    return ephemeral.public_key.format(compressed=False) + nonce + tag + encrypted


def decrypt(private_key: bytes, ciphertext: bytes) -> bytes:
    """The message `encrypt` sealed for this key; `bad_ciphertext` when it was not, or was altered."""
    key = _private_key(private_key, "private_key")
    if len(ciphertext) < OVERHEAD:
        raise BadCiphertextError("the ciphertext is too short", field="ciphertext")
    ephemeral_bytes = ciphertext[:PUBLIC_KEY_BYTES]
    nonce = ciphertext[PUBLIC_KEY_BYTES : PUBLIC_KEY_BYTES + NONCE_BYTES]
    tag = ciphertext[PUBLIC_KEY_BYTES + NONCE_BYTES : OVERHEAD]
    encrypted = ciphertext[OVERHEAD:]
    if ephemeral_bytes[0] != 4:
        raise BadCiphertextError("the ephemeral key must be uncompressed", field="ciphertext")
    try:
        ephemeral = coincurve.PublicKey(ephemeral_bytes)
    except (ValueError, TypeError):
        raise BadCiphertextError("the ephemeral key is not on the curve", field="ciphertext") from None
    shared = ephemeral.multiply(key.secret)
    cipher = AES.new(_symmetric_key(ephemeral, shared), AES.MODE_GCM, nonce=nonce)
    try:
        message = cipher.decrypt_and_verify(encrypted, tag)
    except ValueError:
        raise BadCiphertextError(
            "the ciphertext does not decrypt with this key", field="ciphertext"
        ) from None
    assert isinstance(message, bytes)
    return message
