"""The writer session of a node process: it owns shards of channels and commits the owner's writes
for them in batches (group commit). Plain psycopg on the event loop; no Django.

**Ownership.** A shard (a slice of the users, `shard_of(address)`) is owned by the session holding
its Postgres advisory lock (session level, `LOCK_CLASS`, shard). One dedicated connection per process
holds the locks of every shard the process owns, and every write for those shards goes through that
same connection. So:

- No two sessions hold one shard's lock at once (Postgres' guarantee), and a session-level lock is
  held until its session ends.
- A batch that commits was committed by the session holding the locks of its shards, so no other
  process owned them then. A process whose session died (its locks released) commits nothing more:
  its commits would go through that session. Two processes therefore never both commit for a shard.
- Postgres aborts a dead session's open transaction before it releases its locks, so a new owner
  that takes the lock reads everything the old owner committed, and nothing it did not.
- A write made under one session is never committed under the next (each session is an `epoch`):
  after a loss the owner rebuilds the shard before it writes for it again (`on_acquired`).

What the owner adds on top (docs/protocol.md, "The update engine"): nothing it signs is revealed
(answered or pushed) before `write` returned, so a write that failed (`OwnershipLost`, whose outcome
may be either) loses only signatures nobody has seen; whatever did commit, the next owner reads.

**Sharing.** A writer made with `fair_share` shares the shards with the other such writers on the
database: each holds the shared advisory lock `MEMBER_CLASS` for its session, so the number of
processes sharing is the number of holders. It takes at most its share, ceil(shards / members), and
gives back what it holds over its share (a process that joins is given half, one that dies leaves
its shards to the rest). Giving shards back is ownership ending without the session ending: under
`_use` (so no batch is in flight) the shards leave `owned` and the epoch moves on, so every write and
every read made before fails or is read again, exactly as after a lost session; only then are the
locks released.

**Group commit.** Writes queue while a batch runs; the next batch takes all of them (up to
`max_batch`) in one transaction: one round of BEGIN/COMMIT and one WAL flush for the lot. A write
whose work raises fails alone: the batch is rolled back and its writes are run again one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

logger = logging.getLogger(__name__)

SHARDS = 64
# How long a closing writer waits to let go of its locks before it just closes its session.
RELEASE_SECONDS = 2.0
# The advisory lock space of shard ownership: pg_try_advisory_lock(LOCK_CLASS, shard).
LOCK_CLASS = 0x636E7874  # "cnxt"
# Held shared, (MEMBER_CLASS, 0), by the session of every writer sharing the shards fairly.
MEMBER_CLASS = 0x636E786D  # "cnxm"
MAX_BATCH = 256
RETAKE_SECONDS = 1.0

T = TypeVar("T")
Work = Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]]


class WriterError(Exception):
    pass


class NotOwner(WriterError):
    """This process does not own the shard: the write was not queued (its owner must make it)."""

    def __init__(self, shard: int) -> None:
        super().__init__(f"this process does not own shard {shard}")
        self.shard = shard


class OwnershipLost(WriterError):
    """The writer's session ended (or the writer closed) before the write was known committed: it
    may or may not have committed, and this process owns the shard no more."""


class WriteFailed(WriterError):
    """The write's own work raised (its cause): nothing of it was committed; other writes were."""


def shard_of(address: str, shards: int = SHARDS) -> int:
    """The shard of a user's address (addresses are uniform, so their low bits spread evenly)."""
    return int(address, 16) % shards


@dataclass
class _Pending:
    shard: int
    epoch: int
    work: Work[Any]
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def fail(self, error: BaseException) -> None:
        if not self.done.done():  # its caller may have stopped waiting
            self.done.set_exception(error)


Shards = Callable[[frozenset[int]], Awaitable[None]]


