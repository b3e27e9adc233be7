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


# -- the card's JavaScript client against a live node (Node's test runner) ------------------------------

NODE_TEST_TIMEOUT_SECONDS = 240


def node_logs(node: NodeProcess, tail: int = 4000) -> str:
    """The ends of the daphne and Celery logs (a module's node keeps them side by side)."""
    return "\n".join(
        f"--- {path.name} (its end) ---\n{path.read_text(errors='replace')[-tail:]}"
        for path in (node.log_path, node.log_path.with_name("celery.log"))
        if path.exists()
    )


def run_live_js_tests(folder: str, node: NodeProcess, env: dict[str, str]) -> None:
    """`node --test` on `folder` with the node's URL and `env`; none may fail or be skipped (a missing
    variable or WebSocket fails the run: CARD_LIVE_REQUIRED)."""
    import os
    import shutil

    node_binary = shutil.which("node")
    assert node_binary, "the live card tests need Node 20 (`node` on PATH)"
    try:
        result = subprocess.run(
            [node_binary, "--experimental-websocket", "--test", "--test-reporter=spec", folder],
            cwd=ROOT,
            env={**os.environ, "NODE_URL": node.url, "CARD_LIVE_REQUIRED": "1", **env},
            capture_output=True,
            text=True,
            timeout=NODE_TEST_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the live tests in {folder} ran over {NODE_TEST_TIMEOUT_SECONDS}s:\n{exc.output}\n{node_logs(node)}"
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"the live tests in {folder} failed (exit {result.returncode}):\n{output}\n{node_logs(node)}"
    )
    assert "skipped 0" in output, f"some live tests in {folder} were skipped:\n{output}"
