"""The card's JavaScript client (`card/js/client`) against a live node: daphne and a Celery worker (with
beat) on Postgres, Redis and the session's anvil, driven by Node's test runner
(`card/js/test/live/`), which must pass as a whole."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from connext.chain import devchain
from tests.support.processes import NodeProcess

# Not transactional: the node's records must outlive the test (the fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[8]
NODE_TEST_TIMEOUT_SECONDS = 240


def node_logs(node: NodeProcess, tail: int = 4000) -> str:
    """The ends of the daphne and Celery logs (the conftest's node keeps them side by side)."""
    return "\n".join(
        f"--- {path.name} (its end) ---\n{path.read_text(errors='replace')[-tail:]}"
        for path in (node.log_path, node.log_path.with_name("celery.log"))
        if path.exists()
    )


def test_the_js_client_passes_its_live_tests_against_a_real_node(node: NodeProcess, anvil_url: str) -> None:
    node_binary = shutil.which("node")
    assert node_binary, "the live card tests need Node 20 (`node` on PATH)"
    env = {
        **os.environ,
        "NODE_URL": node.url,
        "CHAIN_RPC_URL": anvil_url,
        "FUNDER_KEY": FUNDER_KEY,
        "CARD_LIVE_REQUIRED": "1",  # a missing variable or WebSocket fails the run, never skips it
    }
    try:
        result = subprocess.run(
            [node_binary, "--experimental-websocket", "--test", "--test-reporter=spec", "card/js/test/live/"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TEST_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"node's live card tests ran over {NODE_TEST_TIMEOUT_SECONDS}s:\n{exc.output}\n{node_logs(node)}"
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"node's live card tests failed (exit {result.returncode}):\n{output}\n{node_logs(node)}"
    )
    assert "skipped 0" in output, f"some live card tests were skipped:\n{output}"
