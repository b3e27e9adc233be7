"""The node's swap offer, from one JSON document (`SWAPS`, or the file named by `SWAPS_FILE`).

    {"pairs": [{"base": "eth", "quote": "0x…", "source": {"type": "fixed", "price": "2000"},
                "spreadBps": 30, "maxPerSwap": "1000000000000000000", "maxPerDay": "5000000000000000000"}],
     "maxExposure": {"eth": "10000000000000000000", "0x…": "20000000000000000000000"},
     "toleranceBps": 500, "staleSeconds": 300, "pollSeconds": 15, "pushBps": 10}

A pair offers both directions: the user gives base for quote, or quote for base. Its `price` is what
one whole base unit is worth in whole quote units; a source is a fixed price, an aggregator-style
feed (`{"type": "feed", "address": "0x…"}`, the price of base in quote) or a Uniswap-V2-style pool
(`{"type": "pool", "address": "0x…", "baseToken": "0x…"}`: the pool's token that stands for base, a
wrapped ETH for ETH). Assets are `eth`, a token address, or a contract name of the deployments book
(`TestToken` on a dev chain), resolved when the node first serves a swap.

Limits are in base units of the pair's base asset, whichever way the swap goes (the quote side is
valued at the node's price): the most one swap may move and the most one account may move in 24 hours.
`maxExposure` bounds, per asset, how much more of it the node has paid out in swaps than it took in;
an asset without an entry is not bounded. Without `SWAPS` the node offers no swaps.

Parsing checks the shape only (numbers, kinds, one entry per pair); nothing here touches the chain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_UINT256_MAX = 2**256 - 1
SOURCE_TYPES = ("fixed", "feed", "pool")


@dataclass(frozen=True)
class SwapSource:
    type: str  # fixed, feed, pool
    price: Decimal | None = None  # fixed: whole quote units per whole base unit
    address: str | None = None  # feed, pool: an address or a name of the deployments book
    base_token: str | None = None  # pool: the pool's token that stands for the base asset


@dataclass(frozen=True)
class SwapPair:
    base: str
    quote: str
    source: SwapSource
    spread_bps: int
    max_per_swap: int  # base units of base
    max_per_day: int  # base units of base, per account


@dataclass(frozen=True)
class SwapConfig:
    pairs: tuple[SwapPair, ...] = ()
    max_exposure: tuple[tuple[str, int], ...] = ()  # (asset as written, amount)
    tolerance_bps: int = 500
    stale_seconds: int = 300
    poll_seconds: int = 15
    push_bps: int = 10


NO_SWAPS = SwapConfig()


def _fail(where: str, expected: str, value: Any = None) -> ImproperlyConfigured:
    shown = "" if value is None else f" (got {value!r})"
    return ImproperlyConfigured(f"SWAPS {where}: expected {expected}{shown}")


def _asset(value: Any, where: str) -> str:
    if isinstance(value, str):
        if value.lower() == "eth":
            return "eth"
        if _ADDRESS.match(value) or _NAME.match(value):
            return value
    raise _fail(where, '"eth", a token address (0x + 40 hex digits) or a contract name', value)


def _whole(value: Any, where: str, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _fail(where, f"a whole number from {minimum} to {maximum}", value)
    try:
        number = int(value, 10) if isinstance(value, str) else value
    except ValueError:
        raise _fail(where, f"a whole number from {minimum} to {maximum}", value) from None
    if not minimum <= number <= maximum:
        raise _fail(where, f"a whole number from {minimum} to {maximum}", value)
    return number


def _keys(entry: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _fail(where, "an object", entry)
    missing = required - entry.keys()
    unknown = entry.keys() - required - optional
    if missing:
        raise _fail(where, f"the keys {', '.join(sorted(missing))}")
    if unknown:
        raise _fail(where, f"only the keys {', '.join(sorted(required | optional))}", sorted(unknown))
    return entry


def _source(entry: Any, where: str) -> SwapSource:
    kind = entry.get("type") if isinstance(entry, dict) else None
    if kind == "fixed":
        _keys(entry, where, {"type", "price"}, set())
        price = entry["price"]
        try:
            value = Decimal(price) if isinstance(price, str) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0:
            raise _fail(f"{where}.price", "a decimal string above zero", price)
        return SwapSource(type="fixed", price=value)
    if kind == "feed":
        _keys(entry, where, {"type", "address"}, set())
        return SwapSource(type="feed", address=_asset(entry["address"], f"{where}.address"))
    if kind == "pool":
        _keys(entry, where, {"type", "address", "baseToken"}, set())
        return SwapSource(
            type="pool",
            address=_asset(entry["address"], f"{where}.address"),
            base_token=_asset(entry["baseToken"], f"{where}.baseToken"),
        )
    raise _fail(f"{where}.type", " or ".join(SOURCE_TYPES), kind)


def _pair(entry: Any, index: int) -> SwapPair:
    where = f"pairs[{index}]"
    _keys(entry, where, {"base", "quote", "source", "maxPerSwap", "maxPerDay"}, {"spreadBps"})
    base = _asset(entry["base"], f"{where}.base")
    quote = _asset(entry["quote"], f"{where}.quote")
    if base.lower() == quote.lower():
        raise _fail(where, "two different assets", [base, quote])
    max_per_swap = _whole(entry["maxPerSwap"], f"{where}.maxPerSwap", minimum=1, maximum=_UINT256_MAX)
    max_per_day = _whole(entry["maxPerDay"], f"{where}.maxPerDay", minimum=1, maximum=_UINT256_MAX)
    if max_per_day < max_per_swap:
        raise _fail(f"{where}.maxPerDay", f"at least maxPerSwap ({max_per_swap})", max_per_day)
    return SwapPair(
        base=base,
        quote=quote,
        source=_source(entry["source"], f"{where}.source"),
        spread_bps=_whole(entry.get("spreadBps", 30), f"{where}.spreadBps", minimum=0, maximum=5000),
        max_per_swap=max_per_swap,
        max_per_day=max_per_day,
    )


def parse(text: str | None) -> SwapConfig:
    """The swap offer a `SWAPS` document describes (`NO_SWAPS` for none)."""
    if text is None:
        return NO_SWAPS
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ImproperlyConfigured(f"SWAPS: expected a JSON document ({exc})") from None
    _keys(
        document,
        "document",
        {"pairs"},
        {"maxExposure", "toleranceBps", "staleSeconds", "pollSeconds", "pushBps"},
    )
    if not isinstance(document["pairs"], list):
        raise _fail("pairs", "a list of pairs", document["pairs"])
    pairs = tuple(_pair(entry, index) for index, entry in enumerate(document["pairs"]))
    seen: set[frozenset[str]] = set()
    for pair in pairs:
        key = frozenset((pair.base.lower(), pair.quote.lower()))
        if key in seen:
            raise _fail("pairs", "one entry per pair (each offers both directions)", [pair.base, pair.quote])
        seen.add(key)
    exposure = document.get("maxExposure", {})
    if not isinstance(exposure, dict):
        raise _fail("maxExposure", "an object of asset: amount", exposure)
    max_exposure = tuple(
        (
            _asset(asset, f"maxExposure key {asset!r}"),
            _whole(amount, f"maxExposure.{asset}", minimum=0, maximum=_UINT256_MAX),
        )
        for asset, amount in exposure.items()
    )
    poll_seconds = _whole(document.get("pollSeconds", 15), "pollSeconds", minimum=1, maximum=3600)
    stale_seconds = _whole(document.get("staleSeconds", 300), "staleSeconds", minimum=1, maximum=86_400)
    if stale_seconds <= poll_seconds:
        raise _fail("staleSeconds", f"more than pollSeconds ({poll_seconds})", stale_seconds)
    return SwapConfig(
        pairs=pairs,
        max_exposure=max_exposure,
        tolerance_bps=_whole(document.get("toleranceBps", 500), "toleranceBps", minimum=1, maximum=5000),
        stale_seconds=stale_seconds,
        poll_seconds=poll_seconds,
        push_bps=_whole(document.get("pushBps", 10), "pushBps", minimum=0, maximum=10_000),
    )
