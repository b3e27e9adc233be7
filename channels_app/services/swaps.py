"""In-channel swaps at the node's rate (docs/protocol.md, "Swaps").

The node quotes each configured pair (connext_site/swap_config.py) from its source: a fixed price, an
aggregator-style feed or a Uniswap-V2-style pool on chain. Its offer is the source's mid price less the
pair's spread. A user's swap is countersigned only when:

- the pair is offered and its price is fresh (read within the poll interval, and the source's own
  time within `staleSeconds`): `swap_not_offered`, `stale_rate`;
- the user holds what it gives (`insufficient_balance`);
- it takes no more than the node's offer for what it gives (`rate_moved`, with the offer), and no less
  than the offer less the tolerance (`below_tolerance`): a swap is never better for the user than the
  node's own rate, and never far worse, since that is a client's mistake;
- it stays within the pair's limits per swap and per account per day (`swap_over_limit`,
  `swap_daily_limit`) and the node's exposure per asset (`exposure_limit`);
- the node holds what the user takes (the protocol core's `insufficient_balance`, field `take_amount`). A
  client that sees the node short asks first (`POST /api/swap/prepare`,
  `swap_collateral.swap_prepare`): the same checks, and the node deposits what the swap needs.

Every check of the channel runs under its row lock, in the transaction that stores the swap, so two
swaps of one account are counted one after the other; the exposure rows are locked in asset order.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from functools import cache
from typing import Any

from django.conf import settings
from django.core.cache import cache as django_cache
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Sum
from django.utils import timezone
from eth_utils.address import to_checksum_address

from channels_app import chain, network, realtime
from channels_app.models import Channel, Swap, SwapExposure
from channels_app.services.errors import ServiceError
from connext.chain import prices
from connext.protocol.types import ChannelState, SwapUpdate
from connext_site.swap_config import SwapConfig, SwapPair

logger = logging.getLogger(__name__)

BPS = 10_000
DAY = timedelta(days=1)
RATES_CACHE_KEY = "swaps.prices"
PUSHED_CACHE_KEY = "swaps.pushed"
RATES_EVENT = "swap.rates"


class SwapError(ServiceError):
    """A swap the node refuses; nothing was signed."""


# -- the offer ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    """A configured pair, its assets resolved to addresses."""

    index: int
    base: str
    quote: str
    pair: SwapPair

    @property
    def name(self) -> str:
        return f"{self.base}/{self.quote}"

    @property
    def key(self) -> str:
        """Its prices' cache key: a changed source (a restart with a new configuration) never serves
        the old source's price."""
        digest = hashlib.sha256(repr(self.pair.source).encode()).hexdigest()[:16]
        return f"{self.name}/{digest}"


@dataclass(frozen=True)
class Price:
    """A market's mid price: quote base units per base base unit."""

    mid: Fraction
    updated_at: int  # the source's own time for it (a feed's round: chain time)
    read_at: int  # when the node read it (the node's clock)
    age_at_read: int = 0  # how old the source said it was then, on its own clock (a feed: chain time)

    def stale(self, stale_seconds: int, now: float) -> bool:
        """Older than `stale_seconds`: its age when read plus the time since. Each part is measured on
        one clock, so a chain whose clock runs apart from the node's changes neither."""
        return self.age_at_read + (now - self.read_at) > stale_seconds


@dataclass(frozen=True)
class Quote:
    """The node's rate for one direction of a market."""

    market: Market
    give_asset: str
    take_asset: str
    mid: Fraction  # take base units per give base unit
    offer: Fraction  # mid less the spread
    price: Price

    def offered(self, give_amount: int) -> int:
        """What the node pays for `give_amount`, rounded down."""
        return give_amount * self.offer.numerator // self.offer.denominator

    def least_accepted(self, give_amount: int, tolerance_bps: int) -> int:
        """The least the node lets a user take for `give_amount`: the offer less the tolerance."""
        return math.ceil(Fraction(self.offered(give_amount) * (BPS - tolerance_bps), BPS))

    def base_value(self, give_amount: int, take_amount: int) -> int:
        """The swap's size in base units of the market's base asset."""
        return give_amount if self.give_asset == self.market.base else take_amount

    def max_give(self) -> int:
        """The most one swap may give in this direction (the per-swap limit, valued at the mid)."""
        if self.give_asset == self.market.base:
            return self.market.pair.max_per_swap
        return self.market.pair.max_per_swap * self.mid.denominator // self.mid.numerator

    def stale(self, config: SwapConfig, now: float) -> bool:
        return self.price.stale(config.stale_seconds, now)


@dataclass(frozen=True)
class Terms:
    """What a swap gives and takes (a `SwapUpdate` has the same four attributes)."""

    give_asset: str
    give_amount: int
    take_asset: str
    take_amount: int


