"""Dashboard page times at scale: every page and API answer with 10,000 channels and 100,000 payments.

    DATABASE_URL=postgres://…/connext_dash_bench .venv/bin/python bench/dashboard_bench.py [--runs 10]
    (or: make bench-dashboard)

Not a test: the numbers depend on the machine. The goal is ≤ 300 ms per page. The rows are made once
per database (`dashboard.bulk`, 10,000 channels and 100,000 payments by default; reused when the
database already has them) and each page is requested in-process through Django's test client (the
whole request: middleware, session, queries, template), so no network or server is timed. The chain is
pointed at a closed port: the pages' chain reads (hot wallet, head) answer "unknown" at once, and the
database alone is measured. Prints the median and worst time per page and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connext_site.settings")
os.environ["CHAIN_RPC_URL"] = "http://127.0.0.1:18599"  # closed: measure the database, not an RPC

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from channels_app.models import Channel, Payment  # noqa: E402
from dashboard import bulk  # noqa: E402

NODE_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")  # anvil 0
GOAL_MS = 300


def pages(sample_channel: str, sample_user: str, sample_payment: str) -> list[str]:
    return [
        "/dashboard/",
        "/dashboard/channels/",
        "/dashboard/channels/?sort=user_balance",
        f"/dashboard/channels/?q={sample_user}",
        "/dashboard/channels/?min_user_balance=1000000000000000000&sort=node_balance&order=asc",
        f"/dashboard/channels/{sample_channel}/",
        "/dashboard/payments/",
        "/dashboard/payments/?status=failed",
        f"/dashboard/payments/?user={sample_user}",
        f"/dashboard/payments/?payment_id={sample_payment}",
        "/dashboard/payments/?page=500",
        "/dashboard/payments/stuck/",
        "/dashboard/onchain/",
        "/dashboard/disputes/",
        "/api/dashboard/overview",
        "/api/dashboard/series?window=24h",
        "/api/dashboard/series?window=90d",
        "/api/dashboard/channels",
        f"/api/dashboard/channels/{sample_channel}",
        "/api/dashboard/payments?status=completed",
        "/api/dashboard/onchain",
        "/dashboard/export/channels.csv?min_user_balance=4000000000000000000",
        "/metrics",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed requests per page (after one warm-up)")
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--payments", type=int, default=100_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("Set DATABASE_URL to an existing Postgres database (its rows are kept for the next run).")
        return 2
    call_command("migrate", verbosity=0)
    if Channel.objects.count() < args.channels or Payment.objects.count() < args.payments:
        started = time.perf_counter()
        bulk.bulk_insert(
            channels=max(0, args.channels - Channel.objects.count()),
            payments=max(0, args.payments - Payment.objects.count()),
            node_key=NODE_KEY,
            chain_id=31337,
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"inserted the rows in {time.perf_counter() - started:.1f} s")
    operator, _ = User.objects.get_or_create(username="bench-operator", defaults={"is_staff": True})
    client = Client()
    client.force_login(operator)
    channel = Channel.objects.order_by("pk").first()
    payment = Payment.objects.order_by("pk").first()
    assert channel is not None
    assert payment is not None
    results = []
    print(
        f"{Channel.objects.count():,} channels, {Payment.objects.count():,} payments; {args.runs} runs each"
    )
    print(f"{'page':<78} {'median ms':>9} {'max ms':>7} {'queries':>7}")
    for path in pages(channel.address, channel.user_address, payment.payment_id):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        times = []
        for _ in range(args.runs):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(path)
                if response.streaming:
                    b"".join(response.streaming_content)
                times.append((time.perf_counter() - started) * 1000)
        median, worst = statistics.median(times), max(times)
        results.append(
            {"path": path, "median_ms": round(median, 1), "max_ms": round(worst, 1), "queries": len(queries)}
        )
        flag = "" if median <= GOAL_MS else "  over the goal"
        print(f"{path[:78]:<78} {median:9.1f} {worst:7.1f} {len(queries):7d}{flag}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / "results" / f"dashboard-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "channels": Channel.objects.count(),
                "payments": Payment.objects.count(),
                "runs": args.runs,
                "goal_ms": GOAL_MS,
                "pages": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
