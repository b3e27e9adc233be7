"""The clients' own CPU per routed transfer, split by what the client does (make bench-client; issue #21).

    .venv/bin/python bench/client_bench.py [--clients 10] [--seconds 20] [--in-flight 2 | --rate 12]
        [--plain] [--profile 30] [--database connext_client_bench] [--redis redis://…/13]

Starts the stack as `make bench` does (`routing_bench.start_stack`: a fresh database, anvil, the
contracts, daphne processes, a Celery worker with beat), connects the clients in this process over
websockets with a store file each, funds them, then lets every client pay random others (Linked
transfers, the receiver's client resolving on its own) for a fixed time. The node runs in other
processes, so this process's CPU (all its threads: the event loop and the chain reads in workers) is the
clients' alone.

What the client does is split by wrapping its synchronous parts, each timed in the thread's own CPU
clock and counted exclusively (a store write's JSON encoding counts as JSON, not as the write):

- store writes and store reads (the `Store` methods; their wall time too, which holds the event loop),
- JSON text (every `json.dumps` / `json.loads` of this process: the frames, the bodies, the store's
  columns) and state/update objects to and from JSON (`connext.protocol.serialization`),
- signing, recovering and hashing (`connext.protocol.signing`, `ecies`, the state hash),
- deriving and checking updates (`connext.protocol.validation`, `connext.client.policy`),
- the watcher's chain reads (its step every poll), and the rest (asyncio, aiohttp, the client's logic),
  after the wrappers' own cost, measured on this machine and subtracted.

Prints and writes to bench/results/client-*.json: µs of client CPU per routed transfer (both clients of
a transfer together, as `make bench` counts them) by part, the calls per transfer of each wrapped
function, the store's commits (and synced ones) per transfer, and the crypto floor measured in the same
run (the machine's speed drifts: compare the ratio). The watcher polls the chain whatever the rate, so
its share per transfer falls as the rate rises (its CPU per second is reported too). `--rate R` sends at
a fixed total rate (compare two runs at one rate), `--plain` measures the total alone, with nothing
wrapped; `--profile N` prints the N
functions with the most own and cumulative time of the event loop's thread (cProfile: compare runs
with it, never quote its times). Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import json  # wrapped below before anything binds json.dumps / json.loads (aiohttp does at import)
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

# The parts, in the order they are reported.
STORE_WRITE = "store writes"
STORE_READ = "store reads"
JSON_TEXT = "JSON text"
SERIALIZE = "states and updates <-> JSON objects"
CRYPTO = "signing, recovering, hashing"
PROTOCOL = "deriving and checking updates"
WATCHER = "watcher's chain reads"
PARTS = (STORE_WRITE, STORE_READ, JSON_TEXT, SERIALIZE, CRYPTO, PROTOCOL, WATCHER)


class Meter:
    """Exclusive thread CPU and wall time per part and per wrapped function, across threads."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._guard = threading.Lock()
        self.cpu_ns: dict[str, int] = defaultdict(int)
        self.wall_ns: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.function_cpu_ns: dict[str, int] = defaultdict(int)
        self.function_wall_ns: dict[str, int] = defaultdict(int)
        self.function_part: dict[str, str] = {}

    def reset(self) -> None:
        with self._guard:
            for table in (self.cpu_ns, self.wall_ns, self.calls, self.function_cpu_ns, self.function_wall_ns):
                table.clear()

    def wrap(self, function: Callable[..., Any], part: str, name: str) -> Callable[..., Any]:
        local, guard = self._local, self._guard
        cpu_ns, wall_ns, calls = self.cpu_ns, self.wall_ns, self.calls
        function_cpu_ns, function_wall_ns = self.function_cpu_ns, self.function_wall_ns
        thread_time, perf_counter = time.thread_time_ns, time.perf_counter_ns
        self.function_part[name] = part

        def measured(*args: Any, **kwargs: Any) -> Any:
            stack = getattr(local, "stack", None)
            if stack is None:
                stack = local.stack = []
            stack.append([0, 0])  # the time of the wrapped calls inside this one
            began_wall, began_cpu = perf_counter(), thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu, wall = thread_time() - began_cpu, perf_counter() - began_wall
                inner_cpu, inner_wall = stack.pop()
                if stack:
                    stack[-1][0] += cpu
                    stack[-1][1] += wall
                with guard:
                    cpu_ns[part] += cpu - inner_cpu
                    wall_ns[part] += wall - inner_wall
                    calls[name] += 1
                    function_cpu_ns[name] += cpu - inner_cpu
                    function_wall_ns[name] += wall - inner_wall

        measured.__wrapped__ = function  # type: ignore[attr-defined]
        return measured

    def patch(self, owner: Any, attribute: str, part: str, name: str | None = None) -> None:
        """Wrap `owner.attribute` in place (a module function, a class's method) when it exists and is
        synchronous."""
        import inspect

        function = (
            owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
        )
        if function is None or inspect.iscoroutinefunction(function) or not callable(function):
            return
        label = name or f"{getattr(owner, '__name__', owner)}.{attribute}"
        setattr(owner, attribute, self.wrap(function, part, label))

    def overhead_ns(self, runs: int = 200_000) -> float:
        """The thread CPU one wrapped call adds, on this machine (nested, as most calls are)."""

        def nothing() -> None:
            return None

        wrapped = Meter().wrap(nothing, "calibration", "nothing")
        best = float("inf")
        for _ in range(5):
            began = time.thread_time_ns()
            for _ in range(runs):
                nothing()
            bare = time.thread_time_ns() - began
            began = time.thread_time_ns()
            for _ in range(runs):
                wrapped()
            best = min(best, (time.thread_time_ns() - began - bare) / runs)
        return best


