"""The engine's writer session (`channels_app.engine.shard_writer`) against this machine's Postgres:
shard ownership by advisory lock, the fence when a session dies, and group commit. Each test makes
its own table in the test database; writers are real connections, and one owner is a real process
killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg.conninfo import make_conninfo

from channels_app.engine.shard_writer import (
    NotOwner,
    OwnershipLost,
    ShardWriter,
    WriteFailed,
    _Pending,
    shard_of,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
TABLE = "shard_writer_probe"


@pytest.fixture
def conninfo() -> Iterator[str]:
    params = connection.get_connection_params()
    info = make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    )
    with psycopg.connect(info, autocommit=True) as setup:
        setup.execute(f"DROP TABLE IF EXISTS {TABLE}")
        setup.execute(
            f"CREATE TABLE {TABLE} (shard int NOT NULL, n int NOT NULL UNIQUE, "
            "tx bigint NOT NULL DEFAULT txid_current())"
        )
    yield info
    with psycopg.connect(info, autocommit=True) as teardown:
        teardown.execute(f"DROP TABLE IF EXISTS {TABLE}")


def insert(shard: int, n: int) -> Callable[[psycopg.AsyncCursor[Any]], Awaitable[int]]:
    async def work(cursor: psycopg.AsyncCursor[Any]) -> int:
        await cursor.execute(f"INSERT INTO {TABLE} (shard, n) VALUES (%s, %s)", (shard, n))  # noqa: S608
        return n

    return work


def stored(info: str) -> list[tuple[int, int, int]]:
    """(shard, n, transaction) of every row, as another session sees them."""
    with psycopg.connect(info, autocommit=True) as other:
        return [tuple(row) for row in other.execute(f"SELECT shard, n, tx FROM {TABLE} ORDER BY n")]  # type: ignore[misc]  # noqa: S608


def test_concurrent_writes_commit_in_one_batch_and_each_returns_once_visible_to_others(conninfo):
    async def scenario() -> tuple[list[int], list[tuple[int, int, int]], int]:
        writer = ShardWriter(conninfo, shards=4)
        await writer.start()
        try:
            assert writer.owned == {0, 1, 2, 3}
            results = await asyncio.gather(*(writer.write(n % 4, insert(n % 4, n)) for n in range(50)))
            seen = await asyncio.to_thread(stored, conninfo)  # every write returned: all committed
            return results, seen, writer.batches
        finally:
            await writer.close()

    results, seen, batches = asyncio.run(scenario())

    assert results == list(range(50))
    assert [n for _, n, _ in seen] == list(range(50))
    assert len({tx for _, _, tx in seen}) == batches <= 2  # one transaction a batch, not one a write


def test_a_write_that_raises_fails_alone_and_the_rest_of_its_batch_commits(conninfo):
    async def scenario() -> list[Any]:
        writer = ShardWriter(conninfo, shards=2)
        await writer.start()
        try:
            writes = [writer.write(0, insert(0, n)) for n in range(10)]
            writes.insert(5, writer.write(1, insert(1, 3)))  # n is unique: 3 is taken in this batch
            return await asyncio.gather(*writes, return_exceptions=True)
        finally:
            await writer.close()

    outcomes = asyncio.run(scenario())

    failed = outcomes.pop(5)
    assert isinstance(failed, WriteFailed)
    assert isinstance(failed.__cause__, psycopg.errors.UniqueViolation)
    assert outcomes == list(range(10))
    assert [(shard, n) for shard, n, _ in stored(conninfo)] == [(0, n) for n in range(10)]


def test_a_shard_is_owned_by_one_session_and_another_cannot_write_for_it(conninfo):
    async def scenario() -> tuple[frozenset[int], frozenset[int], BaseException | None]:
        first = ShardWriter(conninfo, shards=8, wanted=[0, 1, 2, 3, 4])
        second = ShardWriter(conninfo, shards=8)
        await first.start()
        await second.start()
        try:
            refused: BaseException | None = None
            try:
                await second.write(2, insert(2, 1))
            except NotOwner as exc:
                refused = exc
            return first.owned, second.owned, refused
        finally:
            await second.close()
            await first.close()

    first, second, refused = asyncio.run(scenario())

    assert first == {0, 1, 2, 3, 4}
    assert second == {5, 6, 7}
    assert isinstance(refused, NotOwner)
    assert stored(conninfo) == []


def test_when_the_owners_session_dies_its_writes_fail_and_the_shards_move_to_the_other(conninfo):
    """The fence: once the owner's session is gone, nothing more it queued commits (a write in
    flight fails as OwnershipLost), and the other process takes the shards, rebuilding each before
    it accepts writes for it."""

    async def scenario() -> dict[str, Any]:
        acquired: list[frozenset[int]] = []
        lost: list[frozenset[int]] = []

        async def rebuild(shards: frozenset[int]) -> None:
            acquired.append(shards)

        async def gone(shards: frozenset[int]) -> None:
            lost.append(shards)

        # The owner would try to take its shards back on its next tick, racing the standby for
        # them; it waits an hour here, so the standby is the one that takes them.
        owner = ShardWriter(conninfo, shards=4, on_lost=gone, retake_seconds=3600)
        standby = ShardWriter(conninfo, shards=4, on_acquired=rebuild, retake_seconds=0.05)
        await owner.start()
        await standby.start()
        try:
            assert (owner.owned, standby.owned) == ({0, 1, 2, 3}, frozenset())
            await owner.write(1, insert(1, 1))
            assert owner._conn is not None
            pid = owner._conn.info.backend_pid
            with psycopg.connect(conninfo, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            late = await asyncio.gather(owner.write(1, insert(1, 2)), return_exceptions=True)
            await standby.wait_owning({0, 1, 2, 3}, timeout=15)
            after = await standby.write(1, insert(1, 3))
            return {
                "late": late[0],
                "owner_owned": owner.owned,
                "acquired": acquired,
                "lost": lost,
                "after": after,
            }
        finally:
            await standby.close()
            await owner.close()

    outcome = asyncio.run(scenario())

    assert isinstance(outcome["late"], OwnershipLost | NotOwner)
    assert outcome["lost"] == [{0, 1, 2, 3}]
    assert outcome["owner_owned"] == frozenset()  # the dead session took its shards with it
    assert outcome["acquired"] == [{0, 1, 2, 3}]
    assert outcome["after"] == 3
    assert [n for _, n, _ in stored(conninfo)] == [1, 3]


OWNER_PROCESS = """
import asyncio, sys
from channels_app.engine.shard_writer import ShardWriter