def config() -> SwapConfig:
    return settings.SWAPS


def _resolve(name: str, where: str) -> str:
    net = network.network()
    if name == "eth":
        return network.ETH
    if name.startswith("0x"):
        return to_checksum_address(name)
    if name in net.contracts:
        return to_checksum_address(net.contracts[name])
    raise ImproperlyConfigured(f"SWAPS {where}: no contract {name!r} in the deployments book")


@cache
def _markets_for(swaps: SwapConfig, _book: str, _rpc: str) -> tuple[Market, ...]:
    net = network.network()
    served = {asset.lower() for asset in net.assets}
    markets = []
    for index, pair in enumerate(swaps.pairs):
        base = _resolve(pair.base, f"pairs[{index}].base")
        quote = _resolve(pair.quote, f"pairs[{index}].quote")
        for asset in (base, quote):
            if asset.lower() not in served:
                raise ImproperlyConfigured(f"SWAPS pairs[{index}]: the node does not serve asset {asset}")
        markets.append(Market(index=index, base=base, quote=quote, pair=pair))
    return tuple(markets)


def markets() -> tuple[Market, ...]:
    return _markets_for(config(), str(settings.DEPLOYMENTS_FILE), settings.CHAIN_RPC_URL)


def _market_for(give_asset: str, take_asset: str) -> Market | None:
    give, take = give_asset.lower(), take_asset.lower()
    for market in markets():
        if {give, take} == {market.base.lower(), market.quote.lower()}:
            return market
    return None


_DECIMALS: dict[str, int] = {}


def _decimals(asset_id: str) -> int:
    if asset_id not in _DECIMALS:
        _DECIMALS[asset_id] = prices.token_decimals(chain.web3(), asset_id)
    return _DECIMALS[asset_id]


def _read(market: Market, now: int) -> Price:
    """The market's mid price from its source, now."""
    source = market.pair.source
    if source.type == "fixed":
        assert source.price is not None
        whole = Fraction(source.price)
        mid = whole * 10 ** _decimals(market.quote) / 10 ** _decimals(market.base)
        return Price(mid=mid, updated_at=now, read_at=now)
    assert source.address is not None
    address = _resolve(source.address, f"pairs[{market.index}].source.address")
    w3 = chain.web3()
    if source.type == "feed":
        reading = prices.read_feed(
            w3, address, base_decimals=_decimals(market.base), quote_decimals=_decimals(market.quote)
        )
        chain_now = int(w3.eth.get_block(reading.block)["timestamp"])
        return Price(
            mid=reading.price,
            updated_at=int(reading.updated_at),
            read_at=now,
            age_at_read=max(0, chain_now - int(reading.updated_at)),
        )
    assert source.base_token is not None
    base_token = _resolve(source.base_token, f"pairs[{market.index}].source.baseToken")
    _check_pool_pair(w3, address, base_token, market)
    reading = prices.read_pool(w3, address, base_token=base_token)
    return Price(mid=reading.price, updated_at=int(reading.updated_at), read_at=now)


def _check_pool_pair(w3: Any, address: str, base_token: str, market: Market) -> None:
    """A pool priced for a pair trades that pair's base stand-in against its quote token (a pool of
    other tokens would give a plausible, wrong price). ETH as the quote has a wrapped stand-in the
    configuration does not name, so only the base token is checked then."""
    tokens = prices.pool_tokens(w3, address)
    if market.quote != network.ETH and {t.lower() for t in tokens} != {
        base_token.lower(),
        market.quote.lower(),
    }:
        raise prices.PriceSourceError(
            f"pool {address} trades {tokens[0]} and {tokens[1]}, not {base_token} against {market.quote}"
        )


def _cached() -> dict[str, Price]:
    stored = django_cache.get(RATES_CACHE_KEY) or {}
    return {
        key: Price(
            Fraction(int(v["n"]), int(v["d"])), int(v["updatedAt"]), int(v["readAt"]), int(v.get("age", 0))
        )
        for key, v in stored.items()
    }


def _cache_prices(known: dict[str, Price]) -> None:
    django_cache.set(
        RATES_CACHE_KEY,
        {
            key: {
                "n": str(p.mid.numerator),
                "d": str(p.mid.denominator),
                "updatedAt": p.updated_at,
                "readAt": p.read_at,
                "age": p.age_at_read,
            }
            for key, p in known.items()
        },
        timeout=None,
    )


def current_prices(*, refresh: bool = False) -> dict[str, Price]:
    """Every market's price: the one read within the poll interval, else read now. A source that
    cannot be read keeps its last price, which goes stale (`stale_rate`) if that lasts."""
    swaps = config()
    now = int(time.time())
    known = _cached()
    changed = False
    for market in markets():
        held = known.get(market.key)
        if not refresh and held is not None and now - held.read_at < swaps.poll_seconds:
            continue
        try:
            known[market.key] = _read(market, now)
        except (*chain.READ_ERRORS, prices.PriceSourceError) as exc:
            logger.warning("swap price of %s could not be read: %s", market.name, exc)
            continue
        changed = True
    if changed:
        _cache_prices(known)
    return known