METER = Meter()
if "--plain" not in sys.argv:  # here, before the imports below bind them
    METER.patch(json, "dumps", JSON_TEXT, "json.dumps")
    METER.patch(json, "loads", JSON_TEXT, "json.loads")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import protocol_bench  # noqa: E402
import routing_bench  # noqa: E402

from connext.client import disputes, exchange, incoming, payments, policy, store  # noqa: E402
from connext.protocol import (  # noqa: E402
    definitions,
    ecies,
    encoding,
    merkle,
    meta,
    serialization,
    signing,
    validation,
)

DEFAULT_DATABASE = "connext_client_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"


STORES: list[Any] = []  # every client store this process opened (their commit counts)


def keep_stores() -> None:
    opened = store.Store.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        opened(self, *args, **kwargs)
        STORES.append(self)

    store.Store.__init__ = init  # type: ignore[method-assign]


def store_commits() -> tuple[int, int] | None:
    """(commits, synced commits) of every store so far; None when the store does not count them."""
    if not STORES or not hasattr(STORES[0], "synced_commits"):
        return None
    return sum(s.commits for s in STORES), sum(s.synced_commits for s in STORES)


def instrument() -> None:
    """Wrap the client's synchronous parts where they are looked up when called."""
    reads = ("latest", "pending", "countersigned", "payment", "payments", "payments_with_status", "setup")
    for name, member in list(vars(store.Store).items()):
        if name.startswith("__") or not callable(member) or name == "close":
            continue
        if name.startswith("_"):
            continue  # private helpers count in the public method that calls them
        METER.patch(store.Store, name, STORE_READ if name in reads else STORE_WRITE, f"Store.{name}")
    METER.patch(store.Store, "_flush_due", STORE_WRITE, "Store._flush_due")  # the batch, on the loop
    for name in (
        "channel_state_to_json",
        "channel_state_from_json",
        "transfer_state_to_json",
        "transfer_state_from_json",
        "update_to_json",
        "update_from_json",
    ):
        METER.patch(serialization, name, SERIALIZE, f"serialization.{name}")
    for name in ("sign_hash", "recover_hash", "sign_withdraw", "address_of_public_key"):
        METER.patch(signing, name, CRYPTO, f"signing.{name}")
    for name in ("encrypt", "decrypt"):
        METER.patch(ecies, name, CRYPTO, f"ecies.{name}")
    METER.patch(encoding, "channel_state_hash", CRYPTO, "encoding.channel_state_hash")
    keccak = METER.wrap(encoding.keccak256, CRYPTO, "keccak256")
    for module in (encoding, payments, incoming, meta, definitions, merkle):
        module.keccak256 = keccak  # type: ignore[attr-defined]
    for name in ("initiate_update", "validate_update"):
        METER.patch(validation, name, PROTOCOL, f"validation.{name}")
    METER.patch(policy, "check_node_proposal", PROTOCOL, "policy.check_node_proposal")
    METER.patch(disputes.ChannelDisputes, "step", WATCHER, "ChannelDisputes.step")
    assert exchange  # imported so its module-level names exist before the clients start


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of this process's threads so far, by kind (their names without numbers)."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    by_kind: dict[str, float] = defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        kind = "event loop" if name == "MainThread" else name.rstrip("0123456789_-() ").split(" (")[0]
        by_kind[kind] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return dict(by_kind)


