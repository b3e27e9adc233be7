"""The overview's swaps: volume and spread per direction, the node's exposure per asset against its
limit, from swaps made through the node."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.channels_app.test_swaps import MILLI, funded_wallet, offered, send_swap, token_collateral
from tests.channels_app.test_swaps import offer as offer
from tests.support.wallet import ETH

pytestmark = pytest.mark.django_db


def row(page: str, table: str, **attributes: str) -> str:
    selector = "".join(f'\\s+data-{name}="{re.escape(value)}"' for name, value in attributes.items())
    found = re.search(rf'<table id="{table}".*?<tr{selector}[^>]*>(.*?)</tr>', page, re.S)
    assert found, f"no row {attributes} in #{table}"
    return found.group(1)


def test_the_overview_shows_swap_volume_spread_and_exposure_against_its_limit(
    offer, w3, deployments, staff_client
):
    wallet = funded_wallet(Client(), w3, deployments)
    token = deployments["TestToken"]
    token_collateral(wallet, w3, token)
    take = offered(10 * MILLI)
    assert send_swap(wallet, ETH, 10 * MILLI, token, take).status_code == 200

    page = staff_client.get("/dashboard/").content.decode()

    totals = row(page, "swap-totals", give=ETH, take=token)
    assert '<td class="count">1</td>' in totals
    assert f'class="spread-all" data-wei="{20 * 10**18 - take}"' in totals
    exposure = row(page, "swap-exposure", asset=token.lower())
    assert f'data-wei="{take}"' in exposure
    assert "400" in exposure  # the configured maxExposure, in tokens
    assert f'data-wei="{-10 * MILLI}"' in row(page, "swap-exposure", asset=ETH)

    overview = staff_client.get("/api/dashboard/overview").json()
    (direction,) = overview["swaps"]
    assert (direction["giveAssetId"], direction["takeAssetId"]) == (ETH, token)
    assert (
        direction["day"]
        == direction["all"]
        == {
            "count": 1,
            "given": str(10 * MILLI),
            "taken": str(take),
            "spread": str(20 * 10**18 - take),
        }
    )
    exposure = {row["assetId"]: row for row in overview["swapExposure"]}
    assert exposure[token.lower()] == {
        "assetId": token.lower(),
        "paidOut": str(take),
        "limit": str(400 * 10**18),
    }
    assert exposure[ETH]["paidOut"] == str(-10 * MILLI)
