"""`manage.py restore DUMP`: a backup into an empty database, every channel fenced after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app import backups, chain


class Command(BaseCommand):
    help = (
        "Restore a backup made by `manage.py backup` into the (empty) database of DATABASE_URL. The node"
        " has forgotten what it signed after the backup: every channel is fenced (signs nothing) until its"
        " user shows its latest state, which clients do by themselves when they reconnect."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dump", type=Path, help="the .dump file")
        parser.add_argument("--manifest", type=Path, default=None, help="default: the dump's own manifest")

    def handle(self, *args: Any, **options: Any) -> None:
        # Read first: without the chain's head there is no telling when the watcher has caught up.
        try:
            head = int(chain.web3().eth.block_number)
        except chain.READ_ERRORS as exc:
            raise CommandError(
                f"the chain at CHAIN_RPC_URL does not answer ({exc}); restore refused"
            ) from None
        try:
            data = backups.restore(options["dump"], manifest_path=options["manifest"], chain_block=head)
        except backups.BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"restored {options['dump']} (taken {data['taken_at']}, {len(data['channels'])} channels);"
            f" every channel is fenced until its user reconciles, the chain watcher reads from its backup"
            f" cursor up to block {head}"
        )
