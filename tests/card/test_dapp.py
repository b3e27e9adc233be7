"""The demo dapp (/card/dapp/) in a real browser against a real daphne and anvil: it finds the card by
EIP-6963, connects once the user unlocks the card in the card's dialog, and has the card send ETH on
chain and sign a message through EIP-1193; a rejection is 4001 and sends nothing. What arrived is
checked on the chain itself, with web3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import HTTPProvider, Web3

from connext.chain import devchain
from tests.support.card_browser import PASSPHRASE, Card

# Not transactional: the node's records must outlive each test (the node fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[1]
ETHER = 10**18
CARD_RDNS = "org.connext-py.card"
# The page's own view of EIP-6963: every provider announced in answer to one request.
DISCOVER = """async () => {
    const seen = [];
    window.addEventListener('eip6963:announceProvider', (event) => seen.push(event.detail));
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    const card = seen.find(({ info }) => info.rdns === 'org.connext-py.card');
    return {
        infos: seen.map(({ info }) => ({ ...info })),
        chainId: await card.provider.request({ method: 'eth_chainId' }),
        accounts: await card.provider.request({ method: 'eth_accounts' }),
        frozen: seen.every((detail) => Object.isFrozen(detail) && Object.isFrozen(detail.info)),
    };
}"""


@pytest.fixture
def card(new_card: Any) -> Card:
    made: Card = new_card()
    return made


def approval(card: Card, kind: str) -> dict[str, str]:
    """The card's dialog, open for `kind`: its rows as {label: value}."""
    card.page.wait_for_selector(f"#card-approval[open][data-kind={kind}]", timeout=20_000)
    labels = card.page.locator("#approval-rows dt").all_inner_texts()
    values = card.page.locator("#approval-rows dd").all_inner_texts()
    return dict(zip(labels, values, strict=True))


def answer(card: Card, button: str) -> None:
    card.page.click(f"#approval-{button}")
    card.page.wait_for_selector("#card-approval:not([open])", state="attached", timeout=20_000)


def wait_code_or_text(card: Card, selector: str, pattern: str) -> str:
    card.page.wait_for_function(
        "([selector, pattern]) => new RegExp(pattern).test(document.querySelector(selector).textContent)",
        arg=[selector, pattern],
        timeout=30_000,
    )
    return str(card.page.inner_text(selector))


def test_the_demo_dapp_finds_the_card_connects_sends_on_chain_and_signs(card: Card, anvil_url: str) -> None:
    w3 = Web3(HTTPProvider(anvil_url))
    card.open()
    address = Web3.to_checksum_address(card.create()[0])
    funder = Account.from_key(FUNDER_KEY)
    funding = funder.sign_transaction(
        {
            "to": address,
            "value": ETHER,
            "nonce": w3.eth.get_transaction_count(funder.address),
            "gas": 21_000,
            "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
            "maxPriorityFeePerGas": 10**9,
            "chainId": w3.eth.chain_id,
        }
    )
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(funding.raw_transaction))

    card.page.goto(f"{card.base}/card/dapp/")  # same origin: the same vault, still locked
    card.page.wait_for_selector("#dapp[data-state=ready]")
    card.page.wait_for_selector(f"#wallets li[data-rdns='{CARD_RDNS}']")
    discovered = card.page.evaluate(DISCOVER)
    assert [(info["name"], info["rdns"]) for info in discovered["infos"]] == [("Card", CARD_RDNS)]
    assert discovered["infos"][0]["icon"].startswith("data:image/svg+xml;base64,")
    assert discovered["frozen"] is True
    assert discovered["chainId"] == hex(w3.eth.chain_id)
    assert discovered["accounts"] == []  # nothing before the user says so

    card.page.click(f"#wallets button[data-rdns='{CARD_RDNS}']")
    assert approval(card, "connect")["Account"] == address
    answer(card, "reject")
    assert wait_code_or_text(card, "#wallets-message", "4001").startswith("4001: The user rejected")

    card.page.click(f"#wallets button[data-rdns='{CARD_RDNS}']")
    approval(card, "connect")
    card.page.fill("#approval-passphrase", "not my passphrase")
    card.page.click("#approval-approve")
    assert "Wrong passphrase" in wait_code_or_text(card, "#approval-message", "Wrong passphrase")
    card.page.fill("#approval-passphrase", PASSPHRASE)
    card.page.click("#approval-approve")
    card.page.wait_for_selector("#card-approval:not([open])", state="attached", timeout=20_000)
    card.page.wait_for_selector("#account-panel:not([hidden])")
    assert card.page.inner_text("#dapp-account") == address
    assert wait_code_or_text(card, "#dapp-balance", "ETH") == "1 ETH"

    receiver = Account.create().address
    card.page.fill("#dapp-send [name=to]", receiver)
    card.page.fill("#dapp-send [name=amount]", "0.01")
    card.page.click("#dapp-send button[type=submit]")
    shown = approval(card, "transaction")
    assert (shown["Account"], shown["To"], shown["Amount"]) == (address, receiver, "0.01 ETH")
    answer(card, "approve")
    status = wait_code_or_text(card, "#send-status", "success|reverted")
    tx_hash = card.page.inner_text("#send-hash")
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert status == f"success in block {receipt['blockNumber']}"
    assert receipt["from"] == address
    assert receipt["to"] == receiver
    assert w3.eth.get_balance(receiver) == ETHER // 100
    assert w3.eth.get_transaction(tx_hash)["type"] == 2  # EIP-1559

    card.page.fill("#dapp-send [name=amount]", "0.02")
    card.page.click("#dapp-send button[type=submit]")
    assert approval(card, "transaction")["Amount"] == "0.02 ETH"
    answer(card, "reject")
    assert wait_code_or_text(card, "#dapp-send .message", "4001").startswith("4001: The user rejected")
    assert card.page.get_attribute("#dapp-send .message", "data-code") == "4001"
    assert w3.eth.get_transaction_count(address) == 1  # the rejected one was never sent
    assert w3.eth.get_balance(receiver) == ETHER // 100

    text = "Sign in to the demo dapp"
    card.page.fill("#dapp-sign [name=message]", text)
    card.page.click("#dapp-sign button[type=submit]")
    assert approval(card, "message")["Message"] == text
    answer(card, "approve")
    signature = wait_code_or_text(card, "#sign-signature", "^0x[0-9a-f]{130}$")
    assert Account.recover_message(encode_defunct(text=text), signature=signature) == address

    card.assert_clean(PASSPHRASE)
    # The only other origin the page talked to is the chain RPC the node publishes.
    origins = {url.split("/")[2] for url, _ in card.requests}
    assert origins == {card.base.split("/")[2], anvil_url.split("/")[2]}


def test_without_a_card_in_this_browser_connecting_says_where_to_make_one_and_is_4001(card: Card) -> None:
    card.page.goto(f"{card.base}/card/dapp/")
    card.page.wait_for_selector(f"#wallets button[data-rdns='{CARD_RDNS}']")
    card.page.click(f"#wallets button[data-rdns='{CARD_RDNS}']")

    shown = approval(card, "connect")
    assert shown["To connect"] == f"Create or restore a card at {card.base}/card/ first."
    assert not card.page.is_visible("#approval-approve")
    assert not card.page.is_visible("#approval-passphrase")
    assert card.page.inner_text("#approval-reject") == "Close"
    answer(card, "reject")
    assert wait_code_or_text(card, "#wallets-message", "4001").startswith("4001: The user rejected")
    assert card.page.is_hidden("#account-panel")
    card.assert_clean()
