"""Chaos run: payments between clients through the proxy while the stack's parts are killed and restarted.

    .venv/bin/python bench/chaos.py [--seconds 120] [--clients 6] [--faults 12] [--nodes 2] [--seed N]
    (or: make chaos CHAOS_ARGS="--seconds 60")

Starts a private stack in a temporary directory, none of it shared with this machine's services: a
Postgres cluster (initdb / pg_ctl from /usr/lib/postgresql/*/bin) and a redis-server on free ports,
an anvil chain, the contracts, N daphne processes, a Celery worker with beat and nginx
(proxy/nginx.conf.template) in front. K clients (the SDK, `AsyncClient`) connect through nginx, fund
their channels and then each keeps paying random others, every payment with an id chosen before it is
sent (a call whose outcome a fault left unknown is sent again with that id, as an application would).

Meanwhile, at random moments, one fault at a time:
  node      SIGKILL a daphne process (its clients reconnect through nginx), restart it 1-3 s later
  worker    SIGKILL the Celery worker with its beat and pool, restart it 1-3 s later
  redis     SIGKILL redis-server (no persistence: queues, groups and cache are gone), restart it
  postgres  `pg_ctl stop -m immediate` (a crash: recovery from the WAL on start), start it 2 s later
  chain     SIGSTOP anvil for 5-10 s (the RPC hangs), then SIGCONT

After each fault the run measures how long until /api/health through nginx is 200 again and until the
next payment completes. When the load ends, every payment still open gets time to settle (--settle).

Prints and writes to bench/results/chaos-<UTC time>.json: payments completed, failed cleanly (refused,
refunded or failed, nothing moved), stuck (not final after settling), duplicated or lost (a user's
balance off from what the completed payments say), the conservation check per asset (every channel's
balances plus locked amounts against the chain's deposits minus withdrawals), whether each client's
state matches the node's, and the recovery times. The goal: 0 lost, 0 duplicated, 0 stuck.

Not a test: which faults hit which payments depends on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from eth_account import Account  # noqa: E402
from web3 import HTTPProvider, Web3  # noqa: E402

from connext import AsyncClient  # noqa: E402
from connext.chain import devchain  # noqa: E402
from connext.chain.contracts import contract_at  # noqa: E402
from connext.errors import ConnextError, NodeError, NodeUnavailableError  # noqa: E402
from connext.errors import TimeoutError as ConnextTimeoutError  # noqa: E402
from connext.protocol import serialization  # noqa: E402
from tests.support.conservation import ETH, offchain_holdings  # noqa: E402
from tests.support.processes import ManagedProcess, NodeProcess, celery_worker  # noqa: E402
from tests.support.proxy import NginxProcess  # noqa: E402

PYTHON = sys.executable
DEPOSIT = 10**17  # each client's deposit of ETH
TOKEN_DEPOSIT = 10**19  # … and of the dev chain's TestToken
FINAL = ("completed", "refunded", "failed")
FAULTS = ("node", "worker", "redis", "postgres", "chain")
PAY_TIMEOUT = 90.0  # how long one payment may take, retries included, before it counts as open
HEALTH_TIMEOUT = 120.0
MAX_OVERRUN = 600.0  # the load goes on past --seconds until every fault was injected, at most this long


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- private services ---------------------------------------------------------------------------------


class PrivatePostgres:
    """A Postgres cluster of our own in `directory`, on 127.0.0.1:`port` (as the postgres user when run
    as root: Postgres refuses to run as root)."""

    def __init__(self, directory: Path) -> None:
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1].parent
        self.data = directory / "pgdata"
        self.socket_dir = directory / "pgsocket"
        self.log_path = directory / "postgres.log"
        self.port = devchain.free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, stdout=subprocess.DEVNULL, timeout=120)

    def init(self) -> None:
        for path in (self.data, self.socket_dir):
            path.mkdir(parents=True)
            if self.as_user:
                shutil.chown(path, "postgres", "postgres")
        self.log_path.touch()
        if self.as_user:
            shutil.chown(self.log_path, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=300"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "90",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


def redis_server(directory: Path, port: int) -> ManagedProcess:
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return ManagedProcess(
        [*command, "--dir", str(directory)], env=dict(os.environ), log_path=directory / "redis.log"
    )


def anvil_process(directory: Path, port: int) -> ManagedProcess:
    command = [
        devchain.find_anvil(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chain-id", str(devchain.DEV_CHAIN_ID),
        "--mnemonic", devchain.DEV_MNEMONIC,
        "--balance", str(devchain.DEV_ACCOUNT_BALANCE_ETH),
    ]  # fmt: skip
    return ManagedProcess(command, env=dict(os.environ), log_path=directory / "anvil.log")


def seconds_until(condition: Any, timeout: float, stop: threading.Event | None = None) -> float | None:
    """Seconds until `condition()` was truthy (an exception counts as not yet); None after `timeout`
    or once `stop` is set."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and not (stop is not None and stop.is_set()):
        with contextlib.suppress(Exception):
            if condition():
                return time.monotonic() - started
        time.sleep(0.1)
    return None


