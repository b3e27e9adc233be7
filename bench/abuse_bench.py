"""Abuse benchmark: normal clients' payment latency alone, then beside one abusive account.

    .venv/bin/python bench/abuse_bench.py [--clients 6] [--rate 10] [--seconds 20] [--nodes 1]
    (or: make bench-abuse)

Starts the routing bench's stack (Postgres and Redis as they run here, a fresh anvil, the contracts,
daphne processes, a Celery worker with beat), connects K normal clients and routes payments among them
at a fixed total rate, twice for the same length: alone, then while one abusive account floods the
node over every edge it has, each with a bounded number of concurrent loops (loopback only):

- its authenticated socket: update requests (malformed bodies) as fast as the node answers;
- REST as that account: reads of its channel;
- REST unauthenticated: login nonces;
- unauthenticated sockets opened and left idle.

The abuser runs in a process of its own at the lowest CPU priority (`--abuser-nice`, default 19): a
real abuser's CPU is on his own machine, and on a shared two-core box an abuser in the clients' event
loop or at equal priority measures the bench, not the node. It still floods as fast as the spare CPU
lets it, so what the node spends answering it is all in the measure.

Prints and writes to bench/results/abuse-*.json: p50/p95/p99 of the normal payments in each phase,
their ratio (the goal: the p99 beside the abuser at most 2x the p99 alone), what the abuser sent and how
the node answered it (status counts: 429s are the rate limits at work).

Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import multiprocessing
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import routing_bench  # noqa: E402
from routing_bench import connect_clients, log, percentile, run_load, start_stack  # noqa: E402

LIMIT_PREFIXES = ("RATE_LIMIT_", "WS_", "API_MAX_", "FAIR_SHARE")  # the edge limits, when set for the run
EDGES = ("socket", "rest", "login", "idle")


def _latencies(results: routing_bench.Results) -> dict[str, object]:
    values = results.latencies
    started = [done - latency for done, latency in zip(results.finished_at, values, strict=True)]
    phase = min(started, default=0.0)
    slowest = sorted(zip(values, started, strict=True), reverse=True)[: max(1, len(values) // 100)]
    return {
        "completed": len(values),
        # The slowest 1 %: when each started (seconds into the phase) and how long it took, to tell a
        # burst (one moment) from a slower node (spread out).
        "slowest": [{"at_s": round(at - phase, 2), "ms": round(ms * 1000, 1)} for ms, at in slowest],
        "failed": results.failures,
        "failed_payments": results.failed[:10],
        **{
            name: round(percentile(values, q) * 1000, 1) if values else None
            for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
        },
    }


class Abuser:
    """One account hammering the node; counts what it sent and the statuses it got back."""

    def __init__(
        self,
        base_url: str,
        ws_url: str,
        token: str,
        address: str,
        *,
        loops: int,
        idle_sockets: int,
        edges: set[str],
    ) -> None:
        self.base_url = base_url
        self.ws_url = ws_url
        self.token = token
        self.address = address
        self.loops = loops
        self.idle_sockets = idle_sockets
        self.edges = edges
        self.statuses: collections.Counter[str] = collections.Counter()
        self.sent = 0

    async def run(self, seconds: float, ready: Callable[[], None] = lambda: None) -> None:
        """Flood for `seconds`; `ready()` once every edge is at full strength (idle sockets open)."""
        self.ready = ready
        end = time.monotonic() + seconds
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            loops = range(self.loops)
            tasks = [
                *(self._socket_flood(session, end) for _ in loops if "socket" in self.edges),
                *(self._rest_flood(session, end, authenticated=True) for _ in loops if "rest" in self.edges),
                *(
                    self._rest_flood(session, end, authenticated=False)
                    for _ in loops
                    if "login" in self.edges
                ),
                *([self._idle_sockets(session, end)] if "idle" in self.edges else []),
            ]
            if "idle" not in self.edges:
                ready()
            await asyncio.gather(*tasks)

    async def _socket_flood(self, session: aiohttp.ClientSession, end: float) -> None:
        while time.monotonic() < end:
            try:
                async with session.ws_connect(self.ws_url) as ws:
                    await ws.send_json({"type": "auth", "token": self.token})
                    request_id = 0
                    while time.monotonic() < end:
                        request_id += 1
                        await ws.send_json(
                            {
                                "type": "request",
                                "id": request_id,
                                "method": "POST",
                                "path": "/api/channel/updates",
                                "body": {"update": {"type": "resolve"}, "signature": "0x00"},
                            }
                        )
                        self.sent += 1
                        message = await ws.receive(timeout=10)
                        if message.type != aiohttp.WSMsgType.TEXT:
                            self.statuses["socket closed"] += 1
                            break
                        frame = json.loads(message.data)
                        while frame.get("type") not in ("response", "error"):
                            frame = json.loads((await ws.receive(timeout=10)).data)
                        self.statuses[f"socket {frame.get('status', frame.get('code'))}"] += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.statuses[f"socket {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)

    async def _rest_flood(self, session: aiohttp.ClientSession, end: float, *, authenticated: bool) -> None:
        if authenticated:
            path, headers = "/api/channel", {"Authorization": f"Bearer {self.token}"}
        else:
            path, headers = f"/api/auth/nonce?address={self.address}", {}
        kind = "rest account" if authenticated else "rest anonymous"
        while time.monotonic() < end:
            try:
                async with session.get(self.base_url + path, headers=headers) as response:
                    await response.read()
                    self.sent += 1
                    self.statuses[f"{kind} {response.status}"] += 1
                    if response.status == 429:  # the limit says when; a flood does not listen
                        await asyncio.sleep(0)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.statuses[f"{kind} {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)

    async def _idle_sockets(self, session: aiohttp.ClientSession, end: float) -> None:
        """Sockets that never authenticate: the node should close them after its auth timeout."""
        sockets = []
        for _ in range(self.idle_sockets):
            with suppress(aiohttp.ClientError, TimeoutError):
                sockets.append(await session.ws_connect(self.ws_url))
        self.ready()
        while time.monotonic() < end:
            await asyncio.sleep(0.5)
        closed = 0
        for ws in sockets:  # a close frame the node sent is only seen once read
            with suppress(TimeoutError, aiohttp.ClientError):
                while not ws.closed and (await ws.receive(timeout=0.2)).type not in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    pass
            closed += ws.closed or ws.close_code is not None
        self.statuses["idle sockets closed by the node"] = closed
        for ws in sockets:
            await ws.close()


def _abuser_process(settings: dict, seconds: float, answers: multiprocessing.Queue, nice: int) -> None:
    """The abuser's own process: lowest priority, its own event loop; says when it is at full
    strength (None), then sends back what it counted."""
    os.nice(nice)
    abuser = Abuser(**settings)
    asyncio.run(abuser.run(seconds, ready=lambda: answers.put(None)))
    answers.put({"sent": abuser.sent, "answers": dict(sorted(abuser.statuses.items()))})


async def main_async(args: argparse.Namespace) -> dict:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="connext-abuse-"))
    log(f"starting the stack in {workdir}: {args.nodes} node processes, Celery worker + beat, anvil")
    stack = start_stack(nodes=args.nodes, workdir=workdir, postgres=args.postgres, redis_url=args.redis)
    try:
        log(f"connecting and funding {args.clients} clients and the abuser")
        clients = await connect_clients(stack, args.clients + 1, workdir)
        gc.freeze()  # the bench's own imports (web3, the SDK) out of its collector's full passes
        abusive, clients = clients[-1], clients[:-1]
        log("warming up")
        await run_load(clients, seconds=3, in_flight=1, rate=None)
        log(f"alone: {args.rate}/s for {args.seconds:.0f} s")
        alone = await run_load(clients, seconds=args.seconds, in_flight=1, rate=args.rate)
        settings = {
            "base_url": stack.node_urls[0],
            "ws_url": abusive.api.ws_url,
            "token": abusive.api.token,
            "address": abusive.address,
            "loops": args.abuse_loops,
            "idle_sockets": args.idle_sockets,
            "edges": set(args.edges.split(",")),
        }
        log(
            f"beside the abuser ({args.abuse_loops} loops per edge, {args.idle_sockets} idle sockets, "
            f"nice {args.abuser_nice})"
        )
        context = multiprocessing.get_context("spawn")
        answers = context.Queue()
        process = context.Process(
            target=_abuser_process, args=(settings, args.seconds + 5, answers, args.abuser_nice)
        )
        process.start()
        try:
            await asyncio.to_thread(answers.get, timeout=60)  # the flood is at full strength
            await asyncio.sleep(1)
            beside = await run_load(clients, seconds=args.seconds, in_flight=1, rate=args.rate)
            abused = await asyncio.to_thread(answers.get, timeout=60)
        finally:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        await asyncio.gather(*(client.close() for client in [*clients, abusive]))
    finally:
        stack.stop()
    alone_numbers, beside_numbers = _latencies(alone), _latencies(beside)
    alone_p99, beside_p99 = alone_numbers["p99"], beside_numbers["p99"]
    ratio = (
        round(beside_p99 / alone_p99, 2)
        if isinstance(alone_p99, float) and isinstance(beside_p99, float)
        else None
    )
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {
            "limits": {
                name: os.environ[name] for name in sorted(os.environ) if name.startswith(LIMIT_PREFIXES)
            },
            "node_processes": args.nodes,
            "clients": args.clients,
            "rate": args.rate,
            "seconds": args.seconds,
            "abuse_loops_per_edge": args.abuse_loops,
            "idle_sockets": args.idle_sockets,
            "edges": args.edges,
            "abuser_nice": args.abuser_nice,
        },
        "alone_ms": alone_numbers,
        "beside_abuser_ms": beside_numbers,
        "p99_ratio": ratio,
        "abuser": abused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes", type=int, default=1, help="daphne processes (default 1: one shared victim)"
    )
    parser.add_argument("--clients", type=int, default=6, help="normal clients (default 6)")
    parser.add_argument("--rate", type=float, default=10, help="normal payments per second (default 10)")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase (default 20)")
    parser.add_argument(
        "--abuse-loops", type=int, default=4, help="concurrent loops per abused edge (default 4)"
    )
    parser.add_argument(
        "--idle-sockets", type=int, default=50, help="unauthenticated idle sockets (default 50)"
    )
    parser.add_argument(
        "--edges",
        default=",".join(EDGES),
        help=f"what the abuser floods, comma-separated (default {','.join(EDGES)})",
    )
    parser.add_argument(
        "--abuser-nice", type=int, default=19, help="the abuser process's niceness (default 19)"
    )
    parser.add_argument(
        "--postgres", default="postgres://postgres@127.0.0.1:5432", help="Postgres server URL"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="Redis URL (flushed)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON result")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"abuse-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"p99 alone {result['alone_ms']['p99']} ms, beside the abuser {result['beside_abuser_ms']['p99']} ms")
    log(f"ratio {result['p99_ratio']} (goal: at most 2); written to {path}")


if __name__ == "__main__":
    main()
