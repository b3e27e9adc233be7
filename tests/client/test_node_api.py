"""The client's reading of the node's error answers."""

from __future__ import annotations

from connext.client.node_api import unavailable_from_body
from connext.errors import NodeUnavailableError


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
