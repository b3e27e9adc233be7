"""The dashboard in a real browser (Playwright driving Debian's chromium) against a live node (daphne +
Celery on Postgres, Redis and anvil) after real payments made with the client SDK.

Set UPDATE_SCREENSHOT=1 to write the overview's screenshot to docs/dashboard-overview.png (README).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from web3 import HTTPProvider, Web3

from channels_app.models import Channel, Payment
from connext import ETH, Client
from connext.chain import devchain
from dashboard import selectors
from tests.integration.conftest import node_database_url  # noqa: F401 - the test database, shared
from tests.support import client_wallets
from tests.support.processes import module_live_node, wait_until

# Not transactional: a transactional test flushes the database after itself, and the node's records
# must outlive each test (the node fixture flushes them at the module's end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

NODE_KEY = devchain.DEV_PRIVATE_KEYS[2]
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[7]
PASSWORD = "browser-test-password-1"
MILLI = 10**15
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(node_database_url, anvil_url, deployments, tmp_path_factory, django_db_blocker) -> Iterator[str]:  # noqa: F811
    """One daphne and a Celery worker (with beat); payments count as stuck after one second."""
    subprocess.run(
        ["make", "--quiet", "assets"], cwd=ROOT, check=True
    )  # incremental: a stale bundle is rebuilt
    with module_live_node(
        "dashboard-browser",
        node_key=NODE_KEY,
        database_url=node_database_url,
        chain_url=anvil_url,
        deployments_book=deployments["book"],
        tmp_path_factory=tmp_path_factory,
        django_db_blocker=django_db_blocker,
        DASHBOARD_STUCK_AFTER_SECONDS="1",
    ) as daphne:
        yield daphne.url


@pytest.fixture(scope="module")
def payments(node, anvil_url, django_db_blocker) -> Iterator[dict[str, object]]:
    """Alice pays Bob twice (completed), then Carol, who opened her channel and went offline: the
    node's transfer to her waits for her countersignature (stuck: receiver offline)."""
    funder = client_wallets.Funder(Web3(HTTPProvider(anvil_url)), FUNDER_KEY)
    alice = Client.connect(node, funder.new_key(), chain_rpc_url=anvil_url)
    bob = Client.connect(node, funder.new_key(), chain_rpc_url=anvil_url)
    try:
        alice.deposit(50 * MILLI)
        completed = []
        for amount in (3 * MILLI, 2 * MILLI):
            payment_id = alice.transfer(bob.address, amount)
            wait_until(
                lambda payment_id=payment_id: alice.get_transfer(payment_id)["status"] == "completed",
                timeout=60,
                what="the payment to complete",
            )
            completed.append(payment_id)
        carol = Client.connect(node, funder.new_key(), chain_rpc_url=anvil_url)
        carol.close()
        stuck = alice.transfer(carol.address, MILLI)
        with django_db_blocker.unblock():
            User.objects.create_user("operator", password=PASSWORD, is_staff=True)
        yield {"alice": alice, "bob": bob, "completed": completed, "stuck": stuck}
    finally:
        alice.close()
        bob.close()


@pytest.fixture
def page(node, payments, browser):  # the browser last: it stops before the node's teardown
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{node}/dashboard/")
    assert "/dashboard/login/" in page.url
    page.fill("input[name=username]", "operator")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{node}/dashboard/")
    yield page
    context.close()


def test_the_overview_shows_the_databases_numbers_and_draws_its_charts(page, django_db_blocker):
    with django_db_blocker.unblock():
        statuses = selectors.channels_by_status()
        (value,) = selectors.value_locked()
        windows = {
            (w.window, w.asset_id): w
            for w in selectors.payment_windows(now=Payment.objects.latest("created_at").created_at)
        }

    assert page.inner_text("#channels-by-status td[data-status=open]") == str(statuses["open"])
    row = page.locator(f'#value-locked tr[data-asset="{ETH}"] td[data-wei]')
    assert [int(cell) for cell in row.evaluate_all("cells => cells.map(c => c.dataset.wei)")] == [
        value.on_chain,
        value.off_chain,
        value.node,
        value.users,
        value.locked,
    ]
    hour = page.locator(f'#payment-windows tr[data-window=hour][data-asset="{ETH}"] td.count')
    assert int(hour.inner_text()) == windows[("hour", ETH)].count == 3
    page.wait_for_selector("#charts[data-state=drawn]", timeout=20_000)
    canvases = page.locator("#charts canvas")
    assert canvases.count() == 3
    drawn = canvases.evaluate_all(
        """canvases => canvases.map(canvas => {
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
            return inked;
        })"""
    )
    assert all(inked > 100 for inked in drawn), drawn
    page.click("#window-picker a[data-window='30d']")
    page.wait_for_selector("#charts[data-window='30d'][data-state=drawn]", timeout=20_000)
    shot = ROOT / "docs" / "dashboard-overview.png" if os.environ.get("UPDATE_SCREENSHOT") else None
    page.screenshot(path=str(shot or ROOT / "var" / "dashboard-overview.png"), full_page=True)


def test_search_finds_a_channel_and_shows_its_signed_state(page, payments, django_db_blocker):
    bob = payments["bob"]
    page.click("nav >> text=Channels")
    page.fill("input[name=q]", bob.address)
    page.click("form.filters button[type=submit]")
    links = page.locator("#channels tbody a")
    assert links.count() == 1
    links.first.click()

    with django_db_blocker.unblock():
        channel = Channel.objects.get(user_address=bob.address)
    assert page.inner_text("#channel-address") == channel.address
    assert page.inner_text("#node-signature") == channel.node_signature
    assert page.inner_text("#user-signature") == channel.user_signature
    assert f'"nonce": "{channel.nonce}"' in page.inner_text("#latest-state")


def test_filters_narrow_the_payments_and_the_csv_downloads(page, payments):
    page.click("nav >> text=Payments")
    every = page.locator("#payments tbody tr[data-payment-id]").count()
    page.select_option("select[name=status]", "completed")
    page.click("form.filters button[type=submit]")
    shown = page.locator("#payments tbody tr[data-payment-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.paymentId)"
    )
    with page.expect_download() as download:
        page.click("#export-payments")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))

    assert every == 3
    assert sorted(shown) == sorted(payments["completed"])
    assert sorted(row["payment_id"] for row in rows) == sorted(payments["completed"])
    assert {row["status"] for row in rows} == {"completed"}


def test_the_stuck_list_shows_the_payment_to_an_offline_receiver(page, payments):
    def listed() -> bool:
        page.goto(page.url.split("/dashboard/")[0] + "/dashboard/payments/stuck/")
        return page.locator(f'#stuck tr[data-payment-id="{payments["stuck"]}"]').count() == 1

    wait_until(listed, timeout=30, what="the payment listed as stuck", interval=0.5)
    reason = page.inner_text(f'#stuck tr[data-payment-id="{payments["stuck"]}"] td.reason')
    assert reason.startswith("receiver offline")
