"""The node's update engine alone, in process (make bench-engine): what one routed transfer costs the
node's own code with no network between client and node, so a change to the hot path is judged in
seconds (issue #21).

    .venv/bin/python bench/engine_bench.py [--payments 300] [--warmup 30]

One Python process is node and users at once: Django's test client calls the node's views in this
thread (no sockets, no daphne), tasks run in process, the channel layer is in memory. Postgres is this
machine's (a fresh database, `fsync` and `synchronous_commit` as the server has them), the chain a fresh
anvil (setup only: deposits and collateral; the payments never touch it). Two users pay each other in
turn, Linked transfers routed through the node, each one in the three requests the client makes:

1. the sender's create (the node countersigns and, after the commit, forwards into the receiver's
   channel: its proposal);
2. the receiver's resolve, with its countersignature of the node's proposal in the same request (the
   node then resolves the sender's side: its proposal);
3. the sender's countersignature.

Prints and writes to bench/results/engine-*.json: per routed transfer the wall time, the time inside
the node's views (everything the node does, its Postgres round trips and commits included), the SQL
statements and commits the node sent, the user side (signing and checking, what a client pays), and the
cryptographic floor measured in the same run. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
RESULTS = ROOT / "bench" / "results"
E = 10**18
AMOUNT = 10**12
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/connext_engine_bench"


def log(message: str) -> None:
    print(f"[engine-bench] {message}", file=sys.stderr, flush=True)


def configure(database_url: str, chain_url: str, book: Path, node_key: str) -> None:
    """The node's settings for this process: Postgres, no Redis, the bench's chain; edge limits no
    bench reaches (they are not what is measured)."""
    os.environ.update(
        DATABASE_URL=database_url,
        CHAIN_RPC_URL=chain_url,
        DEPLOYMENTS_FILE=str(book),
        NODE_PRIVATE_KEY=node_key,
        CHAIN_CONFIRMATIONS="0",
        DJANGO_SETTINGS_MODULE="connext_site.settings",
        FAIR_SHARE="100000/second",
        FAIR_SHARE_BURST="100000",
        RATE_LIMIT_PER_IP="100000000/minute",
        RATE_LIMIT_PER_ACCOUNT="100000000/minute",
        NODE_LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host ("testserver") is served


def fresh_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


class Counter:
    """SQL statements and commits the node sends, and the time spent inside its views."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.statements = 0
        self.commits = 0
        self.node_seconds = 0.0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.statements += 1
        return execute(sql, params, many, context)

    def commit_seen(self) -> None:
        self.commits += 1


@contextmanager
def counting(counter: Counter) -> Iterator[None]:
    """Every statement through Django's connection, and every transaction commit (an atomic block's
    exit; a statement in autocommit mode is its own and not counted)."""
    from django.db import connection

    inner_commit = connection._commit

    def commit_counted() -> None:
        counter.commit_seen()
        inner_commit()

    connection._commit = commit_counted  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(counter):
            yield
    finally:
        connection._commit = inner_commit  # type: ignore[method-assign]


