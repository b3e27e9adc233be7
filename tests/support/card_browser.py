"""The card in a browser, for its tests: one browser context (a device) with the card open, what its
pages asked the server, and the steps a person takes (create, submit a form, wait for a message)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"  # Debian's; the browser tests never download one
NOT_FOUND = "Failed to load resource: the server responded with a status of 404 (Not Found)"
PASSPHRASE = "a long card passphrase"
MOBILE = {"width": 390, "height": 844}
# The page watches for violations of its CSP from before its own script runs.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@dataclass
class Card:
    """One browser context (a device) with the card open, and what its pages asked the server."""

    page: Any
    base: str
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (URL sent, body)
    console_errors: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)  # paths the server answered 404

    def open(self, path: str = "/card/") -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_selector("#card[data-state=ready]")

    def screen(self) -> str:
        return str(self.page.get_attribute("#card", "data-screen"))

    def wait_screen(self, name: str) -> None:
        self.page.wait_for_selector(f"#card[data-screen={name}]", timeout=20_000)

    def submit(self, form: str, **fields: str) -> None:
        for name, value in fields.items():
            self.page.fill(f"#{form} [name={name}]", value)
        self.page.click(f"#{form} button[type=submit]")

    def message(self, form: str) -> str:
        return str(self.page.inner_text(f"#{form} .message"))

    def wait_message(self, form: str, pattern: str) -> str:
        self.page.wait_for_function(
            "([form, pattern]) => new RegExp(pattern).test(document.querySelector(`#${form} .message`).textContent)",
            arg=[form, pattern],
            timeout=20_000,
        )
        return self.message(form)

    def vault_record(self) -> str | None:
        record: str | None = self.page.evaluate("localStorage.getItem('card.vault')")
        return record

    def create(self, passphrase: str = PASSPHRASE) -> tuple[str, list[str]]:
        self.submit("create-form", passphrase=passphrase, confirm=passphrase)
        self.wait_screen("backup")
        words = self.page.locator("#backup-phrase li").all_inner_texts()
        self.page.click("#backup-done")
        self.page.wait_for_selector("#card[data-locked=false]:not([data-screen=backup])")
        return self.page.text_content("#home-address") or "", words

    def go(self, hash_: str) -> None:
        self.page.evaluate("hash => { window.location.hash = hash; }", hash_)

    def csp_violations(self) -> list[str]:
        violations: list[str] = self.page.evaluate("window.__cspViolations")
        return violations

    def assert_clean(self, *secrets: str) -> None:
        """No CSP violation or console error; no secret in any URL the server received (the fragment
        stays in the browser) or any body sent."""
        assert self.csp_violations() == []
        # A new card asks for its channel before it opens one: the node's 404 there is the one answer
        # the browser logs as an error on its own, once per card.
        assert set(self.not_found) <= {"/api/channel"}, self.not_found
        assert self.console_errors == [NOT_FOUND] * len(self.not_found)
        for url, body in self.requests:
            sent = url.split("#", 1)[0].lower()
            for secret in secrets:
                for form in {secret, secret.replace(" ", "+"), secret.replace(" ", "%20")}:
                    assert form.lower() not in sent, f"{secret!r} in {url}"
                    assert form.lower() not in (body or "").lower(), f"{secret!r} sent to {url}"


def open_card(browser: Any, base: str, contexts: list[Any]) -> Card:
    """A new device (browser context) watching its console, its CSP and what it sends."""
    context = browser.new_context(viewport=MOBILE, device_scale_factor=2)
    contexts.append(context)
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    card = Card(page=page, base=base)
    page.on("request", lambda request: card.requests.append((request.url, request.post_data)))
    page.on(
        "console",
        lambda message: card.console_errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: card.console_errors.append(str(error)))
    page.on(
        "response",
        lambda response: (
            card.not_found.append(urlsplit(response.url).path) if response.status == 404 else None
        ),
    )
    return card
