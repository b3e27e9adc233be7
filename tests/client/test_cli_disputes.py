"""`connext watch` and `connext exit` need no node, and refuse a store or key they cannot act for
before touching the chain."""

from __future__ import annotations

import io
import secrets

from eth_account import Account

from connext.client.cli import main
from connext.client.store import ChannelSetup, Store
from connext.protocol.types import DefinitionKind


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def key_file(tmp_path, key: str) -> str:
    path = tmp_path / "key"
    path.write_text(key + "\n")
    return str(path)


def setup_for(user: str) -> ChannelSetup:
    return ChannelSetup(
        channel_address="0x" + "ab" * 20,
        chain_id=31337,
        node="0x" + "cd" * 20,
        user=user,
        factory="0x" + "ef" * 20,
        definitions={"0x" + "12" * 20: DefinitionKind.LINKED},
        assets=("0x" + "00" * 20,),
        chain_rpc_url="http://127.0.0.1:1",
    )


def test_exit_without_a_store_is_refused_before_anything_else(tmp_path, monkeypatch):
    monkeypatch.delenv("CONNEXT_STORE", raising=False)
    monkeypatch.delenv("CONNEXT_NODE_URL", raising=False)
    key = "0x" + secrets.token_hex(32)

    code, _, err = run("--key-file", key_file(tmp_path, key), "exit")

    assert (code, err.split(":")[0:2]) == (1, ["error", " store_required"])


def test_watch_with_a_store_that_never_held_a_channel_says_to_connect_once(tmp_path, monkeypatch):
    monkeypatch.delenv("CONNEXT_NODE_URL", raising=False)
    key = "0x" + secrets.token_hex(32)

    code, _, err = run("--key-file", key_file(tmp_path, key), "--store", str(tmp_path / "empty.db"), "watch")

    assert code == 1
    assert err.startswith("error: no_channel_in_store:")


def test_exit_with_another_users_store_is_refused_and_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("CONNEXT_NODE_URL", raising=False)
    store_path = tmp_path / "theirs.db"
    store = Store(store_path)
    store.save_setup(setup_for(Account.create().address))
    store.close()

    code, out, err = run(
        "--key-file", key_file(tmp_path, "0x" + secrets.token_hex(32)), "--store", str(store_path), "exit"
    )

    assert code == 1
    assert err.startswith("error: wrong_key:")
    assert out == ""