def wait_for(condition: Any, timeout: float, what: str) -> float:
    """Seconds until `condition()` was truthy; SystemExit naming `what` after `timeout`."""
    seconds = seconds_until(condition, timeout)
    if seconds is None:
        raise SystemExit(f"[chaos] {what}: not within {timeout:.0f} s")
    return seconds


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


# -- the stack ------------------------------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    postgres: PrivatePostgres
    redis: ManagedProcess
    chain: ManagedProcess
    chain_url: str
    env: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeProcess] = field(default_factory=list)
    worker: ManagedProcess | None = None
    proxy: NginxProcess | None = None

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    def healthy(self) -> bool:
        assert self.proxy is not None
        return http_status(f"{self.proxy.url}/api/health") == 200

    def stop(self) -> None:
        for process in [self.proxy, self.worker, *self.nodes]:
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        for process in (self.redis, self.chain):
            with contextlib.suppress(Exception):
                if process.process is not None and process.alive():
                    os.kill(process.process.pid, signal.SIGCONT)
                process.stop()
        self.postgres.stop()


def start_stack(workdir: Path, nodes: int) -> Stack:
    postgres = PrivatePostgres(workdir)
    postgres.init()
    postgres.start()
    redis_port, chain_port = devchain.free_port(), devchain.free_port()
    redis = redis_server(workdir, redis_port)
    chain = anvil_process(workdir, chain_port)
    stack = Stack(workdir, postgres, redis, chain, f"http://127.0.0.1:{chain_port}")
    try:
        redis.start()
        chain.start()
        wait_for(lambda: devchain.rpc_call(stack.chain_url, "eth_chainId", timeout=1.0), 30, "anvil")
        with psycopg.connect(f"{postgres.url}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE connext_chaos")
        stack.env = {
            **os.environ,
            "DATABASE_URL": f"{postgres.url}/connext_chaos",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CHAIN_RPC_URL": stack.chain_url,
            "PUBLIC_CHAIN_RPC_URL": stack.chain_url,
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "NODE_PRIVATE_KEY": "0x" + secrets.token_hex(32),
            "NODE_VAR_DIR": str(workdir / "var"),
            "DEPLOYMENTS_FILE": str(workdir / "deployments.json"),
            "CHAIN_CONFIRMATIONS": "0",
            "NODE_LOG_LEVEL": "WARNING",
            "TRUSTED_PROXY_COUNT": "1",
            # The clients pay as fast as the node answers: past a wallet's pace (FAIR_SHARE).
            "FAIR_SHARE": "1000000/second",
            "FAIR_SHARE_BURST": "100000",
        }
        stack.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        manage = [PYTHON, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=stack.env, check=True)
        subprocess.run(
            [*manage, "deploy_contracts", "--dev"],
            cwd=ROOT,
            env=stack.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stack.nodes = [NodeProcess(env=stack.env, log_path=workdir / f"daphne-{i}.log") for i in range(nodes)]
        stack.worker = celery_worker(env=stack.env, log_path=workdir / "celery.log")
        for process in [*stack.nodes, stack.worker]:
            process.start()
        for node in stack.nodes:
            node.wait_serving(timeout=60)
        static_root = workdir / "static"
        static_root.mkdir()
        stack.proxy = NginxProcess(
            directory=workdir / "nginx",
            upstreams=[f"127.0.0.1:{node.port}" for node in stack.nodes],
            static_root=static_root,
        )
        stack.proxy.start()
        wait_for(stack.healthy, HEALTH_TIMEOUT, "the node healthy through the proxy")
    except BaseException:
        stack.stop()
        raise
    return stack


# -- faults ---------------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    target: str
    at: float  # seconds into the run
    down_seconds: float
    back_at: float = 0.0  # seconds into the run when the part was back
    healthy_after: float | None = None  # seconds from the end of the fault until /api/health was 200
    next_payment_after: float | None = None  # … until a payment completed (None: not within 120 s)


def inject(stack: Stack, kind: str, rng: random.Random, started: float, stop: threading.Event) -> Fault:
    """Break one part of the stack and bring it back; returns when it was brought back (a process is
    not started again once `stop` is set: the stack is being stopped)."""
    at = time.monotonic() - started
    if kind == "node":
        index = rng.randrange(len(stack.nodes))
        node = stack.nodes[index]
        target = f"daphne-{index} (:{node.port})"
        node.stop(signal.SIGKILL)
        down = rng.uniform(1, 3)
        if not stop.wait(down):
            node.start()
            node.wait_serving(timeout=60)
    elif kind == "worker":
        assert stack.worker is not None
        target = "celery worker + beat"
        stack.worker.stop(signal.SIGKILL)
        down = rng.uniform(1, 3)
        if not stop.wait(down):
            stack.worker.start()
    elif kind == "redis":
        target = "redis-server"
        stack.redis.stop(signal.SIGKILL)
        down = 1.0
        if not stop.wait(down):
            stack.redis.start()
    elif kind == "postgres":
        target = "postgres"
        stack.postgres.stop("immediate")
        down = 2.0
        if not stop.wait(down):
            stack.postgres.start()
    else:
        target = "anvil (SIGSTOP)"
        assert stack.chain.process is not None
        os.kill(stack.chain.process.pid, signal.SIGSTOP)
        down = rng.uniform(5, 10)
        stop.wait(down)
        os.kill(stack.chain.process.pid, signal.SIGCONT)
    return Fault(kind=kind, target=target, at=round(at, 1), down_seconds=round(down, 1))


def fault_plan(count: int, rng: random.Random, kinds_wanted: tuple[str, ...] = FAULTS) -> list[str]:
    """`count` faults, every kind wanted as evenly as the count allows, in random order."""
    kinds = [kinds_wanted[i % len(kinds_wanted)] for i in range(count)]
    rng.shuffle(kinds)
    return kinds


@dataclass
class FaultRun:
    """The fault thread's side of the run: the load goes on until `done`; `stop` ends the thread."""

    kinds: list[str]
    completions: list[float]  # when payments completed, in order (appended by the load)
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


def run_faults(stack: Stack, plan: FaultRun, seconds: float, seed: int, started: float) -> list[Fault]:
    """On a thread of its own: the faults spread over the run, each once the stack recovered from the
    one before (healthy, and a payment completed since); `plan.done` set at the end."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    spacing = seconds / (len(plan.kinds) + 1)
    try:
        for number, kind in enumerate(plan.kinds, start=1):
            due = started + spacing * number + rng.uniform(-spacing / 4, spacing / 4)
            if plan.stop.wait(max(0.0, due - time.monotonic())):
                break
            log(f"fault {number}/{len(plan.kinds)}: {kind}")
            faults.append(recover_from(stack, inject(stack, kind, rng, started, plan.stop), plan, started))
    finally:
        plan.done.set()
    return faults


def recover_from(stack: Stack, fault: Fault, plan: FaultRun, started: float) -> Fault:
    """`fault` with the time the stack took to be healthy again, and to complete a payment."""
    fault.back_at = back = round(time.monotonic() - started, 2)
    healthy = seconds_until(stack.healthy, HEALTH_TIMEOUT, plan.stop)
    fault.healthy_after = None if healthy is None else round(healthy, 2)
    completions = plan.completions
    if seconds_until(lambda: completions and completions[-1] > back, HEALTH_TIMEOUT, plan.stop) is not None:
        fault.next_payment_after = round(min(t for t in completions if t > back) - back, 2)
    log(
        f"  {fault.target} down {fault.down_seconds} s; after it came back: healthy in"
        f" {fault.healthy_after} s, a payment completed in {fault.next_payment_after} s"
    )
    return fault


# -- clients and payments -------------------------------------------------------------------------------


@dataclass
class PaymentRun:
    payment_id: str
    sender: int
    recipient: int
    asset_id: str
    amount: int
    started: float
    outcome: str = "open"
    finished: float | None = None
    retries: int = 0
    errors: list[str] = field(default_factory=list)


async def connect_clients(stack: Stack, count: int) -> tuple[list[AsyncClient], list[str]]:
    """`count` clients through the proxy, each with ETH and TestToken deposited and the node's
    collateral of both in its channel; and the assets."""
    assert stack.proxy is not None
    w3 = Web3(HTTPProvider(stack.chain_url))
    funder = Account.from_key(devchain.DEV_PRIVATE_KEYS[0])
    clients = []
    for index in range(count):  # one at a time: nginx's least_conn spreads the sockets
        key = secrets.token_bytes(32)
        w3.provider.make_request("anvil_setBalance", [w3.eth.account.from_key(key).address, hex(10**19)])  # type: ignore[arg-type]
        clients.append(
            await AsyncClient.connect(
                stack.proxy.url,
                key,
                store_path=str(stack.workdir / f"client-{index}.sqlite3"),
                chain_rpc_url=stack.chain_url,
            )
        )
    assets = [ETH, *(a for a in clients[0].supported_assets if a != ETH)][:2]
    for asset in assets[1:]:  # the operator's tokens for collateral, and each client's
        token = contract_at(w3, "TestToken", asset)
        holders = [(clients[0].node_address, 1000 * TOKEN_DEPOSIT)] + [
            (c.address, TOKEN_DEPOSIT) for c in clients
        ]
        for holder, amount in holders:
            tx = token.functions.mint(holder, amount).build_transaction(
                {"from": funder.address, "nonce": w3.eth.get_transaction_count(funder.address, "pending")}
            )
            signed = funder.sign_transaction(tx)
            w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    for asset in assets:
        amount = DEPOSIT if asset == ETH else TOKEN_DEPOSIT
        await asyncio.gather(*(client.deposit(amount, asset) for client in clients))
        await asyncio.gather(*(client.request_collateral(asset) for client in clients))
    deadline = time.monotonic() + 120
    while not all(client.get_free_balance(asset)["node"] > 0 for client in clients for asset in assets):
        if time.monotonic() > deadline:
            raise SystemExit("[chaos] the node did not collateralize every channel within 120 s")
        await asyncio.sleep(0.2)
    return clients, assets


async def pay(clients: list[AsyncClient], run: PaymentRun, started: float, completions: list[float]) -> None:
    client = clients[run.sender]
    deadline = time.monotonic() + PAY_TIMEOUT
    while True:
        try:
            await client.transfer(
                clients[run.recipient].address, run.amount, run.asset_id, payment_id=run.payment_id
            )
            break
        except (NodeUnavailableError, ConnextTimeoutError) as exc:  # outcome unknown or nothing sent
            run.errors.append(repr(exc)[:160])
            if time.monotonic() > deadline:
                return  # left open; settled (or found stuck) after the run
            run.retries += 1
            await asyncio.sleep(0.5)
        except NodeError as exc:
            if exc.status >= 500 or exc.status == 429:  # the node could not serve it now: nothing done
                run.errors.append(repr(exc)[:160])
                run.retries += 1
                await asyncio.sleep(0.5)
                continue
            run.outcome, run.finished = f"refused:{exc.code}", time.monotonic() - started
            return
        except ConnextError as exc:
            run.errors.append(repr(exc)[:160])
            run.outcome, run.finished = f"error:{exc.code}", time.monotonic() - started
            return
    with contextlib.suppress(ConnextTimeoutError):
        settled = await client.wait_for_transfer(
            run.payment_id, timeout=max(1.0, deadline - time.monotonic())
        )
        run.outcome, run.finished = str(settled["status"]), time.monotonic() - started
        if run.outcome == "completed":
            completions.append(run.finished)


async def load(
    clients: list[AsyncClient],
    assets: list[str],
    seconds: float,
    seed: int,
    started: float,
    completions: list[float],
    faults_done: threading.Event,
) -> list[PaymentRun]:
    """Every client pays random others, one payment at a time, for `seconds` and until every fault
    was injected (at most MAX_OVERRUN more)."""
    rng = random.Random(seed)
    runs: list[PaymentRun] = []
    end = started + seconds

    async def sender_loop(sender: int) -> None:
        while (time.monotonic() < end or not faults_done.is_set()) and time.monotonic() < end + MAX_OVERRUN:
            recipient = rng.choice([i for i in range(len(clients)) if i != sender])
            asset = rng.choice(assets)
            run = PaymentRun(
                payment_id="0x" + secrets.token_hex(32),
                sender=sender,
                recipient=recipient,
                asset_id=asset,
                amount=rng.randrange(1, 100) * (10**12 if asset == ETH else 10**14),
                started=time.monotonic() - started,
            )
            runs.append(run)
            try:
                await pay(clients, run, started, completions)
            except Exception as exc:  # anything else the client raised: reported, the load goes on
                run.errors.append(repr(exc)[:160])
                run.outcome = f"error:{type(exc).__name__}"

    await asyncio.gather(*(sender_loop(i) for i in range(len(clients))))
    return runs


async def settle_open(
    clients: list[AsyncClient], runs: list[PaymentRun], timeout: float, started: float
) -> None:
    """Give every payment still open until `timeout` to reach a final status (the node's sweeps)."""
    deadline = time.monotonic() + timeout
    for run in runs:
        if run.outcome in FINAL or run.outcome.startswith(("refused", "error")):
            continue
        client = clients[run.sender]
        while time.monotonic() < deadline:
            with contextlib.suppress(ConnextError):
                news = await client.get_transfer(run.payment_id)
                if news.get("status") in FINAL:
                    run.outcome, run.finished = str(news["status"]), time.monotonic() - started
                    break
            await asyncio.sleep(1.0)
        else:
            with contextlib.suppress(ConnextError):
                run.outcome = "stuck:" + str((await client.get_transfer(run.payment_id)).get("status"))


# -- the checks -----------------------------------------------------------------------------------------


def node_channels(database_url: str) -> dict[str, Any]:
    """The node's latest state of every channel, by channel address."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT address, latest_state FROM channels_app_channel").fetchall()
    return {address: serialization.channel_state_from_json(state) for address, state in rows}


def user_balance(state: Any, asset_id: str) -> int:
    slot = state.asset_index(asset_id)
    return int(state.balances[slot][1]) if slot is not None else 0


def node_payments(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT payment_id, status FROM channels_app_payment").fetchall()
    return dict(rows)


def check(
    stack: Stack,
    clients: list[AsyncClient],
    assets: list[str],
    runs: list[PaymentRun],
    start_balances: dict[str, list[int]],
) -> dict[str, Any]:
    """Per asset, each user's money in the node's latest states against what the completed payments
    say: a negative difference is money lost, a positive one money paid twice. A user's money is its
    balance plus what it locked in transfers still active, unless their payment is completed (then
    it is the receiver's)."""
    w3 = Web3(HTTPProvider(stack.chain_url))
    states = node_channels(stack.database_url)
    payments = node_payments(stack.database_url)
    report: dict[str, Any] = {"per_asset": {}}
    for asset in assets:
        expected = list(start_balances[asset])
        for run in runs:
            if run.asset_id == asset and payments.get(run.payment_id) == "completed":
                expected[run.sender] -= run.amount
                expected[run.recipient] += run.amount
        actual, locked_open = [], 0
        for client in clients:
            state = states[client.channel_address]
            money = user_balance(state, asset)
            for transfer in state.transfers:
                if transfer.asset_id != asset or transfer.initiator != client.address:
                    continue
                if payments.get(serialization.hex_bytes(transfer.payment_id)) != "completed":
                    money += sum(transfer.balance)
                    locked_open += sum(transfer.balance)
            actual.append(money)
        deviation = [a - e for a, e in zip(actual, expected, strict=True)]
        holdings = offchain_holdings(w3, states.values(), asset)
        report["per_asset"][asset] = {
            "user_deviation": deviation,
            "lost": -sum(d for d in deviation if d < 0),
            "duplicated": sum(d for d in deviation if d > 0),
            "locked_in_open_payments": locked_open,
            "conservation": {
                **asdict(holdings),
                "credited_equals_deposited": holdings.credited == holdings.deposited,
                "held_equals_deposited_minus_withdrawn": holdings.held
                == holdings.deposited - holdings.withdrawn,
            },
        }
    report["client_node_outcome_disagreements"] = [
        {"paymentId": run.payment_id, "client": run.outcome, "node": payments.get(run.payment_id)}
        for run in runs
        if run.outcome in FINAL and payments.get(run.payment_id) != run.outcome
    ][:20]
    report["clients_in_step_with_node"] = sum(
        client.state.state_hash == states[client.channel_address].state_hash for client in clients
    )
    report["transfers_still_active"] = sum(len(state.transfers) for state in states.values())
    return report


# -- the run --------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="connext-chaos-"))
    workdir.chmod(0o755)  # the postgres user reaches its cluster inside
    log(f"starting a private stack in {workdir}: Postgres, Redis, anvil, {args.nodes} daphne, Celery, nginx")
    stack = await asyncio.to_thread(start_stack, workdir, args.nodes)
    clients: list[AsyncClient] = []
    try:
        log(f"connecting and funding {args.clients} clients through nginx")
        clients, assets = await connect_clients(stack, args.clients)
        states = node_channels(stack.database_url)
        start_balances = {
            a: [user_balance(states[client.channel_address], a) for client in clients] for a in assets
        }
        rng = random.Random(args.seed)
        kinds = fault_plan(args.faults, rng, tuple(args.kinds.split(",")))
        log(f"paying for {args.seconds:.0f} s with {len(kinds)} faults: {', '.join(kinds)}")
        started = time.monotonic()
        plan = FaultRun(kinds=kinds, completions=[])
        faults_task = asyncio.create_task(
            asyncio.to_thread(run_faults, stack, plan, args.seconds, args.seed + 1, started)
        )
        try:
            runs = await load(clients, assets, args.seconds, args.seed, started, plan.completions, plan.done)
        finally:
            plan.stop.set()  # no fault after the load (nor once the run is cancelled)
        faults = await faults_task
        log(
            f"load over ({len(runs)} payments); every process up; settling what is open (≤ {args.settle:.0f} s)"
        )
        await asyncio.to_thread(wait_for, stack.healthy, HEALTH_TIMEOUT, "health after the run")
        await settle_open(clients, runs, args.settle, started)
        # Each client catches up with the node (its socket's sync) before the states are compared.
        await asyncio.sleep(0)
        deadline = time.monotonic() + 60
        states = node_channels(stack.database_url)
        while time.monotonic() < deadline and not all(
            c.state.state_hash == states[c.channel_address].state_hash for c in clients
        ):
            await asyncio.sleep(0.5)
            states = node_channels(stack.database_url)
        checks = await asyncio.to_thread(check, stack, clients, assets, runs, start_balances)
        await asyncio.gather(*(client.close() for client in clients))
    finally:
        stack.stop()
    outcomes = Counter(run.outcome for run in runs)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": {
            "seconds": args.seconds,
            "clients": args.clients,
            "node_processes": args.nodes,
            "faults": args.faults,
            "kinds": args.kinds,
            "seed": args.seed,
            "settle_seconds": args.settle,
        },
        "payments": {
            "sent": len(runs),
            "completed": outcomes.get("completed", 0),
            "failed_cleanly": sum(
                n for o, n in outcomes.items() if o in ("refunded", "failed") or o.startswith("refused")
            ),
            "stuck": sum(n for o, n in outcomes.items() if o.startswith("stuck") or o == "open"),
            "client_errors": sum(n for o, n in outcomes.items() if o.startswith("error")),
            "outcomes": dict(outcomes),
            "calls_sent_again": sum(run.retries for run in runs),
        },
        "lost": {asset: found["lost"] for asset, found in checks["per_asset"].items()},
        "duplicated": {asset: found["duplicated"] for asset, found in checks["per_asset"].items()},
        "checks": checks,
        "faults": [asdict(f) for f in faults],
        "recovery_seconds": {
            kind: {
                "healthy_max": max(
                    (f.healthy_after for f in faults if f.kind == kind and f.healthy_after is not None),
                    default=None,
                ),
                "not_healthy_within_120_s": sum(
                    1 for f in faults if f.kind == kind and f.healthy_after is None
                ),
                "next_payment_max": max(
                    (
                        f.next_payment_after
                        for f in faults
                        if f.kind == kind and f.next_payment_after is not None
                    ),
                    default=None,
                ),
            }
            for kind in sorted({f.kind for f in faults})
        },
        "not_final": [asdict(run) for run in runs if run.outcome not in FINAL][:20],
        # The payments that took longest (which fault they crossed: their start against the faults').
        "slowest": [
            asdict(run)
            for run in sorted(runs, key=lambda r: (r.finished or 1e9) - r.started, reverse=True)[:10]
        ],
        "workdir": str(workdir),
    }


def conserved(found: dict[str, Any]) -> bool:
    return bool(
        found["conservation"]["held_equals_deposited_minus_withdrawn"]
        and found["conservation"]["credited_equals_deposited"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="length of the load (default 120)")
    parser.add_argument("--clients", type=int, default=6, help="clients (default 6)")
    parser.add_argument("--faults", type=int, default=12, help="faults spread over the load (default 12)")
    parser.add_argument(
        "--kinds", default=",".join(FAULTS), help=f"the faults to draw from (default {','.join(FAULTS)})"
    )
    parser.add_argument("--nodes", type=int, default=2, help="daphne processes behind nginx (default 2)")
    parser.add_argument("--settle", type=float, default=120, help="seconds open payments get afterwards")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON result")
    args = parser.parse_args()
    if not set(args.kinds.split(",")) <= set(FAULTS):
        parser.error(f"--kinds: choose from {', '.join(FAULTS)}")
    report = asyncio.run(main_async(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"chaos-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    payments = report["payments"]
    print(
        f"\n{payments['sent']} payments under {len(report['faults'])} faults: {payments['completed']} completed,"
        f" {payments['failed_cleanly']} failed cleanly, {payments['stuck']} stuck, {payments['client_errors']}"
        f" client errors; lost {report['lost']}, duplicated {report['duplicated']} (base units per asset);"
        f" conservation {'holds' if all(conserved(found) for found in report['checks']['per_asset'].values()) else 'BROKEN'};"
        f" recovery (s): {json.dumps(report['recovery_seconds'])}. Written to {path}"
    )


if __name__ == "__main__":
    main()
