"""Thin web3 handles on our contracts, and the channel address rule computed without a chain."""

from __future__ import annotations

from functools import lru_cache

from eth_abi.abi import encode
from eth_typing import ChecksumAddress
from eth_utils.address import to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from connext.chain.artifacts import load_artifact

# The EIP-1167 proxy with immutable args, exactly as OpenZeppelin's Clones writes it (ChannelFactory._create).
_CLONE_PREFIX = bytes.fromhex("3d81600a3d39f3363d3d373d3d3d363d73")
_CLONE_SUFFIX = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
_CLONE_RUNTIME_LENGTH = 0x2D + 0x28  # proxy code + abi.encodePacked(node, user)


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    """A web3 contract for the artifact `name` at `address` (built once per connection: building one
    parses the whole ABI)."""
    return _contract(w3, name, to_checksum_address(address))


@lru_cache(maxsize=4096)
def _contract(w3: Web3, name: str, address: ChecksumAddress) -> Contract:
    return w3.eth.contract(address=address, abi=load_artifact(name).abi)


def create_channel_calldata(w3: Web3, *, factory: str, node: str, user: str) -> bytes:
    """`ChannelFactory.createChannel(node, user)`: deploys the (node, user) channel at its address."""
    encoded = contract_at(w3, "ChannelFactory", factory).encode_abi("createChannel", args=[node, user])
    return bytes.fromhex(encoded[2:])


def channel_salt(node: str, user: str, chain_id: int) -> bytes:
    return keccak(encode(["address", "address", "uint256"], [node, user, chain_id]))


def channel_address(*, factory: str, mastercopy: str, node: str, user: str, chain_id: int) -> str:
    """The (node, user) channel's address: CREATE2 of the clone's init code by the factory."""
    init_code = (
        b"\x61"
        + _CLONE_RUNTIME_LENGTH.to_bytes(2, "big")
        + _CLONE_PREFIX
        + to_canonical_address(mastercopy)
        + _CLONE_SUFFIX
        + to_canonical_address(node)
        + to_canonical_address(user)
    )
    digest = keccak(
        b"\xff" + to_canonical_address(factory) + channel_salt(node, user, chain_id) + keccak(init_code)
    )
    return to_checksum_address(digest[12:])
