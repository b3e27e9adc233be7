"""The crash tests of the payment path again with the update engine serving it (issue #21): the process
that dies at each point, and the one that takes its port after, run the engine (UPDATE_ENGINE on) as
the only engine on the database, so it owns every shard and the point is reached on its path: after
the commit of a user's request and before its answer, and after the commit of the node's proposal
and before its push (`crash_points`, reached in `engine.process` and `ChannelOwner.propose`). The
live node's own two processes serve the row-lock way beside it. After the restart the new engine
takes the shards the dead one's session released, reads what it committed, and the payment
completes once, no signed state lost and none doubled at a nonce."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channels_app.engine.shard_writer import SHARDS
from tests.integration.conftest import LiveNode
from tests.integration.test_client_payments import (  # noqa: F401  the same test and fixtures
    HASHLOCK_WINDOW,
    test_a_node_killed_on_the_payment_path_loses_no_signed_state_and_the_payment_completes,
    w3,
    wallets,
)

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, str]:
    return {"HASHLOCK_MIN_WINDOW_SECONDS": str(HASHLOCK_WINDOW)}


@pytest.fixture(scope="module")
def live_node(live_node: LiveNode) -> Any:  # the original: its processes run without the engine
    """The live node, as the test sees it: the processes it starts itself (the one that crashes and the
    one that takes its place) run the engine."""
    return dataclasses.replace(live_node, env={**live_node.env, "UPDATE_ENGINE": "true"})


@pytest.fixture(autouse=True)
def crashed_on_the_engines_path(tmp_path: Path) -> Iterator[None]:
    """The process died at its point with its engine owning every shard (the row-lock path has the
    same points: without this the test would pass with the engine serving nothing)."""
    yield
    log = (tmp_path / "crashing.log").read_text()
    started = log.find(f"update engine started, owning {SHARDS} of {SHARDS} shards")
    crashed = log.find("test crash point")
    assert 0 <= started < crashed, log[-4000:]
