"""Backups of the node's database and their restore (`manage.py backup`, `manage.py restore`).

A backup is a `pg_dump` in the custom format and a manifest beside it: the chain and node it belongs
to, the chain watchers' cursors, each channel's latest nonce, the applied migrations and the dump's
SHA-256. Dump and manifest are read in one snapshot (`pg_export_snapshot`), so the manifest says
exactly what the dump holds. A restore goes into an empty database only, checks the dump against its
manifest and the restored rows against the manifest, migrates, and then fences every channel
(`services.fence`): the node has forgotten whatever it signed after the backup, and signs nothing for
a channel again until its user has shown the latest state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import connections

from channels_app.models import BlockCursor, Channel

MANIFEST_FORMAT = 1
_SUFFIX = ".dump"
_MANIFEST_SUFFIX = ".manifest.json"


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Backup:
    dump: Path
    manifest: Path
    data: dict[str, Any]


def _database() -> dict[str, Any]:
    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("postgresql"):
        raise BackupError(
            "backups are made of a Postgres database (DATABASE_URL=postgres://...); the embedded"
            " SQLite file is copied with `sqlite3 node.sqlite3 '.backup copy.sqlite3'` while the node runs"
        )
    return database


def _url(database: dict[str, Any]) -> str:
    user = quote(database.get("USER") or "", safe="")
    password = quote(database.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or 5432
    return f"postgresql://{credentials}{host}:{port}/{quote(database['NAME'], safe='')}"


def _tool(name: str) -> str:
    """pg_dump / pg_restore: on PATH, else the newest of Debian's PostgreSQL installs."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return str(candidates[-1])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _table(model: Any) -> str:
    return f'"{model._meta.db_table}"'


def _manifest_rows(cursor: psycopg.Cursor[Any]) -> dict[str, Any]:
    cursor.execute(f"SELECT name, chain_id, block_number FROM {_table(BlockCursor)} ORDER BY name")  # noqa: S608
    cursors = {f"{name}@{chain_id}": int(block) for name, chain_id, block in cursor.fetchall()}
    cursor.execute(f"SELECT address, nonce, chain_id FROM {_table(Channel)} ORDER BY address")  # noqa: S608
    rows = cursor.fetchall()
    cursor.execute("SELECT app, max(name) FROM django_migrations GROUP BY app ORDER BY app")
    migrations = dict(cursor.fetchall())
    return {
        "chain_ids": sorted({int(chain_id) for _, _, chain_id in rows}),
        "cursors": cursors,
        "channels": {address: int(nonce) for address, nonce, _ in rows},
        "migrations": migrations,
    }


def backup(directory: Path, *, keep: int | None = None) -> Backup:
    """Dump the database into `directory` with its manifest; keep only the newest `keep` backups."""
    from channels_app.network import node_signer

    database = _database()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dump = directory / f"connext-{stamp}{_SUFFIX}"
    partial = dump.with_suffix(".partial")
    url = _url(database)
    with psycopg.connect(url) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        with connection.cursor() as cursor:
            rows = _manifest_rows(cursor)
        # The snapshot lives as long as this transaction: pg_dump reads exactly what the manifest read.
        result = subprocess.run(  # noqa: S603 - our own arguments
            [
                _tool("pg_dump"),
                "--format=custom",
                f"--snapshot={snapshot}",
                "--no-owner",
                f"--file={partial}",
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        connection.rollback()
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    os.replace(partial, dump)
    data = {
        "format": MANIFEST_FORMAT,
        "taken_at": datetime.now(UTC).isoformat(),
        "database": database["NAME"],
        "dump": dump.name,
        "sha256": _sha256(dump),
        "size": dump.stat().st_size,
        "node_address": node_signer().address,
        **rows,
    }
    manifest = dump.with_name(dump.name.removesuffix(_SUFFIX) + _MANIFEST_SUFFIX)
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if keep is not None:
        _prune(directory, keep)
    return Backup(dump, manifest, data)


def _prune(directory: Path, keep: int) -> None:
    dumps = sorted(directory.glob(f"connext-*{_SUFFIX}"))
    for old in dumps[: max(0, len(dumps) - keep)]:
        old.unlink()
        old.with_name(old.name.removesuffix(_SUFFIX) + _MANIFEST_SUFFIX).unlink(missing_ok=True)


def manifest_for(dump: Path) -> Path:
    return dump.with_name(dump.name.removesuffix(_SUFFIX) + _MANIFEST_SUFFIX)


def restore(dump: Path, *, manifest_path: Path | None = None, chain_block: int) -> dict[str, Any]:
    """Restore `dump` into the (empty) database and fence every channel. `chain_block`: the chain's
    head now; no channel is let go before the chain watcher has read that far."""
    from django.core.management import call_command

    from channels_app.models import DataFence
    from channels_app.services import fence

    database = _database()
    manifest_path = manifest_path or manifest_for(dump)
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read the manifest {manifest_path}: {exc}") from None
    if data.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"{manifest_path} is not a manifest of format {MANIFEST_FORMAT}")
    if not dump.is_file() or _sha256(dump) != data.get("sha256"):
        raise BackupError(f"{dump} is missing or is not the dump its manifest describes (SHA-256 differs)")
    url = _url(database)
    with psycopg.connect(url) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]  # type: ignore[index]
    if tables:
        raise BackupError(
            f"the database {database['NAME']} is not empty ({tables} tables): a backup is restored"
            " into a new, empty database only"
        )
    connections.close_all()
    result = subprocess.run(  # noqa: S603 - our own arguments
        [_tool("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={url}", str(dump)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()}")
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        restored = _manifest_rows(cursor)
    if restored["channels"] != data["channels"] or restored["cursors"] != data["cursors"]:
        raise BackupError("the restored rows differ from the manifest: the restore is not to be trusted")
    call_command("migrate", interactive=False, verbosity=0)  # a backup of an older release
    fence.data_behind(
        reason=DataFence.Reason.RESTORED,
        detail={"dump": dump.name, "taken_at": data["taken_at"], "channels": len(data["channels"])},
        chain_block=chain_block,
    )
    return data
