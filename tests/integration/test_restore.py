"""A node restored from an old backup: `manage.py backup`, more payments, `manage.py restore` into a new
database, the clients reconnect. The node adopts their states and signs nothing at a nonce it signed
before (docs/protocol.md, "Restored data"). Real daphne, Celery, Postgres, Redis, anvil and clients."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from web3 import HTTPProvider, Web3

from connext import Client
from connext.chain import devchain
from connext.errors import LimitError
from tests.integration.conftest import LIVE_NODE_KEY, LIVE_NODE_SECRET_KEY
from tests.support import client_wallets
from tests.support.client_wallets import Funder, Wallet, until
from tests.support.processes import ROOT, live_node_env, serving_node

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MILLI = 10**15
ETH = client_wallets.ETH
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[8]


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def signed_hashes(url: str) -> dict[tuple[str, int], str]:
    """Every doubly signed state a node's database holds: (channel, nonce) -> state hash."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT c.address, u.nonce, u.state_hash FROM channels_app_channelupdate u"
            " JOIN channels_app_channel c ON c.id = u.channel_id"
        ).fetchall()
    return {(address, int(nonce)): state_hash for address, nonce, state_hash in rows}


def channel_rows(url: str) -> dict[str, tuple[int, bool]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT address, nonce, fenced_since IS NOT NULL FROM channels_app_channel"
        ).fetchall()
    return {address: (int(nonce), fenced) for address, nonce, fenced in rows}


@pytest.fixture
def empty_database(node_database_url: str) -> Iterator[str]:
    """A new, empty database on the same server, dropped afterwards."""
    name = "connext_restore_target"
    server = node_database_url.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def paid(sender: Wallet, receiver: Wallet, amount: int) -> None:
    payment = sender.transfer(receiver.address, amount)
    receiver.event("transfer.resolved", payment)
    sender.event("transfer.resolved", payment)


def test_a_node_restored_from_an_old_backup_adopts_the_clients_states_and_resigns_no_old_nonce(
    node_database_url, empty_database, anvil_url, deployments, tmp_path
):
    funder = Funder(Web3(HTTPProvider(anvil_url)), FUNDER_KEY)
    env_of = {
        url: live_node_env(
            database_url=url,
            chain_url=anvil_url,
            deployments_book=deployments["book"],
            var_dir=tmp_path / "var",
            node_key=LIVE_NODE_KEY,
            secret_key=LIVE_NODE_SECRET_KEY,
        )
        for url in (node_database_url, empty_database)
    }
    keys = {name: funder.new_key() for name in ("alice", "bob")}
    stores = {name: str(tmp_path / f"{name}.sqlite3") for name in keys}

    def connect(node_url: str, name: str) -> Wallet:
        return Wallet(Client.connect(node_url, keys[name], store_path=stores[name], chain_rpc_url=anvil_url))

    (tmp_path / "before").mkdir()
    with serving_node(env=env_of[node_database_url], logs=tmp_path / "before") as node:
        alice, bob = connect(node.url, "alice"), connect(node.url, "bob")
        try:
            alice.deposit(20 * MILLI)
            bob.deposit(5 * MILLI)
            for wallet in (alice, bob):
                try:
                    wallet.request_collateral(ETH)
                except LimitError as exc:  # the node collateralized it by itself after the deposit
                    if exc.code != "collateral_not_justified":
                        raise
                until(lambda wallet=wallet: wallet.get_free_balance(ETH)["node"] > 0, "collateral")
            paid(alice, bob, 2 * MILLI)
            made = manage(env_of[node_database_url], "backup", "--dir", str(tmp_path / "backups"))
            dump = Path(made.split()[1])
            manifest = json.loads(dump.with_name(dump.name.replace(".dump", ".manifest.json")).read_text())
            for _ in range(3):  # after the backup: what the restored node will have forgotten
                paid(alice, bob, 1 * MILLI)
                paid(bob, alice, 1 * MILLI // 2)
            held = {w.channel_address: w.get_channel()["nonce"] for w in (alice, bob)}
            balances = {w.channel_address: w.get_free_balance(ETH) for w in (alice, bob)}
        finally:
            alice.close()
            bob.close()
    signed_before = signed_hashes(node_database_url)
    assert all(manifest["channels"][address] < nonce for address, nonce in held.items())

    restored = manage(env_of[empty_database], "restore", str(dump))
    assert "fenced" in restored
    assert all(fenced for _, fenced in channel_rows(empty_database).values())

    (tmp_path / "after").mkdir()
    with serving_node(env=env_of[empty_database], logs=tmp_path / "after") as node:
        alice, bob = connect(node.url, "alice"), connect(node.url, "bob")
        try:
            # Each client showed its state on connecting; the node took it and lets the channel go.
            until(
                lambda: all(channel_rows(empty_database)[a] == (nonce, False) for a, nonce in held.items()),
                "the node to adopt both clients' states",
            )
            for wallet in (alice, bob):
                assert wallet.get_free_balance(ETH) == balances[wallet.channel_address]
            paid(alice, bob, 1 * MILLI)  # and the channels carry on from there
            after = {w.channel_address: w.get_channel()["nonce"] for w in (alice, bob)}
        finally:
            alice.close()
            bob.close()

    signed_after = signed_hashes(empty_database)
    # Never a second state at a nonce signed before; the new ones all come after the adopted ones.
    for key, state_hash in signed_after.items():
        if key in signed_before:
            assert state_hash == signed_before[key], f"a different state signed again at {key}"
        else:
            assert key[1] > held[key[0]], f"a state at {key} the clients did not hold"
    assert all(after[address] > nonce for address, nonce in held.items())
    with psycopg.connect(empty_database) as connection:
        adopted = connection.execute(
            "SELECT c.address, u.nonce FROM channels_app_channelupdate u"
            " JOIN channels_app_channel c ON c.id = u.channel_id WHERE u.kind = 'reconcile'"
        ).fetchall()
    assert {(address, int(nonce)) for address, nonce in adopted} == set(held.items())
