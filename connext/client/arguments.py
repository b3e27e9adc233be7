"""The client's arguments, read once at the edge: keys, addresses, byte strings and fractions.

Every bad value raises `InvalidArgumentError` before anything is signed or sent.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from connext.errors import InvalidArgumentError
from connext.protocol import serialization
from connext.protocol.encoding import normalize_address
from connext.protocol.errors import ProtocolError


def key_bytes(private_key: str | bytes) -> bytes:
    if isinstance(private_key, bytes):
        return private_key
    text = private_key.strip().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidArgumentError("invalid_key", "a private key is 32 bytes of hex") from None
    if len(raw) != 32:
        raise InvalidArgumentError("invalid_key", "a private key is 32 bytes of hex")
    return raw


def address(value: object, what: str) -> str:
    try:
        return normalize_address(value, field=what)
    except ProtocolError:
        raise InvalidArgumentError("invalid_address", f"{what} {value!r} is not an address") from None


def bytes32(value: object, field: str) -> bytes:
    raw = hex_bytes(value, field)
    if len(raw) != 32:
        raise InvalidArgumentError("invalid_argument", f"{field} is 32 bytes")
    return raw


def hex_bytes(value: object, field: str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return serialization.parse_bytes(value if str(value).startswith("0x") else f"0x{value}", field=field)
    except ProtocolError:
        raise InvalidArgumentError("invalid_argument", f"{field} must be bytes or hex") from None


def fraction(value: object, field: str) -> Fraction:
    """A fraction from 0 (inclusive) to 1 (exclusive), given as a decimal string or a float."""
    try:
        number = Fraction(Decimal(str(value))) if isinstance(value, str | float | int) else None
    except (InvalidOperation, ValueError):
        number = None
    if number is None or not 0 <= number < 1:
        raise InvalidArgumentError("invalid_argument", f"{field} is a fraction from 0 up to 1, e.g. 0.01")
    return number
