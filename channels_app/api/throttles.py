"""Rate limits, on the cache (Redis with REDIS_URL, so shared by every node process; else local
memory): per client IP (every request under /api/, before authentication: `RateLimitMiddleware`),
per IP for logins (nonce and token), and per account (DRF's throttling after authentication).

Each limit counts requests in a fixed window with one atomic increment, in one round trip to Redis
on a client kept for the process (DRF's own throttle keeps a list of timestamps, read and written
whole by each request, and concurrent requests on several processes lose each other's writes;
Django's cache builds a Redis client per call and needs two calls to count). A cache that does not answer lets requests through: a Redis
outage must not turn into refusing every request (/api/health reports it).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis
from django.conf import settings
from redis.exceptions import RedisError
from rest_framework import throttling
from rest_framework.settings import api_settings

logger = logging.getLogger(__name__)


class WindowThrottle(throttling.SimpleRateThrottle):
    """At most `num_requests` per `duration` seconds per key, in windows aligned to the clock."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)  # read live: tests change it

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return f"throttle:{self.scope}:{self.num_requests}/{self.duration}:{self.get_ident(request)}"

    def allow_request(self, request: Any, view: Any) -> bool:
        key = None if self.rate is None else self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.wait_seconds = (window + 1) * self.duration - now
        try:
            count = self._count(f"{key}:{window}", ttl=self.duration + 1)
        except (RedisError, OSError) as exc:
            logger.warning("rate limit %s not checked, the cache does not answer: %s", self.scope, exc)
            return True
        return count <= self.num_requests

    def _count(self, counter: str, *, ttl: int) -> int:
        """This request's number in its window."""
        if settings.REDIS_URL:
            pipeline = _redis(settings.REDIS_URL).pipeline(transaction=False)
            pipeline.incr(counter)
            pipeline.expire(counter, ttl)  # the window's own key: renewing its expiry changes nothing
            count, _ = pipeline.execute()
            return int(count)
        try:  # the cache in memory (no Redis): a process of its own
            if self.cache.add(counter, 1, timeout=ttl):
                return 1
            return int(self.cache.incr(counter))
        except ValueError:  # the window's counter expired between the two calls: a new window
            return 1

    def wait(self) -> float:
        return self.wait_seconds


@functools.cache
def _redis(url: str) -> redis.Redis:
    """One client (and connection pool) per process; a Redis that hangs fails the check in 2 s."""
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


class IpThrottle(WindowThrottle):
    scope = "ip"


class LoginThrottle(WindowThrottle):
    """Nonces and tokens per IP: each nonce is a row, each token check a signature recovery."""

    scope = "login"


class AccountThrottle(WindowThrottle):
    scope = "account"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = getattr(request, "user", None)
        if not getattr(user, "is_authenticated", False):
            return None  # the IP's limit applies
        return f"throttle:{self.scope}:{self.num_requests}/{self.duration}:{user.address.lower()}"
