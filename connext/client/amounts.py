"""Amounts as people type them: `1.5eth`, `20gwei`, `1000wei` or plain wei (`1000`). Always exact.

Parsed with `Decimal` (never floats); a fraction of a wei, a negative amount or one above 2**256 - 1
is refused. For an ERC20 with 18 decimals `eth` works as "whole tokens".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext

from connext.errors import InvalidArgumentError

MAX_UINT256 = 2**256 - 1
_PRECISION = 200
UNITS = {"eth": 18, "ether": 18, "gwei": 9, "wei": 0}
_AMOUNT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")


def parse_amount(text: str) -> int:
    """Wei from `text`; raises `InvalidArgumentError` (code `invalid_amount`) for anything else."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise InvalidArgumentError(
            "invalid_amount", f"{text!r} is not an amount: write 1.5eth, 20gwei, 1000wei or plain wei"
        )
    number, unit = match.group(1), match.group(2).lower() or "wei"
    if unit not in UNITS:
        raise InvalidArgumentError(
            "invalid_amount", f"unknown unit {unit!r} in {text!r}: use {', '.join(UNITS)}"
        )
    if len(number) > 100:
        raise InvalidArgumentError("invalid_amount", f"{text!r} is above 2**256 - 1")
    with localcontext(prec=_PRECISION):  # exact for every uint256 and fraction typed
        try:
            scaled = Decimal(number).scaleb(UNITS[unit])
        except InvalidOperation:
            raise InvalidArgumentError("invalid_amount", f"{text!r} is not an amount") from None
        if scaled != scaled.to_integral_value():
            raise InvalidArgumentError("invalid_amount", f"{text!r} is not a whole number of wei")
        return check_amount(int(scaled))


def check_amount(amount: object, *, allow_zero: bool = False) -> int:
    """`amount` as wei when it is an int in (0 or 1) .. 2**256 - 1; else `InvalidArgumentError`."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidArgumentError("invalid_amount", f"amounts are int wei, not {type(amount).__name__}")
    if amount < 0:
        raise InvalidArgumentError("invalid_amount", f"amount {amount} is negative")
    if amount == 0 and not allow_zero:
        raise InvalidArgumentError("invalid_amount", "amount must be more than zero")
    if amount > MAX_UINT256:
        raise InvalidArgumentError("invalid_amount", f"amount {amount} is above 2**256 - 1")
    return amount


def format_amount(wei: int, *, unit: str = "eth") -> str:
    """`wei` in `unit`, exact, without trailing zeros (`1500000000000000000` → `1.5 eth`)."""
    with localcontext(prec=_PRECISION):
        value = Decimal(wei).scaleb(-UNITS[unit])
        text = format(value.normalize(), "f") if wei else "0"
    return f"{text} {unit}"
