"""When a node process starts the update engine (`channels_app.engine.process.process_engine`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone
from eth_account import Account

from channels_app.engine import process
from channels_app.models import AuthToken
from channels_app.services import auth
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
