"""Scale-out behind the proxy: nginx (proxy/nginx.conf.template) in front of two daphne processes, a
Celery worker with beat, Postgres, Redis and anvil, all real. Clients reach the node only through
nginx, over HTTP and the websocket.

Which process holds a socket is read from each process's own /metrics (scraped directly, as Prometheus
does, with the metrics token; no PROMETHEUS_MULTIPROC_DIR, so each process counts only its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from channels_app.models import Channel, Payment
from connext import ETH, Client
from connext.errors import NodeError, NodeUnavailableError, OutcomeUnknownError
from connext.protocol import serialization
from tests.integration.conftest import LiveNode
from tests.support import client_wallets, processes
from tests.support.conservation import assert_offchain_conserved
from tests.support.processes import NodeProcess, wait_until
from tests.support.proxy import NginxProcess, collect_static

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

logger = logging.getLogger(__name__)
METRICS_TOKEN = "scale-out-test-metrics-token-" + "x" * 16
MILLI = 10**15
WAIT = 90.0


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, Any]:
    # Behind one proxy; each process reports only its own live metrics.
    return {"TRUSTED_PROXY_COUNT": "1", "METRICS_TOKEN": METRICS_TOKEN, "PROMETHEUS_MULTIPROC_DIR": None}


@pytest.fixture(scope="module")
def proxy(live_node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProcess]:
    directory = tmp_path_factory.mktemp("proxy")
    static_root = collect_static(directory / "var", live_node.env)
    nginx = NginxProcess(
        directory=directory / "nginx",
        upstreams=[f"127.0.0.1:{node.port}" for node in live_node.nodes],
        static_root=static_root,
    )
    nginx.start()
    try:
        yield nginx
    finally:
        nginx.stop()


@pytest.fixture(scope="module")
def w3(live_node: LiveNode) -> Web3:
    return Web3(HTTPProvider(live_node.chain_url))


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


def metric(node: NodeProcess, name: str) -> float:
    """The sum of `name`'s samples in the process's own /metrics."""
    return processes.metric(node.url, METRICS_TOKEN, name)


def sockets(live_node: LiveNode) -> list[int]:
    return [int(metric(node, "connext_websocket_connections")) for node in live_node.nodes]


def no_sockets_left(live_node: LiveNode) -> None:
    """Until the sockets of the clients an earlier test closed are closed on the node's side too."""
    wait_until(lambda: sockets(live_node) == [0, 0], timeout=WAIT, what="no socket left open")


def connected_client(proxy: NginxProcess, w3: Web3, clients: list[Client], tmp_path: Path) -> Client:
    """A fresh user's client connected through the proxy (its channel open, its socket up)."""
    key = "0x" + secrets.token_hex(32)
    address = w3.eth.account.from_key(key).address
    w3.provider.make_request("anvil_setBalance", [address, hex(10**18)])  # type: ignore[arg-type]
    client = Client.connect(
        proxy.url,
        key,
        chain_rpc_url=str(w3.provider.endpoint_uri),
        store_path=str(tmp_path / f"{address}.db"),
    )
    clients.append(client)
    return client


def fund(client: Client, deposit: int) -> Client:
    """`deposit` credited in the client's channel and the node's collateral in place."""
    client.deposit(deposit)
    client.request_collateral(ETH)
    wait_until(lambda: client.get_free_balance(ETH)["node"] > 0, timeout=WAIT, what="the node's collateral")
    return client


def connected_one_by_one(
    proxy: NginxProcess, w3: Web3, clients: list[Client], tmp_path: Path, count: int
) -> list[Client]:
    """`count` clients connected one after the other, nothing else under way: nginx's least_conn then
    opens each socket on the process holding fewer, so they alternate between the two."""
    return [connected_client(proxy, w3, clients, tmp_path) for _ in range(count)]


def test_the_proxy_spreads_clients_over_both_node_processes_and_they_pay_each_other(
    live_node, proxy, w3, clients, tmp_path
):
    no_sockets_left(live_node)
    requests_before = [
        metric(node, "django_http_requests_before_middlewares_total") for node in live_node.nodes
    ]
    alice, bob = connected_one_by_one(proxy, w3, clients, tmp_path, 2)

    # Both sockets are open on the node's side, one on each process (nginx's least_conn).
    wait_until(lambda: sum(sockets(live_node)) == 2, timeout=WAIT, what="both sockets open")
    assert sockets(live_node) == [1, 1]
    # And the REST requests reached both processes too.
    requests_after = [
        metric(node, "django_http_requests_before_middlewares_total") for node in live_node.nodes
    ]
    assert all(after > before for after, before in zip(requests_after, requests_before, strict=True))

    fund(alice, 10 * MILLI)
    fund(bob, 10 * MILLI)
    to_bob = alice.transfer(bob.address, 3 * MILLI)
    to_alice = bob.transfer(alice.address, MILLI)
    assert alice.wait_for_transfer(to_bob, timeout=WAIT)["status"] == "completed"
    assert bob.wait_for_transfer(to_alice, timeout=WAIT)["status"] == "completed"
    wait_until(
        lambda: (
            (alice.get_free_balance(ETH)["user"], bob.get_free_balance(ETH)["user"])
            == (8 * MILLI, 12 * MILLI)
        ),
        timeout=WAIT,
        what="both balances",
    )


