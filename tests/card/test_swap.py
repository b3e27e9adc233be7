"""The card's swaps against a live node offering ETH/TestToken at a fixed price (daphne and Celery on
Postgres and Redis, the session's anvil; the node's account holds TestToken): the JS client's live
swap tests (`card/js/test/live_swap/`), and the swap screen and the auto-swap of deposits in a real
browser (Debian's chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from connext.chain import devchain
from tests.card.conftest import NODE_KEY
from tests.support.client_wallets import Funder
from tests.support.processes import ROOT, NodeProcess, module_live_node

# Not transactional: the node's records must outlive each test (the node fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[8]
MILLI = 10**15
MAX_GIVE_ETH = 20 * MILLI  # the pair's maxPerSwap: the most ETH one swap gives
SWAPS = json.dumps(
    {
        "pairs": [
            {
                "base": "eth",
                "quote": "TestToken",
                "source": {"type": "fixed", "price": "2000"},
                "spreadBps": 30,
                "maxPerSwap": str(MAX_GIVE_ETH),
                "maxPerDay": str(10**18),
            }
        ]
    }
)
NODE_TEST_TIMEOUT_SECONDS = 240


@pytest.fixture(scope="module")
def node(
    node_database_url: str,
    anvil_url: str,
    deployments: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    django_db_blocker: Any,
) -> Iterator[NodeProcess]:
    """The card's live node (tests/card/conftest.py) offering swaps, its account minted TestToken to
    pay them."""
    Funder(Web3(HTTPProvider(anvil_url)), FUNDER_KEY).mint(
        deployments["TestToken"], Account.from_key(NODE_KEY).address, 10**24
    )
    subprocess.run(["make", "--quiet", "assets"], cwd=ROOT, check=True)
    with module_live_node(
        "card-swap",
        node_key=NODE_KEY,
        database_url=node_database_url,
        chain_url=anvil_url,
        deployments_book=deployments["book"],
        tmp_path_factory=tmp_path_factory,
        django_db_blocker=django_db_blocker,
        SWAPS=SWAPS,
    ) as daphne:
        yield daphne


def node_logs(node: NodeProcess, tail: int = 4000) -> str:
    return "\n".join(
        f"--- {path.name} (its end) ---\n{path.read_text(errors='replace')[-tail:]}"
        for path in (node.log_path, node.log_path.with_name("celery.log"))
        if path.exists()
    )


def test_the_js_client_swaps_against_a_real_node(
    node: NodeProcess, anvil_url: str, deployments: dict[str, str]
) -> None:
    node_binary = shutil.which("node")
    assert node_binary, "the live swap tests need Node 20 (`node` on PATH)"
    env = {
        **os.environ,
        "NODE_URL": node.url,
        "CHAIN_RPC_URL": anvil_url,
        "FUNDER_KEY": FUNDER_KEY,
        "TOKEN": deployments["TestToken"],
        "MAX_GIVE_ETH": str(MAX_GIVE_ETH),
        "CARD_LIVE_REQUIRED": "1",  # a missing variable or WebSocket fails the run, never skips it
    }
    try:
        result = subprocess.run(
            [node_binary, "--experimental-websocket", "--test", "--test-reporter=spec", "card/js/test/live_swap/"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TEST_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the live swap tests ran over {NODE_TEST_TIMEOUT_SECONDS}s:\n{exc.output}\n{node_logs(node)}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the live swap tests failed (exit {result.returncode}):\n{output}\n{node_logs(node)}"
    assert "skipped 0" in output, f"some live swap tests were skipped:\n{output}"
