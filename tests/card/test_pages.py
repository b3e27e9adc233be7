"""The card's page and the redeem link's landing, through Django: what is served, under which headers,
and that the page is static (no database, no user data, no inline code)."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

if TYPE_CHECKING:  # the test client's response type exists only in django-stubs
    from django.test.client import _MonkeyPatchedWSGIResponse as HttpResponse

ROOT = Path(__file__).resolve().parents[2]
SCREENS = {
    *("setup", "unlock", "backup"),  # the vault's
    *("home", "deposit", "send", "request", "link", "redeem", "cashout", "swap", "scan", "settings"),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws://testserver; "
    "img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class Markup(HTMLParser):
    """What the CSP must allow: every script and stylesheet, every inline bit of code or style."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.stylesheets: list[str | None] = []
        self.inline: list[str] = []
        self.screens: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.inline += [f"{tag} {name}" for name in attributes if name == "style" or name.startswith("on")]
        if tag == "style":
            self.inline.append("style element")
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "link" and attributes.get("rel") == "stylesheet":
            self.stylesheets.append(attributes.get("href"))
        if tag == "section" and attributes.get("data-screen"):
            self.screens.add(str(attributes["data-screen"]))
        for name in ("href", "src", "action"):
            if (attributes.get(name) or "").startswith(("javascript:", "http:", "https:", "//")):
                self.inline.append(f"{tag} {name}={attributes[name]}")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")


@pytest.fixture
def page(db: None, django_assert_num_queries: Any) -> HttpResponse:
    with django_assert_num_queries(0):  # static: nothing about anyone is read to render it
        response = Client().get("/card/")
    assert response.status_code == 200
    return response


def test_the_card_page_has_every_screen_and_only_its_own_bundle(page: HttpResponse) -> None:
    markup = Markup()
    markup.feed(page.content.decode())

    assert markup.screens == SCREENS
    assert markup.scripts == [
        {"type": "module", "src": "/static/card/build/card.js"}
    ]  # deferred, as modules are
    assert markup.stylesheets == ["/static/card/build/card.css"]
    assert markup.inline == []


def test_the_card_page_carries_its_safety_headers_exactly(page: HttpResponse) -> None:
    assert {name: page.headers.get(name) for name in HEADERS} == HEADERS


def test_over_https_the_websocket_allowed_is_wss_of_the_same_host(db: None) -> None:
    response = Client().get("/card/", secure=True, headers={"host": "localhost"})

    assert "connect-src 'self' wss://localhost;" in response.headers["Content-Security-Policy"]


def test_the_page_tells_the_script_where_the_api_is_in_data_attributes(page: HttpResponse) -> None:
    body = page.content.decode()

    assert 'data-api-base="/api/"' in body
    assert 'data-websocket-path="/ws/v1"' in body
    assert 'data-link-max-wei="100000000000000000"' in body  # CARD_LINK_MAX_WEI's default, 0.1 ETH


def test_the_operator_sets_the_most_a_link_may_carry(db: None, settings: Any) -> None:
    settings.CARD_LINK_MAX_WEI = 5 * 10**15

    body = Client().get("/card/").content.decode()

    assert 'data-link-max-wei="5000000000000000"' in body


@pytest.mark.parametrize("path", ["/redeem", "/redeem/"])
def test_the_printed_redeem_link_redirects_to_the_card_without_a_fragment_of_its_own(
    db: None, path: str
) -> None:
    response = Client().get(path)

    assert response.status_code == 302
    # No fragment in the Location: the browser keeps the link's own (#paymentId=…&secret=…).
    assert response.headers["Location"] == "/card/"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self';")


def test_the_card_bundle_is_built_for_the_node_to_serve() -> None:
    if not finders.find("card/build/card.js"):
        subprocess.run(["make", "assets"], cwd=ROOT, check=True)

    script, stylesheet = finders.find("card/build/card.js"), finders.find("card/build/card.css")
    assert script
    assert stylesheet
    assert "https://" not in Path(script).read_text().replace("https://github.com", "")


def test_the_page_code_passes_its_unit_tests_in_node() -> None:
    """Node's test runner: the vault's encryption round trip and refusals, parseScanned, the QR."""
    result = subprocess.run(
        ["node", "--test", "card/assets/test/"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_dapp_page_has_only_its_own_bundle_and_the_same_headers(db: None) -> None:
    response = Client().get("/card/dapp/")
    markup = Markup()
    markup.feed(response.content.decode())

    assert response.status_code == 200
    assert markup.scripts == [{"src": "/static/card/build/dapp.js", "defer": None}]
    assert markup.stylesheets == ["/static/card/build/dapp.css"]
    assert markup.inline == []
    assert 'data-config-url="/api/config"' in response.content.decode()
    assert {name: response.headers.get(name) for name in HEADERS} == HEADERS


@pytest.mark.parametrize(
    ("published", "allowed"),
    [
        ("http://127.0.0.1:8545", " http://127.0.0.1:8545"),
        ("https://user:secret@Chain.Example:8443/rpc/v1?key=x", " https://chain.example:8443"),
        ("wss://chain.example/ws", ""),  # the provider speaks HTTP: nothing to allow
        (None, ""),
    ],
)
def test_the_policy_allows_exactly_the_origin_of_the_published_chain_rpc(
    db: None, settings: Any, published: str | None, allowed: str
) -> None:
    """The card's provider calls the chain RPC the node publishes (GET /api/config) from the page."""
    settings.PUBLIC_CHAIN_RPC_URL = published

    for path in ("/card/", "/card/dapp/"):
        policy = Client().get(path).headers["Content-Security-Policy"]
        assert f"; connect-src 'self' ws://testserver{allowed}; img-src" in policy
