"""`connext`: the client from a shell.

    connext --node URL --key-file FILE [--store PATH] [--rpc URL] [--confirmations N]
            [--block-time S] [--window-margin S] COMMAND

Commands: `info`, `balance [--asset A]`, `deposit AMOUNT [--asset A]`, `withdraw AMOUNT [--to ADDRESS]
[--asset A]`, `collateral [--asset A] [--amount AMOUNT] [--no-wait]`, `send RECIPIENT AMOUNT [--asset A]
[--payment-id ID]`, `link AMOUNT [--asset A]`, `redeem URL` (or `redeem PAYMENT_ID SECRET`), `history [--limit N]
[--before ID]`, and without the node (only the chain RPC, the key and the store): `watch [--poll S]`
(answers stale disputes, defunds what is owed) and `exit [--poll S]` (the whole unilateral exit). Amounts: `1.5eth`, `20gwei`, `1000wei` or plain
wei. Assets: `eth` or a token address. Errors print one line `error: CODE: message` and exit 1 (2 for
bad usage). `--node`, `--key-file`, `--store` and `--rpc` default to CONNEXT_NODE_URL, CONNEXT_KEY_FILE,
CONNEXT_STORE and CONNEXT_CHAIN_RPC_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

from connext.client import policy
from connext.client.amounts import format_amount, parse_amount
from connext.client.arguments import key_bytes
from connext.client.async_client import ETH, SETTLE_WAIT_SECONDS
from connext.client.disputes import ChannelDisputes
from connext.client.onchain import UserChain
from connext.client.store import Store
from connext.client.sync_client import Client
from connext.client.watcher import WatchOptions
from connext.errors import ConnextError, InvalidArgumentError, NodeError


def _asset(text: str) -> str:
    return ETH if text.lower() in ("eth", "ether") else text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}") from None
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError("0 to 600 seconds")
    return value


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
    windows = parser.add_argument_group(
        "on-chain windows",
        "the client signs no transfer, HashLock or channel whose on-chain window is shorter than"
        " its watcher's poll + confirmations x block time + margin",
    )
    windows.add_argument(
        "--confirmations",
        type=int,
        default=policy.DEFAULT_CONFIRMATIONS,
        help=f"blocks until an answer on chain counts (default {policy.DEFAULT_CONFIRMATIONS})",
    )
    windows.add_argument(
        "--block-time",
        type=float,
        default=policy.DEFAULT_BLOCK_SECONDS,
        help=f"the chain's block time in seconds (default {policy.DEFAULT_BLOCK_SECONDS:g})",
    )
    windows.add_argument(
        "--window-margin",
        type=float,
        default=policy.DEFAULT_MARGIN_SECONDS,
        help=f"seconds on top, for a congested chain or a restart (default {policy.DEFAULT_MARGIN_SECONDS:g})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="address, channel and balances")
    balance = commands.add_parser("balance", help="free balances in the channel, and payments in flight")
    balance.add_argument("--asset", type=_asset, default=None)
    for reader in (info, balance):
        reader.add_argument(
            "--wait",
            type=_seconds,
            default=SETTLE_WAIT_SECONDS,
            help="seconds to wait for a payment on its way to you before printing it as pending "
            f"(default {SETTLE_WAIT_SECONDS:g})",
        )
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
    collateral.add_argument(
        "--no-wait", action="store_true", help="return once the node answered, not once it is credited"
    )
    swap = commands.add_parser("swap", help="swap one asset of your channel for another at the node's rate")
    swap.add_argument("amount", help="what you give, e.g. 0.1eth (18 decimals) or plain base units")
    swap.add_argument("from_asset", type=_asset, help="the asset you give (eth or a token address)")
    swap.add_argument("to_asset", type=_asset, help="the asset you receive")
    swap.add_argument(
        "--max-slippage",
        default="0.01",
        help="how far below the first quote the node's rate may move before the swap is refused (default 0.01: 1 %%)",
    )
    commands.add_parser("rates", help="the node's swap rates")
    send = commands.add_parser("send", help="pay another user of the node")
    send.add_argument("recipient")
    send.add_argument("amount")
    send.add_argument("--asset", type=_asset, default=ETH)
    send.add_argument(
        "--payment-id",
        default=None,
        help="32 bytes of hex (default random); sending again with the same id never pays twice",
    )
    link = commands.add_parser("link", help="make a link payment anyone holding the URL can redeem")
    link.add_argument("amount")
    link.add_argument("--asset", type=_asset, default=ETH)
    redeem = commands.add_parser("redeem", help="redeem a link payment into your channel")
    redeem.add_argument("link", help="the link's URL, or its payment id followed by the secret")
    redeem.add_argument("secret", nargs="?", default=None)
    history = commands.add_parser("history", help="payments you sent and received, newest first")
    history.add_argument("--limit", type=int, default=50, help="payments to list (1 to 500, default 50)")
    history.add_argument("--before", default=None, help="list those older than this payment id")
    watch = commands.add_parser(
        "watch",
        help="watch the channel on chain (no node needed): answer stale disputes, defund what is owed",
    )
    watch.add_argument("--poll", type=float, default=5.0, help="seconds between chain reads")
    leave = commands.add_parser(
        "exit", help="take everything out on chain without the node: dispute, wait the windows, defund"
    )
    leave.add_argument("--poll", type=float, default=5.0, help="seconds between chain reads")
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


def _balance_lines(client: Client, assets: Sequence[str], wait: float = 0.0) -> list[str]:
    """Balances once the client has finished with what the node had for it (`Client.settle`), and
    what is still in flight: a payment completed for its sender is in the receiver's balance here."""
    in_flight = client.settle(timeout=wait)
    lines = []
    for asset in assets:
        balance = client.get_free_balance(asset)
        name = "ETH" if asset == ETH else asset
        lines.append(
            f"{name}: you {format_amount(balance['user'])} ({balance['user']} wei),"
            f" node {format_amount(balance['node'])} ({balance['node']} wei)"
        )
        moving = in_flight.get(asset)
        if moving is not None and moving.incoming_count:
            lines.append(
                f"  pending in: {format_amount(moving.incoming)} ({moving.incoming} wei)"
                f" in {moving.incoming_count} payment{'s' if moving.incoming_count != 1 else ''}"
            )
        if moving is not None and moving.outgoing_count:
            lines.append(
                f"  pending out: {format_amount(moving.outgoing)} ({moving.outgoing} wei)"
                f" in {moving.outgoing_count} payment{'s' if moving.outgoing_count != 1 else ''}"
            )
    return lines


