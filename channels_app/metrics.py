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


# The update engine (UPDATE_ENGINE): each socket update or countersignature it was offered, by what
# became of it. `answered` and `refused` it served itself (a request forwarded to it among them);
# `forwarded` its shard's owner in another process served; `handed_on` it left to the row-lock path,
# with the reason: `unserved` (a step the router leaves there), `not_owner` (its shard moved away as it
# was served), `ownership_lost` (its writer's session went under it), `failed` (an unexpected error,
# logged); for a request of another process's shard `no_owner` (none recorded), `declined` (its owner
# did not take it), `timeout` (no answer in time), `not_sent`.
ENGINE_REQUESTS = Counter(
    "connext_engine_requests",
    "Socket requests offered to the update engine, by path and by what became of them.",
    ["path", "outcome", "reason"],
)


def engine_request(path: str, outcome: str, reason: str = "") -> None:
    ENGINE_REQUESTS.labels(path=path, outcome=outcome, reason=reason).inc()
