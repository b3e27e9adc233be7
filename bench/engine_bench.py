"""The node's update engine alone, in process (make bench-engine): what one routed transfer costs the
node's own code with no network between client and node, so a change to the hot path is judged in
seconds (issue #21).

    .venv/bin/python bench/engine_bench.py [--payments 300] [--warmup 30] [--show-sql] [--profile 40]

`--show-sql` prints the statements (and commits) of one more routed transfer after the numbers;
`--profile N` the N functions with the most own and cumulative time in the measured loop (cProfile:
compare runs with it, never quote its times).

`--owner [--pairs K]` measures the update engine's owner instead (`channels_app.engine.owner`): the
five channel steps of each routed transfer (the sender's create, the node's forward, the receiver's
resolve answering it, the node's resolve upstream, the sender's countersignature) decided in memory
and journaled through the writer, K pairs of users at once so their writes share commits; node CPU
(the process less the users' side), the writer's Postgres backend CPU and commits per transfer. The
payments' records and terms, pushes and the socket are not in it yet (they are in the default mode).

One Python process is node and users at once: each request goes the way a client's socket request goes
once its frame is read (`consumers._serve_request`: the token check, the handler, the pushes, the
answer, then the payment steps it released), in this thread, with no sockets, no daphne and no thread
hop; tasks run in process, the channel layer is in memory. Postgres is this
machine's (a fresh database, `fsync` and `synchronous_commit` as the server has them), the chain a fresh
anvil (setup only: deposits and collateral; the payments never touch it). Two users pay each other in
turn, Linked transfers routed through the node, each one in the three socket requests the client makes
(the node's proposals are read from the channel row, as its push carries them):

1. the sender's create (the node countersigns and, after the commit, forwards into the receiver's
   channel: its proposal);
2. the receiver's resolve, with its countersignature of the node's proposal in the same request (the
   node then resolves the sender's side: its proposal);
3. the sender's countersignature.

Prints and writes to bench/results/engine-*.json: per routed transfer the wall time, the time inside
the node's request handling (everything the node does, its Postgres round trips and commits included), the SQL
statements and commits the node sent, the user side (signing and checking, what a client pays), and the
cryptographic floor measured in the same run. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import platform
import pstats
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
RESULTS = ROOT / "bench" / "results"
E = 10**18
AMOUNT = 10**12
ETH = "0x0000000000000000000000000000000000000000"
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
        # As deployed: with DEBUG on Django also formats and keeps every SQL statement it sends.
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_hex(32),
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


class NodeLoop:
    """The event loop a node process serves its sockets on, in a thread of its own: a socket request
    runs in a worker thread beside it and its pushes hop onto it (as under daphne), instead of each
    push starting a loop of its own in a new thread (what `async_to_sync` does with no loop)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="node-loop", daemon=True).start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


class Counter:
    """SQL statements and commits the node sends (counted in the threads that serve its requests), the
    time spent serving them, and the profiler, when one runs."""

    def __init__(self) -> None:
        self.loop = NodeLoop()
        self.profiler: cProfile.Profile | None = None
        self.reset()

    def reset(self) -> None:
        self.statements = 0
        self.commits = 0
        self.node_seconds = 0.0
        self.log: list[str] | None = None  # when a list, every statement's start and each COMMIT

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.statements += 1
        if self.log is not None:
            self.log.append(" ".join(sql.split())[:150])
        return execute(sql, params, many, context)

    def commit_seen(self) -> None:
        self.commits += 1
        if self.log is not None:
            self.log.append("COMMIT")


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


def setup_users(w3: Any, counter: Counter, count: int = 2) -> list[Any]:
    """`count` users with 1 ETH each in their channels and the node's collateral beside it."""
    from connext.chain import devchain
    from tests.support.node_work import run_node_work
    from tests.support.wallet import Wallet

    funder = devchain.DEV_PRIVATE_KEYS[4]
    users = []
    for _ in range(count):
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
    return users