class TimedClient:
    """Django's test client, the time spent in the node's views added up."""

    def __init__(self, counter: Counter) -> None:
        from django.test import Client

        self._client = Client()
        self._counter = counter

    def post(self, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return self._client.post(*args, **kwargs)
        finally:
            self._counter.node_seconds += time.perf_counter() - began

    def get(self, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return self._client.get(*args, **kwargs)
        finally:
            self._counter.node_seconds += time.perf_counter() - began


def setup_users(w3: Any, counter: Counter) -> tuple[Any, Any]:
    """Two users with 1 ETH each in their channels and the node's collateral beside it."""
    from connext.chain import devchain
    from tests.support.node_work import run_node_work
    from tests.support.wallet import Wallet

    funder = devchain.DEV_PRIVATE_KEYS[4]
    users = []
    for _ in range(2):
        wallet = Wallet(client=TimedClient(counter), w3=w3)
        wallet.log_in()
        assert wallet.open().status_code in (200, 201)
        wallet.send_eth(funder, wallet.state.channel_address, E)
        assert wallet.deposit_update().status_code == 200
        users.append(wallet)
    run_node_work(*users)  # the node's collateral beside each deposit (its rebalance profile)
    for wallet in users:
        if wallet.state.balances[0][0] < 1000 * AMOUNT:
            raise SystemExit("the node's collateral was not credited: see the node's transactions")
    return users[0], users[1]


def routed_transfer(sender: Any, receiver: Any) -> None:
    """One Linked payment in the client's three requests (each user reads the node's proposal with a
    GET, where a client is pushed it: counted as the node's time too)."""
    response, payment_id, preimage = sender.pay(receiver.address, AMOUNT)
    assert response.status_code == 200, response.json()
    answer = receiver.resolve_incoming(payment_id, preimage, answering=True)
    assert answer.status_code == 200, answer.json()
    sender.countersign_proposal()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE))
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where the JSON goes (default bench/results)"
    )
    args = parser.parse_args()

    from connext.chain import devchain

    workdir = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    chain = devchain.Anvil(log_path=workdir / "anvil.log")
    chain.start()
    try:
        fresh_database(args.database_url)
        node_key = devchain.DEV_PRIVATE_KEYS[3]
        configure(args.database_url, chain.url, workdir / "deployments.json", node_key)
        return run(args, chain.url, workdir)
    finally:
        chain.stop()


def run(args: argparse.Namespace, chain_url: str, workdir: Path) -> int:
    import protocol_bench
    from django.core.management import call_command
    from eth_account import Account
    from web3 import HTTPProvider, Web3

    from connext.chain import devchain
    from connext.chain.deploy import deploy

    log("migrating a fresh database and deploying the contracts on a fresh anvil")
    call_command("migrate", verbosity=0)
    w3 = Web3(HTTPProvider(chain_url))
    deploy(w3, Account.from_key(devchain.DEV_PRIVATE_KEYS[0]), workdir / "deployments.json", test_token=True)
    counter = Counter()
    alice, bob = setup_users(w3, counter)

    log(f"{args.warmup} payments to warm up, then {args.payments} measured")
    for index in range(args.warmup):
        routed_transfer(*((alice, bob) if index % 2 == 0 else (bob, alice)))
    counter.reset()
    walls: list[float] = []
    cpu_began = time.process_time()
    began = time.perf_counter()
    with counting(counter):
        for index in range(args.payments):
            start = time.perf_counter()
            routed_transfer(*((alice, bob) if index % 2 == 0 else (bob, alice)))
            walls.append(time.perf_counter() - start)
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    n = args.payments
    node_us = counter.node_seconds / n * 1e6
    floor = protocol_bench.measure_named((protocol_bench.FLOOR, protocol_bench.NODE_WORK), runs=60)
    report = {
        "bench": "engine",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "payments": n,
        "per_routed_transfer": {
            "wall_us": round(wall / n * 1e6, 1),
            "wall_p50_us": round(statistics.median(walls) * 1e6, 1),
            "wall_p99_us": round(sorted(walls)[int(0.99 * (n - 1))] * 1e6, 1),
            "node_us": round(node_us, 1),
            "process_cpu_us": round(cpu / n * 1e6, 1),
            "users_us": round((wall - counter.node_seconds) / n * 1e6, 1),
            "sql_statements": round(counter.statements / n, 2),
            "commits": round(counter.commits / n, 2),
        },
        "transfers_per_second_one_thread": round(n / wall, 1),
        "floor": {
            "routed_transfer_crypto_us": round(floor[protocol_bench.FLOOR], 1),
            "routed_transfer_protocol_work_us": round(floor[protocol_bench.NODE_WORK], 1),
        },
        "node_over_floor": round(node_us / floor[protocol_bench.FLOOR], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"engine-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    per = report["per_routed_transfer"]
    print(
        f"engine: {n} routed transfers, {report['transfers_per_second_one_thread']}/s on one thread;"
        f" per transfer {per['wall_us']} µs wall (p50 {per['wall_p50_us']}, p99 {per['wall_p99_us']}),"
        f" node {per['node_us']} µs in {per['sql_statements']} SQL statements and {per['commits']} commits,"
        f" users {per['users_us']} µs; crypto floor {report['floor']['routed_transfer_crypto_us']} µs"
        f" (node/floor {report['node_over_floor']}). Written to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
