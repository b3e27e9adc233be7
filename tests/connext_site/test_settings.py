"""The settings module as a process sees it: what the environment selects, and start-up failures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from tests.support.processes import ROOT, node_env

PROBE = """
import json, django
django.setup()
from django.conf import settings
from celery import current_app
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_prefix": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix"),
    "cache": settings.CACHES["default"]["BACKEND"],
    "eager": current_app.conf.task_always_eager,
    "broker": current_app.conf.broker_url,
    "serializer": current_app.conf.task_serializer,
    "time_limit": current_app.conf.task_time_limit,
    "beat": sorted(current_app.conf.beat_schedule),
}))
"""


def settings_seen_by_a_process(**env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=node_env(DJANGO_SETTINGS_MODULE="connext_site.settings", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_urls_the_node_runs_on_sqlite_in_memory_layer_and_eager_tasks(tmp_path):
    result = settings_seen_by_a_process(DATABASE_URL=None, REDIS_URL=None, NODE_VAR_DIR=str(tmp_path))

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["engine"] == "django_prometheus.db.backends.sqlite3"  # Django's, counting queries
    assert seen["layer"] == "channels.layers.InMemoryChannelLayer"
    assert seen["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert seen["eager"] is True
    assert seen["serializer"] == "json"
    assert seen["beat"] == [
        "auth-records-prune",
        "chain-watch",
        "collateral-reclaim-idle",
        "dashboard-value-snapshot",
        "disputes-advance",
        "expiring-claims-check",
        "payments-sweep",
        "swap-rates-refresh",
        "transactions-track",
        "worker-heartbeat",
    ]


def test_database_and_redis_urls_select_postgres_redis_and_a_celery_broker(tmp_path):
    result = settings_seen_by_a_process(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/connext",
        REDIS_URL="redis://127.0.0.1:6379/3",
        NODE_VAR_DIR=str(tmp_path),
    )

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["engine"] == "django_prometheus.db.backends.postgresql"
    assert seen["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert seen["layer_prefix"] == "connext.3"  # pub/sub is server-wide: the database number separates
    assert seen["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert seen["eager"] is False
    assert seen["broker"] == "redis://127.0.0.1:6379/3"
    assert seen["time_limit"] == 90


def test_a_malformed_variable_stops_the_process_at_start_naming_it(tmp_path):
    result = settings_seen_by_a_process(CHAIN_CONFIRMATIONS="lots", NODE_VAR_DIR=str(tmp_path))

    assert result.returncode != 0
    assert "ImproperlyConfigured: CHAIN_CONFIRMATIONS: expected a whole number" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis channel layer needs REDIS_URL")
def test_an_idle_receive_on_the_redis_channel_layer_outlasts_the_clients_read_timeout():
    """A consumer waiting for a push must not be torn down by the Redis client's read timeout (redis-py 8
    defaults it to 5 s): its websocket would drop and miss pushes. Waits past that timeout."""
    layer = get_channel_layer()
    assert layer is not None
    redis_default_read_timeout = 5

    async def idle_receive() -> None:
        channel = await layer.new_channel()
        await layer.group_add("idle.test", channel)
        await asyncio.wait_for(layer.receive(channel), redis_default_read_timeout + 2)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(idle_receive())