def process_cpu_ns() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process, no children
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(__import__("signal").SIGTERM, main_task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="connext-client-bench-"))
    log(f"starting the stack in {workdir}: {args.nodes} node processes, Celery worker + beat, anvil")
    stack = routing_bench.start_stack(
        nodes=args.nodes,
        workdir=workdir,
        postgres=args.postgres,
        redis_url=args.redis,
        extra=routing_bench.UNPACED,
        database=args.database,
    )
    profiler = cProfile.Profile() if args.profile else None
    try:
        log(f"connecting and funding {args.clients} clients")
        clients = await routing_bench.connect_clients(stack, args.clients, workdir)
        log("warming up")
        await routing_bench.run_load(clients, seconds=args.warmup, in_flight=1, rate=None)
        pace = f"at {args.rate}/s" if args.rate else f"{args.in_flight} in flight per client"
        log(f"sending for {args.seconds:.0f} s, {pace}")
        METER.reset()
        commits_before = store_commits()
        threads_before = thread_cpu_seconds()
        cpu_before, wall_before = process_cpu_ns(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        results = await routing_bench.run_load(
            clients, seconds=args.seconds, in_flight=args.in_flight, rate=args.rate
        )
        if profiler is not None:
            profiler.disable()
        cpu_used, elapsed = process_cpu_ns() - cpu_before, time.perf_counter() - wall_before
        commits_after = store_commits()
        threads_after = thread_cpu_seconds()
        measured = {
            "cpu_ns": dict(METER.cpu_ns),
            "wall_ns": dict(METER.wall_ns),
            "calls": dict(METER.calls),
            "function_cpu_ns": dict(METER.function_cpu_ns),
            "function_wall_ns": dict(METER.function_wall_ns),
        }
        await asyncio.gather(*(client.close() for client in clients))
    finally:
        stack.stop()
    if profiler is not None:
        profiler.dump_stats(str(workdir / "client.prof"))
        log(f"profile written to {workdir / 'client.prof'} (pstats: its callers and callees)")
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
    completed = len(results.latencies)
    if not completed:
        raise SystemExit(f"[client-bench] no transfer completed: {results.failed[:5]}")
    overhead_ns = 0.0 if args.plain else METER.overhead_ns()
    log("measuring the cryptographic floor on this machine")
    floor_us = protocol_bench.measure_named((protocol_bench.FLOOR,), runs=60)[protocol_bench.FLOOR]
    wrapped_calls = sum(measured["calls"].values())

    def per_transfer(ns: float) -> float:
        return round(ns / completed / 1000, 1)

    parts = {part: per_transfer(measured["cpu_ns"].get(part, 0)) for part in PARTS}
    instrumentation = per_transfer(overhead_ns * wrapped_calls)
    rest = per_transfer(cpu_used) - sum(parts.values()) - instrumentation
    functions = sorted(measured["calls"], key=lambda name: -measured["function_cpu_ns"][name])
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
            "instrumented": not args.plain,
        },
        "completed": completed,
        "failed": results.failures,
        "failed_payments": results.failed[:20],
        "transfers_per_second": round(completed / elapsed, 1),
        "client_cpu_us_per_transfer": per_transfer(cpu_used),
        # The machine's speed drifts: the routed transfer's crypto floor (4 signs, 4 recovers, 4 state
        # hashes) measured in this run, and the clients' CPU in units of it.
        "floor_us": round(floor_us, 1),
        "client_cpu_over_floor": round(cpu_used / completed / 1000 / floor_us, 2),
        # The watcher reads the chain every poll, whatever the rate: its cost per second of the run.
        "watcher_cpu_us_per_second": round(measured["cpu_ns"].get(WATCHER, 0) / elapsed / 1000, 1),
        "by_part_cpu_us_per_transfer": {} if args.plain else {**parts, "the rest": round(rest, 1)},
        "instrumentation_us_per_transfer": instrumentation,
        "wrapped_calls_per_transfer": round(wrapped_calls / completed, 1),
        "store_commits_per_transfer": None
        if commits_before is None or commits_after is None
        else {
            "all": round((commits_after[0] - commits_before[0]) / completed, 2),
            "synced": round((commits_after[1] - commits_before[1]) / completed, 2),
        },
        "wall_us_per_transfer": {part: per_transfer(measured["wall_ns"].get(part, 0)) for part in PARTS},
        # Threads that ended inside the window are missing (to_thread's workers live on).
        "threads_cpu_us_per_transfer": {
            kind: per_transfer((threads_after[kind] - threads_before.get(kind, 0.0)) * 1e9)
            for kind in sorted(threads_after, key=lambda k: threads_before.get(k, 0.0) - threads_after[k])
        },
        "functions": {
            name: {
                "part": METER.function_part[name],
                "calls_per_transfer": round(measured["calls"][name] / completed, 2),
                "cpu_us_per_transfer": per_transfer(measured["function_cpu_ns"][name]),
                "wall_us_per_transfer": per_transfer(measured["function_wall_ns"][name]),
            }
            for name in functions
        },
    }


