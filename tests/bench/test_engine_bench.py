"""`make bench-engine` runs: a few routed transfers through the engine bench, its report written, and its
two views into the hot path (`--show-sql`, `--profile`) printed; with `--owner`, through the update
engine's owner (and `--router`, its router). The numbers themselves are the bench's business, not a
test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.support.processes import ROOT

pytestmark = pytest.mark.slow


def engine_bench(
    out: Path, database: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The bench with `args` on a database of its own (`database`, dropped after): its run and report."""
    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("the engine bench runs on Postgres")
    base = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    try:
        finished = subprocess.run(
            [
                sys.executable,
                "bench/engine_bench.py",
                *args,
                "--database-url",
                f"{base}/{database}",
                "--out",
                str(out),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert finished.returncode == 0, finished.stderr
    (written,) = out.glob("engine-*.json")
    return finished, json.loads(written.read_text())


def test_the_engine_bench_routes_transfers_and_writes_its_report(tmp_path):
    finished, report = engine_bench(
        tmp_path,
        "connext_engine_bench_smoke",
        "--payments",
        "4",
        "--warmup",
        "1",
        "--show-sql",
        "--profile",
        "5",
    )

    assert report["payments"] == 4
    per = report["per_routed_transfer"]
    assert per["sql_statements"] > 0
    assert per["commits"] > 0
    assert per["node_us"] > 0
    assert "engine: 4 routed transfers" in finished.stdout
    # The statements of one more transfer (its commits among them), and the profile's top lines.
    assert "INSERT INTO" in finished.stderr
    assert "COMMIT" in finished.stderr
    assert "Ordered by: internal time" in finished.stderr


@pytest.mark.parametrize("mode", [["--owner"], ["--owner", "--router"]], ids=["owner", "router"])
def test_the_engine_bench_drives_the_owner_with_pairs_at_once(tmp_path, mode):
    """`--owner`: the channel steps through the update engine's owner, two pairs of users at once;
    with `--router`, whole payments through its router."""
    finished, report = engine_bench(
        tmp_path, "connext_engine_owner_smoke", *mode, "--pairs", "2", "--payments", "4", "--warmup", "2"
    )

    assert (report["pairs"], report["payments"]) == (2, 4)
    per = report["per_routed_transfer"]
    assert per["node_cpu_us"] > 0
    assert per["postgres_cpu_us"] >= 0
    assert 0 < per["commits"] <= 5  # five states a transfer, some of them sharing a commit
    what = " --router: 4 routed transfers," if "--router" in mode else ": 4 routed transfers' channel steps,"
    assert f"engine --owner{what} 2 pairs at once" in finished.stdout
