"""When a node process starts the update engine (`channels_app.engine.process.process_engine`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from eth_account import Account

from channels_app import network
from channels_app.engine import process
from channels_app.engine.shard_writer import shard_of
from channels_app.models import AuthToken
from channels_app.services import auth
from connext_site.asgi import application
from tests.support.engine import database_conninfo, django, running


def test_the_engine_is_off_by_default_and_stays_off_on_a_database_other_than_postgres(settings, monkeypatch):
    assert settings.UPDATE_ENGINE is False
    assert asyncio.run(process.process_engine()) is None
    settings.UPDATE_ENGINE = True
    monkeypatch.setattr(process, "_starting", None)
    # The embedded default: SQLite has no advisory locks to fence the writer with.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.sqlite3")
    assert asyncio.run(process.process_engine()) is None
    assert process._engine is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("w3")  # the node's network, which the engine is built on
def test_the_engine_checks_a_sockets_token_as_the_row_lock_path_does_and_a_revoked_one_fails_at_once():
    """`Engine.token_address`, read on the engine's own connection: a valid token's address, and the
    row-lock path's refusals for a token never issued, expired, or revoked (logged out) a moment ago."""
    user = Account.create().address
    good, old = "good-token-" + "x" * 32, "old-token-" + "x" * 32
    AuthToken.objects.create(
        address=user, key_hash=auth.token_hash(good), expires_at=timezone.now() + timedelta(hours=1)
    )
    AuthToken.objects.create(
        address=user, key_hash=auth.token_hash(old), expires_at=timezone.now() - timedelta(seconds=1)
    )

    async def scenario(engine: process.Engine) -> list[str]:
        seen = [await engine.token_address(good)]
        for token in ("never-issued", old):
            with pytest.raises(auth.AuthError) as refused:
                await engine.token_address(token)
            seen.append(refused.value.code)
        await django(lambda: auth.auth_token_revoke(token=good))
        with pytest.raises(auth.AuthError) as refused:
            await engine.token_address(good)
        return [*seen, refused.value.code]

    seen = asyncio.run(running(database_conninfo(), scenario))
    assert seen == [user, "invalid_token", "token_expired", "invalid_token"]
    for token, code in (("never-issued", "invalid_token"), (old, "token_expired")):  # the same as here
        with pytest.raises(auth.AuthError) as refused:
            auth.auth_token_address(token=token)
        assert refused.value.code == code


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("w3")  # the node's network, which the engines are built on
def test_a_socket_is_told_where_its_shards_owner_is_reached_when_it_logs_in_and_once_the_shard_moves(
    settings, monkeypatch
):
    """Two engines on the channel layer, each saying where its socket is reached. A socket logging in
    while this process's engine owns every shard is told nothing; once the other engine joins and
    takes its half, a socket of a user of a shard it took is told, once, after its next request (a
    `move` frame, after the answer forwarded from the owner), and a new socket of that user is told
    when it logs in. A user of a shard still owned here is told nothing."""
    settings.UPDATE_ENGINE = True
    here_url, there_url = "ws://127.0.0.1:9001/ws/v1", "ws://127.0.0.1:9002/ws/v1"
    users: dict[int, str] = {}
    while len(users) < 4:
        user = Account.create().address
        users.setdefault(shard_of(user, 4), user)
    tokens = {user: f"token-{shard}-" + "x" * 32 for shard, user in users.items()}
    for user, token in tokens.items():
        AuthToken.objects.create(
            address=user, key_hash=auth.token_hash(token), expires_at=timezone.now() + timedelta(hours=1)
        )
    countersign = {"type": "request", "method": "POST", "path": process.COUNTERSIGN}
    body = {"nonce": "1", "signature": "0x" + "11" * 65}

    async def log_in(user: str) -> tuple[WebsocketCommunicator, dict[str, Any]]:
        socket = WebsocketCommunicator(application, "/ws/v1")
        assert (await socket.connect())[0]
        await socket.send_json_to({"type": "auth", "token": tokens[user], "id": "auth"})
        return socket, await socket.receive_json_from(timeout=10)

    async def engine(conninfo: str, layer: Any, socket_url: str) -> process.Engine:
        net, signer = await django(lambda: (network.network(), network.node_signer()))
        address = await layer.new_channel(prefix="engine.")
        started = process.build(
            conninfo, net=net, signer=signer, shards=4, layer=layer, address=address, socket_url=socket_url
        )
        await started.start()
        return started

    async def scenario() -> None:
        layer = get_channel_layer()
        conninfo = database_conninfo()
        here = await engine(conninfo, layer, here_url)
        monkeypatch.setattr(process, "_engine", here)  # this process's engine
        there: process.Engine | None = None
        sockets: list[WebsocketCommunicator] = []
        try:
            early: dict[int, WebsocketCommunicator] = {}
            for shard, user in users.items():  # one socket a user, all shards owned here
                early[shard], hello = await log_in(user)
                sockets.append(early[shard])
                assert hello["type"] == "authenticated"
                assert "socketUrl" not in hello
            there = await engine(conninfo, layer, there_url)
            async with asyncio.timeout(20):
                while len(here.writer.owned) != 2 or len(there.writer.owned) != 2:
                    await asyncio.sleep(0.05)
            for shard, socket in early.items():
                for request_id in (1, 2):
                    await socket.send_json_to({**countersign, "id": request_id, "body": body})
                    answer = await socket.receive_json_from(timeout=10)
                    # No channel: refused by the shard's owner (here, or there, forwarded).
                    assert (answer["type"], answer["id"], answer["status"]) == (
                        "response",
                        request_id,
                        404,
                    ), answer
                    if request_id == 1 and shard in there.writer.owned:
                        assert await socket.receive_json_from(timeout=10) == {
                            "type": "move",
                            "socketUrl": there_url,
                        }
                assert await socket.receive_nothing(timeout=0.3)  # told once a socket, if at all
            for shard, user in users.items():
                socket, hello = await log_in(user)
                sockets.append(socket)
                assert hello.get("socketUrl") == (there_url if shard in there.writer.owned else None)
        finally:
            for socket in sockets:
                await socket.disconnect()
            if there is not None:
                await there.close()
            await here.close()

    asyncio.run(scenario())
