"""A live node for the card's browser tests (daphne and a Celery worker on the test database, the
session's anvil and contracts; the chain RPC published to the pages), and browsers to open cards in."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connext.chain import devchain
from tests.integration.conftest import node_database_url  # noqa: F401 - the test database, shared
from tests.support.card_browser import Card, open_card
from tests.support.processes import ROOT, NodeProcess, module_live_node

NODE_KEY = devchain.DEV_PRIVATE_KEYS[2]


@pytest.fixture(scope="module")
def node(
    node_database_url: str,  # noqa: F811
    anvil_url: str,
    deployments: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    django_db_blocker: Any,
) -> Iterator[NodeProcess]:
    """The node the cards talk to. Its records outlive each test (they are the node's, written by
    its processes); the module's end flushes them."""
    subprocess.run(
        ["make", "--quiet", "assets"], cwd=ROOT, check=True
    )  # incremental: a stale bundle is rebuilt
    with module_live_node(
        "card",
        node_key=NODE_KEY,
        database_url=node_database_url,
        chain_url=anvil_url,
        deployments_book=deployments["book"],
        tmp_path_factory=tmp_path_factory,
        django_db_blocker=django_db_blocker,
    ) as daphne:
        yield daphne


@pytest.fixture
def new_card(node: NodeProcess, browser: Any) -> Iterator[Callable[[], Card]]:
    """Opens cards, each in a browser context of its own (a device); all closed after the test."""
    contexts: list[Any] = []
    yield lambda: open_card(browser, node.url, contexts)
    for context in contexts:
        context.close()
