"""When a node process starts the update engine (`channels_app.engine.process.process_engine`)."""

from __future__ import annotations

import asyncio

from channels_app.engine import process


def test_the_engine_is_off_by_default_and_stays_off_on_a_database_other_than_postgres(settings, monkeypatch):
    assert settings.UPDATE_ENGINE is False
    assert asyncio.run(process.process_engine()) is None
    settings.UPDATE_ENGINE = True
    monkeypatch.setattr(process, "_starting", None)
    # The embedded default: SQLite has no advisory locks to fence the writer with.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.sqlite3")
    assert asyncio.run(process.process_engine()) is None
    assert process._engine is None
