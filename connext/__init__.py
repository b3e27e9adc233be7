"""connext-py: state-channel payments. `connext.protocol` is the pure core shared by node and clients;
`connext.chain` talks to the contracts; `connext.client` is the SDK (`Client`, `AsyncClient`, `ETH`).

The SDK names are imported on first use, so the node importing the protocol core never loads the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connext.client import ETH, AsyncClient, Client

__all__ = ["ETH", "AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from connext import client

        return getattr(client, name)
    raise AttributeError(f"module 'connext' has no attribute {name!r}")
