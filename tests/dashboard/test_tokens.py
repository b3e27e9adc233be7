"""How the dashboard names assets and scales amounts: by what each token says of itself on chain."""

from __future__ import annotations

import pytest
from django.template import Context, Template
from django.test import override_settings

from dashboard import tokens
from tests.channels_app.conftest import w3  # noqa: F401 - the node configured for the test's chain

ETH = "0x0000000000000000000000000000000000000000"


@pytest.fixture(autouse=True)
def _afresh():
    tokens.forget()
    yield
    tokens.forget()


def test_amounts_keep_every_digit_at_any_number_of_decimals():
    assert tokens.format_units(1_234_500_000_000_000_000_000, 18) == "1,234.5"
    assert tokens.format_units(1_500_001, 6) == "1.500001"  # a 6-decimals token (USDC's)
    assert tokens.format_units(-25, 1) == "-2.5"
    assert tokens.format_units(7, 0) == "7"
    assert tokens.format_units(1_234_567, None) == "1,234,567"  # decimals unknown: base units


@pytest.mark.chain
def test_a_token_is_named_and_scaled_by_its_own_symbol_and_decimals(w3, deployments):  # noqa: F811
    token = deployments["TestToken"]

    found = tokens.describe(token)

    assert (found.symbol, found.decimals, found.label) == ("TST", 18, "TST")
    assert tokens.describe(ETH).label == "ETH"
    page = Template("{% load dashboard_tags %}{{ amount|units:asset }} {{ asset|asset }}")
    assert page.render(Context({"amount": 25 * 10**17, "asset": token})) == "2.5 TST"


@pytest.mark.chain
def test_an_address_that_is_no_token_shows_base_units_marked_so(w3):  # noqa: F811
    nothing = "0x00000000000000000000000000000000000000aa"  # no code there

    found = tokens.describe(nothing)

    assert found.decimals is None
    assert found.label == "token 0x0000…00aa (base units)"
    assert tokens.scaled(10**18, nothing) == "1,000,000,000,000,000,000"  # never scaled by a guess


@pytest.mark.chain
def test_a_chain_that_does_not_answer_leaves_decimals_unknown_and_is_asked_again_later(
    w3,  # noqa: F811
    deployments,
    monkeypatch,
):
    token = deployments["TestToken"]
    tokens.forget()
    with override_settings(CHAIN_RPC_URL="http://127.0.0.1:9"):  # nothing listens there
        assert tokens.describe(token).decimals is None
    assert tokens.describe(token).decimals is None  # within the retry time: not asked again
    monkeypatch.setattr(tokens, "RETRY_AFTER_SECONDS", 0.0)
    assert (tokens.describe(token).symbol, tokens.describe(token).decimals) == ("TST", 18)
