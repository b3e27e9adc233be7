"""`make up` (scripts/up.py) before it starts anything: the database it is pointed at."""

from __future__ import annotations

import importlib.util
import secrets
import socket
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def up_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("up_script", ROOT / "scripts" / "up.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def server_url(database: str) -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{database}"


def test_a_database_missing_on_a_running_server_is_created(capsys):
    name = f"connext_up_{secrets.token_hex(4)}"
    try:
        assert up_script().database_ready(server_url(name)) is True
        psycopg.connect(server_url(name)).close()  # it exists now
        assert f"created the database {name}" in capsys.readouterr().out
        assert up_script().database_ready(server_url(name)) is True  # and is simply used next time
        assert capsys.readouterr().out == ""
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_a_server_that_does_not_answer_is_named_with_its_reason_and_no_password(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens there once the probe closes

    assert up_script().database_ready(f"postgres://user:hunter2@127.0.0.1:{closed_port}/connext") is False
    said = capsys.readouterr().out
    assert f"cannot reach the database at postgres://user@127.0.0.1:{closed_port}/connext" in said
    assert "hunter2" not in said


@pytest.mark.parametrize("url", [None, "", "sqlite:////tmp/node.sqlite3"])
def test_sqlite_needs_nothing(url):
    assert up_script().database_ready(url) is True
