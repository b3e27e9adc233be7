"""Closing a client ends all of its background work, including work that starts while it closes."""

from __future__ import annotations

import asyncio

from tests.client.test_validation import offline_client
from tests.protocol.protocol_helpers import funded_state


def test_close_cancels_work_that_starts_while_the_rest_winds_down():
    async def scenario() -> bool:
        client, _ = offline_client(funded_state(), chain_totals=(0, 0))
        forever = asyncio.Event()

        async def follow_up_started_mid_close() -> None:
            await forever.wait()

        async def answer_in_flight() -> None:
            try:
                await forever.wait()
            except asyncio.CancelledError:  # its cleanup starts more work, as an answer's follow-up does
                client._tasks.append(asyncio.ensure_future(follow_up_started_mid_close()))
                raise

        client._background(answer_in_flight())
        await asyncio.sleep(0)
        await asyncio.wait_for(client.close(), 5)
        return all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task())

    assert asyncio.run(scenario())


def test_nothing_new_starts_once_the_client_is_closed():
    async def scenario() -> list[asyncio.Task]:
        client, _ = offline_client(funded_state(), chain_totals=(0, 0))
        await client.close()
        ran: list[str] = []

        async def work() -> None:
            ran.append("ran")

        client._background(work())
        await asyncio.sleep(0.05)
        assert ran == []
        return client._tasks

    assert asyncio.run(scenario()) == []
