"""`connext`: the client from a shell.

    connext --node URL --key-file FILE [--store PATH] [--rpc URL] COMMAND

Commands: `info`, `balance [--asset A]`, `deposit AMOUNT [--asset A]`, `withdraw AMOUNT [--to ADDRESS]
[--asset A]`, `collateral [--asset A] [--amount AMOUNT]`, `send RECIPIENT AMOUNT [--asset A]`,
`link AMOUNT [--asset A]`, `redeem URL` (or `redeem PAYMENT_ID SECRET`), `history`. Amounts: `1.5eth`, `20gwei`, `1000wei` or plain
wei. Assets: `eth` or a token address. Errors print one line `error: CODE: message` and exit 1 (2 for
bad usage). `--node`, `--key-file`, `--store` and `--rpc` default to CONNEXT_NODE_URL, CONNEXT_KEY_FILE,
CONNEXT_STORE and CONNEXT_CHAIN_RPC_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from connext.client.amounts import format_amount, parse_amount
from connext.client.async_client import ETH
from connext.client.sync_client import Client
from connext.errors import ConnextError, InvalidArgumentError, NodeError


def _asset(text: str) -> str:
    return ETH if text.lower() in ("eth", "ether") else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connext", description="A state-channel wallet for a connext-py node."
    )
    parser.add_argument("--node", default=os.environ.get("CONNEXT_NODE_URL"), help="the node's URL")
    parser.add_argument(
        "--key-file", default=os.environ.get("CONNEXT_KEY_FILE"), help="file holding the private key (hex)"
    )
    parser.add_argument(
        "--store", default=os.environ.get("CONNEXT_STORE"), help="SQLite file for the channel state"
    )
    parser.add_argument("--rpc", default=os.environ.get("CONNEXT_CHAIN_RPC_URL"), help="chain RPC URL")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="address, channel and balances")
    balance = commands.add_parser("balance", help="free balances in the channel")
    balance.add_argument("--asset", type=_asset, default=None)
    deposit = commands.add_parser("deposit", help="send funds to the channel and have them credited")
    deposit.add_argument("amount")
    deposit.add_argument("--asset", type=_asset, default=ETH)
    withdraw = commands.add_parser("withdraw", help="take funds out of the channel to an address")
    withdraw.add_argument("amount")
    withdraw.add_argument("--to", default=None, help="recipient (default: your own address)")
    withdraw.add_argument("--asset", type=_asset, default=ETH)
    collateral = commands.add_parser("collateral", help="ask the node to top up its side")
    collateral.add_argument("--asset", type=_asset, default=ETH)
    collateral.add_argument("--amount", default=None)
    send = commands.add_parser("send", help="pay another user of the node")
    send.add_argument("recipient")
    send.add_argument("amount")
    send.add_argument("--asset", type=_asset, default=ETH)
    link = commands.add_parser("link", help="make a link payment anyone holding the URL can redeem")
    link.add_argument("amount")
    link.add_argument("--asset", type=_asset, default=ETH)
    redeem = commands.add_parser("redeem", help="redeem a link payment into your channel")
    redeem.add_argument("link", help="the link's URL, or its payment id followed by the secret")
    redeem.add_argument("secret", nargs="?", default=None)
    commands.add_parser("history", help="payments you sent and received")
    return parser


def parse_link(link: str, secret: str | None = None) -> tuple[str, str]:
    """(payment id, secret) from a link URL (`...#paymentId=0x..&secret=0x..`) or the two values."""
    if secret is not None:
        return link, secret
    fields = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).fragment))
    if "paymentId" not in fields or "secret" not in fields:
        raise InvalidArgumentError("invalid_link", "a link URL ends in #paymentId=...&secret=...")
    return fields["paymentId"], fields["secret"]


def _read_key(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidArgumentError(
            "key_file_unreadable", f"cannot read the key file {path}: {exc.strerror}"
        ) from None


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _balance_lines(client: Client, assets: Sequence[str]) -> list[str]:
    lines = []
    for asset in assets:
        balance = client.get_free_balance(asset)
        name = "ETH" if asset == ETH else asset
        lines.append(
            f"{name}: you {format_amount(balance['user'])} ({balance['user']} wei),"
            f" node {format_amount(balance['node'])} ({balance['node']} wei)"
        )
    return lines


def run(args: argparse.Namespace, out: TextIO) -> int:
    key = _read_key(args.key_file)
    client = Client.connect(args.node, key, store_path=args.store, chain_rpc_url=args.rpc)
    try:
        return _command(client, args, out)
    finally:
        client.close()


def _command(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "info":
        channel = client.get_channel()
        _say(out, f"address: {client.address}")
        _say(out, f"channel: {client.channel_address} (chain {client.chain_id}, nonce {channel['nonce']})")
        _say(out, f"node: {client.node_address}")
        for line in _balance_lines(client, client.supported_assets):
            _say(out, line)
        return 0
    if args.command == "balance":
        for line in _balance_lines(client, [args.asset] if args.asset else list(client.supported_assets)):
            _say(out, line)
        return 0
    if args.command == "deposit":
        amount = parse_amount(args.amount)

        def started(payload: dict[str, Any]) -> None:
            _say(
                out,
                f"sent {payload['transactionHash']}; waiting for the chain and the node's countersignature…",
            )

        client.once("deposit.started", started)
        tx_hash = client.deposit(amount, args.asset)
        _say(out, f"deposited {format_amount(amount)} ({amount} wei) in {tx_hash}")
        for line in _balance_lines(client, [args.asset]):
            _say(out, line)
        return 0
    if args.command == "withdraw":
        amount = parse_amount(args.amount)

        def started(payload: dict[str, Any]) -> None:
            _say(
                out,
                f"the node is sending the withdrawal of {payload['amount']} wei to {payload['recipient']}…",
            )

        client.once("withdrawal.started", started)
        _say(out, "asking the node to withdraw…")
        tx_hash = client.withdraw(amount, args.asset, args.to)
        _say(out, f"withdrew {format_amount(amount)} ({amount} wei) in {tx_hash}")
        for line in _balance_lines(client, [args.asset]):
            _say(out, line)
        return 0
    if args.command in ("send", "link", "redeem", "history"):
        return _payment_command(client, args, out)
    assert args.command == "collateral"
    wanted = parse_amount(args.amount) if args.amount is not None else None
    answer = client.request_collateral(args.asset, wanted)
    if answer.get("requested"):
        _say(out, f"the node is depositing collateral (transaction record {answer.get('transactionId')})")
    else:
        _say(out, "the node already holds enough collateral here (or a deposit is on its way)")
    return 0


def _payment_command(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "send":
        amount = parse_amount(args.amount)
        payment_id = client.transfer(args.recipient, amount, args.asset)
        _say(out, f"sent {format_amount(amount)} ({amount} wei) to {args.recipient}: payment {payment_id}")
        return 0
    if args.command == "link":
        amount = parse_amount(args.amount)
        link = client.create_link(amount, args.asset)
        _say(out, f"link for {format_amount(amount)} ({amount} wei): {link['url']}")
        _say(out, f"payment id {link['payment_id']}, secret {link['secret']} (whoever holds it can redeem)")
        return 0
    if args.command == "redeem":
        payment_id, secret = parse_link(args.link, args.secret)
        payment = client.redeem_link(payment_id, secret)
        _say(
            out, f"redeemed {format_amount(payment['amount'])} ({payment['amount']} wei): {payment['status']}"
        )
        return 0
    assert args.command == "history"
    for payment in client.get_transfer_history():
        arrow = "to" if payment["sender"] == client.address else "from"
        other = (payment["recipient"] or "a link") if arrow == "to" else payment["sender"]
        _say(
            out,
            f"{payment['paymentId']} {payment['kind']} {arrow} {other}: {payment['amount']} wei,"
            f" {payment['status']}",
        )
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    missing = [flag for flag, value in (("--node", args.node), ("--key-file", args.key_file)) if not value]
    if missing:
        parser.error(f"{' and '.join(missing)} required")
    try:
        return run(args, out)
    except ConnextError as exc:
        fields = exc.details.get("fields") if isinstance(exc, NodeError) else None
        print(f"error: {exc}" + (f" {fields}" if fields else ""), file=err, flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=err, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
