"""Real node processes for integration tests: daphne, Celery, `scripts/up.py`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from connext.chain.devchain import free_port

ROOT = Path(__file__).resolve().parents[2]


def http_get_json(url: str, *, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def metric(url: str, token: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples in one node process's own /metrics (at `url`, with the metrics
    token), those whose labels include `labels`."""
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})  # noqa: S310 - local test URL
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test URL
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        sample_name, _, sample_labels = sample.partition("{")
        if sample_name != name:
            continue
        if all(f'{key}="{wanted}"' in sample_labels for key, wanted in labels.items()):
            total += float(value)
    return total


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (OSError, ValueError) as exc:
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class ManagedProcess:
    """A child process with its output in a log file; stopped (and reaped) by `stop()`."""

    def __init__(self, command: list[str], *, env: Mapping[str, str], log_path: Path) -> None:
        self.command = command
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        _reap_group(process.pid)
        return process.returncode


def _reap_group(group: int, timeout: float = 10.0) -> None:
    """Nothing the process started (a Celery pool child finishing a task) may outlive it: such a
    straggler still writes to the test database while the next fixture flushes it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def node_env(**overrides: str | None) -> dict[str, str]:
    """The test process's environment with overrides; a value of None removes the variable."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class NodeProcess(ManagedProcess):
    """One daphne process serving the node on a free port (or on `port`: a node restarted in place)."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        command = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "connext_site.asgi:application",
        ]
        super().__init__(command, env=env, log_path=log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1"

    def wait_serving(self, timeout: float = 30.0) -> None:
        def answering() -> bool:
            if not self.alive():
                raise AssertionError(f"daphne exited:\n{self.log()}")
            status, _ = http_get_json(f"{self.url}/api/", timeout=2)
            return status == 200

        wait_until(answering, timeout=timeout, what=f"daphne on {self.url}")


def celery_worker(*, env: Mapping[str, str], log_path: Path, with_beat: bool = True) -> ManagedProcess:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "connext_site",
        "worker",
        "-l",
        "INFO",
        "-c",
        "1",
        "--without-gossip",
        "--without-mingle",
    ]
    if with_beat:
        command += ["-B", "-s", str(log_path.with_suffix(".schedule"))]
    return ManagedProcess(command, env=env, log_path=log_path)


@contextlib.contextmanager
def serving_node(*, env: Mapping[str, str], logs: Path, with_worker: bool = True) -> Iterator[NodeProcess]:
    """One daphne and (by default) a Celery worker with beat on `env`, until the node is healthy (the
    worker's first heartbeat) or serving; both stopped, with everything they started, afterwards."""
    daphne = NodeProcess(env=env, log_path=logs / "daphne.log")
    processes: list[ManagedProcess] = [daphne]
    if with_worker:
        processes.append(celery_worker(env=env, log_path=logs / "celery.log"))
    started: list[ManagedProcess] = []
    try:
        for process in processes:
            process.start()
            started.append(process)
        daphne.wait_serving(timeout=60)
        if with_worker:
            wait_until(
                lambda: http_get_json(f"{daphne.url}/api/health")[0] == 200,
                timeout=60,
                what="the node healthy (the worker's first heartbeat)",
            )
        yield daphne
    finally:
        for process in reversed(started):
            process.stop()


def live_node_env(
    *,
    database_url: str,
    chain_url: str,
    deployments_book: str,
    var_dir: Path,
    node_key: str,
    secret_key: str,
    dispute_timeout: int = 3600,
    **overrides: str | None,
) -> dict[str, str]:
    """The environment of a whole node for tests: Postgres and Redis (this process's), the chain (also
    published to pages and clients), the contracts, chain events counted at depth 0."""
    from django.conf import settings

    return node_env(
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        CHAIN_RPC_URL=chain_url,
        PUBLIC_CHAIN_RPC_URL=chain_url,
        NODE_VAR_DIR=str(var_dir),
        DEPLOYMENTS_FILE=deployments_book,
        NODE_PRIVATE_KEY=node_key,
        CHAIN_CONFIRMATIONS="0",
        DISPUTE_TIMEOUT_SECONDS=str(dispute_timeout),
        DJANGO_SECRET_KEY=secret_key,
        **overrides,
    )


@contextlib.contextmanager
def module_node(*, env: Mapping[str, str], logs: Path, django_db_blocker: Any) -> Iterator[NodeProcess]:
    """`serving_node` for a test module whose records are the node's own: an earlier node's heartbeat
    forgotten first (this one's worker proves itself), everything its processes wrote flushed after."""
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connections

    from channels_app.health import HEARTBEAT_CACHE_KEY

    with django_db_blocker.unblock():
        cache.delete(HEARTBEAT_CACHE_KEY)
    try:
        with serving_node(env=env, logs=logs) as daphne:
            yield daphne
    finally:
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)
            connections.close_all()


@contextlib.contextmanager
def module_live_node(
    name: str,
    *,
    node_key: str,
    database_url: str,
    chain_url: str,
    deployments_book: str,
    tmp_path_factory: Any,
    django_db_blocker: Any,
    **overrides: str | None,
) -> Iterator[NodeProcess]:
    """A whole node for one test module (`live_node_env` under `module_node`), its logs and var
    directory in a temporary folder named after `name`; its secret key is the module's own."""
    from django.conf import settings

    assert settings.REDIS_URL, f"the {name} tests run their node on Redis (set REDIS_URL)"
    logs = tmp_path_factory.mktemp(f"{name}-node")
    env = live_node_env(
        database_url=database_url,
        chain_url=chain_url,
        deployments_book=deployments_book,
        var_dir=logs / "var",
        node_key=node_key,
        secret_key=f"{name}-test-secret-key-shared-by-every-node-process",
        **overrides,
    )
    with module_node(env=env, logs=logs, django_db_blocker=django_db_blocker) as daphne:
        yield daphne
