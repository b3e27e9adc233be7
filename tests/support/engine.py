"""The update engine (`channels_app.engine`) in a test: one on the test database, owning every shard,
and calls into Django from inside its event loop."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.db import connection
from psycopg.conninfo import make_conninfo

from channels_app import network
from channels_app.engine.process import Engine, build
from channels_app.engine.shard_writer import LOCK_CLASS
from tests.support import processes
from tests.support.processes import NodeProcess

T = TypeVar("T")


def shards_held() -> list[int]:
    """How many shards each engine session holding any holds on the test database, most first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = %s AND objsubid = 2 GROUP BY pid ORDER BY 1 DESC",
            [LOCK_CLASS],
        )
        return [count for (count,) in cursor.fetchall()]


def reached_at(node: NodeProcess) -> str:
    """The channel-layer address of a node process's engine (its shards' owner), from its log."""
    found = re.search(r"update engine started, .* reached at (\S+)", node.log())
    assert found, "the engine has not started in this process"
    return found.group(1)


def engine_requests(node: NodeProcess, **labels: str) -> float:
    """The process's engine requests (`connext_engine_requests_total`) whose labels include `labels`,
    from its own /metrics with the METRICS_TOKEN it runs with."""
    return processes.metric(node.url, node.env["METRICS_TOKEN"], "connext_engine_requests_total", **labels)


def socket_forwards(node: NodeProcess) -> float:
    """The socket requests (updates and countersignatures) the process's engine forwarded."""
    return sum(engine_requests(node, path=path, outcome="forwarded") for path in ("update", "countersign"))


def database_conninfo() -> str:
    """The test database, as psycopg connects to it."""
    params = connection.get_connection_params()
    return make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    )


async def django(call: Callable[[], T]) -> T:
    """A call into Django (the ORM, the test client) off the event loop, on a connection of its own."""

    def run() -> T:
        try:
            return call()
        finally:
            connection.close()

    return await asyncio.to_thread(run)


async def running(conninfo: str, scenario: Callable[[Engine], Awaitable[T]]) -> T:
    """`scenario` with a started engine owning every one of 4 shards (the node's signer and contracts)."""
    net, signer = await django(lambda: (network.network(), network.node_signer()))
    engine = build(conninfo, net=net, signer=signer, shards=4)
    await engine.start()
    try:
        return await scenario(engine)
    finally:
        await engine.close()


def fixed(update: Any) -> Callable[[Any], Any]:
    """A proposal's builder (`ChannelOwner.propose`) that proposes `update` whatever the channel holds."""
    return lambda _record: update
