"""What this node serves: its key, the deployed contracts, the transfer definitions and the assets.

Everything here is read once per process (the address book changes only with a redeployment, which
restarts the node) and is the single source the services, the config endpoint and the watcher share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from channels_app import chain
from connext.chain import channel_reads, deploy
from connext.chain.contracts import channel_address
from connext.protocol.encoding import ZERO_ADDRESS
from connext.protocol.signing import Signer
from connext.protocol.types import ChainDispute, DefinitionKind, UpdateContext

ETH = ZERO_ADDRESS
_DEFINITION_CONTRACTS = {
    "LinkedTransfer": DefinitionKind.LINKED,
    "HashLockTransfer": DefinitionKind.HASHLOCK,
    "SignedTransfer": DefinitionKind.SIGNED,
    "WithdrawTransfer": DefinitionKind.WITHDRAW,
}


@dataclass(frozen=True)
class Network:
    chain_id: int
    node_address: str
    factory: str
    mastercopy: str
    definitions: dict[str, DefinitionKind]  # contract address -> kind
    contracts: dict[str, str]  # contract name -> address
    assets: tuple[str, ...]  # ETH first

    def definition_address(self, kind: DefinitionKind) -> str:
        return next(address for address, known in self.definitions.items() if known is kind)

    def channel_address_for(self, user: str) -> str:
        return channel_address(
            factory=self.factory,
            mastercopy=self.mastercopy,
            node=self.node_address,
            user=user,
            chain_id=self.chain_id,
        )


@cache
def _signer_for(private_key: str) -> Signer:
    return Signer(bytes.fromhex(private_key.removeprefix("0x")))


def node_signer() -> Signer:
    return _signer_for(settings.NODE_PRIVATE_KEY)


@cache
def _network_for(book: str, rpc_url: str, node_key: str, tokens: tuple[str, ...]) -> Network:
    chain_id = int(chain.web3().eth.chain_id)
    contracts = deploy.load_addresses(book, chain_id)
    missing = [
        name for name in (*_DEFINITION_CONTRACTS, deploy.FACTORY, deploy.MASTERCOPY) if name not in contracts
    ]
    if missing:
        raise ImproperlyConfigured(
            f"DEPLOYMENTS_FILE {book} has no {', '.join(missing)} for chain {chain_id}: "
            "deploy with `python -m connext.chain.deploy` (make up does it on a dev chain)"
        )
    assets = [ETH, *tokens]
    if deploy.TEST_TOKEN in contracts and contracts[deploy.TEST_TOKEN] not in assets:
        assets.append(contracts[deploy.TEST_TOKEN])
    return Network(
        chain_id=chain_id,
        node_address=_signer_for(node_key).address,
        factory=contracts[deploy.FACTORY],
        mastercopy=contracts[deploy.MASTERCOPY],
        definitions={contracts[name]: kind for name, kind in _DEFINITION_CONTRACTS.items()},
        contracts=contracts,
        assets=tuple(assets),
    )


def network() -> Network:
    return _network_for(
        str(settings.DEPLOYMENTS_FILE),
        settings.CHAIN_RPC_URL,
        settings.NODE_PRIVATE_KEY,
        tuple(settings.SUPPORTED_TOKENS),
    )


def update_context(
    *, deposits_of: tuple[str, str] | None = None, dispute: ChainDispute | None = None
) -> UpdateContext:
    """The outside facts an update is checked against: now, the definitions, for a deposit
    `(channel address, asset)` the chain's deposit totals at the confirmation depth, and the channel's
    last dispute as the watcher recorded it (`channels.chain_dispute`)."""
    chain_deposits: dict[str, tuple[int, int]] = {}
    if deposits_of is not None:
        channel, asset = deposits_of
        w3 = chain.web3()
        block = channel_reads.confirmed_block(w3, settings.CHAIN_CONFIRMATIONS)
        totals = channel_reads.deposit_totals(w3, channel, asset, block=block)
        chain_deposits[asset] = (totals.node, totals.user)
    return UpdateContext(
        now=int(time.time()),
        definitions=network().definitions,
        chain_deposits=chain_deposits,
        dispute=dispute,
    )
