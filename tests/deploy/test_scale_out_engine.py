"""The scale-out tests again with the update engine on (UPDATE_ENGINE, issue #21): both processes'
engines share the shards behind the proxy, and when one process is killed under payments its shards
move to the survivor's engine, whose owner carries its channels on from what was committed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from channels_app.engine.shard_writer import SHARDS
from tests.deploy.test_scale_out import (  # noqa: F401  the same tests and fixtures
    METRICS_TOKEN,
    clients,
    proxy,
    test_a_node_process_killed_under_payments_hands_its_clients_to_the_other_and_nothing_is_lost_or_paid_twice,
    w3,
)
from tests.integration.conftest import LiveNode
from tests.support import processes
from tests.support.engine import shards_held
from tests.support.processes import wait_until

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, Any]:
    return {
        "TRUSTED_PROXY_COUNT": "1",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": None,
        "UPDATE_ENGINE": "true",
    }


@pytest.fixture(autouse=True)
def the_survivor_owns_every_shard(live_node: LiveNode, django_db_blocker: Any) -> Iterator[None]:
    """After the kill, the surviving process's engine holds every shard (the victim's locks went with
    its sessions; restarted, it has no socket and so no engine) and it served payments, failing none
    over to the row-lock path."""
    yield
    survivor = live_node.nodes[1]

    def count(**labels: str) -> float:
        return processes.metric(survivor.url, METRICS_TOKEN, "connext_engine_requests_total", **labels)

    assert count(outcome="answered") > 0
    assert count(reason="failed") == 0
    with django_db_blocker.unblock():
        wait_until(lambda: shards_held() == [SHARDS], timeout=30, what="every shard on the survivor's engine")
