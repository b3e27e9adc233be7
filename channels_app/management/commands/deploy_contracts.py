"""Deploy the contracts to the configured chain (idempotent) and record them in DEPLOYMENTS_FILE."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app import chain
from connext.chain import deploy
from connext.chain.contracts import contract_at
from connext.chain.devchain import DEV_CHAIN_ID

DEV_NODE_BALANCE = 10_000 * 10**18
DEV_NODE_TOKENS = 1_000_000 * 10**18


class Command(BaseCommand):
    help = "Deploy (or reuse) the channel contracts on CHAIN_RPC_URL with the node's key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dev",
            action="store_true",
            help="development chain (anvil): also deploy the TestToken and fund the node account",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        w3 = chain.web3()
        chain_id = int(w3.eth.chain_id)
        account = chain.node_account()
        if options["dev"]:
            if chain_id != DEV_CHAIN_ID:
                raise CommandError(
                    f"--dev is for the local anvil chain ({DEV_CHAIN_ID}), not chain {chain_id}"
                )
            if w3.eth.get_balance(account.address) < DEV_NODE_BALANCE // 100:
                w3.provider.make_request("anvil_setBalance", [account.address, hex(DEV_NODE_BALANCE)])
                self.stdout.write(f"funded the node account {account.address} on anvil")
        try:
            addresses = deploy.deploy(w3, account, settings.DEPLOYMENTS_FILE, test_token=options["dev"])
        except deploy.DeployError as exc:
            raise CommandError(str(exc)) from exc
        if options["dev"]:
            self._fund_node_tokens(w3, account, addresses[deploy.TEST_TOKEN])
        self.stdout.write(f"contracts on chain {chain_id} (recorded in {settings.DEPLOYMENTS_FILE}):")
        for name, address in sorted(addresses.items()):
            self.stdout.write(f"  {name:<18} {address}")

    def _fund_node_tokens(self, w3: Any, account: Any, token: str) -> None:
        """The node pays collateral and swaps in TestToken too: it holds DEV_NODE_TOKENS of it."""
        test_token = contract_at(w3, deploy.TEST_TOKEN, token)
        if test_token.functions.balanceOf(account.address).call() >= DEV_NODE_TOKENS // 100:
            return
        deploy.send_transaction(w3, account, test_token.functions.mint(account.address, DEV_NODE_TOKENS))
        self.stdout.write(f"minted {DEV_NODE_TOKENS // 10**18} TestToken to the node account")
