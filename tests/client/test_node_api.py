"""The client's reading of the node's error answers."""

from __future__ import annotations

from connext.client.node_api import error_from_body, socket_home, unavailable_from_body
from connext.errors import LimitError, NodeUnavailableError


def test_a_5xx_keeps_the_nodes_own_code_and_reason():
    body = {"error": {"code": "chain_unavailable", "message": "The node cannot read the chain right now."}}

    error = unavailable_from_body(503, body, "POST /api/channel/updates")

    assert isinstance(error, NodeUnavailableError)
    assert error.code == "chain_unavailable"
    assert "cannot read the chain" in str(error)


def test_a_5xx_without_the_error_shape_is_node_unavailable():
    for body in (None, "<html>Bad Gateway</html>", {"error": "x"}, {"error": {"code": 5}}):
        error = unavailable_from_body(502, body, "GET /api/channel")
        assert (error.code, isinstance(error, NodeUnavailableError)) == ("node_unavailable", True)
        assert "502" in str(error)


def test_the_nodes_limits_on_capital_and_gas_are_limit_errors_carrying_their_bound():
    rate = error_from_body(
        429, {"error": {"code": "withdrawal_rate_limited", "message": "later", "retryAfter": "1800"}}
    )
    small = error_from_body(
        400, {"error": {"code": "withdrawal_too_small", "message": "x", "minimum": "1000"}}
    )
    unjustified = error_from_body(
        400, {"error": {"code": "collateral_not_justified", "message": "x", "justified": "0"}}
    )

    assert all(isinstance(error, LimitError) for error in (rate, small, unjustified))
    assert (rate.code, rate.status, rate.retry_after) == ("withdrawal_rate_limited", 429, 1800)
    assert (small.details["minimum"], small.retry_after) == ("1000", None)
    assert unjustified.details == {"justified": "0"}
    assert not isinstance(
        error_from_body(409, {"error": {"code": "stale_nonce", "message": "x"}}), LimitError
    )


NODE = "ws://127.0.0.1:8000/ws/v1"


def test_a_socket_moves_only_to_the_nodes_own_host_with_its_scheme():
    """The socket's first frame carries the bearer token: a node process naming where the socket
    belongs may move it to another process on the node's host, never to another host or off TLS."""
    assert socket_home(NODE, "ws://127.0.0.1:8002/ws/v1") == "ws://127.0.0.1:8002/ws/v1"
    assert socket_home(NODE, "/ws/v1/node2") == "ws://127.0.0.1:8000/ws/v1/node2"
    assert socket_home("wss://node.example/ws/v1", "wss://NODE.example/ws/p2") == "wss://node.example/ws/p2"
    for offered in (
        "ws://evil.example/ws/v1",
        "//evil.example/ws/v1",  # a network-path reference: another host
        "ws://127.0.0.1@evil.example/ws/v1",
        "ws://user:pass@127.0.0.1:8002/ws/v1",
        "ws://127.0.0.1.evil.example/ws/v1",
        "wss://127.0.0.1:8002/ws/v1",  # another scheme (from wss: a downgrade)
        "http://127.0.0.1:8002/ws/v1",
        "ws://127.0.0.1:8002/ws/v1?token=x",
        "ws://127.0.0.1:99999/ws/v1",
        "ws://[::1]:8002/ws/v1",
        "",
        "ws://127.0.0.1:8002/" + "x" * 300,
        None,
        42,
        ["ws://127.0.0.1:8002/ws/v1"],
    ):
        assert socket_home(NODE, offered) is None, offered
    assert socket_home("wss://node.example/ws/v1", "ws://node.example/ws/v1") is None
