"""Routed-payment benchmark: hub-routed transfers through real node processes, measured end to end.

    .venv/bin/python bench/routing_bench.py [--nodes 2] [--clients 10] [--seconds 20] [--in-flight 2]
    (or: make bench)

Starts the whole stack on this machine (Postgres and Redis as they run here, a fresh anvil, the
contracts, N daphne processes and a Celery worker with beat), connects K clients over websockets
(spread over the node processes), funds them, then for a fixed time every client pays random other
clients (Linked transfers with the preimage encrypted to the receiver, which resolves on its own) and
keeps `--in-flight` payments open. A payment counts when the sender sees it resolved (both sides done).

Prints and writes to bench/results/: completed transfers per second, latency p50/p95/p99, the node
processes' CPU seconds per transfer, and, measured in the same run, the cryptographic floor (the node's 4
signs + 4 recovers + hashes per routed transfer) with the ratio throughput / floor. With `--rate R`
the clients send at a fixed total rate instead (for latency at a given load).

Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import protocol_bench  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from web3 import HTTPProvider, Web3  # noqa: E402

from connext import AsyncClient  # noqa: E402
from connext.chain import devchain  # noqa: E402

PYTHON = sys.executable
BENCH_DB = "connext_bench"
DEPOSIT = 10**18  # each client's deposit
AMOUNT = 10**12  # per payment: small beside the node's collateral, so no top-up interrupts the run
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# -- the stack ----------------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    node_urls: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    chain: devchain.Anvil | None = None

    def node_pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """SIGTERM each process's group (Celery's pool and beat children too), SIGKILL what lingers."""
        for process in self.processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
        if self.chain is not None:
            self.chain.stop()


def fresh_database(base_url: str, name: str = BENCH_DB) -> str:
    """An empty database `name` on the server at `base_url` (dropped first if it exists); its URL."""
    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")
    return f"{base_url}/{name}"


def database_transactions(base_url: str, name: str = BENCH_DB) -> tuple[int, int]:
    """(commits, rollbacks) of the bench database so far, as Postgres counts them. A backend publishes
    its counts when a transaction ends (at most once a second) and when it exits: read after the stack
    stopped, they are complete; read while it runs, up to a second behind."""
    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as connection:
        row = connection.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# Each bench client sends and receives tens of payments a second, past a wallet's pace per account
# (FAIR_SHARE, README "The node's edges"): the routing bench lifts it to measure the engine. Set
# FAIR_SHARE / FAIR_SHARE_BURST in the environment to run it at another pace.
UNPACED = {"FAIR_SHARE": "1000000/second", "FAIR_SHARE_BURST": "100000"}


BENCH_METRICS_TOKEN = "routing-bench-metrics-token-" + "x" * 16


def engine_counts(stack: Stack) -> dict[str, float]:
    """`connext_engine_requests_total` summed over the node processes, by path/outcome/reason."""
    counts: dict[str, float] = {}
    for url in stack.node_urls:
        headers = {"Authorization": f"Bearer {BENCH_METRICS_TOKEN}"}
        request = urllib.request.Request(f"{url}/metrics", headers=headers)  # noqa: S310 - the local stack
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local stack
            for line in response.read().decode().splitlines():
                if line.startswith("connext_engine_requests_total{"):
                    sample, _, value = line.rpartition(" ")
                    labels = sample[len("connext_engine_requests_total{") : -1].replace('"', "")
                    counts[labels] = counts.get(labels, 0.0) + float(value)
    return counts


def start_stack(
    *,
    nodes: int,
    workdir: Path,
    postgres: str,
    redis_url: str,
    extra: dict[str, str] | None = None,
    database: str = BENCH_DB,
    socket_homes: bool = True,
) -> Stack:
    """The stack, its node processes each saying where its websocket is reached (NODE_SOCKET_URL)
    unless `socket_homes` is off: with the update engine on, a socket landing on a process that does
    not own its user's shard then moves to the one that does."""
    subprocess.run([str(ROOT / "scripts" / "services.sh")], check=True)
    redis.Redis.from_url(redis_url).flushdb()
    chain = devchain.Anvil(log_path=workdir / "anvil.log")
    rpc_url = chain.start()
    env = {
        **(extra or {}),
        **os.environ,
        "DATABASE_URL": fresh_database(postgres, database),
        "REDIS_URL": redis_url,
        "CHAIN_RPC_URL": rpc_url,
        "PUBLIC_CHAIN_RPC_URL": rpc_url,
        # Production mode (no per-query debug records): a fresh node key, funded on anvil by the deploy.
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Each process's /metrics reports only its own (no PROMETHEUS_MULTIPROC_DIR): summed here.
        "METRICS_TOKEN": BENCH_METRICS_TOKEN,
        "NODE_PRIVATE_KEY": "0x" + secrets.token_hex(32),
        "NODE_VAR_DIR": str(workdir),
        "DEPLOYMENTS_FILE": str(workdir / "deployments.json"),
        "CHAIN_CONFIRMATIONS": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "NODE_LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    stack = Stack(env=env, node_urls=[], chain=chain)
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        subprocess.run(
            [PYTHON, "manage.py", "deploy_contracts", "--dev"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for index in range(nodes):
            port = devchain.free_port()
            log_file = open(workdir / f"daphne-{index}.log", "ab")  # noqa: SIM115 - lives as long as the process
            stack.processes.append(
                subprocess.Popen(
                    [
                        PYTHON,
                        "-m",
                        "daphne",
                        "-b",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "connext_site.asgi:application",
                    ],
                    cwd=ROOT,
                    env={**env, "NODE_SOCKET_URL": f"ws://127.0.0.1:{port}/ws/v1"} if socket_homes else env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped whole
                )
            )
            stack.node_urls.append(f"http://127.0.0.1:{port}")
        worker_log = open(workdir / "celery.log", "ab")  # noqa: SIM115
        stack.processes.append(
            subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "connext_site",
                    "worker",
                    "-B",
                    "-l",
                    "WARNING",
                    "-c",
                    "2",
                    "--without-gossip",
                    "--without-mingle",
                    "-s",
                    str(workdir / "beat-schedule"),
                ],
                cwd=ROOT,
                env=env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        _wait_healthy(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def _wait_healthy(stack: Stack, timeout: float = 90) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    pending = list(stack.node_urls)
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            with suppress(OSError), urllib.request.urlopen(f"{url}/api/health", timeout=3) as response:  # noqa: S310
                if response.status == 200:
                    pending.remove(url)
        time.sleep(0.3)
    if pending:
        raise SystemExit(f"[bench] node processes not healthy: {pending}")


def cpu_seconds(pids: list[int], *, descendants: bool = True) -> float:
    """User + system CPU of the processes and (unless told not to) all their descendants (Celery's
    pool children)."""
    total = 0.0
    seen: set[int] = set()
    queue = list(pids)
    while queue:
        pid = queue.pop()
        if pid in seen:
            continue
        seen.add(pid)
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        if not descendants:
            continue
        with suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                queue.extend(int(child) for child in (task / "children").read_text().split())
    return total


def service_pids() -> dict[str, list[int]]:
    """The machine's Postgres, Redis and anvil processes (by command name)."""
    found: dict[str, list[int]] = {"postgres": [], "redis": [], "anvil": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            name = (entry / "comm").read_text().strip()
            for service in found:
                if name.startswith(service):
                    found[service].append(int(entry.name))
    return found


# -- the clients --------------------------------------------------------------------------------------


async def connect_clients(stack: Stack, count: int, workdir: Path) -> list[AsyncClient]:
    w3 = Web3(HTTPProvider(stack.env["CHAIN_RPC_URL"]))
    clients = []
    for index in range(count):
        key = secrets.token_bytes(32)
        address = w3.eth.account.from_key(key).address
        w3.provider.make_request("anvil_setBalance", [address, hex(100 * 10**18)])
        client = await AsyncClient.connect(
            stack.node_urls[index % len(stack.node_urls)],
            key,
            store_path=str(workdir / f"client-{index}.sqlite3"),
            chain_rpc_url=stack.env["CHAIN_RPC_URL"],
        )
        clients.append(client)
    await asyncio.gather(*(client.deposit(DEPOSIT) for client in clients))
    # Collateral in every channel up front, so the timed run measures routing, not deposits.
    await asyncio.gather(*(client.request_collateral() for client in clients))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(client.get_free_balance()["node"] > 0 for client in clients):
            return clients
        await asyncio.sleep(0.2)
    raise SystemExit("[bench] the node did not collateralize every channel within 120 s")


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)  # perf_counter() when each one completed
    failures: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # what went wrong, for the report


async def pay_and_wait(sender: AsyncClient, recipient: AsyncClient, results: Results, timeout: float) -> None:
    started = time.perf_counter()
    payment_id: str | None = None
    try:
        # Bounded as a whole: a payment that never settles is a failure in the report, not a hung run.
        # `wait_for_transfer` reads the client's own record, so news of a payment the node settled
        # before the answer to its create came back is not missed.
        payment_id = await asyncio.wait_for(sender.transfer(recipient.address, AMOUNT), timeout)
        remaining = max(0.0, timeout - (time.perf_counter() - started))
        payment = await sender.wait_for_transfer(payment_id, timeout=remaining)
        if payment.get("status") == "completed":
            results.latencies.append(time.perf_counter() - started)
            results.finished_at.append(time.perf_counter())
        else:
            results.failures += 1
            results.failed.append({"paymentId": str(payment_id), "status": str(payment.get("status"))})
    except Exception as exc:
        results.failures += 1
        results.failed.append({"paymentId": str(payment_id), "error": repr(exc)[:200]})


async def run_load(
    clients: list[AsyncClient], *, seconds: float, in_flight: int, rate: float | None
) -> Results:
    results = Results()
    end = time.perf_counter() + seconds
    rng = random.Random(7)

    def pick(sender: AsyncClient) -> AsyncClient:
        return rng.choice([c for c in clients if c is not sender])

    async def closed_loop(sender: AsyncClient) -> None:
        while time.perf_counter() < end:
            await pay_and_wait(sender, pick(sender), results, timeout=30)

    async def open_loop() -> None:
        pending: set[asyncio.Task[None]] = set()
        interval = 1 / rate if rate else 0
        next_at = time.perf_counter()
        while time.perf_counter() < end:
            sender = rng.choice(clients)
            pending.add(asyncio.create_task(pay_and_wait(sender, pick(sender), results, timeout=30)))
            next_at += interval
            await asyncio.sleep(max(0, next_at - time.perf_counter()))
        await asyncio.gather(*pending)

    if rate:
        await open_loop()
    else:
        await asyncio.gather(*(closed_loop(c) for c in clients for _ in range(in_flight)))
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def main_async(args: argparse.Namespace) -> dict:
    # SIGTERM (a `timeout`, say) cancels the run, so the stack below is stopped, not orphaned.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="connext-bench-"))
    log(f"starting the stack in {workdir}: {args.nodes} node processes, Celery worker + beat, anvil")
    stack = start_stack(
        nodes=args.nodes,
        workdir=workdir,
        postgres=args.postgres,
        redis_url=args.redis,
        extra=UNPACED,
        database=args.database,
        socket_homes=not args.stay,
    )
    try:
        log(f"connecting and funding {args.clients} clients")
        clients = await connect_clients(stack, args.clients, workdir)
        log("warming up")
        await run_load(clients, seconds=3, in_flight=1, rate=None)
        log(
            f"sending for {args.seconds:.0f} s ({'rate ' + str(args.rate) + '/s' if args.rate else str(args.in_flight) + ' in flight per client'})"
        )
        transactions_before = database_transactions(args.postgres, args.database)
        cpu_before = cpu_seconds(stack.node_pids())
        clients_before = cpu_seconds([os.getpid()], descendants=False)  # the stack is our child
        services_before = {name: cpu_seconds(pids) for name, pids in service_pids().items()}
        started = time.perf_counter()
        results = await run_load(clients, seconds=args.seconds, in_flight=args.in_flight, rate=args.rate)
        elapsed = time.perf_counter() - started
        cpu_used = cpu_seconds(stack.node_pids()) - cpu_before
        clients_used = cpu_seconds([os.getpid()], descendants=False) - clients_before
        services_used = {
            name: cpu_seconds(pids) - services_before.get(name, 0.0) for name, pids in service_pids().items()
        }
        moved = sum(1 for client in clients if client.api.socket_home)
        await asyncio.gather(*(client.close() for client in clients))
        engine_requests = engine_counts(stack)
    finally:
        stack.stop()
    transactions = [
        a - b
        for a, b in zip(database_transactions(args.postgres, args.database), transactions_before, strict=True)
    ]
    log("measuring the cryptographic floor on this machine")
    floor = protocol_bench.measure_named((protocol_bench.FLOOR, protocol_bench.NODE_WORK), runs=60)
    completed = len(results.latencies)
    # Payments finished inside the send window over its length: the drain after it (the payments
    # still open when it ends, one stuck until its timeout, say) does not dilute the rate.
    window_end = started + args.seconds
    throughput = sum(1 for at in results.finished_at if at <= window_end) / args.seconds
    floor_per_second = 1e6 / floor[protocol_bench.FLOOR]
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "setup": {
            "node_processes": args.nodes,
            "clients": args.clients,
            "seconds": args.seconds,
            "in_flight_per_client": None if args.rate else args.in_flight,
            "offered_rate": args.rate,
            "pace": {name: stack.env[name] for name in UNPACED},
            "update_engine": stack.env.get("UPDATE_ENGINE", "false"),
            "socket_homes": not args.stay,
        },
        # With the engine on: what became of the requests it was offered, over both processes.
        "engine_requests": engine_requests,
        # Clients whose socket moved to the process owning their shard (the rest stayed where they landed).
        "sockets_moved": moved,
        "completed": completed,
        "elapsed_seconds": round(elapsed, 1),
        "failed": results.failures,
        "failed_payments": results.failed[:20],
        "transfers_per_second": round(throughput, 1),
        "latency_ms": {
            name: round(percentile(results.latencies, q) * 1000, 1) if results.latencies else None
            for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
        }
        | {"mean": round(statistics.fmean(results.latencies) * 1000, 1) if results.latencies else None},
        "node_cpu_seconds_per_transfer": round(cpu_used / completed, 5) if completed else None,
        # The rest of the machine's work per transfer: the K clients (this process) and the services
        # (machine-wide: anything else using Postgres or Redis meanwhile counts too).
        "other_cpu_seconds_per_transfer": {
            "clients": round(clients_used / completed, 5) if completed else None,
            **{
                name: round(used / completed, 5) if completed else None
                for name, used in services_used.items()
            },
        },
        # Per transfer, from Postgres' own counts (the drain after the window and the shutdown
        # included): transactions committed (every autocommit read is one), and rolled back, which
        # on this path is almost only a user update refused because a node proposal crossed it.
        "database_per_transfer": {
            "commits": round(transactions[0] / completed, 2) if completed else None,
            "rollbacks": round(transactions[1] / completed, 2) if completed else None,
        },
        "floor": {
            "routed_transfer_crypto_us": round(floor[protocol_bench.FLOOR], 1),
            "routed_transfer_protocol_work_us": round(floor[protocol_bench.NODE_WORK], 1),
            "crypto_floor_transfers_per_second_one_core": round(floor_per_second, 1),
        },
        "throughput_over_floor": round(throughput / floor_per_second, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="daphne processes (default 2)")
    parser.add_argument("--clients", type=int, default=10, help="clients (default 10)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the timed run (default 20)")
    parser.add_argument("--in-flight", type=int, default=2, help="open payments per client (default 2)")
    parser.add_argument("--rate", type=float, default=None, help="fixed total send rate instead (per second)")
    parser.add_argument(
        "--postgres", default="postgres://postgres@127.0.0.1:5432", help="Postgres server URL"
    )
    parser.add_argument("--database", default=BENCH_DB, help="bench database (dropped and made anew)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="Redis URL (flushed)")
    parser.add_argument(
        "--stay",
        action="store_true",
        help="sockets stay on the process they land on (no NODE_SOCKET_URL): requests are forwarded",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON result")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"routing-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(
        f"\n{report['transfers_per_second']} routed transfers/s; latency p50 {report['latency_ms']['p50']} ms,"
        f" p95 {report['latency_ms']['p95']} ms, p99 {report['latency_ms']['p99']} ms;"
        f" node CPU {report['node_cpu_seconds_per_transfer']} s/transfer"
        f" (elsewhere: {', '.join(f'{k} {v}' for k, v in report['other_cpu_seconds_per_transfer'].items())});"
        f" database per transfer: {report['database_per_transfer']['commits']} commits,"
        f" {report['database_per_transfer']['rollbacks']} rollbacks;"
        f" floor {report['floor']['crypto_floor_transfers_per_second_one_core']}/s per core"
        f" (throughput/floor {report['throughput_over_floor']}). Written to {path}"
    )


if __name__ == "__main__":
    main()
