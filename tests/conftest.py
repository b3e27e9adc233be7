"""Fixtures shared by the whole suite: the anvil chain, one per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from connext.chain import devchain
from tests.support.card_browser import CHROMIUM


@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """RPC URL of an anvil chain started for this test session on a free port."""
    log_path = tmp_path_factory.mktemp("anvil") / "anvil.log"
    chain = devchain.Anvil(log_path=log_path)
    chain.start()
    try:
        yield chain.url
    finally:
        chain.stop()


@pytest.fixture
def chain(anvil_url: str) -> Iterator[str]:
    """The session's anvil, reverted after the test to the state it had before (isolation)."""
    snapshot_id = devchain.snapshot(anvil_url)
    try:
        yield anvil_url
    finally:
        devchain.revert(anvil_url, snapshot_id)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the builds the selected tests need (tests.support.background), so their installs overlap
    the tests that run first."""
    from tests.support import background

    wanted = {
        name for item in session.items for name in background.wanted_by(getattr(item, "fixturenames", []))
    }
    for name in sorted(wanted):
        background.start(name)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.support import background

    background.stop_all()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start from an empty Redis database: no heartbeat, group or queue left by an earlier run."""
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushdb()
        finally:
            client.close()


@pytest.fixture(scope="session")
def deployments(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Our contracts (and the TestToken) on the session's anvil, recorded in an address book file.

    The returned dict has the contract addresses plus `book`, the file's path. Deployed once per
    session, before any test's snapshot, so per-test reverts keep them.
    """
    from eth_account import Account
    from web3 import HTTPProvider, Web3

    from connext.chain.deploy import deploy

    book = tmp_path_factory.mktemp("deployments") / "deployments.json"
    addresses = deploy(
        Web3(HTTPProvider(anvil_url)), Account.from_key(devchain.DEV_PRIVATE_KEYS[0]), book, test_token=True
    )
    return {**addresses, "book": str(book)}


# -- browsers (Playwright driving Debian's chromium; it never downloads one) -------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the tests' (and pytest-django's) ORM
    # calls here are still synchronous ones, made between the browser's steps.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as instance:
            yield instance
            # Opened while Playwright's loop ran on this thread, so kept in a context variable by
            # Django (asgiref's thread-critical local): closed here, or they keep the test database.
            from django.db import connections

            connections.close_all()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
        yield chromium
    finally:
        chromium.close()
