"""The card in a real browser (Playwright driving Debian's chromium) served by a real daphne: the key
vault's whole life, the printed redeem link landing on the redeem screen, a request's QR scanned back
into a prefilled send (from a picture, and from chromium's fake camera playing a QR clip). Every page is watched for CSP violations and for secrets in what it requests.

"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.card_browser import CHROMIUM, MOBILE, NOT_FOUND, PASSPHRASE, WATCH_CSP, Card
from tests.support.processes import NodeProcess

# Not transactional: the node's records must outlive each test (the node fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
PAYMENT_ID = "0x" + "5a" * 32
SECRET = "0x" + "c3" * 32
ADDRESS = "0x52908400098527886E0F7030069857D2E4169EE7"


def test_a_card_is_made_locked_unlocked_shown_burned_and_restored_from_its_phrase(new_card: Any) -> None:
    card = new_card()
    card.open()
    assert card.screen() == "setup"
    card.submit("create-form", passphrase=PASSPHRASE, confirm="another passphrase")
    assert card.wait_message("create-form", "differ")
    assert card.vault_record() is None

    address, words = card.create()
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", address)
    assert len(words) == 12
    stored = card.vault_record()
    assert '"iterations":600000' in stored
    assert words[0] not in stored.split('"')

    card.page.reload()
    card.page.wait_for_selector("#card[data-state=ready]")
    assert card.screen() == "unlock"
    assert address in card.page.inner_text("#unlock-address")
    card.submit("unlock-form", passphrase="not my passphrase")
    assert "Wrong passphrase" in card.wait_message("unlock-form", "Wrong passphrase")
    assert card.screen() == "unlock"
    assert card.vault_record() == stored
    card.submit("unlock-form", passphrase=PASSPHRASE)
    card.wait_screen("home")
    assert card.page.inner_text("#home-address") == address
    # The balance is the node's word through the client, once connected; until then it says so.
    card.page.wait_for_selector("#home-balance[data-state=ready]", timeout=60_000)
    assert card.page.inner_text("#home-balance") == "0 ETH"

    card.page.click("#tabs >> text=Settings")
    card.wait_screen("settings")
    card.submit("reveal-form", passphrase="not my passphrase")
    card.wait_message("reveal-form", "Wrong passphrase")
    assert card.page.locator("#reveal-phrase li").count() == 0
    card.submit("reveal-form", passphrase=PASSPHRASE)
    card.page.wait_for_selector("#reveal-phrase li")
    assert card.page.locator("#reveal-phrase li").all_inner_texts() == words
    card.go("#home")
    card.wait_screen("home")
    assert card.page.locator("#reveal-phrase li").count() == 0  # hidden again once left

    card.go("#settings")
    card.page.click("#burn-form button[type=submit]")
    card.wait_message("burn-form", "Tick the box")
    assert card.vault_record() == stored
    card.page.check("#burn-form [name=confirm]")
    card.page.click("#burn-form button[type=submit]")
    card.wait_screen("setup")
    assert card.page.evaluate("localStorage.length") == 0
    card.page.reload()
    card.page.wait_for_selector("#card[data-state=ready]")
    assert card.screen() == "setup"

    elsewhere = new_card()  # another device: only the phrase travels
    elsewhere.open()
    elsewhere.submit(
        "import-form", phrase="  ".join(words[:11]), passphrase="new passphrase", confirm="new passphrase"
    )
    assert "has 11" in elsewhere.wait_message("import-form", "12 words")
    elsewhere.submit("import-form", phrase=" ".join([*words[:11], "qwerty"]))
    assert "“qwerty” (word 12) is not in the BIP-39 English word list" in elsewhere.wait_message(
        "import-form", "qwerty"
    )
    elsewhere.submit("import-form", phrase=" ".join(["test"] * 12))  # its checksum word would be "junk"
    assert "checksum" in elsewhere.wait_message("import-form", "checksum")
    assert elsewhere.vault_record() is None
    elsewhere.submit("import-form", phrase=" ".join(words).upper())
    elsewhere.wait_screen("home")
    assert elsewhere.page.inner_text("#home-address") == address

    phrase = " ".join(words)
    card.assert_clean(phrase, PASSPHRASE, " ".join(words[:3]))
    elsewhere.assert_clean(phrase, "new passphrase", " ".join(words[:3]))


def test_the_printed_redeem_link_opens_the_redeem_screen_and_its_secret_reaches_no_server(
    new_card: Any, node: NodeProcess
) -> None:
    card = new_card()
    responses: list[tuple[str, int]] = []
    card.page.on("response", lambda response: responses.append((response.url.split("#")[0], response.status)))
    card.open(f"/redeem#paymentId={PAYMENT_ID}&secret={SECRET}")

    card.wait_screen("redeem")
    assert responses[:2] == [(f"{node.url}/redeem", 302), (f"{node.url}/card/", 200)]
    # The browser carried the fragment over the redirect; the card names it after its screen.
    assert card.page.url == f"{node.url}/card/#redeem?paymentId={PAYMENT_ID}&secret={SECRET}"
    assert card.page.inner_text("#redeem-payment-id") == PAYMENT_ID
    assert card.page.is_visible("#redeem-locked")  # no card yet: the link waits for one
    assert SECRET[2:] not in card.page.inner_text("#card")

    card.page.click("#redeem-unlock")
    card.wait_screen("setup")
    card.create()
    card.wait_screen("redeem")  # back to the link, which stayed in the fragment
    assert card.page.inner_text("#redeem-payment-id") == PAYMENT_ID
    assert not card.page.is_visible("#redeem-locked")
    # The node knows no link with this id and secret: the card says so and offers no redeem.
    card.page.wait_for_selector("#redeem-status[data-status=unknown]")
    assert "No such link" in card.page.inner_text("#redeem-status")
    assert card.page.is_disabled("#redeem-form button[type=submit]")

    # The secret went to the node once, in the body of the status question, never in a URL.
    asked = [(url, body) for url, body in card.requests if SECRET[2:] in (body or "")]
    assert (
        [url for url, _ in asked] == [f"{node.url}/api/transfers/{PAYMENT_ID}/link-status"] * len(asked) != []
    )
    card.requests[:] = [(url, body) for url, body in card.requests if (url, body) not in asked]
    # Each of those answers was the node's 404 ("no such link"), which the browser logs as an error.
    link_status = f"/api/transfers/{PAYMENT_ID}/link-status"
    assert card.not_found.count(link_status) == len(asked)
    for _ in asked:
        card.not_found.remove(link_status)
        card.console_errors.remove(NOT_FOUND)
    card.assert_clean(SECRET, SECRET[2:], PASSPHRASE)
    assert SECRET[2:] not in node.log()
    assert "/redeem" in node.log()  # the log is daphne's access log: it would show a leaked secret


def test_the_policy_is_enforced_and_the_watch_for_violations_sees_them(new_card: Any) -> None:
    """The counter-proof of every `assert_clean`: inline code and string HTML are blocked and seen."""
    card = new_card()
    card.open()
    blocked = card.page.evaluate(
        """() => {
            const outcomes = [];
            try { document.body.innerHTML += '<b>markup</b>'; outcomes.push('innerHTML ran'); }
            catch (error) { outcomes.push(error.name); }
            document.body.setAttribute('style', 'color: red');
            outcomes.push(getComputedStyle(document.body).color);
            return outcomes;
        }"""
    )
    card.page.wait_for_function("() => window.__cspViolations.length >= 2")

    assert blocked == ["TypeError", "rgb(23, 33, 47)"]  # no string HTML; the inline style ignored
    assert {violation.split()[0] for violation in card.csp_violations()} == {
        "require-trusted-types-for",
        "style-src-attr",
    }


def test_a_request_qr_scanned_back_opens_a_prefilled_send_and_foreign_codes_are_refused(
    new_card: Any, tmp_path: Path
) -> None:
    card = new_card()
    card.open()
    address, _ = card.create()

    card.page.click("#screen-home >> text=Request")
    card.wait_screen("request")
    card.submit("request-form", amount="-1")
    card.wait_message("request-form", "Enter an amount")
    card.submit("request-form", amount="0.01")
    card.page.wait_for_selector("#request-result:not([hidden])")
    link = card.page.inner_text("#request-link")
    assert link == f"{card.base}/card/#send?to={address}&amount=10000000000000000"
    assert card.page.get_attribute("#request-qr", "src").startswith("data:image/gif;base64,")
    picture = tmp_path / "request.png"
    card.page.locator("#request-qr").screenshot(path=str(picture))

    card.go("#scan")
    card.wait_screen("scan")
    card.page.set_input_files("#scan-file", str(picture))
    card.wait_screen("send")
    assert card.page.input_value("#send-form [name=to]") == address
    assert card.page.input_value("#send-form [name=amount]") == "0.01"

    card.go("#scan")
    card.wait_screen("scan")
    foreign = tmp_path / "foreign.gif"
    encode = "import('qr').then(m => process.stdout.write(m.default(process.argv[1], 'gif', {scale: 8, border: 4})))"
    foreign.write_bytes(
        subprocess.run(
            ["node", "-e", encode, f"https://evil.example/card/#send?to={ADDRESS}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
    )
    card.page.set_input_files("#scan-file", str(foreign))
    card.page.wait_for_function("() => document.querySelector('#scan-message').dataset.kind === 'error'")
    assert "another site (https://evil.example)" in card.page.inner_text("#scan-message")
    assert card.screen() == "scan"

    card.page.goto(f"{card.base}/card/#send?to={ADDRESS.lower()}&amount=2500000000000000000")
    card.wait_screen("send")  # same document: still unlocked
    assert card.page.input_value("#send-form [name=to]") == ADDRESS
    assert card.page.input_value("#send-form [name=amount]") == "2.5"
    card.page.click("#tabs >> text=Send")
    for to, amount, expected in [
        (ADDRESS, "0", "more than 0"),
        ("0x1234", "1", "40 hexadecimal"),
        (ADDRESS.replace("E7", "e7", 1), "1", "checksum"),
        (ADDRESS, "1.0000000000000000001", "at most 18 decimals"),
    ]:
        card.page.fill("#send-form [name=to]", to)
        card.page.fill("#send-form [name=amount]", amount)
        card.page.click("#send-form button[type=submit]")
        assert expected in card.wait_message("send-form", expected)
    card.page.fill("#send-form [name=to]", ADDRESS)
    card.page.fill("#send-form [name=amount]", "0.5")
    card.page.wait_for_selector("#connection[data-state=online]", timeout=60_000)
    card.page.click("#send-form button[type=submit]")
    assert "You have 0 ETH in your card; that is less than 0.5." in card.wait_message("send-form", "You have")

    card.go("#no-such-screen")
    card.page.wait_for_selector("#card-error:not([hidden])")
    assert "no screen “no-such-screen”" in card.page.inner_text("#card-error-text")
    assert card.screen() == "home"
    card.page.click("#card-error-dismiss")
    assert not card.page.is_visible("#card-error")
    card.page.click("#screen-home >> text=Deposit")
    card.wait_screen("deposit")  # still usable after the error

    card.assert_clean(PASSPHRASE)


def qr_video(path: Path, text: str, *, width: int = 640, height: int = 480, scale: int = 8) -> Path:
    """A Y4M clip of the QR of `text` (black on white, centred): chromium's fake camera plays it."""
    modules = json.loads(
        subprocess.run(
            [
                "node",
                "-e",
                "import('qr').then(m => console.log(JSON.stringify(m.default(process.argv[1], 'raw', {border: 4}))))",
                text,
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    luma = bytearray(b"\xff" * (width * height))
    left, top = (width - len(modules) * scale) // 2, (height - len(modules) * scale) // 2
    for row, line in enumerate(modules):
        for column, dark in enumerate(line):
            if dark:
                for y in range(top + row * scale, top + (row + 1) * scale):
                    start = y * width + left + column * scale
                    luma[start : start + scale] = b"\x00" * scale
    chroma = b"\x80" * (width // 2 * height // 2 * 2)
    frame = b"FRAME\n" + bytes(luma) + chroma
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode() + frame * 2)
    return path


def test_the_camera_scans_a_request_into_a_prefilled_send(
    node: NodeProcess, playwright: Any, tmp_path: Path
) -> None:
    link = f"{node.url}/card/#send?to={ADDRESS}&amount=20000000000000000"
    clip = qr_video(tmp_path / "request.y4m", link)
    flags = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", *flags])
    try:
        context = chromium.new_context(viewport=MOBILE)
        context.add_init_script(WATCH_CSP)
        card = Card(page=context.new_page(), base=node.url)
        card.open()
        card.create()
        card.go("#scan")
        card.wait_screen("scan")
        card.page.click("#scan-camera")
        card.wait_screen("send")
        assert card.page.input_value("#send-form [name=to]") == ADDRESS
        assert card.page.input_value("#send-form [name=amount]") == "0.02"
        assert (
            card.page.evaluate("() => document.querySelector('#scan-video').srcObject?.active ?? false")
            is False
        )
        assert card.csp_violations() == []
    finally:
        chromium.close()
