"""The client's payment tests again, with the node's socket updates served by the update engine
(UPDATE_ENGINE on; issue #21): the two node processes' engines share the shards, half each, so a
payment's two channels are often owned by different processes. A request for another process's
shard, and every step the router leaves to the row-lock path, go that way beside the owner, on the
same channels. The payments must complete and conserve exactly as on the row-lock path alone."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_account import Account

from channels_app.engine.shard_writer import SHARDS, shard_of
from channels_app.models import ShardOwner
from connext import Client
from tests.integration.conftest import LiveNode
from tests.integration.test_client_payments import (  # noqa: F401  the same tests and fixtures
    HASHLOCK_WINDOW,
    MILLI,
    collateralized,
    connect,
    new_key,
    send_eth,
    settled,
    test_200_concurrent_payments_between_10_clients_on_two_node_processes_lose_nothing,
    test_a_payment_to_an_offline_receiver_is_delivered_and_unlocked_when_it_comes_back,
    test_every_definition_is_routed_through_the_node_and_resolved,
    test_wrong_resolvers_expired_locks_and_overdrafts_are_refused_and_nothing_moves,
    w3,
    wallets,
)
from tests.support.engine import engine_requests, reached_at, shards_held, socket_forwards
from tests.support.processes import NodeProcess, wait_until

METRICS_TOKEN = "engine-payments-test-metrics-token-" + "x" * 16

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, Any]:
    # Each process reports only its own live metrics: the engine's counts are read from both.
    return {
        "HASHLOCK_MIN_WINDOW_SECONDS": str(HASHLOCK_WINDOW),
        "UPDATE_ENGINE": "true",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": None,
    }


@pytest.fixture(scope="module")
def live_node_socket_homes() -> tuple[int, ...]:
    # The first process says where its socket is reached; the second does not: a socket landing on
    # the wrong process moves to the first, stays on the second and has its requests forwarded.
    return (0,)


def served(live_node: LiveNode, **labels: str) -> float:
    return sum(engine_requests(node, **labels) for node in live_node.nodes)


@pytest.fixture(autouse=True)
def served_by_the_engine(live_node: LiveNode, django_db_blocker: Any) -> Iterator[None]:
    """Each test's payments are served by the engine, not only beside it: the engine answers some of
    its requests itself, and fails none of them over to the row-lock path. Once both processes'
    engines run (each starts at its first socket request), they hold half the shards each."""
    answered = served(live_node, outcome="answered")
    yield
    assert served(live_node, outcome="answered") > answered, "the engine answered nothing"
    assert served(live_node, reason="failed") == 0, live_node.logs()
    engines = sum(1 for node in live_node.nodes if engine_requests(node) > 0)
    with django_db_blocker.unblock():
        split = wait_until(
            lambda: (held := shards_held()) == [SHARDS // engines] * engines and held,
            timeout=30,
            what=f"the shards shared by {engines} engines",
        )
    assert sum(split) == SHARDS


def both_engines_sharing(live_node: LiveNode, opened: list[Any], web3: Any) -> None:
    """Both processes' engines running (each starts at a login), half the shards each, every
    shard's owner recorded."""
    for node in range(2):
        connect(live_node, opened, new_key(web3), node=node).get_channel()
    wait_until(
        lambda: shards_held() == [SHARDS // 2] * 2 and ShardOwner.objects.count() == SHARDS,
        timeout=30,
        what="the shards shared by 2 engines, each shard's owner recorded",
    )


def funded_key(web3: Any, wanted: Callable[[int], bool], what: str) -> str:
    """A fresh key, funded, whose address's shard is `wanted`."""
    for _ in range(50 * SHARDS):
        key = "0x" + secrets.token_hex(32)
        address = Account.from_key(key).address
        if wanted(shard_of(address)):
            send_eth(web3, address, 10**17)
            return key
    raise AssertionError(f"no key found {what}")


def key_owned_elsewhere(web3: Any, node: NodeProcess) -> str:
    """A fresh funded key whose shard the other process's engine owns."""
    elsewhere = set(ShardOwner.objects.exclude(channel=reached_at(node)).values_list("shard", flat=True))
    return funded_key(web3, lambda shard: shard in elsewhere, "owned by the other process's engine")


def test_a_socket_on_a_process_not_owning_its_users_shard_moves_to_the_owner_or_is_forwarded_there(
    live_node,
    wallets,  # noqa: F811  the fixtures imported above
    w3,  # noqa: F811
):
    """Alice's socket lands on one process and Bob's on the other, each user's shard owned by the
    other process's engine. Bob's owner says where its socket is reached: his socket moves there and
    none of his requests is forwarded. Alice's owner does not: her socket stays and every request of
    hers is forwarded to her owner and served there. The router's steps on the other's channel (the
    forward into Bob's, the settlement of Alice's) are asked of that channel's owner and taken there,
    none of it falls back to the row-lock path for want of an owner, and the payment completes."""
    both_engines_sharing(live_node, wallets, w3)
    nodes = live_node.nodes
    before = [forwards(node) for node in nodes]
    socket_forwards_before = [socket_forwards(node) for node in nodes]
    steps_before = steps(live_node)
    alice = connect(live_node, wallets, key_owned_elsewhere(w3, nodes[0]), node=0)
    bob = connect(live_node, wallets, key_owned_elsewhere(w3, nodes[1]), node=1)
    alice.deposit(10 * MILLI)
    collateralized(alice)
    collateralized(bob)
    settled(alice, bob)
    start = (alice.balance, bob.balance)

    payment_id = alice.transfer(bob.address, 2 * MILLI)
    assert bob.wait_for_transfer(payment_id, timeout=60)["status"] == "completed"
    settled(alice, bob)

    assert (alice.balance, bob.balance) == (start[0] - 2 * MILLI, start[1] + 2 * MILLI)
    assert alice.client.async_client.api.socket_home == ""
    assert bob.client.async_client.api.socket_home == f"ws://127.0.0.1:{nodes[0].port}/ws/v1"
    for (forwarded, lost), (forwarded_after, lost_after) in zip(before, map(forwards, nodes), strict=True):
        assert forwarded_after > forwarded  # each process forwarded requests or steps
        assert lost_after == lost  # and found each owner, which answered in time
    after = [socket_forwards(node) for node in nodes]
    assert after[0] > socket_forwards_before[0]  # Alice's requests
    assert after[1] == socket_forwards_before[1]  # none of Bob's: his socket is on his owner
    taken = {step: count - steps_before[step] for step, count in steps(live_node).items()}
    assert taken == {"forward": 1, "settle": 1, "not taken": 0}


def test_a_socket_moves_once_its_users_shard_moves_to_a_process_that_joined_and_back_when_that_process_stops(
    live_node,
    wallets,  # noqa: F811  the fixtures imported above
    w3,  # noqa: F811
    tmp_path,
):
    """Carol's socket is on the second process, whose engine owns her shard and says nothing of where
    its socket is reached. A third process joins (its engine saying where): the engines share the
    shards anew and the second gives Carol's shard to the third. Her next request is forwarded
    there, and her socket is told to move and does, mid-session, so her next payment is served by
    her owner with none of it forwarded. When the third process stops, her socket falls back to the
    node's own URL and her payments carry on."""
    both_engines_sharing(live_node, wallets, w3)
    second = live_node.nodes[1]
    # The highest shard of the second engine's: the first it gives back when a third engine joins.
    given_back = max(ShardOwner.objects.filter(channel=reached_at(second)).values_list("shard", flat=True))
    carol = connect(
        live_node,
        wallets,
        funded_key(w3, lambda shard: shard == given_back, f"in shard {given_back}"),
        node=1,
    )
    dave = connect(live_node, wallets, new_key(w3), node=0)
    carol.deposit(10 * MILLI)
    collateralized(carol)
    collateralized(dave)
    assert carol.client.async_client.api.socket_home == ""  # her owner is where she is

    third = NodeProcess(env=live_node.env, log_path=tmp_path / "daphne-third.log")
    third.env["NODE_SOCKET_URL"] = third.ws_url
    third.start()
    try:
        third.wait_serving()
        # A login starts the third process's engine.
        Client.connect(third.url, new_key(w3), chain_rpc_url=live_node.chain_url).close()
        wait_until(
            lambda: ShardOwner.objects.filter(shard=given_back, channel=reached_at(third)).exists(),
            timeout=30,
            what="Carol's shard given to the third process's engine",
        )
        start = (carol.balance, dave.balance)
        forwarded = socket_forwards(second)
        first = carol.transfer(dave.address, MILLI)  # forwarded to her owner, then told to move
        assert dave.wait_for_transfer(first, timeout=60)["status"] == "completed"
        settled(carol, dave)
        assert socket_forwards(second) > forwarded
        assert carol.client.async_client.api.socket_home == third.ws_url

        forwarded = socket_forwards(second)
        answered = engine_requests(third, path="update", outcome="answered")
        moved = carol.transfer(dave.address, MILLI)
        assert dave.wait_for_transfer(moved, timeout=60)["status"] == "completed"
        settled(carol, dave)
        assert engine_requests(third, path="update", outcome="answered") > answered
        assert socket_forwards(second) == forwarded  # none of Carol's requests is forwarded now
        assert (carol.balance, dave.balance) == (start[0] - 2 * MILLI, start[1] + 2 * MILLI)
    finally:
        third.stop()

    wait_until(
        lambda: shards_held() == [SHARDS // 2] * 2,
        timeout=30,
        what="the third process's shards shared again by the first two engines",
    )
    after = carol.transfer(dave.address, MILLI)
    assert dave.wait_for_transfer(after, timeout=60)["status"] == "completed"
    settled(carol, dave)
    assert (carol.balance, dave.balance) == (start[0] - 3 * MILLI, start[1] + 3 * MILLI)
    assert carol.client.async_client.api.socket_home in ("", live_node.nodes[0].ws_url)


def steps(live_node: LiveNode) -> dict[str, float]:
    """The router's steps asked of another process's engine and taken there, and those not taken."""
    count = {step: served(live_node, path=step, outcome="forwarded") for step in ("forward", "settle")}
    count["not taken"] = sum(
        served(live_node, path=step, outcome="handed_on") for step in ("forward", "settle")
    )
    return count


def forwards(node: NodeProcess) -> tuple[float, float]:
    """The requests the process's engine forwarded and had answered, and those it forwarded to no
    owner or whose answer did not come (an owner declining a request, a deposit say, is neither)."""
    lost = sum(engine_requests(node, reason=why) for why in ("no_owner", "timeout", "not_sent"))
    return engine_requests(node, outcome="forwarded"), lost
