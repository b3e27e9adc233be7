"""What the engine's writer session (`channels_app.engine.shard_writer`) costs per write, by how many
writes wait together (make bench-writer; issue #21).

    .venv/bin/python bench/writer_bench.py [--writes 4000] [--concurrency 1,8,64,256]

Each write inserts one row shaped like a stored channel update (a channel, its nonce, a state of about
1.5 kB of JSON, two signatures), each channel writing its nonces in order, `concurrency` channels at
once. One writer session owns every shard; a batch goes out in pipeline mode. Concurrency 1 is a commit per write (today's shape: a
transaction per update); more lets group commit put many writes in one transaction and one WAL flush.
Prints per write the wall time, this process' CPU (psycopg and the writer), the Postgres backend's CPU
(read from /proc: the server is on this machine) and the writes per batch. Postgres as it runs here
(`fsync` and `synchronous_commit` as the server has them; a fresh database, dropped after). JSON to bench/results/writer-*.json. Not a
test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import routing_bench  # noqa: E402

from channels_app.engine.shard_writer import ShardWriter  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BENCH_DB = "connext_writer_bench"
TICKS = os.sysconf("SC_CLK_TCK")


def fresh_database(base_url: str, name: str) -> str:
    url = routing_bench.fresh_database(base_url, name)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE probe_update (channel text NOT NULL, nonce int NOT NULL, state jsonb NOT NULL, "
            "node_signature text NOT NULL, user_signature text NOT NULL, PRIMARY KEY (channel, nonce))"
        )
    return url


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def a_state() -> dict[str, Any]:
    return {
        "balances": [[str(10**18), str(10**17)]] * 2,
        "transfers": [{"id": "0x" + secrets.token_hex(32), "state": "0x" + secrets.token_hex(256)}] * 2,
    }


async def run(url: str, writes: int, concurrency: int) -> dict[str, Any]:
    writer = ShardWriter(url, shards=1)
    await writer.start()
    assert writer._conn is not None
    pid = writer._conn.info.backend_pid
    state = json.dumps(a_state())
    signature = "0x" + "ab" * 65
    per_channel = max(1, writes // concurrency)

    async def channel(name: str) -> None:
        for nonce in range(1, per_channel + 1):

            async def work(cursor: psycopg.AsyncCursor[Any], nonce: int = nonce) -> None:
                await cursor.execute(
                    "INSERT INTO probe_update VALUES (%s, %s, %s, %s, %s)",
                    (name, nonce, state, signature, signature),
                )

            await writer.write(0, work)

    try:
        server_before, batches_before = backend_cpu(pid), writer.batches
        cpu_before, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(channel(f"0x{c:040x}") for c in range(concurrency)))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        server = backend_cpu(pid) - server_before
        batches = writer.batches - batches_before
    finally:
        await writer.close()
    done = per_channel * concurrency
    return {
        "concurrency": concurrency,
        "writes": done,
        "batches": batches,
        "writes_per_batch": round(done / batches, 1),
        "wall_us_per_write": round(wall / done * 1e6, 1),
        "writer_cpu_us_per_write": round(cpu / done * 1e6, 1),
        "postgres_cpu_us_per_write": round(server / done * 1e6, 1),
        "writes_per_second": round(done / wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--concurrency", default="1,8,64,256")
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument("--database", default=BENCH_DB, help="made afresh, and dropped at the end")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    url = fresh_database(args.postgres, args.database)
    with psycopg.connect(url, autocommit=True) as connection:
        settings = {
            name: connection.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("fsync", "synchronous_commit")
        }
    rows = []
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("TRUNCATE probe_update")
        rows.append(asyncio.run(run(url, args.writes, concurrency)))
        print(
            "concurrency {concurrency:>4}: {wall_us_per_write:>7} µs a write wall, "
            "{writer_cpu_us_per_write:>6} µs writer CPU, {postgres_cpu_us_per_write:>6} µs Postgres CPU, "
            "{writes_per_batch:>6} writes a batch, {writes_per_second:>6} writes/s".format(**rows[-1]),
            flush=True,
        )
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "postgres": settings,
        "runs": rows,
    }
    with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"writer-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Written to {path}")


if __name__ == "__main__":
    main()