def _channel_disputes(args: argparse.Namespace, out: TextIO) -> ChannelDisputes:
    """The channel's dispute steps from the store, the key and the chain alone."""
    key = key_bytes(_read_key(args.key_file))
    if not args.store:
        raise InvalidArgumentError("store_required", "watch and exit act from the store: pass --store")
    store = Store(args.store)
    setup = store.setup()
    if setup is None:
        raise ConnextError(
            "no_channel_in_store", f"{args.store} holds no channel: connect to the node once with it"
        )
    rpc_url = args.rpc or setup.chain_rpc_url
    if not rpc_url:
        raise ConnextError(
            "no_chain_rpc", "pass --rpc (or CONNEXT_CHAIN_RPC_URL): the store names no chain RPC"
        )
    chain = UserChain(rpc_url, key)
    if chain.address != setup.user:
        raise InvalidArgumentError(
            "wrong_key", f"the store's channel belongs to {setup.user}, not {chain.address}"
        )
    if chain.chain_id() != setup.chain_id:
        raise ConnextError(
            "wrong_chain", f"the RPC serves chain {chain.chain_id()}, the channel is on {setup.chain_id}"
        )

    def report(event: str, payload: dict[str, Any]) -> None:
        if event == "dispute.defunded":
            what = "your balance" if payload["kind"] == "channel" else f"transfer {payload['paymentId']}"
            _say(out, f"{event}: {what} paid you {payload['toUser']} wei of {payload['assetId']}")

    return ChannelDisputes(chain, store, setup, report=report, say=lambda text: _say(out, text))