def _quote(market: Market, price: Price, give_asset: str) -> Quote:
    if give_asset.lower() == market.base.lower():
        give, take, mid = market.base, market.quote, price.mid
    else:
        give, take, mid = market.quote, market.base, 1 / price.mid
    offer = mid * Fraction(BPS - market.pair.spread_bps, BPS)
    return Quote(market=market, give_asset=give, take_asset=take, mid=mid, offer=offer, price=price)


def quotes() -> list[Quote]:
    """Both directions of every market with a price."""
    known = current_prices()
    return [
        _quote(market, known[market.key], asset)
        for market in markets()
        if market.key in known
        for asset in (market.base, market.quote)
    ]


def quote_for(give_asset: str, take_asset: str) -> Quote:
    """The node's current rate for giving `give_asset` for `take_asset`, or the refusal."""
    market = _market_for(give_asset, take_asset) if give_asset.lower() != take_asset.lower() else None
    if market is None:
        raise SwapError(
            "swap_not_offered", f"This node does not offer swaps of {give_asset} for {take_asset}."
        )
    price = current_prices().get(market.key)
    if price is None or _quote(market, price, give_asset).stale(config(), time.time()):
        raise SwapError(
            "stale_rate",
            f"The node has no fresh price for {market.name}; try again later.",
            status=409,
        )
    return _quote(market, price, give_asset)


def rate_json(quote: Quote, now: float | None = None) -> dict[str, Any]:
    swaps = config()
    return {
        "giveAssetId": quote.give_asset,
        "takeAssetId": quote.take_asset,
        "baseAssetId": quote.market.base,
        "rate": {"numerator": str(quote.offer.numerator), "denominator": str(quote.offer.denominator)},
        "mid": {"numerator": str(quote.mid.numerator), "denominator": str(quote.mid.denominator)},
        "spreadBps": quote.market.pair.spread_bps,
        "maxGive": str(quote.max_give()),
        "maxPerSwap": str(quote.market.pair.max_per_swap),
        "maxPerDay": str(quote.market.pair.max_per_day),
        "source": quote.market.pair.source.type,
        "updatedAt": quote.price.updated_at,
        "stale": quote.stale(swaps, time.time() if now is None else now),
    }


def rates_json() -> dict[str, Any]:
    swaps = config()
    now = time.time()
    return {
        "rates": [rate_json(quote, now) for quote in quotes()],
        "toleranceBps": swaps.tolerance_bps,
        "staleSeconds": swaps.stale_seconds,
    }


def rates_refresh() -> bool:
    """Read every source whose price is older than the poll interval (the periodic task) and push the
    rates to every socket when a mid price moved by at least `pushBps` since the last push (or a
    market got or lost a fresh price). True when it pushed."""
    if not config().pairs:
        return False
    known = current_prices()
    swaps = config()
    now = time.time()
    pushed: dict[str, Any] = django_cache.get(PUSHED_CACHE_KEY) or {}
    moved = False
    for market in markets():
        price = known.get(market.key)
        if price is None:
            continue
        fresh = not price.stale(swaps.stale_seconds, now)
        last = pushed.get(market.key)
        if last is None or last["fresh"] != fresh:
            moved = True
            continue
        before = Fraction(int(last["n"]), int(last["d"]))
        if abs(price.mid - before) * BPS >= before * max(swaps.push_bps, 1):
            moved = True
    if not moved:
        return False
    django_cache.set(
        PUSHED_CACHE_KEY,
        {
            key: {
                "n": str(p.mid.numerator),
                "d": str(p.mid.denominator),
                "fresh": not p.stale(swaps.stale_seconds, now),
            }
            for key, p in known.items()
        },
        timeout=None,
    )
    realtime.push_event_now(realtime.BROADCAST_GROUP, RATES_EVENT, rates_json())
    return True


# -- a user's swap -----------------------------------------------------------------------------------


def _balance(state: ChannelState, asset_id: str, side: int) -> int:
    index = state.asset_index(asset_id)
    return 0 if index is None else state.balances[index][side]


