"""The card's JavaScript client (`card/js/client`) against a live node: daphne and a Celery worker (with
beat) on Postgres, Redis and the session's anvil, driven by Node's test runner
(`card/js/test/live/`), which must pass as a whole."""

from __future__ import annotations

import pytest

from connext.chain import devchain
from tests.card.conftest import run_live_js_tests
from tests.support.processes import NodeProcess

# Not transactional: the node's records must outlive the test (the fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[8]


def test_the_js_client_passes_its_live_tests_against_a_real_node(node: NodeProcess, anvil_url: str) -> None:
    run_live_js_tests("card/js/test/live/", node, {"CHAIN_RPC_URL": anvil_url, "FUNDER_KEY": FUNDER_KEY})
