"""The node's handle on the chain: one web3 connection per process and the node's signing account."""

from __future__ import annotations

from functools import cache

import requests
from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from connext.chain.channel_reads import ChainReadError
from connext.chain.rpc import http_web3

RPC_TIMEOUT_SECONDS = 10
# What a chain read that did not get its answer raises: a refused or reverted call, an RPC that does
# not answer (connection refused or reset, timeout). The API answers these 503 `chain_unavailable`.
READ_ERRORS: tuple[type[Exception], ...] = (ChainReadError, Web3Exception, requests.RequestException)


@cache
def _web3_for(rpc_url: str) -> Web3:
    return http_web3(rpc_url, timeout=RPC_TIMEOUT_SECONDS)


def web3() -> Web3:
    return _web3_for(settings.CHAIN_RPC_URL)


@cache
def _chain_id_of(rpc_url: str) -> int:
    return int(_web3_for(rpc_url).eth.chain_id)


def chain_id() -> int:
    """The chain's id, read once per process and RPC URL (a failed read is not kept): every login
    nonce names it, and an RPC call per nonce made a flood of them cost the chain too."""
    return _chain_id_of(settings.CHAIN_RPC_URL)


@cache
def _account_for(private_key: str) -> LocalAccount:
    account: LocalAccount = Account.from_key(private_key)
    return account


def node_account() -> LocalAccount:
    return _account_for(settings.NODE_PRIVATE_KEY)


def node_address() -> str:
    return node_account().address
