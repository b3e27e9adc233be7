"""The card's swaps against a live node offering ETH/TestToken at a fixed price (daphne and Celery on
Postgres and Redis, the session's anvil; the node's account holds TestToken): the JS client's live
swap tests (`card/js/test/live_swap/`), and the swap screen and the auto-swap of deposits in a real
browser (Debian's chromium)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from channels_app import realtime
from channels_app.models import Swap
from connext.chain import devchain
from tests.card.conftest import NODE_KEY, run_live_js_tests
from tests.card.test_wallet import WAIT_MS, deposit, made, online, wait_balance, wait_text
from tests.support.card_browser import NOT_FOUND, PASSPHRASE, Card
from tests.support.client_wallets import Funder
from tests.support.processes import ROOT, NodeProcess, http_get_json, module_live_node

# Not transactional: the node's records must outlive each test (the node fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[8]
BROWSER_FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[9]
MILLI = 10**15
TOKEN_UNIT = 10**18
SCREENSHOT = Path(tempfile.gettempdir()) / "card-swap" / "swap-screen.png"
MAX_GIVE_ETH = 20 * MILLI  # the pair's maxPerSwap: the most ETH one swap gives
SWAPS = json.dumps(
    {
        "pairs": [
            {
                "base": "eth",
                "quote": "TestToken",
                "source": {"type": "fixed", "price": "2000"},
                "spreadBps": 30,
                "maxPerSwap": str(MAX_GIVE_ETH),
                "maxPerDay": str(10**18),
            }
        ]
    }
)


@pytest.fixture(scope="module")
def node(
    node_database_url: str,
    anvil_url: str,
    deployments: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    django_db_blocker: Any,
) -> Iterator[NodeProcess]:
    """The card's live node (tests/card/conftest.py) offering swaps, its account minted TestToken to
    pay them."""
    Funder(Web3(HTTPProvider(anvil_url)), FUNDER_KEY).mint(
        deployments["TestToken"], Account.from_key(NODE_KEY).address, 10**24
    )
    subprocess.run(["make", "--quiet", "assets"], cwd=ROOT, check=True)
    with module_live_node(
        "card-swap",
        node_key=NODE_KEY,
        database_url=node_database_url,
        chain_url=anvil_url,
        deployments_book=deployments["book"],
        tmp_path_factory=tmp_path_factory,
        django_db_blocker=django_db_blocker,
        SWAPS=SWAPS,
    ) as daphne:
        yield daphne


def test_the_js_client_swaps_against_a_real_node(
    node: NodeProcess, anvil_url: str, deployments: dict[str, str]
) -> None:
    run_live_js_tests(
        "card/js/test/live_swap/",
        node,
        {
            "CHAIN_RPC_URL": anvil_url,
            "FUNDER_KEY": FUNDER_KEY,
            "TOKEN": deployments["TestToken"],
            "MAX_GIVE_ETH": str(MAX_GIVE_ETH),
        },
    )


def token_wei(card: Card, token: str) -> int:
    return int(card.page.get_attribute(f"#home-tokens li[data-asset='{token}']", "data-wei") or "0")


def wait_token(card: Card, token: str, wei: int) -> None:
    card.page.wait_for_selector(f"#home-tokens li[data-asset='{token}'][data-wei='{wei}']", timeout=WAIT_MS)


def push_rates(rates: dict[str, Any]) -> None:
    """A `swap.rates` push to every socket, through the node's channel layer (as its beat task does
    when a price moves)."""
    realtime.push_event_now(realtime.BROADCAST_GROUP, "swap.rates", rates)


def test_the_swap_screen_swaps_eth_for_tokens_refuses_over_the_limit_and_auto_swaps_deposits(
    new_card: Any, node: NodeProcess, anvil_url: str, deployments: dict[str, str]
) -> None:
    funder = Funder(Web3(HTTPProvider(anvil_url)), BROWSER_FUNDER_KEY)
    token = deployments["TestToken"]
    card, address, _ = made(new_card)
    deposit(card, funder, 50 * MILLI)

    card.go("#home")
    card.page.click("#screen-home .actions >> text=Swap")
    card.wait_screen("swap")
    assert wait_text(card, "#swap-rate", "1994") == "1 ETH = 1994 TestToken"  # 2000 less the 30 bps spread
    assert card.page.locator("#swap-direction option").all_inner_texts() == [
        "ETH → TestToken",
        "TestToken → ETH",
    ]
    assert "At most 0.02 ETH in one swap. Your card holds 0.05 ETH." in card.page.inner_text("#swap-limits")
    card.page.fill("#swap-form [name=amount]", "0.01")
    wait_text(card, "#swap-receive", "You receive about 19.94 TestToken")

    # The node pushes its rates when a price moves: the quote follows without a reload.
    status, rates = http_get_json(f"{node.url}/api/swap/rates")
    assert status == 200
    moved = json.loads(json.dumps(rates))
    for entry in moved["rates"]:
        if entry["giveAssetId"] == "0x0000000000000000000000000000000000000000":
            entry["rate"] = {"numerator": "1990", "denominator": "1"}
    push_rates(moved)
    wait_text(card, "#swap-rate", "1 ETH = 1990 TestToken")
    wait_text(card, "#swap-receive", "You receive about 19.9 TestToken")
    push_rates(rates)  # and back to the node's price
    wait_text(card, "#swap-receive", "You receive about 19.94 TestToken")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    card.page.screenshot(path=str(SCREENSHOT), full_page=True)

    card.page.click("#swap-form button[type=submit]")
    assert "Swapped 0.01 ETH for 19.94 TestToken." in card.wait_message("swap-form", "Swapped")
    card.go("#home")
    wait_balance(card, 40 * MILLI)
    wait_token(card, token, 1994 * 10 * MILLI)
    assert card.page.inner_text(f"#home-tokens li[data-asset='{token}']") == "19.94 TestToken"

    # Over the node's maxPerSwap: its refusal, in its words; nothing moves.
    card.go("#swap")
    card.wait_screen("swap")
    wait_text(card, "#swap-rate", "1994")
    card.submit("swap-form", amount="0.03")
    refusal = card.wait_message("swap-form", "refused")
    assert refusal.startswith("The node refused the swap: One swap of "), refusal
    assert f"moves at most {MAX_GIVE_ETH} of" in refusal  # the node's words, in base units
    assert refusal.endswith("(one swap gives at most 0.02 ETH)"), refusal
    assert card.page.get_attribute("#swap-form .message", "data-kind") == "error"
    card.go("#home")
    wait_balance(card, 40 * MILLI)
    assert token_wei(card, token) == 1994 * 10 * MILLI
    assert Swap.objects.filter(user_address=address).count() == 1

    # Auto-swap on (it outlives a reload): a deposit of 0.03 ETH swaps one swap's most, 0.02 ETH.
    card.go("#settings")
    card.wait_screen("settings")
    card.page.wait_for_selector("#autoswap:not([disabled])", timeout=WAIT_MS)
    assert card.page.inner_text("#autoswap-form label.check") == "Swap ETH deposits into TestToken"
    assert not card.page.is_checked("#autoswap")  # off by default
    card.page.check("#autoswap")
    assert "On: each ETH deposit is swapped into TestToken." in card.wait_message("autoswap-form", "On")
    assert card.page.evaluate("localStorage.getItem('card.autoswap')") == token
    card.page.reload()
    card.page.wait_for_selector("#card[data-state=ready]")
    card.submit("unlock-form", passphrase=PASSPHRASE)
    card.wait_screen("settings")
    online(card)
    assert card.page.is_checked("#autoswap")

    deposit(card, funder, 30 * MILLI)
    said = wait_text(card, "#deposit-swap", "swapped for")
    assert said == "Auto-swap: 0.02 ETH of your deposit swapped for 39.88 TestToken.", said
    card.go("#home")
    wait_balance(card, 50 * MILLI)
    wait_token(card, token, 1994 * 30 * MILLI)
    card.page.screenshot(path=str(SCREENSHOT.with_name("home.png")))
    swapped = Swap.objects.filter(user_address=address).order_by("nonce")
    assert [(int(s.give_amount), int(s.take_amount)) for s in swapped] == [
        (10 * MILLI, 1994 * 10 * MILLI),
        (20 * MILLI, 1994 * 20 * MILLI),
    ]

    # The node's one refusal is the one error the browser logs besides the new card's 404.
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert card.console_errors.count(refused) == 1, card.console_errors
    card.console_errors.remove(refused)
    assert card.console_errors.count(NOT_FOUND) == len(card.not_found)
    card.assert_clean(PASSPHRASE)
