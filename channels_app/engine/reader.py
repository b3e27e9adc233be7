"""Reads of the projections the router's decisions and answers need (a payment's rows, whether a
transfer was disputed), on connections of their own: through the writer's session they would wait
behind its batches, and the batches behind them. Committed data only, as the row-lock path's checks
made before its lock read it; a channel itself is read through the writer (`ChannelOwner`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

T = TypeVar("T")


class Reader:
    def __init__(self, conninfo: str, *, size: int = 2) -> None:
        self._pool = AsyncConnectionPool(
            conninfo, min_size=1, max_size=size, kwargs={"autocommit": True}, open=False
        )

    async def open(self) -> None:
        await self._pool.open(wait=True)

    async def close(self) -> None:
        await self._pool.close()

    async def read(self, work: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]]) -> T:
        async with self._pool.connection() as connection, connection.cursor() as cursor:
            return await work(cursor)
