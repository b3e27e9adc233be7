"""One deployment of every contract per test session; each test runs in a chain snapshot (`chain`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connext.chain import devchain
from tests.contracts.net import Net, deploy_net


@pytest.fixture(scope="session")
def session_net(anvil_url: str) -> Net:
    return deploy_net(anvil_url)


@pytest.fixture
def net(session_net: Net, chain: str) -> Iterator[Net]:
    """The deployed contracts, with the chain reverted after the test (and the gas ledger reset)."""
    session_net.reset_ledger()
    yield session_net
    session_net.reset_ledger()


@pytest.fixture
def advance(net: Net):
    def move(seconds: int) -> None:
        devchain.increase_time(net.url, seconds)

    return move
