"""`make bench-writer` runs: a few writes at two concurrencies, its report written with one batch a
write alone and several writes a batch together (the timings are the bench's business)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.conf import settings

from tests.support.processes import ROOT


def test_the_writer_bench_batches_concurrent_writes_and_writes_its_report(tmp_path):
    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("postgresql"):
        pytest.skip("the writer bench runs on Postgres")
    base = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}"
    finished = subprocess.run(
        [
            sys.executable,
            "bench/writer_bench.py",
            "--writes",
            "64",
            "--concurrency",
            "1,16",
            "--postgres",
            base,
            "--database",
            "connext_writer_bench_smoke",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    (report,) = tmp_path.glob("writer-*.json")
    alone, together = json.loads(report.read_text())["runs"]
    assert (alone["writes"], alone["batches"]) == (64, 64)
    assert together["writes"] == 64
    assert together["batches"] < 64
