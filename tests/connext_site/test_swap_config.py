"""The SWAPS document: a good one parses whole; each malformed part stops the node at start with a
message naming where it is and what was expected."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from connext_site import config, swap_config

PAIR = {
    "base": "eth",
    "quote": "0x5FC8d32690cc91D4c39d9d3abcBD16989F875707",
    "source": {"type": "fixed", "price": "2000.5"},
    "maxPerSwap": "1000",
    "maxPerDay": "5000",
}


def document(**changes) -> str:
    pair = {**PAIR, **changes.pop("pair", {})}
    return json.dumps({"pairs": [pair], **changes})


def test_a_whole_document_parses_with_its_defaults():
    parsed = swap_config.parse(document(maxExposure={"eth": "7"}))

    (pair,) = parsed.pairs
    assert pair.source == swap_config.SwapSource(type="fixed", price=Decimal("2000.5"))
    assert (pair.base, pair.spread_bps, pair.max_per_swap, pair.max_per_day) == ("eth", 30, 1000, 5000)
    assert parsed.max_exposure == (("eth", 7),)
    assert (parsed.tolerance_bps, parsed.stale_seconds, parsed.poll_seconds, parsed.push_bps) == (
        500,
        300,
        15,
        10,
    )


def test_feed_and_pool_sources_parse():
    feed = swap_config.parse(document(pair={"source": {"type": "feed", "address": "TestPriceFeed"}}))
    pool = swap_config.parse(
        document(pair={"source": {"type": "pool", "address": "0x" + "1" * 40, "baseToken": "0x" + "2" * 40}})
    )

    assert feed.pairs[0].source == swap_config.SwapSource(type="feed", address="TestPriceFeed")
    assert pool.pairs[0].source.base_token == "0x" + "2" * 40


def test_without_swaps_the_node_offers_none():
    assert config.load({}).swaps == swap_config.NO_SWAPS


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("not json", "JSON document"),
        (json.dumps({"pair": []}), "document"),
        (document(pair={"base": "bitcoin!"}), "pairs[0].base"),
        (document(pair={"quote": "eth"}), "two different assets"),
        (document(pair={"source": {"type": "oracle"}}), "pairs[0].source.type"),
        (document(pair={"source": {"type": "fixed", "price": "-1"}}), "pairs[0].source.price"),
        (document(pair={"source": {"type": "fixed", "price": "NaN"}}), "pairs[0].source.price"),
        (document(pair={"source": {"type": "pool", "address": "0x" + "1" * 40}}), "baseToken"),
        (document(pair={"maxPerSwap": "0"}), "pairs[0].maxPerSwap"),
        (document(pair={"maxPerDay": "10"}), "at least maxPerSwap"),
        (document(pair={"spreadBps": 9000}), "pairs[0].spreadBps"),
        (document(pair={"maxPerSwap": 1.5}), "pairs[0].maxPerSwap"),
        (document(pair={"extra": 1}), "only the keys"),
        (
            json.dumps({"pairs": [PAIR, {**PAIR, "base": PAIR["quote"], "quote": "eth"}]}),
            "one entry per pair",
        ),
        (document(maxExposure={"eth": "-1"}), "maxExposure.eth"),
        (document(staleSeconds=10, pollSeconds=15), "more than pollSeconds"),
        (document(toleranceBps=0), "toleranceBps"),
    ],
)
def test_a_malformed_document_is_refused_naming_the_place(text, names):
    with pytest.raises(ImproperlyConfigured, match="SWAPS") as refused:
        config.load({"SWAPS": text})

    assert names in str(refused.value)