async def main():
    writer = ShardWriter(sys.argv[1], shards=4)
    await writer.start()
    print(sorted(writer.owned), flush=True)
    await asyncio.to_thread(sys.stdin.read)  # holds the shards until killed

asyncio.run(main())
"""


def test_a_killed_owner_process_releases_its_shards_to_the_next(conninfo):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_PROCESS, conninfo],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "[0, 1, 2, 3]"

        async def scenario() -> tuple[frozenset[int], frozenset[int], list[int]]:
            standby = ShardWriter(conninfo, shards=4, retake_seconds=0.05)
            await standby.start()
            try:
                before = standby.owned
                owner.send_signal(signal.SIGKILL)
                await standby.wait_owning({0, 1, 2, 3}, timeout=15)
                written = await asyncio.gather(*(standby.write(s, insert(s, s)) for s in range(4)))
                return before, standby.owned, written
            finally:
                await standby.close()

        before, after, written = asyncio.run(scenario())
    finally:
        owner.kill()
        owner.wait(timeout=10)

    assert before == frozenset()
    assert after == {0, 1, 2, 3}
    assert written == [0, 1, 2, 3]


def test_a_write_queued_as_the_session_died_fails_and_is_not_committed_once_the_shards_are_back(conninfo):
    """The writer that lost its session takes its shards back (nobody else wanted them); the write it
    had queued then is not carried into the new session."""

    async def scenario() -> tuple[BaseException | None, frozenset[int]]:
        writer = ShardWriter(conninfo, shards=2, retake_seconds=0.05)
        await writer.start()
        try:
            assert writer._conn is not None
            pid = writer._conn.info.backend_pid
            with psycopg.connect(conninfo, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            late = (await asyncio.gather(writer.write(0, insert(0, 7)), return_exceptions=True))[0]
            await writer.wait_owning({0, 1}, timeout=15)
            return late if isinstance(late, BaseException) else None, writer.owned
        finally:
            await writer.close()

    late, owned = asyncio.run(scenario())

    assert isinstance(late, OwnershipLost)
    assert owned == {0, 1}
    assert stored(conninfo) == []


def test_a_write_stamped_with_an_ended_session_is_refused_at_commit(conninfo):
    """A batch taken from the queue under one session can wait for the connection while the retake
    loop sees that session dead and opens the next: its writes must not commit there (the owner
    has not rebuilt the shard yet). Driven from inside, as that interleaving is the rare one."""

    async def scenario() -> BaseException | None:
        writer = ShardWriter(conninfo, shards=2)
        await writer.start()
        try:
            stale = _Pending(0, writer._epoch - 1, insert(0, 5))
            async with writer._use:
                await writer._commit([stale])
            return stale.done.exception()
        finally:
            await writer.close()

    refused = asyncio.run(scenario())

    assert isinstance(refused, OwnershipLost)
    assert stored(conninfo) == []


def test_the_shard_of_an_address_is_its_value_modulo_the_shards():
    assert shard_of("0x" + "00" * 19 + "41", 64) == 0x41 % 64
    assert shard_of("0xAbCdEf0000000000000000000000000000000003", 4) == 3
    counts = [0] * 8
    for n in range(800):
        counts[shard_of("0x%040x" % (n * 0x9E3779B97F4A7C15 % 2**160), 8)] += 1
    assert min(counts) > 60  # spread over every shard


def test_a_write_whose_caller_stopped_waiting_still_commits_and_the_writer_goes_on(conninfo):
    async def scenario() -> int:
        writer = ShardWriter(conninfo, shards=1)
        await writer.start()
        try:
            abandoned = writer.submit(0, insert(0, 1))
            kept = writer.submit(0, insert(0, 2))
            abandoned.cancel()
            await asyncio.wait_for(kept, 10)
            return await asyncio.wait_for(writer.write(0, insert(0, 3)), 10)
        finally:
            await writer.close()

    assert asyncio.run(scenario()) == 3
    assert [n for _, n, _ in stored(conninfo)] == [1, 2, 3]


def test_writers_sharing_fairly_split_the_shards_and_one_that_leaves_gives_its_share_to_the_rest(conninfo):
    """A writer alone takes every shard; with a second one sharing, the first gives back what is over
    its share (a write queued for those fails and is not committed: nothing is written for a shard
    once it is given back) and the second takes it; when one closes, the other takes its share too."""

    async def scenario() -> None:
        lost: list[frozenset[int]] = []

        async def gone(shards: frozenset[int]) -> None:
            lost.append(shards)

        first = ShardWriter(conninfo, shards=8, fair_share=True, retake_seconds=3600, on_lost=gone)
        second = ShardWriter(conninfo, shards=8, fair_share=True, retake_seconds=3600)
        await first.start()
        await second.start()
        try:
            assert (first.owned, second.owned) == (frozenset(range(8)), frozenset())
            epoch = first.epoch
            queued = first.submit(7, insert(7, 1))
            assert await first.give_back_excess() == frozenset(range(4, 8))
            with pytest.raises(OwnershipLost):
                await queued
            assert stored(conninfo) == []
            assert (first.owned, lost, first.epoch) == (
                frozenset(range(4)),
                [frozenset(range(4, 8))],
                epoch + 1,
            )
            with pytest.raises(NotOwner):
                first.submit(7, insert(7, 2))
            assert await second.take_free_shards() == frozenset(range(4, 8))
            assert await first.give_back_excess() == await second.give_back_excess() == frozenset()
            assert await first.take_free_shards() == frozenset()  # at its share already
            assert await second.write(7, insert(7, 3)) == 3
            await first.close()
            assert await second.take_free_shards() == frozenset(range(4))
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())
