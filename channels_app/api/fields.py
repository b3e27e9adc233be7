"""Serializer fields for the protocol's values at the API edge: parsed once, typed errors as 400s."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from connext.protocol import encoding
from connext.protocol.errors import MalformedError

MAX_UINT256 = 2**256 - 1


class AddressField(serializers.CharField):
    """An Ethereum address: any single case or a valid EIP-55 checksum in; checksummed out."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 42)
        kwargs.setdefault("trim_whitespace", False)  # " 0x…" is not an address
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        try:
            return encoding.normalize_address(text)
        except MalformedError:
            raise serializers.ValidationError("Not an address, or a bad EIP-55 checksum.") from None


class HexBytesField(serializers.CharField):
    """0x-prefixed hex, optionally of an exact length in bytes."""

    def __init__(self, *, length: int | None = None, **kwargs: Any) -> None:
        self.length = length
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> bytes:
        text = super().to_internal_value(data)
        if not text.startswith("0x") or len(text) % 2:
            raise serializers.ValidationError("Expected 0x-prefixed hex with an even number of digits.")
        try:
            raw = bytes.fromhex(text[2:])
        except ValueError:
            raise serializers.ValidationError("Expected 0x-prefixed hex.") from None
        if self.length is not None and len(raw) != self.length:
            raise serializers.ValidationError(f"Expected {self.length} bytes.")
        return raw


class WeiField(serializers.CharField):
    """An amount in wei as a decimal string: 0 .. 2^256-1. Never a JSON number: a client whose numbers
    are doubles (JavaScript's) would send a rounded amount without noticing."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, str):
            raise serializers.ValidationError("Amounts are decimal strings of wei, not JSON numbers.")
        text = data
        if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
            raise serializers.ValidationError(
                "Amounts are non-negative whole numbers of wei, as decimal strings."
            )
        value = int(text)
        if value > MAX_UINT256:
            raise serializers.ValidationError("Amount is above 2^256-1.")
        return value

    def to_representation(self, value: Any) -> str:
        return str(int(value))