class User:
    """A user's side as the client does it, for the measured loop: updates built and signed with the
    core, sent the way its socket sends them (`consumers._serve_request`: the token check, the
    handler, the pushes batched, the answer, then the follow-ups it released), the node's proposal
    taken from the channel row (what the push carries)."""

    def __init__(self, wallet: Any, counter: Counter) -> None:
        self.wallet = wallet
        self.counter = counter
        self.address = wallet.address  # the wallet derives it from the key on each read

    def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        from asgiref.sync import sync_to_async

        from channels_app.consumers import SOCKET_REQUESTS, _serve_request

        answered: list[tuple[int, Any]] = []
        counter = self.counter

        def serve() -> None:  # in a worker thread, as the consumer runs a socket request
            with counting(counter), profiling(counter.profiler):
                _serve_request(
                    SOCKET_REQUESTS[("POST", path)],
                    self.wallet.token,
                    body,
                    lambda *reply: answered.append(reply),
                )

        began = time.perf_counter()
        counter.loop.run(sync_to_async(serve, thread_sensitive=False)())
        counter.node_seconds += time.perf_counter() - began
        ((status, result),) = answered
        assert status == 200, result
        return dict(result)

    def proposal(self) -> tuple[Any, Any, bytes]:
        """The node's open proposal, checked and signed (the user's side of a push)."""
        from channels_app.models import Channel
        from connext.protocol import serialization, signing, validation

        row = Channel.objects.values("pending_update", "pending_node_signature").get(
            address=self.wallet.state.channel_address
        )
        update = serialization.update_from_json(row["pending_update"])
        node_signature = bytes.fromhex(row["pending_node_signature"][2:])
        new = validation.validate_update(
            self.wallet.state, update, node_signature, context=self.wallet.context()
        )
        return update, new, signing.sign_state(new, self.wallet.key)

    def send(
        self, update: Any, *, meta: dict[str, Any] | None = None, answer: tuple[Any, bytes] | None = None
    ) -> None:
        from connext.protocol import serialization

        new, signature = self.wallet.sign(update)
        body: dict[str, Any] = {
            "update": serialization.update_to_json(update),
            "signature": "0x" + signature.hex(),
        }
        if meta:
            body["meta"] = meta
        if answer is not None:
            body["answer"] = {"nonce": str(answer[0].nonce), "signature": "0x" + answer[1].hex()}
        self.request("/api/channel/updates", body)
        self.wallet.state = new

    def countersign(self) -> None:
        _update, new, signature = self.proposal()
        self.request(
            "/api/channel/countersign", {"nonce": str(new.nonce), "signature": "0x" + signature.hex()}
        )
        self.wallet.state = new


def routed_transfer(sender: User, receiver: User) -> None:
    """One Linked payment in the client's three socket requests: the sender's create; the receiver's
    resolve with its countersignature of the node's forward; the sender's countersignature of the
    node's resolve."""
    from connext.protocol import meta as transfer_meta
    from connext.protocol.definitions import LinkedState, PreimageResolver
    from connext.protocol.encoding import keccak256
    from connext.protocol.types import CreateUpdate, ResolveUpdate

    preimage, payment_id = secrets.token_bytes(32), secrets.token_bytes(32)
    meta = {"recipient": receiver.wallet.address}
    state = sender.wallet.state
    sender.send(
        CreateUpdate(
            channel_address=state.channel_address,
            nonce=state.nonce + 1,
            initiator=sender.wallet.address,
            asset_id=ETH,
            amount=AMOUNT,
            definition=sender.wallet.config["transferDefinitions"]["linked"],
            payment_id=payment_id,
            encoded_state=LinkedState(keccak256(preimage)).encode(),
            transfer_timeout=3600,
            meta_hash=transfer_meta.meta_hash(meta),
        ),
        meta=meta,
    )
    _forward, forwarded, answer_signature = receiver.proposal()
    transfer = next(t for t in forwarded.transfers if t.payment_id == payment_id)
    receiver.wallet.state = forwarded
    receiver.send(
        ResolveUpdate(
            channel_address=forwarded.channel_address,
            nonce=forwarded.nonce + 1,
            initiator=receiver.wallet.address,
            transfer_id=transfer.transfer_id,
            encoded_resolver=PreimageResolver(preimage).encode(),
        ),
        answer=(forwarded, answer_signature),
    )
    sender.countersign()


