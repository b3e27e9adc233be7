"""Serializer fields for the protocol's values at the API edge: parsed once, by the protocol core's own
parsers (`connext.protocol.serialization`), so the API takes exactly what the protocol reads; a value
in any other form (a JSON number, surrounding or inner whitespace) is a 400, never trimmed or guessed."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from connext.protocol import serialization
from connext.protocol.errors import MalformedError


class _WrittenForm(serializers.CharField):
    """A protocol value in its one written form."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        try:
            return self.parse(data)
        except MalformedError as exc:
            raise serializers.ValidationError(exc.message) from None

    def parse(self, data: Any) -> Any:
        raise NotImplementedError


class AddressField(_WrittenForm):
    """An Ethereum address: any single case or a valid EIP-55 checksum in; checksummed out."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 42)
        super().__init__(**kwargs)

    def parse(self, data: Any) -> str:
        return serialization.parse_address(data, field=self.field_name or "address")


class HexBytesField(_WrittenForm):
    """0x-prefixed hex, optionally of an exact length in bytes."""

    def __init__(self, *, length: int | None = None, **kwargs: Any) -> None:
        self.length = length
        super().__init__(**kwargs)

    def parse(self, data: Any) -> bytes:
        return serialization.parse_bytes(data, field=self.field_name or "hex", length=self.length)


class WeiField(_WrittenForm):
    """A whole number (an amount in wei, a nonce) as a decimal string: 0 .. 2^256-1. Never a JSON
    number: a client whose numbers are doubles (JavaScript's) would send a rounded amount unnoticed."""

    def parse(self, data: Any) -> int:
        return serialization.parse_uint(data, field=self.field_name or "amount")

    def to_representation(self, value: Any) -> str:
        return str(int(value))
