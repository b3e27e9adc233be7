"""The scale-out tests again with the update engine on (UPDATE_ENGINE, issue #21): both processes'
engines share the shards behind the proxy, and when one process is killed under payments its shards
move to the survivor's engine, whose owner carries its channels on from what was committed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from channels_app.engine.shard_writer import SHARDS, shard_of
from channels_app.models import ShardOwner
from connext import ETH, Client
from tests.deploy import test_scale_out
from tests.deploy.test_scale_out import (  # noqa: F401  the same tests and fixtures
    METRICS_TOKEN,
    MILLI,
    WAIT,
    clients,
    connected_client,
    fund,
    metric,
    proxy,
    w3,
)
from tests.integration.conftest import LiveNode
from tests.support import client_wallets
from tests.support.engine import engine_requests, reached_at, shards_held, socket_forwards
from tests.support.processes import ManagedProcess, NodeProcess, wait_until
from tests.support.proxy import NginxProcess

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, Any]:
    return {
        "TRUSTED_PROXY_COUNT": "1",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": None,
        "UPDATE_ENGINE": "true",
    }


@pytest.fixture
def the_survivor_owns_every_shard(live_node: LiveNode, django_db_blocker: Any) -> Iterator[None]:
    """After the kill, the surviving process's engine holds every shard (the victim's locks went with
    its sessions; restarted, it has no socket and so no engine) and it served payments, failing none
    over to the row-lock path."""
    yield
    survivor = live_node.nodes[1]
    assert engine_requests(survivor, outcome="answered") > 0
    assert engine_requests(survivor, reason="failed") == 0
    with django_db_blocker.unblock():
        wait_until(lambda: shards_held() == [SHARDS], timeout=30, what="every shard on the survivor's engine")


@pytest.mark.usefixtures("the_survivor_owns_every_shard")
def test_a_node_process_killed_under_payments_hands_its_clients_to_the_other_and_nothing_is_lost_or_paid_twice(
    live_node,
    proxy,  # noqa: F811  the fixtures imported above
    w3,  # noqa: F811
    clients,  # noqa: F811
    tmp_path,
):
    """The scale-out kill test, served by the engines (test_scale_out)."""
    test_scale_out.test_a_node_process_killed_under_payments_hands_its_clients_to_the_other_and_nothing_is_lost_or_paid_twice(
        live_node, proxy, w3, clients, tmp_path
    )


def test_behind_the_proxy_each_socket_moves_to_its_owners_route_and_none_of_its_requests_is_forwarded(
    live_node,
    w3,  # noqa: F811  the fixtures imported above
    clients,  # noqa: F811
    tmp_path,
    django_db_blocker,
):
    """Two more node processes join, each saying its socket is reached by name through the proxy
    (NODE_SOCKET_URL=/ws/v1/<name>, CONNEXT_PROCESS_UPSTREAMS). Users connecting to the proxy land
    wherever nginx sends them; one whose shard the other process owns is told that process's route
    and moves there. Two such users, one of each process, pay each other with none of their requests
    forwarded between processes."""
    names = ("one", "two")
    joined = {
        name: NodeProcess(env=live_node.env, log_path=tmp_path / f"daphne-{name}.log") for name in names
    }
    for name, node in joined.items():
        node.env["NODE_SOCKET_URL"] = f"/ws/v1/{name}"
    (tmp_path / "static").mkdir()
    nginx = NginxProcess(
        directory=tmp_path / "nginx",
        upstreams=[f"127.0.0.1:{node.port}" for node in joined.values()],
        static_root=tmp_path / "static",
        processes={name: f"127.0.0.1:{node.port}" for name, node in joined.items()},
    )
    started: list[ManagedProcess] = []
    try:
        for process in [*joined.values(), nginx]:
            process.start()
            started.append(process)
        for node in joined.values():
            node.wait_serving()
        for node in joined.values():  # a login on each starts its engine
            key = "0x" + secrets.token_hex(32)
            Client.connect(node.url, key, chain_rpc_url=live_node.chain_url).close()
        with django_db_blocker.unblock():
            owners = {reached_at(node): name for name, node in joined.items()}

            def shared() -> bool:  # with the survivor's engine too, when the test before ran
                held = shards_held()
                recorded = set(ShardOwner.objects.values_list("channel", flat=True))
                return sum(held) == SHARDS and max(held) - min(held) <= 2 and set(owners) <= recorded

            wait_until(shared, timeout=30, what="the shards shared fairly by the engines")
            users: dict[str, Client] = {}
            for _ in range(60):  # about half land on the process not owning them
                user = connected_client(nginx, w3, clients, tmp_path)
                owner = ShardOwner.objects.filter(shard=shard_of(user.address)).values_list(
                    "channel", flat=True
                )
                name = owners.get(owner.first())
                home = user.async_client.api.socket_home
                if name is not None and name not in users and home:
                    assert home == f"{nginx.ws_url}/{name}"
                    users[name] = user
                    if len(users) == len(names):
                        break
                else:
                    clients.remove(user)
                    user.close()
            else:
                raise AssertionError(f"not a socket of each process's users moved: {users}")
        wait_until(
            lambda: [metric(node, "connext_websocket_connections") for node in joined.values()] == [1, 1],
            timeout=WAIT,
            what="each user's socket on its owner",
        )
        one, two = users["one"], users["two"]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda user: fund(user, 10 * MILLI), (one, two)))
        forwarded = [socket_forwards(node) for node in joined.values()]
        answered = [engine_requests(node, outcome="answered") for node in joined.values()]
        start = (one.get_free_balance(ETH)["user"], two.get_free_balance(ETH)["user"])
        to_two, to_one = one.transfer(two.address, MILLI), two.transfer(one.address, 3 * MILLI)
        assert two.wait_for_transfer(to_two, timeout=WAIT)["status"] == "completed"
        assert one.wait_for_transfer(to_one, timeout=WAIT)["status"] == "completed"
        client_wallets.settled(one, two, timeout=WAIT)  # type: ignore[arg-type]

        assert (one.get_free_balance(ETH)["user"], two.get_free_balance(ETH)["user"]) == (
            start[0] + 2 * MILLI,
            start[1] - 2 * MILLI,
        )
        assert [socket_forwards(node) for node in joined.values()] == forwarded
        assert all(
            engine_requests(node, outcome="answered") > before
            for node, before in zip(joined.values(), answered, strict=True)
        )
    finally:
        for client in clients:
            client.close()
        clients.clear()
        for process in reversed(started):
            process.stop()
