"""`make bench-client` runs: a few routed transfers between two clients through a real stack, its report
written with the clients' CPU split by part (the numbers themselves are the bench's business)."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow

SMOKE_DATABASE = "connext_client_bench_smoke"
SMOKE_REDIS_DB = 15  # the bench flushes its Redis database: not the suite's


def test_the_client_bench_routes_transfers_and_splits_the_clients_cpu(tmp_path):
    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("postgresql") or not settings.REDIS_URL:
        pytest.skip("the client bench runs the stack on Postgres and Redis")
    base = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}"
    redis = urlsplit(settings.REDIS_URL)
    try:
        finished = subprocess.run(
            [
                sys.executable,
                "bench/client_bench.py",
                "--nodes",
                "1",
                "--clients",
                "2",
                "--in-flight",
                "1",
                "--seconds",
                "3",
                "--warmup",
                "1",
                "--postgres",
                base,
                "--database",
                SMOKE_DATABASE,
                "--redis",
                f"redis://{redis.netloc}/{SMOKE_REDIS_DB}",
                "--out",
                str(tmp_path),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{SMOKE_DATABASE}" WITH (FORCE)')

    assert finished.returncode == 0, finished.stderr[-3000:]
    (written,) = tmp_path.glob("client-*.json")
    report = json.loads(written.read_text())
    assert report["completed"] > 0
    assert report["client_cpu_us_per_transfer"] > 0
    parts = report["by_part_cpu_us_per_transfer"]
    assert {"store writes", "store reads", "signing, recovering, hashing", "the rest"} <= set(parts)
    assert parts["store writes"] > 0
    assert report["store_commits_per_transfer"]["synced"] > 0
    assert "µs of client CPU per transfer" in finished.stdout