@contextmanager
def profiling(profiler: cProfile.Profile | None) -> Iterator[None]:
    if profiler is None:
        yield
        return
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE))
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where the JSON goes (default bench/results)"
    )
    parser.add_argument(
        "--show-sql", action="store_true", help="also print the statements of one more routed transfer"
    )
    parser.add_argument(
        "--owner",
        action="store_true",
        help="the channel steps of each routed transfer through the update engine's owner instead",
    )
    parser.add_argument(
        "--router",
        action="store_true",
        help="with --owner: whole payments through the engine's router (records, terms, follow-ups)",
    )
    parser.add_argument(
        "--pairs", type=int, default=1, help="with --owner: pairs of users paying each other at once"
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="also print the N functions with the most own time in the measured loop (cProfile)",
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
    if args.owner:
        return run_owner(args, w3, counter)
    alice, bob = (User(wallet, counter) for wallet in setup_users(w3, counter))

    log(f"{args.warmup} payments to warm up, then {args.payments} measured")
    for index in range(args.warmup):
        routed_transfer(*((alice, bob) if index % 2 == 0 else (bob, alice)))
    counter.reset()
    walls: list[float] = []
    cpu_began = time.process_time()
    profiler = counter.profiler = cProfile.Profile() if args.profile else None
    began = time.perf_counter()
    for index in range(args.payments):
        start = time.perf_counter()
        routed_transfer(*((alice, bob) if index % 2 == 0 else (bob, alice)))
        walls.append(time.perf_counter() - start)
    wall = time.perf_counter() - began
    counter.profiler = None
    if profiler is not None:  # the times include the profiler's own overhead: compare, don't quote
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
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
    if args.show_sql:  # after the numbers: this transfer is not one of them
        counter.log = []
        routed_transfer(alice, bob)
        print("\n".join(counter.log), file=sys.stderr)
    return 0


# -- the update engine's owner (--owner) ----------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """Seconds of CPU process `pid` used so far (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_backends(conninfo: str) -> list[int]:
    """The Postgres backends serving this database now (the writer's, the reader's, Django's)."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as probe:
        rows = probe.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


def database_cpu(backends: list[int]) -> float:
    """CPU seconds `backends` used so far (those still running)."""
    total = 0.0
    for pid in backends:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += process_cpu(pid)
    return total


class Users:
    """CPU the users' side takes in the owner loop (building, checking and signing states), kept
    apart from the node's: the loop is one thread, and a user's step never awaits."""

    def __init__(self) -> None:
        self.cpu = 0.0

    @contextmanager
    def side(self) -> Iterator[None]:
        began = time.process_time()
        try:
            yield
        finally:
            self.cpu += time.process_time() - began


def linked_create(
    sender: Any, sender_address: str, recipient: str, linked: str
) -> tuple[Any, dict[str, Any], bytes]:
    """A Linked payment of AMOUNT from `sender` to `recipient`, on the sender's latest state:
    (its create, the create's meta, the preimage)."""
    from connext.protocol import meta as transfer_meta
    from connext.protocol.definitions import LinkedState
    from connext.protocol.encoding import keccak256
    from connext.protocol.types import CreateUpdate

    preimage = secrets.token_bytes(32)
    meta = {"recipient": recipient}
    create = CreateUpdate(
        channel_address=sender.state.channel_address,
        nonce=sender.state.nonce + 1,
        initiator=sender_address,
        asset_id=ETH,
        amount=AMOUNT,
        definition=linked,
        payment_id=secrets.token_bytes(32),
        encoded_state=LinkedState(keccak256(preimage)).encode(),
        transfer_timeout=3600,
        meta_hash=transfer_meta.meta_hash(meta),
    )
    return create, meta, preimage


def linked_resolve(state: Any, initiator: str, payment_id: bytes, preimage: bytes) -> Any:
    """The resolve, by `initiator`, of the active transfer of `payment_id` in `state` with `preimage`."""
    from connext.protocol.definitions import PreimageResolver
    from connext.protocol.types import ResolveUpdate

    transfer = next(t for t in state.transfers if t.payment_id == payment_id)
    return ResolveUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=initiator,
        transfer_id=transfer.transfer_id,
        encoded_resolver=PreimageResolver(preimage).encode(),
    )


async def owner_transfer(
    owner: Any, sender: Any, receiver: Any, users: Users, config: dict[str, Any]
) -> None:
    """One Linked payment's channel steps through the owner, as the node takes them: the sender's
    create, the node's forward into the receiver's channel, the receiver's resolve answering it, the
    node's resolve of the sender's side and the sender's countersignature. The payments' records and
    terms, the pushes and the socket are not in it."""
    from connext.protocol import meta as transfer_meta
    from connext.protocol import signing, validation
    from connext.protocol.definitions import PreimageResolver
    from connext.protocol.types import CreateUpdate, ResolveUpdate, UpdateContext

    node, definitions, linked = config["node"], config["definitions"], config["linked"]

    def context() -> Any:
        return UpdateContext(now=int(time.time()), definitions=definitions)

    def accept_proposal(wallet: Any, outcome: Any) -> tuple[Any, bytes]:
        """The user's side of a push: check the node's proposal on its own state and sign it."""
        from connext.protocol import serialization

        proposal = outcome.channel
        update = serialization.update_from_json(proposal.pending_update)
        node_signature = bytes.fromhex(proposal.pending_node_signature[2:])
        new = validation.validate_update(wallet.state, update, node_signature, context=context())
        return new, signing.sign_state(new, wallet.key)

    s, r = sender.wallet, receiver.wallet
    s_address, r_address = sender.address, receiver.address
    with users.side():
        create, meta, preimage = linked_create(s, s_address, r_address, linked)
        payment_id, lock = create.payment_id, create.encoded_state
        created, signature = s.sign(create, context())
    await owner.user_update(user=s_address, update=create, signature=signature, context=context(), meta=meta)
    s.state = created
    forward_meta = {"sender": s_address, "paymentId": "0x" + payment_id.hex()}
    forward = CreateUpdate(
        channel_address=r.state.channel_address,
        nonce=r.state.nonce + 1,
        initiator=node,
        asset_id=ETH,
        amount=AMOUNT,
        definition=linked,
        payment_id=payment_id,
        encoded_state=lock,
        transfer_timeout=3000,
        meta_hash=transfer_meta.meta_hash(forward_meta),
    )
    proposed = await owner.propose(
        user=r_address,
        channel_address=forward.channel_address,
        build=fixed(forward),
        context=context(),
        meta=forward_meta,
    )
    with users.side():
        forwarded, answer = accept_proposal(r, proposed)
        r.state = forwarded
        resolve = linked_resolve(forwarded, r_address, payment_id, preimage)
        resolved, signature = r.sign(resolve, context())
    await owner.user_update(
        user=r_address,
        update=resolve,
        signature=signature,
        context=context(),
        answer=(forwarded.nonce, answer),
    )
    r.state = resolved
    upstream = next(t for t in s.state.transfers if t.payment_id == payment_id)
    settle = ResolveUpdate(
        channel_address=s.state.channel_address,
        nonce=s.state.nonce + 1,
        initiator=node,
        transfer_id=upstream.transfer_id,
        encoded_resolver=PreimageResolver(preimage).encode(),
    )
    proposed = await owner.propose(
        user=s_address, channel_address=settle.channel_address, build=fixed(settle), context=context()
    )
    with users.side():
        settled, signature = accept_proposal(s, proposed)
    await owner.countersign(
        user=s_address, channel_address=settled.channel_address, nonce=settled.nonce, signature=signature
    )
    s.state = settled


async def router_transfer(
    router: Any, sender: Any, receiver: Any, users: Users, config: dict[str, Any]
) -> None:
    """One Linked payment through the router, as a client sends it: the sender's create (the node
    forwards at once: its proposal comes back among the events), the receiver's resolve answering
    the forward (the node settles upstream: its proposal for the sender among the events), the
    sender's countersignature."""
    from connext.protocol import serialization, signing, validation
    from connext.protocol.types import UpdateContext

    definitions, linked = config["definitions"], config["linked"]

    def context() -> Any:
        return UpdateContext(now=int(time.time()), definitions=definitions)

    def proposal_to(wallet: Any, address: str, events: Any) -> tuple[Any, bytes]:
        (payload,) = [p for user, event, p in events if user == address and event == "update.proposed"]
        update = serialization.update_from_json(payload["update"])
        node_signature = bytes.fromhex(payload["nodeSignature"][2:])
        new = validation.validate_update(wallet.state, update, node_signature, context=context())
        return new, signing.sign_state(new, wallet.key)

    s, r = sender.wallet, receiver.wallet
    s_address, r_address = sender.address, receiver.address
    with users.side():
        create, meta, preimage = linked_create(s, s_address, r_address, linked)
        payment_id = create.payment_id
        created, signature = s.sign(create, context())
    sent = await router.user_update(user=s_address, update=create, signature=signature, meta=meta)
    s.state = created
    with users.side():
        forwarded, answer = proposal_to(r, r_address, sent.events)
        r.state = forwarded
        resolve = linked_resolve(forwarded, r_address, payment_id, preimage)
        resolved, signature = r.sign(resolve, context())
    decided = await router.user_update(
        user=r_address, update=resolve, signature=signature, answer=(forwarded.nonce, answer)
    )
    r.state = resolved
    with users.side():
        settled, signature = proposal_to(s, s_address, decided.events)
    await router.countersign(
        user=s_address, channel_address=settled.channel_address, nonce=settled.nonce, signature=signature
    )
    s.state = settled


def run_owner(args: argparse.Namespace, w3: Any, counter: Counter) -> int:
    """--owner: `--pairs` pairs of users, each pair paying each other in turn, all pairs at once,
    the channel steps through one `ChannelOwner` over a `ShardWriter` on this database."""
    import protocol_bench
    from django.db import connection

    from channels_app import network
    from channels_app.engine.process import build
    from connext.protocol.types import DefinitionKind

    wallets = setup_users(w3, counter, 2 * args.pairs)
    pairs = [(User(wallets[2 * i], counter), User(wallets[2 * i + 1], counter)) for i in range(args.pairs)]
    net = network.network()
    config = {
        "node": net.node_address,
        "definitions": net.definitions,
        "linked": net.definition_address(DefinitionKind.LINKED),
    }
    signer = network.node_signer()
    connection.close()
    conninfo = args.database_url

    async def measure() -> dict[str, Any]:
        engine = build(conninfo, net=net, signer=signer)
        owner, router, writer = engine.owner, engine.router, engine.writer
        await engine.start()
        users = Users()

        async def pair_loop(alice: User, bob: User, count: int, walls: list[float]) -> None:
            for index in range(count):
                start = time.perf_counter()
                pair = (alice, bob) if index % 2 == 0 else (bob, alice)
                if args.router:
                    await router_transfer(router, *pair, users, config)
                else:
                    await owner_transfer(owner, *pair, users, config)
                walls.append(time.perf_counter() - start)

        try:
            await asyncio.gather(*(pair_loop(a, b, max(2, args.warmup // args.pairs), []) for a, b in pairs))
            backends = await asyncio.to_thread(database_backends, conninfo)
            users.cpu, batches, walls = 0.0, writer.batches, []
            per_pair = max(1, args.payments // args.pairs)
            profiler = cProfile.Profile() if args.profile else None
            pg_began, cpu_began, began = database_cpu(backends), time.process_time(), time.perf_counter()
            with profiling(profiler):
                await asyncio.gather(*(pair_loop(a, b, per_pair, walls) for a, b in pairs))
            wall = time.perf_counter() - began
            if profiler is not None:  # compare, don't quote: the times include the profiler's
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
            cpu, pg = time.process_time() - cpu_began, database_cpu(backends) - pg_began
            return {
                "n": per_pair * args.pairs,
                "wall": wall,
                "walls": walls,
                "node_cpu": cpu - users.cpu,
                "users_cpu": users.cpu,
                "pg_cpu": pg,
                "commits": writer.batches - batches,
            }
        finally:
            await engine.close()

    log(
        f"{args.pairs} pairs at once through the owner: {args.warmup} transfers to warm up, then {args.payments}"
    )
    got = asyncio.run(measure())
    n, walls = got["n"], sorted(got["walls"])
    floor = protocol_bench.measure_named((protocol_bench.FLOOR,), runs=60)[protocol_bench.FLOOR]
    per = {
        "wall_us": round(got["wall"] / n * 1e6, 1),
        "latency_p50_us": round(statistics.median(walls) * 1e6, 1),
        "latency_p99_us": round(walls[int(0.99 * (len(walls) - 1))] * 1e6, 1),
        "node_cpu_us": round(got["node_cpu"] / n * 1e6, 1),
        "postgres_cpu_us": round(got["pg_cpu"] / n * 1e6, 1),
        "users_cpu_us": round(got["users_cpu"] / n * 1e6, 1),
        "commits": round(got["commits"] / n, 2),
    }
    report = {
        "bench": "engine-owner",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "pairs": args.pairs,
        "payments": n,
        "what": "whole routed payments through the router (records, terms, follow-ups; no pushes or socket)"
        if args.router
        else "the channel steps of a routed transfer through the owner (no payment records, terms, pushes or socket)",
        "per_routed_transfer": per,
        "transfers_per_second": round(n / got["wall"], 1),
        "floor": {"routed_transfer_crypto_us": round(floor, 1)},
        "node_and_postgres_over_floor": round((got["node_cpu"] + got["pg_cpu"]) / n * 1e6 / floor, 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"engine-owner-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"engine --owner{' --router' if args.router else ''}: {n} routed transfers"
        f"{'' if args.router else chr(39) + ' channel steps'}, {args.pairs} pairs at once,"
        f" {report['transfers_per_second']}/s; per transfer {per['wall_us']} µs wall"
        f" (latency p50 {per['latency_p50_us']}, p99 {per['latency_p99_us']}), node {per['node_cpu_us']} µs CPU,"
        f" Postgres {per['postgres_cpu_us']} µs CPU, {per['commits']} commits, users {per['users_cpu_us']} µs;"
        f" crypto floor {report['floor']['routed_transfer_crypto_us']} µs"
        f" ((node + Postgres)/floor {report['node_and_postgres_over_floor']}). Written to {out}"
    )
    return 0


def fixed(update: Any) -> Any:
    """A proposal's builder that proposes `update` whatever the channel holds."""
    return lambda _record: update


if __name__ == "__main__":
    sys.exit(main())
