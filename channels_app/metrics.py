"""The node's live Prometheus metrics: what happens in a process and is in no table.

prometheus-client keeps them per process; with PROMETHEUS_MULTIPROC_DIR set (several daphne and
Celery processes serving one node) each process writes them to files in that directory, and the
/metrics view adds them up. The numbers that are in the tables (payments, channels, collateral,
disputes, transactions) are read from the database when /metrics is scraped (dashboard.metrics).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REFUSALS = Counter(
    "connext_refusals",
    "Requests the node refused (REST and websocket), by error code: invalid updates, stale nonces, limits.",
    ["code"],
)


def refusal_count(code: str) -> None:
    REFUSALS.labels(code=code).inc()


# Sockets open on the node's processes (summed over the live ones in multiprocess mode).
WEBSOCKETS = Gauge(
    "connext_websocket_connections", "Websocket connections the node holds open.", multiprocess_mode="livesum"
)