def check_locked(channel: Channel, previous: ChannelState, terms: Terms | SwapUpdate, quote: Quote) -> None:
    """Every rule of the node's offer for `terms` on `previous` (the channel's row is locked) but the
    node's own balance: a swap it cannot pay the protocol core refuses (`insufficient_balance`,
    field `take_amount`), and `swap_collateral.swap_prepare` deposits it first."""
    swaps = config()
    give, take = terms.give_amount, terms.take_amount
    if give <= 0 or take <= 0:
        raise SwapError("amount_out_of_range", "A swap gives and takes more than zero.")
    if _balance(previous, terms.give_asset, 1) < give:
        raise SwapError(
            "insufficient_balance",
            "Your channel holds less than the swap gives.",
            extra={"field": "give_amount"},
        )
    offered = quote.offered(give)
    if take > offered:
        raise SwapError(
            "rate_moved",
            f"The node pays at most {offered} for {give}: its rate moved. Fetch the rates and retry.",
            status=409,
            extra={"offered": str(offered), "rate": rate_json(quote)},
        )
    if take < quote.least_accepted(give, swaps.tolerance_bps):
        raise SwapError(
            "below_tolerance",
            f"The swap takes {take}, more than {swaps.tolerance_bps / 100:g} % below the node's offer "
            f"of {offered}: check the amounts.",
            extra={"offered": str(offered)},
        )
    value = quote.base_value(give, take)
    pair = quote.market.pair
    if value > pair.max_per_swap:
        raise SwapError(
            "swap_over_limit",
            f"One swap of {quote.market.name} moves at most {pair.max_per_swap} of {quote.market.base}.",
            extra={"maxPerSwap": str(pair.max_per_swap), "maxGive": str(quote.max_give())},
        )
    swapped = _swapped_today(channel.user_address, quote.market)
    if swapped + value > pair.max_per_day:
        remaining = max(0, pair.max_per_day - swapped)
        raise SwapError(
            "swap_daily_limit",
            f"An account swaps at most {pair.max_per_day} of {quote.market.base} in 24 hours "
            f"({remaining} left).",
            extra={"maxPerDay": str(pair.max_per_day), "remaining": str(remaining)},
        )
    _check_exposure(quote.take_asset, take, quote.give_asset)


def _swapped_today(user: str, market: Market) -> int:
    """How much of `market`'s base the account moved in its swaps of the last 24 hours."""
    assets = (market.base, market.quote)
    total = Swap.objects.filter(
        user_address=user,
        created_at__gt=timezone.now() - DAY,
        give_asset__in=assets,
        take_asset__in=assets,
    ).aggregate(total=Sum("base_value"))["total"]
    return int(total or 0)


def node_short(previous: ChannelState, terms: Terms) -> int:
    """How much more of the take asset the node needs in the channel to pay `terms` (0: enough)."""
    return max(0, terms.take_amount - _balance(previous, terms.take_asset, 0))


def exposure_limits() -> dict[str, int]:
    """`maxExposure` per asset (lower-case address)."""
    return {_resolve(asset, "maxExposure").lower(): amount for asset, amount in config().max_exposure}


def _exposure_rows(*assets: str) -> dict[str, SwapExposure]:
    """The exposure rows of `assets`, created when missing, locked in asset order."""
    names = sorted({asset.lower() for asset in assets})
    SwapExposure.objects.bulk_create([SwapExposure(asset_id=a) for a in names], ignore_conflicts=True)
    locked = SwapExposure.objects.select_for_update().filter(asset_id__in=names).order_by("asset_id")
    return {row.asset_id: row for row in locked}


def _check_exposure(take_asset: str, take: int, give_asset: str) -> None:
    bound = exposure_limits().get(take_asset.lower())
    if bound is None:
        return
    paid_out = int(_exposure_rows(take_asset, give_asset)[take_asset.lower()].paid_out)
    if paid_out + take > bound:
        available = max(0, bound - paid_out)
        raise SwapError(
            "exposure_limit",
            f"The node pays out at most {available} more of {take_asset} in swaps now.",
            status=409,
            extra={"available": str(available)},
        )


def record_locked(channel: Channel, update: SwapUpdate, quote: Quote) -> None:
    """The swap's row and the node's exposure, in the transaction that stores its state."""
    rows_by_asset = _exposure_rows(update.give_asset, update.take_asset)
    take_row = rows_by_asset[update.take_asset.lower()]
    give_row = rows_by_asset[update.give_asset.lower()]
    take_row.paid_out = int(take_row.paid_out) + update.take_amount
    give_row.paid_out = int(give_row.paid_out) - update.give_amount
    for row in (take_row, give_row):
        row.save(update_fields=["paid_out", "updated_at"])
    at_mid = update.give_amount * quote.mid.numerator // quote.mid.denominator
    Swap.objects.create(
        channel=channel,
        user_address=channel.user_address,
        nonce=update.nonce,
        give_asset=update.give_asset,
        give_amount=update.give_amount,
        take_asset=update.take_asset,
        take_amount=update.take_amount,
        base_asset=quote.market.base,
        base_value=quote.base_value(update.give_amount, update.take_amount),
        mid_price=f"{quote.mid.numerator}/{quote.mid.denominator}",
        spread=max(0, at_mid - update.take_amount),
    )
