"""Amounts as people type them, parsed exactly."""

from __future__ import annotations

import pytest

from connext.client.amounts import MAX_UINT256, check_amount, format_amount, parse_amount
from connext.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("1.5eth", 1_500_000_000_000_000_000),
        ("1.5 ETH", 1_500_000_000_000_000_000),
        ("0.000000000000000001eth", 1),
        ("20gwei", 20_000_000_000),
        ("1000wei", 1000),
        ("1000", 1000),
        (".5ether", 500_000_000_000_000_000),
        (str(MAX_UINT256), MAX_UINT256),
    ],
)
def test_an_amount_in_eth_gwei_or_wei_becomes_exact_wei(text, wei):
    assert parse_amount(text) == wei


@pytest.mark.parametrize(
    "text",
    ["", "-1", "1e18", "1.5", "0.0000000000000000001eth", "2 bananas", "0", str(MAX_UINT256 + 1), "1" * 120],
)
def test_anything_but_a_whole_positive_number_of_wei_is_refused(text):
    with pytest.raises(InvalidArgumentError) as refused:
        parse_amount(text)

    assert refused.value.code == "invalid_amount"


@pytest.mark.parametrize("amount", [-1, 0, MAX_UINT256 + 1, 1.5, True, "10"])
def test_a_programs_amount_must_be_a_positive_int_in_uint256(amount):
    with pytest.raises(InvalidArgumentError):
        check_amount(amount)


def test_amounts_are_shown_exactly_without_trailing_zeros():
    assert format_amount(1_500_000_000_000_000_000) == "1.5 eth"
    assert format_amount(1) == "0.000000000000000001 eth"
    assert format_amount(0) == "0 eth"
    assert format_amount(MAX_UINT256, unit="wei") == f"{MAX_UINT256} wei"
