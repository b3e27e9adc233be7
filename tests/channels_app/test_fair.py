"""The pace per caller (channels_app.fair) on a clock the test moves, and how the API's edge finds the
caller a request is paced as."""

from __future__ import annotations

import asyncio
import json

import pytest

from channels_app import edge_limits
from channels_app.fair import Aliases, Busy, Pace


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pace(clock: Clock, *, rate: float = 10, burst: int = 3, max_wait: float = 0.5) -> Pace:
    return Pace(rate=rate, burst=burst, max_wait=max_wait, clock=clock)


def test_a_burst_starts_at_once_then_each_item_waits_for_its_turn_at_the_rate():
    clock = Clock()
    gate = pace(clock)

    assert [gate.reserve("a") for _ in range(3)] == [0, 0, 0]
    assert [round(gate.reserve("a"), 6) for _ in range(3)] == [0.1, 0.2, 0.3]


def test_a_turn_further_than_the_wait_allowed_is_refused_and_books_nothing():
    clock = Clock()
    gate = pace(clock, max_wait=0.25)
    for _ in range(3 + 2):  # the burst, then turns 0.1 and 0.2 s away
        gate.reserve("a")

    with pytest.raises(Busy) as refused:
        gate.reserve("a")
    assert refused.value.retry_after == pytest.approx(0.3)
    with pytest.raises(Busy):  # the refusal did not push the next turn further away
        gate.reserve("a")
    assert refused.value.retry_after == pytest.approx(0.3)

    clock.now += 0.1
    assert gate.reserve("a") == pytest.approx(0.2)


def test_one_key_at_its_limit_leaves_every_other_key_its_whole_burst():
    clock = Clock()
    gate = pace(clock)
    for _ in range(7):  # the burst and four turns to come
        gate.reserve("flood")

    assert [gate.reserve("calm") for _ in range(3)] == [0, 0, 0]


def test_a_quiet_key_gets_its_burst_back_at_the_rate_and_never_more():
    clock = Clock()
    gate = pace(clock)
    for _ in range(3):
        gate.reserve("a")

    clock.now += 0.2  # two turns earned back
    assert [gate.reserve("a") for _ in range(2)] == [0, 0]
    assert gate.reserve("a") == pytest.approx(0.1)

    clock.now += 3600  # a long quiet spell earns the burst, not an hour's worth
    assert [gate.reserve("a") for _ in range(3)] == [0, 0, 0]
    assert gate.reserve("a") == pytest.approx(0.1)


def test_keys_back_at_full_burst_are_forgotten_so_idle_callers_cost_no_memory():
    clock = Clock()
    gate = pace(clock)
    for index in range(1023):
        gate.reserve(f"caller-{index}")
    assert gate.keys() == 1023

    clock.now += 1  # all of them are due again: as good as new
    gate.reserve("one-more")
    assert gate.keys() == 1


def test_turn_sleeps_on_the_event_loop_until_the_turn():
    gate = Pace(rate=20, burst=1, max_wait=1)

    async def three_turns() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):
            await gate.turn("a")
        return loop.time() - started

    assert asyncio.run(three_turns()) >= 0.095  # two waits of 1/20 s


def test_a_pace_needs_a_positive_rate_and_burst():
    with pytest.raises(ValueError, match="rate > 0"):
        Pace(rate=0, burst=1, max_wait=1)
    with pytest.raises(ValueError, match="burst >= 1"):
        Pace(rate=1, burst=0, max_wait=1)


def test_aliases_keep_the_most_recently_remembered():
    aliases = Aliases(size=2)
    aliases.remember("t1", "account:a")
    aliases.remember("t2", "account:b")
    aliases.remember("t1", "account:a")  # remembered again: the newest
    aliases.remember("t3", "account:c")

    assert (aliases.get("t1"), aliases.get("t2"), aliases.get("t3")) == ("account:a", None, "account:c")


def scope(*, client: str = "10.0.0.5", headers: dict[bytes, bytes] | None = None) -> dict:
    return {
        "type": "http",
        "path": "/api/channel",
        "client": (client, 5000),
        "headers": list((headers or {}).items()),
    }


def test_the_caller_ip_is_the_connections_unless_trusted_proxies_forwarded_it():
    forwarded = scope(client="127.0.0.1", headers={b"x-forwarded-for": b"6.6.6.6, 203.0.113.9"})

    assert edge_limits.client_ip(forwarded, 0) == "127.0.0.1"  # a header anyone can send
    assert edge_limits.client_ip(forwarded, 1) == "203.0.113.9"  # what our one proxy saw
    assert edge_limits.client_ip(forwarded, 2) == "6.6.6.6"
    assert edge_limits.client_ip(forwarded, 5) == "6.6.6.6"


def test_a_request_is_paced_as_its_account_once_its_token_was_checked_else_as_its_ip():
    async def app(*_: object) -> None:
        return None

    middleware = edge_limits.FairShare(app, pace=lambda: Pace(rate=1, burst=1, max_wait=0), trusted_proxies=0)
    token = "a-token-checked-once"
    bearer = scope(headers={b"authorization": f"Bearer {token}".encode()})

    assert middleware.key(bearer) == "ip:10.0.0.5"  # not checked yet: unknown tokens share their IP's pace
    edge_limits.remember_token(token, "0xAbCd")
    assert middleware.key(bearer) == "account:0xabcd"
    assert middleware.key(scope(headers={b"authorization": b"Bearer another-token"})) == "ip:10.0.0.5"
    assert middleware.key(scope()) == "ip:10.0.0.5"


async def _call(middleware: edge_limits.FairShare, request_scope: dict) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await middleware(request_scope, receive, send)
    return sent


def test_a_request_whose_turn_is_too_far_is_answered_429_in_the_error_shape_and_never_reaches_the_app():
    reached: list[str] = []

    async def app(request_scope, receive, send) -> None:
        reached.append(request_scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    gate = Pace(rate=1, burst=1, max_wait=0)
    middleware = edge_limits.FairShare(app, pace=lambda: gate, trusted_proxies=0)

    first = asyncio.run(_call(middleware, scope()))
    second = asyncio.run(_call(middleware, scope()))
    health = asyncio.run(_call(middleware, {**scope(), "path": "/api/health"}))

    assert first[0]["status"] == 200
    assert health[0]["status"] == 200
    assert reached == ["/api/channel", "/api/health"]
    assert second[0]["status"] == 429
    headers = dict(second[0]["headers"])
    assert headers[b"retry-after"] == b"1"
    assert headers[b"content-type"] == b"application/json"
    body = json.loads(second[1]["body"])
    assert body["error"]["code"] == "throttled"
    assert body["error"]["retryAfter"] == 1
