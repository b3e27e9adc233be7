"""The client's reading of the node's error answers."""

from __future__ import annotations

from connext.client.node_api import error_from_body, unavailable_from_body
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
