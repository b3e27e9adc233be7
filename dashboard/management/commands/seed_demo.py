"""Fill a development node with activity for the dashboard: live payments through the running node
(`make up` first), and with --bulk, history in bulk for looking at the dashboard at scale."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from channels_app import chain
from connext.chain.devchain import DEV_CHAIN_ID
from dashboard import bulk, demo, snapshots


class Command(BaseCommand):
    help = "Make dashboard activity on the dev chain: users, payments, refunds, withdrawals, a dispute."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--node", default=None, help="the running node (default: NODE_HOST:NODE_PORT)")
        parser.add_argument("--users", type=int, default=8)
        parser.add_argument("--payments", type=int, default=2000, help="live payments (0: none)")
        parser.add_argument(
            "--bulk",
            nargs=2,
            type=int,
            metavar=("CHANNELS", "PAYMENTS"),
            help="also insert this many channels and settled payments over the last 30 days, directly",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        w3 = chain.web3()
        if int(w3.eth.chain_id) != DEV_CHAIN_ID:
            raise CommandError(
                f"seed_demo is for the dev chain ({DEV_CHAIN_ID}), not chain {w3.eth.chain_id}"
            )
        if options["users"] < 2:
            raise CommandError("--users: at least 2 (someone has to be paid)")
        node_url = options["node"] or (
            f"http://{os.environ.get('NODE_HOST', '127.0.0.1')}:{os.environ.get('NODE_PORT', '8000')}"
        )
        if options["payments"]:
            counts = demo.seed_live(
                node_url=node_url,
                chain_url=settings.CHAIN_RPC_URL,
                users=options["users"],
                payments=options["payments"],
                say=self.stdout.write,
            )
            self.stdout.write(
                f"live: {counts.completed} payments sent, {counts.waiting} waiting for an offline receiver, "
                f"{counts.cancelled} cancelled, {counts.refused} refused, {counts.withdrawals} withdrawals, "
                f"{counts.disputes} dispute"
            )
            snapshots.take(timezone.now())  # the chart's latest point without waiting for the beat
        if options["bulk"]:
            channels, payments = options["bulk"]
            made = bulk.bulk_insert(
                channels=channels,
                payments=payments,
                node_key=bytes.fromhex(settings.NODE_PRIVATE_KEY.removeprefix("0x")),
                chain_id=DEV_CHAIN_ID,
            )
            self.stdout.write(f"bulk: {made.channels} channels and {made.payments} payments inserted")