class ShardWriter:
    """Owns what it can of `wanted` shards (all by default) and commits writes for them.

    `on_acquired(shards)` runs before a newly taken shard accepts writes (the owner rebuilds it
    there); `on_lost(shards)` after the session holding them ended. Shards another process holds are
    tried again every `retake_seconds`, so a dead owner's shards move here. With `fair_share` it takes
    and keeps only its share of them (the module's docstring, "Sharing"). With `reached_at` (where
    its process is reached, `engine.relay`) it records that for each shard it takes
    (`ShardOwner`), through the session holding the shard's lock, and beside it `socket_url`, where
    users reach the process's websocket (blank: not said)."""

    def __init__(
        self,
        conninfo: str,
        *,
        shards: int = SHARDS,
        wanted: Iterable[int] | None = None,
        max_batch: int = MAX_BATCH,
        retake_seconds: float = RETAKE_SECONDS,
        fair_share: bool = False,
        reached_at: str | None = None,
        socket_url: str = "",
        on_acquired: Shards | None = None,
        on_lost: Shards | None = None,
    ) -> None:
        self._conninfo = conninfo
        self.shards = shards
        self._wanted = frozenset(range(shards) if wanted is None else wanted)
        if not self._wanted <= frozenset(range(shards)):
            raise ValueError(f"wanted shards must lie in 0..{shards - 1}")
        self._max_batch = max_batch
        self._retake_seconds = retake_seconds
        self._fair_share = fair_share
        self._reached_at = reached_at
        self._socket_url = socket_url
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._owned: frozenset[int] = frozenset()
        self._owned_changed = asyncio.Event()
        self._epoch = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # One statement or transaction at a time on the session: a lock query must never land
        # inside a batch's transaction (nor fail with it).
        self._use = asyncio.Lock()
        self._inflight: list[_Pending] = []
        self._closed = False
        self.batches = 0  # committed batches, for benches and tests

    @property
    def reached_at(self) -> str | None:
        return self._reached_at

    @property
    def owned(self) -> frozenset[int]:
        return self._owned

    def owns(self, shard: int) -> bool:
        return shard in self._owned

    @property
    def epoch(self) -> int:
        """The session's number: what was read under one epoch is not known current under the next
        (the shards were lost in between and may have been written by another owner)."""
        return self._epoch

    async def start(self) -> None:
        """Connect and take every wanted shard nobody holds; then keep trying the rest."""
        await self.take_free_shards()
        self._tasks = [
            asyncio.ensure_future(self._commit_loop()),
            asyncio.ensure_future(self._retake_loop()),
        ]

    async def close(self) -> None:
        """Stop: queued writes fail with `OwnershipLost`, the session ends (its locks with it)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        closed = OwnershipLost("the writer closed")
        for pending in self._inflight:
            pending.fail(closed)
        self._fail_queued(closed)
        self._own(frozenset())
        await self._end_session(release=True)

    async def write(self, shard: int, work: Work[T]) -> T:
        """Run `work(cursor)` in the next batch and return its result once that batch committed.
        `NotOwner` at once when this process does not own `shard`."""
        result: T = await self.submit(shard, work)
        return result

    def submit(self, shard: int, work: Work[T]) -> asyncio.Future[T]:
        """Queue `work` for the next batch now; the future resolves as `write` returns. A caller that
        stops waiting (cancels it) does not take the write back: it commits with its batch."""
        if self._closed or shard not in self._owned:
            raise NotOwner(shard)
        pending = _Pending(shard, self._epoch, work)
        self._queue.put_nowait(pending)
        return pending.done

    async def read(self, shard: int, work: Work[T]) -> tuple[T, int]:
        """Run `work(cursor)` on the session now, between batches (no transaction of its own: one
        statement sees one snapshot), and return its result with the epoch it was read in. `NotOwner`
        when this process does not own `shard`; `OwnershipLost` when the session ended under it."""
        if self._closed or shard not in self._owned:
            raise NotOwner(shard)
        async with self._use:
            conn, epoch = self._conn, self._epoch
            if conn is None or conn.closed or shard not in self._owned:
                raise OwnershipLost("the writer's session ended")
            try:
                async with conn.cursor() as cursor:
                    return await work(cursor), epoch
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                await self._lose(exc)
                raise OwnershipLost(f"the writer's session ended: {exc}") from exc

    async def wait_owning(self, shards: Iterable[int], timeout: float) -> None:
        """Until this process owns every one of `shards` (a standby waiting for a dead owner's);
        `TimeoutError` after `timeout` seconds."""
        wanted = frozenset(shards)
        async with asyncio.timeout(timeout):
            while not wanted <= self._owned:
                self._owned_changed.clear()
                await self._owned_changed.wait()

    async def take_free_shards(self) -> frozenset[int]:
        """One pass: take the wanted shards this session does not hold and nobody else does (up to
        its share, sharing fairly); the ones taken (after `on_acquired` ran for them)."""
        if self._closed:
            return frozenset()
        async with self._use:
            conn = await self._session()
            missing = sorted(self._wanted - self._owned)
            room = len(missing)
            if self._fair_share:
                room = min(room, await self._share(conn) - len(self._owned))
            if room <= 0:
                return frozenset()
            if room == len(missing):
                cursor = await conn.execute(
                    "SELECT s FROM unnest(%s::int[]) AS s WHERE pg_try_advisory_lock(%s, s)",
                    (missing, LOCK_CLASS),
                )
                taken = frozenset(int(row[0]) for row in await cursor.fetchall())
            else:
                taken = await self._take_some(conn, missing, room)
            if taken:
                await self._announce(conn, taken)
        if taken:
            if self._on_acquired is not None:
                try:
                    await self._on_acquired(taken)
                except BaseException:
                    # Not rebuilt, so not owned: let the locks go for whoever can.
                    async with self._use:
                        await conn.execute(
                            "SELECT pg_advisory_unlock(%s, s) FROM unnest(%s::int[]) AS s",
                            (LOCK_CLASS, sorted(taken)),
                        )
                    raise
            self._own(self._owned | taken)
            logger.info("owning shards %s (epoch %s)", sorted(taken), self._epoch)
        return taken

    async def give_back_excess(self) -> frozenset[int]:
        """Sharing fairly: give back the shards held over this writer's share (the highest), for the
        others to take; the ones given back (after `on_lost` ran for them)."""
        if self._closed or not self._fair_share:
            return frozenset()
        async with self._use:  # no batch in flight, and none starts before the shards are gone
            conn = await self._session()
            excess = len(self._owned) - await self._share(conn)
            if excess <= 0:
                return frozenset()
            given = frozenset(sorted(self._owned)[-excess:])
            self._own(self._owned - given)
            # Everything made under the ownership that ends here is stale: queued writes fail at
            # commit, reads are read again (the epoch is the owner's test of fresh).
            self._epoch += 1
            await conn.execute(
                "SELECT pg_advisory_unlock(%s, s) FROM unnest(%s::int[]) AS s", (LOCK_CLASS, sorted(given))
            )
        logger.info("gave back shards %s to share them (epoch %s)", sorted(given), self._epoch)
        if self._on_lost is not None:
            await self._on_lost(given)
        return given

    async def announce(self) -> None:
        """Record again where this writer is reached for every shard it owns (a row deleted or
        overwritten by anyone else is put right within a pass of the retake loop)."""
        if self._closed or self._reached_at is None:
            return
        async with self._use:
            conn = await self._session()
            if self._owned:
                await self._announce(conn, self._owned)

    async def _announce(self, conn: psycopg.AsyncConnection[Any], shards: frozenset[int]) -> None:
        if self._reached_at is None:
            return
        await conn.execute(
            "INSERT INTO channels_app_shardowner AS o (shard, channel, socket_url, since)"
            " SELECT s, %s, %s, now() FROM unnest(%s::int[]) AS s"
            " ON CONFLICT (shard) DO UPDATE SET"
            " channel = EXCLUDED.channel, socket_url = EXCLUDED.socket_url, since = EXCLUDED.since"
            " WHERE (o.channel, o.socket_url) IS DISTINCT FROM (EXCLUDED.channel, EXCLUDED.socket_url)",
            (self._reached_at, self._socket_url, sorted(shards)),
        )

    async def _share(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """This writer's fair share: the shards over the writers sharing them, rounded up."""
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = %s AND objid::bigint = 0 AND objsubid = 2",
            (MEMBER_CLASS,),
        )
        row = await cursor.fetchone()
        members = max(1, int(row[0]) if row else 1)
        return -(-self.shards // members)

    @staticmethod
    async def _take_some(
        conn: psycopg.AsyncConnection[Any], candidates: list[int], count: int
    ) -> frozenset[int]:
        """Up to `count` of `candidates` nobody holds, tried one at a time so none is taken past it."""
        taken: set[int] = set()
        for shard in candidates:
            if len(taken) == count:
                break
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, shard))
            row = await cursor.fetchone()
            if row and row[0]:
                taken.add(shard)
        return frozenset(taken)

    # -- inside --------------------------------------------------------------------------------------

    def _own(self, shards: frozenset[int]) -> None:
        self._owned = shards
        self._owned_changed.set()

    async def _session(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            self._epoch += 1
            if self._fair_share:
                await self._conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", (MEMBER_CLASS,))
        return self._conn

    async def _end_session(self, *, release: bool = False) -> None:
        """Close the session. With `release` its locks are let go first: the server drops a closed
        session's locks only once its backend has noticed, so another writer asking right after the
        close could still find the shards held."""
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        if release:
            with contextlib.suppress(psycopg.Error, TimeoutError):  # then the close lets them go
                await asyncio.wait_for(conn.execute("SELECT pg_advisory_unlock_all()"), RELEASE_SECONDS)
        await conn.close()

    async def _lose(self, why: BaseException) -> None:
        """The session ended: every shard with it, and every write queued under it."""
        lost = self._owned
        self._own(frozenset())
        await self._end_session()
        self._fail_queued(OwnershipLost(f"the writer's session ended: {why}"))
        if lost:
            logger.warning("lost shards %s: %s", sorted(lost), why)
            if self._on_lost is not None:
                await self._on_lost(lost)

    def _fail_queued(self, error: OwnershipLost) -> None:
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            pending.fail(error)

    async def _retake_loop(self) -> None:
        while True:
            await asyncio.sleep(self._retake_seconds)
            try:
                await self.give_back_excess()
                await self.take_free_shards()
                await self.announce()
            except psycopg.Error as exc:
                await self._lose(exc)
            except Exception:
                logger.exception("taking free shards failed; trying again in %ss", self._retake_seconds)

    async def _commit_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._inflight = batch
            async with self._use:
                await self._commit(batch)
            self._inflight = []

    async def _commit(self, batch: list[_Pending]) -> None:
        stale = [p for p in batch if p.epoch != self._epoch or p.shard not in self._owned]
        for pending in stale:
            pending.fail(OwnershipLost("the write was made under a session that ended"))
        batch = [p for p in batch if p.epoch == self._epoch and p.shard in self._owned]
        if not batch:
            return
        try:
            results = await self._run(batch)
        except _SessionEnded as ended:
            for pending in batch:
                pending.fail(OwnershipLost(f"the writer's session ended: {ended.cause}"))
            await self._lose(ended.cause)
            return
        except _WorkRaised as raised:
            if len(batch) == 1:
                error = WriteFailed(f"the write failed: {raised.cause!r}")
                error.__cause__ = raised.cause
                batch[0].fail(error)
                return
            for pending in batch:  # one by one: the one that raises fails alone
                await self._commit([pending])
            return
        self.batches += 1
        for pending, result in zip(batch, results, strict=True):
            if not pending.done.done():  # its caller may have stopped waiting
                pending.done.set_result(result)

    async def _run(self, batch: list[_Pending]) -> list[Any]:
        """The batch's works in one transaction, in pipeline mode: their statements go out without
        waiting for each answer (a work that reads a result waits for that one). An error may
        therefore surface after the work that caused it; a batch that fails is run again one by one
        (`_commit`), where it is the write's own."""
        conn = self._conn
        if conn is None or conn.closed:
            raise _SessionEnded(OwnershipLost("no session"))
        results: list[Any] = []
        try:
            # One write alone gains nothing from the pipeline and pays its syncs.
            pipeline = conn.pipeline() if len(batch) > 1 else contextlib.nullcontext()
            async with pipeline, conn.transaction(), conn.cursor() as cursor:
                for pending in batch:
                    results.append(await pending.work(cursor))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise _SessionEnded(exc) from exc
        except Exception as exc:
            if conn.closed:
                raise _SessionEnded(exc) from exc
            raise _WorkRaised(exc) from exc
        return results


class _SessionEnded(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _WorkRaised(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause
