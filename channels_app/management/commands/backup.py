"""`manage.py backup`: a dump of the node's database and its manifest (channels_app.backups)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_app import backups


class Command(BaseCommand):
    help = (
        "Dump the node's Postgres database (pg_dump, custom format) with a manifest of its chain, cursors"
        " and channel nonces. Run it from cron or a systemd timer; restore with `manage.py restore`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dir", type=Path, default=None, help="where to write (default NODE_VAR_DIR/backups)"
        )
        parser.add_argument("--keep", type=int, default=None, help="keep only the newest N backups there")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        directory = options["dir"] or Path(settings.NODE.var_dir) / "backups"
        if options["keep"] is not None and options["keep"] < 1:
            raise CommandError("--keep: expected at least 1")
        try:
            made = backups.backup(directory, keep=options["keep"])
        except backups.BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"backup {made.dump} ({made.data['size']} bytes, {len(made.data['channels'])} channels),"
            f" manifest {made.manifest}"
        )
