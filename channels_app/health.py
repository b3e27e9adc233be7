"""Liveness of what the node depends on: database, channel layer (Redis), chain, contracts, workers.

Each check returns a `Check`; the node is healthy only when every check that the configuration needs
is ok. Checks are short (a couple of seconds at most) so a load balancer can poll them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from web3 import HTTPProvider, Web3

CHECK_TIMEOUT_SECONDS = 2.0
HEARTBEAT_CACHE_KEY = "node:worker-heartbeat"


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, {})}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return Check(ok=False, detail={"vendor": connection.vendor}, error=_reason(exc))
    return Check(ok=True, detail={"vendor": connection.vendor})


def check_redis() -> Check:
    if not settings.REDIS_URL:
        return Check(ok=True, detail={"backend": "in-memory"})
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
            socket_timeout=CHECK_TIMEOUT_SECONDS,
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return Check(ok=False, detail={"backend": "redis"}, error=_reason(exc))
    return Check(ok=True, detail={"backend": "redis"})


def check_chain() -> Check:
    web3 = chain_web3()
    try:
        chain_id = web3.eth.chain_id
        block_number = web3.eth.block_number
    except Exception as exc:
        return Check(ok=False, error=_reason(exc))
    return Check(ok=True, detail={"chain_id": chain_id, "block_number": block_number})


def check_contracts() -> Check:
    """The address book names our contracts for this chain and the factory is there."""
    from channels_app import network  # reads the address book; health must not fail to import without it

    try:
        net = network.network()
        deployed = len(chain_web3().eth.get_code(net.factory)) > 0
    except Exception as exc:
        return Check(ok=False, error=_reason(exc))
    if not deployed:
        return Check(ok=False, detail={"factory": net.factory}, error="no code at the factory address")
    return Check(ok=True, detail={"factory": net.factory, "node": net.node_address})


def chain_web3() -> Web3:
    return Web3(HTTPProvider(settings.CHAIN_RPC_URL, request_kwargs={"timeout": CHECK_TIMEOUT_SECONDS}))


def check_workers() -> Check:
    """Workers beat every few seconds (channels_app.tasks.worker_heartbeat); a stale beat means down."""
    mode = "in-process" if settings.TASKS_IN_PROCESS else "celery"
    try:
        last_beat = cache.get(HEARTBEAT_CACHE_KEY)
    except Exception as exc:  # the beat lives in the cache (Redis): unreadable is not a crash
        return Check(ok=False, detail={"mode": mode}, error=f"heartbeat unreadable: {_reason(exc)}")
    if last_beat is None:
        return Check(ok=False, detail={"mode": mode}, error="no heartbeat yet")
    age = max(0.0, time.time() - float(last_beat))
    detail = {"mode": mode, "last_heartbeat_seconds_ago": round(age, 1)}
    if age > settings.WORKER_STALE_AFTER_SECONDS:
        return Check(ok=False, detail=detail, error="heartbeat is stale")
    return Check(ok=True, detail=detail)


def node_health() -> tuple[bool, dict[str, Check]]:
    checks = {
        "database": check_database(),
        "redis": check_redis(),
        "chain": check_chain(),
        "contracts": check_contracts(),
        "workers": check_workers(),
    }
    return all(check.ok for check in checks.values()), checks
