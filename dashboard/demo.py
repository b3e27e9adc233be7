"""Activity for a development node to show on the dashboard, made as users make it: real clients (the
SDK) with real keys against the running node on the dev chain. Payments complete, wait for a receiver
gone offline, get cancelled and refunded; users withdraw; one user disputes its channel.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from connext import ETH, Client
from connext.chain import devchain
from connext.errors import NodeError

E = 10**18
MILLI = 10**15


@dataclass
class DemoCounts:
    users: int = 0
    completed: int = 0
    waiting: int = 0  # to a receiver who went offline
    cancelled: int = 0
    refused: int = 0
    withdrawals: int = 0
    disputes: int = 0
    notes: list[str] = field(default_factory=list)


def _funded_key(chain_url: str) -> str:
    """A new account with 10 ETH on anvil for its deposits and its own dispute's gas."""
    from eth_account import Account

    key = "0x" + secrets.token_hex(32)
    devchain.rpc_call(chain_url, "anvil_setBalance", [Account.from_key(key).address, hex(10 * E)])
    return key


def _settle(sent: list[tuple[Client, str]]) -> int:
    """Wait until each sent payment is final; how many completed."""
    return sum(
        sender.wait_for_transfer(payment_id, timeout=120)["status"] == "completed"
        for sender, payment_id in sent
    )


def seed_live(
    *,
    node_url: str,
    chain_url: str,
    users: int,
    payments: int,
    seed: int = 17,
    say: Callable[[str], None] = print,
) -> DemoCounts:
    rng = random.Random(seed)  # noqa: S311 - which demo user pays whom; guards nothing
    counts = DemoCounts()
    clients = [
        Client.connect(node_url, _funded_key(chain_url), chain_rpc_url=chain_url) for _ in range(users)
    ]
    counts.users = len(clients)
    offline = Client.connect(node_url, _funded_key(chain_url), chain_rpc_url=chain_url)
    offline.close()  # has a channel, never answers again: payments to it wait
    try:
        payers = clients[: max(2, users * 3 // 4)]
        for client in payers:
            client.deposit(E)
        say(f"{len(clients)} users connected, {len(payers)} deposited 1 ETH each")
        waiting: list[tuple[Client, str]] = []
        outstanding: list[tuple[Client, str]] = []
        for number in range(payments):
            sender = rng.choice(payers)
            amount = rng.randrange(MILLI // 10, 5 * MILLI)
            try:
                if number % 40 == 39:
                    waiting.append((sender, sender.transfer(offline.address, amount)))
                    counts.waiting += 1
                else:
                    receiver = rng.choice([c for c in clients if c is not sender])
                    outstanding.append((sender, sender.transfer(receiver.address, amount)))
            except NodeError as exc:  # e.g. a sender whose balance ran low: the node refuses, as it should
                counts.refused += 1
                counts.notes.append(exc.code)
            if len(outstanding) >= 20 or number == payments - 1:  # a few in flight at a time, as users pay
                counts.completed += _settle(outstanding)
                outstanding.clear()
            if number % 200 == 199:
                say(f"{number + 1} payments sent")
        for sender, payment_id in waiting[::2]:  # half of those waiting are taken back by their senders
            sender.cancel_transfer(payment_id)
            counts.cancelled += 1
            counts.waiting -= 1
        for client in payers[:2]:
            client.withdraw(E // 10, ETH)
            counts.withdrawals += 1
        clients[-1].dispute_channel()
        counts.disputes += 1
    finally:
        for client in clients:
            client.close()
    return counts
