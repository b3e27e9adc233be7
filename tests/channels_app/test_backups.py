"""`manage.py backup` and `manage.py restore`: what a backup holds, and every restore refused before it
changes anything (the whole round trip is tests/integration/test_restore.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from channels_app import backups
from channels_app.models import BlockCursor, Channel
from tests.channels_app.conftest import new_wallet

pytestmark = pytest.mark.django_db(transaction=True)  # pg_dump sees only what is committed


def test_a_backup_is_a_dump_and_a_manifest_of_exactly_what_it_holds(client, w3, tmp_path):
    wallets = [new_wallet(client, w3) for _ in range(2)]
    BlockCursor.objects.create(name="logs", chain_id=31337, block_number=7)

    call_command("backup", "--dir", str(tmp_path))

    (dump,) = tmp_path.glob("*.dump")
    manifest = json.loads(backups.manifest_for(dump).read_text())
    assert manifest["channels"] == {w.state.channel_address: 1 for w in wallets}
    assert manifest["cursors"] == {"logs@31337": 7}
    assert manifest["chain_ids"] == [31337]
    assert manifest["sha256"] == backups._sha256(dump)
    newest = max(path.stem for path in Path(backups.__file__).parent.glob("migrations/0*.py"))
    assert manifest["migrations"]["channels_app"] == newest
    assert dump.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format


def test_backups_beyond_keep_are_removed_oldest_first(client, w3, tmp_path):
    for _ in range(3):
        call_command("backup", "--dir", str(tmp_path), "--keep", "2")
    dumps = sorted(tmp_path.glob("*.dump"))
    assert len(dumps) == 2
    assert len(list(tmp_path.glob("*.manifest.json"))) == 2
    assert all(backups.manifest_for(dump).exists() for dump in dumps)


def test_a_restore_into_a_database_that_is_not_empty_is_refused_and_changes_nothing(client, w3, tmp_path):
    wallet = new_wallet(client, w3)
    call_command("backup", "--dir", str(tmp_path))
    (dump,) = tmp_path.glob("*.dump")

    with pytest.raises(CommandError, match="not empty"):
        call_command("restore", str(dump))

    channel = Channel.objects.get()
    assert (channel.address, channel.fenced_since) == (wallet.state.channel_address, None)


def test_a_dump_that_is_not_the_one_its_manifest_describes_is_refused(client, w3, tmp_path):
    new_wallet(client, w3)
    call_command("backup", "--dir", str(tmp_path))
    (dump,) = tmp_path.glob("*.dump")
    with dump.open("ab") as handle:
        handle.write(b"\0")

    with pytest.raises(CommandError, match="SHA-256"):
        call_command("restore", str(dump))
    with pytest.raises(CommandError, match="cannot read the manifest"):
        call_command("restore", str(dump), "--manifest", str(tmp_path / "missing.json"))
    assert Channel.objects.get().fenced_since is None


def test_a_restore_without_the_chain_is_refused(client, w3, tmp_path):
    call_command("backup", "--dir", str(tmp_path))
    (dump,) = tmp_path.glob("*.dump")
    with override_settings(CHAIN_RPC_URL="http://127.0.0.1:9"), pytest.raises(CommandError, match="chain"):
        call_command("restore", str(dump))


def test_the_embedded_sqlite_database_is_not_dumped_but_told_how(settings, monkeypatch, tmp_path):
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.sqlite3")
    with pytest.raises(CommandError, match="sqlite3"):
        call_command("backup", "--dir", str(tmp_path))
    assert not list(Path(tmp_path).iterdir())
