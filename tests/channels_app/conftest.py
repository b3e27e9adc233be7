"""The node on the session's anvil and contracts, with the settings its services read."""

from __future__ import annotations

import pytest
from django.test import override_settings
from web3 import HTTPProvider, Web3

from connext.chain import devchain
from tests.support.wallet import Wallet

# The node signs with anvil's account 3 in these tests (account 0 deploys, 1 is the sender tests').
NODE_KEY = devchain.DEV_PRIVATE_KEYS[3]
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[4]


@pytest.fixture
def w3(deployments, chain):
    """web3 on the test's chain snapshot, with the node configured for it."""
    with override_settings(
        CHAIN_RPC_URL=chain,
        DEPLOYMENTS_FILE=deployments["book"],
        NODE_PRIVATE_KEY=NODE_KEY,
        CHAIN_CONFIRMATIONS=0,
        DISPUTE_TIMEOUT_SECONDS=3600,
    ):
        yield Web3(HTTPProvider(chain))


def new_wallet(client, w3) -> Wallet:
    """A logged-in user with an open channel and gas for its own dispute transactions."""
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    wallet.open()
    wallet.fund(FUNDER_KEY)
    return wallet
