"""Closing a client ends all of its background work, including work that starts while it closes."""

from __future__ import annotations

import asyncio
import contextlib

from connext.client.node_api import NodeApi
from connext.protocol.signing import Signer
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
                client._core.tasks.append(asyncio.ensure_future(follow_up_started_mid_close()))
                raise

        client._core.background(answer_in_flight())
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

        client._core.background(work())
        await asyncio.sleep(0.05)
        assert ran == []
        return client._core.tasks

    assert asyncio.run(scenario()) == []


def test_a_request_cancelled_as_its_answer_arrives_stays_cancelled():
    """Python 3.11's `asyncio.wait_for` returns the result when the cancellation and the answer land in
    the same loop step, swallowing the cancellation: the cancelled task (the client's inbox, say) ran on,
    and `close()` waited for it forever (seen as a hung benchmark)."""

    async def scenario() -> bool:
        sent: list[dict] = []

        async def send(frame: dict) -> None:
            sent.append(frame)

        api = NodeApi("http://127.0.0.1:1", Signer(b"\x01" * 32), session=None)  # type: ignore[arg-type]
        api.attach_socket(send)
        request = asyncio.ensure_future(api.post("/api/channel/updates", {}))
        while not sent:
            await asyncio.sleep(0)
        api.socket_response({"type": "response", "id": sent[0]["id"], "status": 200, "body": {}})
        request.cancel()
        try:
            await request
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario())


def test_close_ends_work_that_swallowed_its_first_cancellation():
    async def scenario() -> bool:
        client, _ = offline_client(funded_state(), chain_totals=(0, 0))
        forever = asyncio.Event()

        async def stubborn() -> None:
            with contextlib.suppress(asyncio.CancelledError):  # as a library's race may do: carry on
                await forever.wait()
            await forever.wait()

        client._core.background(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(client.close(), 10)
        return all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task())

    assert asyncio.run(scenario())
