"""Rate limits, on the cache (Redis with REDIS_URL, so shared by every node process; else local
memory): per client IP (every request under /api/, before authentication: `RateLimitMiddleware`),
per IP for logins (nonce and token), and per account (DRF's throttling after authentication).

Each limit counts requests in a fixed window with one atomic increment (DRF's own throttle keeps a
list of timestamps, read and written whole by each request, and concurrent requests on several
processes lose each other's writes). A cache that does not answer lets requests through: a Redis
outage must not turn into refusing every request (/api/health reports it).
"""

from __future__ import annotations

import logging
from typing import Any

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
        counter = f"{key}:{window}"
        try:
            if self.cache.add(counter, 1, timeout=self.duration + 1):
                return True
            count = self.cache.incr(counter)
        except ValueError:  # the window's counter expired between the two calls: a new window
            return True
        except (RedisError, OSError) as exc:
            logger.warning("rate limit %s not checked, the cache does not answer: %s", self.scope, exc)
            return True
        return int(count) <= self.num_requests

    def wait(self) -> float:
        return self.wait_seconds


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
