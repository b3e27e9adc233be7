"""How the pages name an asset and scale its amounts: ETH has 18 decimals; a token says its own
(ERC20 `symbol()` and `decimals()`, read from the chain once per process). A token whose decimals
are unknown (the chain did not answer, or the token has none) shows its amounts in base units,
marked so, never scaled by a guess."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from connext.chain import channel_reads
from connext.chain.rpc import http_web3
from dashboard.selectors import CHAIN_ERRORS, CHAIN_TIMEOUT_SECONDS

ETH_DECIMALS = 18
RETRY_AFTER_SECONDS = 60.0  # a token that did not answer is asked again after this


@dataclass(frozen=True)
class Asset:
    asset_id: str
    symbol: str
    decimals: int | None  # None: amounts are shown in base units

    @property
    def label(self) -> str:
        return self.symbol if self.decimals is not None else f"{self.symbol} (base units)"


_known: dict[str, Asset] = {}
_failed: dict[str, tuple[float, Asset]] = {}
_lock = threading.Lock()


def _short(asset_id: str) -> str:
    return f"token {asset_id[:6]}…{asset_id[-4:]}"


def forget() -> None:
    """Drop what is known of tokens (a proxied token may change its metadata; tests start afresh)."""
    with _lock:
        _known.clear()
        _failed.clear()


def describe(asset_id: str) -> Asset:
    if int(asset_id, 16) == 0:
        return Asset(asset_id, "ETH", ETH_DECIMALS)
    key = asset_id.lower()
    if (found := _known.get(key)) is not None:
        return found
    failed = _failed.get(key)
    if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_SECONDS:
        return failed[1]
    try:
        meta = channel_reads.token_metadata(
            http_web3(settings.CHAIN_RPC_URL, timeout=CHAIN_TIMEOUT_SECONDS), asset_id
        )
    except CHAIN_ERRORS:  # the chain does not answer
        meta = channel_reads.TokenMetadata(symbol=None, decimals=None)
    asset = Asset(asset_id, meta.symbol or _short(asset_id), meta.decimals)
    with _lock:
        if meta.decimals is None:  # ask again later: the chain may have been down
            _failed[key] = (time.monotonic(), asset)
        else:
            _known[key] = asset
            _failed.pop(key, None)
    return asset


def scaled(amount: int, asset_id: str | None) -> str:
    """`amount` base units of `asset_id` (ETH when None) in its whole units."""
    return format_units(amount, ETH_DECIMALS if not asset_id else describe(asset_id).decimals)


def format_units(amount: int, decimals: int | None) -> str:
    """Base units as a decimal number of whole units, every significant digit kept, thousands marked;
    with `decimals` None the base units themselves."""
    sign = "-" if amount < 0 else ""
    if decimals is None:
        return f"{sign}{abs(amount):,}"
    whole, fraction = divmod(abs(amount), 10**decimals)
    text = f"{whole:,}"
    if fraction:
        text += "." + str(fraction).rjust(decimals, "0").rstrip("0")
    return sign + text