def _watch(disputes: ChannelDisputes, poll_seconds: float, out: TextIO) -> int:
    _say(out, f"watching channel {disputes.channel_address} every {poll_seconds}s (Ctrl-C stops)")
    shown = ""
    while True:
        try:
            outlook = disputes.step(idle_owed=False)
        except ConnextError as exc:  # the chain refused a step or the RPC is down: keep watching
            _say(out, f"a step failed: {exc}; trying again")
        else:
            view = outlook.view
            line = f"dispute phase: {view.phase.value}"
            if view.consensus_expiry:
                line += f" (nonce {view.nonce}, windows end {view.consensus_expiry} / {view.defund_expiry})"
            if outlook.owed:
                line += "; owed to you: " + ", ".join(item.describe() for item in outlook.owed)
            if line != shown:
                _say(out, line)
                shown = line
        time.sleep(poll_seconds)


def _exit(disputes: ChannelDisputes, poll_seconds: float, out: TextIO) -> int:
    _say(
        out, f"exiting channel {disputes.channel_address} on chain as {disputes.user}; the node is not needed"
    )
    disputes.exit(poll_seconds=poll_seconds)
    return 0


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.command in ("watch", "exit"):
        disputes = _channel_disputes(args, out)
        if args.command == "watch":
            return _watch(disputes, args.poll, out)
        return _exit(disputes, args.poll, out)
    key = _read_key(args.key_file)
    watch_options = WatchOptions(
        confirmations=args.confirmations, block_seconds=args.block_time, margin_seconds=args.window_margin
    )
    client = Client.connect(
        args.node, key, store_path=args.store, chain_rpc_url=args.rpc, watch_options=watch_options
    )
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
        for line in _balance_lines(client, client.supported_assets, wait=args.wait):
            _say(out, line)
        return 0
    if args.command == "balance":
        assets = [args.asset] if args.asset else list(client.supported_assets)
        for line in _balance_lines(client, assets, wait=args.wait):
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
    if args.command in ("swap", "rates"):
        return _swap_command(client, args, out)
    assert args.command == "collateral"
    wanted = parse_amount(args.amount) if args.amount is not None else None
    if not args.no_wait:
        _say(out, "asking the node for collateral and waiting for its credit…")
    answer = client.request_collateral(args.asset, wanted, wait=not args.no_wait)
    if answer.get("requested"):
        verb = "is depositing" if args.no_wait else "deposited"
        _say(out, f"the node {verb} collateral (transaction record {answer.get('transactionId')})")
    else:
        _say(out, "the node already holds enough collateral here (or a deposit is on its way)")
    if not args.no_wait:
        for line in _balance_lines(client, [args.asset]):
            _say(out, line)
    return 0


def _swap_command(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "rates":
        answer = client.get_swap_rates()
        if not answer.get("rates"):
            _say(out, "the node offers no swaps")
        for rate in answer.get("rates", []):
            offer = Fraction(int(rate["rate"]["numerator"]), int(rate["rate"]["denominator"]))
            stale = " (stale)" if rate.get("stale") else ""
            _say(
                out,
                f"{rate['giveAssetId']} -> {rate['takeAssetId']}: {float(offer):.10g} per base unit, "
                f"spread {rate['spreadBps']} bps, at most {rate['maxGive']} per swap{stale}",
            )
        return 0
    amount = parse_amount(args.amount)
    received = client.swap(amount, args.from_asset, args.to_asset, max_slippage=args.max_slippage)
    _say(out, f"swapped {amount} of {args.from_asset} for {received} of {args.to_asset}")
    for line in _balance_lines(client, [args.from_asset, args.to_asset]):
        _say(out, line)
    return 0


def _payment_command(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "send":
        amount = parse_amount(args.amount)
        payment_id = client.transfer(args.recipient, amount, args.asset, payment_id=args.payment_id)
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
    page = client.get_transfer_history(limit=args.limit, before=args.before)
    for payment in page:
        arrow = "to" if payment["sender"] == client.address else "from"
        other = (payment["recipient"] or "a link") if arrow == "to" else payment["sender"]
        _say(
            out,
            f"{payment['paymentId']} {payment['kind']} {arrow} {other}: {payment['amount']} wei,"
            f" {payment['status']}",
        )
    if len(page) == args.limit:
        _say(out, f"older: connext history --before {page[-1]['paymentId']}")
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    needed = [("--key-file", args.key_file)]
    if args.command not in ("watch", "exit"):
        needed.append(("--node", args.node))
    missing = [flag for flag, value in needed if not value]
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
