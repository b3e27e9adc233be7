"""Each caller's share of one node process: a pace per key (an account, or an IP before login).

One process serves everyone with one interpreter: whatever one caller makes it do, every other
caller waits for. A limit that only counts requests and answers 429 does not protect the others:
a flood refused at once comes straight back, and the requests under the limit still run as fast as
they arrive. So each key gets a pace instead, the generic cell rate algorithm: at most `rate` work
items start per second, `burst` of them back to back after a quiet spell. An item that comes before
its turn waits for it on the event loop (a timer: no thread, no database, nothing of the node's time)
and then runs; one whose turn is more than `max_wait` away is refused at once with the time until it
would be served. A client that waits for its answers (every client of ours) is slowed to its pace and
never refused; one that does not is refused for almost nothing.

The state is one number per key (the theoretical arrival time of its next item); keys back at full
burst are dropped, so idle keys cost no memory. Pure asyncio: nothing of Django or the network.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable


class Busy(Exception):
    """The key's next turn is further away than the wait allowed: nothing was reserved."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry in {retry_after:.3f} s")
        self.retry_after = retry_after


class Pace:
    """At most `rate` items per second per key, `burst` at once, each waiting at most `max_wait`."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_wait < 0:
            raise ValueError("a pace needs rate > 0, burst >= 1 and max_wait >= 0")
        self.rate, self.burst, self.max_wait = rate, burst, max_wait
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval  # how far ahead of now a key may book
        self._clock = clock
        self._due: dict[str, float] = {}  # key -> when its next item is due at the steady pace
        self._prune_at = 1024

    def reserve(self, key: str) -> float:
        """Book the key's next turn: the seconds to wait for it (0: now). Raises Busy, booking
        nothing, when that is more than `max_wait`."""
        now = self._clock()
        due = max(self._due.get(key, now), now)
        wait = due - self._tolerance - now
        wait = 0.0 if wait < 1e-9 else wait  # float residue of summed intervals is no wait
        if wait > self.max_wait:
            raise Busy(wait)
        self._due[key] = due + self._interval
        if len(self._due) >= self._prune_at:
            self._prune(now)
        return wait

    async def turn(self, key: str) -> None:
        """Wait for the key's turn (Busy when it is too far away)."""
        wait = self.reserve(key)
        if wait > 0:
            await asyncio.sleep(wait)

    def keys(self) -> int:
        return len(self._due)

    def _prune(self, now: float) -> None:
        """Forget keys whose next item would be due now: they are back at full burst, as if new.
        Runs when the table doubled since the last time, so its cost per item stays constant."""
        for key in [key for key, due in self._due.items() if due <= now]:
            del self._due[key]
        self._prune_at = max(1024, 2 * len(self._due))


class Aliases:
    """A bounded map from a credential's digest to the key it stands for (a token's hash to its
    account), filled once the credential was checked; the least recently used go first."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._keys: OrderedDict[str, str] = OrderedDict()

    def remember(self, alias: str, key: str) -> None:
        self._keys[alias] = key
        self._keys.move_to_end(alias)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def get(self, alias: str) -> str | None:
        return self._keys.get(alias)


def retry_seconds(busy: Busy) -> int:
    """Whole seconds for Retry-After: at least one."""
    return max(1, math.ceil(busy.retry_after))