def log(message: str) -> None:
    print(f"[client-bench] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="daphne processes (default 2)")
    parser.add_argument("--clients", type=int, default=10, help="clients in this process (default 10)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the timed run (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of payments before it (default 3)")
    parser.add_argument("--in-flight", type=int, default=2, help="open payments per client (default 2)")
    parser.add_argument("--rate", type=float, default=None, help="fixed total send rate (per second)")
    parser.add_argument("--plain", action="store_true", help="wrap nothing: the total CPU alone")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions (cProfile)")
    parser.add_argument(
        "--postgres", default="postgres://postgres@127.0.0.1:5432", help="Postgres server URL"
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="bench database (dropped and made anew)")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis URL (flushed)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON result")
    args = parser.parse_args()
    keep_stores()
    if not args.plain:
        instrument()
    report = asyncio.run(main_async(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"client-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"client: {report['completed']} routed transfers ({report['transfers_per_second']}/s),"
        f" {report['client_cpu_us_per_transfer']} µs of client CPU per transfer"
        f" ({report['client_cpu_over_floor']} × the crypto floor of {report['floor_us']} µs)"
    )
    for part, us in report["by_part_cpu_us_per_transfer"].items():
        wall = report["wall_us_per_transfer"].get(part)
        print(f"  {part:<40} {us:>8.1f} µs" + (f"  (wall {wall:.1f} µs)" if wall else ""))
    if not args.plain:
        print(
            f"  {'(the wrappers themselves)':<40} {report['instrumentation_us_per_transfer']:>8.1f} µs"
            f"  ({report['wrapped_calls_per_transfer']} wrapped calls per transfer)"
        )
        print("  costliest functions (calls, CPU µs, wall µs per transfer):")
        for name, row in list(report["functions"].items())[:15]:
            print(
                f"    {name:<40} {row['calls_per_transfer']:>6.2f} {row['cpu_us_per_transfer']:>8.1f}"
                f" {row['wall_us_per_transfer']:>8.1f}"
            )
    threads = ", ".join(f"{kind} {us:.0f}" for kind, us in report["threads_cpu_us_per_transfer"].items())
    print(f"  by thread (µs per transfer): {threads}")
    commits = report["store_commits_per_transfer"]
    if commits is not None:
        print(f"  store commits per transfer: {commits['all']}, of them synced {commits['synced']}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
