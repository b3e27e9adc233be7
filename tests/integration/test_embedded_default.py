"""`make up` on embedded defaults: no DATABASE_URL, no REDIS_URL, no CHAIN_RPC_URL."""

from __future__ import annotations

import signal
import socket
import sys

from connext.chain.devchain import free_port
from tests.support.processes import ManagedProcess, http_get_json, node_env, wait_until

# `make up` started the way a script starts a background job: with SIGINT ignored, which a process
# inherits across exec (and Python then leaves ignored). Ctrl-C must still stop it.
UP_WITH_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN);"
    " os.execv(sys.executable, [sys.executable, 'scripts/up.py'])"
)


def test_the_embedded_node_serves_a_healthy_page_and_stops_cleanly(tmp_path):
    node_port, anvil_port = free_port(), free_port()
    up = ManagedProcess(
        [sys.executable, "-c", UP_WITH_SIGINT_IGNORED],
        env=node_env(
            DATABASE_URL=None,
            REDIS_URL=None,
            CHAIN_RPC_URL=None,
            NODE_PORT=str(node_port),
            ANVIL_PORT=str(anvil_port),
            NODE_VAR_DIR=str(tmp_path / "var"),
            DJANGO_SUPERUSER_USERNAME="operator",
            DJANGO_SUPERUSER_PASSWORD="a long operator password",
        ),
        log_path=tmp_path / "up.log",
    )
    up.start()
    try:

        def healthy():
            if not up.alive():
                raise AssertionError(f"make up exited:\n{up.log()}")
            return http_get_json(f"http://127.0.0.1:{node_port}/api/health", timeout=3)[0] == 200

        wait_until(healthy, timeout=90, what="the embedded node to become healthy")
        status, body = http_get_json(f"http://127.0.0.1:{node_port}/api/health")
        assert status == 200
        assert body["checks"]["database"]["detail"]["vendor"] == "sqlite"
        assert body["checks"]["redis"]["detail"]["backend"] == "in-memory"
        assert body["checks"]["workers"]["detail"]["mode"] == "in-process"
        assert body["checks"]["chain"]["detail"]["chain_id"] == 31337
        assert (tmp_path / "var" / "node.sqlite3").exists()
        # The dev chain's swap offer: ETH and TestToken both ways, at 2000 less the spread.
        status, offer = http_get_json(f"http://127.0.0.1:{node_port}/api/swap/rates")
        assert status == 200
        assert sorted(rate["mid"]["numerator"] for rate in offer["rates"]) == ["1", "2000"]
        wait_until(lambda: "Ctrl-C stops everything" in up.log(), timeout=30, what="the URLs to be printed")
    finally:
        returncode = up.stop(signal.SIGINT, timeout=30)

    assert returncode == 0, up.log()
    log = up.log()
    assert f"http://127.0.0.1:{node_port}/api/health" in log
    assert f"Dashboard http://127.0.0.1:{node_port}/dashboard/" in log
    assert f"Card     http://127.0.0.1:{node_port}/card/" in log
    assert "operator account 'operator' created" in log
    # Everything it started is gone: nothing listens on either port any more.
    for port in (node_port, anvil_port):
        wait_until(lambda port=port: not _listening(port), timeout=10, what=f"port {port} to be closed")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