def test_a_node_process_killed_under_payments_hands_its_clients_to_the_other_and_nothing_is_lost_or_paid_twice(
    live_node, proxy, w3, clients, tmp_path
):
    no_sockets_left(live_node)
    users = connected_one_by_one(proxy, w3, clients, tmp_path, 4)
    wait_until(lambda: sockets(live_node) == [2, 2], timeout=WAIT, what="two sockets on each process")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda user: fund(user, 10 * MILLI), users))
    start = {u.address: u.get_free_balance(ETH)["user"] for u in users}
    # Every payment's id is chosen before it is sent: a call whose outcome the node's death left
    # unknown is sent again with it (the client pays an id once), as an application would.
    plan = [
        (sender, (sender + 1 + n % 3) % 4, (n + 1) * 10**12, "0x" + secrets.token_hex(32))
        for n in range(10)
        for sender in range(4)
    ]
    completed = threading.Semaphore(0)
    noted = threading.Lock()  # the clients' loops (one thread each) write, the test reads
    started: set[str] = set()
    outcomes: dict[str, str] = {}
    retries: list[str] = []

    async def pay(sender: int, recipient: int, amount: int, payment_id: str) -> None:
        client = users[sender].async_client
        deadline = time.monotonic() + WAIT
        with noted:
            started.add(payment_id)
        while True:
            try:
                await client.transfer(users[recipient].address, amount, payment_id=payment_id)
                break
            except (OutcomeUnknownError, NodeUnavailableError) as exc:
                if time.monotonic() > deadline:
                    raise
                with noted:
                    retries.append(f"{payment_id[:10]} {exc!r}"[:160])
                # Again once the client is back in sync with a node (its socket moved to the other
                # process); one that synced before this wait began is tried again after the timeout.
                with contextlib.suppress(TimeoutError):
                    await client.wait_for("channel.synced", timeout=5)
            except NodeError as exc:  # refused: nothing was paid
                with noted:
                    outcomes[payment_id] = f"refused {exc.code}"
                return
        status = (await client.wait_for_transfer(payment_id, timeout=WAIT))["status"]
        with noted:
            outcomes[payment_id] = status
        completed.release()

    async def send_all(sender: int) -> None:
        mine = [p for p in plan if p[0] == sender]
        for first in range(0, len(mine), 2):  # two payments in flight per sender
            await asyncio.gather(*(pay(*p) for p in mine[first : first + 2]))

    futures = [
        asyncio.run_coroutine_threadsafe(send_all(index), user._loop) for index, user in enumerate(users)
    ]
    for _ in range(6):
        assert completed.acquire(timeout=WAIT), "payments before the kill"
    victim, survivor = live_node.nodes
    assert victim.stop(signal.SIGKILL) == -signal.SIGKILL
    with noted:
        in_flight = started - set(outcomes)
    assert in_flight, "payments under way when the node process died"
    # The victim's clients reconnect through nginx, which sends them to the survivor.
    wait_until(
        lambda: metric(survivor, "connext_websocket_connections") == 4,
        timeout=WAIT,
        what="every client's socket on the surviving process",
    )
    for future in futures:
        future.result(timeout=WAIT * 2)
    victim.start()
    victim.wait_serving()

    logger.info(
        "killed with %d payments in flight; %d calls sent again; outcomes %s",
        len(in_flight),
        len(retries),
        Counter(outcomes.values()),
    )
    # Every payment completed exactly once, or was refused or refunded (nothing moved); none is open.
    assert len(outcomes) == len(plan)
    assert all(o in ("completed", "refunded", "failed") or o.startswith("refused") for o in outcomes.values())
    rows = list(
        Payment.objects.filter(payment_id__in=[p[3] for p in plan]).values_list("payment_id", "status")
    )
    assert len(rows) == len({payment_id for payment_id, _ in rows})
    done = {payment_id for payment_id, outcome in outcomes.items() if outcome == "completed"}
    assert {payment_id for payment_id, status in rows if status == "completed"} == done
    assert len(done) >= len(plan) // 2, outcomes
    expected = dict(start)
    for sender, recipient, amount, payment_id in plan:
        if payment_id in done:
            expected[users[sender].address] -= amount
            expected[users[recipient].address] += amount
    client_wallets.settled(*users, timeout=WAIT)  # type: ignore[arg-type]
    assert {u.address: u.get_free_balance(ETH)["user"] for u in users} == expected
    node_states = [
        serialization.channel_state_from_json(c.latest_state)
        for c in Channel.objects.filter(address__in=[u.channel_address for u in users])
    ]
    assert sorted(s.state_hash for s in node_states) == sorted(u.async_client.state.state_hash for u in users)
    assert_offchain_conserved(w3, node_states)
