"""What the chosen stack costs per routed transfer before any of our code runs: a benchmark that prints
numbers (not a test).

    .venv/bin/python bench/stack_floor.py [--seconds 8] [--sockets 10]

Measures on this machine, one part at a time (nothing else of ours running):
- a websocket request answered by daphne + Channels (`bench/stack_floor_app.py`), on the event loop
  and after a hop to a worker thread (as the node answers socket requests), and a push through the
  Redis channel layer to a socket: CPU of the daphne process and of the `websockets` clients per frame
  pair;
- for comparison, the `websockets` library's own server answering the same frame (no ASGI);
- one channel update in Postgres in its leanest form (lock the channel row, write its new state, insert
  the update's record, commit with fsync on): CPU of the psycopg caller and of the Postgres backend;
- the protocol work of a routed transfer (`protocol_bench`).

Then adds them up for a routed transfer as the protocol runs it at least (`--requests`, `--pushes`,
`--transactions`; defaults: the sender's create, the receiver's countersign-and-resolve and the
sender's countersign are 3 requests; the two node proposals are 2 pushes; 4 doubly signed states are
4 transactions, each proposal written in the transaction that causes it). The result is the most a
2-core machine could route with this stack if our code cost nothing beyond it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import protocol_bench  # noqa: E402
import psycopg  # noqa: E402
import websockets  # noqa: E402
from routing_bench import cpu_seconds, fresh_database  # noqa: E402

from connext.chain import devchain  # noqa: E402

PYTHON = sys.executable
FLOOR_DB = "connext_floor"
RESULTS = ROOT / "bench" / "results"
STATE_JSON = json.dumps({"state": "ab" * 900})  # about a channel state with a few transfers
# About the size of a node answer carrying a doubly signed state (two signatures, a few transfers).
PAYLOAD = {"state": "0x" + "ab" * 900, "nodeSignature": "0x" + "cd" * 65, "userSignature": "0x" + "ef" * 65}
UPDATE_JSON = json.dumps({"update": "cd" * 400})


def log(message: str) -> None:
    print(f"[floor] {message}", flush=True)


# -- websockets through daphne + Channels, and the websockets library's own server -----------------------------------------------------------


async def _socket_loop(url: str, kind: str, deadline: float, counts: list[int]) -> None:
    async with websockets.connect(url, max_size=None) as socket:
        sent = 0
        while time.perf_counter() < deadline:
            await socket.send(json.dumps({"type": kind, "id": sent}))
            json.loads(await socket.recv())
            sent += 1
        counts.append(sent)


async def _measure_frames(url: str, kind: str, *, sockets: int, seconds: float, server_pid: int) -> dict:
    counts: list[int] = []
    await asyncio.gather(*(_socket_loop(url, kind, time.perf_counter() + 1.0, []) for _ in range(sockets)))
    server_before, client_before = cpu_seconds([server_pid]), time.process_time()
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_socket_loop(url, kind, deadline, counts) for _ in range(sockets)))
    server_used = cpu_seconds([server_pid]) - server_before
    client_used = time.process_time() - client_before
    done = sum(counts)
    return {
        "round_trips": done,
        "per_second": round(done / seconds, 1),
        "server_us": round(1e6 * server_used / done, 1),
        "client_us": round(1e6 * client_used / done, 1),
    }


@contextmanager
def _serving(command: list[str], env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A websocket server started with `command` on a free port (`{port}` in it); yields its URL and
    pid once it answers."""
    port = devchain.free_port()
    server = subprocess.Popen(
        [part.format(port=port) for part in command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"ws://127.0.0.1:{port}/floor"
        for _ in range(200):
            if server.poll() is not None:
                raise RuntimeError(f"{command[2]} exited with {server.returncode}")
            with suppress(OSError):
                asyncio.run(_socket_loop(url, "echo", 0, []))
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{command[2]} did not accept a websocket in 20 s")
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(10)


def _daphne(*, redis_url: str | None) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """daphne serving `stack_floor_app` with the Redis pub/sub channel layer, or without `redis_url`
    the in-memory one (pushes that never leave the process)."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(PYTHONPATH=str(ROOT / "bench"), NODE_LOG_LEVEL="WARNING")
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    command = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "stack_floor_app:application"]
    return _serving(command, env)


def _plain_server(port: int) -> None:
    """For comparison: the `websockets` library's own server answering `echo` frames, no ASGI."""

    async def answer(socket: Any) -> None:
        async for frame in socket:
            message = json.loads(frame)
            await socket.send(json.dumps({"type": "response", "id": message.get("id"), "body": PAYLOAD}))

    async def serve() -> None:
        async with websockets.serve(answer, "127.0.0.1", port, max_size=None):
            await asyncio.get_running_loop().create_future()

    asyncio.run(serve())


def measure_websockets(*, sockets: int, seconds: float, redis_url: str) -> dict[str, dict]:
    results = {}
    servers = [
        (_daphne(redis_url=redis_url), ("echo", "thread", "push"), ""),
        (_daphne(redis_url=None), ("push",), "_in_process"),
        (
            _serving([PYTHON, str(Path(__file__)), "--plain-server", "{port}"], dict(os.environ)),
            ("echo",),
            "_plain",
        ),
    ]
    for server, kinds, suffix in servers:
        with server as (url, pid):
            for kind in kinds:
                log(f"websocket {kind}{suffix}: {sockets} sockets for {seconds:.0f} s")
                results[kind + suffix] = asyncio.run(
                    _measure_frames(url, kind, sockets=sockets, seconds=seconds, server_pid=pid)
                )
    return results


# -- one channel update in Postgres ------------------------------------------------------------------


def measure_postgres(base_url: str, *, seconds: float, channels: int = 100) -> dict:
    url = fresh_database(base_url, FLOOR_DB)
    try:
        with psycopg.connect(url) as connection:
            connection.execute(
                "CREATE TABLE channel (id serial PRIMARY KEY, nonce bigint NOT NULL, state jsonb NOT NULL)"
            )
            connection.execute(
                "CREATE TABLE channel_update (id bigserial PRIMARY KEY, channel_id int NOT NULL"
                " REFERENCES channel, nonce bigint NOT NULL, update jsonb NOT NULL, UNIQUE (channel_id, nonce))"
            )
            connection.execute(
                "INSERT INTO channel (nonce, state) SELECT 1, %s::jsonb FROM generate_series(1, %s)",
                (STATE_JSON, channels),
            )
            connection.commit()
            backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
            run = _update_loop(connection, channels=channels, seconds=1.0)  # warm up
            server_before, client_before = cpu_seconds([backend]), time.thread_time()
            run = _update_loop(connection, channels=channels, seconds=seconds)
            server_used = cpu_seconds([backend]) - server_before
            client_used = time.thread_time() - client_before
    finally:
        with psycopg.connect(f"{base_url}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {FLOOR_DB}")
    return {
        "transactions": run,
        "per_second": round(run / seconds, 1),
        "server_us": round(1e6 * server_used / run, 1),
        "client_us": round(1e6 * client_used / run, 1),
    }


def _update_loop(connection: psycopg.Connection, *, channels: int, seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        channel_id = done % channels + 1
        with connection.transaction():
            nonce = connection.execute(
                "SELECT nonce FROM channel WHERE id = %s FOR UPDATE", (channel_id,), prepare=True
            ).fetchone()[0]
            connection.execute(
                "UPDATE channel SET nonce = %s, state = %s::jsonb WHERE id = %s",
                (nonce + 1, STATE_JSON, channel_id),
                prepare=True,
            )
            connection.execute(
                "INSERT INTO channel_update (channel_id, nonce, update) VALUES (%s, %s, %s::jsonb)",
                (channel_id, nonce + 1, UPDATE_JSON),
                prepare=True,
            )
        done += 1
    return done


# -- the sum -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement (default 8)")
    parser.add_argument("--sockets", type=int, default=10, help="concurrent websockets (default 10)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--requests", type=int, default=3, help="socket requests per routed transfer")
    parser.add_argument("--pushes", type=int, default=2, help="pushes per routed transfer")
    parser.add_argument("--transactions", type=int, default=4, help="update transactions per transfer")
    parser.add_argument("--plain-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        _plain_server(args.plain_server)
        return
    subprocess.run([str(ROOT / "scripts" / "services.sh")], check=True)
    frames = measure_websockets(sockets=args.sockets, seconds=args.seconds, redis_url=args.redis)
    log(f"postgres: one update transaction at a time for {args.seconds:.0f} s")
    database = measure_postgres(args.postgres, seconds=args.seconds)
    log("protocol work of a routed transfer")
    protocol = protocol_bench.measure_named((protocol_bench.NODE_WORK,), runs=60)
    node_protocol_us = protocol[protocol_bench.NODE_WORK]
    floors = {
        # The node as DESIGN.md has it: socket requests served by sync services in worker threads,
        # pushes through the Redis channel layer (the receiver's socket may be on another process).
        "as_designed": _floor(args, frames["thread"], frames["push"], database, node_protocol_us),
        # The least this stack could cost: requests answered on the event loop, every push delivered
        # inside the process.
        "leanest": _floor(args, frames["echo"], frames["push_in_process"], database, node_protocol_us),
    }
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "websocket_frame_pairs": frames,
        "postgres_update_transaction": database,
        "node_protocol_work_us": round(node_protocol_us, 1),
        "per_transfer": {"requests": args.requests, "pushes": args.pushes, "transactions": args.transactions},
        "floors": floors,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"stack-floor-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for name, floor in floors.items():
        print(
            f"stack floor per routed transfer, {name.replace('_', ' ')}: node {floor['node_us'] / 1000:.2f} ms,"
            f" clients {floor['clients_us'] / 1000:.2f} ms, postgres {floor['postgres_us'] / 1000:.2f} ms;"
            f" at most {floor['most_per_second_on_2_cores']:.0f} routed transfers/s on 2 cores if our code"
            " cost nothing more"
        )
    print(f"Written to {out}")


def _floor(args: argparse.Namespace, request: dict, push: dict, database: dict, protocol_us: float) -> dict:
    node_us = (
        args.requests * request["server_us"]
        + args.pushes * push["server_us"]
        + args.transactions * database["client_us"]
        + protocol_us
    )
    # The protocol is symmetric: the two clients together validate and sign what the node does.
    clients_us = args.requests * request["client_us"] + args.pushes * push["client_us"] + protocol_us
    postgres_us = args.transactions * database["server_us"]
    total_us = node_us + clients_us + postgres_us
    return {
        "node_us": round(node_us, 1),
        "clients_us": round(clients_us, 1),
        "postgres_us": round(postgres_us, 1),
        "total_us": round(total_us, 1),
        "most_per_second_on_2_cores": round(2e6 / total_us, 1),
    }


if __name__ == "__main__":
    main()
