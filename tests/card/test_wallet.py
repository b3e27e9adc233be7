"""The card as its users use it, in real browsers (Debian's chromium, one context per device) against a
live node (daphne and Celery on Postgres and Redis) and anvil: deposit, pay and be paid live, links,
refusals that change nothing, a send that waits for the node's collateral, restore from the phrase,
cash out. What the screens say is checked against the chain and the node's records.

Set UPDATE_SCREENSHOT=1 to write the home screen's screenshot to docs/card-home.png (README).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from channels_app.models import Payment
from connext import ETH
from connext.chain import channel_reads, devchain
from tests.support.card_browser import PASSPHRASE, Card
from tests.support.client_wallets import Funder

# Not transactional: the node's records must outlive each test (the node fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[9]
MILLI = 10**15
WAIT_MS = 60_000


def shown_error(card: Card) -> str:
    return card.page.inner_text("#card-error-text") if card.page.is_visible("#card-error") else "none"


def wait_text(card: Card, selector: str, pattern: str, timeout: int = WAIT_MS) -> str:
    try:
        card.page.wait_for_function(
            "([selector, pattern]) => new RegExp(pattern).test(document.querySelector(selector)?.textContent ?? '')",
            arg=[selector, pattern],
            timeout=timeout,
        )
    except Exception as exc:
        raise AssertionError(
            f"{selector} says {card.page.inner_text(selector)!r}, not /{pattern}/; the card's error: {shown_error(card)}"
        ) from exc
    return str(card.page.inner_text(selector))


def balance_wei(card: Card) -> int:
    card.page.wait_for_selector("#home-balance[data-state=ready]", timeout=WAIT_MS)
    return int(card.page.get_attribute("#home-balance", "data-wei") or "0")


def wait_balance(card: Card, wei: int) -> None:
    card.page.wait_for_selector(f"#home-balance[data-wei='{wei}']", timeout=WAIT_MS)


def online(card: Card) -> Card:
    try:
        card.page.wait_for_selector("#connection[data-state=online]", timeout=WAIT_MS)
    except Exception as exc:
        raise AssertionError(
            f"the card did not connect: {shown_error(card)}; console: {card.console_errors}"
        ) from exc
    return card


def made(new_card: Any) -> tuple[Card, str, list[str]]:
    card = new_card()
    card.open()
    address, words = card.create()
    return online(card), address, words


def open_link(card: Card, link: str) -> None:
    """The link opened in a new page of the card: the card is locked, the redeem screen open."""
    card.page.goto(link)
    card.page.wait_for_selector("#card[data-state=ready]")
    card.wait_screen("redeem")


def unlock_for_the_link(card: Card) -> None:
    card.page.click("#redeem-unlock")
    card.wait_screen("unlock")
    card.submit("unlock-form", passphrase=PASSPHRASE)
    card.wait_screen("redeem")  # back to the link
    online(card)


def deposit(card: Card, funder: Funder, amount: int) -> str:
    card.go("#deposit")
    card.wait_screen("deposit")
    card.page.wait_for_selector("#deposit-qr:not([hidden])")
    channel = card.page.inner_text("#deposit-address")
    assert Web3.is_checksum_address(channel)
    wait_text(card, "#deposit-progress", "Waiting for your deposit")
    funder.send_eth(channel, amount)
    wait_text(card, "#deposit-progress", f"Credited {amount / 10**18:g} ETH")
    return channel


def send(card: Card, to: str, amount: str) -> None:
    card.go("#send")
    card.wait_screen("send")
    card.submit("send-form", to=to, amount=amount)


def test_cards_deposit_pay_each_other_live_and_refuse_what_cannot_be_paid(
    new_card: Any, anvil_url: str
) -> None:
    w3 = Web3(HTTPProvider(anvil_url))
    funder = Funder(w3, FUNDER_KEY)
    alice, alice_address, _ = made(new_card)
    bob, bob_address, _ = made(new_card)

    channel = deposit(alice, funder, 50 * MILLI)
    alice.go("#home")
    wait_balance(alice, 50 * MILLI)
    assert channel_reads.deposit_totals(w3, channel, ETH, block="latest").user == 50 * MILLI

    # Bob's channel holds nothing of the node's yet: the node collateralizes it first. With the chain
    # paused the card shows that wait as a wait; mined, the payment completes.
    devchain.rpc_call(anvil_url, "evm_setAutomine", [False])
    try:
        send(alice, bob_address, "0.01")
        assert "moving funds into the receiver" in alice.wait_message("send-form", "moving funds")
        assert alice.page.get_attribute("#send-form .message", "data-kind") != "error"
    finally:
        devchain.rpc_call(anvil_url, "evm_setAutomine", [True])
        devchain.rpc_call(anvil_url, "evm_mine", [])
    assert "Paid 0.01 ETH" in alice.wait_message("send-form", "Paid")
    # Bob's card, left on its home screen, shows it without a reload.
    wait_balance(bob, 10 * MILLI)
    assert "Received 0.01 ETH" in bob.page.inner_text("#home-notice")
    bob.page.wait_for_selector("#home-history li[data-status=completed]")
    alice.go("#home")
    wait_balance(alice, 40 * MILLI)
    alice.page.wait_for_selector("#home-history li[data-status=completed]")

    # Refused before anything is signed, each with its reason; nothing moves.
    payments_before = Payment.objects.count()
    for to, amount, reason in [
        (bob_address, "0", "more than 0"),
        (bob_address, "1", "less than 1"),
        ("0x1234", "0.001", "40 hexadecimal"),
        (alice_address, "0.001", "your own address"),
    ]:
        send(alice, to, amount)
        assert reason in alice.wait_message("send-form", reason)
        assert alice.page.get_attribute("#send-form .message", "data-kind") == "error"
    assert Payment.objects.count() == payments_before
    alice.go("#home")
    wait_balance(alice, 40 * MILLI)

    # Another payment, Bob's screen open on another page of the card: the notice waits on home.
    bob.go("#settings")
    send(alice, bob_address, "0.002")
    assert "Paid 0.002 ETH" in alice.wait_message("send-form", "Paid")
    bob.go("#home")
    wait_balance(bob, 12 * MILLI)

    alice.assert_clean()
    bob.assert_clean()


def test_a_link_is_seen_redeemed_once_and_a_restored_card_shows_the_same_balance_and_history(
    new_card: Any, anvil_url: str
) -> None:
    w3 = Web3(HTTPProvider(anvil_url))
    funder = Funder(w3, FUNDER_KEY)
    alice, _, _ = made(new_card)
    carol, carol_address, carol_words = made(new_card)
    deposit(alice, funder, 20 * MILLI)

    alice.go("#link")
    alice.wait_screen("link")
    assert alice.page.inner_text("#link-cap") == "0.1"  # CARD_LINK_MAX_WEI's default
    alice.submit("link-form", amount="0.2")
    assert "at most 0.1 ETH" in alice.wait_message("link-form", "at most")
    alice.submit("link-form", amount="0.004")
    alice.page.wait_for_selector("#link-result:not([hidden])", timeout=WAIT_MS)
    link = alice.page.inner_text("#link-url")
    assert link.startswith(f"{alice.base}/redeem#paymentId=0x")
    assert alice.page.get_attribute("#link-qr", "src").startswith("data:image/gif;base64,")

    open_link(carol, link)  # as if she opened it from a message: her card is locked
    assert "Ready to redeem · 0.004 ETH" in wait_text(carol, "#redeem-status", "Ready")  # before unlocking
    unlock_for_the_link(carol)
    carol.page.click("#redeem-form button[type=submit]")
    assert "Redeemed 0.004 ETH" in carol.wait_message("redeem-form", "Redeemed")
    assert "secret=" not in carol.page.url  # the secret left the address bar
    carol.go("#home")
    wait_balance(carol, 4 * MILLI)

    # The same link again, in another device's card: it says it was taken, and offers no redeem.
    dave, _, _ = made(new_card)
    open_link(dave, link)
    unlock_for_the_link(dave)
    assert "Already redeemed" in wait_text(dave, "#redeem-status", "Already")
    assert dave.page.is_disabled("#redeem-form button[type=submit]")

    # Carol's phrase on a fresh device: the same channel, balance and history, from the node.
    restored = new_card()
    restored.open()
    restored.submit(
        "import-form", phrase=" ".join(carol_words), passphrase="another one", confirm="another one"
    )
    restored.wait_screen("home")
    online(restored)
    assert restored.page.inner_text("#home-address") == carol_address
    wait_balance(restored, 4 * MILLI)
    restored.page.wait_for_selector("#home-history li[data-status=completed]", timeout=WAIT_MS)
    history = restored.page.locator("#home-history li").all_inner_texts()
    assert len(history) == 1
    assert "+0.004 ETH" in history[0]

    screenshot = (
        ROOT / "docs" / "card-home.png"
        if os.environ.get("UPDATE_SCREENSHOT")
        else ROOT / "var" / "card-home.png"
    )
    screenshot.parent.mkdir(exist_ok=True)
    restored.page.screenshot(path=str(screenshot))

    for card in (alice, carol, dave, restored):
        card.assert_clean()


def test_cash_out_arrives_on_chain_and_the_card_says_when_it_is_mined(new_card: Any, anvil_url: str) -> None:
    w3 = Web3(HTTPProvider(anvil_url))
    funder = Funder(w3, FUNDER_KEY)
    card, _, _ = made(new_card)
    deposit(card, funder, 30 * MILLI)
    recipient = Account.create().address

    card.go("#cashout")
    card.wait_screen("cashout")
    card.submit("cashout-form", to=recipient, amount="1")
    assert "less than 1" in card.wait_message("cashout-form", "less than")
    card.submit("cashout-form", to=recipient, amount="0.012")
    shown = card.wait_message("cashout-form", "Cashed out")

    assert w3.eth.get_balance(recipient) == 12 * MILLI
    tx_hash = shown.rsplit(" ", 1)[-1].rstrip(".")
    assert w3.eth.get_transaction_receipt(tx_hash)["status"] == 1
    card.go("#home")
    wait_balance(card, 18 * MILLI)
    card.assert_clean()
