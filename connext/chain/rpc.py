"""Web3 connections over HTTP, configured once for all of the project's chain access."""

from __future__ import annotations

from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

# A provider's chain never changes under a running process (another chain means another deployment and
# a restart), and web3 asks for it before many calls: ask once.
_CACHED_REQUESTS = {RPCEndpoint("eth_chainId")}


def http_web3(rpc_url: str, *, timeout: float) -> Web3:
    """A Web3 on `rpc_url` that asks the chain id once."""
    return Web3(
        HTTPProvider(
            rpc_url,
            request_kwargs={"timeout": timeout},
            cache_allowed_requests=True,
            cacheable_requests=_CACHED_REQUESTS,
        )
    )
